// Refs as values: object_refs inside put objects, call arguments and results, with Ray's
// ownership rules (an object lives while any ref to it exists, in any process or value).
#include <doctest/doctest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <coray/coray.hpp>
#include <cstdint>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

namespace {

int add(int a, int b) { return a + b; }

// A big value (a block in the store), so that the store's free bytes show who holds it.
std::vector<double> block_of(int n) {
  return std::vector<double>(static_cast<std::size_t>(n), 1.0);
}

struct shard_index {
  std::string name;
  std::vector<ray::object_ref<std::vector<double>>> shards;
};

// A task returning a ref to a value it made: the caller gets a ref to that ref.
ray::object_ref<std::vector<double>> make_shard(int n) { return ray::put(block_of(n)); }

// Ray's create_object_containing_ref: many small puts, returned as refs.
std::vector<ray::object_ref<int>> put_many(int n) {
  std::vector<ray::object_ref<int>> refs;
  refs.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) refs.push_back(ray::put(i));
  return refs;
}

// The parameter is the ref itself: the task starts without waiting for its object.
bool holds_ref(ray::object_ref<int> r) { return r.valid(); }

int wait_until_file(std::string path) {
  // Finishes once the driver creates `path`: holds a call pending without sleeping.
  while (access(path.c_str(), F_OK) != 0) std::this_thread::yield();
  return 7;
}

ray::async<int> get_through(ray::object_ref<int> r) { co_return co_await ray::get(r) + 1; }

double sum_all(std::vector<ray::object_ref<std::vector<double>>> refs) {
  double total = 0;
  for (auto& r : refs) {
    std::vector<double> v = ray::get(r);
    total += std::accumulate(v.begin(), v.end(), 0.0);
  }
  return total;
}

// Level 2 of a tree: puts its leaves and returns an index of them.
shard_index make_index(int leaves, int n) {
  shard_index ix{"level2", {}};
  for (int i = 0; i < leaves; ++i) ix.shards.push_back(ray::put(block_of(n)));
  return ix;
}
// Level 1: calls level 2 and returns the ref to its index (a ref to an object holding refs).
ray::object_ref<shard_index> make_tree(int leaves, int n) {
  return ray::task<make_index>.remote(leaves, n);
}

// Reads the ref's value, then dies while still holding it.
int die_holding(ray::object_ref<std::vector<double>> r) {
  std::vector<double> v = ray::get(r);
  if (!v.empty()) raise(SIGKILL);
  return 0;
}

int get_forged(std::vector<std::uint8_t> bytes) {
  std::vector<std::byte> b(bytes.size());
  std::memcpy(b.data(), bytes.data(), bytes.size());
  auto r = ray::decode<ray::object_ref<int>>(b);
  return ray::get(r);
}

struct keeper {
  std::vector<ray::object_ref<int>> kept;
  void keep(ray::object_ref<int> r) { kept.push_back(std::move(r)); }
  std::vector<ray::object_ref<int>> all() { return kept; }
  int total() {
    int t = 0;
    for (auto& r : kept) t += ray::get(r).get();
    return t;
  }
};

// Releases travel as messages; a round trip through every worker flushes them.
void flush_releases() {
  for (int i = 0; i < 16; ++i) ray::get(ray::task<add>.remote(i, i)).get();
}

}  // namespace

TEST_CASE("a put object may hold refs, and getting it gives refs to the same objects") {
  ray::runtime rt({.num_workers = 1});
  auto a = ray::put(1), b = ray::put(2);
  auto outer = ray::put(std::vector<ray::object_ref<int>>{a, b});
  std::vector<ray::object_ref<int>> inner = ray::get(outer);
  REQUIRE(inner.size() == 2);
  CHECK(inner[0] == a);
  CHECK(inner[1] == b);
  CHECK(ray::get(inner[1]).get() == 2);
}

