#pragma once
/// Facts about the machine the runtime sizes itself by: usable cores (affinity and cgroup
/// quota) and memory (physical RAM and cgroup limit).

#include <fmt/format.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <coray/version.hpp>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// Cores this process may run on: the CPU affinity mask, further capped by a cgroup v2
/// `cpu.max` quota (rounded up). Never less than 1.
/// The GPUs this process may use, by the ids CUDA programs know them by: the values of
/// CUDA_VISIBLE_DEVICES when it is set (empty: none), else one per GPU the NVIDIA driver
/// lists under /proc/driver/nvidia/gpus ("0", "1", ...). None without a driver.
inline std::vector<std::string> detect_gpu_ids() {
  std::vector<std::string> ids;
  if (const char* v = std::getenv("CUDA_VISIBLE_DEVICES")) {
    std::string s(v);
    for (std::size_t at = 0; at <= s.size();) {
      std::size_t end = std::min(s.find(',', at), s.size());
      std::string id = s.substr(at, end - at);
      id.erase(0, id.find_first_not_of(" \t"));
      id.erase(id.find_last_not_of(" \t") + 1);
      if (!id.empty()) ids.push_back(id);
      at = end + 1;
    }
    return ids;
  }
  std::error_code ec;
  std::size_t n = 0;
  for (std::filesystem::directory_iterator it("/proc/driver/nvidia/gpus", ec), end;
       !ec && it != end; it.increment(ec))
    ++n;
  for (std::size_t i = 0; i < n; ++i) ids.push_back(std::to_string(i));
  return ids;
}

inline unsigned usable_cores() {
  unsigned n = 0;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) n = static_cast<unsigned>(CPU_COUNT(&set));
  if (n == 0) n = static_cast<unsigned>(std::max(1L, sysconf(_SC_NPROCESSORS_ONLN)));
  std::ifstream f("/sys/fs/cgroup/cpu.max");
  std::string quota;
  long long period = 0;
  if (f >> quota >> period && quota != "max" && period > 0) {
    long long q = std::stoll(quota);
    if (q > 0)
      n = std::min<unsigned>(n, static_cast<unsigned>(std::max(1LL, (q + period - 1) / period)));
  }
  return std::max(1u, n);
}

/// Physical memory available to this process: RAM, capped by a cgroup v2 `memory.max`.
inline std::uint64_t usable_memory_bytes() {
  std::uint64_t ram = static_cast<std::uint64_t>(sysconf(_SC_PHYS_PAGES)) *
                      static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
  std::ifstream f("/sys/fs/cgroup/memory.max");
  std::string limit;
  if (f >> limit && limit != "max") {
    std::uint64_t l = std::stoull(limit);
    if (l > 0) ram = std::min(ram, l);
  }
  return ram;
}

/// "SIGKILL (Killed)" for a signal number.
inline std::string signal_description(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  const char* desc = sigdescr_np(sig);
  std::string s = abbrev ? fmt::format("SIG{}", abbrev) : fmt::format("signal {}", sig);
  if (desc) s += fmt::format(" ({})", desc);
  return s;
}

/// The wait status the supervisor reports for a process it could not start (fork or
/// posix_spawn refused with `error`): exit code 127, a shell's "cannot run", with the errno in
/// bits a real wait status leaves zero, for describe_exit to say why.
inline int start_failure_status(int error) { return W_EXITCODE(127, 0) | (error << 16); }

/// Words for a wait() status: "was killed by SIGSEGV (Segmentation fault)", "exited with code
/// 3", or "could not be started: Resource temporarily unavailable".
inline std::string describe_exit(int wait_status) {
  if (WIFEXITED(wait_status) && (wait_status >> 16) != 0)
    return fmt::format("could not be started: {}", strerror(wait_status >> 16));
  if (WIFSIGNALED(wait_status))
    return fmt::format("was killed by {}", signal_description(WTERMSIG(wait_status)));
  if (WIFEXITED(wait_status)) return fmt::format("exited with code {}", WEXITSTATUS(wait_status));
  return "stopped";
}

}  // namespace detail
CORAY_END_NAMESPACE
