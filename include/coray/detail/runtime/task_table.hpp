#pragma once
/// The orchestrator's table of live calls: one record per call from submission until its
/// outcome is settled and forwarded, and the run queue of task calls ready to go to a
/// worker. It decides nothing about processes; it keeps what the orchestrator needs to.

#include <fmt/format.h>

#include <algorithm>
#include <coray/detail/runtime/call_message.hpp>
#include <coray/detail/runtime/id_index.hpp>
#include <coray/detail/runtime/recycled.hpp>
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// What only some calls carry, kept apart from their task_record so that a queued call of a
/// few small arguments stays small: store blocks of large arguments, a requirement not yet
/// admitted, an actor construction's settings, a sent message's block.
struct task_extras {
  std::vector<object_block*> blocks;  // one reference each, released when the call ends
  std::shared_ptr<const resource_request> resources;  // as submitted, until admitted
  object_block* message = nullptr;                    // the sent message, when it needed a block
  std::uint32_t max_concurrency = 1;                  // construct: the actor's, with its flags
  std::uint32_t restart = 0;  // construct: how many times its actor was built before
};

/// One call the driver tracks: a task call, an actor method call or an actor's construction.
/// Fields are grouped so that the record has no holes: a task call of one int argument, its
/// result's state and its places in the index and the run queue take the driver's memory
/// docs/design.md states ("What a queued call costs").
struct task_record : recycled<task_record, 4096> {
  std::uint64_t id = 0;
  std::uint64_t fn_id = 0;
  std::string_view name;
  call_bytes args;
  std::uint32_t nargs = 0;
  std::uint32_t pending_deps = 0;
  std::vector<state_ptr> deps;
  held_contents held;  // refs and actor handles inside the arguments (kept alive)
  std::unique_ptr<std::vector<state_ptr>> returns;  // ray::returns: the caller's results
  state_ptr result;
  std::uint64_t actor = 0;  // the actor it calls; 0 for a task
  std::uint32_t shape = 0;  // a task's requirement (call_pump's shapes); 0: {CPU: 1}
  std::uint32_t gpus = 0;   // the GPUs it is sent with (a mask of indices)
  std::uint32_t group = 0;  // an actor call's concurrency group; 0: its method's
  int submitter = -1;       // slot of the process that made this nested call, -1 for the driver
  std::uint32_t submitter_generation = 0;
  int worker = -1;                 // the task worker it was sent to
  std::uint64_t dispatch_seq = 0;  // its place among the calls sent to its process
  std::uint64_t retry_matcher = 0;
  int max_retries = 0;
  int attempt = 1;
  bool failed_dep = false;
  bool construct = false;
  bool cancelled = false;
  bool pinned = false;                // its store arguments are pinned (see pin_deps)
  bool lent = false;                  // runs on a blocked worker with its own grant (lend)
  void* owner = nullptr;              // the orchestrator, for dependency callbacks
  task_record* index_next = nullptr;  // the next record in its bucket of the index (id_index)
  // Recording a timeline: when it was submitted and last sent (tick_clock ticks). In the
  // record, not the extras: recording stamps every call.
  std::int64_t submitted_tick = 0;
  std::int64_t sent_tick = 0;
  std::unique_ptr<task_extras> extras;  // null until something in it is set

  /// The extras, made on first use.
  task_extras& more() {
    if (!extras) extras = std::make_unique<task_extras>();
    return *extras;
  }
  /// Its store blocks (large arguments), held until it ends.
  std::span<object_block* const> blocks() const noexcept {
    return extras ? std::span<object_block* const>(extras->blocks)
                  : std::span<object_block* const>();
  }
  object_block* message() const noexcept { return extras ? extras->message : nullptr; }
  std::uint32_t max_concurrency() const noexcept { return extras ? extras->max_concurrency : 1; }
  std::uint32_t restart() const noexcept { return extras ? extras->restart : 0; }

