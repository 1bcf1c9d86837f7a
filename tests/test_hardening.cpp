// Hardening (issue 18): the runtime's processes keep working whatever the program around them
// did to its signals and file descriptors, and keep to themselves what is theirs.
#include <doctest/doctest.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <coray/coray.hpp>
#include <coray/detail/runtime/supervisor_link.hpp>
#include <coray/detail/runtime/system.hpp>
#include <coray/detail/sanitizers.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "serve_until.hpp"

namespace {

using namespace std::chrono_literals;

/// A bound on any one call here: long enough for a loaded machine, short of CTest's limit.
constexpr auto call_limit = std::chrono::seconds(20);

int add(int a, int b) { return a + b; }

/// The field `name` (with its colon) of /proc/<proc>/status, in kB: `proc` is "self" or a pid.
std::optional<std::int64_t> status_kib(const std::string& proc, std::string_view name) {
  std::ifstream status("/proc/" + proc + "/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind(name, 0) == 0) return std::stoll(line.substr(name.size()));
  return std::nullopt;
}

int die(int) {
  raise(SIGKILL);
  return 0;
}

/// With CORAY_TEST_DIE_AT_START set, this program's workers die before they serve, as
/// workers do when a fork is refused under `ulimit -u` or when code before the runtime exits
/// (spawn). A spawned worker re-runs the program: it ends here, before main. A forked one
/// is forked by the supervisor (named coray-super): it ends in a fork handler.
bool told_to_die_at_start() { return std::getenv("CORAY_TEST_DIE_AT_START") != nullptr; }
[[maybe_unused]] const bool die_at_start_hooks = [] {
  if (told_to_die_at_start() && std::getenv("CORAY_WORKER")) _exit(3);
  pthread_atfork(nullptr, nullptr, [] {
    char name[17] = {};
    prctl(PR_GET_NAME, name);
    if (told_to_die_at_start() && std::string_view(name) == "coray-super") _exit(3);
  });
  return true;
}();

int child(int x) { return x; }

/// A plain task that blocks in ray::get on each of its four children.
int blocking_parent(int k) {
  std::vector<ray::object_ref<int>> kids;
  for (int i = 0; i < 4; ++i) kids.push_back(ray::task<child>.remote(4 * k + i));
  int sum = 0;
  for (auto& kid : kids) sum += ray::get(kid).get();
  return sum;
}

/// Fibonacci with a task per call, each blocking in ray::get on its two children.
int fib(int n) {
  if (n < 2) return n;
  auto a = ray::task<fib>.remote(n - 1);
  auto b = ray::task<fib>.remote(n - 2);
  return ray::get(a).get() + ray::get(b).get();
}

/// Sets a signal's disposition for one scope, as a program may before it starts the runtime.
struct signal_disposition {
  signal_disposition(int sig, void (*handler)(int)) : sig_(sig) {
    struct sigaction sa {};
    sa.sa_handler = handler;
    sigaction(sig_, &sa, &old_);
  }
  ~signal_disposition() { sigaction(sig_, &old_, nullptr); }
  int sig_;
  struct sigaction old_ {};
};

}  // namespace

TEST_CASE("a program that ignores SIGCHLD still learns that a worker crashed") {
  signal_disposition daemon_idiom(SIGCHLD, SIG_IGN);
  ray::runtime rt({.num_workers = 1});
  CHECK_THROWS_AS(
      ray::get(ray::task<die>.options({.max_retries = 0}).remote(0), {.timeout = call_limit}).get(),
      ray::worker_crashed);
  CHECK(ray::get(ray::task<add>.remote(1, 2), {.timeout = call_limit}).get() == 3);  // replaced
}

namespace {

int own_pid(int) { return getpid(); }

struct keeper {
  int pid() const { return getpid(); }
};

/// The parent of `pid`, from /proc/<pid>/stat (after the command name, which may hold spaces).
int parent_of(int pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::istringstream rest(stat.substr(stat.rfind(')') + 1));
  char state = 0;
  int ppid = 0;
  rest >> state >> ppid;
  return ppid;
}

}  // namespace

TEST_CASE("Ctrl-C leaves the runtime's processes running: SIGINT is the driver's to handle") {
  ray::runtime rt({.num_workers = 1});
  auto a = ray::spawn<keeper>();
  const int worker = ray::get(ray::task<own_pid>.remote(0), {.timeout = call_limit});
  const int actor = ray::get(a.call<&keeper::pid>(), {.timeout = call_limit});
  const int supervisor = parent_of(worker);
  REQUIRE(supervisor == parent_of(actor));
  REQUIRE(supervisor != getpid());
  // What a terminal's Ctrl-C sends to every process of the program's group, the driver aside.
  for (int pid : {supervisor, worker, actor}) REQUIRE(kill(pid, SIGINT) == 0);
  CHECK(ray::get(ray::task<own_pid>.remote(0), {.timeout = call_limit}).get() == worker);
  CHECK(ray::get(a.call<&keeper::pid>(), {.timeout = call_limit}).get() == actor);
}

namespace {

/// What a task's child program has open, as `ls -l /proc/self/fd` shows it from a shell.
std::string files_open_in_a_program_a_task_runs(int) {
  std::string listing;
  FILE* p = popen("ls -l /proc/self/fd/", "r");
  if (!p) return "popen failed";
  char line[512];
  while (std::fgets(line, sizeof line, p)) listing += line;
  pclose(p);
  return listing;
}

}  // namespace

TEST_CASE("a program a task runs cannot reach the runtime's memory") {
  ray::runtime rt({.num_workers = 1});
  const std::string listing =
      ray::get(ray::task<files_open_in_a_program_a_task_runs>.remote(0), {.timeout = call_limit})
          .get();
  REQUIRE(listing.find(" 0 -> ") != std::string::npos);  // the listing is of a program's fds
  CHECK_MESSAGE(listing.find("memfd:") == std::string::npos, listing);
}

TEST_CASE("a pipe the program closes reaches end of file while the runtime runs") {
  int fds[2];
  REQUIRE(pipe(fds) == 0);  // inheritable, as a program's own pipes and sockets often are
  ray::runtime rt({.num_workers = 2});
  auto a = ray::spawn<keeper>();
  // Every kind of process is running: the supervisor, task workers and an actor.
  CHECK(ray::get(ray::task<add>.remote(1, 1), {.timeout = call_limit}).get() == 2);
  CHECK(ray::get(a.call<&keeper::pid>(), {.timeout = call_limit}).get() > 0);
  close(fds[1]);
  pollfd p{fds[0], POLLIN, 0};
  REQUIRE(poll(&p, 1, static_cast<int>(std::chrono::milliseconds(call_limit).count())) == 1);
  char c;
  CHECK(read(fds[0], &c, 1) == 0);
  close(fds[0]);
}

TEST_CASE("an actor_pool needs at least one actor") {
  ray::runtime rt({.num_workers = 1});
  CHECK_THROWS_WITH_AS(ray::actor_pool<keeper>(std::vector<ray::actor<keeper>>{}),
                       doctest::Contains("no actors"), ray::runtime_error);
}

TEST_CASE("a process that cannot be started fails its calls with the reason") {
  // One environment string over exec's 128 KiB limit: posix_spawn of every process fails.
  setenv("CORAY_TEST_HUGE_VARIABLE", std::string(200 * 1024, 'x').c_str(), 1);
  ray::runtime rt({.num_workers = 1, .start_method = ray::start_method::spawn});
  unsetenv("CORAY_TEST_HUGE_VARIABLE");
  auto a = ray::spawn<keeper>();
  CHECK_THROWS_WITH_AS(ray::get(a.call<&keeper::pid>(), {.timeout = call_limit}).get(),
                       doctest::Contains(std::strerror(E2BIG)), ray::actor_died);
  // A refused fork reads the same; the exit code stays a shell's "cannot run".
  const int refused_fork = ray::detail::start_failure_status(EAGAIN);
  CHECK(ray::detail::describe_exit(refused_fork) ==
        std::string("could not be started: ") + std::strerror(EAGAIN));
  CHECK(ray::detail::exitcode_of(refused_fork) == 127);
}

namespace {

/// A stand-in for the supervisor: it exits once its command socket closes, as the real one does.
pid_t start_stand_in(int& command_fd) {
  int fds[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) == 0);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    close(fds[1]);
    char c;
    while (read(fds[0], &c, 1) > 0) {
    }
    _exit(0);
  }
  close(fds[0]);
  command_fd = fds[1];
  return pid;
}

}  // namespace

