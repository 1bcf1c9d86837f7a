#pragma once
/// What a ray::process is made of. Its process is an actor's (the supervisor starts it, by
/// fork or spawn, like any other), whose constructor runs the target and exits: the exit
/// code is 0 on return, 1 on an exception (reported on stderr as Python reports one). The
/// driver keeps each started child until it is seen ended, so that the runtime's end joins
/// the non-daemon ones (before_runtime_end, runtime.hpp) even after their ray::process is gone.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <coray/actor.hpp>
#include <coray/detail/runtime/identity.hpp>
#include <coray/detail/runtime/wire.hpp>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// -N for a process killed by signal N, its exit code for one that exited.
inline std::optional<int> exitcode_of(int wait_status) {
  if (WIFSIGNALED(wait_status)) return -WTERMSIG(wait_status);
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  return std::nullopt;
}

/// Python's report of a target's exception, on stderr, for the exception in flight.
inline void report_target_exception(const std::string& process_name, std::string_view target) {
  const wire_error w = describe_current_exception(target);
  std::fprintf(stderr,
               "Process %s:\nTraceback (most recent call last):\n  in ray::target<%.*s>\n%s: %s\n",
               process_name.c_str(), static_cast<int>(target.size()), target.data(),
               w.type_name.c_str(), w.what.c_str());
}

/// The actor a ray::process's process builds: its constructor is the process's life.
template <auto F, class... S>
struct process_body {
  /// Its output is shown under the target's name, as a task's is.
  static constexpr std::string_view output_name() noexcept { return entity_name_v<F>; }
  explicit process_body(std::string name, S... args) {
    process_identity& me = this_process();
    me.kind = process_kind::process;
    me.name = std::move(name);
    int code = 0;
    try {
      F(std::move(args)...);
    } catch (...) {
      report_target_exception(me.name, entity_name_v<F>);
      code = 1;
    }
    std::fflush(nullptr);
    _exit(code);
  }
};

template <auto F, class Params = typename function_traits<decltype(F)>::params>
struct process_body_type;
template <auto F, class... P>
struct process_body_type<F, std::tuple<P...>> {
  using type = process_body<F, storage_type_t<P>...>;
};

/// Starts a ray::process's actor with the arguments it was given (once).
struct child_spawner {
  virtual ~child_spawner() = default;
  virtual actor_ptr spawn(driver& d, std::uint32_t start_as, const std::string& name) = 0;
};

template <class Body, class... A>
struct child_spawner_of final : child_spawner {
  explicit child_spawner_of(A... a) : args(std::move(a)...) {}
  actor_ptr spawn(driver& d, std::uint32_t start_as, const std::string& name) override {
    return std::apply(
        [&](A&... a) {
          return d.make_actor_handle(spawn_as<Body>(multiprocessing_options(), start_as,
                                                    std::string(name), std::move(a)...)
                                         .id());
        },
        args);
  }
  std::tuple<A...> args;
};

/// One ray::process, shared by its handle and, once started, the driver's list of children.
struct child_state {
  std::string name;
  bool daemon = false;
  std::uint32_t start_as = 0;  // 0: the runtime's start method, else 1 + a start_method_id
  std::unique_ptr<child_spawner> spawner;  // until started
  bool started = false;
  actor_ptr handle;  // while it runs
  int pid = 0;
  std::optional<int> exitcode;  // once it ended

  /// Takes in what the driver knows of its process. Driver's loop thread.
  void refresh(driver& d) {
    if (!handle || exitcode) return;
    auto st = d.actor_status(handle.get()->id);
    if (st && st->pid) pid = st->pid;
    if (!st || st->ended) {
      exitcode = st ? exitcode_of(st->wait_status) : std::optional<int>(-SIGKILL);
      handle = {};
    }
  }
};

/// The driver's started children not yet seen ended.
inline std::vector<std::shared_ptr<child_state>>& started_children() {
  static std::vector<std::shared_ptr<child_state>> children;
  return children;
}

/// Joins `c` (no deadline: a live process is waited for, as Python's join; a dead one is seen
/// at once). Driver's loop thread.
inline bool join_child(driver& d, child_state& c,
                       clock::time_point deadline = clock::time_point::max()) {
  return d.run_until(
      [&] {
        c.refresh(d);
        return c.exitcode.has_value();
      },
      deadline);
}

/// At the runtime's end, as Python at exit: joins the non-daemon children; the daemon ones
/// the runtime's end then kills (SIGKILL).
inline void end_children() noexcept {
  auto children = std::move(started_children());
  started_children().clear();
  driver* d = nullptr;
  if (process* p = process::here()) d = p->as_driver();
  for (auto& c : children) {
    try {
      if (d && !c->daemon) join_child(*d, *c);
      if (d) c->refresh(*d);
    } catch (...) {
    }
    if (!c->exitcode) c->exitcode = -SIGKILL;
    c->handle = {};
  }
}

}  // namespace detail
CORAY_END_NAMESPACE
