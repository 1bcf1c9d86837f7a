#pragma once
/// The object store's user surface: ray::put, ray::get, ray::wait and ray::cancel, each
/// usable with co_await in a coroutine or blocking in plain code; with it, the objects read
/// and built in place (ray::get_view, ray::put_buffer: <coray/object_view.hpp>).
///
///   auto img = ray::put(std::vector<double>(9'000'000, 1.0));   // once, into shared memory
///   std::vector<double> copy = ray::get(img);                   // blocking
///   auto view = co_await ray::get_view(img);                    // in place, no copy
///   auto [ready, pending] = co_await ray::wait(refs, {.num_returns = 1});

#include <fmt/format.h>

#include <chrono>
#include <coray/codec.hpp>
#include <coray/detail/runtime/foreign.hpp>
#include <coray/detail/runtime/process.hpp>
#include <coray/detail/runtime/state_awaiter.hpp>
#include <coray/detail/runtime/stored_value.hpp>
#include <coray/object_ref.hpp>
#include <coray/object_view.hpp>
#include <coray/sync_wait.hpp>
#include <coroutine>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE

/// What ray::get returns: co_await it in a coroutine, or convert it to T to block. Used as a
/// statement, `ray::get(ref);` blocks until the object is there and throws its error, as
/// Ray's `ray.get(ref)` does: its destructor waits, unless it was awaited or converted (it
/// then waits only once) or is destroyed by an exception's unwinding.
template <class T>
class get_awaitable : public detail::state_awaiter {
 public:
  using state_awaiter::state_awaiter;
  get_awaitable(get_awaitable&&) noexcept = default;
  ~get_awaitable() noexcept(false) { settle_if_discarded(); }
  T await_resume() { return detail::read_value<T>(*s_); }
  /// Blocking form: waits and returns the value or throws its error. Thread-safe in the driver.
  operator T() && {
    return read_settled([](const detail::object_state& s) { return detail::read_value<T>(s); });
  }
  /// Blocking form, explicitly.
  T get() && { return static_cast<T>(std::move(*this)); }
};

template <>
class get_awaitable<void> : public detail::state_awaiter {
 public:
  using state_awaiter::state_awaiter;
  get_awaitable(get_awaitable&&) noexcept = default;
  ~get_awaitable() noexcept(false) { settle_if_discarded(); }
  void await_resume() { s_->rethrow_if_failed(); }
  void get() && {
    read_settled([](const detail::object_state& s) { s.rethrow_if_failed(); });
  }
};

/// The value of `ref`, decoded into a T of this process.
template <class T>
get_awaitable<T> get(const object_ref<T>& ref) {
  detail::require_usable_ref(ref.state(), "ray::get");
  return get_awaitable<T>(ref.state());
}

struct get_options {
  /// Give up after this long with ray::get_timeout; none: wait as long as it takes.
  std::optional<std::chrono::nanoseconds> timeout = std::nullopt;
};

template <class T>
class wait_awaitable;
struct wait_options;

/// What ray::get with a timeout returns: co_await it, or convert it to T to block.
template <class T>
class timed_get_awaitable;

/// What ray::get of several refs returns: the values in the order of the refs. As a
/// statement it waits for them all and throws the first error, as get_awaitable does.
template <class T>
class get_all_awaitable {
 public:
  explicit get_all_awaitable(std::vector<object_ref<T>> refs) : refs_(std::move(refs)) {}
  get_all_awaitable(get_all_awaitable&&) noexcept = default;
  ~get_all_awaitable() noexcept(false) {
    if (!used_.discarded() || refs_.empty()) return;
    auto states = this->states();
    if (!detail::all_usable(states)) return;
    detail::read_when_settled("ray::get", states, [&] {
      for (auto* s : states) s->rethrow_if_failed();
    });
  }
  bool await_ready() noexcept {
    used_.mark();
    for (auto& r : refs_)
      if (!r.is_ready()) ++pending_;
    return pending_ == 0;
  }
  void await_suspend(std::coroutine_handle<> h) {
    h_ = h;
    for (auto& r : refs_)
      if (!r.is_ready()) r.state()->waiters.push_back({&on_settled, this});
    detail::process::current()->coroutine_suspended(+1);
  }
  std::vector<T> await_resume() { return values(); }
  operator std::vector<T>() && {
    used_.mark();
    if (!detail::needs_handoff()) [[likely]] {  // the loop thread: no list of states to make
      for (auto& r : refs_) detail::block_until_settled(*r.state());
      return values();
    }
    return detail::read_when_settled("ray::get", states(), [this] { return values(); });
  }
  std::vector<T> get() && { return static_cast<std::vector<T>>(std::move(*this)); }

