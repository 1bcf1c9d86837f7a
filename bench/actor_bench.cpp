// Actor figures, medians of several runs, on a runtime of 2 workers:
//
// Rows of Ray's `ray microbenchmark` (python/ray/_private/ray_perf.py), under its row names
// in snake_case, in calls/s, higher is better:
//   1_1_actor_calls_sync      one caller (the driver), one actor: call, get, one at a time
//   1_1_actor_calls_async     the same with 1,000 calls submitted, then all got
//   n_n_actor_calls_async     n client actors (n = workers) each spreading calls over n
//                             server actors and awaiting them all (Ray's clients are tasks)
// Also: pipe_round_trips_sync, the driver sending an int through a ray::pipe to an actor that
// sends it back, one at a time, in round trips/s (multiprocessing.Pipe's ping-pong; target:
// at least half of 1_1_actor_calls_sync); per-call latency of sync actor round trips (p50,
// p99, in us), and a million calls queued on one actor at once, with the order they ran in
// checked; threaded_actor_two_100ms_calls: two calls of a plain method that blocks 100 ms,
// made at once to an actor with max_concurrency = 2 (Ray's threaded actors), in ms from the
// first call to both results (target <= 120: the two run at once).
//
// Usage: actor_bench [--quick] [--json FILE]
#include <chrono>
#include <coray/coray.hpp>
#include <cstdint>
#include <cstdio>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bench_common.hpp"

namespace {

using bench::clk;
using bench::median_rate;
using bench::seconds_since;

struct server {
  int noop(int x) { return x; }
};

struct pipe_echo {
  /// Sends back each value it receives, until a negative one; returns how many.
  long serve(ray::connection<int> c) {
    long n = 0;
    for (int x = c.recv(); x >= 0; x = c.recv(), ++n) c.send(x);
    return n;
  }
};

struct sequence_log {
  std::int64_t next = 0;
  std::int64_t out_of_order = 0;
  void add(std::int64_t v) {
    if (v != next) ++out_of_order;
    next = v + 1;
  }
  std::int64_t errors() const { return out_of_order; }
};

struct blocking_io {
  int wait_ms(int ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return ms;
  }
};

struct client {
  std::vector<ray::actor<server>> servers;
  explicit client(std::vector<ray::actor<server>> s) : servers(std::move(s)) {}
  ray::async<int> run(int calls) {
    std::vector<ray::object_ref<int>> refs;
    refs.reserve(static_cast<std::size_t>(calls));
    for (int i = 0; i < calls; ++i)
      refs.push_back(servers[static_cast<std::size_t>(i) % servers.size()].call<&server::noop>(i));
    auto all = co_await ray::get(std::move(refs));
    co_return static_cast<int>(all.size());
  }
};

}  // namespace

