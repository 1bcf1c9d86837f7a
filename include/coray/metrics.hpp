#pragma once
/// User metrics, as Ray's `ray.util.metrics`: a counter, a gauge and a histogram, each with
/// optional tags, recorded from any process of the runtime (the driver, tasks, actors) into
/// one table in shared memory, and served with the runtime's own metrics in Prometheus'
/// text format at the dashboard's /metrics.
///
///   ray::metrics::counter requests("app_requests_total", "Requests served", {"route"});
///   requests.inc(1, {{"route", "/predict"}});
///   ray::metrics::histogram latency("app_latency_seconds", "Latency", {0.01, 0.1, 1});
///   latency.observe(0.042);
///
/// A metric is its name: objects of the same name (in any process) record into the same
/// series, one per set of tag values. Recording is a few atomic operations on shared
/// memory, and a lookup of the tag values in the object the first time they are used.
/// The table holds 1,024 series; names follow Prometheus' rules and are at most 47
/// characters, the tags of one series at most 111 written as `k="v",...`.

#include <fmt/format.h>

#include <coray/detail/runtime/foreign.hpp>
#include <coray/detail/runtime/metric_table.hpp>
#include <coray/detail/runtime/process.hpp>
#include <coray/errors.hpp>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace metrics {

/// Tag values by tag key.
using tags = std::map<std::string, std::string>;

namespace detail {

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

/// What the three kinds share: the name, the declared tag keys, and each set of tag values'
/// series (found in the runtime's table once, then kept; per object, any thread).
class metric_base {
 public:
  metric_base(std::string name, std::string description, std::vector<std::string> tag_keys,
              ray::detail::metric_kind kind, std::vector<double> bounds = {})
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

 protected:
  /// Records into the series for `t` (every declared key given, no other) with `record`.
  template <class Record>
  void with_series(const tags& t, Record&& record) const {
    std::string labels;
    if (t.size() != s_->keys.size())
      throw usage_error(fmt::format("ray::metrics: '{}' takes the tags {}, given {}", s_->name,
                                    fmt::join(s_->keys, ", "), t.size()));
    for (const auto& k : s_->keys) {
      auto it = t.find(k);
      if (it == t.end())
        throw usage_error(
            fmt::format("ray::metrics: '{}' needs a value for tag '{}'", s_->name, k));
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
    ray::detail::metric_series* found = nullptr;
    {
      std::lock_guard lock(s_->mu);
      if (p->epoch != s_->epoch) {  // a new runtime: its own table
        s_->found.clear();
        s_->epoch = p->epoch;
      }
      if (auto it = s_->found.find(labels); it != s_->found.end()) {
        found = it->second;
      } else {
        if (labels.size() > 111)
          throw usage_error(fmt::format(
              "ray::metrics: the tags of '{}' are longer than 111 characters written out",
              s_->name));
        found = p->hdr->metrics.find_or_claim({s_->name, labels, s_->help, s_->kind, s_->bounds});
        if (!found)
          throw usage_error(fmt::format("ray::metrics: the runtime's table of {} series is full",
                                        ray::detail::metric_table::capacity));
        s_->found.emplace(std::move(labels), found);
      }
    }
    record(*found);
  }

 private:
  struct shared {
    std::string name, help;
    std::vector<std::string> keys;
    ray::detail::metric_kind kind{};
    std::vector<double> bounds;
    std::mutex mu;
    std::uint32_t epoch = 0;
    std::unordered_map<std::string, ray::detail::metric_series*> found;
  };
  std::shared_ptr<shared> s_;
};

}  // namespace detail

/// A value that only goes up (Ray's Counter).
class counter : detail::metric_base {
 public:
  explicit counter(std::string name, std::string description = {},
                   std::vector<std::string> tag_keys = {})
      : metric_base(std::move(name), std::move(description), std::move(tag_keys),
                    ray::detail::metric_kind::counter) {}
  /// Adds `value` (0 or more; usage_error otherwise).
  void inc(double value = 1.0, const tags& t = {}) const {
    if (!(value >= 0)) throw usage_error("ray::metrics::counter::inc: a counter only goes up");
    with_series(t, [&](ray::detail::metric_series& s) { s.add(value); });
  }
};

/// A value set to what it is now (Ray's Gauge).
class gauge : detail::metric_base {
 public:
  explicit gauge(std::string name, std::string description = {},
                 std::vector<std::string> tag_keys = {})
      : metric_base(std::move(name), std::move(description), std::move(tag_keys),
                    ray::detail::metric_kind::gauge) {}
  void set(double value, const tags& t = {}) const {
    with_series(t, [&](ray::detail::metric_series& s) { s.set(value); });
  }
};

/// Observations counted into buckets by their upper bounds (Ray's Histogram): at most 12
/// bounds, ascending; a last bucket (+Inf) takes the rest.
class histogram : detail::metric_base {
 public:
  histogram(std::string name, std::string description, std::vector<double> boundaries,
            std::vector<std::string> tag_keys = {})
      : metric_base(std::move(name), std::move(description), std::move(tag_keys),
                    ray::detail::metric_kind::histogram, checked(std::move(boundaries))) {}
  void observe(double value, const tags& t = {}) const {
    with_series(t, [&](ray::detail::metric_series& s) { s.observe(value); });
  }

 private:
  static std::vector<double> checked(std::vector<double> b) {
    if (b.empty() || b.size() > ray::detail::metric_series::max_bounds ||
        !std::is_sorted(b.begin(), b.end()) || std::adjacent_find(b.begin(), b.end()) != b.end())
      throw usage_error(
          fmt::format("ray::metrics::histogram: boundaries are 1 to {} distinct values, ascending",
                      ray::detail::metric_series::max_bounds));
    return b;
  }
};

}  // namespace metrics
CORAY_END_NAMESPACE
