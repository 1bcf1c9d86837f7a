#pragma once
/// ray::sync_wait: the blocking form of anything coray lets a coroutine co_await, for code
/// that is not a coroutine. It runs the runtime's loop on the calling thread until the result
/// is there, then returns it or rethrows its error.
///
///   int v = ray::sync_wait(twice(ref));                            // a ray::async<int>
///   auto [ready, pending] = ray::sync_wait(ray::wait(refs));       // a coray awaitable

#include <coray/async.hpp>
#include <coray/detail/runtime/foreign.hpp>
#include <coray/detail/runtime/process.hpp>
#include <type_traits>
#include <utility>

CORAY_BEGIN_NAMESPACE

/// Runs `awaitable` (a ray::async<T>, or what ray::get, ray::get_view and ray::wait return)
/// to completion and returns its result. In the driver, from any thread (a coroutine runs on
/// the runtime's thread while this one waits); inside a task, from the thread that runs it.
template <class Awaitable>
auto sync_wait(Awaitable&& awaitable) {
  using A = std::remove_cvref_t<Awaitable>;
  static_assert(!std::is_lvalue_reference_v<Awaitable>,
                "ray::sync_wait(x): x is awaited once; pass a temporary or std::move(x)");
  if constexpr (detail::is_async<A>::value) {
    A a = std::move(awaitable);
    auto h = a.handle();
    if (detail::needs_handoff()) {  // another thread than the runtime's: it runs there
      detail::foreign_entry e("ray::sync_wait");
      detail::run_coroutine_from_another_thread(e.get(), h);
      return a.take();
    }
    auto& p = detail::process::require("ray::sync_wait");
    p.schedule(h);
    p.run_until([&] { return h.done(); });
    return a.take();
  } else {
    return std::move(awaitable).get();
  }
}

CORAY_END_NAMESPACE
