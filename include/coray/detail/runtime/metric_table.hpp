#pragma once
/// The user metrics' table (ray::metrics): fixed-size series in the runtime's control header,
/// so that every process of the runtime records into the same ones with atomics, and the
/// dashboard reads them for /metrics without asking anyone.

#include <algorithm>
#include <atomic>
#include <bit>
#include <coray/errors.hpp>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

CORAY_BEGIN_NAMESPACE
namespace detail {

enum class metric_kind : std::uint32_t { counter = 1, gauge = 2, histogram = 3 };

/// One series: a metric's name with one set of tag values. Claimed once (state 0 -> 1 by
/// compare-and-swap, its key and shape written, then 2), never freed while the runtime lives.
struct metric_series {
  static constexpr std::size_t max_bounds = 12;
  std::atomic<std::uint32_t> state{0};  // 0 free, 1 being claimed, 2 ready
  metric_kind kind = metric_kind::counter;
  char name[48] = {};
  char tags[112] = {};  // `k="v",k2="v2"`, as Prometheus writes labels
  char help[96] = {};
  std::uint32_t bounds = 0;  // histogram: its buckets' upper bounds, ascending
  double bound[max_bounds] = {};
  std::atomic<std::uint64_t> value{
      0};  // bits of a double: a counter's or gauge's, a histogram's sum
  std::atomic<std::uint64_t> count{0};                     // histogram: observations
  std::atomic<std::uint64_t> bucket[max_bounds + 1] = {};  // histogram: per bucket, +Inf last

  void add(double x) noexcept {
    std::uint64_t old = value.load(std::memory_order_relaxed);
    while (!value.compare_exchange_weak(
        old, std::bit_cast<std::uint64_t>(std::bit_cast<double>(old) + x),
        std::memory_order_relaxed)) {
    }
  }
  void set(double x) noexcept {
    value.store(std::bit_cast<std::uint64_t>(x), std::memory_order_relaxed);
  }
  void observe(double x) noexcept {
    std::uint32_t b = 0;
    while (b < bounds && x > bound[b]) ++b;
    bucket[b].fetch_add(1, std::memory_order_relaxed);
    count.fetch_add(1, std::memory_order_relaxed);
    add(x);
  }
  double read() const noexcept {
    return std::bit_cast<double>(value.load(std::memory_order_relaxed));
  }
};

/// What makes a series: its metric's name and shape, and its tags' values.
struct metric_key {
  std::string_view name, tags, help;
  metric_kind kind;
  std::span<const double> bounds;
};

class metric_table {
 public:
  static constexpr std::size_t capacity = 1024;

  /// The series of `k`, claimed if it is new; null when the table is full. Throws
  /// usage_error if the name is already a metric of another kind or other buckets (two
  /// processes claiming one name as two kinds at the same moment are not caught).
  CORAY_API metric_series* find_or_claim(const metric_key& k);

 private:
  static bool same_shape(const metric_series& s, const metric_key& k) noexcept {
    return s.kind == k.kind &&
           (k.kind != metric_kind::histogram ||
            std::equal(k.bounds.begin(), k.bounds.end(), s.bound, s.bound + s.bounds));
  }
  CORAY_API metric_series* find_or_claim_series(const metric_key& k);

 public:
  /// Appends the series in Prometheus' text format, grouped by name.
  CORAY_API void append_prometheus(std::string& out) const;

 private:
  template <std::size_t N>
  static void copy(char (&to)[N], std::string_view from) noexcept {
    const std::size_t n = std::min(from.size(), N - 1);
    std::memcpy(to, from.data(), n);
    to[n] = '\0';
  }

  metric_series series_[capacity];
};

}  // namespace detail
CORAY_END_NAMESPACE

#ifndef CORAY_COMPILED_LIB
#include <coray/detail/runtime/metric_table_impl.hpp>
#endif
