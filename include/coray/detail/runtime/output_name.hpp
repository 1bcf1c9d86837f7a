#pragma once
/// The name a process's output is shown under (`(name pid=1234)`): the function a task worker
/// runs, or an actor's class. The process writes it into its slot in the segment when it
/// changes; the supervisor's log monitor reads it as it reads the process's output.

#include <atomic>
#include <coray/version.hpp>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// The bare name Ray shows: no namespace, no template arguments ("ns::fib" -> "fib",
/// "ray::v0::detail::pool_process<f>" -> "pool_process").
constexpr std::string_view output_short_name(std::string_view name) noexcept {
  name = name.substr(0, name.find('<'));
  const std::size_t colon = name.rfind("::");
  if (colon != std::string_view::npos) name.remove_prefix(colon + 2);
  return name;
}

/// A seqlock over words of atomics: one writer (the process), readers in other processes
/// that retry a torn read. Writing costs a handful of relaxed stores and two fences.
struct output_name_cell {
  static constexpr std::size_t words = 7;
  static constexpr std::size_t capacity = words * sizeof(std::uint64_t) - 1;

  /// The process, on a change of name. Never blocks.
  void set(std::string_view name) noexcept {
    name = output_short_name(name).substr(0, capacity);
    char bytes[words * sizeof(std::uint64_t)] = {};
    if (!name.empty()) std::memcpy(bytes, name.data(), name.size());
    const std::uint32_t s = seq.load(std::memory_order_relaxed);
    seq.store(s + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    for (std::size_t i = 0; i < words; ++i) {
      std::uint64_t w;
      std::memcpy(&w, bytes + i * sizeof w, sizeof w);
      word[i].store(w, std::memory_order_relaxed);
    }
    seq.store(s + 2, std::memory_order_release);
  }
  /// Any process; empty before the process named itself.
  std::string get() const {
    char bytes[words * sizeof(std::uint64_t) + 1] = {};
    for (;;) {
      const std::uint32_t before = seq.load(std::memory_order_acquire);
      for (std::size_t i = 0; i < words; ++i) {
        const std::uint64_t w = word[i].load(std::memory_order_relaxed);
        std::memcpy(bytes + i * sizeof w, &w, sizeof w);
      }
      std::atomic_thread_fence(std::memory_order_acquire);
      if ((before & 1) == 0 && seq.load(std::memory_order_relaxed) == before) break;
    }
    return std::string(bytes);
  }
  /// A new process in the slot starts unnamed.
  void clear() noexcept { set({}); }

  std::atomic<std::uint32_t> seq{0};
  std::atomic<std::uint64_t> word[words] = {};
};

}  // namespace detail
CORAY_END_NAMESPACE
