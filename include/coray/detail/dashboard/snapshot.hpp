#pragma once
/// What the dashboard shows, read from the runtime in one job on the driver's loop (the state
/// API's copies, the store's use, and the output of the processes when the logs are being
/// looked at), then turned into the JSON of each endpoint on the dashboard's own thread. The
/// HTTP threads only ever copy the last published JSON: no client waits on the loop, and the
/// loop never waits on a client.

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <coray/detail/dashboard/log_book.hpp>
#include <coray/detail/runtime/driver.hpp>
#include <coray/detail/runtime/output_name.hpp>
#include <coray/detail/runtime/proc_sample.hpp>
#include <coray/detail/runtime/state_records.hpp>
#include <coray/detail/runtime/timeline_trace.hpp>
#include <coray/runtime.hpp>
#include <cstdint>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail::dashboard {

/// The records copied on the loop in one job.
struct loop_view {
  std::vector<state::task_info> tasks;
  std::vector<state::actor_info> actors;
  std::vector<state::worker_info> workers;
  std::vector<state::object_info> objects;
  std::size_t store_capacity = 0, store_free = 0;
  std::uint64_t spilled_so_far = 0;
  std::map<std::string, double> resources_total, resources_free;
  std::vector<std::string> gpu_ids;
  struct output {
    int pid;
    std::string out, err;
  };
  std::vector<output> logs;  // when asked for
  std::string user_metrics;  // ray::metrics' series, in Prometheus' text format
  bool records_timeline = false;
  std::vector<timeline_entry> timeline;  // when it records: the calls it kept
};

/// Loop thread: the copy, and the output of `log_pids` when not empty (each a round trip to
/// the supervisor).
inline loop_view read_on_loop(driver& d, const std::set<int>& log_pids) {
  loop_view v;
  v.tasks = d.list_tasks();
  v.actors = d.list_actors();
  v.workers = d.list_workers();
  v.objects = d.list_objects();
  v.store_capacity = d.seg.capacity();
  v.store_free = d.seg.free_bytes();
  v.spilled_so_far = d.spilled_objects();
  v.resources_total = d.resources(false);
  v.resources_free = d.resources(true);
  for (int pid : log_pids)
    if (auto got = d.process_output(pid)) v.logs.push_back({pid, got->first, got->second});
  d.hdr->metrics.append_prometheus(v.user_metrics);
  v.records_timeline = d.records_timeline();
  if (v.records_timeline) v.timeline = d.timeline();
  return v;
}

/// The JSON of every read-only endpoint but the logs, made from one loop_view.
struct published {
  std::string nodes, actors, tasks, objects, config;
  std::string metrics;                               // Prometheus' text format (/metrics)
  std::set<std::uint64_t> actor_ids, live_task_ids;  // what kill and cancel may name
  bool records_timeline = false;
  std::vector<timeline_entry> timeline;  // the timeline's calls, drawn when asked for
};

/// The timeline view's JSON: the slices of the last `window` seconds before `now_ns` (the
/// driver's steady clock), grouped by process, times in microseconds before now.
inline std::string recent_timeline(std::vector<timeline_entry> calls, std::int64_t now_ns,
                                   double window) {
  const auto from = now_ns - static_cast<std::int64_t>(window * 1e9);
  std::erase_if(calls, [&](const timeline_entry& c) { return c.ended_ns < from; });
  nlohmann::json tracks = nlohmann::json::array();
  int pid = -1;
  for (const timeline_slice& s : timeline_slices(calls)) {
    const timeline_entry& c = *s.call;
    if (c.pid != pid || tracks.empty()) {
      pid = c.pid;
      tracks.push_back({{"pid", c.pid},
                        {"kind", c.actor ? "actor"
                                 : c.pid ? "worker"
                                         : "driver"},
                        {"slices", nlohmann::json::array()}});
    }
    tracks.back()["slices"].push_back(
        {{"name", std::string(c.name.empty() ? "a task" : c.name)},
         {"id", c.id},
         {"start_us", static_cast<double>(std::max(s.start_ns, from) - now_ns) / 1e3},
         {"end_us", static_cast<double>(c.ended_ns - now_ns) / 1e3},
         {"failed", c.failed}});
  }
  return nlohmann::json{{"recording", true}, {"window_s", window}, {"tracks", std::move(tracks)}}
      .dump();
}