TEST_CASE("an object held only by a ref inside another object lives as long as that object") {
  ray::runtime rt({.num_workers = 1, .object_store_bytes = 64 << 20});
  const auto free0 = rt.object_store_free_bytes();
  {
    ray::object_ref<shard_index> ix;
    {
      auto shard = ray::put(block_of(1 << 20));  // 8 MiB
      ix = ray::put(shard_index{"one", {shard}});
    }
    CHECK(rt.object_store_free_bytes() < free0 - (8 << 20) + 4096);  // still held by `ix`
    shard_index got = ray::get(ix);
    CHECK(got.name == "one");
    CHECK(ray::get(got.shards.at(0)).get().size() == (1u << 20));
  }
  CHECK(rt.object_store_free_bytes() == free0);
}

TEST_CASE("a task returning a ref gives a ref to that ref, which gets the value") {
  ray::runtime rt({.num_workers = 2, .object_store_bytes = 64 << 20});
  const auto free0 = rt.object_store_free_bytes();
  {
    ray::object_ref<ray::object_ref<std::vector<double>>> outer =
        ray::task<make_shard>.remote(1 << 20);
    ray::object_ref<std::vector<double>> inner = ray::get(outer);
    CHECK(ray::get(inner).get().size() == (1u << 20));
    // The worker that made it let go; the driver's refs keep it.
    flush_releases();
    CHECK(ray::get(inner).get().front() == 1.0);
  }
  flush_releases();
  CHECK(rt.object_store_free_bytes() == free0);
}

TEST_CASE("a task returns the refs of many objects it put, and each gets its value") {
  ray::runtime rt({.num_workers = 2});
  std::vector<ray::object_ref<int>> refs = ray::get(ray::task<put_many>.remote(1000));
  REQUIRE(refs.size() == 1000);
  std::vector<int> values = ray::get(refs);
  for (int i = 0; i < 1000; ++i) CHECK(values[static_cast<std::size_t>(i)] == i);
}

TEST_CASE("an object_ref parameter receives the ref itself, without waiting for its object") {
  ray::runtime rt({.num_workers = 2});
  auto ready = ray::put(41);
  CHECK(ray::get(ray::task<get_through>.remote(ready)).get() == 42);
  // A ref whose call cannot finish until the callee has returned: it is not held back.
  const std::string flag = "/tmp/coray-test-refs-" + std::to_string(getpid());
  auto pending = ray::task<wait_until_file>.remote(flag);
  CHECK(ray::get(ray::task<holds_ref>.remote(pending)).get());
  CHECK_FALSE(pending.is_ready());
  std::fclose(std::fopen(flag.c_str(), "w"));
  CHECK(ray::get(ray::task<get_through>.remote(pending)).get() == 8);
  std::remove(flag.c_str());
}

TEST_CASE("refs inside call arguments keep their objects alive while the call runs") {
  ray::runtime rt({.num_workers = 2, .object_store_bytes = 64 << 20});
  const auto free0 = rt.object_store_free_bytes();
  {
    ray::object_ref<double> total;
    {
      std::vector<ray::object_ref<std::vector<double>>> refs;
      for (int i = 0; i < 3; ++i) refs.push_back(ray::put(block_of(1 << 18)));
      total = ray::task<sum_all>.remote(std::move(refs));
    }  // the driver's handles are gone; the call holds the objects
    CHECK(ray::get(total).get() == 3.0 * (1 << 18));
  }
  flush_releases();
  CHECK(rt.object_store_free_bytes() == free0);
}

TEST_CASE("a tree of refs three levels deep frees the store exactly once every handle is gone") {
  ray::runtime rt({.num_workers = 2, .object_store_bytes = 64 << 20});
  const auto free0 = rt.object_store_free_bytes();
  {
    // Level 0 (the driver) holds a ref to level 1's result: a ref to level 2's index,
    // which holds refs to the leaves.
    ray::object_ref<ray::object_ref<shard_index>> root = ray::task<make_tree>.remote(3, 1 << 18);
    ray::object_ref<shard_index> mid = ray::get(root);
    shard_index ix = ray::get(mid);
    REQUIRE(ix.shards.size() == 3);
    CHECK(ray::get(ray::task<sum_all>.remote(ix.shards)).get() == 3.0 * (1 << 18));
    flush_releases();
    CHECK(rt.object_store_free_bytes() < free0 - 3 * (2 << 20));  // the leaves are alive
    root = {};
    mid = {};
    flush_releases();
    CHECK(rt.object_store_free_bytes() < free0 - 3 * (2 << 20));  // `ix` still holds them
  }
  flush_releases();
  CHECK(rt.object_store_free_bytes() == free0);
}

