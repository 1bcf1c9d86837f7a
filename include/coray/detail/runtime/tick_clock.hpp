#pragma once
/// The timeline's clock: the CPU's time-stamp counter where it is invariant (x86-64 with
/// constant, non-stop TSC; AArch64's virtual counter), read in a few nanoseconds, and
/// steady_clock elsewhere. Ticks become steady_clock nanoseconds only when the timeline is
/// read, by the rate measured between the clock's start and that read. Loop thread only.
///
/// The orchestrator does not read it per event: a turn_stamp is read by the first event of
/// a loop turn and taken by the turn's other events, so a turn without events reads nothing
/// and a slice's ends are exact to one loop turn; a call's admission reads it anew.

#include <chrono>
#include <cstdint>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#include <x86intrin.h>
#endif

#include <coray/version.hpp>

CORAY_BEGIN_NAMESPACE
namespace detail {

class tick_clock {
 public:
  tick_clock() noexcept : counter_(has_invariant_counter()) { start_ = pair_now(); }

  /// Now, in ticks.
  std::int64_t now() const noexcept { return counter_ ? read_counter() : steady_ns(); }

  /// A converter from ticks to steady_clock nanoseconds, by the rate since the start.
  struct to_ns {
    std::int64_t tick0, ns0;
    long double ns_per_tick;
    std::int64_t operator()(std::int64_t tick) const noexcept {
      return ns0 + static_cast<std::int64_t>(static_cast<long double>(tick - tick0) * ns_per_tick);
    }
  };
  to_ns converter() const noexcept {
    if (!counter_) return {0, 0, 1.0L};
    // At least a millisecond between the two pairs, so their few nanoseconds of skew are
    // parts in a million of the rate.
    pair p = pair_now();
    while (p.ns - start_.ns < 1'000'000) p = pair_now();
    return {start_.tick, start_.ns,
            static_cast<long double>(p.ns - start_.ns) /
                static_cast<long double>(p.tick - start_.tick)};
  }

 private:
  struct pair {
    std::int64_t tick, ns;
  };
  /// A tick and the steady clock read together: the tightest of three brackets.
  pair pair_now() const noexcept {
    if (!counter_) {
      const std::int64_t n = steady_ns();
      return {n, n};
    }
    pair best{0, 0};
    std::int64_t width = -1;
    for (int i = 0; i < 3; ++i) {
      const std::int64_t a = read_counter();
      const std::int64_t n = steady_ns();
      const std::int64_t b = read_counter();
      if (width < 0 || b - a < width) {
        width = b - a;
        best = {a + (b - a) / 2, n};
      }
    }
    return best;
  }

  static std::int64_t steady_ns() noexcept {
    return std::chrono::steady_clock::now().time_since_epoch().count();
  }

#if defined(__x86_64__) || defined(_M_X64)
  static std::int64_t read_counter() noexcept { return static_cast<std::int64_t>(__rdtsc()); }
  static bool has_invariant_counter() noexcept {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(0x80000007u, &a, &b, &c, &d)) return false;  // no such leaf
    return (d & (1u << 8)) != 0;  // invariant TSC: constant rate, runs in every C-state
  }
#elif defined(__aarch64__)
  static std::int64_t read_counter() noexcept {
    std::uint64_t v;
    asm volatile("mrs %0, cntvct_el0" : "=r"(v));
    return static_cast<std::int64_t>(v);
  }
  static bool has_invariant_counter() noexcept { return true; }
#else
  static std::int64_t read_counter() noexcept { return steady_ns(); }
  static bool has_invariant_counter() noexcept { return false; }
#endif

  bool counter_;
  pair start_{};
};

/// The stamp of the loop turn: read by its first event, forgotten when the next turn begins.
class turn_stamp {
 public:
  void next_turn() noexcept { cached_ = 0; }
  /// The turn's stamp, read now if no event of the turn has read it.
  std::int64_t now() noexcept { return cached_ ? cached_ : (cached_ = clock_.now()); }
  /// Read now, for an event that must be exact (a call's admission); later events of the
  /// turn take it.
  std::int64_t fresh() noexcept { return cached_ = clock_.now(); }
  const tick_clock& clock() const noexcept { return clock_; }

 private:
  tick_clock clock_;
  std::int64_t cached_ = 0;
};

}  // namespace detail
CORAY_END_NAMESPACE
