#pragma once
/// ray::runtime: starts coray in this process -- the shared segment, a supervisor and the
/// worker pool -- and stops it all when destroyed. Construct it first thing in main():
/// with the spawn start method, worker processes re-run the program and become workers
/// inside this constructor, which then never returns in them.
///
///   int main(int argc, char** argv) {
///     ray::runtime rt(argc, argv, {.num_workers = 2});
///     return rt.run(amain());
///   }

#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <coray/async.hpp>
#include <coray/detail/runtime/driver.hpp>
#include <coray/detail/runtime/entry.hpp>
#include <coray/detail/runtime/foreign.hpp>
#include <coray/errors.hpp>
#include <coray/sync_wait.hpp>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

CORAY_BEGIN_NAMESPACE

/// How worker processes are started (as in Python's multiprocessing).
enum class start_method {
  /// fork() from the supervisor, a small process made when the runtime starts: fast, and
  /// safe even when the driver has grown threads since.
  fork,
  /// posix_spawn() of /proc/self/exe: a fresh program image that becomes a worker in
  /// ray::runtime's constructor (or in ray::enter_worker_if_spawned()).
  spawn,
};

struct runtime_options {
  /// Worker processes; 0 means the usable cores (CPU affinity and cgroup quota).
  std::uint32_t num_workers = 0;
  /// Capacity of the object store; 0 means 30% of usable memory, as Ray does.
  std::size_t object_store_bytes = 0;
  /// Unset: the CORAY_START_METHOD environment variable ("fork" or "spawn"), else fork.
  std::optional<ray::start_method> start_method = std::nullopt;
  /// Values up to this size travel inside messages; larger ones go through the store.
  /// At most 120 KiB (what one mailbox message carries).
  std::size_t inline_threshold = 100 * 1024;
  /// How long an idle process spins (3 us of pure spin, then yielding the core between
  /// looks) before it sleeps on its futex. A call's body blocked in a wait sleeps right
  /// after the pure spin while other processes keep the machine's cores busy.
  std::chrono::microseconds spin = std::chrono::microseconds(200);
  /// Calls queued on one worker beyond the one it runs; more waits in the driver. In a
  /// cluster, a worker on another node takes 16 times as many, to cover the round trip.
  std::uint32_t max_tasks_in_flight_per_worker = 4;
  /// Actors that may be alive at once (each is a process with two 256 KiB mailboxes).
  std::uint32_t max_actors = 1024;
  /// When set, objects that do not fit in the store spill to an unnamed file in this
  /// directory (Ray's object spilling) instead of failing with object_store_full.
  std::string spill_directory = {};
  /// CPUs the runtime schedules by (Ray's `num_cpus`; a task holds 1 while it runs). Unset:
  /// the CORAY_NUM_CPUS environment variable, else the usable cores, or num_workers if that
  /// is more (each worker can run a task at once, as before CPUs were counted).
  std::optional<double> num_cpus = std::nullopt;
  /// GPUs (Ray's `num_gpus`; a fraction such as 0.5 is allowed). Unset: CORAY_NUM_GPUS, else
  /// the GPUs detected: CUDA_VISIBLE_DEVICES's ids when it is set, else those the NVIDIA
  /// driver lists in /proc/driver/nvidia/gpus; 0 when none. Declared GPUs that were not
  /// detected are numbered on from the detected ones. At most 32.
  std::optional<double> num_gpus = std::nullopt;
  /// Custom resources by name: `{.resources = {{"disk", 2}}}`. Empty: CORAY_RESOURCES,
  /// written `name=amount,name=amount` (`CORAY_RESOURCES=disk=2,licence=1`).
  std::map<std::string, double> resources = {};
  /// Each line a worker or actor writes to stdout or stderr reaches this process's stdout or
  /// stderr prefixed with its process, `(name pid=1234) line` (the function it runs, or the
  /// actor's class), identical lines from several processes folded as Ray folds them
  /// (`[repeated 7x across cluster]`). False: not shown (Ray's `log_to_driver`).
  bool log_to_driver = true;
  /// When set, each worker's and actor's output is also written, as it came, to
  /// `worker-<pid>.out` and `worker-<pid>.err` in this directory (made if missing).
  std::string log_directory = {};
  /// How many finished tasks and actor calls ray::state::list_tasks keeps, the oldest
  /// evicted first (Ray keeps a bounded task history likewise). 0 keeps none.
  std::size_t task_history = 10000;
  /// Records when each call was submitted, sent and settled, for ray::timeline (the last
  /// task_history calls, or 10,000 when that is 0). Also turned on by CORAY_TIMELINE=1.
  /// Off, it costs a branch per call.
  bool record_timeline = false;
  /// Serves the dashboard, a web page of the runtime's processes, actors, tasks, objects,
  /// configuration and logs, and prints its URL (Ray's `include_dashboard`). Also turned on
  /// by CORAY_DASHBOARD=1. The dashboard's code comes with <coray/dashboard.hpp> (include it
  /// in one file of the program) or with coray's compiled library.
  bool include_dashboard = false;
  /// The dashboard's port; when taken, the next free one (the printed URL says which). 0: any.
  std::uint16_t dashboard_port = 8265;
  /// The address it listens on. Anything but a loopback address serves only requests that
  /// carry the run's token (the printed URL has it).
  std::string dashboard_host = "127.0.0.1";
};

