// ray::manager: dicts, lists and namespaces served by one actor, reached through proxies from
// the driver, tasks and actors (Python's multiprocessing.Manager()).
#include <doctest/doctest.h>

#include <algorithm>
#include <coray/coray.hpp>
#include <csignal>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "serve_until.hpp"

namespace {

using word_counts = ray::dict_proxy<std::string, int>;

/// Sets keys "t<task>-<i>" for i in [0, n).
int fill(word_counts d, int task, int n) {
  for (int i = 0; i < n; ++i) d.set("t" + std::to_string(task) + "-" + std::to_string(i), i);
  return n;
}
int count_words(word_counts d, std::vector<std::string> words) {
  for (auto& w : words) d.increment(w);
  return static_cast<int>(words.size());
}
/// Reads then writes, without increment: the read-modify-write Python users race on.
int add_with_compare_exchange(word_counts d, int n) {
  for (int i = 0; i < n; ++i) {
    for (;;) {
      std::optional<int> now = d.find("total");
      if (d.compare_exchange("total", now, now.value_or(0) + 1)) break;
    }
  }
  return n;
}
int append_range(ray::list_proxy<int> l, int from, int n) {
  for (int i = from; i < from + n; ++i) l.append(i);
  return n;
}
std::string read_missing(word_counts d) {
  try {
    return std::to_string(d.get("nowhere"));
  } catch (const ray::key_error& e) {
    return e.what();
  }
}
int get_in_task(word_counts d, std::string key) { return d.get(key); }
int set_epoch(ray::namespace_proxy ns, int epoch) {
  ns.set("epoch", epoch);
  ns.set("phase", "training");  // a literal is kept as a std::string
  return epoch;
}

/// Holds proxies as members, as a user's actor would.
struct recorder {
  recorder(ray::list_proxy<int> log, word_counts seen)
      : log(std::move(log)), seen(std::move(seen)) {}
  void record(int v) {
    log.append(v);
    seen.increment("records");
  }
  int records() const { return seen.get("records", 0); }
  ray::list_proxy<int> log;
  word_counts seen;
};

}  // namespace

TEST_CASE("a dict filled by 8 tasks on 2 workers has every key and value") {
  ray::runtime rt({.num_workers = 2});
  ray::manager m;
  auto d = m.dict<std::string, int>();
  std::vector<ray::object_ref<int>> done;
  for (int t = 0; t < 8; ++t) done.push_back(ray::task<fill>.remote(d, t, 25));
  for (auto& r : done) CHECK(ray::get(r).get() == 25);
  CHECK(d.size() == 200);
  for (int t = 0; t < 8; ++t)
    for (int i = 0; i < 25; ++i)
      REQUIRE(d.get("t" + std::to_string(t) + "-" + std::to_string(i)) == i);
  CHECK(d.keys().size() == 200);
  CHECK(d.values().size() == 200);
}

TEST_CASE("a dict behaves as Python's: insertion order, get with a default, pop, setdefault") {
  ray::runtime rt({.num_workers = 1});
  ray::manager m;
  auto d = m.dict<std::string, int>({{"b", 2}, {"a", 1}});
  d.set("c", 3);
  d.set("b", 20);  // an overwrite keeps the key's place
  CHECK(d.keys() == std::vector<std::string>{"b", "a", "c"});
  CHECK(d.values() == std::vector<int>{20, 1, 3});
  CHECK(d.items() == std::vector<std::pair<std::string, int>>{{"b", 20}, {"a", 1}, {"c", 3}});
  CHECK(d.get("z", -1) == -1);
  CHECK_FALSE(d.find("z"));
  CHECK(d.find("a") == 1);
  CHECK(d.contains("a"));
  CHECK(d.setdefault("a", 100) == 1);
  CHECK(d.setdefault("d", 4) == 4);
  CHECK(d.pop("a") == 1);
  CHECK_FALSE(d.contains("a"));
  CHECK(d.pop("a", 7) == 7);
  CHECK_FALSE(d.erase("a"));
  CHECK(d.erase("c"));
  CHECK(d.popitem() == std::pair<std::string, int>{"d", 4});
  d.update(std::map<std::string, int>{{"x", 1}, {"y", 2}});
  CHECK(d.size() == 3);
  d.clear();
  CHECK(d.empty());
  CHECK_THROWS_AS(d.popitem(), ray::key_error);
}

