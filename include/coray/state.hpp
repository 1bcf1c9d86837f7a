#pragma once
/// ray::state: what the runtime is doing, as Ray's state API lists it (`ray list tasks`,
/// `ray list actors`, `ray list objects`, `ray summary tasks`, `ray memory`): the calls live
/// and finished, the actors, the worker processes, the objects. Each listing is a copy made on the
/// driver's loop thread; other threads of the driver may call these too (they wait for the loop).
/// Driver only.
///
///   for (const auto& t : ray::state::list_tasks({.state = ray::state::task_state::running}))
///     fmt::print("{} {} on pid {}\n", t.id, t.name, t.pid);
///   auto counts = ray::state::summarize_tasks();   // {"square": {FINISHED: 100, RUNNING: 2}}
///   std::string recent = ray::state::get_log(pid).err;  // what a worker wrote lately

#include <coray/detail/runtime/state_records.hpp>
#include <coray/version.hpp>
#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace state {

struct task_filter {
  std::optional<task_state> state = std::nullopt;
  /// The function's name as the registry spells it ("ns::f") or bare ("f"); empty: any.
  std::string name = {};
};
struct actor_filter {
  std::optional<actor_state> state = std::nullopt;
  std::string class_name = {};  // empty: any
  std::string name = {};        // the actor's own name (actor_options::name); empty: any
};
struct worker_filter {
  std::optional<worker_kind> kind = std::nullopt;
  std::optional<bool> alive = std::nullopt;
};

/// Live calls (waiting, queued, running), then the finished and failed ones the runtime
/// keeps (runtime_options::task_history, oldest first).
CORAY_API std::vector<task_info> list_tasks(const task_filter& filter = {});

/// The actors, by id: alive, being created or restarted, and dead ones still referenced.
CORAY_API std::vector<actor_info> list_actors(const actor_filter& filter = {});

/// The task workers (in slot order), then the actors' processes.
CORAY_API std::vector<worker_info> list_workers(const worker_filter& filter = {});

/// What a worker or actor process wrote: the last 16 KiB of its stdout and of its stderr,
/// as it wrote them (no prefix). Ray's get_log.
struct process_log {
  std::string out;
  std::string err;
};

/// The output of process `pid` (a task worker or an actor of this runtime, running or among
/// the last 64 that ended), kept in memory by the supervisor whether or not it was shown
/// (log_to_driver). Empty for a pid the runtime does not know. Throws ray::runtime_error if
/// the supervisor does not answer within 2 s.
CORAY_API process_log get_log(int pid);

/// The objects the driver holds (`ray list objects`): each one with a value in the store or
/// the spill file, and each one a ref inside a value has named; by id, unnamed ones (id 0)
/// first, largest first. Small values only object_refs name are not listed (they live in the
/// refs themselves).
CORAY_API std::vector<object_info> list_objects();

/// How many calls of each function are in each state (`ray summary tasks`), over what
/// list_tasks reports.
CORAY_API std::map<std::string, std::map<task_state, std::size_t>> summarize_tasks();

}  // namespace state

/// What `ray memory` prints: the store's capacity and use, then each object list_objects
/// reports with its size, where it lies, and who holds it (handles in the driver, references
/// to its store block, readers in place). Driver only.
CORAY_API std::string memory_summary();

/// Writes the calls recorded so far (runtime_options::record_timeline: the last
/// task_history of them) to `file` in Chrome's trace-event format, which Perfetto
/// (ui.perfetto.dev) and chrome://tracing open; returns how many calls it wrote. Ray's
/// `ray.timeline(filename)`. One track per process (the driver, each task worker, each
/// actor); on a worker's track a slice per call it ran, named by its function or method,
/// with its id, its arguments' bytes, its attempt and whether it failed; an arrow from the
/// driver, when the call was submitted, to the slice. Times are the driver's: a slice runs
/// from when the call was sent to its process (or when the one before it there ended, if
/// later) until its reply was read. Driver only; throws ray::usage_error if the runtime
/// does not record a timeline, and ray::runtime_error if the file cannot be written.
CORAY_API std::size_t timeline(const std::string& file);

CORAY_END_NAMESPACE

#ifndef CORAY_COMPILED_LIB
#include <coray/detail/runtime/state_impl.hpp>
#endif
