#pragma once
/// The supervisor: a small process forked from the driver when the runtime starts (before
/// the runtime makes any thread). It starts workers on the driver's request -- by fork(), so
/// a large or multi-threaded driver is never forked, or by posix_spawn() of /proc/self/exe --
/// reaps them, and reports each death to the driver through the segment. It dies with the
/// driver (PR_SET_PDEATHSIG), and its workers die with it, so nothing outlives a kill -9.
/// Whatever the program did to its signals and descriptors, the supervisor and its workers
/// start from a clean state: default signal dispositions, no descriptor but their own.
/// Their stdout and stderr are pipes to the supervisor, which prints their lines prefixed
/// with the process (log_monitor.hpp).

#include <dirent.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <coray/detail/runtime/driver.hpp>
#include <coray/detail/runtime/log_monitor.hpp>
#include <coray/detail/runtime/system.hpp>
#include <coray/detail/runtime/worker.hpp>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

extern char** environ;

CORAY_BEGIN_NAMESPACE
namespace detail {

struct supervisor_command {
  /// `output`: the tail of process `slot`'s output (`slot` holds a pid), answered with an
  /// output_reply packet followed by its stdout's bytes, then its stderr's.
  enum op_t : std::uint32_t { start = 1, kill = 2, output = 3 };
  std::uint32_t op;
  std::uint32_t slot;
};
struct output_reply {
  std::int32_t pid;
  std::uint32_t out_bytes;
  std::uint32_t err_bytes;
};

inline constexpr const char* worker_env = "CORAY_WORKER";

/// The signal state of a coray process, whatever the program had set: every disposition
/// default (a SIGCHLD the program ignores would have the kernel reap workers unseen; its
/// handlers belong to the driver), but SIGINT ignored -- a terminal's Ctrl-C reaches the
/// whole process group, and it is the driver's to handle; the runtime ends with the driver.
/// Only `blocked` is blocked. Dispositions and mask carry over fork and exec.
inline void take_own_signals(const sigset_t& blocked) noexcept {
  for (int sig = 1; sig < NSIG; ++sig)
    if (sig != SIGKILL && sig != SIGSTOP) signal(sig, sig == SIGINT ? SIG_IGN : SIG_DFL);
  sigprocmask(SIG_SETMASK, &blocked, nullptr);
}

/// Closes the descriptors in [first, last] (close_range, or one by one before Linux 5.9).
inline void close_descriptors(unsigned first, unsigned last) noexcept {
#ifdef SYS_close_range
  if (syscall(SYS_close_range, first, last, 0) == 0) return;
#endif
  std::vector<int> open;
  if (DIR* dir = opendir("/proc/self/fd")) {
    while (dirent* e = readdir(dir)) {
      const long fd = std::strtol(e->d_name, nullptr, 10);
      if (e->d_name[0] != '.' && fd != dirfd(dir) && fd >= first && fd <= last)
        open.push_back(static_cast<int>(fd));
    }
    closedir(dir);
  }
  for (int fd : open) ::close(fd);
}

/// Closes every descriptor but stdin, stdout, stderr and `keep`: the program's own pipes and
/// sockets must reach end of file when the program closes them, not live on in the runtime.
inline void close_descriptors_except(std::vector<int> keep) noexcept {
  std::sort(keep.begin(), keep.end());
  unsigned first = 3;
  for (int fd : keep) {
    if (fd < static_cast<int>(first)) continue;
    if (static_cast<unsigned>(fd) > first) close_descriptors(first, static_cast<unsigned>(fd) - 1);
    first = static_cast<unsigned>(fd) + 1;
  }
  close_descriptors(first, UINT_MAX);
}

/// Runs `serve` (which never returns) on a thread with a deep stack, reserved but committed
/// only as it is used: a task blocked in ray::get runs its descendants sent to its worker
/// meanwhile above it on the stack (design.md, "Blocking inside a task"), so a tree of
/// blocking tasks needs stack in proportion to its depth (a few kB per level, several times
/// that under the sanitizers). Falls back to a smaller stack, then to this thread, where
/// memory is limited (ulimit -v).
template <class Serve>
[[noreturn]] void serve_on_deep_stack(Serve serve) {
  static Serve* body = nullptr;
  body = &serve;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  for (std::size_t size : {std::size_t{256} << 20, std::size_t{64} << 20}) {
    pthread_t t;
    if (pthread_attr_setstacksize(&attr, size) != 0) continue;
    if (pthread_create(
            &t, &attr,
            [](void*) -> void* {
              (*body)();
              return nullptr;
            },
            nullptr) == 0) {
      pthread_join(t, nullptr);  // serve exits the process; this thread only waits
      _exit(0);
    }
  }
  pthread_attr_destroy(&attr);
  serve();
  _exit(0);
}

/// Worker-side start-up shared by both start methods. Never returns.
[[noreturn]] inline void become_worker(segment& seg, std::uint32_t slot, std::uint32_t epoch,
                                       pid_t supervisor) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != supervisor) _exit(0);
  // A worker dies of its signals as a plain process does: handlers the program installed
  // (crash reporters, test frameworks) belong to the driver.
  sigset_t none;
  sigemptyset(&none);
  take_own_signals(none);
  // Output appears line by line, not when a buffer fills: a worker may be killed. A buffer
  // is given: glibc resets a stream's pointers only then, and a forked worker's stdout is the
  // driver's, already used (without it, its lines would wait for a full buffer).
  static char line_buffer[BUFSIZ];
  std::setvbuf(stdout, line_buffer, _IOLBF, sizeof line_buffer);
  char name[16];
  std::snprintf(name, sizeof name, "coray-w%u", slot);
  prctl(PR_SET_NAME, name);
  this_process() = {process_kind::task_worker, slot, {}};
  // The worker serves on a thread of its own (serve_on_deep_stack), which malloc would give
  // an arena of its own: the main arena is the one whose free top malloc_trim gives back, so
  // an idle worker keeps none of a big result's pages (process.hpp). A forked worker whose
  // driver had made other arenas (threads that allocated) before the runtime started may
  // still be given one of those: malloc hands out arenas freed by fork first.
  mallopt(M_ARENA_MAX, 1);
  // `seg` is moved into the worker's own process state.
  auto* w = new worker(slot, epoch);
  w->seg.adopt(seg);
  serve_on_deep_stack([w] { w->serve(); });
}

