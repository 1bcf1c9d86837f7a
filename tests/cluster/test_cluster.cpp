// Cluster mode under `mpirun -np 3`: calls, objects, nested calls, actors and faults across
// nodes. One runtime serves every case (a program under MPI builds it once): ranks 1 and 2
// become nodes inside its constructor and never reach doctest; rank 0 runs the cases.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <coray/coray.hpp>
#include <coray/mpi.hpp>
#include <cstdio>
#include <fstream>
#include <map>
#include <numeric>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "cluster_test.hpp"

namespace {

using cluster_test::node_pid;
using cluster_test::ranks_by_pid;

/// Where a call ran, after holding its worker long enough that calls made together spread
/// over every free worker.
int node_after(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return node_pid();
}

/// Calls `f` in `n` tasks at once until each rank ran one, at most 20 rounds; returns the
/// ranks seen. Tasks go to free workers, and rank 0's fill first, so a round holds each
/// worker for a while.
std::set<int> ranks_reached(int n) {
  const auto ranks = ranks_by_pid();
  std::set<int> seen;
  for (int round = 0; round < 20 && seen.size() < ranks.size(); ++round) {
    std::vector<ray::object_ref<int>> refs;
    for (int i = 0; i < n; ++i) refs.push_back(ray::task<node_after>.remote(50));
    for (auto& r : refs) {
      const int pid = ray::get(r);
      if (ranks.count(pid)) seen.insert(ranks.at(pid));
    }
  }
  return seen;
}

std::vector<std::uint8_t> shifted(std::vector<std::uint8_t> v, int by) {
  for (auto& x : v) x = static_cast<std::uint8_t>(x + by);
  return v;
}

/// A large argument in, a large result out, and where it ran.
std::pair<int, std::vector<std::uint8_t>> shifted_at(std::vector<std::uint8_t> v, int by) {
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  return {node_pid(), shifted(std::move(v), by)};
}

ray::async<int> fib(int n) {
  if (n < 2) co_return n;
  auto a = ray::task<fib>.remote(n - 1);
  auto b = ray::task<fib>.remote(n - 2);
  co_return co_await ray::get(a) + co_await ray::get(b);
}

int add(int a, int b) { return a + b; }

int blocking_nested(int n) { return ray::get(ray::task<add>.remote(n, 1)) * 2; }

std::size_t total(std::vector<std::uint8_t> v) {
  return std::accumulate(v.begin(), v.end(), std::size_t{0});
}

/// A task that makes objects in its worker and returns refs to them inside its result.
std::vector<ray::object_ref<std::string>> make_objects(int n) {
  std::vector<ray::object_ref<std::string>> out;
  for (int i = 0; i < n; ++i) out.push_back(ray::put(std::string(100'000, char('a' + i))));
  return out;
}

int throws_out_of_range(int i) { return std::vector<int>{}.at(static_cast<std::size_t>(i)); }

/// Dies (SIGKILL) when it runs on a node other than rank 0.
int die_on_a_node(int driver_pid) {
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  if (node_pid() != driver_pid) raise(SIGKILL);
  return 0;
}

/// Dies on its first attempt (marking `path`), succeeds on the next.
int die_once(std::string path) {
  if (std::ifstream(path).good()) return 42;
  std::ofstream(path) << "x";
  raise(SIGKILL);
  return 0;
}

/// Its node first, then `n` items of `size` bytes each (over the inline threshold: each in a
/// block of its own).
ray::generator<std::vector<int>> node_then_items(int n, int size) {
  co_yield std::vector<int>(1, node_pid());
  for (int i = 0; i < n; ++i) co_yield std::vector<int>(static_cast<std::size_t>(size), i);
}

int wait_forever(int) {
  for (;;) std::this_thread::sleep_for(std::chrono::milliseconds(10));
}

struct counter {
  int n = 0;
  int add(int by) { return n += by; }
};

int bump_from(ray::actor<counter> c, int by) {
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  ray::get(c.call<&counter::add>(by));
  return node_pid();
}

}  // namespace

TEST_CASE("ray::nodes lists rank 0 and every node with its workers and CPUs") {
  const auto nodes = ray::nodes();
  REQUIRE(nodes.size() == 3);
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    CHECK(nodes[i].rank == static_cast<int>(i));
    CHECK(nodes[i].workers == 2);
    CHECK(nodes[i].cpus >= 2);
    CHECK(nodes[i].alive);
    CHECK(nodes[i].pid > 0);
  }
  CHECK(nodes[0].pid == getpid());
  CHECK(ray::cluster_resources().at("CPU") ==
        doctest::Approx(nodes[0].cpus + nodes[1].cpus + nodes[2].cpus));
}

TEST_CASE("tasks run on every node's workers") { CHECK(ranks_reached(6).size() == 3); }

TEST_CASE("large arguments and results cross between nodes intact") {
  std::vector<std::uint8_t> v(4 << 20);
  for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<std::uint8_t>(i * 7);
  const auto ranks = ranks_by_pid();
  std::set<int> seen;
  for (int round = 0; round < 10 && seen.size() < 3; ++round) {
    std::vector<ray::object_ref<std::pair<int, std::vector<std::uint8_t>>>> refs;
    for (int i = 0; i < 6; ++i) refs.push_back(ray::task<shifted_at>.remote(v, i));
    for (int i = 0; i < 6; ++i) {
      auto [pid, out] = ray::get(refs[static_cast<std::size_t>(i)]).get();
      REQUIRE(out.size() == v.size());
      CHECK(out == shifted(v, i));
      seen.insert(ranks.at(pid));
    }
  }
  CHECK(seen.size() == 3);
}

/// An actor whose state depends on the order its calls came in.
struct order_log {
  std::uint64_t h = 0;
  std::uint64_t add(const std::vector<std::uint8_t>& v) {
    h = h * 1000003 + v.size() * 31 + std::accumulate(v.begin(), v.end(), std::uint64_t{0});
    return h;
  }
};

std::vector<std::uint8_t> pattern(std::size_t n, int seed) {
  std::vector<std::uint8_t> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::uint8_t>(i * 13 + seed);
  return v;
}

TEST_CASE("blocks either side of the size sent apart from their frame arrive intact, in order") {
  // Below, at and above the size whose bytes follow the frame in messages of their own, and
  // sizes of several chunks with a remainder; small calls between them must not overtake.
  const std::size_t sizes[] = {
      1, 65535, 65536, 65537, (std::size_t{4} << 20) + 3, 100, (std::size_t{9} << 20) + 5, 7};
  for (int node : {1, 2}) {
    auto log = ray::spawn<order_log>({.scheduling_strategy = ray::node_affinity(node)});
    std::uint64_t expected = 0;
    std::vector<ray::object_ref<std::uint64_t>> refs;
    for (int round = 0; round < 3; ++round) {
      for (std::size_t n : sizes) {
        auto v = pattern(n, round + node);
        expected = expected * 1000003 + v.size() * 31 +
                   std::accumulate(v.begin(), v.end(), std::uint64_t{0});
        refs.push_back(log.call<&order_log::add>(std::move(v)));
      }
    }
    CHECK(ray::get(refs.back()).get() == expected);
    // And back: results of the same sizes, made on that node.
    auto there = ray::task<pattern>.options({.scheduling_strategy = ray::node_affinity(node)});
    std::vector<ray::object_ref<std::vector<std::uint8_t>>> outs;
    for (std::size_t n : sizes) outs.push_back(there.remote(n, node));
    for (std::size_t i = 0; i < outs.size(); ++i)
      CHECK(ray::get(outs[i]).get() == pattern(sizes[i], node));
  }
}

/// The object bytes rank 0 has sent node `rank`.
std::uint64_t sent_to(int rank) {
  for (const auto& n : ray::nodes())
    if (n.rank == rank) return n.object_bytes_sent;
  FAIL("no node ", rank);
  return 0;
}

std::uint64_t sum_of(const std::vector<std::uint8_t>& v) {
  return std::accumulate(v.begin(), v.end(), std::uint64_t{0});
}

std::uint64_t sum_task(const std::vector<std::uint8_t>& v) { return sum_of(v); }

TEST_CASE("a node keeps copies of large objects: it is not sent one it holds again") {
  auto on1 = ray::task<sum_task>.options({.scheduling_strategy = ray::node_affinity(1)});
  const auto v = pattern(std::size_t{3} << 20, 9);
  auto ref = ray::put(v);
  const auto before = sent_to(1);
  CHECK(ray::get(on1.remote(ref)).get() == sum_of(v));
  const auto once = sent_to(1);
  CHECK(once - before == v.size() + 8);  // the encoded vector: its length, then its bytes
  for (int i = 0; i < 4; ++i) CHECK(ray::get(on1.remote(ref)).get() == sum_of(v));
  CHECK(sent_to(1) == once);
  // A result made on the node is kept there too: a task there reading it is sent nothing.
  auto made =
      ray::task<pattern>.options({.scheduling_strategy = ray::node_affinity(1)}).remote(std::size_t{2} << 20, 4);
  CHECK(ray::get(on1.remote(made)).get() == sum_of(pattern(std::size_t{2} << 20, 4)));
  CHECK(sent_to(1) == once);
  // Node 2 has neither: it is sent each, once.
  auto on2 = ray::task<sum_task>.options({.scheduling_strategy = ray::node_affinity(2)});
  const auto at2 = sent_to(2);
  for (int i = 0; i < 2; ++i) CHECK(ray::get(on2.remote(ref)).get() == sum_of(v));
  for (int i = 0; i < 2; ++i) CHECK(ray::get(on2.remote(made)).get() > 0);
  CHECK(sent_to(2) - at2 == v.size() + 8 + (std::size_t{2} << 20) + 8);
}

TEST_CASE("a node drops the copies it has no room for, and is sent them again when needed") {
  // 200 MiB through a node's 128 MiB store: its least recently used copies go.
  auto on1 = ray::task<sum_task>.options({.scheduling_strategy = ray::node_affinity(1)});
  std::vector<ray::object_ref<std::vector<std::uint8_t>>> refs;
  std::vector<std::uint64_t> sums;
  for (int i = 0; i < 20; ++i) {
    const auto v = pattern(std::size_t{10} << 20, i);
    sums.push_back(sum_of(v));
    refs.push_back(ray::put(v));
  }
  for (int i = 0; i < 20; ++i) CHECK(ray::get(on1.remote(refs[i])).get() == sums[i]);
  auto sent = sent_to(1);
  CHECK(ray::get(on1.remote(refs[19])).get() == sums[19]);  // the newest is held
  CHECK(sent_to(1) == sent);
  CHECK(ray::get(on1.remote(refs[0])).get() == sums[0]);  // the oldest was dropped
  CHECK(sent_to(1) - sent == (std::size_t{10} << 20) + 8);
}

/// Holds a worker until `release` is set, counting itself in `started` first.
int hold_until(ray::shared_value<int> started, ray::shared_value<int> release) {
  started.fetch_add(1);
  while (release.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return node_pid();
}

int node_reading(const std::vector<std::uint8_t>& v) { return v.empty() ? -1 : node_pid(); }

TEST_CASE("a task goes to the node that keeps its arguments when this machine's workers are busy") {
  const auto ranks = ranks_by_pid();
  auto on2 = ray::task<node_reading>.options({.scheduling_strategy = ray::node_affinity(2)});
  auto kept = ray::put(pattern(std::size_t{2} << 20, 1));
  REQUIRE(ranks.at(ray::get(on2.remote(kept)).get()) == 2);  // node 2 keeps a copy now
  auto fresh = ray::put(pattern(std::size_t{2} << 20, 2));   // no node has this one
  // Rank 0's two workers busy (its default calls fill them first).
  auto started = ray::shared_value<int>(0), release = ray::shared_value<int>(0);
  std::vector<ray::object_ref<int>> held;
  for (int i = 0; i < 2; ++i) held.push_back(ray::task<hold_until>.remote(started, release));
  for (int i = 0; i < 10000 && started.load() < 2; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  REQUIRE(started.load() == 2);
  // Default placement goes to the first node with a free worker (rank 1) ...
  CHECK(ranks.at(ray::get(ray::task<node_reading>.remote(fresh)).get()) == 1);
  // ... unless another keeps the call's arguments.
  CHECK(ranks.at(ray::get(ray::task<node_reading>.remote(kept)).get()) == 2);
  release.store(1);
  for (auto& h : held) CHECK(ranks.at(ray::get(h).get()) == 0);
}

TEST_CASE("the state API gives other nodes' processes' CPU time and memory, as they report") {
  // Each node reports its processes each second: wait for both nodes' first reports.
  std::set<int> reported;
  for (int i = 0; i < 200 && reported.size() < 2; ++i) {
    for (const auto& w : ray::state::list_workers()) {
      if (w.node == 0) {
        CHECK(w.cpu_seconds < 0);  // this machine's: read /proc instead
        continue;
      }
      if (w.alive && w.cpu_seconds >= 0) {
        CHECK(w.rss_bytes > 0);
        reported.insert(w.node);
      }
    }
    if (reported.size() < 2) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  CHECK(reported == std::set<int>{1, 2});
}

TEST_CASE("a result larger than half its node's store is read there again, intact") {
  // The node keeps its copy, then offers it back at once (copies past half its 128 MiB store
  // go down to a quarter): rank 0 must not count it held after the node let it go. Each read
  // sends it again, and its bytes may arrive before the node has let the last copy go: they
  // wait for the room.
  auto on1 = ray::task<sum_task>.options({.scheduling_strategy = ray::node_affinity(1)});
  auto made =
      ray::task<pattern>.options({.scheduling_strategy = ray::node_affinity(1)}).remote(std::size_t{70} << 20, 6);
  const auto expected = sum_of(pattern(std::size_t{70} << 20, 6));
  for (int i = 0; i < 3; ++i) CHECK(ray::get(on1.remote(made)).get() == expected);
}

TEST_CASE("an object put on rank 0 is read by tasks on every node") {
  std::vector<std::uint8_t> v(1 << 20, 3);
  auto ref = ray::put(v);
  std::vector<ray::object_ref<std::size_t>> refs;
  for (int i = 0; i < 12; ++i) refs.push_back(ray::task<total>.remote(ref));
  for (auto& r : refs) CHECK(ray::get(r).get() == 3u << 20);
}

TEST_CASE("nested calls from workers on other nodes, awaited and blocking") {
  CHECK(ray::get(ray::task<fib>.remote(12)).get() == 144);
  std::vector<ray::object_ref<int>> refs;
  for (int i = 0; i < 12; ++i) refs.push_back(ray::task<blocking_nested>.remote(i));
  for (int i = 0; i < 12; ++i)
    CHECK(ray::get(refs[static_cast<std::size_t>(i)]).get() == (i + 1) * 2);
}

TEST_CASE("refs inside results: objects a worker on any node put are read on rank 0") {
  std::vector<ray::object_ref<std::vector<ray::object_ref<std::string>>>> calls;
  for (int i = 0; i < 6; ++i) calls.push_back(ray::task<make_objects>.remote(3));
  for (auto& c : calls) {
    auto refs = ray::get(c).get();
    REQUIRE(refs.size() == 3);
    for (std::size_t i = 0; i < refs.size(); ++i)
      CHECK(ray::get(refs[i]).get() == std::string(100'000, char('a' + i)));
  }
}

TEST_CASE("an exception in a task on another node arrives as task_error with its message") {
  std::vector<ray::object_ref<int>> refs;
  for (int i = 0; i < 6; ++i) refs.push_back(ray::task<throws_out_of_range>.remote(i));
  for (auto& r : refs) {
    try {
      (void)ray::get(r).get();
      FAIL("no exception");
    } catch (const ray::task_error& e) {
      CHECK(std::string(e.what()).find("out_of_range") != std::string::npos);
    }
  }
}

TEST_CASE("a worker killed on another node fails its call with worker_crashed") {
  int crashed = 0;
  for (int round = 0; round < 10 && crashed == 0; ++round) {
    std::vector<ray::object_ref<int>> refs;
    for (int i = 0; i < 6; ++i)
      refs.push_back(ray::task<die_on_a_node>.options({.max_retries = 0}).remote(getpid()));
    for (auto& r : refs) {
      try {
        (void)ray::get(r).get();
      } catch (const ray::worker_crashed&) {
        ++crashed;
      }
    }
  }
  CHECK(crashed > 0);
  // The dead workers were replaced: every node runs tasks again.
  CHECK(ranks_reached(6).size() == 3);
}

TEST_CASE("a call whose worker died is retried, wherever it lands") {
  char dir[] = "/tmp/coray-cluster-XXXXXX";
  REQUIRE(mkdtemp(dir));
  std::vector<ray::object_ref<int>> refs;
  for (int i = 0; i < 6; ++i)
    refs.push_back(ray::task<die_once>.remote(std::string(dir) + "/" + std::to_string(i)));
  for (auto& r : refs) CHECK(ray::get(r).get() == 42);
  for (int i = 0; i < 6; ++i) std::remove((std::string(dir) + "/" + std::to_string(i)).c_str());
  rmdir(dir);
}

TEST_CASE("streaming generators on every node deliver their items in order") {
  const auto ranks = ranks_by_pid();
  std::vector<ray::object_ref_generator<std::vector<int>>> streams;
  for (int i = 0; i < 6; ++i) streams.push_back(ray::task<node_then_items>.remote(200, 40'000));
  std::set<int> seen;
  for (auto& stream : streams) {
    int index = -1;
    for (ray::object_ref<std::vector<int>> r : stream) {
      std::vector<int> item = ray::get(r);
      if (index < 0) {
        seen.insert(ranks.at(item.at(0)));
      } else {
        REQUIRE(item.size() == 40'000u);
        CHECK(item.front() == index);
        CHECK(item.back() == index);
      }
      ++index;
    }
    CHECK(index == 200);
  }
  CHECK(seen.size() == 3);  // six streams on six workers: two on each node
}

TEST_CASE("a get times out and a forced cancel ends calls running on every node") {
  std::vector<ray::object_ref<int>> refs;
  for (int i = 0; i < 6; ++i) refs.push_back(ray::task<wait_forever>.remote(i));
  for (auto& r : refs)
    CHECK_THROWS_AS(ray::get(r, {.timeout = std::chrono::milliseconds(20)}).get(),
                    ray::get_timeout);
  for (auto& r : refs) ray::cancel(r, {.force = true});
  for (auto& r : refs) CHECK_THROWS_AS(ray::get(r).get(), ray::cancelled);
  CHECK(ranks_reached(6).size() == 3);  // the killed workers were replaced everywhere
}

TEST_CASE("an actor's handle is used from tasks on every node") {
  auto c = ray::spawn<counter>();
  const auto ranks = ranks_by_pid();
  std::set<int> seen;
  int expected = 0;
  for (int round = 0; round < 10 && seen.size() < 3; ++round) {
    std::vector<ray::object_ref<int>> refs;
    for (int i = 0; i < 6; ++i) {
      refs.push_back(ray::task<bump_from>.remote(c, 1));
      ++expected;
    }
    for (auto& r : refs) seen.insert(ranks.at(ray::get(r).get()));
  }
  CHECK(seen.size() == 3);
  CHECK(ray::get(c.call<&counter::add>(0)).get() == expected);
}

int main(int argc, char** argv) { return cluster_test::run(argc, argv); }
