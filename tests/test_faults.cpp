// Fault tolerance: retries, timeouts, cancellation and actor restarts, with Ray's semantics.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <coray/coray.hpp>
#include <filesystem>
#include <stdexcept>
#include <string>

namespace {

// A counter in a file shared by the driver and workers: counts attempts across processes.
struct attempt_file {
  std::string path =
      "/tmp/coray-attempts-" + std::to_string(getpid()) + "-" + std::to_string(counter++);
  attempt_file() { unlink(path.c_str()); }
  ~attempt_file() { unlink(path.c_str()); }
  static inline int counter = 0;
};

int bump(const std::string& path) {
  // Appends one byte; returns how many attempts (bytes) there were, this one included.
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  if (write(fd, "x", 1) != 1) std::abort();
  close(fd);
  return static_cast<int>(std::filesystem::file_size(path));
}

int crash_until(std::string path, int good_attempt) {
  int attempt = bump(path);
  if (attempt < good_attempt) raise(SIGKILL);
  return attempt;
}

int throw_until(std::string path, int good_attempt) {
  int attempt = bump(path);
  if (attempt < good_attempt) throw std::runtime_error("flaky");
  return attempt;
}

int throw_logic(std::string path) {
  bump(path);
  throw std::logic_error("not retried");
}

int wait_forever(int) {
  pause();
  return 0;
}

int add(int a, int b) { return a + b; }

struct fragile {
  explicit fragile(int start) : n(start) {}
  int incr(int by) { return n += by; }
  int crash() {
    raise(SIGKILL);
    return 0;
  }
  int pid() const { return getpid(); }
  int n;
};

}  // namespace

TEST_CASE(
    "a task whose worker dies is retried, up to max_retries, and the final error counts attempts") {
  ray::runtime rt({.num_workers = 2});
  attempt_file f1, f2;
  CHECK(ray::get(ray::task<crash_until>.remote(f1.path, 3)).get() == 3);  // default max_retries = 3
  try {
    ray::get(ray::task<crash_until>.options({.max_retries = 1}).remote(f2.path, 5)).get();
    FAIL("expected worker_crashed");
  } catch (const ray::worker_crashed& e) {
    CHECK(std::string(e.what()).find("attempt 2 of 2") != std::string::npos);
  }
  attempt_file f3;
  CHECK_THROWS_AS(
      ray::get(ray::task<crash_until>.options({.max_retries = 0}).remote(f3.path, 2)).get(),
      ray::worker_crashed);
}

TEST_CASE("retry_exceptions retries application errors: all, none, or those of given types") {
  ray::runtime rt({.num_workers = 2});
  attempt_file a, b, c, d;
  CHECK(ray::get(ray::task<throw_until>.options({.retry_exceptions = true}).remote(a.path, 3))
            .get() == 3);
  CHECK_THROWS_AS(ray::get(ray::task<throw_until>.remote(b.path, 3)).get(),
                  ray::task_error);  // default: not retried
  CHECK(
      ray::get(
          ray::task<throw_until>.options({.retry_exceptions = ray::retry_on<std::runtime_error>}).remote(c.path, 2))
          .get() == 2);
  try {
    ray::get(ray::task<throw_logic>.options({.max_retries = 5, .retry_exceptions = ray::retry_on<std::runtime_error>})
                 .remote(d.path))
        .get();
    FAIL("expected task_error");
  } catch (const ray::task_error& e) {
    CHECK(e.type_name() == "std::logic_error");
  }
  CHECK(std::filesystem::file_size(d.path) == 1);  // a logic_error is not in the list: one attempt
}

TEST_CASE("get with a timeout raises get_timeout, and the ref can still be gotten later") {
  ray::runtime rt({.num_workers = 1});
  const std::string flag = "/tmp/coray-timeout-" + std::to_string(getpid());
  unlink(flag.c_str());
  auto pending = ray::task<wait_forever>.remote(0);
  CHECK_THROWS_AS(ray::get(pending, {.timeout = std::chrono::milliseconds(20)}).get(),
                  ray::get_timeout);
  CHECK_THROWS_AS(rt.run([&]() -> ray::async<int> {
    co_return co_await ray::get(pending, {.timeout = std::chrono::milliseconds(20)});
  }()),
                  ray::get_timeout);
  auto ready = ray::task<add>.options({}).remote(1, 2);
  ray::cancel(pending, {.force = true});  // frees the worker for the next call
  CHECK(ray::get(ready, {.timeout = std::chrono::seconds(30)}).get() == 3);
}

TEST_CASE(
    "cancel removes a queued call, a cancelled ref raises cancelled, and force kills the running "
    "one") {
  ray::runtime rt({.num_workers = 1, .max_tasks_in_flight_per_worker = 1});
  auto running = ray::task<wait_forever>.remote(0);
  auto queued = ray::task<add>.remote(1, 1);  // waits behind `running` in the driver
  ray::cancel(queued);
  CHECK_THROWS_AS(ray::get(queued).get(), ray::cancelled);
  ray::cancel(running, {.force = true});
  CHECK_THROWS_AS(ray::get(running).get(), ray::cancelled);
  CHECK(ray::get(ray::task<add>.remote(2, 2)).get() == 4);  // the pool goes on
  auto done = ray::task<add>.remote(3, 3);
  CHECK(ray::get(done).get() == 6);
  ray::cancel(done);  // finished: keeps its value
  CHECK(ray::get(done).get() == 6);
}

TEST_CASE("an actor with max_restarts is rebuilt after a crash and its calls go on") {
  ray::runtime rt({.num_workers = 1});
  auto a = ray::spawn<fragile>(ray::actor_options{.max_restarts = 1}, 100);
  CHECK(ray::get(a.call<&fragile::incr>(1)).get() == 101);
  int pid1 = ray::get(a.call<&fragile::pid>());
  CHECK_THROWS_AS(ray::get(a.call<&fragile::crash>()).get(), ray::actor_died);
  // Rebuilt from its constructor arguments: fresh state, new process.
  CHECK(ray::get(a.call<&fragile::incr>(1)).get() == 101);
  CHECK(ray::get(a.call<&fragile::pid>()).get() != pid1);
  // The restart budget is spent: the next crash is final.
  CHECK_THROWS_AS(ray::get(a.call<&fragile::crash>()).get(), ray::actor_died);
  CHECK_THROWS_AS(ray::get(a.call<&fragile::incr>(1)).get(), ray::actor_died);
}

TEST_CASE(
    "with max_task_retries a call running when its actor died runs again on the rebuilt actor") {
  ray::runtime rt({.num_workers = 1});
  auto a = ray::spawn<fragile>(ray::actor_options{.max_restarts = -1, .max_task_retries = 2}, 0);
  auto crash = a.call<&fragile::crash>();  // crashes on each of its 3 attempts
  auto after = a.call<&fragile::incr>(5);
  CHECK_THROWS_AS(ray::get(crash).get(), ray::actor_died);
  CHECK(ray::get(after).get() == 5);
}
