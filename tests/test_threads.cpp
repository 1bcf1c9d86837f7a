// Calls from threads other than the runtime's: tasks, actors, the object store, timeouts,
// releases on another thread, and the runtime ending under a thread's feet.
#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <coray/coray.hpp>
#include <future>
#include <mutex>
#include <numeric>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;

int add_one(int x) { return x + 1; }
double sum(std::span<const double> xs) { return std::accumulate(xs.begin(), xs.end(), 0.0); }
std::vector<double> filled(int n, double v) {
  return std::vector<double>(static_cast<std::size_t>(n), v);
}
int sleepy(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}
ray::async<int> twice_plus_one(int x) {
  int y = co_await ray::get(ray::task<add_one>.remote(x));
  co_return 2 * y;
}

struct counter {
  explicit counter(int start) : n(start) {}
  int incr(int by) { return n += by; }
  int n;
};

/// What a task body's own thread gets when it tries to use the runtime.
std::string put_from_a_thread_of_a_task(int) {
  std::string message = "no error";
  std::thread t([&] {
    try {
      (void)ray::put(1);
    } catch (const ray::runtime_error& e) {
      message = e.what();
    }
  });
  t.join();
  return message;
}

/// Errors seen on other threads, checked on the test's thread (doctest asserts there).
struct thread_errors {
  std::mutex m;
  std::vector<std::string> seen;
  void add(std::string what) {
    std::lock_guard lock(m);
    seen.push_back(std::move(what));
  }
  template <class F>
  auto guard(F f) {
    return [this, f]() mutable {
      try {
        f();
      } catch (const std::exception& e) {
        add(e.what());
      }
    };
  }
};

}  // namespace

TEST_CASE("eight threads each submit 100,000 tasks and get every result while the loop submits") {
  ray::runtime rt({.num_workers = 2});
  constexpr int threads = 8, per_thread = 100'000, batch = 1'000;
  std::atomic<int> finished{0};
  std::atomic<long> wrong{0};
  thread_errors errors;
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back(errors.guard([&, t] {
      std::vector<ray::object_ref<int>> refs;
      refs.reserve(batch);
      for (int first = t * per_thread; first < (t + 1) * per_thread; first += batch) {
        refs.clear();
        for (int i = 0; i < batch; ++i) refs.push_back(ray::task<add_one>.remote(first + i));
        std::vector<int> values = ray::get(refs);
        for (int i = 0; i < batch; ++i)
          wrong += values[static_cast<std::size_t>(i)] != first + i + 1;
      }
      ++finished;
    }));
  long own_wrong = 0;
  for (int round = 0; round < 100; ++round) {
    std::vector<ray::object_ref<int>> refs;
    for (int i = 0; i < 100; ++i) refs.push_back(ray::task<add_one>.remote(-i));
    std::vector<int> values = ray::get(refs);
    for (int i = 0; i < 100; ++i) own_wrong += values[static_cast<std::size_t>(i)] != 1 - i;
  }
  rt.serve_until([&] { return finished.load() == threads; });
  for (auto& t : pool) t.join();
  MESSAGE("8 x 100,000 tasks from threads took "
          << std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::steady_clock::now() - start)
                 .count()
          << " ms");
  CHECK(errors.seen.empty());
  CHECK(wrong.load() == 0);
  CHECK(own_wrong == 0);
}