 private:
  std::vector<detail::object_state*> states() const {
    std::vector<detail::object_state*> out;
    out.reserve(refs_.size());
    for (auto& r : refs_) out.push_back(r.state().get());
    return out;
  }
  static void on_settled(void* ctx, detail::object_state&) {
    auto* self = static_cast<get_all_awaitable*>(ctx);
    if (--self->pending_ == 0)
      detail::resume_waiter(self->h_.address(), *self->refs_.front().state());
  }
  std::vector<T> values() {
    std::vector<T> out;
    out.reserve(refs_.size());
    for (auto& r : refs_) out.push_back(detail::read_value<T>(*r.state()));
    return out;
  }
  std::vector<object_ref<T>> refs_;
  std::size_t pending_ = 0;
  std::coroutine_handle<> h_;
  detail::use_tracker used_;
};

template <class T>
get_all_awaitable<T> get(std::vector<object_ref<T>> refs) {
  detail::require_usable_refs(refs, "ray::get");
  return get_all_awaitable<T>(std::move(refs));
}

/// Puts `value` in the object store once; tasks that take the ref read it there.
/// Thread-safe in the driver: another thread encodes the value itself.
template <class T>
object_ref<detail::put_type_t<T>> put(const T& value) {
  using stored = detail::put_type_t<T>;
  static_assert(is_encodable_v<stored>,
                "ray::put: this type cannot be stored; give it a `template <class Archive> void "
                "serialize(Archive&)` member or make it an aggregate of storable members");
  auto store = [&](detail::process& p) {
    auto s = detail::make_state(p);
    if constexpr (std::is_same_v<stored, std::decay_t<T>>)
      detail::store_value(p, *s, value);
    else
      detail::store_value(p, *s, stored(value));
    return object_ref<stored>(std::move(s));
  };
  if (!detail::needs_handoff()) return store(detail::process::require("ray::put"));
  detail::foreign_entry e("ray::put");
  return store(e.get());
}

struct wait_options {
  /// Return once this many refs are ready (at most the number of refs).
  std::size_t num_returns = 1;
  /// Give up waiting after this long and return what is ready; none: wait as long as it takes.
  std::optional<std::chrono::nanoseconds> timeout = std::nullopt;
};

template <class T>
struct wait_result {
  std::vector<object_ref<T>> ready;    // at most num_returns, in the order given
  std::vector<object_ref<T>> pending;  // the rest, in the order given
};

/// What ray::wait returns: co_await it, or convert it to wait_result<T> to block. As a
/// statement it blocks until the wait is over, as get_awaitable does.
template <class T>
class wait_awaitable {
 public:
  wait_awaitable(std::vector<object_ref<T>> refs, wait_options o)
      : refs_(std::move(refs)), opts_(o) {
    opts_.num_returns = std::min(opts_.num_returns, refs_.size());
  }
  wait_awaitable(wait_awaitable&& o) noexcept
      : refs_(std::move(o.refs_)),
        opts_(o.opts_),
        op_(std::exchange(o.op_, nullptr)),
        used_(std::move(o.used_)) {}
  ~wait_awaitable() noexcept(false) {
    if (!used_.discarded() || refs_.empty()) return;
    require_usable();
    (void)static_cast<wait_result<T>>(std::move(*this));
  }
  bool await_ready() {
    used_.mark();
    detail::process::require().serve_once();
    return checked_ready_count() >= opts_.num_returns || timed_out_now();
  }
  void await_suspend(std::coroutine_handle<> h) {
    auto& p = detail::process::require();
    op_ = new op{};
    op_->h = h;
    op_->needed = opts_.num_returns - ready_count();
    for (auto& r : refs_)
      if (!r.is_ready()) {
        ++op_->refs;
        r.state()->waiters.push_back({&op::on_settled, op_});
      }
    if (const auto deadline = this->deadline(); deadline != detail::clock::time_point::max()) {
      ++op_->refs;
      op_->timer = p.add_timer(deadline, &op::on_timeout, op_);
    }
    p.coroutine_suspended(+1);
  }
  wait_result<T> await_resume() {
    if (op_) {
      op_->drop();
      op_ = nullptr;
    }
    return split();
  }
  /// Blocking form. Thread-safe in the driver.
  operator wait_result<T>() && {
    used_.mark();
    if (detail::needs_handoff()) {
      detail::foreign_entry e("ray::wait");
      require_usable();
      std::vector<detail::object_state*> states;
      states.reserve(refs_.size());
      for (auto& r : refs_) states.push_back(r.state().get());
      detail::foreign_wait w(e.get(), states, opts_.num_returns, deadline(), false);
      return split();
    }
    auto& p = detail::process::require();
    const auto deadline = this->deadline();
    p.serve_once();
    const std::size_t ready = checked_ready_count();
    if (ready >= opts_.num_returns || timed_out_now()) return split();
    // Counted as refs settle (each settles once), not by looking at every ref on each turn
    // of the loop: waiting for most of 100,000 refs rescanned them all per turn.
    auto* c = new counter{opts_.num_returns - ready};
    for (auto& r : refs_)
      if (!r.is_ready()) {
        ++c->refs;
        r.state()->waiters.push_back({&counter::on_settled, c});
      }
    p.run_until([c] { return c->needed == 0; }, deadline);
    c->drop();
    return split();
  }
  wait_result<T> get() && { return static_cast<wait_result<T>>(std::move(*this)); }

