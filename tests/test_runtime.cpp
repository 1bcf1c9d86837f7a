// The runtime: its processes, defaults, and that nothing outlives it.
#include <dirent.h>
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <coray/coray.hpp>
#include <coray/detail/runtime/system.hpp>  // usable_cores, which the default is checked against
#include <string>
#include <vector>

namespace {

int add(int a, int b) { return a + b; }

bool process_gone(int pid) {
  // Gone, or a zombie whose parent has not reaped it yet: either way not running.
  std::string stat_path = "/proc/" + std::to_string(pid) + "/stat";
  FILE* f = fopen(stat_path.c_str(), "r");
  if (!f) return true;
  char state = '?';
  int ignored = fscanf(f, "%*d %*s %c", &state);
  (void)ignored;
  fclose(f);
  return state == 'Z' || state == 'X';
}

/// Waits for `pred` up to `limit`: an upper bound on an event, not a guess at its timing.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > end) return false;
    usleep(1000);
  }
  return true;
}

}  // namespace

TEST_CASE("by default there is one worker per usable core") {
  ray::runtime rt;
  CHECK(rt.num_workers() == ray::detail::usable_cores());
  CHECK(rt.object_store_capacity() > 0);
}

TEST_CASE("workers are separate processes with their own pids") {
  ray::runtime rt({.num_workers = 3});
  auto pids = rt.worker_pids();
  REQUIRE(pids.size() == 3);
  CHECK(ray::get(ray::task<add>.remote(1, 1)).get() == 2);
  eventually(
      [&] {
        pids = rt.worker_pids();
        return pids[0] && pids[1] && pids[2];
      },
      std::chrono::seconds(5));
  CHECK(pids[0] != pids[1]);
  CHECK(pids[1] != pids[2]);
  for (int p : pids) CHECK(p != getpid());
}

TEST_CASE("destroying the runtime ends every worker") {
  std::vector<int> pids;
  {
    ray::runtime rt({.num_workers = 2});
    CHECK(ray::get(ray::task<add>.remote(1, 1)).get() == 2);
    eventually(
        [&] {
          pids = rt.worker_pids();
          return pids[0] && pids[1];
        },
        std::chrono::seconds(5));
  }
  for (int p : pids) CHECK(process_gone(p));
}

TEST_CASE("runtimes can follow one another, and ray::init / ray::shutdown manage a global one") {
  for (int i = 0; i < 3; ++i) {
    ray::runtime rt({.num_workers = 1});
    CHECK(ray::get(ray::task<add>.remote(i, 1)).get() == i + 1);
  }
  ray::init({.num_workers = 1});
  CHECK(ray::is_initialized());
  CHECK(ray::get(ray::task<add>.remote(2, 2)).get() == 4);
  CHECK_THROWS_AS(ray::init(), ray::runtime_error);
  ray::shutdown();
  CHECK_FALSE(ray::is_initialized());
}

TEST_CASE("a second runtime at the same time is refused with a clear error") {
  ray::runtime rt({.num_workers = 1});
  CHECK_THROWS_WITH_AS(ray::runtime({.num_workers = 1}), doctest::Contains("already running"),
                       ray::runtime_error);
}

TEST_CASE("using coray without a runtime is a clear error") {
  CHECK_THROWS_WITH_AS(ray::task<add>.remote(1, 2), doctest::Contains("no runtime"),
                       ray::runtime_error);
  CHECK_THROWS_AS(ray::put(1), ray::runtime_error);
}

TEST_CASE("refs held past the runtime's end are inert") {
  ray::object_ref<std::vector<double>> survivor;
  {
    ray::runtime rt({.num_workers = 1, .inline_threshold = 16});
    survivor = ray::put(std::vector<double>(100, 1.0));
  }
  survivor = {};  // must not touch the unmapped segment
  CHECK_FALSE(survivor.valid());
}

