// Load: Ray's single-node envelope. 10,000,000 actor calls from 4 producers with none lost
// and each producer's order kept; 1,000,000 tasks queued at once, all completing; a task
// with 10,000 object_ref arguments; a get of 10,000 objects.
// Usage: load [--scale F]   (F = 1 is the full envelope; CTest runs a fraction)
#include <chrono>
#include <coray/coray.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <vector>

namespace {

using clk = std::chrono::steady_clock;
double since(clk::time_point t) { return std::chrono::duration<double>(clk::now() - t).count(); }

int square(int x) { return x * x; }
long total(std::vector<int> xs) { return std::accumulate(xs.begin(), xs.end(), 0L); }

struct sink {
  std::vector<std::int64_t> next = std::vector<std::int64_t>(4, 0);
  std::int64_t received = 0, out_of_order = 0;
  void take(int producer, std::int64_t seq) {
    ++received;
    if (next[static_cast<std::size_t>(producer)] != seq) ++out_of_order;
    next[static_cast<std::size_t>(producer)] = seq + 1;
  }
  std::vector<std::int64_t> report() const { return {received, out_of_order}; }
};

struct producer {
  ray::actor<sink> target;
  int id;
  producer(ray::actor<sink> t, int i) : target(std::move(t)), id(i) {}
  ray::async<std::int64_t> run(std::int64_t calls) {
    // Fire-and-forget in order; wait on every 4096th so memory stays bounded.
    for (std::int64_t i = 0; i < calls; ++i) {
      auto r = target.call<&sink::take>(id, i);
      if (i % 4096 == 4095) co_await ray::get(r);
    }
    co_return calls;
  }
};

}  // namespace

int main(int argc, char** argv) {
  ray::enter_worker_if_spawned();
  double scale = 1.0;
  for (int i = 1; i + 1 < argc; ++i)
    if (!std::strcmp(argv[i], "--scale")) scale = std::atof(argv[i + 1]);
  ray::runtime rt(argc, argv, {.num_workers = 2});
  int passed = 0, failed = 0;
  auto check = [&](bool ok, const char* what) {
    (ok ? passed : failed)++;
    std::printf("%s: %s\n", ok ? "ok" : "FAILED", what);
  };

  {
    const auto calls = static_cast<std::int64_t>(10'000'000 * scale);
    auto s = ray::spawn<sink>();
    std::vector<ray::actor<producer>> ps;
    for (int p = 0; p < 4; ++p) ps.push_back(ray::spawn<producer>(s, p));
    auto t0 = clk::now();
    std::vector<ray::object_ref<std::int64_t>> done;
    for (auto& p : ps) done.push_back(p.call<&producer::run>(calls / 4));
    std::vector<std::int64_t> sent = ray::get(done);
    std::vector<std::int64_t> r = ray::get(s.call<&sink::report>());
    std::printf("  %lld actor calls from 4 producers in %.1f s (%.0f/s), %lld out of order\n",
                (long long)r[0], since(t0), static_cast<double>(r[0]) / since(t0), (long long)r[1]);
    check(r[0] == calls / 4 * 4 && r[1] == 0,
          "actor calls from 4 producers: none lost, each producer's order kept");
  }
  {
    const int n = static_cast<int>(1'000'000 * scale);
    auto t0 = clk::now();
    std::vector<ray::object_ref<int>> refs;
    refs.reserve(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) refs.push_back(ray::task<square>.remote(i % 1000));
    std::vector<int> all = ray::get(refs);
    bool ok = static_cast<int>(all.size()) == n;
    for (int i = 0; ok && i < n; ++i)
      ok = all[static_cast<std::size_t>(i)] == (i % 1000) * (i % 1000);
    std::printf("  %d tasks queued at once, all gotten in %.1f s\n", n, since(t0));
    check(ok, "tasks queued at once all complete");
  }
  {
    std::vector<ray::object_ref<int>> refs;
    for (int i = 0; i < 10'000; ++i) refs.push_back(ray::task<square>.remote(i));
    long expected = 0;
    for (long i = 0; i < 10'000; ++i) expected += i * i;
    check(ray::get(ray::task<total>.remote(refs)).get() == expected,
          "a task with 10,000 object_ref arguments");
    std::vector<ray::object_ref<int>> objects;
    for (int i = 0; i < 10'000; ++i) objects.push_back(ray::put(i));
    std::vector<int> got = ray::get(objects);
    check(got.size() == 10'000 && got[9'999] == 9'999, "a get of 10,000 objects");
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
