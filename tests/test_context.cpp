// ray::get_runtime_context(): the job, call, actor, worker and process the code runs in.
#include <doctest/doctest.h>
#include <signal.h>
#include <unistd.h>

#include <coray/coray.hpp>
#include <cstdint>

namespace {

ray::runtime_context context_of_task(int) { return ray::get_runtime_context(); }

struct observer {
  ray::runtime_context context() { return ray::get_runtime_context(); }
  bool restarted() { return ray::was_current_actor_restarted(); }
  int crash() {
    raise(SIGKILL);
    return 0;
  }
};

}  // namespace

// The context travels back as a value: the codec encodes the struct field by field.
TEST_CASE("the driver's context says it is the driver, of a job its tasks share") {
  ray::runtime rt({.num_workers = 2});
  ray::runtime_context d = ray::get_runtime_context();
  CHECK(d.is_driver);
  CHECK(d.pid == getpid());
  const std::uint64_t driver_pid = d.job_id >> 32;
  CHECK(driver_pid == static_cast<std::uint64_t>(getpid()));
  CHECK(d.task_id == 0);
  CHECK(d.actor_id == 0);
  ray::runtime_context t1 = ray::get(ray::task<context_of_task>.remote(1));
  ray::runtime_context t2 = ray::get(ray::task<context_of_task>.remote(2));
  CHECK_FALSE(t1.is_driver);
  CHECK(t1.job_id == d.job_id);
  CHECK(t1.pid != getpid());
  CHECK(t1.worker_id < 2);
  CHECK(t1.node_id == 0);
  CHECK(t1.task_id != 0);
  CHECK(t2.task_id != t1.task_id);
  CHECK(t1.actor_id == 0);
}

TEST_CASE("an actor's context names the actor, and says when it was built again") {
  ray::runtime rt({.num_workers = 1});
  auto a = ray::spawn<observer>(ray::actor_options{.max_restarts = 1});
  ray::runtime_context c = ray::get(a.call<&observer::context>());
  CHECK_FALSE(c.is_driver);
  CHECK(c.actor_id == a.id());
  CHECK(c.worker_id >= 1);  // actors' slots follow the task workers'
  CHECK(c.pid == a.pid());
  CHECK_FALSE(c.was_restarted);
  CHECK_FALSE(ray::get(a.call<&observer::restarted>()).get());
  CHECK_THROWS_AS(ray::get(a.call<&observer::crash>()).get(), ray::actor_died);
  CHECK(ray::get(a.call<&observer::restarted>()).get());
  CHECK(ray::get(a.call<&observer::context>()).get().was_restarted);
  CHECK_FALSE(ray::was_current_actor_restarted());  // the driver is no actor
}

namespace {
struct quitter {
  int n = 0;
  int work() { return ++n; }
  int quit() {
    ray::exit_actor();
    return n;
  }
};
int exit_from_a_task(int) {
  ray::exit_actor();
  return 0;
}
}  // namespace

TEST_CASE("ray::exit_actor ends the actor after the current call, which still replies") {
  ray::runtime rt({.num_workers = 1});
  auto a = ray::spawn<quitter>(ray::actor_options{.max_restarts = 3});
  CHECK(ray::get(a.call<&quitter::work>()).get() == 1);
  auto last = a.call<&quitter::quit>();
  auto queued = a.call<&quitter::work>();
  CHECK(ray::get(last).get() == 1);
  // Not restarted, whatever max_restarts: calls after it fail, saying why.
  CHECK_THROWS_WITH_AS(ray::get(queued).get(), doctest::Contains("exit_actor"), ray::actor_died);
  CHECK_THROWS_AS(ray::get(a.call<&quitter::work>()).get(), ray::actor_died);
}

TEST_CASE("ray::exit_actor outside an actor is a usage_error") {
  ray::runtime rt({.num_workers = 1});
  CHECK_THROWS_AS(ray::exit_actor(), ray::usage_error);
  CHECK_THROWS_AS(ray::get(ray::task<exit_from_a_task>.remote(1)).get(), ray::usage_error);
}
