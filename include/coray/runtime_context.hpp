#pragma once
/// ray::get_runtime_context(): who and where the calling code runs, as Ray's
/// `ray.get_runtime_context()`: the job, the call running now, the actor, the worker, the
/// process, the node, and the GPUs the call or actor was given.
///
///   auto ctx = ray::get_runtime_context();
///   if (!ctx.is_driver) fmt::print("task {:#x} on worker {}\n", ctx.task_id, ctx.worker_id);

#include <unistd.h>

#include <coray/detail/runtime/identity.hpp>
#include <coray/detail/runtime/process.hpp>
#include <coray/version.hpp>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

CORAY_BEGIN_NAMESPACE

struct runtime_context {
  /// The runtime's: the driver's pid in the high 32 bits, the runtime's number in that
  /// process (1 for the first) in the low ones. 0 outside a runtime.
  std::uint64_t job_id = 0;
  /// The call whose body runs now (its id in the driver's table); 0 in the driver and
  /// between calls. In a coroutine body, the call that started last on this process while
  /// it runs past a co_await.
  std::uint64_t task_id = 0;
  /// The actor this process is; 0 in the driver and in task workers.
  std::uint64_t actor_id = 0;
  /// The worker slot this process runs in (task workers first, then actors); 0 in the driver.
  std::uint32_t worker_id = 0;
  int pid = 0;
  /// The machine: 0 on one machine (the cluster numbers its nodes).
  std::uint32_t node_id = 0;
  bool is_driver = true;
  /// The GPU ids the running call or the actor was given (as ray::get_gpu_ids()).
  std::vector<std::string> gpu_ids;
  /// Whether this actor was built again after its process died (max_restarts).
  bool was_restarted = false;
};

/// The calling code's context. Any process; on the thread that runs its calls.
inline runtime_context get_runtime_context() {
  const detail::process_identity& me = detail::this_process();
  runtime_context c;
  c.pid = static_cast<int>(getpid());
  c.is_driver = me.kind == process_kind::driver;
  if (detail::process* p = detail::process::current(); p && p->hdr)
    c.job_id = (std::uint64_t{static_cast<std::uint32_t>(p->hdr->driver_pid)} << 32) | p->epoch;
  if (c.is_driver) return c;
  c.task_id = me.task_id;
  c.actor_id = me.kind == process_kind::actor ? me.actor_id : 0;
  c.worker_id = me.slot;
  c.gpu_ids = detail::assigned_gpu_ids();
  c.was_restarted = me.restarts > 0;
  return c;
}

/// Whether the calling actor was built again after its process died (Ray's
/// `was_current_actor_restarted`); false outside an actor.
inline bool was_current_actor_restarted() {
  return detail::this_process().kind == process_kind::actor && detail::this_process().restarts > 0;
}

CORAY_END_NAMESPACE