/// The runtime's metrics and the user's (ray::metrics), in Prometheus' text format: calls by
/// function and state, actors by state, the store's bytes, each process's CPU and memory.
inline std::string prometheus_text(const loop_view& v, const std::string& process_metrics) {
  auto label = [](std::string_view s) {
    std::string out;
    for (char c : s) {
      if (c == '"' || c == '\\') out += '\\';
      if (c == '\n') {
        out += "\\n";
        continue;
      }
      out += c;
    }
    return out;
  };
  std::map<std::pair<std::string, std::string_view>, std::size_t> calls;
  for (const auto& t : v.tasks) ++calls[{t.name, state::to_string(t.state)}];
  std::map<std::string_view, std::size_t> actors;
  for (const auto& a : v.actors) ++actors[state::to_string(a.state)];
  std::string out =
      "# HELP coray_tasks Calls the runtime knows (live, and the finished ones its history "
      "keeps), by function and state.\n# TYPE coray_tasks gauge\n";
  for (const auto& [key, n] : calls)
    out += fmt::format("coray_tasks{{function=\"{}\",state=\"{}\"}} {}\n", label(key.first),
                       key.second, n);
  out += "# HELP coray_actors Actors by state.\n# TYPE coray_actors gauge\n";
  for (const auto& [st, n] : actors) out += fmt::format("coray_actors{{state=\"{}\"}} {}\n", st, n);
  std::size_t spilled_bytes = 0;
  for (const auto& o : v.objects)
    if (o.location == state::object_location::spilled) spilled_bytes += o.size;
  out += fmt::format(
      "# HELP coray_object_store_used_bytes Bytes of the object store in use.\n"
      "# TYPE coray_object_store_used_bytes gauge\ncoray_object_store_used_bytes {}\n"
      "# HELP coray_object_store_capacity_bytes The object store's size.\n"
      "# TYPE coray_object_store_capacity_bytes gauge\ncoray_object_store_capacity_bytes {}\n"
      "# HELP coray_object_store_spilled_bytes Bytes of objects in the spill file now.\n"
      "# TYPE coray_object_store_spilled_bytes gauge\ncoray_object_store_spilled_bytes {}\n"
      "# HELP coray_objects_spilled_total Objects written to the spill file so far.\n"
      "# TYPE coray_objects_spilled_total counter\ncoray_objects_spilled_total {}\n",
      v.store_capacity - v.store_free, v.store_capacity, spilled_bytes, v.spilled_so_far);
  out +=
      "# HELP coray_process_cpu_seconds_total CPU time of each of the runtime's processes.\n"
      "# TYPE coray_process_cpu_seconds_total counter\n"
      "# HELP coray_process_resident_memory_bytes Resident memory of each process.\n"
      "# TYPE coray_process_resident_memory_bytes gauge\n";
  out += process_metrics;
  out += v.user_metrics;
  return out;
}

/// Turns loop_views into published JSON; keeps the CPU samples between two (the dashboard's
/// thread only).
class snapshot_maker {
 public:
  explicit snapshot_maker(nlohmann::json config) : config_(std::move(config)) {}

