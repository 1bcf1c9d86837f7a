#pragma once
/// The orchestrator's table of actors: each actor's slot, name, handle count, restart budget,
/// the copy of its constructor call kept for restarts, and its calls (queued in the order
/// they were made, then sent). It hands out and takes back actor slots. Its answers are
/// decisions (what became of a handle count, which calls a restart sends again); the
/// orchestrator acts on them.

#include <fmt/format.h>

#include <algorithm>
#include <coray/detail/runtime/driver.hpp>
#include <coray/detail/runtime/task_table.hpp>
#include <cstdint>
#include <deque>
#include <iterator>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

class resource_ledger;

struct actor_entry {
  std::uint64_t id = 0;
  std::uint32_t slot = 0;
  std::uint32_t node = 0;  // the slot's (transport::node_of)
  std::uint64_t type_id = 0;
  std::string type_name;
  std::string name;
  int refs = 0;
  bool dead = false;
  bool killed = false;
  bool closing = false;  // no handle is left: end after the queued calls
  bool shutdown_sent = false;
  std::string cause;
  int pid = 0, wait_status = 0;  // of its process, once it ended
  state_ptr constructed;
  int max_restarts = 0;
  int restarts = 0;
  int max_task_retries = 0;
  std::uint32_t max_concurrency = 1;
  std::uint32_t shape = 0;            // resources it holds for life (call_pump's shapes); 0: none
  bool placed = false;                // it holds them (shape 0: nothing to hold)
  resource_grant grant;               // its GPUs, kept across restarts
  std::uint64_t group = 0;            // the placement group whose bundle lends it its resources
  resource_ledger* ledger = nullptr;  // that bundle's; null: its node's
  // The constructor call, kept to build the actor again (max_restarts).
  std::uint64_t ctor_fn = 0;
  std::string_view ctor_name;
  std::uint32_t ctor_nargs = 0;
  call_bytes ctor_args;
  std::vector<state_ptr> ctor_deps;
  std::vector<state_ptr> ctor_refs;        // refs inside its arguments
  std::vector<object_block*> ctor_blocks;  // one reference each, for rebuilding
  std::deque<task_record*> queue;          // calls not yet sent, in the order they were made
  std::deque<std::uint64_t> sent;          // calls sent and not done
  std::uint64_t dispatched = 0;            // method calls sent to the current process

  bool may_restart() const noexcept {
    return !killed && !closing && cause.empty() && (max_restarts < 0 || restarts < max_restarts);
  }
  /// A new construction call from the kept copy (its blocks get a reference each from
  /// `add_ref`).
  template <class AddRef>
  std::unique_ptr<task_record> constructor_call(std::uint64_t call_id, state_ptr result,
                                                AddRef&& add_ref) const {
    task_spec spec;
    spec.fn_id = ctor_fn;
    spec.name = ctor_name;
    spec.nargs = ctor_nargs;
    copy_bytes(spec.args, ctor_args);
    spec.deps = ctor_deps;
    if (!ctor_refs.empty()) contents_of(spec.held).refs = ctor_refs;
    for (auto* b : ctor_blocks) {
      add_ref(b);
      spec.blocks.push_back(b);
    }
    spec.target_actor = id;
    auto r = task_record::from(call_id, std::move(spec), std::move(result));
    r->construct = true;
    r->more().max_concurrency = max_concurrency;
    r->more().restart = static_cast<std::uint32_t>(restarts);
    return r;
  }
};

class actor_table {
 public:
  /// Slots [first, first + count) are for actors.
  actor_table(std::uint32_t first, std::uint32_t count) : max_actors_(count) {
    for (std::uint32_t i = first + count; i-- > first;) free_slots_.push_back(i);
  }

  std::uint32_t max_actors() const noexcept { return max_actors_; }
  bool has_free_slot() const noexcept { return !free_slots_.empty(); }
  bool name_taken(const std::string& name) const { return names_.count(name) != 0; }

  /// A free slot for which `fits(slot)` holds (the first handed out first), or nullopt.
  template <class Fits>
  std::optional<std::uint32_t> free_slot_where(Fits&& fits) const {
    for (auto it = free_slots_.rbegin(); it != free_slots_.rend(); ++it)
      if (fits(*it)) return *it;
    return std::nullopt;
  }

  /// Registers a new actor in free slot `slot` (from free_slot_where) on node `node`.
  actor_entry& create(actor_spawn_request& req, segment& seg, std::uint32_t slot,
                      std::uint32_t node) {
    const auto it = std::find(free_slots_.rbegin(), free_slots_.rend(), slot);  // mostly the last
    free_slots_.erase(std::next(it).base());
    actor_entry& a = actors_[next_id_];
    a.id = next_id_++;
    a.slot = slot;
    a.node = node;
    a.type_id = req.type_id;
    a.type_name = std::move(req.type_name);
    a.name = std::move(req.name);
    a.max_restarts = req.max_restarts;
    a.max_task_retries = req.max_task_retries;
    a.max_concurrency = req.max_concurrency;
    a.ctor_fn = req.constructor.fn_id;
    a.ctor_name = req.constructor.name;
    a.ctor_nargs = req.constructor.nargs;
    copy_bytes(a.ctor_args, req.constructor.args);
    a.ctor_deps = req.constructor.deps;
    if (req.constructor.held) a.ctor_refs = req.constructor.held->refs;
    for (auto* b : req.constructor.blocks) {
      seg.add_ref(b);
      a.ctor_blocks.push_back(b);
    }
    if (!a.name.empty()) names_[a.name] = a.id;
    return a;
  }

