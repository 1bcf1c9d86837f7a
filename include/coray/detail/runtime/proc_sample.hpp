#pragma once
/// A process's CPU time and resident memory as /proc says: the dashboard samples this
/// machine's processes with it, and a cluster's node samples its own for rank 0.

#include <unistd.h>

#include <coray/version.hpp>
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// A process's CPU time and resident memory, from /proc.
struct proc_sample {
  double cpu_seconds = 0;
  std::uint64_t rss_bytes = 0;
  bool exists = false;
};
inline proc_sample sample_proc(int pid) {
  proc_sample s;
  if (pid <= 0) return s;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return s;
  // The command name may hold spaces and parentheses: the fields start after the last ')'.
  const auto close = line.rfind(')');
  if (close == std::string::npos) return s;
  std::istringstream fields(line.substr(close + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0, rss_pages = 0;
  for (int i = 3; fields >> field; ++i) {  // field 3 is the state
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
    if (i == 24) {
      rss_pages = std::stoull(field);
      break;
    }
  }
  static const long ticks = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
  s.cpu_seconds = static_cast<double>(utime + stime) / static_cast<double>(ticks);
  s.rss_bytes = rss_pages * static_cast<unsigned long long>(page);
  s.exists = true;
  return s;
}

}  // namespace detail
CORAY_END_NAMESPACE
