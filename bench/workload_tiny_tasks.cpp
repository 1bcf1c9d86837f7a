// Seed 000's tiny tasks, where Ray lost to a serial loop: `x*10` over 100 random numbers
// and over 1,000,000, each way of running it timed end to end (median of several runs):
//   - serial:          a plain loop in the driver;
//   - threads:         two std::threads, each computing one half into a shared output
//                      (starting and joining the threads is timed);
//   - mp:              bench::mp_pool of two forked processes, map() with Python's default
//                      chunksize, as multiprocessing.Pool.map does (the pool is started and
//                      warmed before timing, as Python's Pool starts in its constructor);
//   - coray_tasks:     one ray::task<times_ten>.remote(x) per item, then ray::get(refs);
//   - coray_pool_map:  ray::pool p(2); p.map<times_ten>(items) with the automatic chunksize
//                      (the pool is started and warmed before timing).
// The serial, threads and mp variants run before the runtime exists (mp_pool forks the
// process, which must have no runtime threads then); every variant's results must equal the
// serial loop's. The 100-item variants are cheap, so they are repeated more often; a million
// coray tasks are slow, so that case runs once (--quick) or three times.
// Also per-item costs of the 1M case for coray's two ways.
// Usage: workload_tiny_tasks [--quick] [--json FILE]
#include <coray/coray.hpp>
#include <cstddef>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench_common.hpp"
#include "mp_pool.hpp"

namespace {

double times_ten(double x) { return x * 10; }

std::vector<double> random_list(std::size_t n) {
  std::mt19937_64 gen(42);
  std::uniform_real_distribution<double> random(0.0, 1.0);
  std::vector<double> v(n);
  for (double& x : v) x = random(gen);
  return v;
}

std::vector<double> serial(const std::vector<double>& xs) {
  std::vector<double> out;
  out.reserve(xs.size());
  for (double x : xs) out.push_back(times_ten(x));
  return out;
}

std::vector<double> threads(const std::vector<double>& xs) {
  std::vector<double> out(xs.size());
  auto part = [&](std::size_t lo, std::size_t hi) {
    for (std::size_t i = lo; i < hi; ++i) out[i] = times_ten(xs[i]);
  };
  const std::size_t half = xs.size() / 2;
  std::thread a(part, std::size_t{0}, half);
  std::thread b(part, half, xs.size());
  a.join();
  b.join();
  return out;
}

std::vector<double> coray_tasks(const std::vector<double>& xs) {
  std::vector<ray::object_ref<double>> refs;
  refs.reserve(xs.size());
  for (double x : xs) refs.push_back(ray::task<times_ten>.remote(x));
  return ray::get(refs).get();
}

struct size_case {
  std::string label;  // "100" or "1m"
  std::vector<double> items;
  std::vector<double> expected;
  int reps;
};

bool mismatch = false;

/// Times `run` over the case's items (after one untimed run, if `warm`), checks every
/// result against the serial loop's and reports the median; returns it.
template <class Run>
double measure(const size_case& c, const std::string& variant, int reps, Run&& run,
               bool warm = true) {
  if (warm) run(c.items);                // caches, allocator, processes
  std::vector<std::vector<double>> got;  // kept until checked, outside the timing
  got.reserve(static_cast<std::size_t>(reps));
  auto t = bench::times(reps, [&] { got.push_back(run(c.items)); });
  const std::string name = "tiny_tasks_" + c.label + "_" + variant;
  for (const auto& g : got)
    if (g != c.expected) {
      std::printf("MISMATCH %s: results differ from the serial loop's\n", name.c_str());
      std::fflush(stdout);
      mismatch = true;
      break;
    }
  const double m = bench::median(t);
  bench::report(name, m, "s", false);
  return m;
}

}  // namespace

int main(int argc, char** argv) {
  ray::enter_worker_if_spawned();
  auto opt = bench::parse_options(argc, argv);

  std::vector<size_case> cases;
  cases.push_back({"100", random_list(100), {}, opt.quick ? 21 : 101});
  cases.push_back({"1m", random_list(1'000'000), {}, opt.reps});
  for (auto& c : cases) c.expected = serial(c.items);

  // Before the runtime: no runtime threads may exist while mp_pool forks.
  for (auto& c : cases) measure(c, "serial", c.reps, serial);
  for (auto& c : cases) measure(c, "threads", c.reps, threads);
  {
    bench::mp_pool<double, double> mp(2, times_ten);
    for (auto& c : cases)
      measure(c, "mp", c.reps, [&](const std::vector<double>& xs) { return mp.map(xs); });
  }  // the processes have ended

  ray::runtime rt(argc, argv, {.num_workers = 2});
  {
    // A task per item: a million of them are slow, so the 1M case runs fewer times, warmed
    // only by the 100-item runs.
    const size_case& big = cases[1];
    measure(cases[0], "coray_tasks", cases[0].reps, coray_tasks);
    const double t = measure(big, "coray_tasks", opt.quick ? 1 : 3, coray_tasks, false);
    bench::report("tiny_tasks_1m_coray_tasks_per_item",
                  t / static_cast<double>(big.items.size()) * 1e9, "ns", false);
  }
  {
    ray::pool p(2);
    for (auto& c : cases) {
      const double t = measure(c, "coray_pool_map", c.reps,
                               [&](const std::vector<double>& xs) { return p.map<times_ten>(xs); });
      if (c.label == "1m")
        bench::report("tiny_tasks_1m_coray_pool_map_per_item",
                      t / static_cast<double>(c.items.size()) * 1e9, "ns", false);
    }
  }

  bench::write_json(opt);
  return mismatch ? 1 : 0;
}
