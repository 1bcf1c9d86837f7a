// Seed 003: ten processes that each hold a Lock while they sleep, then ten without it.
//
//   def task(lock, identifier, value):
//       with lock:
//           print(f'process {identifier} get lock and sleeping {value}s / current_time : ...')
//           sleep(value)
//   processes = [Process(target=task, args=(lock, i, random()*10)) for i in range(10)]
//   [process.start() for process in processes]; [process.join() for process in processes]
//   processes = [Process(target=task2, args=(i, random()*10)) for i in range(10)]
//
// With the lock the processes take turns (the total is the sum of the sleeps); without it
// they sleep at once (the total is the longest). The seed's random()*10 s is random()*50 ms.
#include <chrono>
#include <coray/coray.hpp>
#include <cstdio>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

using clock_type = std::chrono::steady_clock;

double since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

void task(ray::mutex lock, int identifier, double value, std::int64_t t0_ns) {
  std::lock_guard hold(lock);
  const clock_type::time_point t0{std::chrono::nanoseconds(t0_ns)};
  std::printf("process %d get lock and sleeping %.3fs / current_time : +%.3fs\n", identifier, value,
              since(t0));
  std::this_thread::sleep_for(std::chrono::duration<double>(value));
}

void task2(int identifier, double value, std::int64_t t0_ns) {
  const clock_type::time_point t0{std::chrono::nanoseconds(t0_ns)};
  std::printf("process %d get lock and sleeping %.3fs / current_time : +%.3fs\n", identifier, value,
              since(t0));
  std::this_thread::sleep_for(std::chrono::duration<double>(value));
}

int main(int argc, char** argv) {
  ray::runtime rt(argc, argv, {.num_workers = 1});
  std::mt19937 gen(3);
  std::uniform_real_distribution<double> random(0.0, 0.05);
  const auto t0 = clock_type::now();
  const std::int64_t t0_ns = t0.time_since_epoch().count();

  std::printf("Lock multiprocessing\n");
  std::fflush(stdout);
  ray::mutex lock;
  std::vector<ray::process> processes;
  for (int i = 0; i < 10; ++i)
    processes.emplace_back(ray::target<task>, lock, i, random(gen), t0_ns);
  for (auto& process : processes) process.start();
  for (auto& process : processes) process.join();

  std::printf("NoLock multiprocessing\n");
  std::fflush(stdout);
  std::vector<ray::process> unlocked;
  for (int i = 0; i < 10; ++i) unlocked.emplace_back(ray::target<task2>, i, random(gen), t0_ns);
  for (auto& process : unlocked) process.start();
  for (auto& process : unlocked) process.join();

  bool ok = true;
  for (auto& process : processes) ok = ok && process.exitcode() == 0;
  for (auto& process : unlocked) ok = ok && process.exitcode() == 0;
  std::printf("total : %.3fs\n", since(t0));
  return ok ? 0 : 1;
}
