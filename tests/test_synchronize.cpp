// The synchronisation primitives in shared memory (ray::recursive_mutex, semaphore,
// bounded_semaphore, event, condition_variable, barrier) and raw shared memory
// (ray::shared_array, ray::shared_buffer): used from every process, and each keeps working
// for the others when a process holding or waiting on it is SIGKILLed.
#include <doctest/doctest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <coray/coray.hpp>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <numeric>
#include <vector>

#include "serve_until.hpp"

using namespace std::chrono_literals;

namespace {

/// An actor that blocks in whatever it is asked to wait on, counting itself in `waiting`
/// first so that the test knows it is there.
struct party {
  void take_twice(ray::recursive_mutex m) {
    m.lock();
    m.lock();
    held = m;
  }
  void give_twice() {
    held.unlock();
    held.unlock();
  }
  bool try_take(ray::recursive_mutex m) {
    if (!m.try_lock()) return false;
    m.unlock();
    return true;
  }
  bool acquire(ray::semaphore s, ray::shared_value<int> waiting) {
    waiting.fetch_add(1);
    return s.try_acquire_for(30s);
  }
  bool wait_event(ray::event e, ray::shared_value<int> waiting) {
    waiting.fetch_add(1);
    return e.wait_for(30s);
  }
  bool wait_flag(ray::mutex m, ray::condition_variable cv, ray::shared_value<int> flag,
                 ray::shared_value<int> waiting) {
    std::unique_lock hold(m);
    waiting.fetch_add(1);
    return cv.wait_for(hold, 30s, [&] { return flag.load() != 0; });
  }
  std::uint32_t meet(ray::barrier b) { return b.wait(); }
  std::vector<std::uint32_t> rounds(ray::barrier b, ray::shared_array<int> arrived, int n);
  ray::recursive_mutex held;
};

void lock_and_die(ray::mutex m) {
  m.lock();
  raise(SIGKILL);
}

int add_under_semaphore(ray::semaphore s, ray::shared_value<int> v, int n) {
  for (int i = 0; i < n; ++i) {
    std::lock_guard one(s);
    v.store(v.load() + 1);  // exact only if one process at a time is in here
  }
  return n;
}

void release_one(ray::semaphore s) { s.release(); }
void release_bounded(ray::bounded_semaphore s) { s.release(); }
bool wait_set(ray::event e) { return e.wait_for(30s); }

int produce(ray::mutex m, ray::condition_variable cv, ray::shared_value<int> items, int n) {
  for (int i = 0; i < n; ++i) {
    std::lock_guard hold(m);
    items.store(items.load() + 1);
    cv.notify_one();
  }
  return n;
}

/// Each round: counts itself in, meets the others, and checks that all had come in.
std::vector<std::uint32_t> meet_rounds(ray::barrier b, ray::shared_array<int> arrived, int n) {
  std::vector<std::uint32_t> indices;
  for (int r = 0; r < n; ++r) {
    std::atomic_ref<int>(arrived[static_cast<std::size_t>(r)]).fetch_add(1);
    indices.push_back(b.wait());
    if (std::atomic_ref<int>(arrived[static_cast<std::size_t>(r)]).load() != 3)
      indices.back() = 99;  // passed before every party arrived
  }
  return indices;
}

std::vector<std::uint32_t> party::rounds(ray::barrier b, ray::shared_array<int> arrived, int n) {
  return meet_rounds(b, arrived, n);
}

void fill(ray::shared_array<int> xs, std::size_t begin, std::size_t end) {
  for (std::size_t i = begin; i < end; ++i) xs[i] = static_cast<int>(i);
}

int bump_locked(ray::shared_array<long> xs, int n) {
  for (int i = 0; i < n; ++i) {
    std::lock_guard hold(xs.get_lock());
    xs[0] = xs[0] + 1;
  }
  return n;
}

void write_pattern(ray::shared_buffer b) {
  for (std::size_t i = 0; i < b.size(); ++i) b.bytes()[i] = static_cast<std::byte>(i * 7);
}

}  // namespace

TEST_CASE("a recursive_mutex is taken again by its holder and freed after as many unlocks") {
  ray::runtime rt({.num_workers = 1});
  ray::recursive_mutex m;
  auto other = ray::spawn<party>();
  m.lock();
  CHECK(m.try_lock());
  CHECK(m.try_lock_for(1ms));
  CHECK_FALSE(ray::get(other.call<&party::try_take>(m)).get());
  m.unlock();
  m.unlock();
  CHECK_FALSE(ray::get(other.call<&party::try_take>(m)).get());  // still held once
  m.unlock();
  CHECK(ray::get(other.call<&party::try_take>(m)).get());
  CHECK_FALSE(m.owner_died());
}

