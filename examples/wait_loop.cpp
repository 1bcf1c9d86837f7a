// Seed 000: handle results as they finish with ray.wait.
//
//   while len(futures):
//       object_id, futures = ray.wait(futures)
//       print(ray.get(object_id[0]))
#include <chrono>
#include <coray/coray.hpp>
#include <cstdio>
#include <span>
#include <thread>
#include <vector>

double task(std::span<const double> lst, int x) {
  // Later items take longer, so results arrive out of submission order.
  std::this_thread::sleep_for(std::chrono::milliseconds(5 * (10 - x)));
  return lst[static_cast<std::size_t>(x)] * 10;
}

int main(int argc, char** argv) {
  ray::runtime rt(argc, argv);
  auto number_lst = ray::put(std::vector<double>{0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0});
  std::vector<ray::object_ref<double>> futures;
  for (int idx = 0; idx < 10; ++idx) futures.push_back(ray::task<task>.remote(number_lst, idx));

  // Blocking form; inside a coroutine: co_await ray::wait(futures).
  while (!futures.empty()) {
    auto [ready, pending] = ray::sync_wait(ray::wait(futures));
    double result = ray::get(ready[0]);
    std::printf("%.1f\n", result);
    futures = std::move(pending);
  }
  return 0;
}