/// Becomes a worker if this process was spawned as one; returns at once otherwise. The
/// runtime's constructor calls it; call it yourself before anything else in main() if main
/// does work before constructing the runtime that workers must not repeat.
inline void enter_worker_if_spawned() { detail::enter_spawned_worker(); }

namespace detail {
/// A running dashboard (<coray/dashboard.hpp>); destroying it stops it.
class dashboard_service {
 public:
  virtual ~dashboard_service() = default;
  /// http://host:port/?token=...
  virtual std::string url() const = 0;
};
using dashboard_starter = std::unique_ptr<dashboard_service> (*)(const runtime_options&);
/// Set when the dashboard's code is in the program: by <coray/dashboard.hpp> header-only, by
/// coray's compiled library when it was built with it. Null otherwise, and a runtime asked
/// for a dashboard refuses to start. The runtime reaches the dashboard only through this, so
/// programs without it never parse the HTTP and JSON libraries it uses.
inline dashboard_starter& dashboard_start_hook() noexcept {
  static dashboard_starter f = nullptr;
  return f;
}

/// Builds the driver instead of make_local_driver when a cluster's code is in the program
/// (<coray/mpi.hpp> sets it): under `mpirun` it returns rank 0's driver, and on every other
/// rank it serves as a node until rank 0's runtime ends, then exits the process.
using cluster_starter = std::unique_ptr<driver> (*)(driver_config);
inline cluster_starter& cluster_start_hook() noexcept {
  static cluster_starter f = nullptr;
  return f;
}

/// Run by the runtime's destructor first, while the runtime still serves: ray::process joins
/// its non-daemon children there (set once a process is started). Never throws.
inline void (*&before_runtime_end() noexcept)() noexcept {
  static void (*f)() noexcept = nullptr;
  return f;
}
}  // namespace detail

class runtime {
 public:
  explicit runtime(runtime_options opts = {}) : runtime(0, nullptr, opts) {}

  runtime(int argc, char** argv, runtime_options opts = {}) {
    detail::enter_spawned_worker();
    if (detail::process::here() || detail::runtime_gate::instance().accepts_calls())
      throw usage_error("coray: a runtime is already running in this process");
    detail::driver_config cfg;
    cfg.num_workers = opts.num_workers;  // 0: make_local_driver counts the usable cores
    cfg.max_actors = opts.max_actors;
    cfg.object_store_bytes = opts.object_store_bytes;  // 0: 30% of usable memory, likewise
    cfg.method = resolve(opts.start_method) == start_method::spawn ? detail::start_method_id::spawn
                                                                   : detail::start_method_id::fork;
    // A value inline in a reply must fit one mailbox message (half a ring, 120 KiB).
    cfg.inline_threshold = std::min<std::size_t>(opts.inline_threshold, 120 * 1024);
    cfg.spin_us = static_cast<std::uint32_t>(opts.spin.count());
    cfg.max_tasks_in_flight_per_worker =
        std::max<std::uint32_t>(1, opts.max_tasks_in_flight_per_worker);
    if (argv) cfg.argv.assign(argv, argv + argc);  // else /proc/self/cmdline's
    cfg.spill_directory = opts.spill_directory;
    cfg.num_cpus = opts.num_cpus;
    cfg.num_gpus = opts.num_gpus;
    cfg.resources = opts.resources;
    cfg.output = {opts.log_to_driver, opts.log_directory};
    cfg.task_history = opts.task_history;
    const char* timeline = std::getenv("CORAY_TIMELINE");
    cfg.record_timeline = opts.record_timeline || (timeline && std::string_view(timeline) == "1");
    if (!opts.log_directory.empty()) make_log_directory(opts.log_directory);
    const bool dashboard = wants_dashboard(opts);
    auto cluster = detail::cluster_start_hook();
    driver_ = cluster ? cluster(std::move(cfg)) : detail::make_local_driver(std::move(cfg));
    driver_->open_handoff(driver_->hdr->driver_bell, detail::runtime_gate::phase::calls);
    if (dashboard) start_dashboard(opts);
  }