TEST_CASE("a recursive_mutex holder killed with SIGKILL frees it, and the next locker is told") {
  ray::runtime rt({.num_workers = 1});
  ray::recursive_mutex m;
  auto holder = ray::spawn<party>();
  ray::get(holder.call<&party::take_twice>(m)).get();
  CHECK_FALSE(m.try_lock_for(2ms));
  ray::kill(holder);
  std::unique_lock hold(m);  // comes once the holder's process is gone, its depth with it
  CHECK(m.owner_died());
  {
    std::lock_guard again(m);
    CHECK(m.owner_died());  // still the acquisition that recovered it
  }
  hold.unlock();
  auto next = ray::spawn<party>();
  CHECK(ray::get(next.call<&party::try_take>(m)).get());  // free after one unlock
  std::lock_guard fresh(m);
  CHECK_FALSE(m.owner_died());
}

TEST_CASE("a semaphore of one makes a read-modify-write from several processes exact") {
  ray::runtime rt({.num_workers = 2});
  ray::semaphore s(1);
  ray::shared_value<int> v(0);
  auto a = ray::task<add_under_semaphore>.remote(s, v, 2000);
  auto b = ray::task<add_under_semaphore>.remote(s, v, 2000);
  CHECK(add_under_semaphore(s, v, 1000) == 1000);
  ray::get(a).get();
  ray::get(b).get();
  CHECK(v.load() == 5000);
  CHECK(s.value() == 1);
}

TEST_CASE("a semaphore at zero refuses, times out, and wakes its waiter on another's release") {
  ray::runtime rt({.num_workers = 1});
  ray::semaphore s(0);
  CHECK_FALSE(s.try_acquire());
  CHECK_FALSE(s.try_acquire_for(2ms));
  CHECK_FALSE(s.try_acquire_until(std::chrono::system_clock::now() + 1ms));
  auto r = ray::task<release_one>.remote(s);
  s.acquire();  // the task's release wakes it
  ray::get(r).get();
  CHECK(s.value() == 0);
  s.release(3);
  CHECK(s.value() == 3);
  CHECK_THROWS_AS(ray::semaphore(1u << 31), ray::usage_error);
}

TEST_CASE("a bounded_semaphore refuses a release above its initial value, in any process") {
  ray::runtime rt({.num_workers = 1});
  ray::bounded_semaphore s(2);
  CHECK_THROWS_WITH_AS(s.release(), doctest::Contains("released too many times"), ray::usage_error);
  CHECK(s.value() == 2);
  s.acquire();
  s.acquire();
  ray::get(ray::task<release_bounded>.remote(s)).get();
  s.release();
  CHECK(s.value() == 2);
  CHECK_THROWS_AS(ray::get(ray::task<release_bounded>.remote(s)).get(), ray::usage_error);
  CHECK(s.value() == 2);
}

TEST_CASE("a semaphore waiter killed with SIGKILL leaves the semaphore working for the others") {
  ray::runtime rt({.num_workers = 1});
  ray::semaphore s(0);
  ray::shared_value<int> waiting(0);
  auto doomed = ray::spawn<party>();
  auto survivor = ray::spawn<party>();
  auto lost = doomed.call<&party::acquire>(s, waiting);
  auto got = survivor.call<&party::acquire>(s, waiting);
  CHECK(serve_until([&] { return waiting.load() == 2; }, 10s));
  ray::kill(doomed);
  CHECK_THROWS_AS(ray::get(lost).get(), ray::actor_died);
  s.release();
  CHECK(ray::get(got).get());
  CHECK(s.value() == 0);
  s.release();
  CHECK(s.try_acquire());
}

TEST_CASE(
    "an event set in one process wakes the waiters of the others, and clear makes waits wait") {
  ray::runtime rt({.num_workers = 2});
  ray::event e;
  CHECK_FALSE(e.is_set());
  CHECK_FALSE(e.wait_for(2ms));
  auto a = ray::task<wait_set>.remote(e);
  auto b = ray::task<wait_set>.remote(e);
  e.set();
  CHECK(ray::get(a).get());
  CHECK(ray::get(b).get());
  CHECK(e.is_set());
  e.wait();  // set: returns at once
  e.set();   // already set: no change
  e.clear();
  CHECK_FALSE(e.is_set());
  CHECK_FALSE(e.wait_until(std::chrono::steady_clock::now() + 1ms));
}

TEST_CASE("an event waiter killed with SIGKILL does not keep set from waking the others") {
  ray::runtime rt({.num_workers = 1});
  ray::event e;
  ray::shared_value<int> waiting(0);
  auto doomed = ray::spawn<party>();
  auto survivor = ray::spawn<party>();
  auto lost = doomed.call<&party::wait_event>(e, waiting);
  auto woken = survivor.call<&party::wait_event>(e, waiting);
  CHECK(serve_until([&] { return waiting.load() == 2; }, 10s));
  ray::kill(doomed);
  CHECK_THROWS_AS(ray::get(lost).get(), ray::actor_died);
  e.set();
  CHECK(ray::get(woken).get());
}