  /// The record of a call as submitted; the spec's blocks and dependencies move in.
  static std::unique_ptr<task_record> from(std::uint64_t id, task_spec&& spec, state_ptr result) {
    auto r = std::make_unique<task_record>();
    r->id = id;
    r->fn_id = spec.fn_id;
    r->name = spec.name;
    r->nargs = spec.nargs;
    r->args = std::move(spec.args);
    r->deps = std::move(spec.deps);
    if (!spec.blocks.empty()) r->more().blocks = std::move(spec.blocks);
    r->actor = spec.target_actor;
    r->held = std::move(spec.held);
    r->returns = std::move(spec.returns);
    r->max_retries = spec.max_retries;
    r->retry_matcher = spec.retry_matcher;
    if (spec.resources) r->more().resources = std::move(spec.resources);
    r->group = spec.group;
    r->result = std::move(result);
    return r;
  }

  /// A label for messages: the function's name, or "a task".
  std::string_view label() const noexcept { return name.empty() ? "a task" : name; }
  /// " (attempt N of M)" when retries are allowed, else nothing. (max_retries may be INT_MAX:
  /// an actor's max_task_retries of -1.)
  std::string attempts_note() const {
    return max_retries > 0
               ? fmt::format(" (attempt {} of {})", attempt, std::int64_t{max_retries} + 1)
               : std::string();
  }
};

/// Live calls by id, the task calls ready to run in the order they became ready, and the
/// calls sent to each task worker.
class task_table {
 public:
  explicit task_table(std::uint32_t workers = 0) : workers_(workers) {}
  task_table(const task_table&) = delete;
  task_table& operator=(const task_table&) = delete;
  ~task_table() { clear(); }

  task_record* insert(std::unique_ptr<task_record> r) {
    task_record* p = r.get();
    records_.insert(p);
    r.release();  // owned by the index until remove or clear
    return p;
  }
  task_record* find(std::uint64_t id) const noexcept { return records_.find(id); }
  bool contains(std::uint64_t id) const noexcept { return records_.find(id) != nullptr; }
  /// Takes the record out; the caller releases what it holds.
  std::unique_ptr<task_record> remove(std::uint64_t id) {
    return std::unique_ptr<task_record>(records_.erase(id));
  }
  std::size_t size() const noexcept { return records_.size(); }
  /// Each live call, in no order (the state API's listing).
  template <class F>
  void for_each(F&& f) const {
    records_.for_each([&](const task_record* r) { f(*r); });
  }
  /// After a tide of calls has gone: gives back the index's table, sized for the peak.
  /// True if there was much to give back.
  bool shrink() {
    if (records_.capacity() < (std::size_t{1} << 16) || records_.size() * 8 > records_.capacity())
      return false;
    records_.shrink_to_fit();
    return true;
  }
  void clear() {
    runnable.clear();
    records_.for_each([](task_record* r) { delete r; });
    records_.clear();
  }

  /// Counts `r`'s dependencies: those failed settle its result with the first error, those
  /// pending get `on_ready(ctx = r)` as a waiter. Returns how many are pending.
  static std::uint32_t watch_dependencies(task_record& r, void (*on_ready)(void*, object_state&)) {
    for (auto& d : r.deps) {
      if (d->st == object_state::status::failed) {
        if (!r.failed_dep) r.result->set_error(d->error());
        r.failed_dep = true;
      } else if (d->st == object_state::status::pending) {
        ++r.pending_deps;
        d->waiters.push_back({on_ready, &r});
      }
    }
    return r.pending_deps;
  }

  /// Task calls ready to be sent to a worker: the nested ones (made by tasks) first, newest
  /// first, then the driver's, oldest first (make_runnable).
  std::deque<task_record*> runnable;
  /// Counts the nested calls made runnable: a search of the queue that found nothing for a
  /// blocked worker need not run again before this moves.
  std::uint64_t nested_queued = 0;

