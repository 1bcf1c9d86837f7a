// sleep.hpp alone: coroutines that wait on timers.
#include <chrono>
#include <coray/sleep.hpp>

namespace header_check_sleep {

ray::async<int> later() {
  co_await ray::sleep_for(std::chrono::milliseconds(5));
  co_await ray::sleep_until(std::chrono::steady_clock::now() + std::chrono::microseconds(10));
  co_await ray::sleep_until(std::chrono::system_clock::now());
  co_return 1;
}

}  // namespace header_check_sleep
