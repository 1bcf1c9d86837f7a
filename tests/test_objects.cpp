// The object store: put, get, get_view, wait; reference counting and capacity.
#include <dirent.h>
#include <doctest/doctest.h>
#include <signal.h>

#include <chrono>
#include <coray/coray.hpp>
#include <cstdint>
#include <map>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

namespace {

int add(int a, int b) { return a + b; }
double sum(std::span<const double> xs) { return std::accumulate(xs.begin(), xs.end(), 0.0); }
std::size_t length(std::string_view s) { return s.size(); }

// Where the worker sees the argument: its offset in the shared segment.
std::uint64_t offset_in_segment(std::span<const double> xs) {
  return ray::detail::process::current()->seg.offset_of(xs.data());
}

std::vector<double> big_result(int n) {
  return std::vector<double>(static_cast<std::size_t>(n), 2.0);
}

ray::async<double> nested_big_sum(int n) {
  auto v = ray::task<big_result>.remote(n);
  auto s = ray::task<sum>.remote(v);
  std::vector<double> copy = co_await ray::get(v);
  co_return co_await ray::get(s) + static_cast<double>(copy.size());
}

int wait_until_flag(std::string_view path) {
  // Finishes once the driver creates `path`: lets a test hold a task pending without sleeping.
  while (access(std::string(path).c_str(), F_OK) != 0) std::this_thread::yield();
  return 7;
}

struct config {
  std::string name;
  std::map<std::string, int> weights;
  std::vector<double> xs;
};

std::size_t shm_entries() {
  std::size_t n = 0;
  if (DIR* d = opendir("/dev/shm")) {
    while (readdir(d)) ++n;
    closedir(d);
  }
  return n;
}

}  // namespace

TEST_CASE("put then get returns an equal value, for numbers, strings and nested structs") {
  ray::runtime rt({.num_workers = 1});
  CHECK(ray::get(ray::put(42)).get() == 42);
  CHECK(ray::get(ray::put(std::string("coray"))).get() == "coray");
  CHECK(ray::get(ray::put("literal")).get() == "literal");
  config c{"net", {{"a", 1}, {"b", 2}}, {1.0, 2.0}};
  config back = ray::get(ray::put(c));
  CHECK(back.name == "net");
  CHECK(back.weights == c.weights);
  CHECK(back.xs == c.xs);
}

TEST_CASE("get of several refs returns their values in order") {
  ray::runtime rt({.num_workers = 2});
  std::vector<ray::object_ref<int>> refs{ray::put(1), ray::task<add>.remote(1, 1), ray::put(3)};
  std::vector<int> all = ray::get(refs);
  CHECK(all == std::vector<int>{1, 2, 3});
  auto awaited =
      rt.run([&]() -> ray::async<std::vector<int>> { co_return co_await ray::get(refs); }());
  CHECK(awaited == all);
}

TEST_CASE("a large put lives in the shared store and is freed when the last ref goes") {
  ray::runtime rt({.num_workers = 1, .object_store_bytes = 64 << 20});
  const auto free0 = rt.object_store_free_bytes();
  {
    auto r = ray::put(std::vector<double>(1 << 20, 1.0));  // 8 MiB
    CHECK(rt.object_store_free_bytes() < free0 - (8 << 20) + 4096);
    auto copy = r;
    r = {};
    CHECK(rt.object_store_free_bytes() < free0 - (8 << 20) + 4096);  // `copy` still holds it
  }
  CHECK(rt.object_store_free_bytes() == free0);
}

TEST_CASE("a task reads a put object in place, where the driver's view of it lies") {
  ray::runtime rt({.num_workers = 2});
  auto xs = ray::put(std::vector<double>(1 << 20, 0.25));
  CHECK(ray::get(ray::task<sum>.remote(xs)).get() == (1 << 20) * 0.25);
  auto view = ray::get_view(xs).get();
  auto driver_offset =
      rt.object_store_capacity() ? ray::detail::process::current()->seg.offset_of(view.data()) : 0;
  CHECK(ray::get(ray::task<offset_in_segment>.remote(xs)).get() == driver_offset);
  auto view2 = ray::get_view(xs).get();
  CHECK(view2.data() == view.data());  // no copy: the same bytes
  CHECK(view.size() == (1u << 20));
  CHECK(view[12345] == 0.25);
}

TEST_CASE("string_view parameters and views read strings in place") {
  ray::runtime rt({.num_workers = 1, .inline_threshold = 64});
  auto s = ray::put(std::string(1000, 'x'));
  CHECK(ray::get(ray::task<length>.remote(s)).get() == 1000);
  auto v = ray::get_view(s).get();
  CHECK(*v == std::string(1000, 'x'));
}

