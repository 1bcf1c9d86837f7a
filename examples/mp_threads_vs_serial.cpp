// Seed 003: a CPU-bound job run twice in one thread, then in two threads, then (coray's
// addition) in two processes.
//
//   def working():
//       max([random.random() for _ in range(500000000)])
//   working(); working()                           # single thread
//   threads = [threading.Thread(target=working) for i in range(2)]
//   [t.start() for t in threads]; [t.join() for t in threads]
//
// Python's GIL lets one thread run bytecode at a time, so its two threads take as long as
// the single one. C++ threads have no GIL: on two free cores they take about half as long,
// and so do two ray::process, which share no memory. The seed's 500,000,000 numbers are
// 5,000,000 here.
#include <algorithm>
#include <chrono>
#include <coray/coray.hpp>
#include <cstdio>
#include <random>
#include <thread>
#include <vector>

void working() {
  std::mt19937_64 gen(std::random_device{}());
  std::uniform_real_distribution<double> random(0.0, 1.0);
  std::vector<double> values(5'000'000);
  for (double& v : values) v = random(gen);
  const double m = *std::max_element(values.begin(), values.end());
  if (m >= 1.0) std::printf("impossible\n");
}

template <class F>
double seconds(F&& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int main(int argc, char** argv) {
  ray::runtime rt(argc, argv, {.num_workers = 1});

  std::printf("single thread : %.5f\n", seconds([] {
                working();
                working();
              }));

  std::printf("two threads   : %.5f\n", seconds([] {
                std::vector<std::thread> threads;
                for (int i = 0; i < 2; ++i) threads.emplace_back(working);
                for (auto& t : threads) t.join();
              }));

  bool ok = true;
  std::printf("two processes : %.5f\n", seconds([&] {
                std::vector<ray::process> processes;
                for (int i = 0; i < 2; ++i) processes.emplace_back(ray::target<working>);
                for (auto& p : processes) p.start();
                for (auto& p : processes) {
                  p.join();
                  ok = ok && p.exitcode() == 0;
                }
              }));
  return ok ? 0 : 1;
}
