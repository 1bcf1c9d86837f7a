#pragma once
/// metric_table's members that claim a series and write the table out: included by
/// metric_table.hpp in header-only mode (inline), and compiled once by src/coray.cpp into
/// coray::coray_compiled in compiled mode (CORAY_COMPILED_LIB). Recording into a series
/// (metric_series) stays inline.

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <coray/detail/runtime/metric_table.hpp>
#include <coray/errors.hpp>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

CORAY_BEGIN_NAMESPACE
namespace detail {

CORAY_API metric_series* metric_table::find_or_claim(const metric_key& k) {
  // A name is one metric: each series of it has the same kind and buckets.
  for (const metric_series& s : series_)
    if (s.state.load(std::memory_order_acquire) == 2 && std::string_view(s.name) == k.name &&
        !same_shape(s, k))
      throw usage_error(fmt::format(
          "ray::metrics: '{}' is already a metric of another kind or other boundaries", k.name));
  return find_or_claim_series(k);
}

CORAY_API metric_series* metric_table::find_or_claim_series(const metric_key& k) {
  const std::size_t start =
      std::hash<std::string_view>{}(k.name) ^ (std::hash<std::string_view>{}(k.tags) * 31);
  for (std::size_t probe = 0; probe < capacity; ++probe) {
    metric_series& s = series_[(start + probe) % capacity];
    std::uint32_t st = s.state.load(std::memory_order_acquire);
    if (st == 0) {
      if (s.state.compare_exchange_strong(st, 1, std::memory_order_acquire)) {
        s.kind = k.kind;
        copy(s.name, k.name);
        copy(s.tags, k.tags);
        copy(s.help, k.help);
        s.bounds = static_cast<std::uint32_t>(std::min(k.bounds.size(), metric_series::max_bounds));
        std::copy_n(k.bounds.begin(), s.bounds, s.bound);
        s.state.store(2, std::memory_order_release);
        return &s;
      }
    }
    // Another process is writing its key: a few stores. One killed in between leaves the
    // series half-claimed for good: after a bounded wait it is passed over.
    for (int spins = 0; (st = s.state.load(std::memory_order_acquire)) == 1 && spins < 1 << 20;
         ++spins) {
    }
    if (st != 2) continue;
    if (std::string_view(s.name) == k.name && std::string_view(s.tags) == k.tags) return &s;
  }
  return nullptr;
}

CORAY_API void metric_table::append_prometheus(std::string& out) const {
  std::string_view done[capacity];
  std::size_t n_done = 0;
  for (const metric_series& first : series_) {
    if (first.state.load(std::memory_order_acquire) != 2) continue;
    const std::string_view name(first.name);
    if (std::find(done, done + n_done, name) != done + n_done) continue;
    done[n_done++] = name;
    const char* type = first.kind == metric_kind::counter ? "counter"
                       : first.kind == metric_kind::gauge ? "gauge"
                                                          : "histogram";
    if (first.help[0]) out += fmt::format("# HELP {} {}\n", name, first.help);
    out += fmt::format("# TYPE {} {}\n", name, type);
    for (const metric_series& s : series_) {
      if (s.state.load(std::memory_order_acquire) != 2 || std::string_view(s.name) != name)
        continue;
      const std::string_view tags(s.tags);
      if (s.kind != metric_kind::histogram) {
        out += fmt::format("{}{}{}{} {}\n", name, tags.empty() ? "" : "{", tags,
                           tags.empty() ? "" : "}", s.read());
        continue;
      }
      const std::string sep = tags.empty() ? "" : ",";
      std::uint64_t cumulative = 0;
      for (std::uint32_t b = 0; b <= s.bounds; ++b) {
        cumulative += s.bucket[b].load(std::memory_order_relaxed);
        const std::string le = b < s.bounds ? fmt::format("{}", s.bound[b]) : "+Inf";
        out += fmt::format("{}_bucket{{{}{}le=\"{}\"}} {}\n", name, tags, sep, le, cumulative);
      }
      const std::string braces = tags.empty() ? "" : fmt::format("{{{}}}", tags);
      out += fmt::format("{}_sum{} {}\n{}_count{} {}\n", name, braces, s.read(), name, braces,
                         s.count.load(std::memory_order_relaxed));
    }
  }
}

}  // namespace detail
CORAY_END_NAMESPACE