TEST_CASE("get or pop of a missing key throws key_error naming the key, in any process") {
  ray::runtime rt({.num_workers = 1});
  ray::manager m;
  auto d = m.dict<std::string, int>();
  CHECK_THROWS_WITH_AS(d.get("apple"), doctest::Contains("'apple'"), ray::key_error);
  CHECK_THROWS_WITH_AS(d.pop("pear"), doctest::Contains("'pear'"), ray::key_error);
  CHECK(ray::get(ray::task<read_missing>.remote(d)).get().find("'nowhere'") != std::string::npos);
  // Uncaught in the task, it reaches the caller as a key_error still.
  CHECK_THROWS_WITH_AS(ray::get(ray::task<get_in_task>.remote(d, "plum")).get(),
                       doctest::Contains("'plum'"), ray::key_error);
  auto by_number = m.dict<int, std::string>();
  CHECK_THROWS_WITH_AS(by_number.get(42), doctest::Contains("42"), ray::key_error);
}

TEST_CASE("increment from tasks in two workers loses no update") {
  ray::runtime rt({.num_workers = 2});
  ray::manager m;
  auto d = m.dict<std::string, int>();
  const std::vector<std::string> words{"a", "b", "a", "c", "a", "b"};
  std::vector<ray::object_ref<int>> done;
  for (int t = 0; t < 8; ++t) done.push_back(ray::task<count_words>.remote(d, words));
  for (auto& r : done) ray::get(r).get();
  CHECK(d.get("a") == 24);
  CHECK(d.get("b") == 16);
  CHECK(d.get("c") == 8);
  CHECK(d.increment("c", -8) == 0);

  auto sums = m.dict<int, double>();
  CHECK(sums.increment(1, 0.5) == 0.5);
  CHECK(sums.increment(1, 0.25) == 0.75);
}

TEST_CASE("compare_exchange loops from two workers make an atomic read-modify-write") {
  ray::runtime rt({.num_workers = 2});
  ray::manager m;
  auto d = m.dict<std::string, int>();
  auto a = ray::task<add_with_compare_exchange>.remote(d, 100);
  auto b = ray::task<add_with_compare_exchange>.remote(d, 100);
  CHECK(ray::get(a).get() + ray::get(b).get() == 200);
  CHECK(d.get("total") == 200);
  CHECK_FALSE(d.compare_exchange("total", std::nullopt, 1));  // present: no change
  CHECK_FALSE(d.compare_exchange("total", 5, 1));
  CHECK(d.compare_exchange("fresh", std::nullopt, 1));
  CHECK(d.get("fresh") == 1);
}

TEST_CASE("a list appended from tasks and an actor holds every item") {
  ray::runtime rt({.num_workers = 2});
  ray::manager m;
  auto log = m.list<int>();
  auto seen = m.dict<std::string, int>();
  auto rec = ray::spawn<recorder>(log, seen);
  auto a = ray::task<append_range>.remote(log, 0, 50);
  auto b = ray::task<append_range>.remote(log, 50, 50);
  for (int i = 100; i < 110; ++i) rec.call<&recorder::record>(i);
  CHECK(ray::get(a).get() + ray::get(b).get() == 100);
  CHECK(ray::get(rec.call<&recorder::records>()).get() == 10);
  auto items = log.snapshot();
  REQUIRE(items.size() == 110);
  std::sort(items.begin(), items.end());
  for (int i = 0; i < 110; ++i) REQUIRE(items[static_cast<std::size_t>(i)] == i);
  CHECK(seen.get("records") == 10);  // the actor's proxy reaches the driver's dict
}

TEST_CASE("a list indexes as Python's and out of range is an index_error") {
  ray::runtime rt({.num_workers = 1});
  ray::manager m;
  auto l = m.list<std::string>({"a", "b"});
  l.extend({"c", "d"});
  l.insert(0, "z");
  l.insert(-1, "y");     // before the last
  l.insert(100, "end");  // clamped
  CHECK(l.snapshot() == std::vector<std::string>{"z", "a", "b", "c", "y", "d", "end"});
  CHECK(l.get(0) == "z");
  CHECK(l[-1] == "end");
  l.set(-2, "D");
  CHECK(l.get(5) == "D");
  CHECK_THROWS_WITH_AS(l.get(7), doctest::Contains("index 7 out of range (size 7)"),
                       ray::index_error);
  CHECK_THROWS_AS(l.set(-8, "x"), ray::index_error);
  CHECK(l.pop() == "end");
  CHECK(l.pop(0) == "z");
  CHECK(l.size() == 5);
  l.clear();
  CHECK(l.empty());
  CHECK_THROWS_WITH_AS(l.pop(), doctest::Contains("empty"), ray::index_error);
}

