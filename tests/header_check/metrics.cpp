// metrics.hpp alone: a counter, a gauge and a histogram with tags.
#include <coray/metrics.hpp>

namespace header_check_metrics {

void record() {
  ray::metrics::counter served("app_served_total", "Requests served", {"route"});
  served.inc(1, {{"route", "/predict"}});
  ray::metrics::gauge depth("app_queue_depth");
  depth.set(3);
  ray::metrics::histogram latency("app_latency_seconds", "Latency", {0.01, 0.1, 1});
  latency.observe(0.042);
}

}  // namespace header_check_metrics
