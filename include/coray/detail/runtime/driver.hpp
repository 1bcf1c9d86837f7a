#pragma once
/// What public code may ask of the driver beyond any process's loop: the narrow interface
/// ray::spawn, the pools and the process introspection reach it through. `process::driver()`
/// gives it in the driver and null in a worker; the implementation is `local_driver`
/// (local_driver.hpp), which runtime.hpp builds.

#include <fmt/format.h>

#include <coray/detail/runtime/call_message.hpp>
#include <coray/detail/runtime/output_options.hpp>
#include <coray/detail/runtime/process.hpp>
#include <coray/detail/runtime/state_records.hpp>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// How the supervisor starts worker processes (ray::start_method, as the driver passes it on).
enum class start_method_id : std::uint32_t { fork = 0, spawn = 1 };

/// What the runtime builds a driver from (ray::runtime_options, resolved).
struct driver_config {
  std::uint32_t num_workers;  // 0: the usable cores
  std::uint32_t max_actors;
  std::size_t object_store_bytes;  // 0: 30% of usable memory
  start_method_id method;
  std::size_t inline_threshold;
  std::uint32_t spin_us;
  std::uint32_t max_tasks_in_flight_per_worker;
  std::vector<std::string> argv;            // empty: /proc/self/cmdline's
  std::string spill_directory;              // empty: no spilling
  std::optional<double> num_cpus;           // unset: CORAY_NUM_CPUS, else the usable cores
  std::optional<double> num_gpus;           // unset: CORAY_NUM_GPUS, else the GPUs detected
  std::map<std::string, double> resources;  // empty: CORAY_RESOURCES's
  std::vector<std::string> gpu_ids;         // filled in by make_local_driver with the above
  output_options output;                    // workers' stdout and stderr
  std::size_t task_history = 10000;         // finished calls the state API keeps
  bool record_timeline = false;             // for ray::timeline
};

class driver : public process {
 public:
  driver* as_driver() noexcept final { return this; }

  virtual std::uint32_t num_workers() const noexcept = 0;
  /// Pids of the task workers, in slot order (0 while one starts).
  virtual std::vector<int> worker_pids() const = 0;
  /// The state API's records (ray::state), copied on the loop thread.
  virtual std::vector<state::task_info> list_tasks() const = 0;
  virtual std::vector<state::actor_info> list_actors() const = 0;
  virtual std::vector<state::worker_info> list_workers() const = 0;
  /// The calls the timeline kept (runtime_options::record_timeline), oldest first.
  virtual std::vector<timeline_entry> timeline() const = 0;
  /// Whether the timeline records.
  virtual bool records_timeline() const noexcept = 0;
  virtual std::vector<state::object_info> list_objects() const = 0;
  /// The tail of process `pid`'s stdout and stderr; nullopt if the supervisor did not answer.
  virtual std::optional<std::pair<std::string, std::string>> process_output(int pid) = 0;
  /// The pid of an actor's process (0 while it starts or after it ended).
  virtual int actor_pid(std::uint64_t id) const = 0;

  /// An actor's process for ray::actor_process: its pid (0 while it starts), whether it
  /// ended and, once it has, its wait status.
  struct actor_process_status {
    int pid = 0;
    bool ended = false;
    int wait_status = 0;
  };
  /// nullopt once the actor is forgotten (it ended and no handle is left).
  virtual std::optional<actor_process_status> actor_status(std::uint64_t id) const = 0;
  /// The runtime's resources by Ray's names (CPU, GPU, custom): all, or those free now; in a
  /// cluster, every node's summed or (`node` 0 or more) one node's.
  virtual std::map<std::string, double> resources(bool available, int node = -1) = 0;
  /// Placement groups (placement_group.hpp): a new one's id and its readiness state; its
  /// removal; each bundle's node once reserved (empty before).
  virtual std::pair<std::uint64_t, state_ptr> create_placement_group(
      std::vector<resource_request> bundles, bundle_strategy strategy) = 0;
  virtual void remove_placement_group(std::uint64_t id) = 0;
  virtual std::vector<int> placement_group_nodes(std::uint64_t id) const = 0;
  /// Objects written to the spill file so far.
  virtual std::uint64_t spilled_objects() const noexcept = 0;
};

/// Process `p`'s driver, for an API that only the driver offers; a clear error elsewhere.
inline driver& require_driver(process& p, const char* what) {
  driver* d = p.as_driver();
  if (!d) throw usage_error(fmt::format("{} is only available in the driver process", what));
  return *d;
}
/// This process's driver, likewise.
inline driver& require_driver(const char* what) { return require_driver(process::require(), what); }

}  // namespace detail
CORAY_END_NAMESPACE
