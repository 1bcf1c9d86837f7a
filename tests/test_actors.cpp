// Actors: state in a process of its own, ordered calls, handles as values, deaths.
#include <doctest/doctest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <coray/coray.hpp>
#include <numeric>
#include <string>
#include <vector>

#include "serve_until.hpp"

namespace {

struct counter {
  explicit counter(int start) : n(start) {}
  int incr(int by) { return n += by; }
  int get() const { return n; }
  void reset() { n = 0; }
  int pid() const { return getpid(); }
  int n;
};

struct log_actor {
  std::vector<int> seen;
  void add(int v) { seen.push_back(v); }
  std::vector<int> all() const { return seen; }
  std::size_t size() const { return seen.size(); }
};

struct failing_ctor {
  explicit failing_ctor(int) { throw std::invalid_argument("bad config"); }
  int f() { return 1; }
};

struct crasher {
  int crash(int sig) {
    raise(sig);
    return 0;
  }
  int ok() { return 1; }
};

int add(int a, int b) { return a + b; }

/// Whether process `pid` ends within about 5 s, serving the runtime meanwhile.
bool process_ends(int pid) {
  for (int i = 0; i < 5000; ++i) {
    ray::get(ray::task<add>.remote(1, 1)).get();  // keeps the driver's loop turning
    if (kill(pid, 0) != 0) return true;
    usleep(1000);
  }
  return false;
}

int bump_through(ray::actor<counter> c, int by) {
  // A handle passed to a task reaches the same actor.
  return ray::get(c.call<&counter::incr>(by));
}

/// An async method that polls a flag another method sets, sleeping between polls. With
/// max_concurrency > 1 its plain method runs on a thread of its own: the flag is atomic.
struct flag_waiter {
  std::atomic<bool> flag{false};
  ray::async<int> wait_for_flag() {
    int polls = 0;
    while (!flag) {
      co_await ray::sleep_for(std::chrono::milliseconds(1));
      ++polls;
    }
    co_return polls;
  }
  void set_flag() { flag = true; }
};

struct async_actor {
  // A coroutine method: while it awaits, other calls to this actor may run.
  ray::async<int> slow_add(int a, int b) {
    auto r = ray::task<add>.remote(a, b);
    co_return co_await ray::get(r);
  }
  int ping() { return 1; }
};

/// Submits more tasks than its inbox holds results (1,024 slots) and awaits them all.
struct nested_sum_client {
  ray::async<long> sum_of_doubles(int n) {
    std::vector<ray::object_ref<int>> refs;
    for (int i = 0; i < n; ++i) refs.push_back(ray::task<add>.remote(i, i));
    long total = 0;
    for (int v : co_await ray::get(std::move(refs))) total += v;
    co_return total;
  }
};

struct table_model {
  // Expensive initialisation once, then many cheap calls.
  explicit table_model(int n) : table(static_cast<std::size_t>(n)) {
    std::iota(table.begin(), table.end(), 0);
  }
  long lookup(int i) const { return table[static_cast<std::size_t>(i)]; }
  std::vector<long> table;
};

struct named_reader {
  int answer() const { return 42; }
};

int ask_named(int) {
  return ray::get(ray::get_actor<named_reader>("oracle").call<&named_reader::answer>());
}

}  // namespace

TEST_CASE("an actor keeps its state in a process of its own across calls") {
  ray::runtime rt({.num_workers = 1});
  ray::actor<counter> c = ray::spawn<counter>(10);
  CHECK(ray::get(c.call<&counter::incr>(5)).get() == 15);
  CHECK(ray::get(c.call<&counter::incr>(5)).get() == 20);
  CHECK(ray::get(c.call<&counter::get>()).get() == 20);  // const method
  ray::get(c.call<&counter::reset>()).get();             // void method
  CHECK(ray::get(c.call<&counter::get>()).get() == 0);
  int pid = ray::get(c.call<&counter::pid>());
  CHECK(pid != getpid());
  CHECK(pid == c.pid());
  auto workers = rt.worker_pids();
  CHECK(std::find(workers.begin(), workers.end(), pid) == workers.end());
}

TEST_CASE("calls from one caller run in the order they were made, also with many queued") {
  ray::runtime rt({.num_workers = 1});
  auto log = ray::spawn<log_actor>();
  const int n = 20000;  // far beyond the mailbox's capacity
  for (int i = 0; i < n; ++i) log.call<&log_actor::add>(i);
  std::vector<int> seen = ray::get(log.call<&log_actor::all>());
  REQUIRE(seen.size() == static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) REQUIRE(seen[static_cast<std::size_t>(i)] == i);
}