TEST_CASE("a condition_variable hands a producer process's updates to a waiting driver") {
  ray::runtime rt({.num_workers = 1});
  ray::mutex m;
  ray::condition_variable cv;
  ray::shared_value<int> items(0);
  {
    std::unique_lock hold(m);
    CHECK(cv.wait_for(hold, 2ms) == std::cv_status::timeout);
    CHECK_FALSE(cv.wait_for(hold, 2ms, [&] { return items.load() > 0; }));
    CHECK(hold.owns_lock());
  }
  auto done = ray::task<produce>.remote(m, cv, items, 500);
  std::unique_lock hold(m);
  cv.wait(hold, [&] { return items.load() == 500; });  // each notify under the lock wakes it
  CHECK(hold.owns_lock());
  hold.unlock();
  CHECK(ray::get(done).get() == 500);
  hold.lock();
  CHECK(cv.wait_until(hold, std::chrono::system_clock::now() + 1h,
                      [&] { return items.load() == 500; }));
  std::unique_lock<ray::mutex> unheld(m, std::defer_lock);
  CHECK_THROWS_AS(cv.wait(unheld), ray::usage_error);
}

TEST_CASE(
    "a condition waiter killed with SIGKILL does not keep notify_all from waking the others") {
  ray::runtime rt({.num_workers = 1});
  ray::mutex m;
  ray::condition_variable cv;
  ray::shared_value<int> flag(0), waiting(0);
  auto doomed = ray::spawn<party>();
  auto survivor = ray::spawn<party>();
  auto lost = doomed.call<&party::wait_flag>(m, cv, flag, waiting);
  auto woken = survivor.call<&party::wait_flag>(m, cv, flag, waiting);
  CHECK(serve_until([&] { return waiting.load() == 2; }, 10s));
  // Each counts itself under the lock and lets it go only by waiting: once the driver has
  // held the lock too, both wait, and the doomed one dies without it.
  { std::lock_guard both_waiting(m); }
  ray::kill(doomed);
  CHECK_THROWS_AS(ray::get(lost).get(), ray::actor_died);
  {
    std::lock_guard hold(m);
    flag.store(1);
  }
  cv.notify_all();
  CHECK(ray::get(woken).get());
}

TEST_CASE("a condition wait whose notifier died holding the lock ends with ray::peer_died") {
  ray::runtime rt({.num_workers = 1});
  ray::mutex m;
  ray::condition_variable cv;
  std::unique_lock hold(m);
  // The task takes the lock once the wait lets it go, then dies before any notify.
  auto notifier = ray::task<lock_and_die>.remote(m);
  CHECK_THROWS_AS(cv.wait(hold, [] { return false; }), ray::peer_died);
  CHECK(hold.owns_lock());  // the wait ends holding the lock, as std's do
  CHECK(m.owner_died());
  hold.unlock();
  CHECK_THROWS_AS(ray::get(notifier).get(), ray::worker_crashed);
  hold.lock();  // the condition still works
  CHECK(cv.wait_for(hold, 1ms) == std::cv_status::timeout);
}

TEST_CASE("a barrier lets three processes through together, round after round") {
  ray::runtime rt({.num_workers = 1});
  const int n = 50;
  ray::barrier b(3);
  CHECK(b.parties() == 3);
  ray::shared_array<int> arrived(static_cast<std::size_t>(n), false);
  auto x = ray::spawn<party>();
  auto y = ray::spawn<party>();
  auto ix = x.call<&party::rounds>(b, arrived, n);
  auto iy = y.call<&party::rounds>(b, arrived, n);
  std::vector<std::uint32_t> mine = meet_rounds(b, arrived, n);
  std::vector<std::uint32_t> xs = ray::get(ix).get(), ys = ray::get(iy).get();
  for (int r = 0; r < n; ++r) {
    std::vector<std::uint32_t> round{mine[r], xs[r], ys[r]};
    std::sort(round.begin(), round.end());
    CHECK(round == std::vector<std::uint32_t>{0, 1, 2});  // one index each; none passed early
  }
  CHECK(b.n_waiting() == 0);
  CHECK_FALSE(b.broken());
}

