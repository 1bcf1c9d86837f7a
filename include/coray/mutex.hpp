#pragma once
/// ray::mutex: a lock that every process of the runtime can take -- multiprocessing.Lock,
/// robust to its holder's death. Works with std::lock_guard, std::unique_lock and
/// std::scoped_lock.
///
///   void add_one(ray::mutex lock, ray::shared_value<int> total) {
///     std::lock_guard hold(lock);
///     total.store(total.load() + 1);                  // exact under the lock
///   }
///
/// If a process dies holding the lock, the next locker gets it (lock() succeeds, as pthread
/// robust mutexes do) and owner_died() tells it that what the lock protects may be half
/// updated. A handle is a value: copy it, pass it to tasks and actors, create it in any
/// process. The lock lives while a handle to it exists in any process.
///
/// Waiting in lock() or try_lock_for() on a runtime loop's thread keeps serving the runtime
/// (as a blocking ray::get does), so the holder can finish work that needs this process. The
/// lock is not recursive: the thread holding it must not lock it again.

#include <chrono>
#include <coray/detail/mp/shared_block.hpp>
#include <coray/detail/mp/shared_wait.hpp>
#include <coray/detail/shm/robust_mutex.hpp>
#include <cstdint>
#include <new>

CORAY_BEGIN_NAMESPACE

class condition_variable;

class mutex {
 public:
  /// A new unlocked lock. Its memory is taken at first use (locking, a copy, or passing it to
  /// a call), so that decoding a handle never allocates one to throw away.
  mutex() noexcept = default;
  /// Copies are handles to the same lock.
  mutex(const mutex& o) : block_((o.s(), o.block_)) {}
  mutex(mutex&&) noexcept = default;
  mutex& operator=(const mutex& o) {
    o.s();
    block_ = o.block_;
    return *this;
  }
  mutex& operator=(mutex&&) noexcept = default;

  /// Blocks until this thread holds the lock.
  void lock() { acquire_until(clock::time_point::max()); }
  /// Takes the lock if it is free; never waits.
  bool try_lock() {
    if (!s().lock.try_lock()) return false;
    acquired();
    return true;
  }
  /// Waits at most `timeout` for the lock; false if it did not come.
  template <class Rep, class Period>
  bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout) {
    return acquire_until(detail::deadline_in(timeout));
  }
  template <class Clock, class Duration>
  bool try_lock_until(const std::chrono::time_point<Clock, Duration>& deadline) {
    return acquire_until(detail::deadline_at(deadline));
  }
  /// Precondition: this thread holds the lock.
  void unlock() { s().lock.unlock(); }

  /// While holding the lock: true if this acquisition took it over from a process that died
  /// holding it, so the state the lock protects may be inconsistent.
  bool owner_died() const { return s().owner_died; }

  /// Handles travel as call arguments: the receiving process reaches the same lock.
  template <class Archive>
  void serialize(Archive& ar) {
    if constexpr (!Archive::is_loading) s();
    ar(block_);
    if constexpr (Archive::is_loading) {
      if (block_ && block_.size() != sizeof(state))
        throw codec_error("coray: a ray::mutex handle of another type");
    }
  }

 private:
  friend class condition_variable;  // sees the lock's owner deaths while it waits
  using clock = std::chrono::steady_clock;

  struct state {
    detail::robust_mutex lock;
    std::uint32_t deaths_seen = 0;  // the lock's owner_deaths() at the last acquisition
    bool owner_died = false;
  };

  state& s() const {
    if (!block_) {
      block_ = detail::shared_block::allocate(sizeof(state));
      new (block_.data()) state{};
    }
    return *std::launder(reinterpret_cast<state*>(block_.data()));
  }

  /// Run by each new holder: owner deaths are counted only by the acquisition that
  /// recovered the lock, so a count that moved since the last acquisition was ours.
  void acquired() {
    state& st = s();
    const std::uint32_t deaths = st.lock.owner_deaths();
    st.owner_died = deaths != st.deaths_seen;
    st.deaths_seen = deaths;
  }

  /// Serves the runtime while it waits on a loop's thread, sleeping on the lock itself
  /// between rounds: its release wakes the waiter at once (detail::wait_serving).
  bool acquire_until(clock::time_point deadline) {
    return detail::wait_serving([&] { return try_lock(); },
                                [&](clock::time_point until) {
                                  if (!s().lock.try_lock_until(until)) return false;
                                  acquired();
                                  return true;
                                },
                                deadline);
  }

  mutable detail::shared_block block_;
};

CORAY_END_NAMESPACE
