#pragma once
/// The definitions behind entry.hpp: included by it in header-only mode, and compiled once
/// by src/coray.cpp into coray::coray_compiled in compiled mode (CORAY_COMPILED_LIB).

#include <fmt/format.h>

#include <cmath>
#include <coray/detail/runtime/entry.hpp>
#include <coray/detail/runtime/local_driver.hpp>
#include <coray/detail/runtime/resource_ledger.hpp>
#include <coray/detail/runtime/supervisor.hpp>
#include <coray/detail/runtime/system.hpp>
#include <coray/errors.hpp>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// A resource amount given by an option or an environment variable; invalid_resources if
/// it is not a number of 0 or more.
inline double checked_amount(double x, std::string_view what) {
  if (to_resource_amount(x) < 0)
    throw invalid_resources(fmt::format(
        "ray::runtime: {} is {}: an amount of a resource must be a finite number, 0 or more", what,
        x));
  return x;
}
inline std::optional<double> amount_from_env(const char* var) {
  const char* v = std::getenv(var);
  if (!v || !*v) return std::nullopt;
  char* end = nullptr;
  const double x = std::strtod(v, &end);
  if (end == v || *end != '\0')
    throw invalid_resources(fmt::format("ray::runtime: {}={} is not a number", var, v));
  return checked_amount(x, var);
}
/// CORAY_RESOURCES: custom resources as `name=amount,name=amount` ("disk=2,foo=1").
inline std::map<std::string, double> resources_from_env() {
  std::map<std::string, double> out;
  const char* v = std::getenv("CORAY_RESOURCES");
  if (!v) return out;
  const std::string s(v);
  for (std::size_t at = 0; at < s.size();) {
    const std::size_t end = std::min(s.find(',', at), s.size());
    const std::string item = s.substr(at, end - at);
    const std::size_t eq = item.find('=');
    char* num_end = nullptr;
    const double x = eq == std::string::npos ? 0 : std::strtod(item.c_str() + eq + 1, &num_end);
    if (eq == 0 || eq == std::string::npos || num_end == item.c_str() + eq + 1 || *num_end)
      throw invalid_resources(fmt::format(
          "ray::runtime: CORAY_RESOURCES={} is not a list of name=amount separated by commas", s));
    out[item.substr(0, eq)] = checked_amount(x, "CORAY_RESOURCES");
    at = end + 1;
  }
  return out;
}

/// Fills in the runtime's resources: the options, else the environment (CORAY_NUM_CPUS,
/// CORAY_NUM_GPUS, CORAY_RESOURCES), else the usable cores (at least num_workers) and the
/// GPUs detected.
inline void resolve_resources(driver_config& cfg) {
  if (cfg.num_cpus) checked_amount(*cfg.num_cpus, "runtime_options::num_cpus");
  if (!cfg.num_cpus) cfg.num_cpus = amount_from_env("CORAY_NUM_CPUS");
  // At least one per worker: num_workers above the cores still runs that many tasks at once,
  // as it did before CPUs were counted, and default tasks keep their fast path.
  if (!cfg.num_cpus) cfg.num_cpus = std::max(usable_cores(), cfg.num_workers);
  if (cfg.num_gpus) checked_amount(*cfg.num_gpus, "runtime_options::num_gpus");
  if (!cfg.num_gpus) cfg.num_gpus = amount_from_env("CORAY_NUM_GPUS");
  cfg.gpu_ids = detect_gpu_ids();
  if (cfg.num_gpus) {
    // As many ids as started GPUs: the detected ones first, then numbers (a declared GPU).
    const auto n = static_cast<std::size_t>(std::ceil(std::min(*cfg.num_gpus, 1e6)));
    cfg.gpu_ids.resize(std::min(cfg.gpu_ids.size(), n));
    while (cfg.gpu_ids.size() < n) cfg.gpu_ids.push_back(std::to_string(cfg.gpu_ids.size()));
  } else {
    cfg.num_gpus = static_cast<double>(cfg.gpu_ids.size());
  }
  if (cfg.gpu_ids.size() > resource_ledger::max_gpus)
    throw invalid_resources(fmt::format("ray::runtime: {} GPUs: a runtime may have at most {}",
                                        cfg.gpu_ids.size(), resource_ledger::max_gpus));
  if (cfg.resources.empty()) cfg.resources = resources_from_env();
  for (const auto& [name, x] : cfg.resources) {
    if (name.empty() || name == "CPU" || name == "GPU")
      throw invalid_resources(fmt::format(
          "ray::runtime: '{}' cannot name a custom resource (CPU and GPU are num_cpus and "
          "num_gpus)",
          name));
    checked_amount(x, fmt::format("the amount of resource '{}'", name));
  }
}

CORAY_API void resolve_driver_config(driver_config& cfg) {
  if (!cfg.num_workers) cfg.num_workers = usable_cores();
  resolve_resources(cfg);
  // The store lives in shared memory: one larger than the memory this process may use could
  // never be filled, and would only fail later, less clearly.
  const std::uint64_t memory = usable_memory_bytes();
  if (!cfg.object_store_bytes) cfg.object_store_bytes = static_cast<std::size_t>(memory * 3 / 10);
  if (cfg.object_store_bytes > memory)
    throw usage_error(fmt::format(
        "ray::runtime: runtime_options::object_store_bytes is {} bytes, more than the {} "
        "bytes of memory this process may use (RAM, or its cgroup's memory.max): the store "
        "lives in shared memory",
        cfg.object_store_bytes, memory));
  if (cfg.argv.empty()) {
    // No argv given: the program's own arguments, as spawned workers re-run it.
    std::ifstream f("/proc/self/cmdline", std::ios::binary);
    std::string a;
    while (std::getline(f, a, '\0')) cfg.argv.push_back(a);
    if (cfg.argv.empty()) cfg.argv.emplace_back("coray-worker");
  }
}

CORAY_API std::unique_ptr<driver> make_local_driver(driver_config cfg, cluster_seam* cluster) {
  resolve_driver_config(cfg);
  return std::make_unique<local_driver>(std::move(cfg), cluster);
}

CORAY_API void enter_spawned_worker() { enter_worker_if_spawned(); }

}  // namespace detail
CORAY_END_NAMESPACE