TEST_CASE("a worker killed while it borrows a ref leaks nothing") {
  ray::runtime rt({.num_workers = 2, .object_store_bytes = 64 << 20});
  const auto free0 = rt.object_store_free_bytes();
  {
    auto big = ray::put(block_of(1 << 20));
    auto r = ray::task<die_holding>.options({.max_retries = 0}).remote(big);
    CHECK_THROWS_AS(ray::get(r).get(), ray::worker_crashed);
  }
  flush_releases();
  CHECK(rt.object_store_free_bytes() == free0);
}

TEST_CASE("an actor keeps refs it was given, and returns them") {
  ray::runtime rt({.num_workers = 1});
  auto k = ray::spawn<keeper>();
  k.call<&keeper::keep>(ray::put(5));
  k.call<&keeper::keep>(ray::task<add>.remote(3, 4));
  CHECK(ray::get(k.call<&keeper::total>()).get() == 12);
  std::vector<ray::object_ref<int>> back = ray::get(k.call<&keeper::all>());
  REQUIRE(back.size() == 2);
  CHECK(ray::get(back[0]).get() == 5);
  CHECK(ray::get(back[1]).get() == 7);
}

TEST_CASE("a ref decoded from bytes the runtime never wrote is a codec_error") {
  ray::runtime rt({.num_workers = 1});
  std::vector<std::uint8_t> forged(8, 0x5a);
  std::vector<std::byte> bytes(8);
  std::memcpy(bytes.data(), forged.data(), 8);
  CHECK_THROWS_AS(ray::decode<ray::object_ref<int>>(bytes), ray::codec_error);
  CHECK_THROWS_AS(ray::get(ray::task<get_forged>.remote(forged)).get(), ray::codec_error);
}

TEST_CASE("a ref encoded outside a put, a call or a result is refused with usage_error") {
  ray::runtime rt({.num_workers = 1});
  CHECK_THROWS_AS(ray::encode(ray::put(1)), ray::usage_error);
}

TEST_CASE("another thread of the driver puts and gets objects holding refs") {
  ray::runtime rt({.num_workers = 1});
  auto a = ray::put(3);
  std::atomic<bool> done{false};
  int got = 0;
  std::string error;
  std::thread t([&] {
    try {
      auto outer = ray::put(std::vector<ray::object_ref<int>>{a, ray::task<add>.remote(2, 2)});
      std::vector<ray::object_ref<int>> inner = ray::get(outer);
      got = ray::get(inner[0]).get() + ray::get(inner[1]).get();
    } catch (const std::exception& e) {
      error = e.what();
    }
    done = true;
  });
  rt.serve_until([&] { return done.load(); });
  t.join();
  CHECK(error == "");
  CHECK(got == 7);
}

namespace {
struct ref_holder {
  ray::object_ref<int> kept;
  void set(ray::object_ref<int> r) { kept = std::move(r); }
  ray::object_ref<int> get() const { return kept; }
};
}  // namespace

TEST_CASE("a threaded actor's plain methods take and return refs") {
  ray::runtime rt({.num_workers = 1});
  auto h = ray::spawn<ref_holder>(ray::actor_options{.max_concurrency = 2});
  ray::get(h.call<&ref_holder::set>(ray::put(9))).get();
  ray::object_ref<int> back = ray::get(h.call<&ref_holder::get>());
  CHECK(ray::get(back).get() == 9);
}

namespace {
struct tally {
  int n = 0;
  int add(int k) { return n += k; }
};
// A worker puts an object holding an actor handle and returns its ref: the object, sent to
// the driver, holds the actor.
ray::object_ref<std::vector<ray::actor<tally>>> wrap_in_put(ray::actor<tally> t) {
  return ray::put(std::vector<ray::actor<tally>>{t});
}
}  // namespace

