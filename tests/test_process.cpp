// ray::process as multiprocessing.Process: a function run in a new process of its own, with
// its exit code, signals, daemon flag and start method; current_process and parent_process
// in every kind of process of the runtime.
#include <doctest/doctest.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <coray/coray.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;

namespace {

// Set by the driver before its runtime starts: a forked process sees it (the supervisor that
// forks it was forked from the driver then), a spawned one (a new image of the program) sees 0.
int driver_mark = 0;

void store(ray::shared_value<int> out, int v) { out.store(v); }
void fail(std::string why) { throw std::invalid_argument(why); }
void wait_forever() {
  for (;;) pause();
}
void report_mark(ray::shared_value<int> out) { out.store(driver_mark); }
void exit_with(int code) { std::_Exit(code); }

void put_each(ray::queue<int> q, int n) {
  for (int i = 0; i < n; ++i) q.put(i * 10);
}
void echo_doubled(ray::connection<int> c) {
  for (;;) {
    const int x = c.recv();
    if (x < 0) return;
    c.send(2 * x);
  }
}

struct identity {
  std::string name;
  int kind = 0;
  int pid = 0;
  int parent = -1;  // -1: none
  template <class A>
  void serialize(A& ar) {
    ar(name, kind, pid, parent);
  }
};
identity who_am_i() {
  const ray::process_info me = ray::current_process();
  auto parent = ray::parent_process();
  return {me.name, static_cast<int>(me.kind), me.pid, parent ? parent->pid : -1};
}
void send_identity(ray::connection<identity> c) { c.send(who_am_i()); }

struct introspector {
  identity ask() const { return who_am_i(); }
};

// A non-daemon process the runtime's end must wait for: it marks a file after a pause.
void mark_file_later(std::string path) {
  std::this_thread::sleep_for(100ms);
  std::ofstream(path) << "done";
}

int start_from_task() {
  ray::process p(ray::target<exit_with>, 0);
  p.start();
  return 0;
}

std::string read_all(std::FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string out;
  char buf[512];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  return out;
}

}  // namespace

TEST_CASE("a process runs its target once with its arguments and exits with code 0") {
  ray::runtime rt({.num_workers = 1});
  ray::shared_value<int> out(0);
  ray::process p(ray::target<store>, out, 7);
  CHECK_FALSE(p.is_alive());
  CHECK_FALSE(p.exitcode());
  CHECK(p.pid() == 0);
  p.start();
  CHECK(p.pid() > 0);
  CHECK(p.pid() != getpid());
  p.join();
  CHECK(out.load() == 7);
  CHECK(p.exitcode() == 0);
  CHECK_FALSE(p.is_alive());
}

TEST_CASE("is_alive polled alone sees the process end (it serves the runtime)") {
  ray::runtime rt({.num_workers = 1});
  ray::process p(ray::target<exit_with>, 5);
  p.start();
  const auto give_up = std::chrono::steady_clock::now() + 30s;  // a bound, not a guess
  while (p.is_alive() && std::chrono::steady_clock::now() < give_up) {
  }
  CHECK_FALSE(p.is_alive());
  CHECK(p.exitcode() == 5);
}

TEST_CASE("processes are named Process-N in creation order unless given a name") {
  ray::runtime rt({.num_workers = 1});
  ray::shared_value<int> out(0);
  ray::process a(ray::target<store>, out, 1);
  ray::process b(ray::target<store>, out, 2);
  const int n = std::stoi(a.name().substr(std::string("Process-").size()));
  CHECK(a.name() == "Process-" + std::to_string(n));
  CHECK(b.name() == "Process-" + std::to_string(n + 1));
  b.name("writer");
  CHECK(b.name() == "writer");
}

TEST_CASE("a target that throws is reported on stderr as Python does and exits with code 1") {
  std::FILE* capture = std::tmpfile();
  REQUIRE(capture);
  std::fflush(stderr);
  const int saved = dup(STDERR_FILENO);
  dup2(fileno(capture), STDERR_FILENO);  // inherited by the supervisor and so by the process
  std::optional<int> code;
  {
    ray::runtime rt({.num_workers = 1});
    ray::process p(ray::target<fail>, std::string("no such thing"));
    p.start();
    p.join();
    code = p.exitcode();
  }
  std::fflush(stderr);
  dup2(saved, STDERR_FILENO);
  close(saved);
  const std::string err = read_all(capture);
  std::fclose(capture);
  CHECK(code == 1);
  CHECK(err.find("Process Process-") != std::string::npos);
  CHECK(err.find("Traceback (most recent call last):") != std::string::npos);
  CHECK(err.find("std::invalid_argument: no such thing") != std::string::npos);
}

TEST_CASE("a target's own exit code is the process's") {
  ray::runtime rt({.num_workers = 1});
  ray::process p(ray::target<exit_with>, 3);
  p.start();
  CHECK(p.join(std::chrono::hours::max()));  // a timeout too long for a deadline: none
  CHECK(p.exitcode() == 3);
}

TEST_CASE("join with a timeout returns while the process runs, and kill and terminate end it") {
  ray::runtime rt({.num_workers = 1});
  ray::process k(ray::target<wait_forever>);
  ray::process t(ray::target<wait_forever>);
  k.start();
  t.start();
  CHECK_FALSE(k.join(20ms));
  CHECK(k.is_alive());
  CHECK_FALSE(k.exitcode());
  k.kill();
  t.terminate();
  k.join();
  t.join();
  CHECK(k.exitcode() == -SIGKILL);
  CHECK(t.exitcode() == -SIGTERM);
  CHECK_FALSE(t.is_alive());
  k.kill();  // ended: nothing to do
}

