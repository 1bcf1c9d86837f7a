// Actor figures (issue: actors), medians of several runs:
//   1:1 actor calls sync and async (pipelined), n:n actor calls async, a million queued
//   calls with their order checked, and seed 004's streaming prefix count with one actor
//   per worker against the same C++ run serially and on std::threads with per-thread state.
// Usage: actor_bench [--quick]
#include <coray/coray.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace {

using clk = std::chrono::steady_clock;
double seconds_since(clk::time_point t0) { return std::chrono::duration<double>(clk::now() - t0).count(); }
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
void report(const char* name, double value, const char* unit, const char* target) {
  std::printf("%-40s %14.1f %-8s (target %s)\n", name, value, unit, target);
  std::fflush(stdout);
}

struct server {
  int noop(int x) { return x; }
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

struct client {
  std::vector<ray::actor<server>> servers;
  explicit client(std::vector<ray::actor<server>> s) : servers(std::move(s)) {}
  ray::async<int> run(int calls) {
    std::vector<ray::object_ref<int>> refs;
    refs.reserve(static_cast<std::size_t>(calls));
    for (int i = 0; i < calls; ++i) refs.push_back(servers[static_cast<std::size_t>(i) % servers.size()].call<&server::noop>(i));
    auto all = co_await ray::get(refs);
    co_return static_cast<int>(all.size());
  }
};

// ---- seed 004, workload 2 ----------------------------------------------------------------

struct streaming_prefix_count {
  std::unordered_map<std::string, int> prefix_count;
  std::unordered_set<std::string> popular_prefixes;
  void add_document(const std::vector<std::string>& document) {
    for (const auto& word : document)
      for (std::size_t i = 1; i < word.size(); ++i) {
        std::string prefix = word.substr(0, i);
        if (++prefix_count[prefix] > 3) popular_prefixes.insert(prefix);
      }
  }
  std::vector<std::string> get_popular() const { return {popular_prefixes.begin(), popular_prefixes.end()}; }
};

std::vector<std::string> random_document(std::mt19937_64& gen) {
  std::vector<std::string> document(10'000, std::string(20, '\0'));
  for (auto& word : document)
    for (auto& c : word) c = static_cast<char>(gen() & 0xff);
  return document;
}

std::size_t prefix_serial(unsigned workers) {
  std::mt19937_64 gen(2024);
  std::vector<streaming_prefix_count> state(workers);
  for (unsigned i = 0; i < workers * 10; ++i) state[i % workers].add_document(random_document(gen));
  std::set<std::string> popular;
  for (auto& s : state) popular.insert(s.popular_prefixes.begin(), s.popular_prefixes.end());
  return popular.size();
}

std::size_t prefix_threads(unsigned workers) {
  // The same stream: the main thread makes documents, each thread owns one state.
  std::mt19937_64 gen(2024);
  std::vector<streaming_prefix_count> state(workers);
  std::vector<std::vector<std::vector<std::string>>> inbox(workers);
  for (unsigned i = 0; i < workers * 10; ++i) inbox[i % workers].push_back(random_document(gen));
  std::vector<std::thread> threads;
  for (unsigned w = 0; w < workers; ++w)
    threads.emplace_back([&, w] {
      for (auto& d : inbox[w]) state[w].add_document(d);
    });
  for (auto& t : threads) t.join();
  std::set<std::string> popular;
  for (auto& s : state) popular.insert(s.popular_prefixes.begin(), s.popular_prefixes.end());
  return popular.size();
}

std::size_t prefix_coray(std::vector<ray::actor<streaming_prefix_count>>& actors) {
  std::mt19937_64 gen(2024);
  const auto n = static_cast<unsigned>(actors.size());
  for (unsigned i = 0; i < n * 10; ++i) actors[i % n].call<&streaming_prefix_count::add_document>(random_document(gen));
  std::vector<ray::object_ref<std::vector<std::string>>> results;
  for (auto& a : actors) results.push_back(a.call<&streaming_prefix_count::get_popular>());
  std::set<std::string> popular;
  for (auto& p : ray::get(results).get()) popular.insert(p.begin(), p.end());
  return popular.size();
}

}  // namespace

int main(int argc, char** argv) {
  ray::enter_worker_if_spawned();
  const bool quick = argc > 1 && std::string(argv[1]) == "--quick";
  const int reps = quick ? 3 : 5;
  ray::runtime rt(argc, argv, {.num_workers = 2});

  auto s = ray::spawn<server>();
  ray::get(s.call<&server::noop>(0)).get();
  {
    std::vector<double> r;
    for (int k = 0; k < reps; ++k) {
      const int n = quick ? 50'000 : 200'000;
      auto t0 = clk::now();
      for (int i = 0; i < n; ++i) ray::get(s.call<&server::noop>(i)).get();
      r.push_back(n / seconds_since(t0));
    }
    report("1_1_actor_calls_sync", median(r), "calls/s", ">= 200000");
  }
  {
    std::vector<double> r;
    std::vector<ray::object_ref<int>> refs;
    for (int k = 0; k < reps; ++k) {
      const int batches = quick ? 50 : 200;
      auto t0 = clk::now();
      for (int b = 0; b < batches; ++b) {
        refs.clear();
        for (int i = 0; i < 1000; ++i) refs.push_back(s.call<&server::noop>(i));
        std::vector<int> all = ray::get(refs);
      }
      r.push_back(batches * 1000 / seconds_since(t0));
    }
    report("1_1_actor_calls_async", median(r), "calls/s", ">= 1000000");
  }
  {
    const unsigned n = rt.num_workers();
    std::vector<ray::actor<server>> servers;
    for (unsigned i = 0; i < n; ++i) servers.push_back(ray::spawn<server>());
    std::vector<ray::actor<client>> clients;
    for (unsigned i = 0; i < n; ++i) clients.push_back(ray::spawn<client>(servers));
    std::vector<double> r;
    const int calls = quick ? 20'000 : 100'000;
    for (int k = 0; k < reps; ++k) {
      auto t0 = clk::now();
      std::vector<ray::object_ref<int>> done;
      for (auto& c : clients) done.push_back(c.call<&client::run>(calls));
      std::vector<int> all = ray::get(done);
      r.push_back(static_cast<double>(n) * calls / seconds_since(t0));
    }
    report("n_n_actor_calls_async", median(r), "calls/s", "report (n = workers)");
  }
  {
    auto log = ray::spawn<sequence_log>();
    const std::int64_t n = 1'000'000;
    auto t0 = clk::now();
    for (std::int64_t i = 0; i < n; ++i) log.call<&sequence_log::add>(i);
    std::int64_t errors = ray::get(log.call<&sequence_log::errors>());
    report("million_queued_calls", n / seconds_since(t0), "calls/s", "all in order");
    report("million_queued_calls_out_of_order", static_cast<double>(errors), "calls", "0");
  }
  {
    const unsigned w = 2;
    std::vector<ray::actor<streaming_prefix_count>> actors;
    std::vector<double> ts, tt, tc;
    std::size_t a = 0, b = 0, c = 0;
    for (int k = 0; k < reps; ++k) {
      auto t0 = clk::now();
      a = prefix_serial(w);
      ts.push_back(seconds_since(t0));
      t0 = clk::now();
      b = prefix_threads(w);
      tt.push_back(seconds_since(t0));
      actors.clear();
      for (unsigned i = 0; i < w; ++i) actors.push_back(ray::spawn<streaming_prefix_count>());
      t0 = clk::now();
      c = prefix_coray(actors);
      tc.push_back(seconds_since(t0));
    }
    if (a != b || b != c) std::printf("MISMATCH: %zu %zu %zu popular prefixes\n", a, b, c);
    report("prefix_count_serial", median(ts), "s", "-");
    report("prefix_count_threads", median(tt), "s", "-");
    report("prefix_count_coray_2_actors", median(tc), "s", "-");
    report("prefix_count_speedup_vs_serial", median(ts) / median(tc), "x", ">= 1.7");
    report("prefix_count_coray_vs_threads", median(tc) / median(tt), "x", "<= 1.15");
  }
}
