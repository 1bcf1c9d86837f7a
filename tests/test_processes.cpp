// Process introspection as multiprocessing offers it: pids, liveness and exit codes of the
// task workers and actors, and the processes now running.
#include <doctest/doctest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <coray/coray.hpp>
#include <cstdlib>
#include <string>
#include <vector>

#include "serve_until.hpp"

using namespace std::chrono_literals;

namespace {

int my_pid(int) { return getpid(); }
int die(int sig) {
  raise(sig);
  return 0;
}
std::size_t workers_from_a_task() { return ray::workers().size(); }

struct service {
  int pid() const { return getpid(); }
  void quit(int code) { std::_Exit(code); }
};

bool has_pid(const std::vector<ray::process_info>& ps, int pid) {
  return std::any_of(ps.begin(), ps.end(),
                     [&](const ray::process_info& p) { return p.pid == pid; });
}

}  // namespace

TEST_CASE("workers() lists each task worker with its slot, pid and liveness") {
  ray::runtime rt({.num_workers = 2});
  ray::get(ray::task<my_pid>.remote(0)).get();
  REQUIRE(serve_until(
      [] {
        auto ws = ray::workers();
        return std::all_of(ws.begin(), ws.end(), [](auto& w) { return w.alive; });
      },
      5s));
  auto ws = ray::workers();
  REQUIRE(ws.size() == 2);
  auto pids = rt.worker_pids();
  for (std::uint32_t i = 0; i < 2; ++i) {
    CHECK(ws[i].slot == i);
    CHECK(ws[i].kind == ray::process_kind::task_worker);
    CHECK(ws[i].pid == pids[i]);
    CHECK_FALSE(ws[i].exitcode);
    CHECK(ws[i].restarts == 0);
  }
  CHECK(has_pid(ws, ray::get(ray::task<my_pid>.remote(1)).get()));
}

TEST_CASE("a worker killed by a signal is replaced, and workers() counts the restart") {
  ray::runtime rt({.num_workers = 1});
  const int before = ray::workers()[0].pid;
  CHECK_THROWS_AS(ray::get(ray::task<die>.remote(SIGKILL)).get(), ray::worker_crashed);
  REQUIRE(serve_until(
      [&] {
        auto w = ray::workers()[0];
        return w.alive && w.pid != before;
      },
      5s));
  auto w = ray::workers()[0];
  CHECK(w.restarts >= 1);  // once per death (a crashed task may be retried, dying again)
  CHECK(ray::get(ray::task<my_pid>.remote(0)).get() == w.pid);
}

TEST_CASE("active_children lists the running workers and actors") {
  ray::runtime rt({.num_workers = 1});
  auto s = ray::spawn<service>();
  const int actor_pid = ray::get(s.call<&service::pid>());
  const int worker_pid = ray::get(ray::task<my_pid>.remote(0));
  auto children = ray::active_children();
  CHECK(children.size() == 2);
  CHECK(has_pid(children, actor_pid));
  CHECK(has_pid(children, worker_pid));
  for (auto& c : children) {
    CHECK(c.alive);
    CHECK(c.kind ==
          (c.pid == actor_pid ? ray::process_kind::actor : ray::process_kind::task_worker));
  }
}

TEST_CASE("actor_process gives an actor's pid while it runs and its exit code once it ended") {
  ray::runtime rt({.num_workers = 1});
  auto killed = ray::spawn<service>();
  auto quitting = ray::spawn<service>();
  const int pid = ray::get(killed.call<&service::pid>());
  ray::get(quitting.call<&service::pid>()).get();
  auto info = ray::actor_process(killed);
  CHECK(info.pid == pid);
  CHECK(info.alive);
  CHECK(info.kind == ray::process_kind::actor);
  CHECK_FALSE(info.exitcode);

  ray::kill(killed);
  quitting.call<&service::quit>(3);
  REQUIRE(serve_until(
      [&] { return !ray::actor_process(killed).alive && !ray::actor_process(quitting).alive; },
      5s));
  CHECK(ray::actor_process(killed).exitcode == -SIGKILL);  // -N: killed by signal N
  CHECK(ray::actor_process(quitting).exitcode == 3);
  CHECK(ray::actor_process(killed).pid == pid);
  CHECK_FALSE(has_pid(ray::active_children(), pid));
}

TEST_CASE("introspection is the driver's: elsewhere it fails with a clear error") {
  ray::runtime rt({.num_workers = 1});
  CHECK_THROWS_WITH_AS(ray::get(ray::task<workers_from_a_task>.remote()).get(),
                       doctest::Contains("only available in the driver"), ray::usage_error);
}
