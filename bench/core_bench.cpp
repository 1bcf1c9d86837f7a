// The core runtime's figures (issue: core runtime), each the median of several runs:
// task round trips, put/get rates, large puts against memcpy, zero-copy get, start-up
// and idle worker memory. Usage: core_bench [--quick] [--json FILE]
#include <coray/coray.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <numeric>
#include <span>
#include <string>
#include <vector>

namespace {

using clk = std::chrono::steady_clock;

int trivial() { return 0; }
int add(int a, int b) { return a + b; }

double seconds_since(clk::time_point t0) { return std::chrono::duration<double>(clk::now() - t0).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct metric {
  double value;
  std::string unit;
  bool higher_is_better;
  std::string target;
};
std::map<std::string, metric> results;

void report(const std::string& name, double value, const std::string& unit, bool higher, const std::string& target) {
  results[name] = {value, unit, higher, target};
  std::printf("%-36s %14.1f %-8s (target %s)\n", name.c_str(), value, unit.c_str(), target.c_str());
  std::fflush(stdout);
}

/// Runs `body` repeatedly for about `secs`, returns operations per second (body returns ops).
double rate(double secs, const std::function<long()>& body) {
  long ops = 0;
  auto t0 = clk::now();
  while (seconds_since(t0) < secs) ops += body();
  return static_cast<double>(ops) / seconds_since(t0);
}

long rss_kib(int pid, const char* field) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/" + (std::strcmp(field, "Pss:") == 0 ? "smaps_rollup" : "status"));
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(field, 0) == 0) return std::stol(line.substr(std::strlen(field)));
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  ray::enter_worker_if_spawned();
  bool quick = false;
  std::string json;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--quick") quick = true;
    if (std::string(argv[i]) == "--json" && i + 1 < argc) json = argv[++i];
  }
  const int reps = quick ? 3 : 5;
  const double secs = quick ? 0.3 : 1.0;

  // Start-up: runtime constructed to first task result, 2 workers.
  {
    std::vector<double> t;
    for (int i = 0; i < (quick ? 5 : 15); ++i) {
      auto t0 = clk::now();
      ray::runtime rt(argc, argv, {.num_workers = 2});
      ray::get(ray::task<add>.remote(1, 2)).get();
      t.push_back(seconds_since(t0) * 1e3);
    }
    report("runtime_start_to_first_result", median(t), "ms", false, "<= 20 ms");
  }

  ray::runtime rt(argc, argv, {.num_workers = 2});
  ray::get(ray::task<trivial>.remote()).get();

  {
    std::vector<double> r;
    for (int i = 0; i < reps; ++i)
      r.push_back(rate(secs, [] {
        for (int k = 0; k < 1000; ++k) ray::get(ray::task<trivial>.remote()).get();
        return 1000L;
      }));
    report("single_client_tasks_sync", median(r), "calls/s", true, ">= 100000");
  }
  {
    std::vector<double> r;
    std::vector<ray::object_ref<int>> refs;
    refs.reserve(1000);
    for (int i = 0; i < reps; ++i)
      r.push_back(rate(secs, [&] {
        refs.clear();
        for (int k = 0; k < 1000; ++k) refs.push_back(ray::task<trivial>.remote());
        std::vector<int> all = ray::get(refs);
        return 1000L;
      }));
    report("single_client_tasks_async", median(r), "calls/s", true, ">= 500000");
  }
  {
    std::vector<double> r;
    for (int i = 0; i < reps; ++i)
      r.push_back(rate(secs, [] {
        for (int k = 0; k < 1000; ++k) {
          auto ref = ray::put(k);
          (void)ref;
        }
        return 1000L;
      }));
    report("single_client_put_calls", median(r), "calls/s", true, ">= 1000000");
  }
  {
    auto ref = ray::put(12345);
    std::vector<double> r;
    long sink = 0;
    for (int i = 0; i < reps; ++i)
      r.push_back(rate(secs, [&] {
        for (int k = 0; k < 1000; ++k) sink += ray::get(ref).get();
        return 1000L;
      }));
    report("single_client_get_calls", median(r), "calls/s", true, ">= 2000000");
    if (sink == 42) std::puts("");
  }
  {
    // 800 MB: the store against memcpy into memory already touched once, in the same run.
    const std::size_t n = 100'000'000;
    std::vector<double> src(n, 1.5), dst(n, 0.0);
    std::vector<double> mc, pt;
    for (int i = 0; i < reps; ++i) {
      auto t0 = clk::now();
      std::memcpy(dst.data(), src.data(), n * sizeof(double));
      mc.push_back(static_cast<double>(n * sizeof(double)) / seconds_since(t0) / 1e9);
      t0 = clk::now();
      auto ref = ray::put(src);
      pt.push_back(static_cast<double>(n * sizeof(double)) / seconds_since(t0) / 1e9);
    }
    double m = median(mc), p = median(pt);
    report("memcpy_bandwidth", m, "GB/s", true, "machine limit");
    report("put_800mb_bandwidth", p, "GB/s", true, ">= 0.8 x memcpy");
    report("put_800mb_vs_memcpy", p / m, "ratio", true, ">= 0.8");
  }
  {
    auto big = ray::put(std::vector<double>(3000 * 3000, 1.0));
    auto small = ray::put(7);
    const int n = 100'000;
    std::vector<double> tv, ti;
    double sink = 0;
    for (int i = 0; i < reps; ++i) {
      auto t0 = clk::now();
      for (int k = 0; k < n; ++k) {
        ray::object_view<std::vector<double>> v = ray::get_view(big);
        sink += v[static_cast<std::size_t>(k)];
      }
      tv.push_back(seconds_since(t0) / n * 1e9);
      t0 = clk::now();
      for (int k = 0; k < n; ++k) sink += ray::get(small).get();
      ti.push_back(seconds_since(t0) / n * 1e9);
    }
    report("get_view_72mb", median(tv), "ns", false, "<= 5000 ns");
    report("get_int", median(ti), "ns", false, "same as 72 MB view");
    if (sink == 0) std::puts("");
  }
  {
    auto pids = rt.worker_pids();
    std::vector<double> rss, pss;
    for (int p : pids) {
      rss.push_back(static_cast<double>(rss_kib(p, "VmRSS:")) / 1024.0);
      pss.push_back(static_cast<double>(rss_kib(p, "Pss:")) / 1024.0);
    }
    report("idle_worker_rss", median(rss), "MB", false, "<= 5 MB");
    report("idle_worker_pss", median(pss), "MB", false, "(proportional: shared pages split)");
  }

  if (!json.empty()) {
    std::ofstream f(json);
    f << "{\n  \"metrics\": {\n";
    std::size_t i = 0;
    for (auto& [name, m] : results) {
      f << "    \"" << name << "\": {\"value\": " << m.value << ", \"unit\": \"" << m.unit
        << "\", \"higher_is_better\": " << (m.higher_is_better ? "true" : "false") << "}"
        << (++i < results.size() ? ",\n" : "\n");
    }
    f << "  }\n}\n";
  }
}
