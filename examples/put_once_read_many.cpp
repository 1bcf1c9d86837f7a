// Seed 000: a list put once into shared memory, read by many tasks.
//
//   number_lst = ray.put(lst)
//   result = ray.get([task.remote(number_lst, idx) for idx in range(cnt)])
#include <coray/coray.hpp>
#include <cstdio>
#include <random>
#include <span>
#include <vector>

// The worker reads the list where it lies in shared memory: no copy.
double task(std::span<const double> lst, int x) { return lst[static_cast<std::size_t>(x)] * 10; }

ray::async<int> amain() {
  const int cnt = 10;
  std::mt19937 gen(42);
  std::uniform_real_distribution<double> random(0.0, 1.0);
  std::vector<double> lst(cnt);
  for (auto& x : lst) x = random(gen);

  auto number_lst = ray::put(lst);
  std::vector<ray::object_ref<double>> futures;
  for (int idx = 0; idx < cnt; ++idx) futures.push_back(ray::task<task>.remote(number_lst, idx));
  std::vector<double> result = co_await ray::get(futures);

  for (double r : result) std::printf("%.5f ", r);
  std::printf("\n");
  co_return 0;
}

int main(int argc, char** argv) {
  ray::runtime rt(argc, argv);
  return rt.run(amain());
}
