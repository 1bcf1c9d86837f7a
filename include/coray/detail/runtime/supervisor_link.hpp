#pragma once
/// The driver's end of the supervisor: forks it, sends it commands (start a process in a
/// slot, kill one), notices when it is gone and ends it at teardown. Driver only, loop
/// thread only.

#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <coray/detail/runtime/supervisor.hpp>
#include <cstdio>
#include <cstring>
#include <string>

CORAY_BEGIN_NAMESPACE
namespace detail {

class supervisor_link {
 public:
  supervisor_link() = default;
  supervisor_link(const supervisor_link&) = delete;
  supervisor_link& operator=(const supervisor_link&) = delete;
  ~supervisor_link() { end(); }

  /// Forks the supervisor. Call before the runtime makes any thread.
  void start(supervisor_config cfg) {
    // A socket, not a pipe: writing to a dead supervisor must be an error, not SIGPIPE.
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0)
      throw ray::runtime_error(std::string("coray: socketpair failed: ") + std::strerror(errno));
    std::fflush(nullptr);  // buffered output must not be written twice
    pid_t pid = fork();
    if (pid < 0) {
      const int err = errno;
      ::close(fds[0]);
      ::close(fds[1]);
      throw ray::runtime_error(std::string("coray: fork of the supervisor failed: ") +
                               std::strerror(err));
    }
    if (pid == 0) {
      ::close(fds[1]);
      cfg.command_fd = fds[0];
      supervisor_main(std::move(cfg));
    }
    ::close(fds[0]);
    command_fd_ = fds[1];
    pid_ = pid;
  }

  pid_t pid() const noexcept { return pid_; }
  /// False once the supervisor is known gone (or before start).
  bool running() const noexcept { return pid_ > 0; }

  /// Sends a command; false if the supervisor is gone.
  bool command(supervisor_command c) noexcept {
    return pid_ > 0 && ::send(command_fd_, &c, sizeof c, MSG_NOSIGNAL) == sizeof c;
  }

  /// If the supervisor died (killed from outside), reaps it and returns its wait status.
  bool reap_if_gone(int& wait_status) noexcept {
    if (pid_ <= 0 || waitpid(pid_, &wait_status, WNOHANG) != pid_) return false;
    pid_ = -1;
    return true;
  }

  /// Closing the command socket tells the supervisor to end every process and exit; waits
  /// for it.
  void end() noexcept {
    if (command_fd_ >= 0) ::close(command_fd_);
    command_fd_ = -1;
    if (pid_ > 0) {
      int st;
      while (waitpid(pid_, &st, 0) < 0 && errno == EINTR) {
      }
    }
    pid_ = -1;
  }

 private:
  int command_fd_ = -1;
  pid_t pid_ = -1;
};

}  // namespace detail
CORAY_END_NAMESPACE