TEST_CASE("a call waits for its object_ref arguments without overtaking earlier calls") {
  ray::runtime rt({.num_workers = 2});
  auto log = ray::spawn<log_actor>();
  auto later = ray::task<add>.remote(1, 1);  // may still be running
  log.call<&log_actor::add>(later);
  log.call<&log_actor::add>(3);
  auto r = ray::task<add>.remote(ray::get(log.call<&log_actor::size>()).get() == 2 ? 1 : 0, 0);
  CHECK(ray::get(log.call<&log_actor::all>()).get() == std::vector<int>{2, 3});
  CHECK(ray::get(r).get() == 1);
}

TEST_CASE("refs returned by actor calls feed tasks and other actors") {
  ray::runtime rt({.num_workers = 2});
  auto a = ray::spawn<counter>(1);
  auto b = ray::spawn<counter>(100);
  auto x = a.call<&counter::incr>(1);     // 2
  auto y = ray::task<add>.remote(x, 10);  // 12
  auto z = b.call<&counter::incr>(y);     // 112
  CHECK(ray::get(z).get() == 112);
}

TEST_CASE("an actor handle passed to a task reaches the same actor") {
  ray::runtime rt({.num_workers = 2});
  auto c = ray::spawn<counter>(0);
  std::vector<ray::object_ref<int>> refs;
  for (int i = 0; i < 10; ++i) refs.push_back(ray::task<bump_through>.remote(c, 1));
  std::vector<int> got = ray::get(refs);
  CHECK(ray::get(c.call<&counter::get>()).get() == 10);
}

TEST_CASE(
    "a coroutine method may await nested tasks, and with max_concurrency others run meanwhile") {
  ray::runtime rt({.num_workers = 2});
  auto a = ray::spawn<async_actor>(ray::actor_options{.max_concurrency = 4});
  std::vector<ray::object_ref<int>> refs;
  for (int i = 0; i < 20; ++i) refs.push_back(a.call<&async_actor::slow_add>(i, i));
  std::vector<int> all = ray::get(refs);
  for (int i = 0; i < 20; ++i) CHECK(all[static_cast<std::size_t>(i)] == 2 * i);
  CHECK(ray::get(a.call<&async_actor::ping>()).get() == 1);
  auto one = ray::spawn<async_actor>();  // max_concurrency 1: the same, one at a time
  CHECK(ray::get(one.call<&async_actor::slow_add>(2, 3)).get() == 5);
}

TEST_CASE("actors awaiting more nested results than their inboxes hold receive them all") {
  ray::runtime rt({.num_workers = 2});
  std::vector<ray::actor<nested_sum_client>> clients{ray::spawn<nested_sum_client>(),
                                                     ray::spawn<nested_sum_client>()};
  for (int round = 0; round < 3; ++round) {
    std::vector<ray::object_ref<long>> done;
    for (auto& c : clients) done.push_back(c.call<&nested_sum_client::sum_of_doubles>(5000));
    for (long total : ray::get(done).get()) CHECK(total == 5000L * 4999);  // 2 * (0 + ... + 4999)
  }
}

TEST_CASE("expensive initialisation happens once in the constructor, then serves many calls") {
  ray::runtime rt({.num_workers = 1});
  auto m = ray::spawn<table_model>(1'000'000);
  std::vector<ray::object_ref<long>> refs;
  for (int i = 0; i < 1000; ++i) refs.push_back(m.call<&table_model::lookup>(i * 997));
  std::vector<long> got = ray::get(refs);
  for (int i = 0; i < 1000; ++i) CHECK(got[static_cast<std::size_t>(i)] == i * 997);
}

TEST_CASE("a named actor is found with get_actor from the driver and from tasks") {
  ray::runtime rt({.num_workers = 2});
  auto oracle = ray::spawn<named_reader>(ray::actor_options{.name = "oracle"});
  auto again = ray::get_actor<named_reader>("oracle");
  CHECK(again.id() == oracle.id());
  CHECK(ray::get(again.call<&named_reader::answer>()).get() == 42);
  CHECK(ray::get(ray::task<ask_named>.remote(0)).get() == 42);
  CHECK_THROWS_AS(ray::get_actor<named_reader>("nobody"), ray::actor_not_found);
  CHECK_THROWS_AS(ray::get_actor<counter>("oracle"), ray::actor_not_found);
  CHECK_THROWS_AS(ray::spawn<named_reader>(ray::actor_options{.name = "oracle"}),
                  ray::runtime_error);
}

