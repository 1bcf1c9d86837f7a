// Streaming generators: a task or actor method that co_yields gives its caller a stream of
// refs, consumed while the items are made (Ray's num_returns="streaming").
#include <doctest/doctest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <coray/coray.hpp>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

void wait_for_file(const std::string& path) {
  while (access(path.c_str(), F_OK) != 0) std::this_thread::yield();
}

void make_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "w");
  REQUIRE(f);
  std::fclose(f);
}

ray::generator<int> count_to(int n) {
  for (int i = 0; i < n; ++i) co_yield i;
}

ray::generator<int> fail_after(int n) {
  for (int i = 0; i < n; ++i) co_yield i;
  throw std::runtime_error("the source ran dry");
}

// Big items go through the store, each in a block of its own.
ray::generator<std::vector<double>> big_items(int n, int size) {
  for (int i = 0; i < n; ++i) co_yield std::vector<double>(static_cast<std::size_t>(size), i);
}

// Counts each item it makes in `made`: how far the producer ran ahead of its consumer.
ray::generator<int> counted(ray::shared_value<std::int64_t> made, int n) {
  for (int i = 0; i < n; ++i) {
    made.fetch_add(1);
    co_yield i;
  }
}

// Dies after `n` items, the first time only (`marker` says a first attempt happened).
ray::generator<int> die_once_after(int n, int total, std::string marker) {
  const bool first = access(marker.c_str(), F_OK) != 0;
  for (int i = 0; i < total; ++i) {
    if (first && i == n) {
      std::FILE* f = std::fopen(marker.c_str(), "w");
      if (f) std::fclose(f);
      kill(getpid(), SIGKILL);
    }
    co_yield i;
  }
}

// Yields `n` items, waits until the driver took them all (it makes `path`), then dies.
ray::generator<int> die_after(int n, std::string path) {
  for (int i = 0; i < n; ++i) co_yield i;
  wait_for_file(path);
  kill(getpid(), SIGKILL);
  co_yield -1;
}

// Yields one item, then holds until the driver makes `path`: the first item is consumed
// while the call still runs.
ray::generator<int> one_then_wait(std::string path) {
  co_yield 1;
  wait_for_file(path);
  co_yield 2;
}

ray::generator<int> endless(ray::shared_value<std::int64_t> made) {
  for (int i = 0;; ++i) {
    made.fetch_add(1);
    co_yield i;
  }
}

ray::generator<int> nothing() { co_return; }

int add(int a, int b) { return a + b; }

struct ticker {
  int next = 100;
  ray::generator<int> ticks(int n) {
    for (int i = 0; i < n; ++i) co_yield next++;
  }
  ray::generator<int> ticks_then_die(int n, std::string path) {
    for (int i = 0; i < n; ++i) co_yield i;
    wait_for_file(path);
    kill(getpid(), SIGKILL);
    co_yield -1;
  }
  int now() const { return next; }
};

int fails(int x) {
  if (x >= 0) throw std::invalid_argument("no count for you");
  return x;
}

// A call whose argument is a failed call's result, made from inside a task.
int add_to_failed() { return ray::get(ray::task<add>.remote(ray::task<fails>.remote(3), 1)); }

// Streams a count whose length is a failed call's result: the stream ends with that error.
long stream_of_failed_count() {
  long taken = 0;
  for (auto r : ray::task<count_to>.remote(ray::task<fails>.remote(3))) taken += ray::get(r).get();
  return taken;
}

long stream_inside_task(int n) {
  long total = 0;
  for (auto r : ray::task<count_to>.remote(n)) total += ray::get(r).get();
  return total;
}

struct stream_reader {
  ray::async<long> sum(int n) {
    long total = 0;
    auto s = ray::task<count_to>.remote(n);
    while (auto r = co_await s.next()) total += co_await ray::get(*r);
    co_return total;
  }
};

