// Shared by the test programs: waiting for an event the driver is not woken by.
#pragma once

#include <algorithm>
#include <chrono>
#include <coray/coray.hpp>

/// Serves the runtime until `pred` holds, at most `limit`: a bound on an event, not a guess.
/// Re-checks every millisecond, as what `pred` watches need not wake the driver.
template <class Pred>
bool serve_until(Pred pred, std::chrono::milliseconds limit) {
  auto& p = ray::detail::process::require();
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > end) return false;
    p.run_until(pred,
                std::min(end, std::chrono::steady_clock::now() + std::chrono::milliseconds(1)));
  }
  return true;
}
