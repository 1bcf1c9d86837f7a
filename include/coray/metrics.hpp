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

#include <coray/detail/runtime/metric_table.hpp>
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

/// What the three kinds share: the name, the declared tag keys, and each set of tag values'
/// series (found in the runtime's table once, then kept; per object, any thread).
class metric_base {
 public:
  CORAY_API metric_base(std::string name, std::string description,
                        std::vector<std::string> tag_keys, ray::detail::metric_kind kind,
                        std::vector<double> bounds = {});

 protected:
  /// The series for `t` (every declared key given, no other): found in the runtime's table
  /// the first time, then kept.
  CORAY_API ray::detail::metric_series& series(const tags& t) const;

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
    series(t).add(value);
  }
};

/// A value set to what it is now (Ray's Gauge).
class gauge : detail::metric_base {
 public:
  explicit gauge(std::string name, std::string description = {},
                 std::vector<std::string> tag_keys = {})
      : metric_base(std::move(name), std::move(description), std::move(tag_keys),
                    ray::detail::metric_kind::gauge) {}
  void set(double value, const tags& t = {}) const { series(t).set(value); }
};

/// Observations counted into buckets by their upper bounds (Ray's Histogram): at most 12
/// bounds, ascending; a last bucket (+Inf) takes the rest.
class histogram : detail::metric_base {
 public:
  histogram(std::string name, std::string description, std::vector<double> boundaries,
            std::vector<std::string> tag_keys = {})
      : metric_base(std::move(name), std::move(description), std::move(tag_keys),
                    ray::detail::metric_kind::histogram, checked(std::move(boundaries))) {}
  void observe(double value, const tags& t = {}) const { series(t).observe(value); }

 private:
  CORAY_API static std::vector<double> checked(std::vector<double> b);
};

}  // namespace metrics
CORAY_END_NAMESPACE

#ifndef CORAY_COMPILED_LIB
#include <coray/detail/runtime/metrics_impl.hpp>
#endif
