// ray::queue: a bounded FIFO every process of the runtime can use, with Ray's Queue semantics;
// ray::joinable_queue: one whose join() waits until every item put is marked done.
#include <doctest/doctest.h>

#include <chrono>
#include <coray/coray.hpp>
#include <string>
#include <vector>

using namespace std::chrono_literals;

namespace {

int produce(ray::queue<int> q, int n) {
  for (int i = 0; i < n; ++i) q.put(i);  // waits while the queue is full
  return n;
}
int consume_one(ray::queue<int> q) { return q.get(); }
int consume_with_timeout(ray::queue<int> q) {
  try {
    return q.get(5ms);
  } catch (const ray::queue_empty&) {
    return -1;
  }
}
ray::async<int> consume_async(ray::queue<int> q, int n) {
  int sum = 0;
  for (int i = 0; i < n; ++i) sum += co_await q.get_async();
  co_return sum;
}

/// Takes `n` items, adds each to `total`, then marks it done.
int consume_and_mark(ray::joinable_queue<int> q, ray::shared_value<long> total, int n) {
  for (int i = 0; i < n; ++i) {
    total.fetch_add(q.get());
    q.task_done();
  }
  return n;
}
void mark_done(ray::joinable_queue<int> q) { q.task_done(); }

struct relay {
  explicit relay(ray::queue<std::string> out) : out(std::move(out)) {}
  void say(std::string s) { out.put("relayed " + s); }
  ray::queue<std::string> out;
};

}  // namespace

TEST_CASE("a task produces into a queue and the driver consumes every item in order") {
  ray::runtime rt({.num_workers = 2});
  ray::queue<int> q(5);
  auto done = ray::task<produce>.remote(q, 40);  // eight times the queue's room
  for (int i = 0; i < 40; ++i) REQUIRE(q.get() == i);
  CHECK(ray::get(done).get() == 40);
  CHECK(q.empty());
}

TEST_CASE("get with a timeout throws queue_empty when nothing comes in time") {
  ray::runtime rt({.num_workers = 1});
  ray::queue<int> q;
  CHECK_THROWS_AS(q.get(2ms), ray::queue_empty);
  CHECK_THROWS_AS(q.get_nowait(), ray::queue_empty);
  CHECK(ray::get(ray::task<consume_with_timeout>.remote(q)).get() == -1);  // the same in a task
  q.put(7);
  CHECK(q.get(2ms) == 7);
}

TEST_CASE("a get blocked in another process is served by a later put") {
  ray::runtime rt({.num_workers = 2});
  ray::queue<int> q;
  auto got = ray::task<consume_one>.remote(q);  // blocks in a worker until an item comes
  q.put(42);
  CHECK(ray::get(got).get() == 42);
}

TEST_CASE("put on a full queue throws queue_full after its timeout, and a get makes room") {
  ray::runtime rt({.num_workers = 1});
  ray::queue<int> q(2);
  q.put(1);
  q.put(2);
  CHECK(q.full());
  CHECK(q.size() == 2);
  CHECK_THROWS_AS(q.put_nowait(3), ray::queue_full);
  CHECK_THROWS_AS(q.put(3, 2ms), ray::queue_full);
  CHECK(q.get() == 1);
  q.put(3, 2ms);
  CHECK(q.get() == 2);
  CHECK(q.get() == 3);
  CHECK(q.maxsize() == 2);
}

TEST_CASE("blocked putters go in, in order, as getters make room") {
  ray::runtime rt({.num_workers = 2});
  ray::queue<int> q(1);
  auto a = ray::task<produce>.remote(q, 10);
  std::vector<int> got;
  for (int i = 0; i < 10; ++i) got.push_back(q.get());
  for (int i = 0; i < 10; ++i) CHECK(got[static_cast<std::size_t>(i)] == i);
  CHECK(ray::get(a).get() == 10);
}

TEST_CASE("put_async and get_async are awaited in coroutines, in the driver and in tasks") {
  ray::runtime rt({.num_workers = 2});
  ray::queue<int> q(4);
  auto sum = ray::task<consume_async>.remote(q, 10);
  rt.run([&]() -> ray::async<void> {
    for (int i = 1; i <= 10; ++i) co_await q.put_async(i);
  }());
  CHECK(ray::get(sum).get() == 55);
  int first = rt.run([&]() -> ray::async<int> {
    co_await q.put_async(5);
    co_return co_await q.get_async();
  }());
  CHECK(first == 5);
  CHECK_THROWS_AS(rt.run(q.get_async(1ms)), ray::queue_empty);
}

TEST_CASE("batch put and get move all the items or none") {
  ray::runtime rt({.num_workers = 1});
  ray::queue<int> q(5);
  q.put_nowait_batch({1, 2, 3});
  CHECK_THROWS_AS(q.put_nowait_batch({4, 5, 6}), ray::queue_full);
  CHECK(q.size() == 3);
  CHECK_THROWS_AS(q.get_nowait_batch(4), ray::queue_empty);
  CHECK(q.get_nowait_batch(2) == std::vector<int>{1, 2});
  CHECK(q.get_nowait_batch(1) == std::vector<int>{3});
  CHECK(q.empty());
}

TEST_CASE("a queue handed to an actor reaches the same queue") {
  ray::runtime rt({.num_workers = 1});
  ray::queue<std::string> q;
  auto r = ray::spawn<relay>(q);
  r.call<&relay::say>("hi");
  r.call<&relay::say>("there");
  CHECK(q.get() == "relayed hi");
  CHECK(q.get() == "relayed there");
}

TEST_CASE("a joinable_queue's join waits until every item put is marked done by its consumers") {
  ray::runtime rt({.num_workers = 2});
  ray::joinable_queue<int> q(8);
  ray::shared_value<long> total(0);
  auto a = ray::task<consume_and_mark>.remote(q, total, 50);
  auto b = ray::task<consume_and_mark>.remote(q, total, 50);
  for (int i = 1; i <= 100; ++i) q.put(i);
  q.join();  // each item's task_done came after its addition
  CHECK(total.load() == 5050);
  CHECK(q.unfinished() == 0);
  CHECK(ray::get(a).get() + ray::get(b).get() == 100);
  q.join();  // nothing pending: at once
}

TEST_CASE("task_done more times than items put is a usage_error, in any process") {
  ray::runtime rt({.num_workers = 1});
  ray::joinable_queue<int> q;
  CHECK_THROWS_WITH_AS(q.task_done(), doctest::Contains("more times than items put"),
                       ray::usage_error);
  q.put_nowait_batch({1, 2});
  CHECK(q.unfinished() == 2);
  CHECK(q.get() == 1);
  ray::get(ray::task<mark_done>.remote(q)).get();  // an item need not be done where it was got
  CHECK(q.unfinished() == 1);
  q.task_done();
  CHECK_THROWS_AS(ray::get(ray::task<mark_done>.remote(q)).get(), ray::usage_error);
  CHECK(q.unfinished() == 0);
}

TEST_CASE("join_async is awaited in a coroutine until the last task_done") {
  ray::runtime rt({.num_workers = 1});
  ray::joinable_queue<int> q;
  q.put(1);
  auto joined = rt.run([&]() -> ray::async<int> {
    auto wait = q.join_async();  // sent at once: waits in the queue's actor
    q.task_done();
    co_await std::move(wait);
    co_return 1;
  }());
  CHECK(joined == 1);
  CHECK(q.size() == 1);  // join counts done items, not taken ones
}