TEST_CASE("a namespace keeps named values of any type and refuses a wrong type") {
  ray::runtime rt({.num_workers = 1});
  ray::manager m;
  auto ns = m.ns();
  CHECK(ray::get(ray::task<set_epoch>.remote(ns, 7)).get() == 7);
  CHECK(ns.get<int>("epoch") == 7);
  CHECK(ns.get<std::string>("phase") == "training");
  CHECK(ns.names() == std::vector<std::string>{"epoch", "phase"});
  CHECK_THROWS_WITH_AS(ns.get<double>("epoch"), doctest::Contains("'epoch' holds a int"),
                       ray::codec_error);
  CHECK_THROWS_WITH_AS(ns.get<int>("lr"), doctest::Contains("'lr'"), ray::key_error);
  CHECK(ns.get<double>("lr", 0.1) == 0.1);
  ns.set("lr", std::vector<double>{0.1, 0.01});
  CHECK(ns.get<std::vector<double>>("lr") == std::vector<double>{0.1, 0.01});
  CHECK(ns.contains("lr"));
  CHECK(ns.erase("lr"));
  CHECK_FALSE(ns.contains("lr"));
}

TEST_CASE("proxies copied or made from one manager share its objects, and two managers do not") {
  ray::runtime rt({.num_workers = 1});
  ray::manager m;
  ray::manager other;
  auto d = m.dict<int, int>();
  auto copy = d;
  copy.set(1, 10);
  CHECK(d.get(1) == 10);
  CHECK(copy == d);
  auto e = m.dict<int, int>();  // a second dict in the same manager
  CHECK(e.empty());
  auto f = other.dict<int, int>();
  f.set(1, 99);
  CHECK(d.get(1) == 10);
  CHECK(m.pid() != other.pid());
  ray::dict_proxy<int, int> empty;
  CHECK_FALSE(empty.valid());
  CHECK_THROWS_AS(empty.get(1), ray::usage_error);
}

TEST_CASE("set_async and get_async are awaited in a coroutine") {
  ray::runtime rt({.num_workers = 1});
  ray::manager m;
  auto d = m.dict<std::string, int>();
  auto l = m.list<int>();
  int got = rt.run([&]() -> ray::async<int> {
    co_await d.set_async("k", 5);
    co_await l.append_async(1);
    co_return co_await d.get_async("k");
  }());
  CHECK(got == 5);
  CHECK(l.size() == 1);
  CHECK_THROWS_AS(rt.run(d.get_async("missing")), ray::key_error);
}

TEST_CASE("when the manager's process is killed, every operation ends with actor_died") {
  ray::runtime rt({.num_workers = 1});
  ray::manager m;
  auto d = m.dict<std::string, int>();
  auto l = m.list<int>();
  d.set("a", 1);
  ::kill(m.pid(), SIGKILL);
  CHECK_THROWS_AS(d.get("a"), ray::actor_died);
  CHECK_THROWS_AS(l.append(1), ray::actor_died);
  CHECK_THROWS_AS(ray::get(ray::task<get_in_task>.remote(d, "a")).get(), ray::actor_died);
  CHECK_THROWS_AS((m.dict<int, int>()), ray::actor_died);
}

TEST_CASE("shutdown ends the manager: later operations end with actor_died") {
  ray::runtime rt({.num_workers = 1});
  ray::manager m;
  auto ns = m.ns();
  ns.set("x", 1);
  m.shutdown();
  CHECK_THROWS_AS(ns.get<int>("x"), ray::actor_died);
}

TEST_CASE("the manager's process ends once the manager and every proxy are gone") {
  ray::runtime rt({.num_workers = 1});
  int pid = 0;
  auto gone = [&] {
    auto children = ray::active_children();
    return std::none_of(children.begin(), children.end(),
                        [&](const ray::process_info& c) { return c.pid == pid; });
  };
  std::optional<ray::list_proxy<int>> kept;
  {
    ray::manager m;
    pid = m.pid();
    kept = m.list<int>();
    kept->append(1);
  }
  CHECK_FALSE(gone());  // a proxy outlives its manager and keeps the objects
  CHECK(kept->snapshot() == std::vector<int>{1});
  CHECK(ray::get(ray::task<append_range>.remote(*kept, 2, 1)).get() == 1);
  CHECK(kept->size() == 2);
  kept.reset();  // the last proxy: the manager's process exits
  CHECK(serve_until(gone, std::chrono::seconds(10)));
}
