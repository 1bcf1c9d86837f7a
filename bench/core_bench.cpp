// The core runtime's figures, each the median of several runs, on a runtime of 2 workers:
//
// Rows of Ray's `ray microbenchmark` (python/ray/_private/ray_perf.py), under its row names
// in snake_case, in calls/s (GB/s for the large put), higher is better:
//   single_client_tasks_sync        a trivial task submitted and got, one at a time
//   single_client_tasks_async       1,000 trivial tasks submitted, then all got
//   multi_client_tasks_async        2 actors (one per worker), each submitting 10,000 trivial
//                                   tasks from inside a coroutine method and awaiting them all
//   single_client_put_calls         ray::put of an int (Ray: "... (Plasma Store)")
//   single_client_get_calls         ray::get of a put int (Ray: "... (Plasma Store)")
//   single_client_put_gigabytes     ray::put of 100M doubles (800 MB), 0.8 GB per call
//   single_client_wait_1k_refs      1,000 trivial tasks submitted, then ray::wait with
//                                   num_returns = 1 on the not-ready rest until none is left;
//                                   one call = one such round
//   single_client_get_object_containing_10k_refs
//                                   ray::get in the driver of a task's result holding the
//                                   refs of 10,000 ints the task put
// Also a million tasks submitted at once, against batches of 1,000 (million_queued_tasks,
// million_queued_tasks_vs_batched), and the driver's memory per queued call
// (queued_task_driver_bytes).
// Also single_client_tasks_async_timeline: the same with the timeline recording, and
// timeline_recording_vs_off: its ratio to runtimes not recording, measured alternately.
// Also of refs as values: a task returning a ref and a get through it, against returning
// the value (task_returning_ref_vs_value).
// Also of streaming generators: items a second through a stream of 1,000,000 ints (each
// item's ref taken and got), the time to its first item, and the same ints returned by a task
// as one vector (stream_items_1m_int, stream_first_item, task_vector_1m_int).
// Also: per-call latency of sync task round trips (p50, p99, in us), the large put against
// memcpy into touched memory in the same run, a zero-copy get_view of a 72 MB array against
// getting an int, runtime start-up to the first task result, and idle worker memory (after
// two seconds without work).
//
// Usage: core_bench [--quick] [--json FILE]
#include <chrono>
#include <coray/coray.hpp>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bench_common.hpp"

namespace {

using bench::clk;
using bench::median_rate;
using bench::seconds_since;

int trivial() { return 0; }
ray::generator<int> count_to(int n) {
  for (int i = 0; i < n; ++i) co_yield i;
}
std::vector<int> ints_to(int n) {
  std::vector<int> v(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = i;
  return v;
}
int add(int a, int b) { return a + b; }
int add_one(int x) { return x + 1; }
/// Occupies a task worker until `open` is set: counts itself in `started`, then waits.
int hold(ray::shared_value<int> started, ray::shared_value<int> open) {
  started.fetch_add(1);
  while (open.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return 0;
}
ray::object_ref<int> put_one(int k) { return ray::put(k); }
std::vector<ray::object_ref<int>> put_refs(int n) {
  std::vector<ray::object_ref<int>> refs;
  refs.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) refs.push_back(ray::put(1));
  return refs;
}

/// single_client_tasks_async: batches of 1,000 trivial tasks submitted, then all got.
double tasks_async_rate(int reps, double secs) {
  std::vector<ray::object_ref<int>> refs;
  refs.reserve(1000);
  return median_rate(reps, secs, [&] {
    refs.clear();
    for (int k = 0; k < 1000; ++k) refs.push_back(ray::task<trivial>.remote());
    std::vector<int> all = ray::get(refs);
    bench::keep(all);
    return 1000L;
  });
}

/// Ray's multi_client_tasks_async client: an actor that submits a batch of tasks and waits.
struct task_client {
  ray::async<int> small_value_batch(int n) {
    std::vector<ray::object_ref<int>> refs;
    refs.reserve(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) refs.push_back(ray::task<trivial>.remote());
    std::vector<int> all = co_await ray::get(std::move(refs));
    co_return static_cast<int>(all.size());
  }
};

long status_kib(int pid, const std::string& file, const std::string& field) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/" + file);
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(field, 0) == 0) return std::stol(line.substr(field.size()));
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  ray::enter_worker_if_spawned();
  const bench::options o = bench::parse_options(argc, argv);
  const int reps = o.reps;
  const double secs = o.quick ? 0.3 : 0.75;

