// object_store.hpp alone: put, get (blocking, with a timeout, of several), get_view, put_buffer,
// wait and cancel.
#include <chrono>
#include <coray/object_store.hpp>
#include <vector>

namespace header_check_object_store {

double uses() {
  ray::object_ref<std::vector<double>> img = ray::put(std::vector<double>(9, 1.0));
  std::vector<double> copy = ray::get(img);
  auto view = ray::sync_wait(ray::get_view(img));
  auto buf = ray::put_buffer<double>(3);
  ray::object_ref<std::vector<double>> built = std::move(buf).seal();
  std::vector<std::vector<double>> both = ray::get(std::vector{img, built});
  auto [ready, pending] = ray::sync_wait(ray::wait(std::vector{img, built}, {.num_returns = 1}));
  std::vector<double> soon = ray::get(img, {.timeout = std::chrono::seconds(1)});
  ray::cancel(built);
  return copy[0] + view[0] + static_cast<double>(both.size() + ready.size() + soon.size());
}

}  // namespace header_check_object_store