/// Called early by every program that may be a spawned worker (ray::runtime's constructor
/// does it). Returns at once in a normal process.
inline void enter_worker_if_spawned() {
  const char* env = std::getenv(worker_env);
  if (!env) return;
  unsigned fd = 0, slot = 0, epoch = 0;
  int sup = 0;
  if (std::sscanf(env, "%u:%u:%u:%d", &fd, &slot, &epoch, &sup) != 4) {
    std::fprintf(stderr, "coray: malformed %s=%s\n", worker_env, env);
    _exit(2);
  }
  unsetenv(worker_env);
  static segment seg;
  try {
    seg.attach(static_cast<int>(fd));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    _exit(2);
  }
  become_worker(seg, slot, epoch, sup);
}

struct supervisor_config {
  segment* seg;
  shared_header* hdr;
  int command_fd;
  start_method_id method;
  std::uint32_t epoch;
  std::vector<std::string> argv;  // for spawn
  output_options output;
};

[[noreturn]] inline void supervisor_main(supervisor_config cfg) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != cfg.hdr->driver_pid) _exit(0);
  prctl(PR_SET_NAME, "coray-super");
  const pid_t self = getpid();

  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  take_own_signals(chld);
  // Its stdout may be a pipe whose reader left (`program | head`): a write then fails, and
  // the runtime goes on. Workers take the default back (take_own_signals, POSIX_SPAWN_SETSIGDEF).
  signal(SIGPIPE, SIG_IGN);
  close_descriptors_except({cfg.seg->fd(), cfg.command_fd});
  int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  // Spawned workers inherit the segment as this descriptor. It is close-on-exec here and
  // made inheritable only in the spawned child (dup2 onto it), so no other program the
  // supervisor or a worker runs can ever hold the segment. Made under either start method:
  // a ray::process may choose spawn where the runtime forks.
  const int spawn_fd = fcntl(cfg.seg->fd(), F_DUPFD_CLOEXEC, 3);

  std::unordered_map<pid_t, std::uint32_t> children;
  log_monitor monitor(std::move(cfg.output), cfg.hdr);

  // A new process for `slot`: its pid, or -errno if it could not be made.
  auto start = [&](std::uint32_t slot) -> pid_t {
    const std::uint32_t how = cfg.hdr->worker(slot).start_as.load(std::memory_order_relaxed);
    const start_method_id method = how ? static_cast<start_method_id>(how - 1) : cfg.method;
    cfg.hdr->worker(slot).output_name.clear();  // a new process starts unnamed
    log_monitor::pipes out;
    log_monitor::make_pipes(out);  // without them, the process writes to the supervisor's
    if (method == start_method_id::fork) {
      pid_t pid = fork();
      if (pid == 0) {
        close(sfd);
        close(cfg.command_fd);
        if (spawn_fd >= 0) close(spawn_fd);
        monitor.become_child_output(out);
        become_worker(*cfg.seg, slot, cfg.epoch, self);
      }
      const int error = errno;
      monitor.watch(out, pid, slot);
      return pid < 0 ? -error : pid;
    }
    std::string env_entry = std::string(worker_env) + "=" + std::to_string(spawn_fd) + ":" +
                            std::to_string(slot) + ":" + std::to_string(cfg.epoch) + ":" +
                            std::to_string(self);
    std::vector<char*> envp;
    for (char** e = environ; *e; ++e)
      if (std::strncmp(*e, "CORAY_WORKER=", 13) != 0) envp.push_back(*e);
    envp.push_back(env_entry.data());
    envp.push_back(nullptr);
    std::vector<char*> argv;
    for (auto& a : cfg.argv) argv.push_back(a.data());
    argv.push_back(nullptr);
    // The supervisor's dispositions are already a worker's; only its mask is its own.
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    sigset_t pipe_default;
    sigemptyset(&pipe_default);
    sigaddset(&pipe_default, SIGPIPE);
    posix_spawnattr_setsigdefault(&attr, &pipe_default);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, cfg.seg->fd(), spawn_fd);
    if (out.out[1] >= 0) {
      posix_spawn_file_actions_adddup2(&actions, out.out[1], STDOUT_FILENO);
      posix_spawn_file_actions_adddup2(&actions, out.err[1], STDERR_FILENO);
    }
    pid_t pid = -1;
    const int err = spawn_fd < 0 ? EBADF
                                 : posix_spawn(&pid, "/proc/self/exe", &actions, &attr, argv.data(),
                                               envp.data());
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    monitor.watch(out, err ? -1 : pid, slot);
    return err ? -err : pid;
  };

  auto report_death = [&](std::uint32_t slot, int status) {
    worker_shared& w = cfg.hdr->worker(slot);
    w.wait_status.store(status, std::memory_order_relaxed);
    w.state.store(static_cast<std::uint32_t>(slot_state::dead), std::memory_order_release);
    cfg.hdr->deaths.fetch_add(1, std::memory_order_acq_rel);
    cfg.hdr->driver_bell.ring_always();
  };

  auto reap = [&](bool block) {
    int status = 0;
    pid_t pid;
    while ((pid = waitpid(-1, &status, block ? 0 : WNOHANG)) > 0) {
      auto it = children.find(pid);
      if (it == children.end()) continue;
      std::uint32_t slot = it->second;
      children.erase(it);
      if (block) continue;
      monitor.drain_process(pid);  // its last lines come before its death is known
      report_death(slot, status);
    }
  };

  std::vector<pollfd> fds;
  for (;;) {
    fds.assign({{cfg.command_fd, POLLIN, 0}, {sfd, POLLIN, 0}});
    monitor.add_pollfds(fds);
    const int n = poll(fds.data(), fds.size(), monitor.poll_timeout(log_monitor::clock::now()));
    if (n < 0) continue;
    monitor.on_ready(std::span(fds).subspan(2));
    if (fds[1].revents & POLLIN) {
      signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) == sizeof si) {
      }
      reap(false);
    }
    if (fds[0].revents & (POLLIN | POLLHUP)) {
      supervisor_command c{};
      ssize_t n = read(cfg.command_fd, &c, sizeof c);
      if (n <= 0) {
        // The driver is shutting down (or gone): end every worker, reap them, leave.
        for (auto& [pid, slot] : children) ::kill(pid, SIGKILL);
        reap(true);
        monitor.finish();  // every line written before the end is printed before ~runtime returns
        _exit(0);
      }
      if (c.op == supervisor_command::start) {
        pid_t pid = start(c.slot);
        if (pid > 0) {
          children[pid] = c.slot;
          cfg.hdr->worker(c.slot).pid.store(pid, std::memory_order_release);
        } else {
          report_death(c.slot, start_failure_status(-pid));
        }
      } else if (c.op == supervisor_command::output) {
        const int pid = static_cast<int>(c.slot);
        const log_monitor::tail* t = monitor.tail_of(pid);
        const std::string_view out = t ? std::string_view(t->out) : std::string_view();
        const std::string_view err = t ? std::string_view(t->err) : std::string_view();
        const output_reply head{pid, static_cast<std::uint32_t>(out.size()),
                                static_cast<std::uint32_t>(err.size())};
        std::string packet(reinterpret_cast<const char*>(&head), sizeof head);
        packet.append(out).append(err);
        ::send(cfg.command_fd, packet.data(), packet.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      } else if (c.op == supervisor_command::kill) {
        for (auto& [pid, slot] : children)
          if (slot == c.slot) ::kill(pid, SIGKILL);
      }
    }
  }
}

}  // namespace detail
CORAY_END_NAMESPACE
