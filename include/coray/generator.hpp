#pragma once
/// Streaming generators, as Ray's `num_returns="streaming"`: a task or actor method that
/// returns `ray::generator<T>` and `co_yield`s each item gives its caller a
/// `ray::object_ref_generator<T>`, a stream of refs it consumes while the items are made:
///
///   ray::generator<int> count_to(int n) {
///     for (int i = 0; i < n; ++i) co_yield i;
///   }
///   auto stream = ray::task<count_to>.remote(5);
///   for (ray::object_ref<int> item : stream) use(ray::get(item));   // blocking
///   while (auto item = co_await stream.next()) use(co_await ray::get(*item));  // coroutine
///
/// Items arrive in order. The producer runs at most `stream_window` (1,024) items ahead of
/// its consumer, then waits. An exception in the generator ends the stream with that error
/// after the items made before it; a crashed worker likewise gives ray::worker_crashed (an
/// actor's death ray::actor_died), or, when the call's retries allow, the generator runs
/// again from the start and the items already delivered are skipped (a generator retried
/// must yield the same items). cancel(), or dropping the stream before its end, stops the
/// producer. Streams are made and consumed in the driver (any of its threads) or in a task
/// or actor (its loop thread). design.md, "Streaming generators".

#include <coray/detail/runtime/foreign.hpp>
#include <coray/detail/runtime/process.hpp>
#include <coray/detail/runtime/state_awaiter.hpp>
#include <coray/detail/runtime/stream_state.hpp>
#include <coray/errors.hpp>
#include <coray/object_ref.hpp>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <iterator>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

CORAY_BEGIN_NAMESPACE

/// The return type of a generator body: a coroutine that `co_yield`s values of T. Run in
/// the process that runs the call; also usable on its own as an input range.
template <class T>
class generator {
  static_assert(!std::is_reference_v<T>, "ray::generator<T>: items are values");

 public:
  struct promise_type {
    const T* current = nullptr;
    std::exception_ptr error;

    generator get_return_object() noexcept {
      return generator(std::coroutine_handle<promise_type>::from_promise(*this));
    }
    std::suspend_always initial_suspend() noexcept { return {}; }
    std::suspend_always final_suspend() noexcept { return {}; }
    std::suspend_always yield_value(const T& v) noexcept {
      current = std::addressof(v);
      return {};
    }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { error = std::current_exception(); }
    template <class U>
    std::suspend_never await_transform(U&&) = delete;  // a generator body does not co_await
  };

  class iterator {
   public:
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    explicit iterator(std::coroutine_handle<promise_type> h = {}) noexcept : h_(h) {}
    const T& operator*() const noexcept { return *h_.promise().current; }
    iterator& operator++() {
      h_.resume();
      rethrow();
      return *this;
    }
    void operator++(int) { ++*this; }
    bool operator==(std::default_sentinel_t) const noexcept { return !h_ || h_.done(); }
    void rethrow() const {
      if (h_.done() && h_.promise().error) std::rethrow_exception(h_.promise().error);
    }

   private:
    std::coroutine_handle<promise_type> h_;
  };

  generator(generator&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  generator& operator=(generator o) noexcept {
    std::swap(h_, o.h_);
    return *this;
  }
  ~generator() {
    if (h_) h_.destroy();
  }

  /// Runs the body to its first item (or its end). Once only.
  iterator begin() {
    iterator it(h_);
    if (h_) ++it;
    return it;
  }
  std::default_sentinel_t end() const noexcept { return {}; }

 private:
  explicit generator(std::coroutine_handle<promise_type> h) noexcept : h_(h) {}
  std::coroutine_handle<promise_type> h_;
};

/// The caller's side of a streaming generator's call: the refs to its items, in order, as
/// they are made. Move-only (one consumer), used in the process that made the call.
template <class T>
class object_ref_generator {
 public:
  object_ref_generator() noexcept = default;
  explicit object_ref_generator(std::shared_ptr<detail::stream_state> s) noexcept
      : s_(std::move(s)) {}
  object_ref_generator(object_ref_generator&& o) noexcept = default;
  object_ref_generator& operator=(object_ref_generator&& o) noexcept {
    if (this != &o) {
      stop_quietly();
      s_ = std::move(o.s_);
    }
    return *this;
  }
  /// Dropping a stream before its end stops its producer.
  ~object_ref_generator() { stop_quietly(); }

