// Threaded actors (issue 13): with max_concurrency > 1, plain methods run on up to that many
// threads of the actor's process at once; coroutine methods keep to the loop thread.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <coray/coray.hpp>
#include <cstdint>
#include <mutex>
#include <numeric>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "peak_counter.hpp"

namespace {

constexpr auto patience = std::chrono::seconds(30);  // only a failing run waits this long

int add(int a, int b) { return a + b; }

/// Methods that wait for each other: each returns only once `parties` calls are inside.
struct meeting {
  std::mutex m;
  std::condition_variable all_here;
  int arrived = 0;
  bool meet(int parties) {
    std::unique_lock lock(m);
    ++arrived;
    all_here.notify_all();
    return all_here.wait_for(lock, patience, [&] { return arrived >= parties; });
  }
  ray::async<int> nested(int x) { co_return co_await ray::get(ray::task<add>.remote(x, 1)); }
};

/// Counts the plain methods inside at once.
struct occupancy {
  peak_counter occupancy;
  int work() { return occupancy.pass(); }
  int highest() const { return occupancy.highest(); }
  bool flag = false;
  void set_flag() { flag = true; }
  ray::async<bool> wait_for_flag() {
    while (!flag) co_await ray::sleep_for(std::chrono::milliseconds(1));
    co_return true;
  }
};

struct misuser {
  int put_from_method() { return ray::get(ray::put(1)); }
  int call_from_method() { return ray::get(ray::task<add>.remote(1, 2)); }
  int fail() { throw std::invalid_argument("no such row"); }
  std::vector<std::uint8_t> large(std::size_t n) { return std::vector<std::uint8_t>(n, 7); }
  std::size_t measure(std::string_view s, std::span<const int> xs) {
    return s.size() + static_cast<std::size_t>(std::accumulate(xs.begin(), xs.end(), 0));
  }
};

}  // namespace

TEST_CASE("a threaded actor runs plain methods on several threads at once") {
  ray::runtime rt({.num_workers = 1});
  auto a = ray::spawn<meeting>(ray::actor_options{.max_concurrency = 2});
  // Each call returns only once the other is inside too: one at a time, both would time out.
  auto first = a.call<&meeting::meet>(2);
  auto second = a.call<&meeting::meet>(2);
  CHECK(ray::get(first).get());
  CHECK(ray::get(second).get());
}

TEST_CASE("a threaded actor never runs more plain methods at once than max_concurrency") {
  ray::runtime rt({.num_workers = 1});
  auto a = ray::spawn<occupancy>(ray::actor_options{.max_concurrency = 3});
  std::vector<ray::object_ref<int>> refs;
  for (int i = 0; i < 200; ++i) refs.push_back(a.call<&occupancy::work>());
  for (int inside : ray::get(refs).get()) CHECK(inside <= 3);
  const int peak = ray::get(a.call<&occupancy::highest>()).get();
  CHECK(peak >= 1);
  CHECK(peak <= 3);
}

TEST_CASE("a threaded actor's coroutine methods run on its loop thread and may make calls") {
  ray::runtime rt({.num_workers = 1});
  auto a = ray::spawn<meeting>(ray::actor_options{.max_concurrency = 3});
  auto first = a.call<&meeting::meet>(2);
  // While one plain method waits on a thread, a coroutine method makes a nested call.
  CHECK(ray::get(a.call<&meeting::nested>(41)).get() == 42);
  CHECK(ray::get(a.call<&meeting::meet>(2)).get());
  CHECK(ray::get(first).get());
}

TEST_CASE("a plain method on a threaded actor's thread that uses the runtime fails saying why") {
  ray::runtime rt({.num_workers = 1});
  auto a = ray::spawn<misuser>(ray::actor_options{.max_concurrency = 2});
  CHECK_THROWS_WITH_AS(ray::get(a.call<&misuser::put_from_method>()).get(),
                       doctest::Contains("make the method a coroutine"), ray::usage_error);
  CHECK_THROWS_WITH_AS(ray::get(a.call<&misuser::call_from_method>()).get(),
                       doctest::Contains("threaded actor"), ray::usage_error);
}

TEST_CASE("a threaded actor's exceptions, large results and view arguments reach the caller") {
  ray::runtime rt({.num_workers = 1});
  auto a = ray::spawn<misuser>(ray::actor_options{.max_concurrency = 2});
  CHECK_THROWS_WITH_AS(ray::get(a.call<&misuser::fail>()).get(), doctest::Contains("no such row"),
                       ray::task_error);
  const std::size_t n = 3 << 20;  // beyond the inline threshold: a block of the store
  const auto big = ray::get(a.call<&misuser::large>(n)).get();
  CHECK(big.size() == n);
  CHECK(std::all_of(big.begin(), big.end(), [](std::uint8_t b) { return b == 7; }));
  // Spans and string_views read the call's bytes, which must outlive its message.
  const std::vector<int> xs{1, 2, 3};
  CHECK(ray::get(a.call<&misuser::measure>(std::string("four"), xs)).get() == 10);
}

TEST_CASE("threaded = false keeps plain methods one at a time beside coroutine methods") {
  ray::runtime rt({.num_workers = 1});
  auto a = ray::spawn<occupancy>(ray::actor_options{.max_concurrency = 4, .threaded = false});
  auto waiting = a.call<&occupancy::wait_for_flag>();
  std::vector<ray::object_ref<int>> refs;
  for (int i = 0; i < 100; ++i) refs.push_back(a.call<&occupancy::work>());
  a.call<&occupancy::set_flag>();
  CHECK(ray::get(waiting, {.timeout = patience}).get());
  for (int inside : ray::get(refs).get()) CHECK(inside == 1);
  CHECK(ray::get(a.call<&occupancy::highest>()).get() == 1);
}