  /// Queues a task whose arguments are ready. A nested call (made by a running task) goes
  /// ahead of the rest: its caller may be blocked waiting for it, and running the newest
  /// such calls first goes depth first through a tree of blocking tasks, so the number
  /// blocked at once stays near the tree's depth rather than its width.
  void make_runnable(task_record* r) {
    if (r->submitter >= 0) {
      runnable.push_front(r);
      ++nested_queued;
    } else {
      runnable.push_back(r);
    }
  }
  /// Queues again, ahead of the others, calls to run again (in their order): the nested
  /// ones first, the driver's after them, so that nested calls stay at the front.
  void requeue(const std::vector<task_record*>& again) {
    auto first_driver = std::find_if(runnable.begin(), runnable.end(),
                                     [](const task_record* r) { return r->submitter < 0; });
    for (task_record* r : again)
      if (r->submitter < 0) first_driver = std::next(runnable.insert(first_driver, r));
    auto front = runnable.begin();
    for (task_record* r : again)
      if (r->submitter >= 0) front = std::next(runnable.insert(front, r));
    ++nested_queued;
  }
  /// The call to send to task worker `slot` next: the queue's first, or, while the worker is
  /// blocked (`mark` nonzero; see worker_shared::blocked_mark), the first call it made
  /// itself with an id from `mark` up (the blocked call's descendants: a worker numbers its
  /// calls in order), searched among the nested calls only; runnable.end() if none.
  std::deque<task_record*>::iterator next_for(std::uint32_t slot, std::uint64_t mark) {
    if (mark == 0) return runnable.begin();
    for (auto it = runnable.begin(); it != runnable.end() && (*it)->submitter >= 0; ++it)
      if ((*it)->submitter == static_cast<int>(slot) && (*it)->id >= mark) return it;
    return runnable.end();
  }

  // ---- task workers -------------------------------------------------------------------

  /// Calls sent to worker `slot` and not done, suspended ones included.
  std::uint32_t in_flight(std::uint32_t slot) const noexcept { return workers_[slot].in_flight; }
  /// Calls sent to worker `slot` and not done, less those it holds suspended (awaiting).
  std::uint32_t load(std::uint32_t slot, std::uint32_t suspended) const noexcept {
    const std::uint32_t n = workers_[slot].in_flight;
    return n > suspended ? n - suspended : 0;
  }
  /// `r` was sent to worker `slot`: it takes the next place among the calls sent there.
  void sent(std::uint32_t slot, task_record& r) {
    worker_calls& w = workers_[slot];
    r.dispatch_seq = w.dispatched++;
    r.worker = static_cast<int>(slot);
    w.order.emplace_back(r.dispatch_seq, r.id);
    ++w.in_flight;
  }
  /// A call sent to worker `slot` ended (or will be sent again).
  void done(std::uint32_t slot) {
    worker_calls& w = workers_[slot];
    if (w.in_flight) --w.in_flight;
    while (!w.order.empty() && !contains(w.order.front().second)) w.order.pop_front();
  }

  /// `r`, sent to worker `slot`, runs again (a retryable exception): back to the run queue.
  void retry(std::uint32_t slot, task_record& r) {
    done(slot);
    make_runnable(&r);
  }

  /// What becomes of the calls sent to a worker that died, the first `calls_started` of
  /// which it had started.
  struct death_plan {
    std::vector<task_record*> again;    // to run (again) on another worker, in their order
    std::vector<task_record*> crashed;  // fail with worker_crashed
  };
  death_plan worker_died(std::uint32_t slot, std::uint64_t calls_started) {
    death_plan plan;
    for (auto& [seq, id] : workers_[slot].order) {
      task_record* r = find(id);
      if (!r || r->worker != static_cast<int>(slot) || r->dispatch_seq != seq)
        continue;  // done, or sent elsewhere since
      const bool started = seq < calls_started;
      if (r->cancelled || (started && r->attempt > r->max_retries)) {
        plan.crashed.push_back(r);
      } else {
        if (started) ++r->attempt;  // it ran and died: retried, Ray's max_retries
        plan.again.push_back(r);
      }
    }
    workers_[slot] = worker_calls{};
    return plan;
  }

 private:
  struct worker_calls {
    std::uint64_t dispatched = 0;                               // calls sent to its current process
    std::uint32_t in_flight = 0;                                // calls sent and not done
    std::deque<std::pair<std::uint64_t, std::uint64_t>> order;  // (dispatch_seq, call id)
  };
  // By id, in buckets threaded through the records, a run of consecutive ids in consecutive
  // buckets (id_index.hpp says why): no allocation and no division per call, and a tide of a
  // million queued calls walks the table in order.
  id_index<task_record> records_;
  std::vector<worker_calls> workers_;
};

}  // namespace detail
CORAY_END_NAMESPACE