TEST_CASE("a process uses a queue and a pipe passed as arguments") {
  ray::runtime rt({.num_workers = 1});
  ray::queue<int> q;
  ray::process producer(ray::target<put_each>, q, 3);
  auto [here, there] = ray::pipe<int>();
  ray::process echo(ray::target<echo_doubled>, there);
  producer.start();
  echo.start();
  CHECK(q.get() == 0);
  CHECK(q.get() == 10);
  CHECK(q.get() == 20);
  here.send(21);
  CHECK(here.recv() == 42);
  here.send(-1);
  producer.join();
  echo.join();
  CHECK(producer.exitcode() == 0);
  CHECK(echo.exitcode() == 0);
}

TEST_CASE("current_process and parent_process tell the driver, a process, a task and an actor") {
  ray::runtime rt({.num_workers = 1});
  const ray::process_info driver = ray::current_process();
  CHECK(driver.name == "MainProcess");
  CHECK(driver.kind == ray::process_kind::driver);
  CHECK(driver.pid == getpid());
  CHECK_FALSE(ray::parent_process());

  auto [here, there] = ray::pipe<identity>();
  ray::process p(ray::target<send_identity>, there);
  p.name("asker");
  p.start();
  const identity in_process = here.recv();
  p.join();
  CHECK(in_process.name == "asker");
  CHECK(in_process.kind == static_cast<int>(ray::process_kind::process));
  CHECK(in_process.pid == p.pid());
  CHECK(in_process.parent == getpid());

  const identity in_task = ray::get(ray::task<who_am_i>.remote()).get();
  CHECK(in_task.kind == static_cast<int>(ray::process_kind::task_worker));
  CHECK(in_task.name.starts_with("TaskWorker-"));
  CHECK(in_task.parent == getpid());

  auto a = ray::spawn<introspector>();
  const identity in_actor = ray::get(a.call<&introspector::ask>()).get();
  CHECK(in_actor.kind == static_cast<int>(ray::process_kind::actor));
  CHECK(in_actor.name.starts_with("Actor-"));
  CHECK(in_actor.parent == getpid());
}

TEST_CASE("active_children lists a running process by its name") {
  ray::runtime rt({.num_workers = 1});
  ray::process p(ray::target<wait_forever>);
  p.name("sleeper");
  p.start();
  bool listed = false;
  for (const ray::process_info& c : ray::active_children())
    if (c.pid == p.pid()) listed = c.kind == ray::process_kind::process && c.name == "sleeper";
  CHECK(listed);
  p.kill();
  p.join();
}

TEST_CASE("a context's start method is the process's, whatever the runtime's") {
  driver_mark = 42;  // before the runtime: its supervisor, which forks processes, sees it
  ray::runtime rt({.num_workers = 1});
  ray::shared_value<int> forked(0), spawned(-1), runtime_default(-1);
  auto f = ray::get_context("fork").process(ray::target<report_mark>, forked);
  auto s = ray::get_context("spawn").process(ray::target<report_mark>, spawned);
  ray::process d(ray::get_context(), ray::target<report_mark>, runtime_default);
  f.start();
  s.start();
  d.start();
  f.join();
  s.join();
  d.join();
  driver_mark = 0;
  CHECK(forked.load() == 42);
  CHECK(spawned.load() == 0);
  const char* method = std::getenv("CORAY_START_METHOD");
  CHECK(runtime_default.load() == (method && std::string(method) == "spawn" ? 0 : 42));
  CHECK(ray::get_context("spawn").start_method() == ray::start_method::spawn);
  CHECK_FALSE(ray::get_context().start_method());
}

TEST_CASE("misuse is a clear error: a bad start method, a second start, a join before start") {
  ray::runtime rt({.num_workers = 1});
  CHECK_THROWS_AS(ray::get_context("forkserver"), ray::usage_error);
  CHECK_THROWS_WITH_AS(ray::get_context("threads"),
                       doctest::Contains("no start method is named 'threads'"), ray::usage_error);
  ray::shared_value<int> out(0);
  ray::process p(ray::target<store>, out, 1);
  CHECK_THROWS_WITH_AS(p.join(), doctest::Contains("was never started"), ray::usage_error);
  CHECK_THROWS_AS(p.terminate(), ray::usage_error);
  p.start();
  CHECK_THROWS_WITH_AS(p.start(), doctest::Contains("already started"), ray::usage_error);
  p.join();
  CHECK_THROWS_AS(p.daemon(true), ray::usage_error);
  ray::process empty;
  CHECK_THROWS_AS(empty.start(), ray::usage_error);
  CHECK_THROWS_AS(empty.join(), ray::usage_error);
}

TEST_CASE("the runtime's end joins a non-daemon process and kills a daemon one") {
  const auto path = std::filesystem::temp_directory_path() /
                    ("coray_process_" + std::to_string(getpid()) + ".done");
  std::filesystem::remove(path);
  int daemon_pid = 0;
  {
    ray::runtime rt({.num_workers = 1});
    ray::process d(ray::target<wait_forever>);
    d.daemon(true);
    CHECK(d.daemon());
    d.start();
    daemon_pid = d.pid();
    ray::process(ray::target<mark_file_later>, path.string()).start();  // its handle is gone
  }
  CHECK(std::filesystem::exists(path));
  std::filesystem::remove(path);
  CHECK(::kill(daemon_pid, 0) == -1);
  CHECK(errno == ESRCH);
}

TEST_CASE("only the driver starts a process") {
  ray::runtime rt({.num_workers = 1});
  CHECK_THROWS_WITH(ray::get(ray::task<start_from_task>.remote()).get(),
                    doctest::Contains("only available in the driver"));
}
