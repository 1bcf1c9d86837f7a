#pragma once
/// The runtime's processes as multiprocessing describes its children: pids, liveness and
/// exit codes of the task workers and actors. Driver only.
///
///   for (const ray::process_info& w : ray::workers())
///     std::printf("worker %u: pid %d %s\n", w.slot, w.pid, w.alive ? "alive" : "ended");
///   std::size_t n = ray::active_children().size();   // workers and actors now running
///   ray::process_info a = ray::actor_process(counter); // a.pid, a.alive, a.exitcode

#include <sys/wait.h>

#include <coray/actor.hpp>
#include <cstdint>
#include <optional>
#include <vector>

CORAY_BEGIN_NAMESPACE

enum class process_kind : std::uint8_t { task_worker, actor };

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
};

namespace detail {

inline std::optional<int> exitcode_of(int wait_status) {
  if (WIFSIGNALED(wait_status)) return -WTERMSIG(wait_status);
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  return std::nullopt;
}

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
  return info;
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

/// Every process of the runtime now running: task workers and actors (multiprocessing's
/// active_children()). The supervisor, which only starts and reaps them, is not listed.
inline std::vector<process_info> active_children() {
  auto& d = detail::require_driver("ray::active_children()");
  std::vector<process_info> out;
  for (std::uint32_t i = 0; i < d.hdr->slots; ++i) {
    process_info info = detail::slot_info(d, i);
    if (info.alive) out.push_back(info);
  }
  return out;
}

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