TEST_CASE("an actor handle inside an object a worker put reaches the driver and still works") {
  ray::runtime rt({.num_workers = 1});
  ray::object_ref<ray::object_ref<std::vector<ray::actor<tally>>>> outer;
  {
    auto t = ray::spawn<tally>();
    outer = ray::task<wrap_in_put>.remote(t);
  }
  flush_releases();  // the worker's and the driver's own handles are gone
  std::vector<ray::actor<tally>> got = ray::get(ray::get(outer).get());
  CHECK(ray::get(got.at(0).call<&tally::add>(3)).get() == 3);
}

namespace {

ray::returns<int, std::string> split_number(int x) { return {x / 2, std::to_string(x)}; }

ray::returns<std::vector<double>, std::vector<double>> two_blocks(int n) {
  return {block_of(n), block_of(n)};
}

ray::returns<int, int> fails_before_returning(int) { throw std::invalid_argument("no halves"); }

// A coroutine task may return several results too.
ray::async<ray::returns<int, int>> plus_minus(int x) {
  const int doubled = co_await ray::get(ray::task<add>.remote(x, x));
  co_return ray::returns<int, int>{doubled, -doubled};
}

// A task that calls one with several results and combines them.
int nested_split(int x) {
  auto [half, text] = ray::task<split_number>.remote(x);
  return ray::get(half).get() + static_cast<int>(ray::get(text).get().size());
}

struct range_stats {
  ray::returns<int, int> min_max(std::vector<int> v) const {
    return {*std::min_element(v.begin(), v.end()), *std::max_element(v.begin(), v.end())};
  }
};

}  // namespace

TEST_CASE("a function returning ray::returns gives a ref per result, each usable on its own") {
  ray::runtime rt({.num_workers = 2});
  auto [half, text] = ray::task<split_number>.remote(42);
  static_assert(std::is_same_v<decltype(half), ray::object_ref<int>>);
  static_assert(std::is_same_v<decltype(text), ray::object_ref<std::string>>);
  // A result is a dependency like any ref: the next call waits for it alone.
  CHECK(ray::get(ray::task<add>.remote(half, 1)).get() == 22);
  CHECK(ray::get(text).get() == "42");
  const auto ready = ray::wait(std::vector<ray::object_ref<int>>{half}, {.num_returns = 1}).get();
  CHECK(ready.ready.size() == 1);
}

TEST_CASE("each of a call's results is freed on its own") {
  ray::runtime rt({.num_workers = 1, .object_store_bytes = 64 << 20});
  const auto free0 = rt.object_store_free_bytes();
  {
    auto [first, second] = ray::task<two_blocks>.remote(1 << 20);  // 8 MiB each
    CHECK(ray::get(first).get().size() == (1u << 20));
    CHECK(ray::get(second).get().size() == (1u << 20));
    flush_releases();
    const auto both = rt.object_store_free_bytes();
    CHECK(both < free0 - (16 << 20) + 8192);
    first = {};
    flush_releases();
    CHECK(rt.object_store_free_bytes() >= both + (8 << 20));  // `second` keeps only its own
    CHECK(rt.object_store_free_bytes() < free0 - (8 << 20) + 8192);
    CHECK(ray::get(second).get().back() == 1.0);
  }
  flush_releases();
  CHECK(rt.object_store_free_bytes() == free0);
}

TEST_CASE("a call with several results that fails fails every result with its error") {
  ray::runtime rt({.num_workers = 1});
  auto [a, b] = ray::task<fails_before_returning>.options({.max_retries = 0}).remote(1);
  CHECK_THROWS_WITH_AS(ray::get(a).get(), doctest::Contains("no halves"), ray::task_error);
  CHECK_THROWS_WITH_AS(ray::get(b).get(), doctest::Contains("no halves"), ray::task_error);
}

TEST_CASE("a task calls a function with several results, and an actor method returns several") {
  ray::runtime rt({.num_workers = 2});
  CHECK(ray::get(ray::task<nested_split>.remote(42)).get() == 21 + 2);
  auto [plus, minus] = ray::task<plus_minus>.remote(5);
  CHECK(ray::get(plus).get() == 10);
  CHECK(ray::get(minus).get() == -10);
  auto stats = ray::spawn<range_stats>();
  auto [lo, hi] = stats.call<&range_stats::min_max>(std::vector<int>{4, -2, 9, 3});
  CHECK(ray::get(lo).get() == -2);
  CHECK(ray::get(hi).get() == 9);
}
