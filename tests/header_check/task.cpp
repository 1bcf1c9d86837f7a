// task.hpp alone: a remote call with options, a dependency, a coroutine task, and sync_wait.
#include <coray/task.hpp>
#include <stdexcept>

namespace header_check_task {

int add(int a, int b) { return a + b; }
ray::async<int> twice(ray::object_ref<int> r) { co_return 2 * co_await ray::get(r); }

int uses() {
  ray::object_ref<int> r = ray::task<add>.remote(1, 2);
  ray::object_ref<int> s =
      ray::task<add>
          .options({.max_retries = 0, .retry_exceptions = ray::retry_on<std::runtime_error>})
          .remote(r, 3);
  return ray::sync_wait(ray::get(s)) + ray::sync_wait(twice(r));
}

}  // namespace header_check_task