  runtime(const runtime&) = delete;
  runtime& operator=(const runtime&) = delete;
  /// Ends every worker and frees the segment. Refs still held afterwards are inert. Calls
  /// other threads made that the runtime has not taken yet fail; their later calls throw
  /// ray::runtime_error. Call it on the runtime's thread.
  ///
  /// Non-daemon ray::process children are joined first, as Python joins them at exit; the
  /// daemon ones end with the runtime.
  ///
  /// Only in the process that built the runtime: a process forked from it shares its
  /// segment, mailboxes and supervisor, and its exit() runs static destructors (ray::init's
  /// runtime among them). There the runtime is left as it lies, its memory not freed.
  ~runtime() {
    if (getpid() != builder_pid_) {
      (void)dashboard_.release();  // its threads are the builder's
      (void)driver_.release();
      return;
    }
    if (auto end = detail::before_runtime_end()) end();
    driver_->close_handoff();  // fails what the dashboard's threads wait for on the loop
    dashboard_.reset();
  }

  /// Runs the coroutine `main` to completion on this thread, serving the runtime meanwhile;
  /// returns its result or rethrows its exception. On the thread that built the runtime.
  template <class T>
  T run(async<T> main) {
    if (!driver_->is_loop_thread())
      throw ray::runtime_error(
          "ray::runtime::run: must be called on the thread that built the runtime (other threads "
          "use ray::sync_wait)");
    auto h = main.handle();
    driver_->schedule(h);
    driver_->run_until([&] { return h.done(); });
    return main.take();
  }

  /// Serves the runtime on this thread (the one that built it) until `done()` holds: what
  /// calls from other threads need when this thread has nothing of its own to wait for.
  /// `done` is checked after each piece of work and at least every millisecond.
  template <class Done>
  void serve_until(Done&& done) {
    if (!driver_->is_loop_thread())
      throw ray::runtime_error(
          "ray::runtime::serve_until: must be called on the thread that built the runtime");
    while (!done()) driver_->run_until(done, detail::clock::now() + std::chrono::milliseconds(1));
  }

  std::uint32_t num_workers() const noexcept { return driver_->num_workers(); }
  /// Process ids of the task workers, in slot order (0 for one being started).
  std::vector<int> worker_pids() const { return driver_->worker_pids(); }
  /// Bytes the object store can still hand out, and its capacity.
  std::size_t object_store_free_bytes() const noexcept { return driver_->seg.free_bytes(); }
  std::size_t object_store_capacity() const noexcept { return driver_->seg.capacity(); }
  /// How many objects have been spilled to disk (with runtime_options::spill_directory).
  std::uint64_t objects_spilled() const noexcept { return driver_->spilled_objects(); }
  /// The dashboard's address with the run's token (runtime_options::include_dashboard), or
  /// empty without one.
  std::string dashboard_url() const { return dashboard_ ? dashboard_->url() : std::string(); }

 private:
  static start_method resolve(std::optional<start_method> m) {
    if (m) return *m;
    if (const char* e = std::getenv("CORAY_START_METHOD")) {
      std::string_view v(e);
      if (v == "spawn") return start_method::spawn;
      if (v == "fork" || v.empty()) return start_method::fork;
      throw usage_error(fmt::format("coray: CORAY_START_METHOD must be fork or spawn, not {}", v));
    }
    return start_method::fork;
  }
  static void make_log_directory(const std::string& dir) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec || !std::filesystem::is_directory(dir, ec))
      throw usage_error(fmt::format("coray: log_directory {} is not a directory one can make: {}",
                                    dir, ec ? ec.message() : "a file is in the way"));
  }
  static bool wants_dashboard(const runtime_options& opts) {
    const char* e = std::getenv("CORAY_DASHBOARD");
    const bool wanted = opts.include_dashboard || (e && std::string_view(e) == "1");
    if (wanted && !detail::dashboard_start_hook())
      throw usage_error(
          "coray: include_dashboard (or CORAY_DASHBOARD=1) needs the dashboard's code: "
          "#include <coray/dashboard.hpp> in one file of the program and link coray::dashboard "
          "(cpp-httplib and nlohmann_json), or link coray's compiled library built with them");
    return wanted;
  }
  void start_dashboard(const runtime_options& opts) {
    try {
      dashboard_ = detail::dashboard_start_hook()(opts);
    } catch (...) {
      driver_->close_handoff();
      throw;
    }
  }
  std::unique_ptr<detail::driver> driver_;
  pid_t builder_pid_ = getpid();
  std::unique_ptr<detail::dashboard_service> dashboard_;  // destroyed before the driver
};

namespace detail {
inline std::unique_ptr<runtime>& global_runtime() {
  static std::unique_ptr<runtime> rt;
  return rt;
}
}  // namespace detail

/// Starts a process-wide runtime (Ray's ray.init()); ray::shutdown() ends it.
inline void init(runtime_options opts = {}) {
  if (detail::global_runtime()) throw usage_error("ray::init: already initialised");
  detail::global_runtime() = std::make_unique<runtime>(opts);
}
inline void shutdown() { detail::global_runtime().reset(); }
inline bool is_initialized() noexcept {
  return detail::process::here() != nullptr || detail::runtime_gate::instance().accepts_calls();
}

CORAY_END_NAMESPACE
