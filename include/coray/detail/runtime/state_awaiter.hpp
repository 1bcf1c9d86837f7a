#pragma once
/// Waiting for one object to settle: state_awaiter suspends a coroutine until it does (its
/// waiter resumes it through the loop), block_until_settled runs the loop until it does.

#include <coray/detail/runtime/foreign.hpp>
#include <coray/detail/runtime/object_state.hpp>
#include <coray/detail/runtime/process.hpp>
#include <coroutine>
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

/// Blocks the calling (loop) thread until `s` settles, running the loop meanwhile.
inline void block_until_settled(object_state& s) {
  if (!s.settled()) process::require().run_until([&] { return s.settled(); });
}

/// Blocks until `states` have all settled, then returns `read()`: on the loop thread running
/// the loop, on another thread waiting for it, with the values pinned while `read` runs.
template <class Read>
auto read_when_settled(const char* what, std::span<object_state* const> states, Read&& read) {
  if (!needs_handoff()) {
    for (object_state* s : states) block_until_settled(*s);
    return read();
  }
  foreign_entry e(what);
  foreign_wait w(e.get(), states, states.size(), clock::time_point::max(), true);
  return read();
}

/// The waiting half of an awaitable of one object: suspends until it settles, or blocks
/// in the conversion forms (running the loop on its thread; waiting for it on another).
class state_awaiter {
 public:
  explicit state_awaiter(state_ptr s) : s_(std::move(s)) {}
  bool await_ready() const noexcept { return s_->settled(); }
  void await_suspend(std::coroutine_handle<> h) {
    s_->waiters.push_back({&resume_waiter, h.address()});
    process::current()->coroutine_suspended(+1);
  }

 protected:
  template <class Read>
  auto read_settled(Read&& read) {
    object_state* s = s_.get();
    return read_when_settled("ray::get", {&s, 1}, [&] { return read(*s_); });
  }
  state_ptr s_;
};

}  // namespace detail
CORAY_END_NAMESPACE
