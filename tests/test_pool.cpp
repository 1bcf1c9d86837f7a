// ray::pool: multiprocessing.Pool's map, starmap, imap, apply, callbacks, initializer and
// maxtasksperchild, on processes of its own.
#include <doctest/doctest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <coray/coray.hpp>
#include <forward_list>
#include <list>
#include <map>
#include <numeric>
#include <ranges>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace {

int times_ten(int x) { return x * 10; }
std::string shout(const std::string& s) { return s + "!"; }
std::size_t length(std::string_view s) { return s.size(); }
int pid_of(int) { return getpid(); }
int fails_on_13(int x) {
  if (x == 13) throw std::domain_error("unlucky " + std::to_string(x));
  return x;
}
int dies_on_13(int x) {
  if (x == 13) raise(SIGKILL);
  return x;
}
int add(int a, int b) { return a + b; }
ray::async<int> add_later(int a, int b) {
  co_return co_await ray::get(ray::task<add>.remote(a, b));
}

int inits_here = 0;  // per process: how often this process's initializer ran
std::string greeting_here;
void count_init(ray::shared_value<int> total, std::string greeting) {
  ++inits_here;
  greeting_here = greeting;
  total.fetch_add(1);
}
int inits_seen(int) { return inits_here; }
std::string greeting_seen(int) { return greeting_here; }
void failing_init() { throw std::runtime_error("no model file"); }

std::string repeat(const std::string& s, int times) {
  std::string out;
  for (int i = 0; i < times; ++i) out += s;
  return out;
}
double scale(int x, double by, char unit) { return unit == 'k' ? x * by * 1000 : x * by; }
int pid_plus(int, int) { return getpid(); }
int unit_scaled(char unit, int x) { return unit == 'k' ? x * 1000 + 7 : x; }
void nothing(int) {}

std::vector<int> iota(int n) {
  std::vector<int> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  return v;
}

}  // namespace

TEST_CASE("pool map returns every result in the items' order, whatever the chunk size") {
  ray::runtime rt({.num_workers = 1});
  ray::pool p(2);
  const auto xs = iota(1000);
  std::vector<int> expected;
  for (int x : xs) expected.push_back(x * 10);
  CHECK(p.map<times_ten>(xs) == expected);
  CHECK(p.map<times_ten>(xs, 1) == expected);
  CHECK(p.map<times_ten>(xs, 7) == expected);
  CHECK(p.map<times_ten>(std::vector<int>{}).empty());
  CHECK(p.map<times_ten>(std::vector<short>{1, 2, 3}) ==
        std::vector<int>{10, 20, 30});  // items convert
}

TEST_CASE("pool map carries strings and other encodable items, and views of them") {
  ray::runtime rt({.num_workers = 1});
  ray::pool p(2);
  std::vector<std::string> words{"ray", "coray", "pool", ""};
  CHECK(p.map<shout>(words) == std::vector<std::string>{"ray!", "coray!", "pool!", "!"});
  CHECK(p.map<length>(words) == std::vector<std::size_t>{3, 5, 4, 0});
}