  published make(const loop_view& v) {
    published p;
    p.records_timeline = v.records_timeline;
    p.timeline = v.timeline;
    const auto now = std::chrono::steady_clock::now();

    // What each process runs now, and each actor's calls by state.
    std::map<int, std::string> running_on;
    struct calls {
      std::size_t done = 0, failed = 0, running = 0, queued = 0;
    };
    std::map<std::uint64_t, calls> by_actor;
    for (const auto& t : v.tasks) {
      if (t.state == state::task_state::running && t.pid > 0)
        running_on[t.pid] = std::string(output_short_name(t.name));
      if (t.state != state::task_state::finished && t.state != state::task_state::failed)
        p.live_task_ids.insert(t.id);
      if (!t.actor_id) continue;
      calls& c = by_actor[t.actor_id];
      switch (t.state) {
        case state::task_state::finished:
          ++c.done;
          break;
        case state::task_state::failed:
          ++c.failed;
          break;
        case state::task_state::running:
          ++c.running;
          break;
        default:
          ++c.queued;
      }
    }
    std::map<std::uint64_t, const state::actor_info*> actor_of;
    for (const auto& a : v.actors) actor_of[a.id] = &a;

    nlohmann::json processes = nlohmann::json::array();
    std::string process_metrics;  // each process's CPU time and resident memory
    // A process of another node (cluster mode) has that node's pid: it is not sampled here,
    // but shown as its node last reported it (state::worker_info's usage), if it has.
    auto process = [&](int pid, const char* role, const char* st, std::string name, int node,
                       const state::worker_info* w = nullptr) {
      nlohmann::json j{
          {"pid", pid}, {"role", role}, {"state", st}, {"name", std::move(name)}, {"node", node}};
      proc_sample s;
      if (node == 0)
        s = sample_proc(pid);
      else if (w && w->cpu_seconds >= 0)
        s = {w->cpu_seconds, w->rss_bytes, true};
      const std::uint64_t key =
          std::uint64_t{static_cast<std::uint32_t>(node)} << 32 | static_cast<std::uint32_t>(pid);
      double cpu = 0;
      if (s.exists) {
        auto prev = cpu_.find(key);
        if (prev != cpu_.end()) {
          const double wall = std::chrono::duration<double>(now - prev->second.second).count();
          if (wall > 0) cpu = 100.0 * (s.cpu_seconds - prev->second.first) / wall;
        }
        seen_cpu_[key] = {s.cpu_seconds, now};
      }
      if (node != 0 && !s.exists) {  // not reported yet
        j["cpu_percent"] = nullptr;
        j["rss_bytes"] = nullptr;
      } else {
        j["cpu_percent"] = std::max(0.0, cpu);
        j["rss_bytes"] = s.rss_bytes;
      }
      if (s.exists) {
        // Another node's process also names its node (its pid is that node's).
        const std::string where = node ? fmt::format(",node=\"{}\"", node) : std::string();
        process_metrics += fmt::format(
            "coray_process_cpu_seconds_total{{pid=\"{0}\",role=\"{1}\"{4}}} {2}\n"
            "coray_process_resident_memory_bytes{{pid=\"{0}\",role=\"{1}\"{4}}} {3}\n",
            pid, role, s.cpu_seconds, s.rss_bytes, where);
      }
      auto r = node == 0 ? running_on.find(pid) : running_on.end();
      j["current_task"] = r == running_on.end() ? "" : r->second;
      j["gpu_ids"] = nlohmann::json::array();  // the driver's: none of the runtime's
      processes.push_back(std::move(j));
    };
    seen_cpu_.clear();
    process(static_cast<int>(getpid()), "driver", "ALIVE", "driver", 0);
    for (const auto& w : v.workers) {
      if (w.kind == state::worker_kind::task_worker) {
        process(w.pid, "task_worker",
                w.pid == 0 ? "STARTING"
                : w.alive  ? "ALIVE"
                           : "DEAD",
                "worker", w.node, &w);
        processes.back()["calls_in_flight"] = w.calls_in_flight;
        processes.back()["gpu_ids"] = w.gpu_ids;
      } else {
        auto a = actor_of.find(w.actor_id);
        process(
            w.pid, "actor", "ALIVE",
            a == actor_of.end() ? "actor" : std::string(output_short_name(a->second->class_name)),
            w.node, &w);
        processes.back()["actor_id"] = w.actor_id;
        processes.back()["gpu_ids"] = w.gpu_ids;
      }
    }
    cpu_.swap(seen_cpu_);
    p.metrics = prometheus_text(v, process_metrics);
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    p.nodes = nlohmann::json{{"node",
                              {{"hostname", host},
                               {"resources_total", v.resources_total},
                               {"resources_available", v.resources_free},
                               {"store", store_json(v)}}},
                             {"processes", std::move(processes)}}
                  .dump();

    nlohmann::json actors = nlohmann::json::array();
    for (const auto& a : v.actors) {
      p.actor_ids.insert(a.id);
      const calls c = by_actor[a.id];
      actors.push_back({{"id", a.id},
                        {"class_name", a.class_name},
                        {"name", a.name},
                        {"state", state::to_string(a.state)},
                        {"pid", a.pid},
                        {"restarts", a.restarts},
                        {"death_cause", a.death_cause},
                        {"calls_done", c.done},
                        {"calls_failed", c.failed},
                        {"calls_running", c.running},
                        {"calls_queued", c.queued}});
    }
    p.actors = nlohmann::json{{"actors", std::move(actors)}}.dump();

    // The live calls and the newest finished ones, at most max_tasks_listed; all counted.
    nlohmann::json summary = nlohmann::json::object();
    for (const auto& t : v.tasks) {
      auto& n = summary[t.name][std::string(state::to_string(t.state))];
      n = n.is_null() ? 1 : n.get<std::size_t>() + 1;
    }
    nlohmann::json tasks = nlohmann::json::array();
    const std::size_t first =
        v.tasks.size() > max_tasks_listed ? v.tasks.size() - max_tasks_listed : 0;
    for (std::size_t i = v.tasks.size(); i-- > first;) {
      const auto& t = v.tasks[i];
      tasks.push_back({{"id", t.id},
                       {"name", t.name},
                       {"state", state::to_string(t.state)},
                       {"actor_id", t.actor_id},
                       {"pid", t.pid},
                       {"attempt", t.attempt}});
    }
    p.tasks =
        nlohmann::json{
            {"total", v.tasks.size()}, {"summary", std::move(summary)}, {"tasks", std::move(tasks)}}
            .dump();

    nlohmann::json objects = nlohmann::json::array();
    for (const auto& o : v.objects)
      objects.push_back({{"id", o.id},
                         {"size", o.size},
                         {"location", state::to_string(o.location)},
                         {"handles", o.handles},
                         {"store_refs", o.store_refs},
                         {"pins", o.pins},
                         {"contained", o.contained}});
    p.objects = nlohmann::json{{"store", store_json(v)}, {"objects", std::move(objects)}}.dump();

    nlohmann::json config = config_;
    config["resources"] = v.resources_total;
    config["object_store_bytes"] = v.store_capacity;
    p.config = config.dump();
    return p;
  }

