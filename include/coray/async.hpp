#pragma once
/// ray::async<T>: the coroutine type of coray. Lazy (starts when awaited or run), single
/// awaiter, move-only, resumes its awaiter by symmetric transfer. User coroutines in the
/// driver run on the runtime loop's thread only, so they need no locks.
///
///   ray::async<int> twice(ray::object_ref<int> r) { co_return 2 * co_await ray::get(r); }

#include <coray/version.hpp>
#include <coroutine>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

CORAY_BEGIN_NAMESPACE

template <class T = void>
class async;

namespace detail {

struct async_promise_base {
  std::coroutine_handle<> continuation_;
  std::exception_ptr error_;

  std::suspend_always initial_suspend() noexcept { return {}; }
  struct final_awaiter {
    bool await_ready() noexcept { return false; }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) noexcept {
      auto c = h.promise().continuation_;
      return c ? c : std::noop_coroutine();
    }
    void await_resume() noexcept {}
  };
  final_awaiter final_suspend() noexcept { return {}; }
  void unhandled_exception() noexcept { error_ = std::current_exception(); }
  void rethrow_if_failed() const {
    if (error_) std::rethrow_exception(error_);
  }
};

template <class T>
struct async_promise : async_promise_base {
  std::optional<T> value_;
  async<T> get_return_object() noexcept;
  template <class U>
  void return_value(U&& v) {
    value_.emplace(std::forward<U>(v));
  }
  T take() {
    rethrow_if_failed();
    return std::move(*value_);
  }
};

template <>
struct async_promise<void> : async_promise_base {
  async<void> get_return_object() noexcept;
  void return_void() noexcept {}
  void take() { rethrow_if_failed(); }
};

template <class T>
struct is_async : std::false_type {};
template <class T>
struct is_async<async<T>> : std::true_type {
  using value_type = T;
};

}  // namespace detail

template <class T>
class [[nodiscard]] async {
 public:
  using promise_type = detail::async_promise<T>;
  using value_type = T;

  async() noexcept = default;
  explicit async(std::coroutine_handle<promise_type> h) noexcept : h_(h) {}
  async(async&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  async& operator=(async&& o) noexcept {
    if (this != &o) {
      reset();
      h_ = std::exchange(o.h_, {});
    }
    return *this;
  }
  ~async() { reset(); }

  /// Awaiting starts the coroutine and resumes the awaiter with its result (or exception).
  auto operator co_await() && noexcept {
    struct awaiter {
      std::coroutine_handle<promise_type> h;
      bool await_ready() noexcept { return !h || h.done(); }
      std::coroutine_handle<> await_suspend(std::coroutine_handle<> c) noexcept {
        h.promise().continuation_ = c;
        return h;
      }
      T await_resume() { return h.promise().take(); }
    };
    return awaiter{h_};
  }

  /// Runtime internals: the handle, to start and poll it from an event loop.
  std::coroutine_handle<promise_type> handle() const noexcept { return h_; }
  bool done() const noexcept { return !h_ || h_.done(); }
  /// The result of a finished coroutine; rethrows its exception.
  T take() { return h_.promise().take(); }

 private:
  void reset() noexcept {
    if (h_) h_.destroy();
    h_ = {};
  }
  std::coroutine_handle<promise_type> h_;
};

namespace detail {
template <class T>
async<T> async_promise<T>::get_return_object() noexcept {
  return async<T>{std::coroutine_handle<async_promise<T>>::from_promise(*this)};
}
inline async<void> async_promise<void>::get_return_object() noexcept {
  return async<void>{std::coroutine_handle<async_promise<void>>::from_promise(*this)};
}

/// A coroutine that starts at once and frees itself when it ends: the runtime uses it to run
/// a task body that is a coroutine and send its reply when it finishes.
struct detached {
  struct promise_type {
    detached get_return_object() noexcept { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };
};
}  // namespace detail

CORAY_END_NAMESPACE