TEST_CASE("an actor that dies fails its pending and later calls with actor_died naming the cause") {
  ray::runtime rt({.num_workers = 1});
  auto c = ray::spawn<crasher>();
  CHECK(ray::get(c.call<&crasher::ok>()).get() == 1);
  auto dying = c.call<&crasher::crash>(SIGSEGV);
  auto queued = c.call<&crasher::ok>();
  try {
    ray::get(dying).get();
    FAIL("expected actor_died");
  } catch (const ray::actor_died& e) {
    CHECK(std::string(e.what()).find("SIGSEGV") != std::string::npos);
  }
  CHECK_THROWS_AS(ray::get(queued).get(), ray::actor_died);
  CHECK_THROWS_AS(ray::get(c.call<&crasher::ok>()).get(), ray::actor_died);
}

TEST_CASE("ray::kill ends an actor and its calls fail with actor_died") {
  ray::runtime rt({.num_workers = 1});
  auto c = ray::spawn<counter>(0);
  CHECK(ray::get(c.call<&counter::incr>(1)).get() == 1);
  ray::kill(c);
  try {
    ray::get(c.call<&counter::incr>(1)).get();
    FAIL("expected actor_died");
  } catch (const ray::actor_died& e) {
    CHECK(std::string(e.what()).find("ray::kill") != std::string::npos);
  }
}

TEST_CASE("a constructor that throws fails the actor's calls with actor_died carrying the error") {
  ray::runtime rt({.num_workers = 1});
  auto a = ray::spawn<failing_ctor>(1);
  try {
    ray::get(a.call<&failing_ctor::f>()).get();
    FAIL("expected actor_died");
  } catch (const ray::actor_died& e) {
    CHECK(std::string(e.what()).find("bad config") != std::string::npos);
  }
}

TEST_CASE("an actor ends when the last handle goes, after finishing its queued calls") {
  ray::runtime rt({.num_workers = 1});
  int pid = 0;
  ray::object_ref<int> last;
  {
    auto c = ray::spawn<counter>(0);
    for (int i = 0; i < 100; ++i) last = c.call<&counter::incr>(1);
    pid = ray::get(c.call<&counter::pid>());
  }
  CHECK(ray::get(last).get() == 100);
  // The actor's process exits; its pid stops being a live process.
  CHECK(process_ends(pid));
}

namespace {
struct fan_out {
  explicit fan_out(std::vector<ray::actor<counter>> cs) : counters(std::move(cs)) {}
  ray::async<int> bump_all(int by) {
    std::vector<ray::object_ref<int>> refs;
    for (auto& c : counters) refs.push_back(c.call<&counter::incr>(by));
    auto all = co_await ray::get(refs);
    co_return static_cast<int>(all.size());
  }
  int bump_one(ray::actor<counter> c) { return ray::get(c.call<&counter::incr>(1000)); }
  std::vector<ray::actor<counter>> counters;
};
}  // namespace

TEST_CASE("actor handles inside containers reach the same actors from another actor") {
  ray::runtime rt({.num_workers = 1});
  std::vector<ray::actor<counter>> cs{ray::spawn<counter>(0), ray::spawn<counter>(10)};
  auto f = ray::spawn<fan_out>(cs);
  CHECK(ray::get(f.call<&fan_out::bump_all>(5)).get() == 2);
  CHECK(ray::get(f.call<&fan_out::bump_one>(cs[0])).get() == 1005);
  CHECK(ray::get(cs[0].call<&counter::get>()).get() == 1005);
  CHECK(ray::get(cs[1].call<&counter::get>()).get() == 15);
}

namespace {
ray::actor<counter> hand_back(ray::actor<counter> c) { return c; }
}  // namespace

TEST_CASE("an actor held only by handles inside put objects and results lives as long as they do") {
  ray::runtime rt({.num_workers = 1});
  int pid = 0;
  {
    ray::object_ref<std::vector<ray::actor<counter>>> stored;
    ray::object_ref<ray::actor<counter>> returned;
    {
      auto c = ray::spawn<counter>(0);
      pid = ray::get(c.call<&counter::pid>());
      stored = ray::put(std::vector<ray::actor<counter>>{c});
      returned = ray::task<hand_back>.remote(c);
    }  // the driver's own handle is gone: the object and the result hold the actor
    std::vector<ray::actor<counter>> back = ray::get(stored);
    CHECK(ray::get(back.at(0).call<&counter::incr>(5)).get() == 5);
    stored = {};
    back.clear();
    ray::actor<counter> again = ray::get(returned);
    CHECK(ray::get(again.call<&counter::incr>(1)).get() == 6);
  }
  // With the last object and handle gone, the actor's process exits.
  CHECK(process_ends(pid));
}