TEST_CASE("a barrier breaks on a timeout or abort, for every party, until reset") {
  ray::runtime rt({.num_workers = 1});
  ray::barrier b(2);
  CHECK_THROWS_AS(b.wait_for(2ms), ray::broken_barrier);  // as Python's: the timeout breaks it
  CHECK(b.broken());
  CHECK_THROWS_AS(b.wait(), ray::broken_barrier);
  b.reset();
  CHECK_FALSE(b.broken());
  auto other = ray::spawn<party>();
  auto met = other.call<&party::meet>(b);
  const std::uint32_t mine = b.wait();
  CHECK(mine + ray::get(met).get() == 1);  // indices 0 and 1

  auto pending = other.call<&party::meet>(b);
  CHECK(serve_until([&] { return b.n_waiting() == 1; }, 10s));
  b.abort();
  CHECK_THROWS_AS(ray::get(pending).get(), ray::broken_barrier);  // its type crosses processes
  b.reset();
  auto again = other.call<&party::meet>(b);
  CHECK(b.wait_for(10s) + ray::get(again).get() == 1);
  CHECK_THROWS_AS(ray::barrier(0), ray::usage_error);
  CHECK_THROWS_AS(ray::barrier().wait(), ray::usage_error);
}

TEST_CASE("a barrier party killed with SIGKILL while waiting breaks the barrier for the others") {
  ray::runtime rt({.num_workers = 1});
  ray::barrier b(3);
  auto doomed = ray::spawn<party>();
  auto survivor = ray::spawn<party>();
  auto lost = doomed.call<&party::meet>(b);
  auto broken = survivor.call<&party::meet>(b);
  CHECK(serve_until([&] { return b.n_waiting() == 2; }, 10s));
  ray::kill(doomed);
  CHECK_THROWS_AS(ray::get(lost).get(), ray::actor_died);
  CHECK_THROWS_AS(ray::get(broken).get(), ray::broken_barrier);  // the survivor saw it die
  CHECK(b.broken());
  CHECK_THROWS_AS(b.wait(), ray::broken_barrier);

  // The last party to arrive finds the dead one among the waiters: no round passes with it.
  ray::barrier pair(2);
  auto doomed2 = ray::spawn<party>();
  auto lost2 = doomed2.call<&party::meet>(pair);
  CHECK(serve_until([&] { return pair.n_waiting() == 1; }, 10s));
  ray::kill(doomed2);
  CHECK_THROWS_AS(ray::get(lost2).get(), ray::actor_died);
  CHECK_THROWS_WITH_AS(pair.wait(), doctest::Contains("died"), ray::broken_barrier);
}

TEST_CASE("a shared_array is written in place by tasks and read by the driver") {
  ray::runtime rt({.num_workers = 2});
  ray::shared_array<int> xs(1000);
  CHECK(xs.size() == 1000);
  CHECK(std::all_of(xs.begin(), xs.end(), [](int x) { return x == 0; }));
  auto a = ray::task<fill>.remote(xs, std::size_t{0}, std::size_t{500});
  auto b = ray::task<fill>.remote(xs, std::size_t{500}, std::size_t{1000});
  ray::get(a).get();
  ray::get(b).get();
  CHECK(std::accumulate(xs.begin(), xs.end(), 0L) == 999L * 1000 / 2);

  ray::shared_array<long> counter{0L};
  auto c = ray::task<bump_locked>.remote(counter, 3000);
  auto d = ray::task<bump_locked>.remote(counter, 3000);
  ray::get(c).get();
  ray::get(d).get();
  CHECK(counter[0] == 6000);  // exact under the array's lock

  std::vector<double> init{1.5, 2.5};
  ray::shared_array<double> ys(std::span<const double>(init), false);
  CHECK_FALSE(ys.has_lock());
  CHECK_THROWS_AS(ys.get_lock(), ray::usage_error);
  CHECK(ys.span()[1] == 2.5);
  ray::shared_array<int> none(0);
  CHECK(none.empty());
}

TEST_CASE(
    "a shared_buffer's bytes written by a task are read by the driver, and its memory returns") {
  ray::runtime rt({.num_workers = 1});
  CHECK_THROWS_AS(ray::shared_buffer(0), ray::usage_error);
  const std::size_t before = rt.object_store_free_bytes();
  {
    ray::shared_buffer b(4096);
    CHECK(b.size() == 4096);
    CHECK(b.bytes()[100] == std::byte{0});
    ray::get(ray::task<write_pattern>.remote(b)).get();
    bool same = true;
    for (std::size_t i = 0; i < b.size(); ++i)
      same &= b.bytes()[i] == static_cast<std::byte>(i * 7);
    CHECK(same);
    CHECK(b.as<std::uint32_t>().size() == 1024);
    CHECK_THROWS_WITH_AS(ray::put(b), doctest::Contains("call arguments only"), ray::usage_error);
  }
  CHECK(serve_until([&] { return rt.object_store_free_bytes() == before; }, 5s));
}