  actor_entry* find(std::uint64_t id) noexcept {
    auto it = actors_.find(id);
    return it == actors_.end() ? nullptr : &it->second;
  }
  const actor_entry* find(std::uint64_t id) const noexcept {
    auto it = actors_.find(id);
    return it == actors_.end() ? nullptr : &it->second;
  }
  /// The live actor registered under `name`, or null.
  const actor_entry* lookup(const std::string& name) const {
    auto it = names_.find(name);
    return it == names_.end() ? nullptr : find(it->second);
  }
  void unname(actor_entry& a) {
    if (!a.name.empty()) names_.erase(a.name);
  }
  /// The actor's process ended for good: its slot is free again.
  void free_slot(std::uint32_t slot) { free_slots_.push_back(slot); }

  /// Undoes create() for a spawn refused before its process started (no room for its
  /// mailboxes): the slot and the name are free again. Returns the blocks create() took a
  /// reference to, to release.
  std::vector<object_block*> refuse(actor_entry& a) {
    free_slot(a.slot);
    unname(a);
    return forget(a.id);
  }

  /// What a change of an actor's handle count calls for.
  enum class handle_outcome { none, close, forget };
  handle_outcome adjust_handles(actor_entry& a, int delta) {
    a.refs += delta;
    if (a.refs > 0) return handle_outcome::none;
    if (a.dead) return forgettable(a) ? handle_outcome::forget : handle_outcome::none;
    if (a.closing) return handle_outcome::none;
    // No handle is left anywhere: the actor ends once its queued calls are done.
    a.closing = true;
    unname(a);
    return handle_outcome::close;
  }
  static bool forgettable(const actor_entry& a) noexcept {
    return a.refs <= 0 && a.dead && a.queue.empty();
  }
  /// Removes an ended actor with no handle left; returns the constructor's blocks to release.
  std::vector<object_block*> forget(std::uint64_t id) {
    auto it = actors_.find(id);
    if (it == actors_.end()) return {};
    auto blocks = std::move(it->second.ctor_blocks);
    actors_.erase(it);
    return blocks;
  }

  /// What becomes of an actor's sent calls when its process dies and it is rebuilt: those it
  /// had not started go again, those it had run again while max_task_retries allows.
  struct restart_plan {
    std::vector<task_record*> again;      // in their order, before the queued calls
    std::vector<task_record*> exhausted;  // fail with actor_died
  };
  restart_plan plan_restart(actor_entry& a, std::uint64_t calls_started, const task_table& tasks) {
    ++a.restarts;
    restart_plan plan;
    for (std::uint64_t id : a.sent) {
      task_record* r = tasks.find(id);
      if (!r || r->construct) continue;  // the construction is made anew
      if (r->dispatch_seq >= calls_started && !r->cancelled) {
        plan.again.push_back(r);  // never started: simply sent again
      } else if (r->attempt <= r->max_retries && !r->cancelled) {
        ++r->attempt;
        plan.again.push_back(r);
      } else {
        plan.exhausted.push_back(r);
      }
    }
    a.sent.clear();
    a.dispatched = 0;
    a.queue.insert(a.queue.begin(), plan.again.begin(), plan.again.end());
    return plan;
  }

  /// The actor's process ended for good: records how and why, frees its slot and its name,
  /// and returns its unfinished calls (sent, then queued), which fail with `a.cause`.
  std::vector<std::uint64_t> end(actor_entry& a, int pid, int wait_status,
                                 const std::string& words) {
    free_slot(a.slot);
    a.dead = true;
    a.pid = pid;
    a.wait_status = wait_status;
    unname(a);
    if (!a.killed) {
      const std::string why = a.cause.empty() ? words : "failed in its constructor: " + a.cause;
      a.cause = fmt::format("coray: actor {} (pid {}) {}", a.type_name, pid, why);
    }
    std::vector<std::uint64_t> ids(a.sent.begin(), a.sent.end());
    a.sent.clear();
    for (task_record* r : a.queue) ids.push_back(r->id);
    a.queue.clear();
    return ids;
  }

  /// The method call `r` runs again (a retryable exception): first in its actor's queue.
  void retry(task_record& r) {
    actor_entry* a = find(r.actor);
    if (!a) return;
    a->sent.erase(std::remove(a->sent.begin(), a->sent.end(), r.id), a->sent.end());
    a->queue.push_front(&r);
  }

  /// Live actors with nothing queued or running: at teardown they end on their own.
  /// Each actor tracked, in no order (the state API's listing).
  template <class F>
  void for_each(F&& f) const {
    for (const auto& entry : actors_) f(entry.second);
  }
  /// The live actors placed in placement group `group`.
  std::vector<std::uint64_t> in_group(std::uint64_t group) const {
    std::vector<std::uint64_t> out;
    for (const auto& [id, a] : actors_)
      if (a.group == group && !a.dead && !a.killed) out.push_back(id);
    return out;
  }
  std::vector<actor_entry*> idle() {
    std::vector<actor_entry*> out;
    for (auto& [id, a] : actors_)
      if (!a.dead && !a.killed && a.queue.empty() && a.sent.empty()) out.push_back(&a);
    return out;
  }

  void clear_queues() {
    for (auto& [id, a] : actors_) a.queue.clear();
  }

 private:
  std::unordered_map<std::uint64_t, actor_entry> actors_;
  std::unordered_map<std::string, std::uint64_t> names_;
  std::vector<std::uint32_t> free_slots_;
  std::uint32_t max_actors_;
  std::uint64_t next_id_ = 1;
};

}  // namespace detail
CORAY_END_NAMESPACE