TEST_CASE("an async method sleeping in ray::sleep_for leaves its actor serving other calls") {
  ray::runtime rt({.num_workers = 1});
  auto a = ray::spawn<flag_waiter>(ray::actor_options{.max_concurrency = 2});
  auto waiting = a.call<&flag_waiter::wait_for_flag>();
  // Runs while wait_for_flag sleeps: with the actor blocked in it, neither would end.
  ray::get(a.call<&flag_waiter::set_flag>(), {.timeout = std::chrono::seconds(20)}).get();
  CHECK(ray::get(waiting, {.timeout = std::chrono::seconds(20)}).get() >= 0);
}

namespace {

/// A supervisor task: spawns the actor it manages, uses it, and hands it back.
ray::actor<counter> start_counter(int start) {
  auto c = ray::spawn<counter>(start);
  ray::get(c.call<&counter::incr>(1)).get();
  return c;
}

struct manager {
  std::vector<ray::actor<counter>> children;
  ray::actor<counter> add_child(int start) {
    children.push_back(ray::spawn<counter>(start));
    return children.back();
  }
  int total() const {
    int sum = 0;
    for (const auto& c : children) sum += ray::get(c.call<&counter::get>());
    return sum;
  }
};

ray::actor<counter> spawn_named_in_task(std::string name) {
  return ray::spawn<counter>(ray::actor_options{.name = std::move(name)}, 7);
}

/// Spawns an actor, waits for it to be built, and dies still holding its handle.
int spawn_and_die() {
  auto c = ray::spawn<counter>(0);
  ray::get(c.call<&counter::incr>(1)).get();
  raise(SIGKILL);
  return 0;
}

int spawn_counter_from_ref(ray::object_ref<int> start) {
  // The constructor's argument is a ref: the actor is built once its value is ready.
  auto c = ray::spawn<counter>(start);
  return ray::get(c.call<&counter::get>());
}

}  // namespace

TEST_CASE("a task spawns an actor, and the handle it returns reaches the same actor") {
  ray::runtime rt({.num_workers = 2});
  ray::actor<counter> c = ray::get(ray::task<start_counter>.remote(10));
  CHECK(ray::get(c.call<&counter::incr>(5)).get() == 16);
  // A handle passed back into a task reaches it too.
  CHECK(ray::get(ray::task<bump_through>.remote(c, 4)).get() == 20);
}

TEST_CASE("an actor method spawns actors that live on with the handles it keeps") {
  ray::runtime rt({.num_workers = 1});
  auto m = ray::spawn<manager>();
  ray::actor<counter> first = ray::get(m.call<&manager::add_child>(1));
  ray::get(m.call<&manager::add_child>(2)).get();
  CHECK(ray::get(first.call<&counter::incr>(10)).get() == 11);
  CHECK(ray::get(m.call<&manager::total>()).get() == 13);
}

TEST_CASE("an actor named in a task is found from the driver, and a taken name fails the task") {
  ray::runtime rt({.num_workers = 1});
  // The returned handle keeps it alive (a named actor still ends with its last handle).
  ray::actor<counter> made = ray::get(ray::task<spawn_named_in_task>.remote(std::string("keeper")));
  auto keeper = ray::get_actor<counter>("keeper");
  CHECK(keeper == made);
  CHECK(ray::get(keeper.call<&counter::incr>(1)).get() == 8);
  CHECK_THROWS_WITH_AS(ray::get(ray::task<spawn_named_in_task>.remote(std::string("keeper"))).get(),
                       doctest::Contains("already exists"), ray::usage_error);
}

TEST_CASE("an actor spawned in a task with a pending ref is built once the value is ready") {
  ray::runtime rt({.num_workers = 2});
  auto start = ray::task<add>.remote(20, 22);
  CHECK(ray::get(ray::task<spawn_counter_from_ref>.remote(start)).get() == 42);
}

TEST_CASE("an actor whose only handle was in a process that died ends, not kept for ever") {
  ray::runtime rt({.num_workers = 1});
  CHECK_THROWS_AS(ray::get(ray::task<spawn_and_die>.remote()).get(), ray::worker_crashed);
  auto counters_alive = [] {
    return ray::state::list_actors(
               {.state = ray::state::actor_state::alive, .class_name = "counter"})
        .size();
  };
  CHECK(serve_until([&] { return counters_alive() == 0; }, std::chrono::seconds(20)));
}