TEST_CASE("a thread puts small and large values, gets them back and passes them to tasks") {
  ray::runtime rt({.num_workers = 2});
  thread_errors errors;
  std::string small;
  std::vector<double> large_back;
  double large_sum = 0, made_sum = 0;
  std::atomic<bool> done{false};
  std::thread t(errors.guard([&] {
    auto s = ray::put(std::string("from a thread"));
    auto big = ray::put(std::vector<double>(300'000, 0.5));  // 2.4 MB: a store block
    small = ray::get(s).get();
    large_back = ray::get(big).get();
    large_sum = ray::get(ray::task<sum>.remote(big));
    std::vector<double> made = ray::get(ray::task<filled>.remote(200'000, 2.0));  // a block back
    made_sum = std::accumulate(made.begin(), made.end(), 0.0);
    done = true;
  }));
  rt.serve_until([&] { return done.load() || !errors.seen.empty(); });
  t.join();
  CHECK(errors.seen.empty());
  CHECK(small == "from a thread");
  CHECK(large_back.size() == 300'000);
  CHECK(large_sum == doctest::Approx(150'000.0));
  CHECK(made_sum == doctest::Approx(400'000.0));
}

TEST_CASE("a thread's actor calls run in the order it made them") {
  ray::runtime rt({.num_workers = 1});
  auto c = ray::spawn<counter>(0);
  thread_errors errors;
  std::vector<int> seen;
  std::atomic<bool> done{false};
  std::thread t(errors.guard([&] {
    std::vector<ray::object_ref<int>> refs;
    for (int i = 0; i < 100; ++i) refs.push_back(c.call<&counter::incr>(1));
    seen = ray::get(refs).get();
    done = true;
  }));
  rt.serve_until([&] { return done.load() || !errors.seen.empty(); });
  t.join();
  CHECK(errors.seen.empty());
  std::vector<int> expected(100);
  std::iota(expected.begin(), expected.end(), 1);
  CHECK(seen == expected);
}

TEST_CASE("a thread spawns an actor, calls it, kills it and hands it back") {
  ray::runtime rt({.num_workers = 1});
  thread_errors errors;
  int first = 0;
  bool died = false;
  std::optional<ray::actor<counter>> kept;
  std::atomic<bool> done{false};
  std::thread t(errors.guard([&] {
    auto a = ray::spawn<counter>(10);
    first = ray::get(a.call<&counter::incr>(5));
    kept = a;  // a handle made here, held by the test's thread
    auto b = ray::spawn<counter>(ray::actor_options{.name = "spawned by a thread"}, 1);
    (void)ray::get(b.call<&counter::incr>(1)).get();
    ray::kill(b);
    try {
      (void)ray::get(b.call<&counter::incr>(1)).get();
    } catch (const ray::actor_died&) {
      died = true;
    }
    done = true;
  }));
  rt.serve_until([&] { return done.load() || !errors.seen.empty(); });
  t.join();
  CHECK(errors.seen.empty());
  CHECK(first == 15);
  CHECK(died);
  REQUIRE(kept);
  CHECK(ray::get(kept->call<&counter::incr>(1)).get() == 16);
}

TEST_CASE("a blocking get with a timeout on another thread throws get_timeout") {
  ray::runtime rt({.num_workers = 1});
  auto slow = ray::task<sleepy>.remote(2000);
  thread_errors errors;
  bool timed_out = false;
  std::size_t ready_after_wait = 99;
  std::atomic<bool> done{false};
  std::thread t(errors.guard([&] {
    try {
      (void)ray::get(slow, {.timeout = 50ms}).get();
    } catch (const ray::get_timeout&) {
      timed_out = true;
    }
    ready_after_wait = ray::wait(std::vector{slow}, {.timeout = 10ms}).get().ready.size();
    done = true;
  }));
  rt.serve_until([&] { return done.load() || !errors.seen.empty(); });
  t.join();
  CHECK(errors.seen.empty());
  CHECK(timed_out);
  CHECK(ready_after_wait == 0);
  ray::cancel(slow, {.force = true});
}

TEST_CASE("a thread cancels a call and runs a coroutine with sync_wait") {
  ray::runtime rt({.num_workers = 1});
  thread_errors errors;
  bool was_cancelled = false;
  int from_coroutine = 0;
  std::atomic<bool> done{false};
  std::thread t(errors.guard([&] {
    auto slow = ray::task<sleepy>.remote(5000);
    ray::cancel(slow, {.force = true});
    try {
      (void)ray::get(slow).get();
    } catch (const ray::cancelled&) {
      was_cancelled = true;
    }
    from_coroutine = ray::sync_wait(twice_plus_one(20));
    done = true;
  }));
  rt.serve_until([&] { return done.load() || !errors.seen.empty(); });
  t.join();
  CHECK(errors.seen.empty());
  CHECK(was_cancelled);
  CHECK(from_coroutine == 42);
}

TEST_CASE("refs made on one thread and dropped on another give the store's bytes back") {
  ray::runtime rt({.num_workers = 2});
  const std::size_t free_before = rt.object_store_free_bytes();
  thread_errors errors;
  std::promise<std::vector<ray::object_ref<std::vector<double>>>> handed;
  std::atomic<bool> dropped{false};
  std::thread maker(errors.guard([&] {
    std::vector<ray::object_ref<std::vector<double>>> refs;
    for (int i = 0; i < 4; ++i) refs.push_back(ray::put(std::vector<double>(200'000, i)));
    for (int i = 0; i < 4; ++i) refs.push_back(ray::task<filled>.remote(200'000, 1.0));
    handed.set_value(std::move(refs));
  }));
  std::thread dropper(errors.guard([&] {
    auto refs = handed.get_future().get();
    CHECK(ray::get(refs.back()).get().size() == 200'000);
    refs.clear();
    dropped = true;
  }));
  const auto limit = std::chrono::steady_clock::now() + 10s;
  rt.serve_until([&] {
    return (dropped.load() && rt.object_store_free_bytes() == free_before) ||
           std::chrono::steady_clock::now() > limit;
  });
  maker.join();
  dropper.join();
  CHECK(errors.seen.empty());
  CHECK(rt.object_store_free_bytes() == free_before);
}

TEST_CASE("a thread's calls fail with runtime_error once the runtime has ended, never hang") {
  std::optional<ray::runtime> rt(std::in_place, ray::runtime_options{.num_workers = 1});
  thread_errors errors;
  std::atomic<int> calls{0};
  std::string while_ending, after_end;
  std::atomic<bool> ended{false};
  std::thread busy(errors.guard([&] {
    try {
      for (;;) {
        (void)ray::get(ray::task<add_one>.remote(1)).get();
        ++calls;
      }
    } catch (const ray::runtime_error& e) {
      while_ending = e.what();
    }
  }));
  rt->serve_until([&] { return calls.load() >= 100 || !errors.seen.empty(); });
  rt.reset();  // the thread is mid-call
  busy.join();
  ended = true;
  std::thread late(errors.guard([&] {
    try {
      (void)ray::task<add_one>.remote(1);
    } catch (const ray::runtime_error& e) {
      after_end = e.what();
    }
  }));
  late.join();
  CHECK(errors.seen.empty());
  CHECK(while_ending.find("ended") != std::string::npos);
  CHECK(after_end == "ray::task<f>.remote: the runtime has ended");
}

TEST_CASE("what only the runtime's thread may do says so on another thread") {
  ray::runtime rt({.num_workers = 1});
  auto ref = ray::put(std::vector<double>{1, 2, 3});
  thread_errors errors;
  std::string run_error, view_error;
  std::thread t(errors.guard([&] {
    try {
      rt.run([]() -> ray::async<int> { co_return 1; }());
    } catch (const ray::runtime_error& e) {
      run_error = e.what();
    }
    try {
      (void)ray::get_view(ref).get();
    } catch (const ray::runtime_error& e) {
      view_error = e.what();
    }
  }));
  t.join();
  CHECK(errors.seen.empty());
  CHECK(run_error.find("the thread that built the runtime") != std::string::npos);
  CHECK(view_error.find("ray::get_view: must be called on the thread that runs the runtime") !=
        std::string::npos);
}

TEST_CASE("in a task's process only the thread running the task may use the runtime") {
  ray::runtime rt({.num_workers = 1});
  std::string message = ray::get(ray::task<put_from_a_thread_of_a_task>.remote(0));
  CHECK(message.find("only the thread that runs the task") != std::string::npos);
}
