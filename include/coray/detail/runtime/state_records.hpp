#pragma once
/// What the state API (coray/state.hpp) reports, as the driver's parts describe it: the
/// records of tasks, actors and worker processes, and the bounded history of finished calls
/// that call_lifecycle keeps. The records are values, copied out of the loop's tables.

#include <coray/version.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace state {

/// A call's state, as Ray's state API names them.
enum class task_state {
  waiting_for_dependencies,  // Ray's PENDING_ARGS_AVAIL: an object_ref argument is not ready
  queued,                    // ready, waiting for a worker, resources, or its actor's turn
  running,                   // sent to its process
  finished,
  failed,  // ended with an error (its own, a dependency's, a crash, a cancel)
};
enum class actor_state { pending_creation, alive, restarting, dead };
enum class worker_kind { task_worker, actor };
/// Where an object's value lies (`ray memory`'s columns).
enum class object_location {
  pending,       // not computed yet
  inline_value,  // small: kept in the driver's memory, travels inside messages
  store,         // in the shared-memory object store
  spilled,       // written to the spill file (runtime_options::spill_directory)
  failed,        // holds an error
};

constexpr std::string_view to_string(task_state s) noexcept {
  constexpr std::string_view names[] = {"WAITING_FOR_DEPENDENCIES", "QUEUED", "RUNNING", "FINISHED",
                                        "FAILED"};
  return names[static_cast<int>(s)];
}
constexpr std::string_view to_string(actor_state s) noexcept {
  constexpr std::string_view names[] = {"PENDING_CREATION", "ALIVE", "RESTARTING", "DEAD"};
  return names[static_cast<int>(s)];
}
constexpr std::string_view to_string(object_location l) noexcept {
  constexpr std::string_view names[] = {"PENDING", "INLINE", "STORE", "SPILLED", "FAILED"};
  return names[static_cast<int>(l)];
}

struct task_info {
  std::uint64_t id = 0;
  std::string name;  // the function or method, as the registry spells it ("ns::f", "c::incr")
  task_state state = task_state::queued;
  bool actor_call = false;     // a method call (or an actor's construction)
  int pid = 0;                 // of the process it was sent to; 0 if none (yet)
  int attempt = 1;             // 2 and up when it is retried
  std::uint64_t actor_id = 0;  // the actor called; 0 for a task
};

struct actor_info {
  std::uint64_t id = 0;
  std::string class_name;
  std::string name;  // given with actor_options::name; empty if none
  actor_state state = actor_state::pending_creation;
  int pid = 0;  // its current process, or the last one once dead
  int restarts = 0;
  std::string death_cause;  // once dead, why
  int node = 0;             // the cluster node (MPI rank) its process runs on; 0 outside a cluster
};

struct worker_info {
  int pid = 0;  // 0 while it starts
  worker_kind kind = worker_kind::task_worker;
  bool alive = false;
  std::uint32_t calls_in_flight = 0;  // task workers: calls sent and not done
  std::uint64_t actor_id = 0;         // actors: whose process it is
  /// The GPUs it holds now, as CUDA_VISIBLE_DEVICES names them: an actor's for its life, a
  /// task worker's those of the calls it runs; empty for none.
  std::vector<std::string> gpu_ids;
  int node = 0;  // the cluster node (MPI rank) it runs on; 0 outside a cluster (its pid is
                 // that node's)
  /// On another node: its CPU seconds and resident bytes as its node last reported them
  /// (each second); -1 and 0 for this machine's processes (read /proc for those) and before
  /// the first report.
  double cpu_seconds = -1;
  std::uint64_t rss_bytes = 0;
};

/// An object the driver holds: each one with a value in the store or the spill file, and each
/// one a ref inside a value has named (those have an id; an object only its handles name
/// has 0).
struct object_info {
  std::uint64_t id = 0;
  std::size_t size = 0;  // of its encoded value; 0 while pending
  object_location location = object_location::pending;
  std::uint32_t handles = 0;     // object_refs to it in the driver
  std::uint32_t store_refs = 0;  // references to its store block (the driver's and workers')
  std::uint32_t pins = 0;        // readers of its block in place (views, calls in flight)
  std::uint32_t contained = 0;   // refs and actor handles inside its value it keeps alive
};

}  // namespace state

namespace detail {

/// A finished call as the state API's history keeps it.
struct history_entry {
  std::uint64_t id;
  std::string_view name;  // registry names are constants
  int pid;                // of the task worker it ran on; 0 for an actor's call
  std::uint64_t actor;    // the actor it called; 0 for a task
  std::uint16_t attempt;
  bool failed;
};

/// A finished call as the timeline keeps it (runtime_options::record_timeline): the
/// driver's clock (steady, ns) when it was submitted, last sent to its process (0 if it
/// never was) and settled.
struct timeline_entry {
  std::uint64_t id;
  std::string_view name;
  int pid;  // the process it ran in (a task worker's or its actor's); 0 if none
  std::uint64_t actor;
  std::uint16_t attempt;
  bool failed;
  std::int64_t submitted_ns, sent_ns, ended_ns;
  std::uint64_t argument_bytes;  // its message's arguments and store blocks
};

/// The last `capacity` entries recorded, oldest evicted first. Recording is a few stores
/// into a ring allocated once: it is on every call's end. The ring's memory is not written
/// until entries are (a runtime's start does not touch 10,000 entries' pages).
template <class Entry>
class bounded_ring {
  static_assert(std::is_trivially_copyable_v<Entry> && std::is_trivially_destructible_v<Entry>);

 public:
  using entry = Entry;
  explicit bounded_ring(std::size_t capacity = 0)
      : ring_(capacity ? std::allocator<Entry>().allocate(capacity) : nullptr),
        capacity_(capacity) {}
  bounded_ring(const bounded_ring&) = delete;
  bounded_ring& operator=(const bounded_ring&) = delete;
  ~bounded_ring() {
    if (ring_) std::allocator<Entry>().deallocate(ring_, capacity_);
  }

  void record(const Entry& e) noexcept {
    if (!capacity_) return;
    std::construct_at(ring_ + next_, e);
    if (++next_ == capacity_) next_ = 0;
    if (size_ < capacity_) ++size_;
  }
  /// Oldest first.
  template <class F>
  void for_each(F&& f) const {
    std::size_t i = size_ < capacity_ ? 0 : next_;
    for (std::size_t k = 0; k < size_; ++k) {
      f(ring_[i]);
      if (++i == capacity_) i = 0;
    }
  }
  std::size_t size() const noexcept { return size_; }
  std::size_t capacity() const noexcept { return capacity_; }

 private:
  Entry* ring_;  // the first size_ entries (in ring order) are constructed
  std::size_t capacity_;
  std::size_t next_ = 0;  // where the next entry goes
  std::size_t size_ = 0;
};

/// The last calls that ended (runtime_options::task_history).
using task_history = bounded_ring<history_entry>;
/// The last calls that ended, with their times (runtime_options::record_timeline): in
/// tick_clock ticks while in the ring, steady_clock nanoseconds once read out.
using call_timeline = bounded_ring<timeline_entry>;

}  // namespace detail
CORAY_END_NAMESPACE
