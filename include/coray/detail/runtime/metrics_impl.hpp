#pragma once
/// The non-template members of ray::metrics' counter, gauge and histogram: included by
/// metrics.hpp in header-only mode (inline), and compiled once by src/coray.cpp into
/// coray::coray_compiled in compiled mode (CORAY_COMPILED_LIB).

#include <fmt/format.h>

#include <algorithm>
#include <coray/detail/runtime/foreign.hpp>
#include <coray/detail/runtime/metric_table.hpp>
#include <coray/detail/runtime/process.hpp>
#include <coray/errors.hpp>
#include <coray/metrics.hpp>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace metrics::detail {

inline bool valid_name(std::string_view n) noexcept {
  if (n.empty() || n.size() > 47) return false;
  for (std::size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
                    (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

CORAY_API metric_base::metric_base(std::string name, std::string description,
                                   std::vector<std::string> tag_keys, ray::detail::metric_kind kind,
                                   std::vector<double> bounds)
    : s_(std::make_shared<shared>()) {
  if (!valid_name(name))
    throw usage_error(fmt::format(
        "ray::metrics: '{}' is not a metric name (letters, digits, '_' and ':', not starting "
        "with a digit, at most 47 characters)",
        name));
  for (const auto& k : tag_keys)
    if (!valid_name(k)) throw usage_error(fmt::format("ray::metrics: '{}' is not a tag key", k));
  s_->name = std::move(name);
  s_->help = std::move(description);
  s_->keys = std::move(tag_keys);
  s_->kind = kind;
  s_->bounds = std::move(bounds);
}

CORAY_API ray::detail::metric_series& metric_base::series(const tags& t) const {
  std::string labels;
  if (t.size() != s_->keys.size())
    throw usage_error(fmt::format("ray::metrics: '{}' takes the tags {}, given {}", s_->name,
                                  fmt::join(s_->keys, ", "), t.size()));
  for (const auto& k : s_->keys) {
    auto it = t.find(k);
    if (it == t.end())
      throw usage_error(fmt::format("ray::metrics: '{}' needs a value for tag '{}'", s_->name, k));
    if (!labels.empty()) labels += ',';
    labels += k + "=\"";
    for (char c : it->second) {
      if (c == '"' || c == '\\') labels += '\\';
      labels += c == '\n' ? 'n' : c;
      if (c == '\n') labels[labels.size() - 2] = '\\';
    }
    labels += '"';
  }
  // The runtime stays while this records: its loop thread, or an entry of its gate.
  ray::detail::process* p = ray::detail::process::here();
  auto& gate = ray::detail::runtime_gate::instance();
  const bool entered = !p && (p = gate.try_enter()) != nullptr;
  if (!p) throw usage_error("ray::metrics: metrics are recorded while a runtime runs");
  struct leave_gate {
    bool entered;
    ~leave_gate() {
      if (entered) ray::detail::runtime_gate::instance().leave();
    }
  } leave{entered};
  std::lock_guard lock(s_->mu);
  if (p->epoch != s_->epoch) {  // a new runtime: its own table
    s_->found.clear();
    s_->epoch = p->epoch;
  }
  if (auto it = s_->found.find(labels); it != s_->found.end()) return *it->second;
  if (labels.size() > 111)
    throw usage_error(fmt::format(
        "ray::metrics: the tags of '{}' are longer than 111 characters written out", s_->name));
  ray::detail::metric_series* found =
      p->hdr->metrics.find_or_claim({s_->name, labels, s_->help, s_->kind, s_->bounds});
  if (!found)
    throw usage_error(fmt::format("ray::metrics: the runtime's table of {} series is full",
                                  ray::detail::metric_table::capacity));
  s_->found.emplace(std::move(labels), found);
  return *found;
}

}  // namespace metrics::detail

namespace metrics {

CORAY_API std::vector<double> histogram::checked(std::vector<double> b) {
  if (b.empty() || b.size() > ray::detail::metric_series::max_bounds ||
      !std::is_sorted(b.begin(), b.end()) || std::adjacent_find(b.begin(), b.end()) != b.end())
    throw usage_error(
        fmt::format("ray::metrics::histogram: boundaries are 1 to {} distinct values, ascending",
                    ray::detail::metric_series::max_bounds));
  return b;
}

}  // namespace metrics
CORAY_END_NAMESPACE