int take_three(ray::shared_value<std::int64_t> made) {
  auto s = ray::task<endless>.remote(made);
  int taken = 0;
  for (int i = 0; i < 3; ++i) taken += s.next().get().has_value() ? 1 : 0;
  return taken;
}

int sum_until_error(int n) {
  auto s = ray::task<fail_after>.options({.max_retries = 0}).remote(n);
  int taken = 0;
  try {
    while (auto r = s.next().get()) ++taken;
  } catch (const ray::task_error& e) {
    throw std::runtime_error("after " + std::to_string(taken) + " items: " + e.remote_what());
  }
  return taken;
}

std::string temp_path(const char* what) {
  return "/tmp/coray_gen_" + std::to_string(getpid()) + "_" + what;
}

ray::async<std::vector<int>> consume_awaiting(ray::object_ref_generator<int> s) {
  std::vector<int> got;
  while (auto r = co_await s.next()) got.push_back(co_await ray::get(*r));
  co_return got;
}

}  // namespace

TEST_CASE("a generator's items arrive in order, consumed by a blocking loop") {
  ray::runtime rt({.num_workers = 2});
  std::vector<int> got;
  for (ray::object_ref<int> r : ray::task<count_to>.remote(5000)) got.push_back(ray::get(r));
  REQUIRE(got.size() == 5000);
  for (int i = 0; i < 5000; ++i) REQUIRE(got[static_cast<std::size_t>(i)] == i);
}

TEST_CASE("a coroutine awaits each item of a stream in turn") {
  ray::runtime rt({.num_workers = 1});
  std::vector<int> got = ray::sync_wait(consume_awaiting(ray::task<count_to>.remote(300)));
  REQUIRE(got.size() == 300);
  CHECK(got.front() == 0);
  CHECK(got.back() == 299);
}

TEST_CASE("an empty generator ends at once, and next() keeps saying so") {
  ray::runtime rt({.num_workers = 1});
  auto s = ray::task<nothing>.remote();
  CHECK_FALSE(s.next().get().has_value());
  CHECK_FALSE(s.next().get().has_value());
}

TEST_CASE("the first item is consumed while the generator still runs") {
  ray::runtime rt({.num_workers = 1});
  const std::string path = temp_path("first");
  std::remove(path.c_str());
  auto s = ray::task<one_then_wait>.remote(path);
  auto first = s.next().get();
  REQUIRE(first.has_value());
  CHECK(ray::get(*first).get() == 1);
  make_file(path);
  auto second = s.next().get();
  REQUIRE(second.has_value());
  CHECK(ray::get(*second).get() == 2);
  CHECK_FALSE(s.next().get().has_value());
  std::remove(path.c_str());
}

TEST_CASE("an exception mid-stream delivers the items before it, then the error") {
  ray::runtime rt({.num_workers = 1});
  auto s = ray::task<fail_after>.options({.max_retries = 0}).remote(3);
  for (int i = 0; i < 3; ++i) {
    auto r = s.next().get();
    REQUIRE(r.has_value());
    CHECK(ray::get(*r).get() == i);
  }
  CHECK_THROWS_WITH_AS(s.next().get(), doctest::Contains("the source ran dry"), ray::task_error);
}

TEST_CASE("a worker killed mid-stream gives worker_crashed after the items delivered") {
  ray::runtime rt({.num_workers = 1});
  const std::string path = temp_path("die");
  std::remove(path.c_str());
  auto s = ray::task<die_after>.options({.max_retries = 0}).remote(10, path);
  int taken = 0;
  try {
    while (auto r = s.next().get()) {
      CHECK(ray::get(*r).get() == taken);
      if (++taken == 10) make_file(path);
    }
    FAIL("the stream ended without an error");
  } catch (const ray::worker_crashed&) {
  }
  CHECK(taken == 10);
  CHECK(ray::get(ray::task<add>.remote(1, 2)).get() == 3);  // a new worker took the slot
  std::remove(path.c_str());
}

