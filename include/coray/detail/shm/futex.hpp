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
struct backoff {
  static constexpr int pure_spins = 16;  // x 16 pauses: 6 us on a Zen 2 core, ~12 us on Skylake
  int idle_rounds = 0;
  std::chrono::steady_clock::time_point idle_since{};

  /// Work was found: the next idle round starts a new spin window.
  void reset() noexcept { idle_rounds = 0; }
  /// Returns true when the caller should now sleep on its doorbell: after `spin_window` of
  /// idle rounds. The clock is read once per idle stretch, never on a busy loop's turn.
  bool pause(std::chrono::microseconds spin_window) noexcept {
    if (idle_rounds == 0) idle_since = std::chrono::steady_clock::now();
    if (idle_rounds++ < pure_spins) {
      for (int i = 0; i < 16; ++i) cpu_relax();
      return false;
    }
    if (std::chrono::steady_clock::now() - idle_since < spin_window) {
      sched_yield();
      return false;
    }
    return true;
  }
};

}  // namespace detail
CORAY_END_NAMESPACE
