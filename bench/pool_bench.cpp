// ray::pool figures, medians of several runs (seconds, lower is better, unless stated):
//   - Ray issue 21343's job: Pool.map of a trivial x*10 over 1,000 items with a pool of two
//     processes (Ray's multiprocessing shim took 0.81 s there, Python's own Pool 0.035 s);
//   - a map of a million tiny items (x*10) against the same serial loop, and imap_unordered
//     of them;
//   - starmap against map (issue 16 asks that starmap be no slower): a million one-argument
//     tuples (x*10) against the map of a million ints above, the same bytes and work; and a
//     million argument pairs (a*b) against map of the same pairs (one std::pair parameter);
//   - single calls: apply_async throughput (calls/s), and starting a pool of two processes
//     up to its first call's result;
//   - ray::process (multiprocessing.Process): from start() to the first instruction of its
//     target, which writes the steady clock into a shared value (ms), by fork and by spawn;
//     and, if python3 is there, Python's multiprocessing.Process measured the same way.
// Usage: pool_bench [--quick] [--json FILE] [--rows PREFIX]
#include <unistd.h>

#include <chrono>
#include <coray/coray.hpp>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "bench_common.hpp"

namespace {

int task(int x) { return x * 10; }
int task2(int a, int b) { return a * b; }
int task_pair(std::pair<int, int> p) { return p.first * p.second; }

std::int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
/// A process's target: when it began (CLOCK_MONOTONIC is one clock for every process).
void stamp(ray::shared_value<std::int64_t> at) { at.store(steady_ns()); }

std::vector<int> serial_map(const std::vector<int>& xs) {
  std::vector<int> out;
  out.reserve(xs.size());
  for (int x : xs) out.push_back(task(x));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  ray::enter_worker_if_spawned();
  const bench::options o = bench::parse_options(argc, argv);
  ray::runtime rt(argc, argv, {.num_workers = 2});
  const int reps = o.quick ? 5 : 21;
  long checksum = 0;

  if (o.wants("ray_issue_21343_map_1000_items")) {
    ray::pool p(2);
    std::vector<int> items(1000);
    std::iota(items.begin(), items.end(), 0);
    p.map<task>(items);  // the processes are up
    auto t = bench::times(reps, [&] { checksum += p.map<task>(items).back(); });
    bench::report("ray_issue_21343_map_1000_items", bench::median(t), "s", false,
                  "pool of 2; Ray shim 0.81 s, Python Pool 0.035 s");
    auto s = bench::times(reps, [&] { checksum += serial_map(items).back(); });
    bench::report("serial_loop_1000_items", bench::median(s), "s", false);
  }

  if (o.wants("map_1M_items_pool_of_2")) {
    ray::pool p(2);
    std::vector<int> items(1'000'000);
    std::iota(items.begin(), items.end(), 0);
    p.map<task>(std::vector<int>(100));
    auto t = bench::times(reps, [&] { checksum += p.map<task>(items).back(); });
    auto s = bench::times(reps, [&] { checksum += serial_map(items).back(); });
    bench::report("map_1M_items_pool_of_2", bench::median(t), "s", false);
    bench::report("serial_loop_1M_items", bench::median(s), "s", false);
    bench::report("map_1M_items_vs_serial", bench::median(t) / bench::median(s), "x", false,
                  "time ratio");
    auto u = bench::times(reps, [&] {
      for (int y : p.imap_unordered<task>(items)) checksum += y;
    });
    bench::report("imap_unordered_1M_items", bench::median(u), "s", false);

    // starmap against map, each pair of rows interleaved (one of each per round, which goes
    // first alternating) so that a change in the machine's load meets both alike; ratios are
    // medians of each round's ratio.
    std::vector<std::tuple<int>> singles(items.begin(), items.end());
    std::vector<std::pair<int, int>> pairs(items.size());
    for (std::size_t i = 0; i < items.size(); ++i) pairs[i] = {items[i], 10};
    p.starmap<task>(std::vector<std::tuple<int>>(100));
    p.starmap<task2>(std::vector<std::pair<int, int>>(100));
    p.map<task_pair>(std::vector<std::pair<int, int>>(100));
    std::vector<double> m1, s1, s2, m2, r1, r2;
    auto once = [&](std::vector<double>& into, auto&& f) { into.push_back(bench::times(1, f)[0]); };
    auto map1 = [&] { checksum += p.map<task>(items).back(); };
    auto star1 = [&] { checksum += p.starmap<task>(singles).back(); };
    auto map2 = [&] { checksum += p.map<task_pair>(pairs).back(); };
    auto star2 = [&] { checksum += p.starmap<task2>(pairs).back(); };
    for (int i = 0; i < reps; ++i) {
      if (i % 2 == 0)
        once(m1, map1), once(s1, star1);
      else
        once(s1, star1), once(m1, map1);
      r1.push_back(s1.back() / m1.back());
    }
    for (int i = 0; i < reps; ++i) {
      if (i % 2 == 0)
        once(m2, map2), once(s2, star2);
      else
        once(s2, star2), once(m2, map2);
      r2.push_back(s2.back() / m2.back());
    }
    bench::report("starmap_1M_items_pool_of_2", bench::median(s1), "s", false,
                  "x*10 of (x): one-argument tuples");
    bench::report("starmap_1M_items_vs_map_1M_items", bench::median(r1), "x", false,
                  "time ratio, the same ints; at most 1 asked");
    bench::report("starmap_1M_pairs_pool_of_2", bench::median(s2), "s", false, "a*b of (x, 10)");
    bench::report("map_1M_pairs_pool_of_2", bench::median(m2), "s", false,
                  "the same pairs, one std::pair parameter");
    bench::report("starmap_1M_pairs_vs_map_1M_pairs", bench::median(r2), "x", false,
                  "time ratio; at most 1 asked");
  }

  if (o.wants("apply_async_calls")) {
    ray::pool p(2);
    p.apply<task>(1);
    const int calls = o.quick ? 5'000 : 20'000;
    auto t = bench::times(o.quick ? 3 : 5, [&] {
      std::vector<ray::object_ref<int>> refs;
      refs.reserve(calls);
      for (int i = 0; i < calls; ++i) refs.push_back(p.apply_async<task>(i));
      checksum += ray::get(refs).get().back();
    });
    bench::report("apply_async_calls", calls / bench::median(t), "calls/s", true,
                  std::to_string(calls) + " submitted, then all got");
  }

  if (o.wants("pool_of_2_start_and_first_call")) {
    auto t = bench::times(o.quick ? 3 : 7, [&] {
      ray::pool p(2);
      checksum += p.apply<task>(1);
    });
    bench::report("pool_of_2_start_and_first_call", bench::median(t), "s", false);
  }

  for (const char* method : {"fork", "spawn"}) {
    if (!o.wants(std::string("process_start_to_target_") + method)) continue;
    const ray::context ctx = ray::get_context(method);
    ray::shared_value<std::int64_t> at(0);
    std::vector<double> t;
    for (int i = 0; i < (o.quick ? 7 : 21); ++i) {
      ray::process p = ctx.process(ray::target<stamp>, at);
      const std::int64_t before = steady_ns();
      p.start();
      p.join();
      t.push_back(static_cast<double>(at.load() - before) / 1e6);
    }
    bench::report(std::string("process_start_to_target_") + method, bench::median(t), "ms", false,
                  "start() to the target's first instruction; at most 2 ms asked");
  }

  // Python's multiprocessing.Process on the same machine in the same run, for comparison,
  // if python3 is there: the same measurement, its target writing time.monotonic_ns().
  if (o.wants("process_start_to_target_python")) {
    const std::string script = fmt::format(
        "import multiprocessing as mp, statistics, time\n"
        "def stamp(v): v.value = time.monotonic_ns()\n"
        "if __name__ == '__main__':\n"
        "  for m in ('fork', 'spawn'):\n"
        "    c = mp.get_context(m); v = c.Value('q', 0); t = []\n"
        "    for _ in range({}):\n"
        "      p = c.Process(target=stamp, args=(v,)); b = time.monotonic_ns()\n"
        "      p.start(); p.join(); t.append((v.value - b) / 1e6)\n"
        "    print(m, statistics.median(t))\n",
        o.quick ? 7 : 21);
    char path[] = "/tmp/coray_pool_bench_XXXXXX.py";
    const int fd = mkstemps(path, 3);
    if (fd >= 0 && write(fd, script.data(), script.size()) == static_cast<ssize_t>(script.size())) {
      close(fd);
      if (FILE* py = popen(fmt::format("python3 {} 2>/dev/null", path).c_str(), "r")) {
        char method[16];
        double ms = 0;
        while (std::fscanf(py, "%15s %lf", method, &ms) == 2)
          bench::report(std::string("process_start_to_target_python_") + method, ms, "ms", false,
                        "Python's multiprocessing.Process, the same measurement, for comparison");
        pclose(py);
      }
    } else if (fd >= 0) {
      close(fd);
    }
    std::remove(path);
  }

  bench::keep(checksum);
  bench::write_json(o);
  return 0;
}