TEST_CASE("objects made and passed between workers are freed once every process lets go") {
  ray::runtime rt({.num_workers = 2, .object_store_bytes = 64 << 20, .inline_threshold = 1024});
  const auto free0 = rt.object_store_free_bytes();
  CHECK(ray::get(ray::task<nested_big_sum>.remote(100'000)).get() == 300'000.0);
  // Releases travel as messages; a round trip through every worker flushes them.
  for (int i = 0; i < 10; ++i) ray::get(ray::task<add>.remote(i, i)).get();
  CHECK(rt.object_store_free_bytes() == free0);
}

TEST_CASE("put_buffer builds an array in the store that tasks read in place once sealed") {
  ray::runtime rt({.num_workers = 2, .object_store_bytes = 64 << 20});
  const auto free0 = rt.object_store_free_bytes();
  {
    auto buffer = ray::put_buffer<double>(1 << 20);  // 8 MiB: a block in the store
    CHECK(buffer.size() == (1u << 20));
    CHECK(rt.object_store_free_bytes() < free0 - (8 << 20) + 4096);
    std::fill(buffer.begin(), buffer.end(), 0.25);
    buffer[7] = 1.25;
    const double* where = buffer.data();
    auto image = std::move(buffer).seal();
    CHECK(ray::get(ray::task<sum>.remote(image)).get() == (1 << 20) * 0.25 + 1.0);
    auto view = ray::get_view(image).get();
    CHECK(view.data() == where);  // sealed where it was written: no copy
    CHECK(ray::get(ray::task<offset_in_segment>.remote(image)).get() ==
          ray::detail::process::current()->seg.offset_of(where));
    std::vector<double> copy = ray::get(image);
    CHECK(copy.size() == (1u << 20));
    CHECK(copy[7] == 1.25);
    CHECK_THROWS_AS((void)std::move(buffer).seal(), ray::runtime_error);  // sealed once only

    auto first = ray::put_buffer<double>(1 << 20);
    auto moved = std::move(first);  // the moved-from buffer is empty, as after seal()
    CHECK(first.size() == 0);
    CHECK(first.data() == nullptr);
    CHECK(moved.size() == (1u << 20));
    CHECK_THROWS_AS((void)std::move(first).seal(), ray::runtime_error);
    moved = ray::put_buffer<double>(16);  // the unsealed 8 MiB it held is given back

    auto small = ray::put_buffer<int>(3);  // below the inline threshold: kept in the driver
    std::iota(small.begin(), small.end(), 1);
    CHECK(ray::get(std::move(small).seal()).get() == std::vector<int>{1, 2, 3});
    CHECK(ray::get(ray::put_buffer<double>(0).seal()).get().empty());

    auto dropped = ray::put_buffer<double>(1 << 20);  // never sealed: its memory comes back
  }
  for (int i = 0; i < 4; ++i) ray::get(ray::task<add>.remote(i, i)).get();
  CHECK(rt.object_store_free_bytes() == free0);
}

TEST_CASE("a put larger than the store fails with object_store_full and the runtime goes on") {
  ray::runtime rt({.num_workers = 1, .object_store_bytes = 4 << 20});
  try {
    auto r = ray::put(std::vector<double>(1 << 20, 1.0));  // 8 MiB
    FAIL("expected object_store_full");
  } catch (const ray::object_store_full& e) {
    CHECK(e.requested() > (8u << 20));
    CHECK(e.free_bytes() < (5u << 20));
    CHECK(std::string(e.what()).find("object store full") != std::string::npos);
  }
  auto small = ray::put(std::vector<double>(1000, 1.0));
  CHECK(ray::get(ray::task<sum>.remote(small)).get() == 1000.0);
}

TEST_CASE("wait returns ready refs first and honours num_returns and timeout") {
  ray::runtime rt({.num_workers = 2});
  const std::string flag = "/tmp/coray-test-flag-" + std::to_string(getpid());
  unlink(flag.c_str());
  auto slow = ray::task<wait_until_flag>.remote(flag);
  auto fast = ray::task<add>.remote(1, 2);
  std::vector<ray::object_ref<int>> refs{slow, fast};

  ray::wait_result<int> w = ray::wait(refs, {.num_returns = 1});
  REQUIRE(w.ready.size() == 1);
  CHECK(w.ready[0] == fast);
  CHECK(w.pending.size() == 1);

  // Timeout: two are asked for, one can come.
  ray::wait_result<int> t =
      ray::wait(refs, {.num_returns = 2, .timeout = std::chrono::milliseconds(20)});
  CHECK(t.ready.size() == 1);
  CHECK(t.pending.size() == 1);
  auto [ready, pending] = rt.run([&]() -> ray::async<ray::wait_result<int>> {
    co_return co_await ray::wait(refs,
                                 {.num_returns = 2, .timeout = std::chrono::milliseconds(20)});
  }());
  CHECK(ready.size() == 1);
  CHECK(pending.size() == 1);
  auto zero =
      ray::sync_wait(ray::wait(refs, {.num_returns = 2, .timeout = std::chrono::nanoseconds(0)}));
  CHECK(zero.ready.size() == 1);

  FILE* f = fopen(flag.c_str(), "w");
  fclose(f);
  ray::wait_result<int> all = ray::wait(refs, {.num_returns = 2});
  CHECK(all.ready.size() == 2);
  CHECK(all.pending.empty());
  unlink(flag.c_str());
}

TEST_CASE("wait keeps the order given: the first ready refs, then the rest, ready or not") {
  ray::runtime rt({.num_workers = 2});
  const std::string flag = "/tmp/coray-test-order-flag-" + std::to_string(getpid());
  unlink(flag.c_str());
  auto slow0 = ray::task<wait_until_flag>.remote(flag);
  auto slow2 = ray::task<wait_until_flag>.remote(flag);
  auto put1 = ray::put(1), put3 = ray::put(3), put4 = ray::put(4);
  std::vector<ray::object_ref<int>> refs{slow0, put1, slow2, put3, put4};
  ray::wait_result<int> w = ray::wait(refs, {.num_returns = 2});
  CHECK(w.ready == std::vector<ray::object_ref<int>>{put1, put3});
  CHECK(w.pending == std::vector<ray::object_ref<int>>{slow0, slow2, put4});
  // Waiting again on what was pending: the one ready ref comes first, the slow ones stay.
  ray::wait_result<int> again = ray::wait(std::move(w.pending), {.num_returns = 1});
  CHECK(again.ready == std::vector<ray::object_ref<int>>{put4});
  CHECK(again.pending == std::vector<ray::object_ref<int>>{slow0, slow2});
  FILE* f = fopen(flag.c_str(), "w");
  fclose(f);
  ray::wait_result<int> last = ray::wait(std::move(again.pending), {.num_returns = 2});
  CHECK(last.ready == std::vector<ray::object_ref<int>>{slow0, slow2});
  CHECK(last.pending.empty());
  CHECK(ray::get(put4).get() == 4);  // the refs moved through the waits still hold their objects
  unlink(flag.c_str());
}

TEST_CASE("the wait loop handles results as they finish (seed 000)") {
  ray::runtime rt({.num_workers = 2});
  auto lst = ray::put(std::vector<double>{0.5, 1.5, 2.5, 3.5});
  std::vector<ray::object_ref<double>> futures;
  for (int i = 0; i < 4; ++i) futures.push_back(ray::task<sum>.remote(lst));
  int handled = 0;
  while (!futures.empty()) {
    auto [ready, pending] = ray::sync_wait(ray::wait(futures));
    CHECK(ray::get(ready[0]).get() == 8.0);
    futures = pending;
    ++handled;
  }
  CHECK(handled == 4);
}

TEST_CASE("the runtime names nothing in /dev/shm") {
  const auto before = shm_entries();
  {
    ray::runtime rt({.num_workers = 2});
    auto r = ray::put(std::vector<double>(1 << 18, 1.0));
    CHECK(ray::get(ray::task<sum>.remote(r)).get() == (1 << 18));
    CHECK(shm_entries() == before);
  }
  CHECK(shm_entries() == before);
}

namespace {
std::size_t total_size(std::string a, std::string b) { return a.size() + b.size(); }

ray::async<std::size_t> nested_long_call(int n) {
  // The nested call's message (two 90 KB arguments) is longer than a mailbox carries.
  co_return co_await ray::get(
      ray::task<total_size>.remote(std::string(static_cast<std::size_t>(n), 'a'),
                                   std::string(static_cast<std::size_t>(n), 'b')));
}

int hold_big_then_die(int n) {
  // Holds a large nested result (a reference in the store), then dies without letting go.
  auto v = ray::task<big_result>.remote(n);
  std::vector<double> copy = ray::get(v);
  raise(SIGKILL);
  return static_cast<int>(copy.size());
}
}  // namespace

TEST_CASE(
    "a call longer than a mailbox message travels in the store, from the driver and from a task") {
  ray::runtime rt({.num_workers = 2, .object_store_bytes = 64 << 20});
  const auto free0 = rt.object_store_free_bytes();
  const std::size_t n = 90'000;
  CHECK(ray::get(ray::task<total_size>.remote(std::string(n, 'x'), std::string(n, 'y'))).get() ==
        2 * n);
  CHECK(ray::get(ray::task<nested_long_call>.remote(static_cast<int>(n))).get() == 2 * n);
  for (int i = 0; i < 10; ++i) ray::get(ray::task<add>.remote(i, i)).get();
  CHECK(rt.object_store_free_bytes() == free0);
}

TEST_CASE("a worker killed while holding objects in the store gives them back") {
  ray::runtime rt({.num_workers = 2, .object_store_bytes = 64 << 20, .inline_threshold = 1024});
  const auto free0 = rt.object_store_free_bytes();
  CHECK_THROWS_AS(ray::get(ray::task<hold_big_then_die>.remote(100'000)).get(),
                  ray::worker_crashed);
  for (int i = 0; i < 10; ++i) ray::get(ray::task<add>.remote(i, i)).get();
  CHECK(rt.object_store_free_bytes() == free0);
}
