#pragma once
/// What the synchronisation primitives in the segment share (ray::semaphore, ray::event,
/// ray::condition_variable, ray::barrier, ray::recursive_mutex): a handle type for a state
/// kept in a shared block and the waiting loop.
///
/// A wait on a runtime loop's thread keeps serving the runtime (as ray::mutex and a blocking
/// ray::get do), so the process that would wake the waiter may need this one meanwhile: it
/// serves what has arrived, then sleeps on the primitive's own futex word for at most a
/// 1 ms slice; the word's change wakes it at once. On any other thread it sleeps until its
/// deadline, or in slices where the primitive checks for a dead peer between them.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <coray/detail/mp/shared_block.hpp>
#include <coray/detail/shm/futex.hpp>
#include <coray/errors.hpp>
#include <cstddef>
#include <cstdint>
#include <new>
#include <string>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// How long a waiter sleeps between two rounds of serving its runtime or checking its peers.
inline constexpr std::chrono::milliseconds wait_slice{1};

/// Sleeps while `*word == expected`, until `deadline` at most.
inline void futex_wait_until(std::atomic<std::uint32_t>& word, std::uint32_t expected,
                             clock::time_point deadline) noexcept {
  if (deadline == clock::time_point::max())
    return futex_wait(&word, expected, std::chrono::nanoseconds(-1));
  const auto left = deadline - clock::now();
  if (left > clock::duration::zero())
    futex_wait(&word, expected, std::chrono::duration_cast<std::chrono::nanoseconds>(left));
}

/// Waits until `take()` returns true (it also takes what it waits for: a unit, the lock) or
/// `deadline`; returns whether it took. `sleep(until)` sleeps on the primitive until woken or
/// `until` and may take, returning true if it did. `sliced` bounds every sleep to one slice,
/// for primitives that look for a dead peer in `sleep`.
template <class Take, class Sleep>
bool wait_serving(Take&& take, Sleep&& sleep, clock::time_point deadline, bool sliced = false) {
  if (take()) return true;
  process* p = process::here();
  for (;;) {
    const auto now = clock::now();
    if (now >= deadline) return take();
    if (p != nullptr && p->run_until(take, now)) return true;  // serves what has arrived
    const auto until =
        p != nullptr || sliced ? std::min(deadline, clock::now() + wait_slice) : deadline;
    if (sleep(until) || take()) return true;
  }
}

/// A handle on a `State` kept in a shared block, with shared_value's rules: copies share the
/// state, the block is taken at first use (an operation, a copy, or passing it to a call) so
/// that decoding never allocates one to throw away, and handles travel as call arguments.
/// `State(param)` builds it in `State::bytes(param)` bytes; `State::fits(bytes)` checks a
/// decoded block's size; `State::name` names it in errors.
template <class State>
class shared_handle {
 public:
  shared_handle(const shared_handle& o) : param_(o.param_), block_((o.state(), o.block_)) {}
  shared_handle(shared_handle&&) noexcept = default;
  shared_handle& operator=(const shared_handle& o) {
    o.state();
    param_ = o.param_;
    block_ = o.block_;
    return *this;
  }
  shared_handle& operator=(shared_handle&&) noexcept = default;

  /// Handles travel as call arguments: the receiving process reaches the same state.
  template <class Archive>
  void serialize(Archive& ar) {
    if constexpr (!Archive::is_loading) state();
    ar(block_);
    if constexpr (Archive::is_loading) {
      if (block_ && !State::fits(block_.size()))
        throw codec_error(std::string("coray: a ") + State::name + " handle of another type");
    }
  }

 protected:
  explicit shared_handle(std::uint32_t param) noexcept : param_(param) {}
  ~shared_handle() = default;

  State& state() const {
    if (!block_) {
      block_ = shared_block::allocate(State::bytes(param_));
      new (block_.data()) State(param_);
    }
    return *std::launder(reinterpret_cast<State*>(block_.data()));
  }

 private:
  std::uint32_t param_;
  mutable shared_block block_;
};

/// A futex word whose top bit says that someone may sleep on it: the side that changes the
/// word clears the bit and wakes only if it was set, so an uncontended change is one atomic
/// instruction. A sleeper that died leaves the bit set: it costs the next change one wake.
inline constexpr std::uint32_t sleepers_bit = 1u << 31;

/// Sleeps on `word` until `until`, unless `done(value)` holds for its value first.
template <class Done>
void sleep_on(std::atomic<std::uint32_t>& word, Done&& done, clock::time_point until) noexcept {
  std::uint32_t v = word.load(std::memory_order_acquire);
  if (done(v & ~sleepers_bit)) return;
  if ((v & sleepers_bit) == 0 &&
      !word.compare_exchange_strong(v, v | sleepers_bit, std::memory_order_acq_rel))
    return;  // it changed: the caller looks again
  futex_wait_until(word, v | sleepers_bit, until);
}

}  // namespace detail
CORAY_END_NAMESPACE
