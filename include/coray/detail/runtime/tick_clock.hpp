#pragma once
/// The timeline's clock: the CPU's time-stamp counter where it is invariant (x86-64 with
/// constant, non-stop TSC; AArch64's virtual counter), read in a few nanoseconds, and
/// steady_clock elsewhere. Ticks become steady_clock nanoseconds only when the timeline is
/// read, by the rate measured between the clock's start and that read. Loop thread only.
///
/// The orchestrator does not read it per event: a turn_stamp is read by the first event of
/// a loop turn and taken by the turn's other events, so a turn without events reads nothing
/// and a slice's ends are exact to one loop turn. A call's admission reads it anew, except
/// inside a fast run of admissions, which reads it once per eight (turn_stamp::admit).

#include <algorithm>
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

  /// How many ticks make `ns` nanoseconds, by the rate since the start; 0 until 100 us have
  /// passed since it (too short to measure the rate on). Reads steady_clock.
  std::int64_t ticks_in(std::int64_t ns) const noexcept {
    if (!counter_) return ns;
    const std::int64_t elapsed = steady_ns() - start_.ns;
    if (elapsed < 100'000) return 0;
    return std::max<std::int64_t>(
        1, static_cast<std::int64_t>(static_cast<long double>(read_counter() - start_.tick) *
                                     static_cast<long double>(ns) /
                                     static_cast<long double>(elapsed)));
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
///
/// And the stamps of admitted calls. A clock read costs about as much as 4% of a call's
/// work in the driver, so a run of admissions with no loop turn between them (a loop
/// submitting calls) reads the clock at the first of each eight: the seven between two
/// readings wait in `pending_` with the earlier reading and are spread evenly between the
/// two when the next is taken (by the eighth admission, the next loop turn, or a call about
/// to leave the table: `settle`). The even spreading is trusted only while two readings
/// eight admissions apart are within `tight_ns` (10 us) of each other: once a pair is
/// further apart (the caller does work between submissions), every admission reads the
/// clock until two successive readings are within an eighth of that again. So a call's
/// submission is exact, or within 10 us in a fast run, or, in the one group where a run
/// slows down, between the two readings around it.
class turn_stamp {
 public:
  static constexpr int group = 8;                   // admissions per reading in a fast run
  static constexpr std::int64_t tight_ns = 10'000;  // how close a group's readings must be

  void next_turn() noexcept {
    settle();
    open_ = false;
    cached_ = 0;
  }
  /// The turn's stamp, read now if no event of the turn has read it.
  std::int64_t now() noexcept { return cached_ ? cached_ : read(); }
  /// A call's admission: its stamp into `slot` (nonzero), now or when the next reading is
  /// taken. `slot` must stay where it is until then (`settle` before it goes). A send made
  /// while admitting takes the last reading, which is not later than this.
  void admit(std::int64_t& slot) noexcept {
    if (waits_next()) {
      slot = opened_;  // for now: not later than the admission
      pending_at_[pending_++] = &slot;
      return;
    }
    const std::int64_t t = clock_.now();
    const std::int64_t since = t - opened_;
    const int waited = pending_;
    spread(t);
    if (!tight_ticks_) tight_ticks_ = clock_.ticks_in(tight_ns);  // 0 until measurable
    // A full group: its readings close enough? Reading every admission: would eight fit?
    open_ =
        tight_ticks_ && opened_ && (waited ? since <= tight_ticks_ : since * group <= tight_ticks_);
    opened_ = cached_ = slot = t;
  }
  /// Gives every waiting admission its stamp (one reading, if any waits).
  void settle() noexcept {
    if (pending_) [[unlikely]]
      read();
  }
  /// Whether the next admission waits for a reading (a fast run's group has room).
  bool waits_next() const noexcept { return open_ && pending_ < group - 1; }
  const tick_clock& clock() const noexcept { return clock_; }

 private:
  /// A reading for the turn, not by an admission: the waiting admissions get their stamps,
  /// and the group ends (the next admission reads).
  std::int64_t read() noexcept {
    cached_ = clock_.now();
    spread(cached_);
    open_ = false;
    return cached_;
  }
  /// The waiting admissions, evenly between the last reading and `t`, in their order.
  void spread(std::int64_t t) noexcept {
    const std::int64_t span = t - opened_;
    for (int i = 0; i < pending_; ++i) *pending_at_[i] = opened_ + span * (i + 1) / (pending_ + 1);
    pending_ = 0;
  }

  tick_clock clock_;
  std::int64_t cached_ = 0;
  std::int64_t opened_ = 0;       // the last reading an admission took
  std::int64_t tight_ticks_ = 0;  // tight_ns in ticks, once measured
  bool open_ = false;             // admissions may wait for the next reading
  int pending_ = 0;
  std::int64_t* pending_at_[group - 1] = {};
};

}  // namespace detail
CORAY_END_NAMESPACE
