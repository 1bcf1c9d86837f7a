#pragma once
/// Cross-process waking: a doorbell a process sleeps on after spinning, rung by senders only
/// when someone sleeps.

#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <coray/version.hpp>
#include <cstdint>

CORAY_BEGIN_NAMESPACE
namespace detail {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

/// Sleeps while `*word == expected`, at most `timeout` (negative: forever). Shared futex:
/// works across processes mapping the same memory.
inline void futex_wait(std::atomic<std::uint32_t>* word, std::uint32_t expected,
                       std::chrono::nanoseconds timeout) noexcept {
  timespec ts{};
  timespec* tsp = nullptr;
  if (timeout.count() >= 0) {
    ts.tv_sec = static_cast<time_t>(timeout.count() / 1'000'000'000);
    ts.tv_nsec = static_cast<long>(timeout.count() % 1'000'000'000);
    tsp = &ts;
  }
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAIT, expected, tsp, nullptr, 0);
}

/// Wakes at most `n` sleepers on `word`.
inline void futex_wake(std::atomic<std::uint32_t>* word, int n) noexcept {
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAKE, n, nullptr, nullptr, 0);
}

inline void futex_wake_all(std::atomic<std::uint32_t>* word) noexcept { futex_wake(word, INT_MAX); }

/// One per receiving process, in shared memory. The receiver spins on its queues, then
/// announces it sleeps and sleeps; a sender that published work rings only if the receiver
/// announced sleep. The seq_cst fences on both sides (Dekker) mean one of the two always sees
/// the other: no lost wake-up. Any process may ring; only the owner sleeps.
struct alignas(64) doorbell {
  std::atomic<std::uint32_t> seq{0};
  std::atomic<std::uint32_t> sleeping{0};

  /// Called by a sender after publishing work. Cheap when the receiver is awake.
  void ring() noexcept {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (sleeping.load(std::memory_order_relaxed) != 0) ring_always();
  }
  /// Wakes the receiver whether or not it announced sleep (supervisor reports, shutdown).
  void ring_always() noexcept {
    seq.fetch_add(1, std::memory_order_seq_cst);
    futex_wake_all(&seq);
  }
  /// Owner only: sleeps until rung or `timeout`, unless `has_work()` turns true after the
  /// announcement.
  template <class HasWork>
  void sleep(HasWork&& has_work, std::chrono::nanoseconds timeout) noexcept {
    std::uint32_t s = seq.load(std::memory_order_acquire);
    sleeping.store(1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (!has_work()) futex_wait(&seq, s, timeout);
    sleeping.store(0, std::memory_order_relaxed);
  }
};

/// The spin-then-sleep policy of every receive loop. Spinning beats a futex round trip
/// (~20-40 us on VMs) by two orders of magnitude, but with more processes than cores a pure
/// spinner steals the core the sender needs, so past a short pure spin we yield.
///
/// A blocked wait (a call's body waiting in get, wait, ... for calls it made) whose yield
/// gave its core away (the yield took over 20 us: other processes had work for it) sleeps
/// after the pure spin instead, in the thread's blocked waits of the next 200 ms. A task
/// blocked on its children holds a core the children need, and a process that sleeps is
/// woken onto a core ahead of processes that kept running, where one that yields waits its
/// turn behind them. A loop waiting for its next call yields as before: there the runtime's
/// own processes take turns on the cores, and sleeping cost about 30% of async task calls.
struct backoff {
  backoff() = default;
  /// `blocked_wait`: the loop of a call's body blocked in a wait (see above).
  explicit backoff(bool blocked_wait) noexcept : blocked_wait_(blocked_wait) {}

  /// Pauses per idle round, between two looks for work. A pause takes 30-40 ns on recent
  /// Intel cores (about 140 cycles) and a few on Zen: the fewer per round, the sooner a
  /// message that arrives mid-round is seen (16 a round left about 250 ns on every receive).
  static constexpr int pauses_per_round = 2;
  /// The pure spin: idle rounds that only pause, for up to this long (or 256 rounds), before
  /// rounds yield the core. Bounded by time, since a round's look for work costs what the
  /// loop's poll costs. Short, for a caller and callee sharing a core: on one CPU a sync
  /// task took 13-16 us with 256 pauses of pure spin, 18-23 us with 8 us of it (more looks
  /// for work in it), 10-12 us with 3 us; on two cores a round trip is well under 3 us.
  static constexpr std::chrono::nanoseconds pure_spin{3'000};
  static constexpr int pure_spin_rounds = 256;
  /// During the pure spin the clock is read every this many rounds.
  static constexpr int rounds_per_read = 16;
  /// A yield that took longer than this gave the core to another process.
  static constexpr std::chrono::nanoseconds gave_core{20'000};
  /// For this long after a blocked wait's yield gave its core away, the thread's blocked
  /// waits sleep after the pure spin. Beside three CPU-bound programs on two cores, a tree of
  /// 21,891 tasks each blocking in get on its children (fib 20) took 31-40 s under
  /// ThreadSanitizer yielding, 3.5-5.3 s sleeping; 20 ms of this helped half as much as 200.
  static constexpr std::chrono::milliseconds contended_for{200};

  /// Work was found: the next idle round starts a new spin window.
  void reset() noexcept {
    idle_rounds_ = 0;
    read_in_ = 0;
    spinning_ = true;
  }
  /// The time as of this idle round: read on a stretch's first round, every 16th round of
  /// the pure spin and every round after it, at most once a round; otherwise the last
  /// reading (at most 16 rounds, about a microsecond, old). A loop's timers take this
  /// reading, so a loop with a timer set reads the clock no more often than one without.
  std::chrono::steady_clock::time_point round_time() noexcept {
    if (read_in_ != idle_rounds_ + 1 && (!spinning_ || idle_rounds_ % rounds_per_read == 0)) {
      now_ = std::chrono::steady_clock::now();
      if (idle_rounds_ == 0) idle_since_ = now_;
      read_in_ = idle_rounds_ + 1;
    }
    return now_;
  }
  /// Ends an idle round. Returns true when the caller should now sleep on its doorbell:
  /// after `spin_window` of idle rounds, or, in a blocked wait while cores are short (see
  /// contended_for), after the pure spin. Never reads the clock on a busy loop's turn.
  bool pause(std::chrono::microseconds spin_window) noexcept {
    round_time();
    ++idle_rounds_;
    if (spinning_) {
      if (idle_rounds_ <= pure_spin_rounds && now_ - idle_since_ < pure_spin) {
        for (int i = 0; i < pauses_per_round; ++i) cpu_relax();
        return false;
      }
      spinning_ = false;
    }
    if (now_ - idle_since_ < spin_window && (!blocked_wait_ || now_ >= contended_until())) {
      sched_yield();
      if (blocked_wait_) {
        const auto t = std::chrono::steady_clock::now();
        if (t - now_ > gave_core) contended_until() = t + contended_for;
      }
      return false;
    }
    return true;
  }

 private:
  /// Until when this thread's blocked waits sleep after the pure spin.
  static std::chrono::steady_clock::time_point& contended_until() noexcept {
    thread_local std::chrono::steady_clock::time_point until{};
    return until;
  }
  bool blocked_wait_ = false;
  int idle_rounds_ = 0;
  int read_in_ = 0;  // 1 + the round whose time now_ is; 0: none of this stretch
  bool spinning_ = true;
  std::chrono::steady_clock::time_point idle_since_{}, now_{};
};

}  // namespace detail
CORAY_END_NAMESPACE