TEST_CASE("ending the supervisor lets it exit on its own, and reaps it") {
  int command_fd = -1;
  const pid_t pid = start_stand_in(command_fd);
  const int status = ray::detail::end_supervisor(pid, command_fd);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(waitpid(pid, nullptr, WNOHANG) == -1);  // nothing left to reap
}

TEST_CASE("ending a stopped supervisor kills it rather than waiting for ever") {
  int command_fd = -1;
  const pid_t pid = start_stand_in(command_fd);
  REQUIRE(kill(pid, SIGSTOP) == 0);
  int stopped = 0;
  REQUIRE(waitpid(pid, &stopped, WUNTRACED) == pid);
  REQUIRE(WIFSTOPPED(stopped));
  const int status = ray::detail::end_supervisor(pid, command_fd, 50ms);
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);
  CHECK(waitpid(pid, nullptr, WNOHANG) == -1);
}

TEST_CASE("destroying a runtime whose supervisor is stopped returns") {
  const pid_t program = fork();
  REQUIRE(program >= 0);
  if (program == 0) {
    {
      ray::runtime rt({.num_workers = 1});
      const int worker = ray::get(ray::task<own_pid>.remote(0), {.timeout = call_limit});
      if (kill(parent_of(worker), SIGSTOP) != 0) _exit(2);
    }
    _exit(0);
  }
  int status = 0;
  const bool ended = ray::detail::reaped_within(program, call_limit, status);
  if (!ended) {
    kill(program, SIGKILL);
    waitpid(program, &status, 0);
  }
  CHECK(ended);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

namespace {

struct sized {
  explicit sized(std::vector<char> v) : n_(v.size()) {}
  std::size_t size() const { return n_; }
  std::size_t n_;
};

}  // namespace

TEST_CASE("a spawn the object store refuses gives its actor slot back") {
  ray::runtime rt({.num_workers = 1, .object_store_bytes = 1 << 20, .max_actors = 2});
  // A constructor argument the store takes, leaving too little for the actor's mailboxes
  // (two of 256 KiB): room for the first, not the second.
  const std::size_t argument = rt.object_store_free_bytes() - (384 << 10);
  for (int i = 0; i < 3; ++i)
    CHECK_THROWS_AS((void)ray::spawn<sized>(std::vector<char>(argument)), ray::object_store_full);
  auto a = ray::spawn<sized>(std::vector<char>(10));
  CHECK(ray::get(a.call<&sized::size>(), {.timeout = call_limit}).get() == 10);
}

TEST_CASE("a spawn refused for a taken name or a full actor table keeps none of its arguments") {
  ray::runtime rt({.num_workers = 1, .max_actors = 1});
  auto one = ray::spawn<sized>(ray::actor_options{.name = "one"}, std::vector<char>(10));
  CHECK(ray::get(one.call<&sized::size>(), {.timeout = call_limit}).get() == 10);
  const std::size_t free0 = rt.object_store_free_bytes();
  const std::vector<char> big(1 << 20);  // its bytes go to a store block
  CHECK_THROWS_AS((void)ray::spawn<sized>(ray::actor_options{.name = "one"}, big),
                  ray::usage_error);
  CHECK(rt.object_store_free_bytes() == free0);
  CHECK_THROWS_AS((void)ray::spawn<sized>(big), ray::runtime_error);  // no slot left
  CHECK(rt.object_store_free_bytes() == free0);
}

namespace {

int echo(int v) { return v; }

struct holder {
  explicit holder(int v) : v_(v) {}
  int plus(int v) const { return v + v_; }
  int v_;
};

}  // namespace

TEST_CASE("an empty object_ref as a call argument is a usage_error, not a crash") {
  ray::runtime rt({.num_workers = 1});
  const ray::object_ref<int> empty;
  CHECK_THROWS_AS((void)ray::task<echo>.remote(empty), ray::usage_error);
  auto a = ray::spawn<holder>(1);
  CHECK_THROWS_AS((void)a.call<&holder::plus>(empty), ray::usage_error);
  CHECK_THROWS_AS((void)ray::spawn<holder>(empty), ray::usage_error);
  // The runtime carries on.
  CHECK(ray::get(ray::task<echo>.remote(7), {.timeout = call_limit}).get() == 7);
  CHECK(ray::get(a.call<&holder::plus>(7), {.timeout = call_limit}).get() == 8);
}

TEST_CASE("waiting on an empty object_ref is a usage_error") {
  ray::runtime rt({.num_workers = 1});
  std::vector<ray::object_ref<int>> refs{ray::task<echo>.remote(1), ray::object_ref<int>{}};
  CHECK_THROWS_AS((void)ray::wait(refs, {.num_returns = 1}).get(), ray::usage_error);
}

namespace {

/// Blocks until its process is killed: a call whose result never comes.
int never_returns(int) {
  for (;;) pause();
}

}  // namespace

TEST_CASE("a ref kept past its runtime's end is a usage_error, not a crash or a hang") {
  ray::object_ref<std::vector<double>> stored;
  ray::object_ref<int> pending;
  {
    ray::runtime rt({.num_workers = 1});
    stored = ray::put(std::vector<double>(100'000, 1.0));  // 800 KB: in the store
    pending = ray::task<never_returns>.remote(0);
  }
  {
    ray::runtime later({.num_workers = 1});
    auto now_stored = ray::put(std::vector<double>(100'000, 2.0));  // where the old one lay
    CHECK_THROWS_WITH_AS((void)ray::get(stored).get(), doctest::Contains("runtime that has ended"),
                         ray::usage_error);
    CHECK_THROWS_AS((void)ray::get(stored, {.timeout = call_limit}), ray::usage_error);
    CHECK_THROWS_AS((void)ray::get_view(stored), ray::usage_error);
    CHECK_THROWS_AS((void)ray::get(pending), ray::usage_error);
    CHECK_THROWS_AS((void)ray::get(std::vector{pending}), ray::usage_error);
    CHECK_THROWS_AS((void)ray::wait(std::vector{pending}), ray::usage_error);
    CHECK_THROWS_AS((void)ray::task<echo>.remote(pending), ray::usage_error);
    CHECK(ray::get(now_stored).get()[0] == 2.0);
  }
  CHECK_THROWS_AS((void)ray::get(stored), ray::usage_error);  // and with no runtime at all
}

namespace {

/// Returns after a moment: a result that is still pending when the caller asks for it.
int after_a_moment(int v) {
  std::this_thread::sleep_for(100ms);
  return v;
}

ray::async<int> get_without_limit(ray::object_ref<int> ref) {
  co_return co_await ray::get(ref, {.timeout = std::chrono::nanoseconds::max()});
}

ray::async<std::size_t> wait_without_limit(ray::object_ref<int> ref) {
  const ray::wait_options forever{.num_returns = 1, .timeout = std::chrono::nanoseconds::max()};
  std::vector<ray::object_ref<int>> refs(1, ref);  // GCC 12 miscompiles a braced list here
  auto w = co_await ray::wait(std::move(refs), forever);
  co_return w.ready.size();
}

}  // namespace

TEST_CASE("ray::get with no timeout, or the longest one, waits as long as it takes") {
  ray::runtime rt({.num_workers = 1});
  constexpr auto forever = std::chrono::nanoseconds::max();
  CHECK(ray::get(ray::task<after_a_moment>.remote(1), ray::get_options{}).get() == 1);
  CHECK(ray::get(ray::task<after_a_moment>.remote(2), {.timeout = forever}).get() == 2);
  CHECK(rt.run(get_without_limit(ray::task<after_a_moment>.remote(3))) == 3);
  auto ref = ray::task<after_a_moment>.remote(4);
  auto [ready, pending] = ray::wait(std::vector{ref}, {.num_returns = 1, .timeout = forever}).get();
  CHECK(ready.size() == 1);
  CHECK(rt.run(wait_without_limit(ray::task<after_a_moment>.remote(5))) == 1);
  std::atomic<int> from_a_thread{0};
  std::thread t(
      [&] { from_a_thread = ray::get(ray::task<after_a_moment>.remote(6), ray::get_options{}); });
  rt.serve_until([&] { return from_a_thread != 0; });  // the loop serves the thread's get
  t.join();
  CHECK(from_a_thread == 6);
}

namespace {

void fails_after_a_moment(int) {
  std::this_thread::sleep_for(100ms);
  throw std::runtime_error("failed on purpose");
}

}  // namespace

TEST_CASE("ray::get as a statement waits for the call and raises its error") {
  ray::runtime rt({.num_workers = 2});
  auto slow = ray::task<after_a_moment>.remote(1);
  ray::get(slow);
  CHECK(slow.is_ready());
  auto timed = ray::task<after_a_moment>.remote(2);
  ray::get(timed, {.timeout = call_limit});
  CHECK(timed.is_ready());
  std::vector<ray::object_ref<int>> several{ray::task<after_a_moment>.remote(3),
                                            ray::task<after_a_moment>.remote(4)};
  ray::get(several);
  CHECK((several[0].is_ready() && several[1].is_ready()));
  auto waited = ray::task<after_a_moment>.remote(5);
  ray::wait(std::vector{waited}, {.num_returns = 1});
  CHECK(waited.is_ready());
  CHECK_THROWS_AS(ray::get(ray::task<fails_after_a_moment>.remote(0)), ray::task_error);
  CHECK_THROWS_AS(ray::get(ray::task<fails_after_a_moment>.remote(0), {.timeout = call_limit}),
                  ray::task_error);
  auto from_a_thread = ray::task<after_a_moment>.remote(6);
  std::atomic<bool> returned{false};
  bool ready_when_returned = false;
  std::thread t([&] {
    try {
      ray::get(from_a_thread);
    } catch (...) {
    }
    ready_when_returned = from_a_thread.is_ready();
    returned = true;
  });
  rt.serve_until([&] { return returned.load(); });
  t.join();
  CHECK(ready_when_returned);
  // The forms that use the value wait once, as before.
  int v = ray::get(ray::task<after_a_moment>.remote(7));
  CHECK(v == 7);
  CHECK(ray::get(ray::task<after_a_moment>.remote(8)).get() == 8);
}

TEST_CASE("a forked child's exit leaves the runtime of the program that forked it running") {
  ray::init({.num_workers = 1});
  struct shutdown_at_end {
    ~shutdown_at_end() { ray::shutdown(); }
  } end;
  auto a = ray::spawn<keeper>();
  const int actor = ray::get(a.call<&keeper::pid>(), {.timeout = call_limit});
  std::fflush(nullptr);
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) std::exit(0);  // runs static destructors: ray::init's runtime among them
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status));
  CHECK(ray::get(a.call<&keeper::pid>(), {.timeout = call_limit}).get() == actor);
  CHECK(ray::get(ray::task<add>.remote(1, 2), {.timeout = call_limit}).get() == 3);
}

TEST_CASE("workers that die before they serve are not restarted in a loop: calls fail saying why") {
  setenv("CORAY_TEST_DIE_AT_START", "1", 1);
  std::optional<ray::runtime> rt;
  try {
    rt.emplace(ray::runtime_options{.num_workers = 1});
  } catch (...) {
    unsetenv("CORAY_TEST_DIE_AT_START");
    throw;
  }
  unsetenv("CORAY_TEST_DIE_AT_START");  // the supervisor has its own copy
  std::string why;
  try {
    (void)ray::get(ray::task<add>.remote(1, 2), {.timeout = call_limit}).get();
    FAIL("the call ran with no worker");
  } catch (const ray::worker_crashed& e) {
    why = e.what();
  }
  CHECK(why.find("exited with code 3") != std::string::npos);
  CHECK(why.find("5 times in a row") != std::string::npos);
  CHECK_THROWS_WITH_AS(ray::get(ray::task<add>.remote(1, 2), {.timeout = call_limit}).get(),
                       why.c_str(), ray::worker_crashed);
}

TEST_CASE("an object store larger than the machine's memory is refused with the figures") {
  const std::uint64_t memory = ray::detail::usable_memory_bytes();
  const std::string figure = "runtime_options::object_store_bytes is " +
                             std::to_string(memory + (std::size_t{1} << 30)) + " bytes";
  CHECK_THROWS_WITH_AS(
      ray::runtime({.num_workers = 1, .object_store_bytes = memory + (std::size_t{1} << 30)}),
      doctest::Contains(figure.c_str()), ray::usage_error);
  ray::runtime rt({.num_workers = 1});  // and nothing is left behind
  CHECK(ray::get(ray::task<add>.remote(1, 2), {.timeout = call_limit}).get() == 3);
}

TEST_CASE("a segment refused under ulimit -v says how much was asked and which option sets it") {
  // In a child process: the address-space limit is the child's alone.
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    const auto vm_kib = static_cast<std::uint64_t>(status_kib("self", "VmSize:").value_or(0));
    const rlimit lim{(vm_kib << 10) + (std::uint64_t{256} << 20),
                     (vm_kib << 10) + (std::uint64_t{256} << 20)};
    setrlimit(RLIMIT_AS, &lim);
    std::string what = "no error";
    try {
      ray::runtime rt({.num_workers = 1, .object_store_bytes = std::size_t{1} << 30});
    } catch (const ray::runtime_error& e) {
      what = e.what();
    }
    (void)!write(fds[1], what.data(), what.size());
    _exit(0);
  }
  close(fds[1]);
  std::string what;
  char buf[512];
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;)
    what.append(buf, static_cast<std::size_t>(n));
  close(fds[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  INFO(what);
  CHECK(what.find("1073741824 of them the object store") != std::string::npos);
  CHECK(what.find("runtime_options::object_store_bytes") != std::string::npos);
  CHECK(what.find("ulimit -v") != std::string::npos);
}

TEST_CASE("tasks blocked in ray::get on their children never deadlock the pool") {
  ray::runtime rt({.num_workers = 2});
  std::vector<ray::object_ref<int>> parents;
  for (int k = 0; k < 64; ++k) parents.push_back(ray::task<blocking_parent>.remote(k));
  for (int k = 0; k < 64; ++k)
    CHECK(ray::get(parents[static_cast<std::size_t>(k)], {.timeout = call_limit}).get() ==
          16 * k + 6);
}

TEST_CASE("a blocking recursive task tree runs to the end, a task per call (fib 20)") {
  ray::runtime rt({.num_workers = 2});
  CHECK(ray::get(ray::task<fib>.remote(20), {.timeout = call_limit}).get() == 6765);
  CHECK(ray::get(ray::task<add>.remote(1, 2), {.timeout = call_limit}).get() == 3);
}

namespace {
/// Bytes of the runtime's segment backed by memory now (its memory file's allocated blocks).
std::int64_t segment_resident_bytes() {
  struct stat st {};
  if (fstat(ray::detail::process::require().seg.fd(), &st) != 0) return INT64_MAX;
  return static_cast<std::int64_t>(st.st_blocks) * 512;
}
}  // namespace

TEST_CASE("freed store memory goes back to the system once no big object has been made a while") {
  ray::runtime rt({.num_workers = 1});
  const std::int64_t before = segment_resident_bytes();
  const std::int64_t mb = 1 << 20;
  {
    std::vector<ray::object_ref<std::vector<char>>> big;
    for (int i = 0; i < 4; ++i) big.push_back(ray::put(std::vector<char>(128 * mb, 'x')));
    CHECK(segment_resident_bytes() >= before + 512 * mb);
  }
  CHECK(serve_until([&] { return segment_resident_bytes() < before + 64 * mb; },
                    std::chrono::seconds(20)));
  // The pages given back are the store's again: a new object there reads as written.
  auto again = ray::put(std::vector<char>(128 * mb, 'y'));
  const ray::object_view<std::vector<char>> v = ray::get_view(again);
  CHECK(v->size() == static_cast<std::size_t>(128 * mb));
  CHECK((*v)[0] == 'y');
  CHECK((*v)[v->size() - 1] == 'y');
}

#if !CORAY_DETAIL_ASAN && !CORAY_DETAIL_TSAN
// (The sanitizers' allocators keep freed memory their own way: malloc_trim is not theirs.)
namespace {
/// This process's resident memory, in bytes.
std::int64_t resident_bytes() {
  long pages = 0, resident = 0;
  std::ifstream("/proc/self/statm") >> pages >> resident;
  return static_cast<std::int64_t>(resident) * sysconf(_SC_PAGESIZE);
}
}  // namespace

TEST_CASE("the driver's memory after a tide of queued calls goes back once they are done") {
  ray::runtime rt({.num_workers = 2});
  const std::int64_t before = resident_bytes();
  std::int64_t peak = 0;
  {
    std::vector<ray::object_ref<int>> refs;
    refs.reserve(300'000);
    for (int i = 0; i < 300'000; ++i) refs.push_back(ray::task<add>.remote(i, 1));
    peak = resident_bytes();
    std::vector<int> sums = ray::get(refs);
    CHECK(sums[299'999] == 300'000);
  }
  REQUIRE(peak - before > (64 << 20));  // the queued calls took memory
  CHECK(serve_until([&] { return resident_bytes() < before + (peak - before) / 4; },
                    std::chrono::seconds(20)));
}

namespace {
/// A process's private resident memory (its heap and other anonymous pages), in bytes.
std::int64_t private_resident_bytes(int pid) {
  return status_kib(std::to_string(pid), "RssAnon:").value_or(INT64_MAX / 1024) * 1024;
}
void escape(void* p) { asm volatile("" : : "g"(p) : "memory"); }
/// Leaves `mb` MB (under 32) of malloc's memory free but resident: a buffer above malloc's
/// threshold for mapping its own pages raises that threshold, so the next big one comes from
/// the heap, whose free top stays when it is freed. Returns the private resident bytes then.
std::int64_t leave_heap_free(int mb) {
  const std::size_t size = static_cast<std::size_t>(mb) << 20;
  {
    std::vector<char> first(size + (1 << 20), 'a');
    escape(first.data());
  }
  {
    std::vector<char> second(size, 'b');
    escape(second.data());
  }
  return private_resident_bytes(getpid());
}
}  // namespace

TEST_CASE("an idle worker gives back the heap pages a big task left free") {
  ray::runtime rt({.num_workers = 1});
  CHECK(ray::get(ray::task<add>.remote(1, 2)).get() == 3);
  const int pid = rt.worker_pids().at(0);
  const std::int64_t before = private_resident_bytes(pid);
  const std::int64_t left = ray::get(ray::task<leave_heap_free>.remote(16)).get();
  REQUIRE(left > before + (12 << 20));  // the task's freed buffer was still resident
  CHECK(serve_until([&] { return private_resident_bytes(pid) < before + (6 << 20); },
                    std::chrono::seconds(20)));
  CHECK(ray::get(ray::task<add>.remote(2, 3)).get() == 5);  // and it serves on
}
#endif
