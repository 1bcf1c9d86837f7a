// ray::shared_value and ray::mutex: mutable values and locks in shared memory, used by every
// process, robust to a process that dies holding the lock.
#include <doctest/doctest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <coray/coray.hpp>
#include <cstdint>
#include <mutex>
#include <vector>

#include "serve_until.hpp"

using namespace std::chrono_literals;

namespace {

int bump(ray::shared_value<long> total, int n) {
  for (int i = 0; i < n; ++i) total.fetch_add(1);
  return n;
}

struct stats {
  double sum;
  std::int64_t count;
  std::int64_t max;
};
static_assert(!ray::shared_value<stats>::is_always_lock_free);

int record(ray::shared_value<stats> s, int n) {
  for (int i = 0; i < n; ++i)
    s.update([i](stats x) {
      x.sum += 1.0;
      ++x.count;
      x.max = std::max<std::int64_t>(x.max, i);
      return x;
    });
  return n;
}

int add_locked(ray::mutex lock, ray::shared_value<int> v, int n) {
  for (int i = 0; i < n; ++i) {
    std::lock_guard hold(lock);
    v.store(v.load() + 1);  // a read-modify-write made exact by the lock
  }
  return n;
}

int lock_and_die(ray::mutex lock) {
  lock.lock();
  raise(SIGKILL);
  return 0;
}

bool lock_and_tell(ray::mutex lock) {
  std::lock_guard hold(lock);
  return lock.owner_died();
}

int read_value(ray::shared_value<int> v) { return v.load(); }
int make_and_pass() {
  ray::shared_value<int> v(5);  // made in a worker, passed on from there
  v.fetch_add(1);
  return ray::get(ray::task<read_value>.remote(v));
}

struct holder {
  void take(ray::mutex lock) {
    m = lock;
    m.lock();
  }
  void give() { m.unlock(); }
  ray::mutex m;
};

struct keeper {
  void keep(ray::shared_value<int> x) { v = x; }
  int bump() { return v.fetch_add(1) + 1; }
  ray::shared_value<int> v;
};

}  // namespace

TEST_CASE("atomic increments of a shared_value from many tasks sum exactly") {
  ray::runtime rt({.num_workers = 2});
  ray::shared_value<long> total(0);
  std::vector<ray::object_ref<int>> refs;
  for (int i = 0; i < 8; ++i) refs.push_back(ray::task<bump>.remote(total, 5000));
  ray::get(refs).get();
  CHECK(total.load() == 40'000);
}

TEST_CASE("a shared_value loads, stores, exchanges and compare-exchanges like std::atomic") {
  ray::runtime rt({.num_workers = 1});
  ray::shared_value<int> v(3);
  CHECK(v.load() == 3);
  v.store(4);
  CHECK(v.exchange(5) == 4);
  int expected = 4;
  CHECK_FALSE(v.compare_exchange_strong(expected, 9));
  CHECK(expected == 5);
  CHECK(v.compare_exchange_strong(expected, 9));
  CHECK(v.update([](int x) { return x * 2; }) == 18);
  CHECK(v.fetch_sub(8) == 18);
  CHECK(v.fetch_or(0x100) == 10);
  CHECK(ray::get(ray::task<read_value>.remote(v)).get() == 0x10a);
  ray::shared_value<double> d;  // T{} by default
  CHECK(d.load() == 0.0);
  CHECK(d.fetch_add(1.5) == 0.0);
  ray::shared_value<double> same = d;  // a copy is a handle to the same value
  same.fetch_add(1.0);
  CHECK(d.load() == 2.5);
}

TEST_CASE("a struct too large for atomics is updated exactly under its own lock") {
  ray::runtime rt({.num_workers = 2});
  ray::shared_value<stats> s(stats{0.0, 0, 0});
  std::vector<ray::object_ref<int>> refs;
  for (int i = 0; i < 4; ++i) refs.push_back(ray::task<record>.remote(s, 2000));
  ray::get(refs).get();
  stats got = s.load();
  CHECK(got.count == 8000);
  CHECK(got.sum == 8000.0);
  CHECK(got.max == 1999);
}

TEST_CASE("a ray::mutex makes a read-modify-write from several processes exact") {
  ray::runtime rt({.num_workers = 2});
  ray::mutex lock;
  ray::shared_value<int> v(0);
  auto a = ray::task<add_locked>.remote(lock, v, 2000);
  auto b = ray::task<add_locked>.remote(lock, v, 2000);
  for (int i = 0; i < 1000; ++i) {  // the driver takes part too
    std::lock_guard hold(lock);
    v.store(v.load() + 1);
  }
  ray::get(a).get();
  ray::get(b).get();
  CHECK(v.load() == 5000);
}

TEST_CASE("try_lock fails and try_lock_for times out while another process holds the lock") {
  ray::runtime rt({.num_workers = 1});
  ray::mutex lock;
  auto h = ray::spawn<holder>();
  ray::get(h.call<&holder::take>(lock)).get();
  CHECK_FALSE(lock.try_lock());
  CHECK_FALSE(lock.try_lock_for(2ms));
  std::unique_lock<ray::mutex> timed(lock, std::defer_lock);
  CHECK_FALSE(timed.try_lock_until(std::chrono::system_clock::now() + 1ms));
  ray::get(h.call<&holder::give>()).get();
  CHECK(timed.try_lock_for(1s));
  CHECK_FALSE(lock.owner_died());
  timed.unlock();
  ray::mutex other;
  std::scoped_lock both(lock, other);
}

TEST_CASE("a lock holder killed with SIGKILL frees the lock, and the next locker is told") {
  ray::runtime rt({.num_workers = 2});
  ray::mutex lock;
  auto h = ray::spawn<holder>();
  ray::get(h.call<&holder::take>(lock)).get();
  ray::kill(h);
  lock.lock();  // returns once the holder's process is gone
  CHECK(lock.owner_died());
  lock.unlock();
  lock.lock();
  CHECK_FALSE(lock.owner_died());  // told once: this holder got it from a live one
  lock.unlock();

  // A task worker killed while holding it: the next locker, in another worker, is told.
  CHECK_THROWS_AS(ray::get(ray::task<lock_and_die>.remote(lock)).get(), ray::worker_crashed);
  CHECK(ray::get(ray::task<lock_and_tell>.remote(lock)).get());
  CHECK_FALSE(ray::get(ray::task<lock_and_tell>.remote(lock)).get());
}

TEST_CASE(
    "a shared value lives while any process holds it, and its memory then returns to the store") {
  ray::runtime rt({.num_workers = 1});
  CHECK(ray::get(ray::task<make_and_pass>.remote()).get() == 6);
  const std::size_t before = rt.object_store_free_bytes();
  auto k = ray::spawn<keeper>();
  {
    ray::shared_value<int> v(10);
    ray::get(k.call<&keeper::keep>(v)).get();
  }  // the driver's handle is gone; the actor still holds one
  CHECK(ray::get(k.call<&keeper::bump>()).get() == 11);
  CHECK(ray::get(k.call<&keeper::bump>()).get() == 12);
  ray::kill(k);  // its references are released on its behalf
  CHECK(serve_until([&] { return rt.object_store_free_bytes() == before; }, 5s));
}

TEST_CASE("shared values and locks travel as call arguments only") {
  ray::runtime rt({.num_workers = 1});
  ray::shared_value<int> v(1);
  ray::mutex m;
  CHECK_THROWS_WITH_AS(ray::put(v), doctest::Contains("call arguments only"), ray::runtime_error);
  CHECK_THROWS_WITH_AS(ray::put(m), doctest::Contains("call arguments only"), ray::runtime_error);
}
