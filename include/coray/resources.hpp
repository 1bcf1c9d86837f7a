#pragma once
/// The runtime's resources, as Ray reports them: CPUs, GPUs and custom resources by name
/// ("CPU", "GPU", then yours), all of them or those free now; and the GPUs the running task
/// or actor was given. Tasks and actors ask for resources with task_options and
/// actor_options (num_cpus, num_gpus, resources); the runtime's are runtime_options'.
///
///   ray::runtime rt({.num_gpus = 2, .resources = {{"disk", 1}}});
///   auto all = ray::cluster_resources();     // {"CPU": 8, "GPU": 2, "disk": 1}
///   auto free = ray::available_resources();  // what running tasks and actors leave

#include <coray/detail/runtime/driver.hpp>
#include <coray/detail/runtime/foreign.hpp>
#include <coray/detail/runtime/process.hpp>
#include <coray/errors.hpp>
#include <map>
#include <string>
#include <vector>

CORAY_BEGIN_NAMESPACE

namespace detail {
inline std::map<std::string, double> runtime_resources(const char* what, bool available) {
  return on_loop(what, [&](process& p) { return require_driver(p, what).resources(available); });
}
}  // namespace detail

/// Everything the runtime has, by name: {"CPU": n, "GPU": n (when it has GPUs), custom...}.
/// Driver only; thread-safe there.
inline std::map<std::string, double> cluster_resources() {
  return detail::runtime_resources("ray::cluster_resources", false);
}

/// What is free now: the totals less what running tasks (their workers' leases) and actors
/// hold. Driver only; thread-safe there.
inline std::map<std::string, double> available_resources() {
  return detail::runtime_resources("ray::available_resources", true);
}

/// The ids of the GPUs the running task or actor was given (CUDA_VISIBLE_DEVICES holds the
/// same, comma-separated): the runtime's ids, which are CUDA_VISIBLE_DEVICES's own values
/// when the driver had it set. Empty for a call given no GPU, and in the driver, as in Ray.
/// From the thread running the task or actor's calls.
inline std::vector<std::string> get_gpu_ids() { return detail::assigned_gpu_ids(); }

CORAY_END_NAMESPACE