int main(int argc, char** argv) {
  ray::enter_worker_if_spawned();
  const bench::options o = bench::parse_options(argc, argv);
  const int reps = o.reps;
  const double secs = o.quick ? 0.3 : 0.75;
  ray::runtime rt(argc, argv, {.num_workers = 2});

  auto s = ray::spawn<server>();
  ray::get(s.call<&server::noop>(0)).get();
  auto sync_calls = [&] {
    for (int i = 0; i < 1000; ++i) ray::get(s.call<&server::noop>(i)).get();
    return 1000L;
  };
  bench::report("1_1_actor_calls_sync", median_rate(reps, secs, sync_calls), "calls/s", true,
                "target >= 200000");
  {
    auto echo = ray::spawn<pipe_echo>();
    auto ends = ray::pipe<int>();  // not a structured binding: clang 14 cannot capture one
    ray::connection<int> here = std::get<0>(ends);
    auto served = echo.call<&pipe_echo::serve>(std::get<1>(ends));
    auto round_trips = [&] {
      for (int i = 0; i < 1000; ++i) {
        here.send(i);
        bench::keep(here.recv());
      }
      return 1000L;
    };
    bench::report("pipe_round_trips_sync", median_rate(reps, secs, round_trips), "trips/s", true,
                  "driver <-> actor through a ray::pipe<int>; target >= 1_1_actor_calls_sync / 2");
    here.send(-1);
    bench::keep(ray::get(served).get());
  }
  {
    std::vector<ray::object_ref<int>> refs;
    refs.reserve(1000);
    auto async_calls = [&] {
      refs.clear();
      for (int i = 0; i < 1000; ++i) refs.push_back(s.call<&server::noop>(i));
      std::vector<int> all = ray::get(refs);
      bench::keep(all);
      return 1000L;
    };
    bench::report("1_1_actor_calls_async", median_rate(reps, secs, async_calls), "calls/s", true,
                  "1000 per batch; target >= 1000000");
  }
  {
    // Per-call latency of a sync round trip to an actor: call, run, reply, get.
    const int n = o.quick ? 20'000 : 100'000;
    for (int i = 0; i < 1000; ++i) ray::get(s.call<&server::noop>(i)).get();
    std::vector<double> us;
    us.reserve(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
      auto t0 = clk::now();
      ray::get(s.call<&server::noop>(i)).get();
      us.push_back(seconds_since(t0) * 1e6);
    }
    double sum = 0;
    for (double u : us) sum += u;
    char note[96];
    std::snprintf(note, sizeof note, "of %d sync actor round trips (mean %.1f us)", n, sum / n);
    bench::report("actor_call_latency_p50", bench::percentile(us, 50), "us", false, note);
    bench::report("actor_call_latency_p99", bench::percentile(us, 99), "us", false, note);
  }
  {
    const unsigned n = rt.num_workers();
    std::vector<ray::actor<server>> servers;
    for (unsigned i = 0; i < n; ++i) servers.push_back(ray::spawn<server>());
    std::vector<ray::actor<client>> clients;
    for (unsigned i = 0; i < n; ++i) clients.push_back(ray::spawn<client>(servers));
    const int calls = o.quick ? 20'000 : 100'000;
    std::vector<double> r;
    for (int k = 0; k < reps; ++k) {
      auto t0 = clk::now();
      std::vector<ray::object_ref<int>> done;
      for (auto& c : clients) done.push_back(c.call<&client::run>(calls));
      std::vector<int> all = ray::get(done);
      bench::keep(all);
      r.push_back(static_cast<double>(n) * calls / seconds_since(t0));
    }
    bench::report("n_n_actor_calls_async", bench::median(r), "calls/s", true,
                  std::to_string(n) + " client actors x " + std::to_string(calls) + " calls over " +
                      std::to_string(n) + " server actors");
  }
  {
    auto log = ray::spawn<sequence_log>();
    const std::int64_t n = 1'000'000;
    auto t0 = clk::now();
    for (std::int64_t i = 0; i < n; ++i) log.call<&sequence_log::add>(i);
    std::int64_t errors = ray::get(log.call<&sequence_log::errors>());
    bench::report("million_queued_calls", static_cast<double>(n) / seconds_since(t0), "calls/s",
                  true, "1M calls to one actor, submitted then drained");
    bench::report("million_queued_calls_out_of_order", static_cast<double>(errors), "calls", false,
                  "must be 0");
  }

  {
    auto io = ray::spawn<blocking_io>(ray::actor_options{.max_concurrency = 2});
    ray::get(io.call<&blocking_io::wait_ms>(0)).get();
    std::vector<double> ms;
    for (int k = 0; k < reps; ++k) {
      auto t0 = clk::now();
      auto a = io.call<&blocking_io::wait_ms>(100);
      auto b = io.call<&blocking_io::wait_ms>(100);
      bench::keep(ray::get(a).get() + ray::get(b).get());
      ms.push_back(seconds_since(t0) * 1e3);
    }
    bench::report("threaded_actor_two_100ms_calls", bench::median(ms), "ms", false,
                  "max_concurrency = 2, two plain methods blocking 100 ms; target <= 120");
  }

  bench::write_json(o);
  return 0;
}