 private:
  // Outlives the wait: refs that settle later still hold it.
  struct op {
    std::coroutine_handle<> h;
    std::size_t needed = 0;
    int refs = 1;
    bool done = false;
    std::uint64_t timer = 0;
    void drop() {
      if (--refs == 0) delete this;
    }
    void complete() {
      done = true;
      auto& p = *detail::process::current();
      if (timer) {
        p.cancel_timer(timer);
        timer = 0;
        --refs;
      }
      p.coroutine_suspended(-1);
      p.schedule(h);
    }
    static void on_settled(void* ctx, detail::object_state&) {
      auto* o = static_cast<op*>(ctx);
      if (!o->done && --o->needed == 0) o->complete();
      o->drop();
    }
    static void on_timeout(void* ctx) {
      auto* o = static_cast<op*>(ctx);
      o->timer = 0;
      if (!o->done) o->complete();
      o->drop();
    }
  };
  /// The blocking form's count of refs still to settle. Outlives the wait: refs that settle
  /// later still hold it.
  struct counter {
    std::size_t needed;
    int refs = 1;
    void drop() {
      if (--refs == 0) delete this;
    }
    static void on_settled(void* ctx, detail::object_state&) {
      auto* c = static_cast<counter*>(ctx);
      if (c->needed) --c->needed;
      c->drop();
    }
  };
  bool timed_out_now() const noexcept { return opts_.timeout && opts_.timeout->count() <= 0; }
  detail::clock::time_point deadline() const noexcept {
    return opts_.timeout ? detail::deadline_after(*opts_.timeout)
                         : detail::clock::time_point::max();
  }
  /// How many refs are ready, counting no further than `enough`.
  std::size_t ready_count(std::size_t enough = SIZE_MAX) const noexcept {
    std::size_t n = 0;
    for (auto& r : refs_)
      if (r.is_ready() && ++n == enough) break;
    return n;
  }
  /// ready_count, also checking the refs (detail::usable_state) in the same pass.
  std::size_t checked_ready_count() const {
    const std::uint32_t live = detail::live_epoch();
    std::size_t n = 0;
    bool usable = true;
    for (auto& r : refs_) {
      const detail::object_state* s = r.state().get();
      usable &= detail::usable_state(s, live);
      n += s && s->settled();
    }
    if (!usable) [[unlikely]]
      require_usable();  // throws, saying why
    return n;
  }
  void require_usable() const { detail::require_usable_refs(refs_, "ray::wait"); }
  // Moves the refs out (the wait is over): no reference counts change. The ready ones are
  // taken out up to num_returns, reading the states only that far; the rest close up in
  // place and become `pending` with the same buffer. A loop of waits for one of n refs costs
  // n pointer moves per wait, neither counted copies nor an allocation.
  wait_result<T> split() {
    wait_result<T> w;
    w.ready.reserve(opts_.num_returns);
    auto it = refs_.begin(), out = it;
    for (; it != refs_.end() && w.ready.size() < opts_.num_returns; ++it) {
      if (it->is_ready()) {
        w.ready.push_back(std::move(*it));
      } else {
        if (out != it) *out = std::move(*it);
        ++out;
      }
    }
    refs_.erase(std::move(it, refs_.end(), out), refs_.end());
    w.pending = std::move(refs_);
    refs_.clear();
    return w;
  }
  template <class>
  friend class timed_get_awaitable;
  std::vector<object_ref<T>> refs_;
  wait_options opts_;
  op* op_ = nullptr;
  detail::use_tracker used_;
};

