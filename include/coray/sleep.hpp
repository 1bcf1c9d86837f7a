#pragma once
/// ray::sleep_for and ray::sleep_until: timers for coroutines. `co_await` one in a coroutine
/// task or an async actor method and only that coroutine waits: the process keeps serving
/// (a task worker takes other calls, an actor with max_concurrency > 1 serves other calls),
/// as `await asyncio.sleep(...)` does in Ray's async actors. For polling, rate limits and
/// timeouts without a thread.
///
///   ray::async<int> poll_until_ready(ray::actor<source> s) {
///     while (!co_await s.call<&source::ready>()) co_await ray::sleep_for(10ms);
///     co_return co_await s.call<&source::value>();
///   }
///
/// The timer fires on the process's loop; a coroutine resumes no earlier than the time
/// asked, later if the loop is busy. Outside a runtime's loop (no runtime, or a thread other
/// than the loop's), awaiting one sleeps the thread instead.

#include <chrono>
#include <coray/async.hpp>
#include <coray/detail/runtime/process.hpp>
#include <coroutine>
#include <thread>

CORAY_BEGIN_NAMESPACE

/// What ray::sleep_until and ray::sleep_for return: co_await it.
class sleep_awaitable {
 public:
  explicit sleep_awaitable(detail::clock::time_point until) noexcept : until_(until) {}
  bool await_ready() const {
    if (detail::clock::now() >= until_) return true;
    if (detail::process::here()) return false;
    std::this_thread::sleep_until(until_);  // no loop to serve on this thread
    return true;
  }
  void await_suspend(std::coroutine_handle<> h) {
    detail::process& p = *detail::process::here();
    p.add_timer(until_, &resume, h.address());
    p.coroutine_suspended(+1);  // the coroutine does not occupy its worker meanwhile
  }
  void await_resume() const noexcept {}

 private:
  static void resume(void* address) {
    detail::process& p = *detail::process::current();
    p.coroutine_suspended(-1);
    p.schedule(std::coroutine_handle<>::from_address(address));
  }
  detail::clock::time_point until_;
};

/// Suspends the awaiting coroutine for `duration` (none if not positive; one too long to
/// have a deadline never ends).
template <class Rep, class Period>
sleep_awaitable sleep_for(const std::chrono::duration<Rep, Period>& duration) {
  return sleep_awaitable(detail::deadline_in(duration));
}

/// Suspends the awaiting coroutine until `deadline` (of any clock).
template <class Clock, class Duration>
sleep_awaitable sleep_until(const std::chrono::time_point<Clock, Duration>& deadline) {
  return sleep_awaitable(detail::deadline_at(deadline));
}

CORAY_END_NAMESPACE
