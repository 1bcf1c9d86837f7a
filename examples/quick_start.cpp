// The design card's tour: tasks, put/get, wait, and coroutines.
#include <coray/coray.hpp>
#include <cstdio>
#include <numeric>
#include <span>
#include <vector>

int add(int a, int b) { return a + b; }
double total(std::span<const double> xs) { return std::accumulate(xs.begin(), xs.end(), 0.0); }

ray::async<int> amain() {
  ray::object_ref<int> r = ray::task<add>.remote(1, 2);  // runs in a worker process
  int three = co_await ray::get(r);

  auto img = ray::put(std::vector<double>(3000 * 3000, 1.0));  // once, into shared memory
  double s = co_await ray::get(ray::task<total>.remote(img));  // the worker reads it in place

  std::vector<ray::object_ref<int>> refs;
  for (int i = 0; i < 8; ++i) refs.push_back(ray::task<add>.remote(i, i));
  auto [ready, pending] = co_await ray::wait(refs, {.num_returns = 1});
  std::vector<int> all = co_await ray::get(refs);
  std::printf("three=%d sum=%.0f first-ready=%zu last=%d\n", three, s, ready.size(), all.back());
  co_return 0;
}

int main(int argc, char** argv) {
  ray::runtime rt(argc, argv, {.num_workers = 2});  // in a spawned worker this never returns
  return rt.run(amain());
}
