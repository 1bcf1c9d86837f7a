// Remote tasks: results, dependencies, coroutine bodies, errors and crashes.
#include <doctest/doctest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <coray/coray.hpp>
#include <numeric>
#include <string>
#include <vector>

namespace {

int add(int a, int b) { return a + b; }
int process_id() { return getpid(); }
std::string greet(std::string_view name) { return "hello " + std::string(name); }
std::vector<int> iota_vec(int n) {
  std::vector<int> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  return v;
}
double sum(std::span<const double> xs) { return std::accumulate(xs.begin(), xs.end(), 0.0); }
void nothing(int) {}
int throws_out_of_range(int i) { return std::vector<int>{}.at(static_cast<std::size_t>(i)); }
int die_by_signal(int sig) {
  raise(sig);
  return 0;
}

/// Polls a flag in shared memory, sleeping between polls.
ray::async<int> wait_for_flag(ray::shared_value<int> flag) {
  while (flag.load() == 0) co_await ray::sleep_for(std::chrono::milliseconds(1));
  co_return flag.load();
}
int raise_flag(ray::shared_value<int> flag) {
  flag.store(7);
  return 1;
}

ray::async<int> fib(int n) {
  if (n < 2) co_return n;
  auto a = ray::task<fib>.remote(n - 1);
  auto b = ray::task<fib>.remote(n - 2);
  co_return co_await ray::get(a) + co_await ray::get(b);
}

ray::async<int> sum_of_adds(int n) {
  std::vector<ray::object_ref<int>> refs;
  for (int i = 0; i < n; ++i) refs.push_back(ray::task<add>.remote(i, i));
  auto all = co_await ray::get(refs);
  co_return std::accumulate(all.begin(), all.end(), 0);
}

int blocking_nested(int n) {
  int v = ray::get(ray::task<add>.remote(n, 1));
  return v * 2;
}

struct point {
  double x, y;
  std::string label;
};
point mirror(point p) { return {p.y, p.x, p.label + "'"}; }

}  // namespace

TEST_CASE("a task runs in another process and returns its result") {
  ray::runtime rt({.num_workers = 2});
  CHECK(ray::get(ray::task<add>.remote(1, 2)).get() == 3);
  int pid = ray::get(ray::task<process_id>.remote());
  CHECK(pid != getpid());
  auto pids = rt.worker_pids();
  CHECK(std::find(pids.begin(), pids.end(), pid) != pids.end());
}

TEST_CASE("co_await and blocking get give the same result") {
  ray::runtime rt({.num_workers = 2});
  int blocking = ray::get(ray::task<add>.remote(20, 22));
  int awaited = rt.run(
      []() -> ray::async<int> { co_return co_await ray::get(ray::task<add>.remote(20, 22)); }());
  CHECK(blocking == 42);
  CHECK(awaited == 42);
}

TEST_CASE("arguments convert to the parameter types and strings, vectors and structs travel") {
  ray::runtime rt({.num_workers = 2});
  CHECK(ray::get(ray::task<greet>.remote("coray")).get() == "hello coray");
  CHECK(ray::get(ray::task<greet>.remote(std::string("ray"))).get() == "hello ray");
  CHECK(ray::get(ray::task<add>.remote(short{2}, 'a')).get() == 99);
  std::vector<int> v = ray::get(ray::task<iota_vec>.remote(1000));
  CHECK(v.size() == 1000);
  CHECK(v[999] == 999);
  point p = ray::get(ray::task<mirror>.remote(point{1.5, 2.5, "p"}));
  CHECK(p.x == 2.5);
  CHECK(p.y == 1.5);
  CHECK(p.label == "p'");
  ray::get(ray::task<nothing>.remote(1)).get();
}

TEST_CASE("object_ref arguments are dependencies: the task gets their values") {
  ray::runtime rt({.num_workers = 2});
  auto a = ray::task<add>.remote(1, 2);
  auto b = ray::task<add>.remote(a, 10);
  auto c = ray::task<add>.remote(b, a);
  CHECK(ray::get(c).get() == 16);
  auto xs = ray::put(std::vector<double>(1000, 0.5));
  CHECK(ray::get(ray::task<sum>.remote(xs)).get() == 500.0);
}

TEST_CASE("a task whose dependency failed fails with the dependency's error") {
  ray::runtime rt({.num_workers = 2});
  auto bad = ray::task<throws_out_of_range>.remote(3);
  auto after = ray::task<add>.remote(bad, 1);
  CHECK_THROWS_AS(ray::get(after).get(), ray::task_error);
}

