// ray::pool figures, medians of several runs:
//   - Ray issue 21343's job: Pool.map of a trivial x*10 over 1,000 items with a pool of two
//     processes (Ray's multiprocessing shim took 0.81 s there, Python's own Pool 0.035 s);
//   - a map of a million tiny items (x*10) against the same serial loop;
//   - single calls: apply_async throughput, and starting a pool of two processes.
// Usage: pool_bench [--quick]
#include <algorithm>
#include <chrono>
#include <coray/coray.hpp>
#include <cstdio>
#include <numeric>
#include <string>
#include <vector>

namespace {

using clk = std::chrono::steady_clock;
double seconds_since(clk::time_point t0) {
  return std::chrono::duration<double>(clk::now() - t0).count();
}
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
void report(const char* name, double value, const char* unit, const char* reference) {
  std::printf("%-36s %14.6f %-8s (%s)\n", name, value, unit, reference);
  std::fflush(stdout);
}

int task(int x) { return x * 10; }

std::vector<int> serial_map(const std::vector<int>& xs) {
  std::vector<int> out;
  out.reserve(xs.size());
  for (int x : xs) out.push_back(task(x));
  return out;
}

template <class F>
std::vector<double> times(int reps, F&& f) {
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    auto t0 = clk::now();
    f();
    t.push_back(seconds_since(t0));
  }
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  ray::runtime rt(argc, argv, {.num_workers = 2});
  const bool quick = argc > 1 && std::string(argv[1]) == "--quick";
  const int reps = quick ? 5 : 21;
  long checksum = 0;

  {
    ray::pool p(2);
    std::vector<int> items(1000);
    std::iota(items.begin(), items.end(), 0);
    p.map<task>(items);  // the processes are up
    auto t = times(reps, [&] { checksum += p.map<task>(items).back(); });
    report("ray_issue_21343_map_1000_items", median(t), "s",
           "Ray shim 0.81 s, Python Pool 0.035 s");
    auto s = times(reps, [&] { checksum += serial_map(items).back(); });
    report("serial_loop_1000_items", median(s), "s", "-");
  }

  {
    ray::pool p(2);
    std::vector<int> items(1'000'000);
    std::iota(items.begin(), items.end(), 0);
    p.map<task>(std::vector<int>(100));
    auto t = times(reps, [&] { checksum += p.map<task>(items).back(); });
    auto s = times(reps, [&] { checksum += serial_map(items).back(); });
    report("map_1M_items_pool_of_2", median(t), "s", "-");
    report("serial_loop_1M_items", median(s), "s", "-");
    report("map_1M_items_vs_serial", median(t) / median(s), "x", "time ratio, lower is better");
    auto u = times(reps, [&] {
      for (int y : p.imap_unordered<task>(items)) checksum += y;
    });
    report("imap_unordered_1M_items", median(u), "s", "-");
  }

  {
    ray::pool p(2);
    p.apply<task>(1);
    const int calls = quick ? 5'000 : 20'000;
    auto t = times(quick ? 3 : 5, [&] {
      std::vector<ray::object_ref<int>> refs;
      refs.reserve(calls);
      for (int i = 0; i < calls; ++i) refs.push_back(p.apply_async<task>(i));
      checksum += ray::get(refs).get().back();
    });
    report("apply_async_calls", calls / median(t), "calls/s", "-");
  }

  {
    auto t = times(quick ? 3 : 7, [&] {
      ray::pool p(2);
      checksum += p.apply<task>(1);
    });
    report("pool_of_2_start_and_first_call", median(t), "s", "-");
  }

  std::printf("(checksum %ld)\n", checksum);
}