  // Start-up: runtime constructed to first task result, 2 workers.
  {
    std::vector<double> t;
    for (int i = 0; i < (o.quick ? 5 : 15); ++i) {
      auto t0 = clk::now();
      ray::runtime rt(argc, argv, {.num_workers = 2});
      ray::get(ray::task<add>.remote(1, 2)).get();
      t.push_back(seconds_since(t0) * 1e3);
    }
    bench::report("runtime_start_to_first_result", bench::median(t), "ms", false,
                  "2 workers; target <= 20 ms");
  }

  // single_client_tasks_async with the timeline recording (runtime_options::record_timeline),
  // and its ratio to the same without: a runtime recording and one not, alternately, so that
  // both see the machine alike (the row single_client_tasks_async below comes later), each
  // first in every other pair (a runtime may start while the last one's processes exit).
  {
    std::vector<double> on, ratio;
    auto rate = [&](bool record) {
      ray::runtime rt(argc, argv, {.num_workers = 2, .record_timeline = record});
      ray::get(ray::task<trivial>.remote()).get();
      return tasks_async_rate(1, secs);
    };
    for (int i = 0; i < std::max(reps, 6); ++i) {
      const bool recorded_first = i % 2 == 1;
      double recorded = recorded_first ? rate(true) : 0;
      const double plain = rate(false);
      if (!recorded_first) recorded = rate(true);
      on.push_back(recorded);
      ratio.push_back(recorded / plain);
    }
    bench::report("single_client_tasks_async_timeline", bench::median(on), "calls/s", true,
                  "record_timeline on; compare timeline_recording_vs_off");
    bench::report("timeline_recording_vs_off", bench::median(ratio), "ratio", true,
                  "single_client_tasks_async recording over not, alternating; target >= 0.95");
  }

  ray::runtime rt(argc, argv, {.num_workers = 2});
  ray::get(ray::task<trivial>.remote()).get();

