#pragma once
/// The driver's side of the supervisor: starting it, and ending it however it was left --
/// running, exited, or stopped (SIGSTOP, a debugger). Driver only, from the runtime's thread.

#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <coray/detail/runtime/supervisor.hpp>
#include <coray/errors.hpp>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// A started supervisor: its pid and the driver's end of its command socket.
struct supervisor_handle {
  pid_t pid = -1;
  int command_fd = -1;
};

/// Forks the supervisor. Call before the runtime makes any thread. Throws ray::runtime_error
/// saying why if it cannot (the errno's words: a process limit reads differently from memory).
inline supervisor_handle start_supervisor(segment& seg, shared_header* hdr, start_method_id method,
                                          std::uint32_t epoch, const std::vector<std::string>& argv,
                                          output_options output = {}) {
  auto refused = [](const char* what, int error) {
    return ray::runtime_error(fmt::format("coray: cannot start the supervisor process: {}: {}",
                                          what, std::strerror(error)));
  };
  // A socket, not a pipe: writing to a dead supervisor must be an error, not SIGPIPE.
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0)
    throw refused("socketpair", errno);
  std::fflush(nullptr);  // buffered output must not be written twice
  const pid_t pid = fork();
  if (pid < 0) {
    const int error = errno;
    ::close(fds[0]);
    ::close(fds[1]);
    throw refused("fork", error);
  }
  if (pid == 0) {
    ::close(fds[1]);
    supervisor_main({&seg, hdr, fds[0], method, epoch, argv, std::move(output)});
  }
  ::close(fds[0]);
  hdr->supervisor_pid = pid;
  return {pid, fds[1]};
}

/// Waits at most `limit` for the child `pid` to end, and reaps it: true once it has ended (or
/// is no child to wait for), false if it still runs. Wakes as it ends (a pidfd), not on a tick.
inline bool reaped_within(pid_t pid, std::chrono::milliseconds limit, int& status) noexcept {
  const auto deadline = std::chrono::steady_clock::now() + limit;
#ifdef SYS_pidfd_open
  const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
#else
  const int pidfd = -1;  // before Linux 5.3: a millisecond tick
#endif
  bool ended = false;
  for (;;) {
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid || (r < 0 && errno != EINTR)) {
      ended = true;
      break;
    }
    const auto left =
        std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    if (pidfd >= 0) {
      pollfd p{pidfd, POLLIN, 0};
      poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), INT_MAX)));
    } else {
      poll(nullptr, 0, 1);
    }
  }
  if (pidfd >= 0) ::close(pidfd);
  return ended;
}

/// Ends the supervisor: closing the command socket asks it to end every process and exit;
/// one that has not within `grace` (stopped, or stuck reaping) is killed, and its workers die
/// with it (PR_SET_PDEATHSIG). Returns its wait status (0 if there was none to reap). Blocks
/// at most `grace` plus the reaping of a killed process. Never throws.
inline int end_supervisor(pid_t pid, int command_fd,
                          std::chrono::milliseconds grace = std::chrono::seconds(2)) noexcept {
  if (command_fd >= 0) ::close(command_fd);
  int status = 0;
  if (pid <= 0 || reaped_within(pid, grace, status)) return status;
  ::kill(pid, SIGKILL);  // ends a stopped process too
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

/// The driver's end of the supervisor as one object: started once, commanded, watched for
/// its death, ended at teardown (end_supervisor: a stopped one cannot hang it).
class supervisor_link {
 public:
  supervisor_link() = default;
  supervisor_link(const supervisor_link&) = delete;
  supervisor_link& operator=(const supervisor_link&) = delete;
  ~supervisor_link() { end(); }

  void start(segment& seg, shared_header* hdr, start_method_id method, std::uint32_t epoch,
             const std::vector<std::string>& argv, output_options output = {}) {
    h_ = start_supervisor(seg, hdr, method, epoch, argv, std::move(output));
  }
  pid_t pid() const noexcept { return h_.pid; }
  /// False once the supervisor is known gone (or before start).
  bool running() const noexcept { return h_.pid > 0; }
  /// Sends a command; false if the supervisor is gone.
  bool command(supervisor_command c) noexcept {
    return h_.pid > 0 && ::send(h_.command_fd, &c, sizeof c, MSG_NOSIGNAL) == sizeof c;
  }
  /// The tail of what process `pid` wrote to stdout and stderr, as the supervisor keeps it;
  /// nullopt if the supervisor does not answer within `limit` (gone, or stopped). Blocks.
  std::optional<std::pair<std::string, std::string>> output_of(
      int pid, std::chrono::milliseconds limit = std::chrono::seconds(2)) {
    if (!command({supervisor_command::output, static_cast<std::uint32_t>(pid)})) return {};
    const auto deadline = std::chrono::steady_clock::now() + limit;
    std::vector<char> buf(sizeof(output_reply) + 2 * log_monitor::tail_bytes);
    for (;;) {
      const ssize_t n = ::recv(h_.command_fd, buf.data(), buf.size(), MSG_DONTWAIT);
      output_reply head{};
      if (n >= static_cast<ssize_t>(sizeof head)) {
        std::memcpy(&head, buf.data(), sizeof head);
        if (head.pid == pid &&
            static_cast<std::size_t>(n) == sizeof head + head.out_bytes + head.err_bytes) {
          const char* at = buf.data() + sizeof head;
          return std::pair{std::string(at, head.out_bytes),
                           std::string(at + head.out_bytes, head.err_bytes)};
        }
        continue;  // an answer to an earlier question that timed out
      }
      const auto left =
          std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) || left.count() <= 0) return {};
      pollfd p{h_.command_fd, POLLIN, 0};
      ::poll(&p, 1, static_cast<int>(left.count()));
    }
  }
  /// If the supervisor died (killed from outside), reaps it and returns its wait status.
  bool reap_if_gone(int& wait_status) noexcept {
    if (h_.pid <= 0 || waitpid(h_.pid, &wait_status, WNOHANG) != h_.pid) return false;
    h_.pid = -1;
    return true;
  }
  /// Ends it (and with it every process); idempotent.
  void end() noexcept {
    if (h_.pid > 0 || h_.command_fd >= 0) end_supervisor(h_.pid, h_.command_fd);
    h_ = {};
  }

 private:
  supervisor_handle h_;
};

}  // namespace detail
CORAY_END_NAMESPACE
