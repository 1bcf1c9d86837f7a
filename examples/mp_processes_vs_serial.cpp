// Seed 003: five processes against a serial loop, with the memory each uses, and the parent
// looking at its children.
//
//   def task():
//       result = max([random.random() for _ in range(5000000)])
//       memory_usage("task")
//   processes = [Process(target=task) for _ in range(5)]
//   [process.start() for process in processes]
//   childs = active_children()
//   [process.join() for process in processes]
//   ...
//   for _ in range(5): task()
//
// Each task here runs in one of the runtime's five worker processes; ray::active_children()
// lists them with their pids, as multiprocessing's active_children() does. Unlike the seed's
// Processes, the workers outlive the tasks, ready for the next ones.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <coray/coray.hpp>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

double memory_usage_mb() {
  std::ifstream statm("/proc/self/statm");
  long pages = 0, resident = 0;
  statm >> pages >> resident;
  return static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) / (1 << 20);
}

double task(int seed) {
  std::mt19937_64 gen(static_cast<std::uint64_t>(seed));
  std::uniform_real_distribution<double> random(0.0, 1.0);
  std::vector<double> values(1'000'000);  // the seed's 5,000,000, scaled to run in a blink
  for (double& v : values) v = random(gen);
  std::printf("[task pid %d] memory usage : %10.5f MB\n", getpid(), memory_usage_mb());
  return *std::max_element(values.begin(), values.end());
}

int main(int argc, char** argv) {
  ray::runtime rt(argc, argv, {.num_workers = 5});
  using clock = std::chrono::steady_clock;
  std::printf("[#1] memory usage : %10.5f MB\n", memory_usage_mb());
  std::fflush(stdout);

  auto start = clock::now();
  std::vector<ray::object_ref<double>> processes;
  for (int i = 0; i < 5; ++i) processes.push_back(ray::task<task>.remote(i));

  std::vector<double> parallel = ray::get(processes);  // join
  const double multiprocessing_time = std::chrono::duration<double>(clock::now() - start).count();
  std::fflush(stdout);

  auto children = ray::active_children();
  std::printf("Active Children Count : %zu\n", children.size());
  for (const auto& child : children)
    std::printf("  pid %d, slot %u, %s\n", child.pid, child.slot, child.alive ? "alive" : "ended");
  std::printf("[#2] memory usage : %10.5f MB\n", memory_usage_mb());
  std::printf("multiprocessing time : %.4f s\n", multiprocessing_time);

  start = clock::now();
  std::vector<double> serial;
  for (int i = 0; i < 5; ++i) serial.push_back(task(i));
  const double normal_time = std::chrono::duration<double>(clock::now() - start).count();
  std::printf("[#5] memory usage : %10.5f MB\n", memory_usage_mb());
  std::printf("normal time : %.4f s\n", normal_time);

  return parallel == serial ? 0 : 1;
}