/// Waits until `num_returns` of `refs` are ready or the timeout passes.
template <class T>
wait_awaitable<T> wait(std::vector<object_ref<T>> refs, wait_options opts = {}) {
  // The refs are checked (empty, or of a runtime that has ended) in the wait's first look at
  // them, which reads each one anyway: a loop of waits on n refs is O(n) per call.
  return wait_awaitable<T>(std::move(refs), opts);
}

template <class T>
class timed_get_awaitable {
 public:
  timed_get_awaitable(const object_ref<T>& ref, std::chrono::nanoseconds timeout)
      : ref_(ref), timeout_(timeout), wait_({ref}, {.num_returns = 1, .timeout = timeout}) {
    wait_.used_.mark();  // used through this one
  }
  timed_get_awaitable(timed_get_awaitable&&) noexcept = default;
  /// As a statement: waits, and throws the object's error or get_timeout.
  ~timed_get_awaitable() noexcept(false) {
    detail::object_state* s = ref_.state().get();
    if (used_.discarded() && s && detail::all_usable({&s, 1}))
      take([](const detail::object_state& st) { st.rethrow_if_failed(); });
  }
  bool await_ready() noexcept {
    used_.mark();
    return wait_.await_ready();
  }
  void await_suspend(std::coroutine_handle<> h) { wait_.await_suspend(h); }
  T await_resume() { return finish(wait_.await_resume()); }
  /// Blocking form. Thread-safe in the driver.
  operator T() && {
    return take([](const detail::object_state& s) { return detail::read_value<T>(s); });
  }
  T get() && {
    return take([](const detail::object_state& s) { return detail::read_value<T>(s); });
  }

 private:
  /// Waits at most the timeout, then returns `read(state)` or throws get_timeout.
  template <class Read>
  auto take(Read&& read) {
    used_.mark();
    if (detail::needs_handoff()) {
      detail::foreign_entry e("ray::get");
      detail::object_state* s = ref_.state().get();
      detail::foreign_wait w(e.get(), {&s, 1}, 1, detail::deadline_after(timeout_), true);
      if (!s->settled()) throw_timeout();
      return read(*s);
    }
    if (static_cast<wait_result<T>>(std::move(wait_)).ready.empty()) throw_timeout();
    return read(*ref_.state());
  }
  T finish(const wait_result<T>& w) {
    if (w.ready.empty()) throw_timeout();
    return detail::read_value<T>(*ref_.state());
  }
  [[noreturn]] void throw_timeout() const {
    throw get_timeout(
        fmt::format("ray::get: the object was not ready within {} ms",
                    std::chrono::duration_cast<std::chrono::milliseconds>(timeout_).count()));
  }
  object_ref<T> ref_;
  std::chrono::nanoseconds timeout_;
  wait_awaitable<T> wait_;
  detail::use_tracker used_;
};

/// The value of `ref`, waiting at most `opts.timeout` (then ray::get_timeout).
template <class T>
timed_get_awaitable<T> get(const object_ref<T>& ref, get_options opts) {
  detail::require_usable_ref(ref.state(), "ray::get");
  return timed_get_awaitable<T>(ref, opts.timeout.value_or(std::chrono::nanoseconds::max()));
}

struct cancel_options {
  /// Also kill the worker running the task (tasks only; actor calls cannot be forced).
  bool force = false;
};

/// Cancels the call whose result `ref` is: a call still waiting is never run; one running
/// runs on (unless `force`), but either way getting `ref` raises ray::cancelled. A call
/// that already finished keeps its result. Driver only; thread-safe there.
template <class T>
void cancel(const object_ref<T>& ref, cancel_options opts = {}) {
  detail::on_loop("ray::cancel", [&](detail::process& p) {
    if (!p.as_driver()) throw usage_error("ray::cancel is only available in the driver process");
    // An empty ref, or one of an ended runtime (its id may name another call now): nothing.
    if (ref.valid() && ref.state()->id && ref.state()->epoch == p.epoch)
      p.cancel_call(ref.state()->id, opts.force);
  });
}

CORAY_END_NAMESPACE
