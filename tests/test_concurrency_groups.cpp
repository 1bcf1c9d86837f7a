// Concurrency groups (issue 13): named groups of an actor's calls with limits of their own,
// chosen per method or per call; a call in one group never waits behind another group's.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <coray/coray.hpp>
#include <mutex>
#include <string_view>
#include <vector>

#include "peak_counter.hpp"

namespace {

constexpr auto patience = std::chrono::seconds(30);  // only a failing run waits this long

/// A gate one method waits at and another opens.
struct gate {
  std::mutex m;
  std::condition_variable opened_cv;
  bool opened = false;
  int arrived = 0;
  /// Waits until the gate opens; false if it never did.
  bool wait_open() {
    std::unique_lock lock(m);
    return opened_cv.wait_for(lock, patience, [&] { return opened; });
  }
  bool open() {
    const std::lock_guard lock(m);
    opened = true;
    opened_cv.notify_all();
    return true;
  }
  bool open_declared() { return open(); }  // declares the "control" group below
  /// Returns once `parties` calls are inside at once.
  bool meet(int parties) {
    std::unique_lock lock(m);
    ++arrived;
    opened_cv.notify_all();
    return opened_cv.wait_for(lock, patience, [&] { return arrived >= parties; });
  }
  peak_counter occupancy;
  int work() { return occupancy.pass(); }
  int highest() const { return occupancy.highest(); }
  // Coroutine methods, for an actor whose plain methods stay on the loop thread.
  bool flag = false;
  void set_flag() { flag = true; }
  ray::async<bool> wait_for_flag() {
    while (!flag) co_await ray::sleep_for(std::chrono::milliseconds(1));
    co_return true;
  }
};

/// Opens the gate from a task: a nested call naming its group.
bool open_from_task(ray::actor<gate> g) {
  return ray::get(g.options({.concurrency_group = "control"}).call<&gate::open>());
}

}  // namespace

template <>
inline constexpr std::string_view ray::concurrency_group<&gate::open_declared> = "control";

TEST_CASE("a call in one concurrency group never waits behind another group's calls") {
  ray::runtime rt({.num_workers = 1});
  auto a = ray::spawn<gate>(ray::actor_options{.concurrency_groups = {{"control", 1}}});
  // The default group (max_concurrency 1) is held by a call that waits for the gate; the
  // call that opens it runs in "control": behind the first, neither would end.
  auto waiting = a.call<&gate::wait_open>();
  auto queued = a.call<&gate::wait_open>();  // the default group's next: waits its turn
  CHECK(ray::get(a.options({.concurrency_group = "control"}).call<&gate::open>()).get());
  CHECK(ray::get(waiting).get());
  CHECK(ray::get(queued).get());
}

TEST_CASE("a method declared in a concurrency group runs there without naming it") {
  ray::runtime rt({.num_workers = 1});
  auto a = ray::spawn<gate>(ray::actor_options{.concurrency_groups = {{"control", 1}}});
  auto waiting = a.call<&gate::wait_open>();
  CHECK(ray::get(a.call<&gate::open_declared>()).get());
  CHECK(ray::get(waiting).get());
}

TEST_CASE("a call made inside a task names its concurrency group too") {
  ray::runtime rt({.num_workers = 1});
  auto a = ray::spawn<gate>(ray::actor_options{.concurrency_groups = {{"control", 1}}});
  auto waiting = a.call<&gate::wait_open>();
  CHECK(ray::get(ray::task<open_from_task>.remote(a)).get());
  CHECK(ray::get(waiting).get());
}

TEST_CASE("each concurrency group runs up to its own limit at once, and no more") {
  ray::runtime rt({.num_workers = 1});
  auto a = ray::spawn<gate>(ray::actor_options{.concurrency_groups = {{"compute", 2}}});
  auto compute = a.options({.concurrency_group = "compute"});
  // Two calls of "compute" meet inside at once; the default group's limit is 1.
  auto first = compute.call<&gate::meet>(2);
  auto second = compute.call<&gate::meet>(2);
  CHECK(ray::get(first).get());
  CHECK(ray::get(second).get());
  std::vector<ray::object_ref<int>> refs;
  for (int i = 0; i < 100; ++i) refs.push_back(compute.call<&gate::work>());
  for (int inside : ray::get(refs).get()) CHECK(inside <= 2);
  CHECK(ray::get(compute.call<&gate::highest>()).get() <= 2);
}

TEST_CASE("concurrency groups keep coroutine methods apart when plain methods stay on the loop") {
  ray::runtime rt({.num_workers = 1});
  auto a = ray::spawn<gate>(
      ray::actor_options{.threaded = false, .concurrency_groups = {{"control", 1}}});
  auto waiting = a.call<&gate::wait_for_flag>();  // holds the default group while it sleeps
  a.options({.concurrency_group = "control"}).call<&gate::set_flag>();
  CHECK(ray::get(waiting, {.timeout = patience}).get());
}

TEST_CASE("a call naming a concurrency group the actor lacks fails with usage_error") {
  ray::runtime rt({.num_workers = 1});
  auto grouped = ray::spawn<gate>(ray::actor_options{.concurrency_groups = {{"io", 2}}});
  CHECK_THROWS_WITH_AS(
      ray::get(grouped.options({.concurrency_group = "compute"}).call<&gate::open>()).get(),
      doctest::Contains("concurrency group"), ray::usage_error);
  auto plain = ray::spawn<gate>();
  CHECK_THROWS_AS(ray::get(plain.options({.concurrency_group = "io"}).call<&gate::open>()).get(),
                  ray::usage_error);
  // A group a method declares but the actor lacks is no error: the call runs in the default.
  CHECK(ray::get(plain.call<&gate::open_declared>()).get());
  CHECK(ray::get(grouped.options({.concurrency_group = "io"}).call<&gate::open>()).get());
}

TEST_CASE("spawn refuses a concurrency group without a name or with a limit of 0") {
  ray::runtime rt({.num_workers = 1});
  CHECK_THROWS_WITH_AS(ray::spawn<gate>(ray::actor_options{.concurrency_groups = {{"io", 0}}}),
                       doctest::Contains("limit of at least 1"), ray::usage_error);
  CHECK_THROWS_AS(ray::spawn<gate>(ray::actor_options{.concurrency_groups = {{"", 2}}}),
                  ray::usage_error);
}
