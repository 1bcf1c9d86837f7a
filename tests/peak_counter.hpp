// Shared by the test programs: how many callers were inside a stretch of code at once.
#pragma once

#include <atomic>

/// Counts the callers inside pass() at once and keeps the highest count seen. Thread-safe.
class peak_counter {
 public:
  /// Enters, stays a moment, leaves; returns how many were inside on entering.
  int pass() {
    const int now = ++inside_;
    int seen = peak_.load();
    while (now > seen && !peak_.compare_exchange_weak(seen, now)) {
    }
    for (int i = 0; i < 1000; ++i) std::atomic_signal_fence(std::memory_order_seq_cst);
    --inside_;
    return now;
  }
  int highest() const { return peak_.load(); }

 private:
  std::atomic<int> inside_{0};
  std::atomic<int> peak_{0};
};
