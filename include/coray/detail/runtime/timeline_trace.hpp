#pragma once
/// The timeline's calls as slices on their processes' tracks, and as Chrome's trace-event
/// JSON: what ray::timeline writes and the dashboard serves (design.md, "The runtime core",
/// on the timeline).

#include <fmt/format.h>

#include <algorithm>
#include <coray/detail/runtime/state_records.hpp>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// `s` as a JSON string's contents.
inline std::string json_escaped(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\')
      out += {'\\', c};
    else if (static_cast<unsigned char>(c) < 0x20)
      out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
    else
      out += c;
  }
  return out;
}

/// One call drawn on its process's track, from `start_ns` to its end.
struct timeline_slice {
  const timeline_entry* call;
  std::int64_t start_ns;
};

/// Sorts `calls` by process, then by end, and draws each from when it was sent to its
/// process (or when the call before it there ended, if later) to when its reply was read.
inline std::vector<timeline_slice> timeline_slices(std::vector<timeline_entry>& calls) {
  std::sort(calls.begin(), calls.end(), [](const auto& a, const auto& b) {
    return a.pid != b.pid ? a.pid < b.pid : a.ended_ns < b.ended_ns;
  });
  std::vector<timeline_slice> out;
  out.reserve(calls.size());
  int pid = -1;
  std::int64_t previous_end = 0;
  for (const auto& c : calls) {
    if (c.pid != pid) {
      pid = c.pid;
      previous_end = 0;
    }
    const std::int64_t sent = c.sent_ns ? c.sent_ns : c.ended_ns;
    out.push_back({&c, std::min(std::max(sent, previous_end), c.ended_ns)});
    previous_end = c.ended_ns;
  }
  return out;
}

/// The calls in Chrome's trace-event format: a track per process (named), an `X` slice per
/// call, and an arrow from the driver's track at submission to the slice.
inline std::string timeline_trace(std::vector<timeline_entry> calls, int driver_pid) {
  std::int64_t t0 = calls.empty() ? 0 : calls.front().submitted_ns;
  for (const auto& c : calls) t0 = std::min(t0, c.submitted_ns);
  auto us = [t0](std::int64_t ns) { return static_cast<double>(ns - t0) / 1000.0; };
  std::string out = "{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n";
  out += fmt::format(
      "{{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":{0},\"tid\":{0},"
      "\"args\":{{\"name\":\"driver (pid {0})\"}}}}",
      driver_pid);
  int pid = -1;
  for (const timeline_slice& s : timeline_slices(calls)) {
    const timeline_entry& c = *s.call;
    const int track = c.pid ? c.pid : driver_pid;
    if (c.pid != pid) {
      pid = c.pid;
      if (c.pid)
        out += fmt::format(
            ",\n{{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":{0},\"tid\":{0},"
            "\"args\":{{\"name\":\"{1} (pid {0})\"}}}}",
            c.pid, c.actor ? "actor" : "worker");
    }
    const std::string name = json_escaped(c.name.empty() ? "a task" : c.name);
    out += fmt::format(
        ",\n{{\"name\":\"{}\",\"cat\":\"{}\",\"ph\":\"X\",\"pid\":{},\"tid\":{},"
        "\"ts\":{:.3f},\"dur\":{:.3f},\"args\":{{\"id\":{},\"argument_bytes\":{},"
        "\"attempt\":{},\"outcome\":\"{}\"}}}}",
        name, c.actor ? "actor_call" : "task", track, track, us(s.start_ns),
        us(c.ended_ns) - us(s.start_ns), c.id, c.argument_bytes, c.attempt,
        c.failed ? "failed" : "ok");
    // The arrow: from an instant slice on the driver's track at submission to the call.
    out += fmt::format(
        ",\n{{\"name\":\"submit {0}\",\"cat\":\"submit\",\"ph\":\"X\",\"pid\":{1},"
        "\"tid\":{1},\"ts\":{2:.3f},\"dur\":0}}"
        ",\n{{\"name\":\"call\",\"cat\":\"flow\",\"ph\":\"s\",\"id\":{3},\"pid\":{1},"
        "\"tid\":{1},\"ts\":{2:.3f}}}"
        ",\n{{\"name\":\"call\",\"cat\":\"flow\",\"ph\":\"f\",\"bp\":\"e\",\"id\":{3},"
        "\"pid\":{4},\"tid\":{4},\"ts\":{5:.3f}}}",
        name, driver_pid, us(c.submitted_ns), c.id, track, us(s.start_ns));
  }
  out += "\n]}\n";
  return out;
}

}  // namespace detail
CORAY_END_NAMESPACE
