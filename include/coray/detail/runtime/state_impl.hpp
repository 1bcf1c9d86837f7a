#pragma once
/// The functions of ray::state, ray::memory_summary and ray::timeline: included by state.hpp
/// in header-only mode (inline), and compiled once by src/coray.cpp into coray::coray_compiled
/// in compiled mode (CORAY_COMPILED_LIB), so that a translation unit including coray.hpp
/// neither parses the driver's listings nor instantiates what they use.

#include <fmt/format.h>
#include <unistd.h>

#include <coray/detail/runtime/driver.hpp>
#include <coray/detail/runtime/foreign.hpp>
#include <coray/detail/runtime/output_name.hpp>
#include <coray/detail/runtime/timeline_trace.hpp>
#include <coray/errors.hpp>
#include <coray/state.hpp>
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace state {

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

CORAY_API std::vector<task_info> list_tasks(const task_filter& filter) {
  std::vector<task_info> all = detail::from_driver(
      "ray::state::list_tasks", [](ray::detail::driver& d) { return d.list_tasks(); });
  std::vector<task_info> out;
  for (auto& t : all)
    if ((!filter.state || t.state == *filter.state) && detail::name_matches(t.name, filter.name))
      out.push_back(std::move(t));
  return out;
}

CORAY_API std::vector<actor_info> list_actors(const actor_filter& filter) {
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

CORAY_API std::vector<worker_info> list_workers(const worker_filter& filter) {
  std::vector<worker_info> all = detail::from_driver(
      "ray::state::list_workers", [](ray::detail::driver& d) { return d.list_workers(); });
  std::vector<worker_info> out;
  for (auto& w : all)
    if ((!filter.kind || w.kind == *filter.kind) && (!filter.alive || w.alive == *filter.alive))
      out.push_back(w);
  return out;
}

CORAY_API process_log get_log(int pid) {
  auto got = detail::from_driver("ray::state::get_log",
                                 [pid](ray::detail::driver& d) { return d.process_output(pid); });
  if (!got) throw runtime_error("ray::state::get_log: the supervisor process did not answer");
  return {std::move(got->first), std::move(got->second)};
}

CORAY_API std::vector<object_info> list_objects() {
  return detail::from_driver("ray::state::list_objects",
                             [](ray::detail::driver& d) { return d.list_objects(); });
}

CORAY_API std::map<std::string, std::map<task_state, std::size_t>> summarize_tasks() {
  std::map<std::string, std::map<task_state, std::size_t>> out;
  for (const auto& t : list_tasks()) ++out[t.name][t.state];
  return out;
}

}  // namespace state

CORAY_API std::string memory_summary() {
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

CORAY_API std::size_t timeline(const std::string& file) {
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