  static constexpr std::size_t max_tasks_listed = 1000;

 private:
  static nlohmann::json store_json(const loop_view& v) {
    return {{"capacity", v.store_capacity},
            {"used", v.store_capacity - v.store_free},
            {"spilled_so_far", v.spilled_so_far}};
  }
  nlohmann::json config_;
  using sample = std::pair<double, std::chrono::steady_clock::time_point>;
  std::map<std::uint64_t, sample> cpu_, seen_cpu_;  // by node and pid
};

/// The processes whose output the logs view reads: every worker and actor the records name.
inline std::set<int> output_pids(const loop_view& v) {
  std::set<int> pids;
  for (const auto& w : v.workers)
    if (w.pid > 0) pids.insert(w.pid);
  for (const auto& a : v.actors)
    if (a.pid > 0) pids.insert(a.pid);
  return pids;
}

/// The name a process's lines carry in the logs: the actor's class, or the function a task
/// worker runs now, else the last one it ran.
inline std::map<int, std::string> output_names(const loop_view& v) {
  std::map<int, std::string> names;
  auto name = [&](bool running) {
    for (const auto& t : v.tasks)  // the live calls, then the finished ones, oldest first
      if ((t.state == state::task_state::running) == running && t.pid > 0 && !t.actor_call)
        names[t.pid] = std::string(output_short_name(t.name));
  };
  name(false);
  name(true);
  for (const auto& a : v.actors)
    if (a.pid > 0) names[a.pid] = std::string(output_short_name(a.class_name));
  return names;
}

}  // namespace detail::dashboard
CORAY_END_NAMESPACE
