#pragma once
/// The dashboard's copy of the workers' output: what each process wrote, and all of it
/// together with Ray's `(name pid=1234)` prefix, each a bounded text with a running byte
/// offset so that a page can ask for what came after the last byte it has (`since`).
///
/// The supervisor keeps only the last 16 KiB of each stream (state::get_log); each time the
/// dashboard reads it, what is new is the part of that window past its overlap with the one
/// read before. A burst of more than 16 KiB between two reads loses its middle, as the
/// supervisor did. Thread-safe (one mutex; the collector writes, the HTTP threads read).

#include <algorithm>
#include <coray/version.hpp>
#include <cstdint>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

CORAY_BEGIN_NAMESPACE
namespace detail::dashboard {

/// A text that keeps its last `capacity` bytes and counts those it dropped.
class bounded_text {
 public:
  explicit bounded_text(std::size_t capacity) : capacity_(capacity) {}
  void append(std::string_view s) {
    text_.append(s);
    if (text_.size() > capacity_) {
      const std::size_t cut = text_.size() - capacity_;
      text_.erase(0, cut);
      dropped_ += cut;
    }
  }
  /// The offset after the last byte.
  std::uint64_t end() const noexcept { return dropped_ + text_.size(); }
  /// What came after byte `since` (all that is kept if that is gone), and where it started.
  nlohmann::json since(std::uint64_t since) const {
    const std::uint64_t from = since < dropped_ ? dropped_ : since > end() ? end() : since;
    return {{"text", text_.substr(static_cast<std::size_t>(from - dropped_))},
            {"start", from},
            {"next", end()}};
  }

 private:
  std::size_t capacity_;
  std::string text_;
  std::uint64_t dropped_ = 0;
};

/// The bytes of `now` that came after `before`, two windows onto the same growing stream:
/// `now` starts with the end of `before` (the longest such overlap), or is all new.
inline std::string_view appended(std::string_view before, std::string_view now) {
  if (now.substr(0, before.size()) == before) return now.substr(before.size());  // not cut yet
  // Cut at the front since: the overlap is most of a window, far longer than the probe.
  const std::string_view probe =
      now.substr(0, std::min<std::size_t>({now.size(), before.size(), 64}));
  for (std::size_t at = before.find(probe); at != std::string_view::npos;
       at = before.find(probe, at + 1)) {
    const std::string_view tail = before.substr(at);
    if (now.size() >= tail.size() && now.substr(0, tail.size()) == tail)
      return now.substr(tail.size());
  }
  return now;
}

class log_book {
 public:
  static constexpr std::size_t per_process_bytes = 64 * 1024, all_bytes = 256 * 1024;

  /// The windows just read of process `pid`'s stdout and stderr; `name` is what it runs.
  void absorb(int pid, const std::string& name, const std::string& out, const std::string& err) {
    std::lock_guard lock(mu_);
    auto [it, fresh] = processes_.try_emplace(pid);
    process& p = it->second;
    p.name = name;
    take(p, pid, p.out, out);
    take(p, pid, p.err, err);
  }

  /// {"processes": [{pid, name, bytes}], "text", "start", "next"}: all the output since `since`.
  nlohmann::json all(std::uint64_t since) const {
    std::lock_guard lock(mu_);
    nlohmann::json j = all_.since(since);
    j["processes"] = nlohmann::json::array();
    for (const auto& [pid, p] : processes_)
      j["processes"].push_back({{"pid", pid}, {"name", p.name}, {"bytes", p.text.end()}});
    return j;
  }
  /// {"pid", "name", "text", "start", "next"}, or null for a process never seen.
  nlohmann::json of(int pid, std::uint64_t since) const {
    std::lock_guard lock(mu_);
    auto it = processes_.find(pid);
    if (it == processes_.end()) return nullptr;
    nlohmann::json j = it->second.text.since(since);
    j["pid"] = pid;
    j["name"] = it->second.name;
    return j;
  }
  bool knows(int pid) const {
    std::lock_guard lock(mu_);
    return processes_.count(pid) != 0;
  }

 private:
  struct stream {
    std::string window;         // what the supervisor returned last
    bool at_line_start = true;  // in the all-processes text
  };
  struct process {
    std::string name;
    stream out, err;
    bounded_text text{per_process_bytes};
  };

  void take(process& p, int pid, stream& s, const std::string& window) {
    const std::string_view fresh = appended(s.window, window);
    s.window = window;
    if (fresh.empty()) return;
    p.text.append(fresh);
    const std::string prefix =
        "(" + (p.name.empty() ? "" : p.name + " ") + "pid=" + std::to_string(pid) + ") ";
    std::string lines;
    for (char c : fresh) {
      if (s.at_line_start) lines += prefix;
      lines += c;
      s.at_line_start = c == '\n';
    }
    all_.append(lines);
  }

  mutable std::mutex mu_;
  std::map<int, process> processes_;
  bounded_text all_{all_bytes};
};

}  // namespace detail::dashboard
CORAY_END_NAMESPACE