TEST_CASE("kill -9 of the driver leaves no worker or supervisor running, and no file behind") {
  // Orphans are re-parented to this process, so we can see them die.
  prctl(PR_SET_CHILD_SUBREAPER, 1);
  char tmpl[] = "/tmp/coray-residue-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  const std::string dir = tmpl;
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  pid_t driver = fork();
  if (driver == 0) {
    close(fds[0]);
    setenv("TMPDIR", dir.c_str(), 1);
    // A small store that spills into `dir`, so the spill file exists when the driver dies.
    ray::runtime rt({.num_workers = 2, .object_store_bytes = 8 << 20, .spill_directory = dir});
    std::vector<ray::object_ref<std::vector<double>>> keep;
    for (int i = 0; i < 4; ++i) keep.push_back(ray::put(std::vector<double>(512 * 1024, 1.0)));
    ray::get(ray::task<add>.remote(1, 1)).get();
    std::vector<int> pids;
    while (true) {
      pids = rt.worker_pids();
      if (pids[0] && pids[1]) break;
      usleep(1000);
    }
    pids.push_back(ray::detail::process::current()->hdr->supervisor_pid);
    if (write(fds[1], pids.data(), pids.size() * sizeof(int)) < 0) _exit(1);
    pause();
    _exit(0);
  }
  close(fds[1]);
  int pids[3] = {};
  REQUIRE(read(fds[0], pids, sizeof pids) == sizeof pids);
  close(fds[0]);
  kill(driver, SIGKILL);
  int st;
  waitpid(driver, &st, 0);
  for (int p : pids) {
    CHECK(eventually([&] { return process_gone(p); }, std::chrono::seconds(1)));
  }
  std::size_t left = 0;
  if (DIR* d = opendir(dir.c_str())) {
    while (auto* e = readdir(d)) left += e->d_name[0] != '.';
    closedir(d);
  }
  CHECK(left == 0);
  rmdir(dir.c_str());
  // Reap what was re-parented to us.
  while (waitpid(-1, &st, WNOHANG) > 0) {
  }
  prctl(PR_SET_CHILD_SUBREAPER, 0);
}

namespace {
int wait_forever(int) {
  pause();
  return 0;
}
}  // namespace

TEST_CASE(
    "if the supervisor is killed, pending calls fail with worker_crashed instead of hanging") {
  ray::runtime rt({.num_workers = 1});
  auto pending = ray::task<wait_forever>.remote(0);
  CHECK_FALSE(pending.is_ready());
  kill(ray::detail::process::current()->hdr->supervisor_pid, SIGKILL);
  CHECK_THROWS_AS(ray::get(pending).get(), ray::worker_crashed);
  CHECK_THROWS_AS(ray::task<add>.remote(1, 2), ray::worker_crashed);
}

namespace {
long sum_to(long n) { return n * (n + 1) / 2; }
}  // namespace

TEST_CASE(
    "two runtimes running at once, in two programs, each see only their own objects and workers") {
  int fds[2][2];
  pid_t drivers[2];
  for (int k = 0; k < 2; ++k) {
    REQUIRE(pipe(fds[k]) == 0);
    drivers[k] = fork();
    if (drivers[k] == 0) {
      close(fds[k][0]);
      ray::runtime rt({.num_workers = 2});
      long ok = 1;
      for (long i = 0; i < 2000; ++i) {
        // Each program puts its own values: a mix-up would show as a wrong sum.
        auto r = ray::put(std::vector<long>(100, i * (k + 1)));
        std::vector<long> v = ray::get(r);
        if (v[99] != i * (k + 1) || ray::get(ray::task<sum_to>.remote(i)).get() != i * (i + 1) / 2)
          ok = 0;
      }
      if (write(fds[k][1], &ok, sizeof ok) < 0) _exit(1);
      _exit(0);
    }
    close(fds[k][1]);
  }
  for (int k = 0; k < 2; ++k) {
    long ok = 0;
    REQUIRE(read(fds[k][0], &ok, sizeof ok) == sizeof ok);
    CHECK(ok == 1);
    close(fds[k][0]);
    int st;
    waitpid(drivers[k], &st, 0);
    CHECK(WIFEXITED(st));
  }
}
