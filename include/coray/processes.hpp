#pragma once
/// The runtime's processes as multiprocessing describes them: pids, liveness and exit codes
/// of the task workers, actors and ray::process children (driver only), and, in any process,
/// which one it is (current_process, parent_process) and the cores it may use (cpu_count).
///
///   for (const ray::process_info& w : ray::workers())
///     std::printf("worker %u: pid %d %s\n", w.slot, w.pid, w.alive ? "alive" : "ended");
///   std::size_t n = ray::active_children().size();   // workers, actors, processes running
///   ray::process_info a = ray::actor_process(counter); // a.pid, a.alive, a.exitcode
///   std::string me = ray::current_process().name;      // "MainProcess" in the driver

#include <sys/wait.h>

#include <coray/actor.hpp>
#include <coray/detail/mp/child_process.hpp>
#include <coray/detail/runtime/identity.hpp>
#include <coray/detail/runtime/system.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

CORAY_BEGIN_NAMESPACE

/// One process of the runtime.
struct process_info {
  process_kind kind = process_kind::task_worker;
  /// Its slot: task workers are 0..num_workers-1, actors come after.
  std::uint32_t slot = 0;
  /// 0 while it starts.
  int pid = 0;
  /// Started and not yet ended (multiprocessing's is_alive()).
  bool alive = false;
  /// Once it ended: its exit code, or -N if signal N killed it (multiprocessing's exitcode).
  std::optional<int> exitcode;
  /// Task workers: how many times the slot's process was replaced after dying.
  std::uint32_t restarts = 0;
  /// multiprocessing's name: "MainProcess" for the driver, a ray::process's own ("Process-N"
  /// unless it was given one), "TaskWorker-<slot>" or "Actor-<slot>" for the others.
  std::string name;
};

namespace detail {

inline process_info slot_info(driver& d, std::uint32_t slot) {
  const worker_shared& w = d.hdr->worker(slot);
  process_info info;
  info.kind = slot < d.num_workers() ? process_kind::task_worker : process_kind::actor;
  info.slot = slot;
  info.pid = w.pid.load(std::memory_order_acquire);
  const auto state = static_cast<slot_state>(w.state.load(std::memory_order_acquire));
  info.alive = info.pid != 0 && (state == slot_state::starting || state == slot_state::running);
  if (state == slot_state::dead)
    info.exitcode = exitcode_of(w.wait_status.load(std::memory_order_relaxed));
  const std::uint32_t generation = w.generation.load(std::memory_order_relaxed);
  if (info.kind == process_kind::task_worker && generation > 1) info.restarts = generation - 1;
  info.name = fmt::format("{}-{}", info.kind == process_kind::actor ? "Actor" : "TaskWorker", slot);
  return info;
}

/// A ray::process's process among the actors': its kind and name say so.
inline void name_children(driver& d, std::vector<process_info>& infos) {
  for (auto& c : started_children()) {
    c->refresh(d);
    for (process_info& info : infos)
      if (c->pid && info.pid == c->pid && info.kind == process_kind::actor) {
        info.kind = process_kind::process;
        info.name = c->name;
      }
  }
}

}  // namespace detail

/// The task workers, in slot order. A worker that died shows alive == false with its exit code
/// until its replacement starts (restarts counts the replacements).
inline std::vector<process_info> workers() {
  auto& d = detail::require_driver("ray::workers()");
  std::vector<process_info> out;
  for (std::uint32_t i = 0; i < d.num_workers(); ++i) out.push_back(detail::slot_info(d, i));
  return out;
}

/// Every process of the runtime now running: task workers, actors and ray::process children
/// (multiprocessing's active_children()). The supervisor, which only starts and reaps them,
/// is not listed.
inline std::vector<process_info> active_children() {
  auto& d = detail::require_driver("ray::active_children()");
  d.serve_once();  // takes in the deaths reported since
  std::vector<process_info> out;
  for (std::uint32_t i = 0; i < d.hdr->slots; ++i) {
    process_info info = detail::slot_info(d, i);
    if (info.alive) out.push_back(info);
  }
  detail::name_children(d, out);
  return out;
}

/// This process: the driver ("MainProcess"), a task worker, an actor or a ray::process, with
/// its pid (multiprocessing's current_process()). In any process, with or without a runtime.
inline process_info current_process() {
  const detail::process_identity& me = detail::this_process();
  process_info info;
  info.kind = me.kind;
  info.slot = me.slot;
  info.pid = getpid();
  info.alive = true;
  switch (me.kind) {
    case process_kind::driver:
      info.name = "MainProcess";
      break;
    case process_kind::process:
      info.name = me.name;
      break;
    case process_kind::task_worker:
      info.name = fmt::format("TaskWorker-{}", me.slot);
      break;
    case process_kind::actor:
      info.name = fmt::format("Actor-{}", me.slot);
      break;
  }
  return info;
}

/// The driver, seen from a worker, an actor or a ray::process (which the supervisor starts,
/// but on the driver's behalf); nullopt in the driver (multiprocessing's parent_process()).
inline std::optional<process_info> parent_process() {
  if (detail::this_process().kind == process_kind::driver) return std::nullopt;
  detail::process* p = detail::process::current();
  if (!p || !p->hdr) return std::nullopt;
  process_info info;
  info.kind = process_kind::driver;
  info.pid = p->hdr->driver_pid;
  info.alive = true;
  info.name = "MainProcess";
  return info;
}

/// The cores this process may use: its CPU affinity, capped by a cgroup quota (what the
/// runtime starts num_workers = 0 workers for). Python's cpu_count() counts every core.
inline unsigned cpu_count() { return detail::usable_cores(); }

/// The process of `a`: its pid, whether it is alive and, once it ended, its exit code.
template <class T>
process_info actor_process(const actor<T>& a) {
  auto& d = detail::require_driver("ray::actor_process()");
  process_info info;
  info.kind = process_kind::actor;
  auto st = d.actor_status(a.id());
  if (!st) return info;
  info.pid = st->pid;
  info.alive = st->pid != 0 && !st->ended;
  if (st->ended) info.exitcode = detail::exitcode_of(st->wait_status);
  for (std::uint32_t i = d.num_workers(); i < d.hdr->slots && info.alive; ++i)
    if (d.hdr->worker(i).pid.load(std::memory_order_relaxed) == info.pid) info.slot = i;
  return info;
}

CORAY_END_NAMESPACE
