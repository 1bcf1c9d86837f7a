#pragma once
/// Waiting for one object to settle: state_awaiter suspends a coroutine until it does (its
/// waiter resumes it through the loop), block_until_settled runs the loop until it does.

#include <coray/detail/runtime/foreign.hpp>
#include <coray/detail/runtime/object_state.hpp>
#include <coray/detail/runtime/process.hpp>
#include <coroutine>
#include <exception>
#include <optional>
#include <span>
#include <utility>

CORAY_BEGIN_NAMESPACE
namespace detail {

inline void resume_waiter(void* ctx, object_state&) {
  process& p = *process::current();
  p.coroutine_suspended(-1);
  p.schedule(std::coroutine_handle<>::from_address(ctx));
}

/// Runs the loop until `s` settles. Loop thread. Out of line: the callers' fast path (the
/// object is already there) stays small enough to inline.
[[gnu::noinline]] inline void run_until_settled(object_state& s) {
  process::require().run_until([&] { return s.settled(); });
}
/// Blocks the calling (loop) thread until `s` settles, running the loop meanwhile.
inline void block_until_settled(object_state& s) {
  if (!s.settled()) [[unlikely]]
    run_until_settled(s);
}

/// read_when_settled on a thread other than the loop's: waits for the loop to settle
/// `states` and pins their values while `read` runs.
template <class Read>
[[gnu::noinline]] auto read_when_settled_elsewhere(const char* what,
                                                   std::span<object_state* const> states,
                                                   Read& read) {
  foreign_entry e(what);
  foreign_wait w(e.get(), states, states.size(), clock::time_point::max(), true);
  return read();
}

/// Blocks until `states` have all settled, then returns `read()`: on the loop thread running
/// the loop, on another thread waiting for it, with the values pinned while `read` runs.
/// Always inline: the common case, the loop's thread and the objects already there, is a
/// few tests then `read()` (out of line, a get of a ready int cost 93 instructions, not 71).
template <class Read>
[[gnu::always_inline]] inline auto read_when_settled(const char* what,
                                                     std::span<object_state* const> states,
                                                     Read&& read) {
  if (!needs_handoff()) [[likely]] {
    for (object_state* s : states) block_until_settled(*s);
    return read();
  }
  return read_when_settled_elsewhere(what, states, read);
}

/// Whether an awaitable of ray::get or ray::wait has been used: awaited, converted,
/// .get()-ed or moved from. One that never was, the statement `ray::get(ref);`, waits in
/// its destructor (see get_awaitable) unless that destructor runs while an exception
/// unwinds the stack, which it then leaves alone: the error in flight is the one to report.
class use_tracker {
 public:
  use_tracker() noexcept = default;
  use_tracker(use_tracker&& o) noexcept : used_(std::exchange(o.used_, true)) {}
  use_tracker& operator=(use_tracker&&) = delete;
  void mark() noexcept { used_ = true; }
  /// In the owner's destructor: never used, and no exception is being unwound (an awaitable
  /// made and dropped inside a destructor that runs during unwinding does not wait either).
  /// Costs nothing on the used path: the awaitable's constructor reads no exception state.
  bool discarded() const noexcept { return !used_ && std::uncaught_exceptions() == 0; }

 private:
  bool used_ = false;
};

/// The waiting half of an awaitable of one object: suspends until it settles, or blocks
/// in the conversion forms (running the loop on its thread; waiting for it on another).
class state_awaiter {
 public:
  explicit state_awaiter(state_ptr s) : s_(std::move(s)) {}
  state_awaiter(state_awaiter&&) noexcept = default;
  bool await_ready() noexcept {
    used_.mark();
    return s_->settled();
  }
  void await_suspend(std::coroutine_handle<> h) {
    s_->waiters.push_back({&resume_waiter, h.address()});
    process::current()->coroutine_suspended(+1);
  }

 protected:
  ~state_awaiter() = default;
  template <class Read>
  auto read_settled(Read&& read) {
    used_.mark();
    object_state* s = s_.get();
    return read_when_settled("ray::get", {&s, 1}, [&] { return read(*s_); });
  }
  /// For the destructor of an awaitable never used: waits for the object to settle and
  /// raises its error. The used case, every get but the statement, is one test inline.
  void settle_if_discarded() {
    if (used_.discarded()) [[unlikely]]
      settle_discarded();
  }
  state_ptr s_;

 private:
  [[gnu::noinline]] void settle_discarded() {
    object_state* s = s_.get();
    if (!s || !all_usable({&s, 1})) return;
    read_settled([](const object_state& st) { st.rethrow_if_failed(); });
  }

  use_tracker used_;
};

}  // namespace detail
CORAY_END_NAMESPACE