TEST_CASE("a map of a million tiny items is cut into a few chunks and comes back whole") {
  ray::runtime rt({.num_workers = 1});
  ray::pool p(2);
  const auto xs = iota(1'000'000);
  auto ys = p.map<times_ten>(xs);
  REQUIRE(ys.size() == xs.size());
  CHECK(ys.front() == 0);
  CHECK(ys[123'456] == 1'234'560);
  CHECK(ys.back() == 9'999'990);
  // Chunks go to whichever process is least busy: both processes ran some.
  auto pids = p.map<pid_of>(std::vector<int>(8), 1);
  CHECK(std::set<int>(pids.begin(), pids.end()).size() == 2);
}

TEST_CASE("imap yields results in order and imap_unordered yields every result") {
  ray::runtime rt({.num_workers = 1});
  ray::pool p(3);
  const auto xs = iota(200);
  std::vector<int> ordered;
  for (int y : p.imap<times_ten>(xs, 9)) ordered.push_back(y);
  std::vector<int> expected;
  for (int x : xs) expected.push_back(x * 10);
  CHECK(ordered == expected);

  std::multiset<int> unordered;
  for (int y : p.imap_unordered<times_ten>(xs, 9)) unordered.insert(y);
  CHECK(unordered == std::multiset<int>(expected.begin(), expected.end()));

  // The same stream awaited in a coroutine.
  int sum = rt.run([&]() -> ray::async<int> {
    auto stream = p.imap_unordered<times_ten>(iota(10), 3);
    int total = 0;
    while (auto y = co_await stream.next_async()) total += *y;
    co_return total;
  }());
  CHECK(sum == 450);
}

TEST_CASE("the initializer runs once in each pool process, before any of its work") {
  ray::runtime rt({.num_workers = 1});
  ray::shared_value<int> inits(0);
  {
    ray::pool p(3, ray::initializer<count_init>, inits, "hello");
    CHECK(p.size() == 3);
    auto seen = p.map<inits_seen>(iota(300), 1);
    CHECK(std::all_of(seen.begin(), seen.end(), [](int n) { return n == 1; }));
    auto greetings = p.map<greeting_seen>(iota(30), 1);
    CHECK(std::all_of(greetings.begin(), greetings.end(),
                      [](const std::string& g) { return g == "hello"; }));
  }  // join: every process has ended
  CHECK(inits.load() == 3);
}

TEST_CASE(
    "apply_async returns a ref at once, apply waits, and a coroutine function may be applied") {
  ray::runtime rt({.num_workers = 1});
  ray::pool p(2);
  ray::object_ref<int> r = p.apply_async<add>(20, 22);
  CHECK(p.apply<add>(1, 2) == 3);
  CHECK(ray::get(r).get() == 42);
  CHECK(p.apply<add_later>(5, 6) == 11);  // awaits a nested task from the pool process
  std::vector<ray::object_ref<int>> many;
  for (int i = 0; i < 50; ++i) many.push_back(p.apply_async<add>(i, i));
  std::vector<int> all = ray::get(many);
  for (int i = 0; i < 50; ++i) CHECK(all[static_cast<std::size_t>(i)] == 2 * i);
}

TEST_CASE("map_async settles with every result in order") {
  ray::runtime rt({.num_workers = 1});
  ray::pool p(2);
  auto ref = p.map_async<times_ten>(iota(100));
  auto big = p.map_async<times_ten>(iota(100'000));  // larger than a message: through the store
  std::vector<int> ys = ray::get(ref);
  REQUIRE(ys.size() == 100);
  CHECK(ys[99] == 990);
  std::vector<int> bigs = ray::get(big);
  REQUIRE(bigs.size() == 100'000);
  CHECK(bigs[99'999] == 999'990);
}

TEST_CASE("an exception in one item fails the map with that item's error") {
  ray::runtime rt({.num_workers = 1});
  ray::pool p(2);
  CHECK_THROWS_WITH_AS(p.map<fails_on_13>(iota(40), 4), doctest::Contains("unlucky 13"),
                       ray::task_error);
  auto stream = p.imap<fails_on_13>(iota(20), 1);
  int taken = 0;
  try {
    for (int v : stream) {
      CHECK(v == taken);
      ++taken;
    }
    FAIL("expected the 13th item's error");
  } catch (const ray::task_error& e) {
    CHECK(e.type_name() == "std::domain_error");
  }
  CHECK(taken == 13);
  CHECK(stream.next() == 14);  // the stream goes on past the failed item
  CHECK(p.map<fails_on_13>(std::vector<int>{1, 2}) == std::vector<int>{1, 2});  // the pool is fine
}

TEST_CASE("a pool process that dies fails its chunk with actor_died and is replaced") {
  ray::runtime rt({.num_workers = 1});
  ray::pool p(2);
  CHECK(p.map<times_ten>(iota(10)).size() == 10);  // both processes are up
  CHECK_THROWS_AS(p.map<dies_on_13>(iota(20), 1), ray::actor_died);
  CHECK(p.map<times_ten>(iota(100), 1).size() == 100);
  auto procs = p.processes();
  REQUIRE(procs.size() == 2);
  for (auto& pi : procs) CHECK(pi.alive);
}

TEST_CASE("an initializer that throws fails the pool's work with actor_died carrying its error") {
  ray::runtime rt({.num_workers = 1});
  ray::pool p(2, ray::initializer<failing_init>);
  CHECK_THROWS_WITH_AS(p.map<times_ten>(iota(10)), doctest::Contains("no model file"),
                       ray::actor_died);
  CHECK_THROWS_AS(p.apply<add>(1, 2), ray::actor_died);
}

TEST_CASE("a closed pool refuses work and terminate ends its processes") {
  ray::runtime rt({.num_workers = 1});
  ray::pool p(2);
  CHECK(p.apply<add>(1, 1) == 2);
  auto procs = p.processes();
  REQUIRE(procs.size() == 2);
  for (auto& pi : procs) CHECK(pi.pid > 0);
  p.close();
  CHECK_THROWS_AS(p.apply<add>(1, 1), ray::runtime_error);
  p.terminate();
  p.join();
  for (auto& pi : procs) CHECK(kill(pi.pid, 0) != 0);
}

TEST_CASE("starmap calls f with each tuple's elements as its arguments, in the items' order") {
  ray::runtime rt({.num_workers = 1});
  ray::pool p(2);
  std::vector<std::pair<int, int>> pairs;
  std::vector<int> sums;
  for (int i = 0; i < 1000; ++i) {
    pairs.emplace_back(i, 2 * i);
    sums.push_back(3 * i);
  }
  CHECK(p.starmap<add>(pairs) == sums);
  CHECK(p.starmap<add>(pairs, 1) == sums);
  CHECK(p.starmap<add>(pairs, 7) == sums);
  CHECK(p.starmap<add>(std::vector<std::pair<int, int>>{}).empty());
  // Any range of tuples: one whose size is not known up front (a forward_list), a list.
  std::forward_list<std::pair<int, int>> evens;
  for (auto it = pairs.rbegin(); it != pairs.rend(); ++it)
    if (it->first % 2 == 0) evens.push_front(*it);
  std::vector<int> even_sums;
  for (int i = 0; i < 1000; i += 2) even_sums.push_back(3 * i);
  CHECK(p.starmap<add>(evens, 3) == even_sums);
  CHECK(p.starmap<add>(std::list<std::tuple<int, int>>{{1, 2}, {3, 4}}) == std::vector<int>{3, 7});
  // Mixed raw arguments, std::tuple and std::array items, elements that convert.
  CHECK(p.starmap<scale>(std::vector<std::tuple<int, double, char>>{
            {2, 0.5, 'k'}, {3, 2.0, 'u'}}) == std::vector<double>{1000.0, 6.0});
  CHECK(p.starmap<add>(std::vector<std::array<short, 2>>{{1, 2}, {3, 4}}) ==
        std::vector<int>{3, 7});
  // Arguments that are not raw (strings) travel as tuples.
  std::vector<std::tuple<std::string, int>> words{{"ab", 3}, {"", 5}, {"xyz", 1}};
  CHECK(p.starmap<repeat>(words) == std::vector<std::string>{"ababab", "", "xyz"});
  // Both processes take chunks.
  auto pids = p.starmap<pid_plus>(std::vector<std::pair<int, int>>(8), 1);
  CHECK(std::set<int>(pids.begin(), pids.end()).size() == 2);
}

TEST_CASE("starmap gives the same results whether its items are copied as they lie or packed") {
  ray::runtime rt({.num_workers = 1});
  ray::pool p(2);
  std::vector<int> xs(1001);
  std::iota(xs.begin(), xs.end(), -500);
  std::vector<int> tens, sums, mixed;
  for (int x : xs) {
    tens.push_back(x * 10);
    sums.push_back(x + 3 * x);
    mixed.push_back(x * 1000 + 7);
  }
  // In a row's layout (copied a chunk at a time): one-element tuples, pairs and arrays of
  // the parameters' types, from a vector, a const vector or a span over part of one.
  std::vector<std::tuple<int>> singles(xs.begin(), xs.end());
  const std::vector<std::pair<int, int>> pairs = [&] {
    std::vector<std::pair<int, int>> v;
    for (int x : xs) v.emplace_back(x, 3 * x);
    return v;
  }();
  std::vector<std::array<int, 2>> arrays;
  for (int x : xs) arrays.push_back({x, 3 * x});
  for (std::size_t cs : {std::size_t{0}, std::size_t{1}, std::size_t{7}, std::size_t{2000}}) {
    CHECK(p.starmap<times_ten>(singles, cs) == tens);
    CHECK(p.starmap<add>(pairs, cs) == sums);
    CHECK(p.starmap<add>(arrays, cs) == sums);
  }
  CHECK(p.starmap<add>(std::span<const std::pair<int, int>>(pairs).subspan(10, 5), 2) ==
        std::vector<int>(sums.begin() + 10, sums.begin() + 15));
  CHECK(p.starmap<times_ten>(std::vector<std::tuple<int>>{}).empty());
  // Not in a row's layout (packed item by item): multi-element tuples (whose order of
  // elements the library chooses), elements of other types that convert, padding.
  std::vector<std::tuple<int, int>> tuples;
  std::vector<std::pair<long, short>> converted;
  std::vector<std::pair<char, int>> padded;
  for (int x : xs) {
    tuples.emplace_back(x, 3 * x);
    converted.emplace_back(x, static_cast<short>(3 * x));
    padded.emplace_back('k', x);
  }
  for (std::size_t cs : {std::size_t{0}, std::size_t{3}}) {
    CHECK(p.starmap<add>(tuples, cs) == sums);
    CHECK(p.starmap<add>(converted, cs) == sums);
    CHECK(p.starmap<unit_scaled>(padded, cs) == mixed);
  }
}

TEST_CASE("starmap_async settles with every result, and a failing call fails it") {
  ray::runtime rt({.num_workers = 1});
  ray::pool p(2);
  std::vector<std::tuple<int, int>> pairs;
  for (int i = 0; i < 100'000; ++i) pairs.emplace_back(i, 1);
  auto ref = p.starmap_async<add>(pairs);
  std::vector<int> ys = ray::get(ref);
  REQUIRE(ys.size() == 100'000);
  CHECK(ys[99'999] == 100'000);
  auto bad = p.starmap_async<fails_on_13>(std::vector<std::tuple<int>>{{1}, {13}, {2}}, 1);
  CHECK_THROWS_WITH_AS(ray::get(bad).get(), doctest::Contains("unlucky 13"), ray::task_error);
}

TEST_CASE("a captureless lambda is mapped, starmapped and applied as a named function is") {
  ray::runtime rt({.num_workers = 1});
  ray::pool p(2);
  CHECK(p.map<[](int x) { return x * 10; }>(iota(5)) == std::vector<int>{0, 10, 20, 30, 40});
  // Two lambdas of the same signature in one scope are two functions.
  CHECK(p.map<[](int x) { return x + 1; }>(iota(3)) == std::vector<int>{1, 2, 3});
  CHECK(p.map<[](int x) { return x - 1; }>(iota(3)) == std::vector<int>{-1, 0, 1});
  CHECK(p.starmap<[](int a, const std::string& s) { return s + std::to_string(a); }>(
            std::vector<std::pair<int, std::string>>{{1, "a"}, {2, "b"}}) ==
        std::vector<std::string>{"a1", "b2"});
  CHECK(p.apply<[](int a, int b) { return a * b; }>(6, 7) == 42);
  std::vector<int> streamed;
  for (int y : p.imap<[](int x) { return -x; }>(iota(4), 1)) streamed.push_back(y);
  CHECK(streamed == std::vector<int>{0, -1, -2, -3});
  auto r = p.map_async<[](int x) { return x * x; }>(iota(4));
  CHECK(ray::get(r).get() == std::vector<int>{0, 1, 4, 9});
}

TEST_CASE(
    "apply_async's callback runs in the driver with the result, error_callback with the error") {
  ray::runtime rt({.num_workers = 1});
  ray::pool p(2);
  const int driver = getpid();
  int total = 0, calls = 0, ran_in = 0;
  std::vector<std::string> errors;
  for (int i = 0; i < 50; ++i)
    p.apply_async<add>(i, i, ray::callback([&](int r) {
                         total += r;
                         ++calls;
                         ran_in = getpid();
                       }));
  auto failing = p.apply_async<fails_on_13>(
      13, ray::callback([&](int) { FAIL("the callback of a failed call ran"); }),
      ray::error_callback([&](std::exception_ptr e) {
        try {
          std::rethrow_exception(e);
        } catch (const ray::task_error& t) {
          errors.push_back(t.what());
        }
      }));
  p.join();  // waits for the calls and their callbacks
  CHECK(calls == 50);
  CHECK(total == 2 * (49 * 50 / 2));
  CHECK(ran_in == driver);
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].find("unlucky 13") != std::string::npos);
  CHECK_THROWS_AS(ray::get(failing).get(), ray::task_error);  // the ref holds the error too

  // A void function's callback takes nothing; error_callback alone is allowed.
  bool done = false;
  p.apply_async<nothing>(1, ray::callback([&] { done = true; }));
  p.apply_async<add>(1, 2, ray::error_callback([&](std::exception_ptr) { FAIL("no error"); }));
  p.join();
  CHECK(done);
}

TEST_CASE(
    "map_async and starmap_async call back with all the results, and a callback may submit more") {
  ray::runtime rt({.num_workers = 1});
  ray::pool p(2);
  std::vector<int> mapped, starred, chained;
  std::exception_ptr error;
  p.map_async<times_ten>(iota(100), 9, ray::callback([&](std::vector<int> ys) {
                           mapped = std::move(ys);
                           // From a callback: more work, whose own callback runs later.
                           p.apply_async<add>(1, 2,
                                              ray::callback([&](int r) { chained.push_back(r); }));
                         }));
  p.starmap_async<add>(std::vector<std::pair<int, int>>{{1, 1}, {2, 2}},
                       ray::callback([&](const std::vector<int>& ys) { starred = ys; }));
  p.map_async<fails_on_13>(iota(20), ray::error_callback([&](std::exception_ptr e) { error = e; }));
  p.join();
  CHECK(mapped.size() == 100);
  CHECK(mapped[99] == 990);
  CHECK(starred == std::vector<int>{2, 4});
  CHECK(chained == std::vector<int>{3});
  CHECK_THROWS_WITH_AS(std::rethrow_exception(error), doctest::Contains("unlucky 13"),
                       ray::task_error);
}

TEST_CASE(
    "with maxtasksperchild, a process is replaced after that many tasks and no result is lost") {
  ray::runtime rt({.num_workers = 1});
  {
    ray::pool p(1, ray::maxtasksperchild(2));
    auto pids = p.map<pid_of>(iota(10), 1);  // ten tasks of one item each
    std::map<int, int> tasks_per_pid;
    for (int pid : pids) ++tasks_per_pid[pid];
    CHECK(tasks_per_pid.size() == 5);
    for (auto [pid, tasks] : tasks_per_pid) CHECK(tasks == 2);
    for (std::size_t i = 0; i + 1 < pids.size(); i += 2) CHECK(pids[i] == pids[i + 1]);
    CHECK(pids[0] != getpid());
    // The process serving now is the sixth: the five before it have ended.
    auto procs = p.processes();
    REQUIRE(procs.size() == 1);
    CHECK(tasks_per_pid.count(procs[0].pid) == 0);
  }
  {
    ray::pool p(2, ray::maxtasksperchild(3));
    const auto xs = iota(1000);
    std::vector<int> expected;
    for (int x : xs) expected.push_back(x * 10);
    CHECK(p.map<times_ten>(xs, 10) == expected);  // 100 tasks over some 34 processes
    std::vector<ray::object_ref<int>> refs;
    for (int i = 0; i < 20; ++i) refs.push_back(p.apply_async<add>(i, 1));
    std::vector<int> got = ray::get(refs);
    for (int i = 0; i < 20; ++i) CHECK(got[static_cast<std::size_t>(i)] == i + 1);
  }
}

TEST_CASE("a replaced process runs the initializer again") {
  ray::runtime rt({.num_workers = 1});
  ray::shared_value<int> inits(0);
  {
    ray::pool p(1, ray::maxtasksperchild(4), ray::initializer<count_init>, inits, "again");
    auto seen = p.map<inits_seen>(iota(12), 1);  // each process ran its initializer once
    CHECK(std::all_of(seen.begin(), seen.end(), [](int n) { return n == 1; }));
    CHECK(p.map<greeting_seen>(iota(1)) == std::vector<std::string>{"again"});
  }
  CHECK(inits.load() == 4);  // three processes of four tasks, and the one that ran the last map
}