TEST_CASE("large arguments and results go through the object store") {
  ray::runtime rt({.num_workers = 2, .inline_threshold = 1024});
  std::vector<double> big(100'000, 1.0);
  CHECK(ray::get(ray::task<sum>.remote(big)).get() == 100'000.0);
  std::vector<int> v = ray::get(ray::task<iota_vec>.remote(50'000));
  CHECK(v.size() == 50'000);
  CHECK(v.back() == 49'999);
}

TEST_CASE("many tasks in flight all complete with their own results") {
  ray::runtime rt({.num_workers = 2});
  std::vector<ray::object_ref<int>> refs;
  for (int i = 0; i < 5000; ++i) refs.push_back(ray::task<add>.remote(i, i));
  std::vector<int> all = ray::get(refs);
  for (int i = 0; i < 5000; ++i) REQUIRE(all[static_cast<std::size_t>(i)] == 2 * i);
}

TEST_CASE(
    "a coroutine task awaiting nested tasks does not deadlock the pool: fib(15) with 2 workers") {
  ray::runtime rt({.num_workers = 2});
  CHECK(ray::get(ray::task<fib>.remote(15)).get() == 610);
  CHECK(ray::get(ray::task<sum_of_adds>.remote(100)).get() == 9900);
}

TEST_CASE("a plain task may block on a nested task") {
  ray::runtime rt({.num_workers = 1});
  CHECK(ray::get(ray::task<blocking_nested>.remote(4)).get() == 10);
}

TEST_CASE("a task's exception reaches the caller as task_error with its type and message") {
  ray::runtime rt({.num_workers = 2});
  try {
    ray::get(ray::task<throws_out_of_range>.remote(5)).get();
    FAIL("expected task_error");
  } catch (const ray::task_error& e) {
    CHECK(e.type_name() == "std::out_of_range");
    CHECK(std::string(e.remote_what()).find("vector") != std::string::npos);
    CHECK(std::string(e.what()).find("throws_out_of_range") != std::string::npos);
  }
  CHECK(ray::get(ray::task<add>.remote(1, 1)).get() == 2);  // the worker lives on
}

TEST_CASE("a worker killed by a signal fails its call with worker_crashed and is replaced") {
  ray::runtime rt({.num_workers = 2});
  auto before = rt.worker_pids();
  try {
    ray::get(ray::task<die_by_signal>.remote(SIGSEGV)).get();
    FAIL("expected worker_crashed");
  } catch (const ray::worker_crashed& e) {
    CHECK(std::string(e.what()).find("SIGSEGV") != std::string::npos);
    CHECK(std::string(e.what()).find("die_by_signal") != std::string::npos);
  }
  try {
    ray::get(ray::task<die_by_signal>.remote(SIGKILL)).get();
    FAIL("expected worker_crashed");
  } catch (const ray::worker_crashed& e) {
    CHECK(std::string(e.what()).find("SIGKILL") != std::string::npos);
  }
  // Later tasks run, on both workers.
  std::vector<ray::object_ref<int>> refs;
  for (int i = 0; i < 100; ++i) refs.push_back(ray::task<add>.remote(i, 1));
  std::vector<int> all = ray::get(refs);
  CHECK(all[99] == 100);
  auto after = rt.worker_pids();
  CHECK(after != before);
}

TEST_CASE("tasks queued behind a crashing one still run") {
  ray::runtime rt({.num_workers = 1, .max_tasks_in_flight_per_worker = 8});
  auto crash = ray::task<die_by_signal>.remote(SIGABRT);
  std::vector<ray::object_ref<int>> refs;
  for (int i = 0; i < 20; ++i) refs.push_back(ray::task<add>.remote(i, 1));
  CHECK_THROWS_AS(ray::get(crash).get(), ray::worker_crashed);
  std::vector<int> all = ray::get(refs);
  CHECK(all[19] == 20);
}

TEST_CASE("a coroutine task sleeping in ray::sleep_for does not occupy its worker") {
  ray::runtime rt({.num_workers = 1});
  ray::shared_value<int> flag(0);
  auto waiting = ray::task<wait_for_flag>.remote(flag);
  // The one worker runs this while wait_for_flag sleeps; were it blocked, neither would end.
  CHECK(ray::get(ray::task<raise_flag>.remote(flag), {.timeout = std::chrono::seconds(20)}).get() ==
        1);
  CHECK(ray::get(waiting, {.timeout = std::chrono::seconds(20)}).get() == 7);
}

TEST_CASE("ray::sleep_for in the driver's coroutines waits at least as long as asked") {
  ray::runtime rt({.num_workers = 1});
  const auto start = std::chrono::steady_clock::now();
  const int v = ray::sync_wait([]() -> ray::async<int> {
    co_await ray::sleep_for(std::chrono::milliseconds(20));
    co_await ray::sleep_for(std::chrono::milliseconds(-5));  // not positive: no wait
    co_await ray::sleep_until(std::chrono::system_clock::now() + std::chrono::milliseconds(10));
    co_return 3;
  }());
  CHECK(v == 3);
  CHECK(std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(30));
}