TEST_CASE("a retried generator runs again from the start, and no item arrives twice") {
  ray::runtime rt({.num_workers = 1});
  const std::string marker = temp_path("retry");
  std::remove(marker.c_str());
  std::vector<int> got;
  for (auto r : ray::task<die_once_after>.options({.max_retries = 1}).remote(1500, 3000, marker))
    got.push_back(ray::get(r));
  REQUIRE(got.size() == 3000);
  for (int i = 0; i < 3000; ++i) REQUIRE(got[static_cast<std::size_t>(i)] == i);
  CHECK(access(marker.c_str(), F_OK) == 0);  // the first attempt did die
  std::remove(marker.c_str());
}

TEST_CASE("the producer runs at most a window ahead of its consumer") {
  ray::runtime rt({.num_workers = 1});
  ray::shared_value<std::int64_t> made(0);
  const int n = 20000;
  auto s = ray::task<counted>.remote(made, n);
  std::int64_t consumed = 0;
  std::int64_t most_ahead = 0;
  while (auto r = s.next().get()) {
    ++consumed;
    most_ahead = std::max(most_ahead, made.load() - consumed);
    if (consumed % 2000 == 0) {
      // Give the producer every chance to run ahead: wait until it stops moving.
      std::int64_t last = -1;
      while (made.load() != last) {
        last = made.load();
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      most_ahead = std::max(most_ahead, made.load() - consumed);
    }
  }
  CHECK(consumed == n);
  CHECK(most_ahead <= static_cast<std::int64_t>(ray::detail::stream_window));
  CHECK(most_ahead > 0);
}

TEST_CASE("cancelling a stream stops its producer, and the items delivered stay") {
  ray::runtime rt({.num_workers = 1});
  ray::shared_value<std::int64_t> made(0);
  auto s = ray::task<endless>.remote(made);
  for (int i = 0; i < 3; ++i) REQUIRE(ray::get(*s.next().get()).get() == i);
  s.cancel();
  try {
    while (s.next().get()) {
    }
    FAIL("a cancelled stream ended without an error");
  } catch (const ray::cancelled&) {
  }
  // The worker is free again: the endless generator stopped.
  CHECK(ray::get(ray::task<add>.remote(2, 3), {.timeout = std::chrono::seconds(60)}).get() == 5);
  const auto stopped_at = made.load();
  CHECK(ray::get(ray::task<add>.remote(2, 3)).get() == 5);
  CHECK(made.load() == stopped_at);
}

TEST_CASE("dropping a stream before its end stops its producer") {
  ray::runtime rt({.num_workers = 1});
  ray::shared_value<std::int64_t> made(0);
  {
    auto s = ray::task<endless>.remote(made);
    REQUIRE(s.next().get().has_value());
  }
  CHECK(ray::get(ray::task<add>.remote(4, 5), {.timeout = std::chrono::seconds(60)}).get() == 9);
}

TEST_CASE("big items travel in the store, and their memory returns once their refs go") {
  ray::runtime rt({.num_workers = 1, .object_store_bytes = 64 << 20});
  const auto free0 = rt.object_store_free_bytes();
  {
    std::vector<ray::object_ref<std::vector<double>>> kept;
    for (auto r : ray::task<big_items>.remote(20, 100000)) kept.push_back(r);
    REQUIRE(kept.size() == 20);
    CHECK(rt.object_store_free_bytes() < free0 - 20 * 800000);
    for (int i = 0; i < 20; ++i) {
      std::vector<double> v = ray::get(kept[static_cast<std::size_t>(i)]);
      REQUIRE(v.size() == 100000);
      CHECK(v[0] == i);
    }
  }
  for (int i = 0; i < 8; ++i) ray::get(ray::task<add>.remote(i, i)).get();  // releases flow
  CHECK(rt.object_store_free_bytes() == free0);
}

TEST_CASE("an actor method streams, in order with the actor's other calls") {
  ray::runtime rt({.num_workers = 1});
  auto a = ray::spawn<ticker>();
  std::vector<int> got;
  for (auto r : a.call<&ticker::ticks>(5)) got.push_back(ray::get(r));
  CHECK(got == std::vector<int>{100, 101, 102, 103, 104});
  CHECK(ray::get(a.call<&ticker::now>()).get() == 105);
}

TEST_CASE("an actor that dies mid-stream gives actor_died after the items delivered") {
  ray::runtime rt({.num_workers = 1});
  const std::string path = temp_path("actor_dies");
  std::remove(path.c_str());
  auto a = ray::spawn<ticker>();
  auto s = a.call<&ticker::ticks_then_die>(4, path);
  int taken = 0;
  CHECK_THROWS_AS(
      [&] {
        while (auto r = s.next().get()) {
          CHECK(ray::get(*r).get() == taken);
          if (++taken == 4) make_file(path);
        }
      }(),
      ray::actor_died);
  CHECK(taken == 4);
  std::remove(path.c_str());
}

TEST_CASE("another thread of the driver consumes a stream") {
  ray::runtime rt({.num_workers = 1});
  auto s = ray::task<count_to>.remote(500);
  std::atomic<long> total{0};
  std::atomic<bool> done{false};
  std::thread t([&] {
    long sum = 0;
    for (auto r : s) sum += ray::get(r).get();
    total = sum;
    done = true;
  });
  rt.serve_until([&] { return done.load(); });
  t.join();
  CHECK(total.load() == 500L * 499 / 2);
}

TEST_CASE("a task consumes a stream it made, longer than the window, on one worker") {
  // The generator runs on the consuming task's worker while that task waits for an item.
  ray::runtime rt({.num_workers = 1});
  CHECK(ray::get(ray::task<stream_inside_task>.remote(5000)).get() == 5000L * 4999 / 2);
}

TEST_CASE("a task consumes a stream made on another worker, with the window's credits") {
  ray::runtime rt({.num_workers = 2});
  CHECK(ray::get(ray::task<stream_inside_task>.remote(20000)).get() == 20000L * 19999 / 2);
}

TEST_CASE("an actor consumes a stream, awaiting its items in a coroutine") {
  ray::runtime rt({.num_workers = 2});
  auto a = ray::spawn<stream_reader>();
  CHECK(ray::get(a.call<&stream_reader::sum>(1000)).get() == 1000L * 999 / 2);
}

TEST_CASE("a task that drops a stream early stops its producer") {
  ray::runtime rt({.num_workers = 2});
  ray::shared_value<std::int64_t> made(0);
  CHECK(ray::get(ray::task<take_three>.remote(made)).get() == 3);
  // Both workers are free again: the endless generator stopped.
  auto one = ray::task<add>.remote(1, 1), two = ray::task<add>.remote(2, 2);
  CHECK(ray::get(one, {.timeout = std::chrono::seconds(60)}).get() == 2);
  CHECK(ray::get(two, {.timeout = std::chrono::seconds(60)}).get() == 4);
}

TEST_CASE("a stream's error reaches a consuming task after the items before it") {
  ray::runtime rt({.num_workers = 2});
  CHECK_THROWS_WITH_AS(ray::get(ray::task<sum_until_error>.remote(5)).get(),
                       doctest::Contains("after 5 items: the source ran dry"), ray::task_error);
}

TEST_CASE("a stream whose argument failed ends with that error, in the driver and in a task") {
  ray::runtime rt({.num_workers = 2});
  auto s = ray::task<count_to>.remote(ray::task<fails>.remote(3));
  CHECK_THROWS_WITH_AS(s.next().get(), doctest::Contains("no count for you"), ray::task_error);
  CHECK_THROWS_WITH_AS(ray::get(ray::task<stream_of_failed_count>.remote()).get(),
                       doctest::Contains("no count for you"), ray::task_error);
  CHECK_THROWS_WITH_AS(ray::get(ray::task<add_to_failed>.remote()).get(),
                       doctest::Contains("no count for you"), ray::task_error);
}