  /// The next item's ref, or nullopt at the stream's end; throws the call's error (after the
  /// items made before it). `co_await s.next()` in a coroutine; `.get()` (or converting to
  /// the optional) blocks.
  class next_awaitable : detail::state_awaiter {
   public:
    next_awaitable(object_ref_generator& g, detail::state_ptr s)
        : detail::state_awaiter(std::move(s)), g_(g) {}
    using detail::state_awaiter::await_ready;
    using detail::state_awaiter::await_suspend;
    std::optional<object_ref<T>> await_resume() { return g_.take(); }
    std::optional<object_ref<T>> get() {
      read_settled([](const detail::object_state&) {});
      return g_.take();
    }
    operator std::optional<object_ref<T>>() { return get(); }  // NOLINT: blocking form

   private:
    object_ref_generator& g_;
  };

  next_awaitable next() { return next_awaitable(*this, awaited()); }

  /// Blocking iteration: `for (ray::object_ref<T> item : stream)`.
  class iterator {
   public:
    using value_type = object_ref<T>;
    using difference_type = std::ptrdiff_t;
    explicit iterator(object_ref_generator* g) : g_(g) { ++*this; }
    const object_ref<T>& operator*() const noexcept { return *item_; }
    iterator& operator++() {
      item_ = g_->next().get();
      return *this;
    }
    void operator++(int) { ++*this; }
    bool operator==(std::default_sentinel_t) const noexcept { return !item_; }

   private:
    object_ref_generator* g_;
    std::optional<object_ref<T>> item_;
  };
  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() const noexcept { return {}; }

  /// Stops the producer: its call is cancelled, and the next item not yet delivered is a
  /// ray::cancelled error. Items delivered before stay.
  void cancel() {
    require();
    detail::on_loop("ray::object_ref_generator::cancel", [&](detail::process& p) {
      if (!s_->ended && s_->id) p.stream_credit(s_->id, 0);
      return 0;
    });
  }
  /// The call's id (ray::cancel takes it too).
  std::uint64_t id() const noexcept { return s_ ? s_->id : 0; }
  bool valid() const noexcept { return static_cast<bool>(s_); }

 private:
  void require() const {
    if (!s_) throw usage_error("ray::object_ref_generator: the stream is empty (moved from)");
  }
  /// What the consumer waits on before it takes the next item: the item, if delivered (in
  /// a worker its value may still be on its way); else a state settled when one arrives or
  /// the stream ends.
  detail::state_ptr awaited() {
    require();
    return detail::on_loop("ray::object_ref_generator::next", [&](detail::process& p) {
      detail::stream_state& s = *s_;
      if (!s.items.empty()) return s.items.front();
      if (!s.wake) {
        s.wake = detail::make_state(p);
        if (s.ended) s.wake->set_inline({});
      }
      return s.wake;
    });
  }
  /// Takes the next item (delivered now, or the stream ended): its ref, or the end.
  std::optional<object_ref<T>> take() {
    return detail::on_loop(
        "ray::object_ref_generator::next", [&](detail::process& p) -> std::optional<object_ref<T>> {
          detail::stream_state& s = *s_;
          if (s.items.empty()) {  // the end, not an item
            if (s.error) std::rethrow_exception(s.error);
            return std::nullopt;
          }
          detail::state_ptr item = std::move(s.items.front());
          s.items.pop_front();
          ++s.base;
          if (!s.ended &&
              s.base + detail::stream_window >= s.credited + detail::stream_window / 2) {
            s.credited = s.base + detail::stream_window;
            p.stream_credit(s.id, s.credited);
          }
          return object_ref<T>(std::move(item));
        });
  }
  void stop_quietly() noexcept {
    if (!s_) return;
    try {
      if (detail::process::here() || detail::runtime_gate::instance().accepts_calls()) cancel();
    } catch (...) {  // the runtime is ending: its calls end with it
    }
    s_.reset();
  }

  std::shared_ptr<detail::stream_state> s_;
};

namespace detail {
template <class T>
inline constexpr bool is_generator_v = false;
template <class T>
inline constexpr bool is_generator_v<generator<T>> = true;
}  // namespace detail

CORAY_END_NAMESPACE
