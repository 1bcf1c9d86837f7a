// The dashboard's cost to the runtime (issue 14): single_client_tasks_async in a runtime
// without the dashboard and in one with the dashboard open and refreshing, a client asking
// for the views every 250 ms (the page asks for one a second), alternately, in one process.
//
//   dashboard_open_vs_closed_tasks_async   the rate with the dashboard open over the rate
//                                          without it, median of the per-round ratios
//
// Usage: dashboard_bench [--quick] [--json FILE]
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <coray/coray.hpp>
#include <coray/dashboard.hpp>
#include <string>
#include <thread>
#include <vector>

#include "bench_common.hpp"

namespace {

int trivial() { return 0; }

/// single_client_tasks_async's body: 1,000 trivial tasks submitted, then all got.
double tasks_async(double secs) {
  std::vector<ray::object_ref<int>> refs;
  refs.reserve(1000);
  return bench::rate(secs, [&] {
    refs.clear();
    for (int k = 0; k < 1000; ++k) refs.push_back(ray::task<trivial>.remote());
    std::vector<int> all = ray::get(refs);
    bench::keep(all);
    return 1000L;
  });
}

/// Asks for every view but the logs every 250 ms until stopped: a page kept open, and more.
class refresher {
 public:
  explicit refresher(const std::string& url) {
    const auto host_at = url.find("://") + 3, colon = url.find(':', host_at),
               slash = url.find('/', colon);
    host_ = url.substr(host_at, colon - host_at);
    port_ = std::stoi(url.substr(colon + 1, slash - colon - 1));
    thread_ = std::thread([this] { run(); });
  }
  ~refresher() {
    stop_ = true;
    thread_.join();
  }
  long answered() const { return answered_.load(); }

 private:
  void run() {
    httplib::Client c(host_, port_);
    c.set_read_timeout(5);
    while (!stop_) {
      for (const char* path : {"/api/nodes", "/api/actors", "/api/tasks", "/api/objects"})
        if (auto r = c.Get(path); r && r->status == 200) ++answered_;
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
  }
  std::string host_;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<long> answered_{0};
  std::thread thread_;
};

}  // namespace

int main(int argc, char** argv) {
  const bench::options o = bench::parse_options(argc, argv);
  const double secs = o.quick ? 1.0 : 2.0;
  std::vector<double> closed, open, ratios;
  long answered = 0;
  for (int i = 0; i < o.reps; ++i) {
    double without = 0, with = 0;
    {
      ray::runtime rt(argc, argv, {.num_workers = 2, .log_to_driver = false});
      tasks_async(0.2);  // warm
      without = tasks_async(secs);
    }
    {
      ray::runtime rt(argc, argv,
                      {.num_workers = 2,
                       .log_to_driver = false,
                       .include_dashboard = true,
                       .dashboard_port = 0});
      refresher page(rt.dashboard_url());
      tasks_async(0.2);
      with = tasks_async(secs);
      answered += page.answered();
    }
    closed.push_back(without);
    open.push_back(with);
    ratios.push_back(with / without);
  }
  bench::report("single_client_tasks_async_dashboard_closed", bench::median(closed), "calls/s",
                true, "no dashboard");
  bench::report("single_client_tasks_async_dashboard_open", bench::median(open), "calls/s", true,
                "the dashboard answering 4 views every 250 ms (" + std::to_string(answered) +
                    " answers in all)");
  bench::report("dashboard_open_vs_closed_tasks_async", bench::median(ratios), "ratio", true,
                "median of the rounds' ratios; target >= 0.97");
  bench::write_json(o);
  return 0;
}