  auto tasks_sync = [] {
    for (int k = 0; k < 1000; ++k) ray::get(ray::task<trivial>.remote()).get();
    return 1000L;
  };
  bench::report("single_client_tasks_sync", median_rate(reps, secs, tasks_sync), "calls/s", true,
                "target >= 100000");
  bench::report("single_client_tasks_async", tasks_async_rate(reps, secs), "calls/s", true,
                "1000 per batch; target >= 500000");
  {
    // Ray: m actors each run small_value_batch(10000); here m = workers = 2.
    const int n = 10'000;
    std::vector<ray::actor<task_client>> clients;
    for (unsigned i = 0; i < rt.num_workers(); ++i) clients.push_back(ray::spawn<task_client>());
    const auto m = static_cast<long>(clients.size());
    auto multi_client = [&] {
      std::vector<ray::object_ref<int>> done;
      for (auto& c : clients) done.push_back(c.call<&task_client::small_value_batch>(n));
      std::vector<int> counts = ray::get(done);
      bench::keep(counts);
      return m * n;
    };
    bench::report(
        "multi_client_tasks_async", median_rate(reps, secs, multi_client), "calls/s", true,
        std::to_string(m) + " actor clients x " + std::to_string(n) + " nested tasks each");
  }
  {
    // The driver's memory per queued call: both task workers held by a call that waits, a
    // million add_one(i) submitted behind them, the growth of the driver's resident memory
    // over the calls (their records, result states, index and run queue), before any tide as
    // large has sized the index. The refs' vector is touched before, so its pages are not
    // counted.
    const int n = 1'000'000;
    std::vector<ray::object_ref<int>> refs;
    refs.assign(n, ray::object_ref<int>{});
    refs.clear();
    ray::shared_value<int> started(0), open(0);
    std::vector<ray::object_ref<int>> holds;
    for (unsigned w = 0; w < rt.num_workers(); ++w)
      holds.push_back(ray::task<hold>.remote(started, open));
    while (started.load() < static_cast<int>(rt.num_workers()))
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    const long before = status_kib(getpid(), "status", "VmRSS:");
    for (int i = 0; i < n; ++i) refs.push_back(ray::task<add_one>.remote(i));
    const long after = status_kib(getpid(), "status", "VmRSS:");
    open.store(1);
    bench::keep(ray::get(holds));
    bench::keep(ray::get(refs));
    bench::report("queued_task_driver_bytes", static_cast<double>(after - before) * 1024.0 / n, "B",
                  false, "driver memory per queued add_one(int) call; target <= 256");
    // A million tasks submitted at once against the same million in batches of 1,000, each
    // batch got before the next is submitted (the median of each, alternately).
    std::vector<double> at_once, batched;
    for (int k = 0; k < (o.quick ? 1 : 3); ++k) {
      auto t0 = clk::now();
      refs.clear();
      for (int i = 0; i < n; ++i) refs.push_back(ray::task<add_one>.remote(i));
      bench::keep(ray::get(refs));
      at_once.push_back(n / seconds_since(t0));
      t0 = clk::now();
      for (int b = 0; b < n; b += 1000) {
        refs.clear();
        for (int i = b; i < b + 1000; ++i) refs.push_back(ray::task<add_one>.remote(i));
        bench::keep(ray::get(refs));
      }
      batched.push_back(n / seconds_since(t0));
    }
    bench::report("million_queued_tasks", bench::median(at_once), "calls/s", true,
                  "1M add_one(i) submitted, then all got");
    bench::report("million_queued_tasks_vs_batched",
                  bench::median(at_once) / bench::median(batched), "ratio", true,
                  "against batches of 1,000 in the same run; target >= 0.8");
  }
  {
    // Per-call latency of a sync round trip: submit, run in a worker, reply, get.
    const int n = o.quick ? 20'000 : 100'000;
    for (int k = 0; k < 1000; ++k) ray::get(ray::task<trivial>.remote()).get();
    std::vector<double> us;
    us.reserve(static_cast<std::size_t>(n));
    for (int k = 0; k < n; ++k) {
      auto t0 = clk::now();
      ray::get(ray::task<trivial>.remote()).get();
      us.push_back(seconds_since(t0) * 1e6);
    }
    double sum = 0;
    for (double u : us) sum += u;
    char note[96];
    std::snprintf(note, sizeof note, "of %d sync task round trips (mean %.1f us)", n, sum / n);
    bench::report("task_call_latency_p50", bench::percentile(us, 50), "us", false, note);
    bench::report("task_call_latency_p99", bench::percentile(us, 99), "us", false, note);
  }
  auto put_calls = [] {
    for (int k = 0; k < 1000; ++k) {
      auto ref = ray::put(k);
      bench::keep(ref);
    }
    return 1000L;
  };
  bench::report("single_client_put_calls", median_rate(reps, secs, put_calls), "calls/s", true,
                "put of an int; target >= 1000000");
  {
    auto ref = ray::put(12345);
    long sink = 0;
    auto get_calls = [&] {
      for (int k = 0; k < 1000; ++k) sink += ray::get(ref).get();
      return 1000L;
    };
    bench::report("single_client_get_calls", median_rate(reps, secs, get_calls), "calls/s", true,
                  "get of a put int; target >= 2000000");
    bench::keep(sink);
  }
  {
    // Ray puts np.zeros(100 * 1024 * 1024, int64) and counts 0.8 GB a call; here exactly
    // 800 MB. memcpy into memory already touched once, in the same run, is the yardstick.
    const std::size_t n = 100'000'000;
    const double gb = static_cast<double>(n * sizeof(double)) / 1e9;
    std::vector<double> src(n, 1.5), dst(n, 0.0);
    {
      auto warm = ray::put(src);  // the store's pages are touched once, as memcpy's are
      bench::keep(warm);
    }
    std::vector<double> mc, pt;
    for (int i = 0; i < reps; ++i) {
      auto t0 = clk::now();
      std::memcpy(dst.data(), src.data(), n * sizeof(double));
      bench::keep(dst);
      mc.push_back(gb / seconds_since(t0));
      t0 = clk::now();
      auto ref = ray::put(src);
      pt.push_back(gb / seconds_since(t0));
    }
    const double m = bench::median(mc), p = bench::median(pt);
    bench::report("single_client_put_gigabytes", p, "GB/s", true,
                  "ray::put of 800 MB of doubles; target >= 0.8 x memcpy");
    char note[96];
    std::snprintf(note, sizeof note,
                  "memcpy of 800 MB into touched memory: %.2f GB/s; target >= 0.8", m);
    bench::report("put_800mb_vs_memcpy", p / m, "ratio", true, note);
  }
  {
    // Ray's wait_multiple_refs: 1000 tasks, then wait for one at a time on the rest.
    auto wait_1k = [] {
      std::vector<ray::object_ref<int>> not_ready;
      not_ready.reserve(1000);
      for (int k = 0; k < 1000; ++k) not_ready.push_back(ray::task<trivial>.remote());
      while (!not_ready.empty()) {
        ray::wait_result<int> w = ray::wait(std::move(not_ready), {.num_returns = 1});
        not_ready = std::move(w.pending);
      }
      return 1L;
    };
    bench::report("single_client_wait_1k_refs", median_rate(reps, secs, wait_1k), "calls/s", true,
                  "one call = 1000 tasks submitted, then 1000 waits for 1");
  }
  {
    // Ray's create_object_containing_ref: a task puts 10,000 ints and returns their refs,
    // once; the figure is ray::get of that result in the driver (10,000 refs read from the
    // value, each a handle of the driver's), per call.
    auto containing = ray::task<put_refs>.remote(10'000);
    auto get_10k = [&] {
      std::vector<ray::object_ref<int>> refs = ray::get(containing);
      bench::keep(refs);
      return 1L;
    };
    bench::report("single_client_get_object_containing_10k_refs", median_rate(reps, secs, get_10k),
                  "calls/s", true, "target >= 1340 (100x Ray)");
  }
  {
    // A task returning a ref to a value it put, and a get through it, against the same task
    // returning the value: 1,000 calls submitted, then all got (and each ref's value).
    std::vector<ray::object_ref<ray::object_ref<int>>> outer;
    std::vector<ray::object_ref<int>> direct;
    auto through_ref = [&] {
      outer.clear();
      for (int k = 0; k < 1000; ++k) outer.push_back(ray::task<put_one>.remote(k));
      std::vector<ray::object_ref<int>> inner = ray::get(outer);
      std::vector<int> all = ray::get(inner);
      bench::keep(all);
      return 1000L;
    };
    auto by_value = [&] {
      direct.clear();
      for (int k = 0; k < 1000; ++k) direct.push_back(ray::task<add>.remote(k, 0));
      std::vector<int> all = ray::get(direct);
      bench::keep(all);
      return 1000L;
    };
    std::vector<double> ratios;
    for (int i = 0; i < reps; ++i)
      ratios.push_back(bench::rate(secs, through_ref) / bench::rate(secs, by_value));
    bench::report("task_returning_ref_vs_value", bench::median(ratios), "ratio", true,
                  "calls/s returning a ref, then got through it, over returning the value; "
                  "target >= 0.5");
  }
  {
    // Streaming generators: a million ints through a stream, each item's ref taken and got,
    // against the same ints returned by one task as a vector; and the time to the first item.
    const int n = 1'000'000;
    std::vector<double> streamed, whole, first;
    for (int i = 0; i < std::max(3, reps / 2); ++i) {
      auto t0 = clk::now();
      long sum = 0;
      for (ray::object_ref<int> r : ray::task<count_to>.remote(n)) sum += ray::get(r).get();
      streamed.push_back(n / seconds_since(t0));
      t0 = clk::now();
      std::vector<int> v = ray::get(ray::task<ints_to>.remote(n));
      whole.push_back(n / seconds_since(t0));
      t0 = clk::now();
      {
        auto s = ray::task<count_to>.remote(n);
        auto r = s.next().get();
        first.push_back(seconds_since(t0) * 1e6);
        bench::keep(r);
      }
      bench::keep(sum);
      bench::keep(v);
    }
    bench::report("stream_items_1m_int", bench::median(streamed), "items/s", true,
                  "1,000,000 ints streamed, each ref got; target >= 1,000,000");
    bench::report("task_vector_1m_int", bench::median(whole), "items/s", true,
                  "the same ints returned as one vector; compare stream_items_1m_int");
    bench::report("stream_first_item", bench::median(first), "us", false,
                  "from .remote to the first item's ref, of a 1,000,000-item stream");
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
    bench::report("get_view_72mb", bench::median(tv), "ns", false,
                  "zero-copy view of 9M doubles; target <= 5000 ns");
    bench::report("get_int", bench::median(ti), "ns", false, "compare get_view_72mb");
    bench::keep(sink);
  }
  {
    // Idle: a worker gives malloc's free pages back once a whole second passed without work
    // after some (design.md, "Memory"), so the workers are left alone for two first.
    std::this_thread::sleep_for(std::chrono::seconds(2));
    std::vector<double> rss, pss;
    for (int p : rt.worker_pids()) {
      rss.push_back(static_cast<double>(status_kib(p, "status", "VmRSS:")) / 1024.0);
      pss.push_back(static_cast<double>(status_kib(p, "smaps_rollup", "Pss:")) / 1024.0);
    }
    bench::report("idle_worker_rss", bench::median(rss), "MB", false, "target <= 5 MB");
    bench::report("idle_worker_pss", bench::median(pss), "MB", false,
                  "proportional: shared pages split");
  }

  bench::write_json(o);
  return 0;
}
