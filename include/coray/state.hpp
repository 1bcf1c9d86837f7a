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

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <coray/detail/runtime/driver.hpp>
#include <coray/detail/runtime/foreign.hpp>
#include <coray/detail/runtime/output_name.hpp>
#include <coray/detail/runtime/state_records.hpp>
#include <coray/detail/runtime/timeline_trace.hpp>
#include <coray/errors.hpp>
#include <cstdint>
#include <cstdio>
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

namespace detail {
/// Runs `f(driver&)` on the driver's loop; refuses in a worker, and without a runtime.
template <class F>
auto from_driver(const char* what, F&& f) {
  return ray::detail::on_loop(what, [&](ray::detail::process& p) {
    ray::detail::driver* d = p.as_driver();
    if (!d)
      throw usage_error(
          fmt::format("{}: the runtime's state is listed by the driver (the process that built the "
                      "runtime), not from inside a task or an actor",
                      what));
    return f(*d);
  });
}
inline bool name_matches(std::string_view full, std::string_view wanted) noexcept {
  return wanted.empty() || full == wanted || ray::detail::output_short_name(full) == wanted;
}
}  // namespace detail

/// Live calls (waiting, queued, running), then the finished and failed ones the runtime
/// keeps (runtime_options::task_history, oldest first).
inline std::vector<task_info> list_tasks(const task_filter& filter = {}) {
  std::vector<task_info> all = detail::from_driver(
      "ray::state::list_tasks", [](ray::detail::driver& d) { return d.list_tasks(); });
  std::vector<task_info> out;
  for (auto& t : all)
    if ((!filter.state || t.state == *filter.state) && detail::name_matches(t.name, filter.name))
      out.push_back(std::move(t));
  return out;
}

/// The actors, by id: alive, being created or restarted, and dead ones still referenced.
inline std::vector<actor_info> list_actors(const actor_filter& filter = {}) {
  std::vector<actor_info> all = detail::from_driver(
      "ray::state::list_actors", [](ray::detail::driver& d) { return d.list_actors(); });
  std::vector<actor_info> out;
  for (auto& a : all)
    if ((!filter.state || a.state == *filter.state) &&
        detail::name_matches(a.class_name, filter.class_name) &&
        (filter.name.empty() || a.name == filter.name))
      out.push_back(std::move(a));
  return out;
}

/// The task workers (in slot order), then the actors' processes.
inline std::vector<worker_info> list_workers(const worker_filter& filter = {}) {
  std::vector<worker_info> all = detail::from_driver(
      "ray::state::list_workers", [](ray::detail::driver& d) { return d.list_workers(); });
  std::vector<worker_info> out;
  for (auto& w : all)
    if ((!filter.kind || w.kind == *filter.kind) && (!filter.alive || w.alive == *filter.alive))
      out.push_back(w);
  return out;
}

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
inline process_log get_log(int pid) {
  auto got = detail::from_driver("ray::state::get_log",
                                 [pid](ray::detail::driver& d) { return d.process_output(pid); });
  if (!got) throw runtime_error("ray::state::get_log: the supervisor process did not answer");
  return {std::move(got->first), std::move(got->second)};
}

/// The objects the driver holds (`ray list objects`): each one with a value in the store or
/// the spill file, and each one a ref inside a value has named; by id, unnamed ones (id 0)
/// first, largest first. Small values only object_refs name are not listed (they live in the
/// refs themselves).
inline std::vector<object_info> list_objects() {
  return detail::from_driver("ray::state::list_objects",
                             [](ray::detail::driver& d) { return d.list_objects(); });
}

/// How many calls of each function are in each state (`ray summary tasks`), over what
/// list_tasks reports.
inline std::map<std::string, std::map<task_state, std::size_t>> summarize_tasks() {
  std::map<std::string, std::map<task_state, std::size_t>> out;
  for (const auto& t : list_tasks()) ++out[t.name][t.state];
  return out;
}

}  // namespace state

/// What `ray memory` prints: the store's capacity and use, then each object list_objects
/// reports with its size, where it lies, and who holds it (handles in the driver, references
/// to its store block, readers in place). Driver only.
inline std::string memory_summary() {
  struct store_use {
    std::size_t capacity, free;
    std::uint64_t spilled;
  };
  const store_use use =
      state::detail::from_driver("ray::memory_summary", [](ray::detail::driver& d) {
        return store_use{d.seg.capacity(), d.seg.free_bytes(), d.spilled_objects()};
      });
  const auto objects = state::list_objects();
  std::size_t in_store = 0, spilled = 0;
  for (const auto& o : objects) {
    if (o.location == state::object_location::store) in_store += o.size;
    if (o.location == state::object_location::spilled) spilled += o.size;
  }
  std::string out = fmt::format(
      "Object store: {} of {} bytes used ({} free); {} objects listed, {} bytes in the store, "
      "{} bytes spilled now ({} spilled so far)\n",
      use.capacity - use.free, use.capacity, use.free, objects.size(), in_store, spilled,
      use.spilled);
  out += fmt::format("{:>10} {:>12} {:>8} {:>8} {:>10} {:>5} {:>9}\n", "ID", "SIZE", "WHERE",
                     "HANDLES", "STORE_REFS", "PINS", "CONTAINED");
  for (const auto& o : objects)
    out += fmt::format("{:>10} {:>12} {:>8} {:>8} {:>10} {:>5} {:>9}\n", o.id, o.size,
                       state::to_string(o.location), o.handles, o.store_refs, o.pins, o.contained);
  return out;
}

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
inline std::size_t timeline(const std::string& file) {
  struct recorded {
    bool on;
    std::vector<ray::detail::timeline_entry> calls;
  };
  recorded r = state::detail::from_driver("ray::timeline", [](ray::detail::driver& d) {
    return recorded{d.records_timeline(), d.timeline()};
  });
  if (!r.on)
    throw usage_error(
        "ray::timeline: the runtime records no timeline; start it with "
        "{.record_timeline = true} or CORAY_TIMELINE=1");
  const std::size_t n = r.calls.size();
  const std::string out =
      ray::detail::timeline_trace(std::move(r.calls), static_cast<int>(::getpid()));
  std::FILE* f = std::fopen(file.c_str(), "wb");
  if (!f || std::fwrite(out.data(), 1, out.size(), f) != out.size() || std::fclose(f) != 0) {
    if (f) std::fclose(f);
    throw ray::runtime_error(fmt::format("ray::timeline: cannot write {}", file));
  }
  return n;
}

CORAY_END_NAMESPACE
