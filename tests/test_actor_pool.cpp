// ray::actor_pool: Ray's ActorPool over a set of actors -- map, map_unordered, submit,
// get_next, has_next, pop_idle and push.
#include <doctest/doctest.h>
#include <unistd.h>

#include <chrono>
#include <coray/coray.hpp>
#include <set>
#include <string>
#include <vector>

namespace {

struct doubler {
  int twice(int v) { return 2 * v; }
  int pid(int) const { return getpid(); }
  std::string name(int v) const { return "v" + std::to_string(v); }
  /// Returns once the queue hands it a value: a call that finishes when the test says so.
  int wait_for(ray::queue<int> q) { return q.get(); }
};

// Seed 003's callable object, made an actor: its state is built once in each process.
struct adder {
  adder() : x(1) {}
  int operator()(int v) const { return v + x; }
  int x;
};

std::vector<ray::actor<doubler>> doublers(int n) {
  std::vector<ray::actor<doubler>> v;
  for (int i = 0; i < n; ++i) v.push_back(ray::spawn<doubler>());
  return v;
}

}  // namespace

TEST_CASE("actor_pool map returns results in the values' order") {
  ray::runtime rt({.num_workers = 1});
  ray::actor_pool<doubler> pool(doublers(2));
  std::vector<int> got;
  for (int r : pool.map<&doubler::twice>(std::vector<int>{1, 2, 3, 4})) got.push_back(r);
  CHECK(got == std::vector<int>{2, 4, 6, 8});
  std::vector<std::string> names;
  for (auto& s : pool.map<&doubler::name>(std::vector<int>{7, 8})) names.push_back(s);
  CHECK(names == std::vector<std::string>{"v7", "v8"});
}

TEST_CASE("actor_pool map_unordered yields every result, spread over the actors") {
  ray::runtime rt({.num_workers = 1});
  ray::actor_pool<doubler> pool(doublers(3));
  std::multiset<int> got;
  std::vector<int> values;
  for (int i = 0; i < 100; ++i) values.push_back(i);
  for (int r : pool.map_unordered<&doubler::twice>(values)) got.insert(r);
  std::multiset<int> expected;
  for (int v : values) expected.insert(2 * v);
  CHECK(got == expected);
  std::set<int> pids;
  for (int pid : pool.map_unordered<&doubler::pid>(std::vector<int>(30))) pids.insert(pid);
  CHECK(pids.size() >= 2);  // one call per actor at a time: more than one actor served
}

TEST_CASE("submit and get_next return results in submission order") {
  ray::runtime rt({.num_workers = 1});
  ray::actor_pool<doubler> pool(doublers(2));
  CHECK_FALSE(pool.has_next());
  for (int i = 0; i < 10; ++i) pool.submit<&doubler::twice>(i);
  CHECK(pool.has_next());
  for (int i = 0; i < 10; ++i) CHECK(pool.get_next<int>() == 2 * i);
  CHECK_FALSE(pool.has_next());
  CHECK_THROWS_AS(pool.get_next<int>(), ray::runtime_error);

  std::multiset<int> unordered;
  for (int i = 0; i < 10; ++i) pool.submit<&doubler::twice>(i);
  while (pool.has_next()) unordered.insert(pool.get_next_unordered<int>());
  CHECK(unordered.size() == 10);
  CHECK(*unordered.rbegin() == 18);
}

TEST_CASE("get_next with a timeout throws get_timeout and keeps the result for later") {
  ray::runtime rt({.num_workers = 1});
  ray::actor_pool<doubler> pool(doublers(1));
  ray::queue<int> q;
  pool.submit<&doubler::wait_for>(q);  // finishes only when the queue gets an item
  CHECK_FALSE(pool.has_free());
  CHECK_THROWS_AS(pool.get_next<int>(std::chrono::milliseconds(5)), ray::get_timeout);
  CHECK(pool.has_next());
  q.put(41);
  CHECK(pool.get_next<int>() == 41);
  CHECK(pool.has_free());
}

TEST_CASE("get_next names the result's type when asked for another") {
  ray::runtime rt({.num_workers = 1});
  ray::actor_pool<doubler> pool(doublers(1));
  pool.submit<&doubler::name>(1);
  CHECK_THROWS_WITH_AS(pool.get_next<int>(), doctest::Contains("std::"), ray::runtime_error);
  CHECK(pool.get_next<std::string>() == "v1");
}

TEST_CASE("pop_idle takes a free actor out of the pool and push puts one in") {
  ray::runtime rt({.num_workers = 1});
  ray::actor_pool<doubler> pool(doublers(1));
  CHECK(pool.has_free());
  std::optional<ray::actor<doubler>> a = pool.pop_idle();
  REQUIRE(a);
  CHECK_FALSE(pool.has_free());
  CHECK_FALSE(pool.pop_idle());
  pool.submit<&doubler::twice>(5);  // waits: no actor in the pool
  CHECK_THROWS_AS(pool.get_next<int>(std::chrono::milliseconds(5)), ray::get_timeout);
  pool.push(*a);
  CHECK(pool.get_next<int>() == 10);
  CHECK(ray::get(a->call<&doubler::twice>(3)).get() == 6);  // still usable directly
}

TEST_CASE("a callable object's operator() maps over an actor pool (seed 003's Pool.map of Test)") {
  ray::runtime rt({.num_workers = 1});
  std::vector<ray::actor<adder>> actors{ray::spawn<adder>(), ray::spawn<adder>(),
                                        ray::spawn<adder>()};
  ray::actor_pool<adder> pool(actors);
  std::vector<int> got;
  for (int r : pool.map<&adder::operator()>(std::vector<int>{1, 2, 3, 4})) got.push_back(r);
  CHECK(got == std::vector<int>{2, 3, 4, 5});
}
