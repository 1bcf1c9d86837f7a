#pragma once
/// Moves ready calls to processes: task calls from the run queue to the least busy task
/// worker (at most `max_in_flight` occupying each; a worker blocked in a call takes only
/// that call's descendants), and each actor's calls in the order they
/// were made while its mailbox has room. An actor whose mailbox was full is tried again on
/// the next turn; a closing actor is told to shut down after its last call. Calls found
/// failed (a dependency failed) are handed back for the orchestrator to fail. Driver only,
/// loop thread only.
///
/// Resources (design.md, "Resources"): a task worker holds its calls' requirement as a
/// lease while it has calls; calls of the same requirement share it, so a default task
/// ({CPU: 1}) pays nothing per call. While no call, lease or actor asks for anything else
/// and the runtime has a CPU per worker, dispatch asks nothing of the ledger at all (one
/// branch); otherwise each call looks for a worker leased for its requirement or an idle
/// one whose lease the ledger grants. A worker's CPU counts only while it runs something
/// (not while its calls are blocked or suspended), so a task blocked in a get gives its CPU
/// to its descendants, as Ray's do. A descendant that asks for another requirement than
/// its blocked parent's lease is lent the parent's worker under a grant of its own, so that
/// a parent waiting on it never waits for ever. An actor with resources holds them for
/// life, from before its construction is sent; one without waits for a free CPU to be
/// placed.
///
/// In a cluster each node has a ledger of its own: a worker's lease, a loan and an actor's
/// hold come from the ledger of the node the process runs on (transport::node_of), so a call
/// asking for a GPU goes to a node that has one. A call's placement (resource_request::where)
/// limits the workers it may go to: one node's (node affinity), or each node in turn (spread).
/// A call or actor in a placement group's bundle leases from the bundle's ledger (what the
/// group reserved on that node), on a worker of the bundle's node.

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <coray/detail/runtime/actor_table.hpp>
#include <coray/detail/runtime/call_sender.hpp>
#include <coray/detail/runtime/placement_groups.hpp>
#include <coray/detail/runtime/resource_ledger.hpp>
#include <coray/detail/runtime/task_table.hpp>
#include <coray/detail/runtime/transport.hpp>
#include <coray/errors.hpp>
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

class call_pump {
 public:
  call_pump(task_table& tasks, actor_table& actors, transport& t, call_sender& sender,
            std::vector<resource_ledger>& resources, placement_group_table& groups,
            std::uint32_t workers, std::uint32_t max_in_flight)
      : tasks_(tasks),
        actors_(actors),
        transport_(t),
        sender_(sender),
        resources_(resources),
        groups_(groups),
        workers_(workers),
        max_in_flight_(max_in_flight),
        nodes_(static_cast<std::uint32_t>(resources.size())),
        remote_in_flight_(nodes_ > 1 ? remote_factor * max_in_flight : max_in_flight),
        leases_(workers),
        lent_(workers, 0),
        node_(workers),
        node_workers_(resources.size(), 0) {
    for (std::uint32_t i = 0; i < workers; ++i) {
      node_[i] =
          std::min<std::uint32_t>(t.node_of(i), static_cast<std::uint32_t>(resources.size()) - 1);
      ++node_workers_[node_[i]];
    }
    refresh();
  }

  // ---- resources ----------------------------------------------------------------------

  /// The number of a task's requirement (0 for the default, {CPU: 1}), the same for equal ones.
  std::uint32_t shape_of(const resource_request& r) { return r.is_default_task() ? 0 : intern(r); }
  /// The number of a requirement (never 0: an actor's {CPU: 1} is one to hold).
  std::uint32_t intern(const resource_request& r) {
    auto it = std::find(shapes_.begin(), shapes_.end(), r);
    if (it == shapes_.end()) it = shapes_.insert(shapes_.end(), r);
    return static_cast<std::uint32_t>(it - shapes_.begin()) + 1;
  }
  const resource_request& shape(std::uint32_t s) const noexcept {
    static const resource_request task_default;
    return s ? shapes_[s - 1] : task_default;
  }
  /// A task call of another requirement than the default was admitted (+1) or ended (-1).
  void count_shaped(int delta) noexcept {
    shaped_calls_ += delta;
    refresh();
  }
  /// Worker `slot` has no call left: its lease goes back. True if it held one.
  bool release_if_idle(std::uint32_t slot) {
    worker_lease& l = leases_[slot];
    if (!l.held || tasks_.in_flight(slot) != 0) return false;
    lease_ledger(slot).release(shape(l.shape), l.grant, false);
    let_go(shape(l.shape).where.group);
    l = worker_lease{};
    --leases_held_;
    refresh();
    return true;
  }
  /// Releases the leases of every idle worker (their calls ended or were taken back).
  bool release_idle_leases() {
    bool any = false;
    if (leases_held_)
      for (std::uint32_t i = 0; i < workers_; ++i) any |= release_if_idle(i);
    return any;
  }
  /// Call `r`, lent a blocked worker (lend), ended or left that worker: its grant goes back.
  void end_loan(task_record& r) {
    if (!r.lent) return;
    r.lent = false;
    auto it = loans_.find(r.id);
    if (it == loans_.end()) return;
    it->second.ledger->release(shape(r.shape), it->second.grant);
    let_go(shape(r.shape).where.group);
    --lent_[it->second.slot];
    loans_.erase(it);
    refresh();
  }
  /// Actor `a` lets go of what it holds (it ended for good).
  void release_actor(actor_entry& a) {
    if (!a.placed || !a.shape) return;
    actor_ledger(a).release(shape(a.shape), a.grant);
    let_go(a.group);
    a.placed = false;
    refresh();
  }
  /// The runtime's resources, all or those free now: node `node`'s, or every node's summed.
  std::map<std::string, double> resources(bool available, int node = -1) {
    if (available) release_idle_leases();
    std::map<std::string, double> out;
    for (std::uint32_t n = 0; n < resources_.size(); ++n) {
      if (node >= 0 && n != static_cast<std::uint32_t>(node)) continue;
      const auto m =
          available ? resources_[n].available(cpu_in_use(&resources_[n])) : resources_[n].totals();
      for (const auto& [name, x] : m) out[name] += x;
    }
    return out;
  }
  /// Whether node `node` could place an actor holding `s` now (0: one holding nothing, which
  /// needs a CPU free), taking nothing.
  bool actor_fits(std::uint32_t node, std::uint32_t s) const {
    return fits_now(resources_[node], s);
  }
  /// Reserves placement group `g`'s bundles if they all fit now on live nodes; true if so.
  bool place_group(placement_group_entry& g) {
    const bool placed = placement_group_table::try_place(
        g, static_cast<std::uint32_t>(resources_.size()),
        [&](std::uint32_t n) -> std::pair<resource_ledger*, resource_amount> {
          if (!transport_.node_alive(n)) return {nullptr, 0};
          return {&resources_[n], cpu_in_use(&resources_[n])};
        });
    if (placed) refresh();
    return placed;
  }
  /// Gives group `g`'s bundles back to their nodes (it was removed).
  void unplace_group(placement_group_entry& g) {
    for (std::size_t i = 0; i < g.placed.size(); ++i)
      resources_[g.placed[i].node].release(g.bundles[i], g.placed[i].grant);
    refresh();
  }

  /// Sends ready task calls, then the calls of actors whose mailbox was full. True on
  /// progress; calls whose dependency failed are appended to `failed`.
  bool dispatch(std::vector<task_record*>& failed) {
    bool progress = false;
    auto& runnable = tasks_.runnable;
    while (!runnable.empty()) {
      const auto [picked, it] = pick();
      if (picked == unplaceable) {  // bound to a node that is gone: it fails
        failed.push_back(*it);
        runnable.erase(it);
        progress = true;
        continue;
      }
      if (picked < 0) break;
      const auto slot = static_cast<std::uint32_t>(picked);
      task_record* r = *it;
      if (!sender_.send(slot, *r)) {
        end_loan(*r);  // lent for nothing: asked again on the next turn
        break;
      }
      if (r->shape && shape(r->shape).where.spread) spread_next_ = node_[slot] + 1;
      tasks_.sent(slot, *r);
      if (it == runnable.begin())
        runnable.pop_front();
      else
        runnable.erase(it);
      progress = true;
    }
    for (auto it = backlog_.begin(); it != backlog_.end();) {
      actor_entry* a = actors_.find(*it);
      it = backlog_.erase(it);
      if (a) progress |= pump(*a, failed);
    }
    return progress;
  }

  /// Sends the actor's queued calls, in order, while each is ready and its mailbox has room.
  /// True on progress; calls whose dependency failed are taken out into `failed`.
  bool pump(actor_entry& a, std::vector<task_record*>& failed) {
    bool progress = false;
    if (!a.placed && !a.dead && !place(a)) {
      backlog_.insert(a.id);  // tried again each turn until what it holds is free
      return false;
    }
    while (!a.queue.empty() && !a.dead) {
      task_record* r = a.queue.front();
      if (r->pending_deps) break;
      r->gpus = a.grant.gpu_mask();
      if (r->failed_dep) {
        a.queue.pop_front();
        failed.push_back(r);
        progress = true;
        continue;
      }
      if (!sender_.send(a.slot, *r)) {
        backlog_.insert(a.id);
        break;
      }
      if (!r->construct) r->dispatch_seq = a.dispatched++;  // its place among the calls it starts
      a.queue.pop_front();
      a.sent.push_back(r->id);
      progress = true;
    }
    if (a.closing && a.queue.empty() && !a.dead && !a.shutdown_sent) {
      a.shutdown_sent = send_shutdown(a.slot);
      if (!a.shutdown_sent) backlog_.insert(a.id);
    }
    return progress;
  }

  /// Whether dispatch takes the run queue's first call for any worker with room (only default
  /// tasks, a CPU for every worker), resources aside.
  bool unconstrained() const noexcept { return unconstrained_; }

  /// Whether an actor waits for room in its mailbox.
  bool has_backlog() const noexcept { return !backlog_.empty(); }

  /// Tells the slot's process to end once its calls are done; false if its inbox is full.
  bool send_shutdown(std::uint32_t slot) {
    return transport_.send(slot, msg_kind::shutdown, 0, [](std::byte*) {});
  }

 private:
  using queue_place = std::deque<task_record*>::iterator;
  /// A worker on another node may carry this many times max_tasks_in_flight_per_worker.
  static constexpr std::uint32_t remote_factor = 16;
  /// pick()'s answer for a call bound to a node that can run nothing any more.
  static constexpr int unplaceable = -2;
  /// node_for's answers for a call in a placement group: on a node of one of its bundles; or
  /// not yet (the group waits to be reserved).
  static constexpr int in_group = -3;
  static constexpr int group_pending = -4;

  /// The next call to send and its worker (-1 if none): the queue's first call to the task
  /// worker with the fewest calls that occupy it, under the per-worker limit; failing that,
  /// a worker with room that is blocked in a call gets that call's first descendant in the
  /// queue (task_table::next_for). A blocked worker whose search found nothing is not
  /// searched again until its mark or the nested calls queued change. Runs on every
  /// dispatch, mostly to find every worker full: the scan stays inline, the search for a
  /// blocked worker's descendants (and the path under resources) does not.
  [[gnu::always_inline]] std::pair<int, queue_place> pick() {
    if (!unconstrained_) [[unlikely]]
      return pick_with_resources();
    int best = -1;
    std::uint32_t best_load = remote_in_flight_;  // max_in_flight_ outside a cluster
    bool any_blocked = false;
    for (std::uint32_t i = 0; i < workers_; ++i) {
      if (!transport_.alive(i)) continue;
      const auto [suspended, mark] = transport_.occupancy_of(i);
      const std::uint32_t load = tasks_.load(i, suspended);
      if (load >= best_load) continue;
      if (load >= max_in_flight_ && node_[i] == 0) [[unlikely]]
        continue;  // in a cluster: this machine's worker is full
      if (mark != 0) {
        any_blocked = true;
        continue;
      }
      best = static_cast<int>(i);
      best_load = load;
      if (load == 0) break;
    }
    // A worker on another node: one as free on a node keeping the call's argument bytes
    // (this machine, which holds every object, had none free).
    if (nodes_ > 1 && best >= 0 && node_[static_cast<std::uint32_t>(best)] != 0) [[unlikely]]
      best = near_arguments(static_cast<std::uint32_t>(best), best_load);
    if (best >= 0 || !any_blocked) [[likely]]
      return {best, tasks_.runnable.begin()};
    return pick_descendant();
  }

  /// `best` (a worker on another node, carrying `best_load` calls), or a worker carrying no
  /// more on the node that keeps copies of most of the first runnable call's argument bytes
  /// (Ray's rule: other things equal, a task goes where its arguments are).
  [[gnu::noinline]] int near_arguments(std::uint32_t best, std::uint32_t best_load) {
    const task_record& r = *tasks_.runnable.front();
    std::uint64_t bytes[64] = {};  // by holder bit: node n is bit n - 1
    bool any = false;
    auto count = [&](const object_block* b) {
      if (!b) return;
      for (std::uint64_t h = transport_.copy_holders(b); h; h &= h - 1) {
        bytes[std::countr_zero(h)] += b->size;
        any = true;
      }
    };
    for (const object_block* b : r.blocks()) count(b);
    for (const auto& d : r.deps)
      if (d && d->settled()) count(d->block);
    if (!any) return static_cast<int>(best);
    const auto top = static_cast<std::uint32_t>(std::max_element(bytes, bytes + 64) - bytes);
    if (const std::uint32_t mine = node_[best] - 1; mine < 64 && bytes[mine] == bytes[top])
      return static_cast<int>(best);
    for (std::uint32_t i = 0; i < workers_; ++i) {
      if (node_[i] != top + 1 || !transport_.alive(i)) continue;
      const auto [suspended, mark] = transport_.occupancy_of(i);
      if (mark == 0 && tasks_.load(i, suspended) <= best_load) return static_cast<int>(i);
    }
    return static_cast<int>(best);
  }

  /// pick() when every worker with room is blocked: the first such worker with a descendant
  /// of its blocked call queued.
  [[gnu::noinline]] std::pair<int, queue_place> pick_descendant() {
    if (missed_.size() < workers_) missed_.resize(workers_);
    for (std::uint32_t i = 0; i < workers_; ++i) {
      const auto [suspended, mark] = transport_.occupancy_of(i);
      if (mark == 0 || !transport_.alive(i) || tasks_.load(i, suspended) >= max_in_flight_)
        continue;
      const search_miss now{mark, tasks_.nested_queued};
      if (missed_[i] == now) continue;
      auto it = tasks_.next_for(i, mark);
      if (it != tasks_.runnable.end()) return {static_cast<int>(i), it};
      missed_[i] = now;
    }
    return {-1, tasks_.runnable.end()};
  }

  /// pick() when resources constrain it: the first call in the queue that finds a worker
  /// leased for its requirement with room, or an idle worker whose lease is granted (the
  /// least loaded of those), or, on a worker blocked in a call, that call's descendant (run
  /// on its lease when it asks for the default or the lease's requirement, else lent the
  /// worker if its own requirement is granted: lend). A call that finds none waits; calls
  /// behind it may go (Ray's rule: a smaller request is not held behind a larger one). The
  /// call is given its worker's GPUs, or its loan's.
  std::pair<int, queue_place> pick_with_resources() {
    release_idle_leases();
    auto& runnable = tasks_.runnable;
    bool room = false;  // no worker with room: no need to look through the queue
    for (std::uint32_t i = 0; i < workers_ && !room; ++i)
      room = transport_.alive(i) && tasks_.load(i, transport_.suspended(i)) < max_in_flight_;
    if (!room) return {-1, runnable.end()};
    std::vector<std::uint32_t> refused;  // requirements that found no worker in this look
    for (auto it = runnable.begin(); it != runnable.end(); ++it) {
      task_record& r = **it;
      // A blocked parent's descendant is looked at even so: its worker may be lent it.
      if (std::find(refused.begin(), refused.end(), r.shape) != refused.end() && !parent_blocked(r))
        continue;
      const placement& where = shape(r.shape).where;
      const int only = node_for(r.shape);
      if (only == unplaceable) {
        r.result->set_error(where.group
                                ? std::make_exception_ptr(ray::runtime_error(fmt::format(
                                      "coray: {} can never run: its placement group {} was removed",
                                      r.label(), where.group)))
                                : std::make_exception_ptr(worker_crashed(fmt::format(
                                      "coray: {} can never run: it asks for node {}, which is lost",
                                      r.label(), where.node))));
        return {unplaceable, it};
      }
      if (only == group_pending) {  // waits until its group's bundles are reserved
        refused.push_back(r.shape);
        continue;
      }
      // Spread: the scan starts at the next node's first worker, so ties go to it.
      const std::uint32_t from = where.spread ? first_worker_at(spread_next_) : 0;
      lacking_.assign(resources_.size(), 0);
      int leased = -1, idle = -1, parent = -1;
      std::uint32_t leased_load = max_in_flight_;
      for (std::uint32_t k = 0; k < workers_; ++k) {
        const std::uint32_t i = (from + k) % workers_;
        if (!transport_.alive(i) || (only >= 0 && node_[i] != static_cast<std::uint32_t>(only)) ||
            (only == in_group && !group_on(node_[i], r.shape)))
          continue;
        const auto [suspended, mark] = transport_.occupancy_of(i);
        const std::uint32_t load = tasks_.load(i, suspended);
        if (load >= max_in_flight_) continue;
        if (mark != 0) {
          if (r.submitter == static_cast<int>(i) && r.id >= mark) {
            if (r.shape == 0 || r.shape == leases_[i].shape) return chosen(i, it);
            parent = static_cast<int>(i);
          }
          continue;
        }
        if (tasks_.in_flight(i) == 0) {
          if (idle < 0 &&
              ((resources_.size() == 1 && !where.group) || node_can_lease(node_[i], r.shape)))
            idle = static_cast<int>(i);
        } else if (leases_[i].shape == r.shape && load < leased_load && pipelines(r.shape)) {
          leased = static_cast<int>(i);
          leased_load = load;
        }
      }
      if (idle >= 0 && (leased < 0 || leased_load > 0) &&
          lease(static_cast<std::uint32_t>(idle), r.shape))
        return chosen(static_cast<std::uint32_t>(idle), it);
      if (leased >= 0) return chosen(static_cast<std::uint32_t>(leased), it);
      if (parent >= 0 && lend(static_cast<std::uint32_t>(parent), r)) return {parent, it};
      refused.push_back(r.shape);
    }
    return {-1, runnable.end()};
  }
  std::pair<int, queue_place> chosen(std::uint32_t slot, queue_place it) {
    (*it)->gpus = leases_[slot].grant.gpu_mask();
    return {static_cast<int>(slot), it};
  }

  /// Whether calls of requirement `s` may be sent to a worker already running one under the
  /// same lease. Only for CPUs: a worker runs the calls queued in it while a call blocks or
  /// awaits (the CPU follows load), which would run two calls on one lease's GPUs or custom
  /// resources at once. Those go one at a time.
  bool pipelines(std::uint32_t s) const noexcept {
    const resource_request& r = shape(s);
    return r.gpu == 0 && r.custom.empty();
  }
  /// The node a call of requirement `s` must run on: -1 for any, `unplaceable` for a node
  /// that is gone (a hard affinity; a soft one runs anywhere then, as it does when the node
  /// could never meet the requirement) or a placement group removed, `in_group` for the nodes
  /// of its group's bundles, `group_pending` while they are not reserved yet.
  int node_for(std::uint32_t s) const {
    const resource_request& r = shape(s);
    if (r.where.group) {
      const placement_group_entry* g = groups_.find(r.where.group);
      if (!g || g->removed) return unplaceable;
      return g->pending() ? group_pending : in_group;
    }
    if (r.where.node < 0) return -1;
    const auto n = static_cast<std::uint32_t>(r.where.node);
    const bool usable = n < resources_.size() && transport_.node_alive(n);
    if (r.where.soft) return usable && !resources_[n].refuse(r) ? static_cast<int>(n) : -1;
    return usable ? static_cast<int>(n) : unplaceable;
  }
  /// Whether node `n`'s ledger could lease requirement `s` to an idle worker now (in a
  /// cluster, where only some nodes may have it); remembered for the call being placed.
  bool node_can_lease(std::uint32_t n, std::uint32_t s) {
    if (lacking_[n]) return false;
    const resource_ledger* l = ledger_at(n, s);
    const bool fits = l && fits_now(*l, s);
    lacking_[n] = !fits;
    return fits;
  }
  /// The ledger requirement `s` leases from on node `n`: the node's, or for a call in a
  /// placement group a bundle of it on that node (the bundle named, or the first that fits
  /// now, else the first); null if the group has no bundle there.
  resource_ledger* ledger_at(std::uint32_t n, std::uint32_t s) {
    const placement& w = shape(s).where;
    if (!w.group) return &resources_[n];
    placement_group_entry* g = groups_.find(w.group);
    placed_bundle* b = g ? g->choose(
                               w.bundle, [&](const placed_bundle& pb) { return pb.node == n; },
                               [&](const placed_bundle& pb) { return fits_now(pb.ledger, s); },
                               [](const placed_bundle&) { return false; })
                         : nullptr;
    return b ? &b->ledger : nullptr;
  }
  /// Whether the placement group of requirement `s` has a bundle it may use on node `n`.
  bool group_on(std::uint32_t n, std::uint32_t s) {
    const placement& w = shape(s).where;
    placement_group_entry* g = groups_.find(w.group);
    const auto no = [](const placed_bundle&) { return false; };
    return g && g->choose(
                    w.bundle, [&](const placed_bundle& pb) { return pb.node == n; }, no, no);
  }
  /// The ledger worker `slot`'s lease came from.
  resource_ledger& lease_ledger(std::uint32_t slot) {
    return leases_[slot].ledger ? *leases_[slot].ledger : resources_[node_[slot]];
  }
  resource_ledger& actor_ledger(const actor_entry& a) {
    return a.ledger ? *a.ledger : resources_[a.node];
  }
  /// A lease, loan or actor of placement group `id` let go of its bundle's resources.
  void let_go(std::uint64_t id) {
    if (!id) return;
    if (placement_group_entry* g = groups_.find(id)) {
      --g->users;
      groups_.forget_if_done(*g);
    }
  }
  void hold(std::uint64_t id) {
    if (placement_group_entry* g = id ? groups_.find(id) : nullptr) ++g->users;
  }
  /// The first task worker on node `n` (wrapping to node 0 past the last).
  std::uint32_t first_worker_at(std::uint32_t n) const noexcept {
    for (std::uint32_t i = 0; i < workers_; ++i)
      if (node_[i] >= n) return i;
    return 0;
  }
  /// Gives idle worker `slot` a lease for requirement `s`, if its node's ledger has it free.
  bool lease(std::uint32_t slot, std::uint32_t s) {
    resource_ledger* l = ledger_at(node_[slot], s);
    if (!l) return false;
    if (s == 0) return fits_now(*l, 0);
    auto g = l->acquire(shape(s), cpu_in_use(l), false);
    if (!g) return false;
    const std::uint64_t group = shape(s).where.group;
    leases_[slot] = worker_lease{s, std::move(*g), true, group ? l : nullptr};
    hold(group);
    ++leases_held_;
    refresh();
    return true;
  }
  /// Whether `r` was made by a task worker's call that is blocked now (r is its descendant).
  bool parent_blocked(const task_record& r) const noexcept {
    if (r.submitter < 0 || static_cast<std::uint32_t>(r.submitter) >= workers_) return false;
    const std::uint64_t mark =
        transport_.occupancy_of(static_cast<std::uint32_t>(r.submitter)).blocked_mark;
    return mark != 0 && r.id >= mark;
  }
  /// Lends blocked worker `slot` to `r`, a descendant of its blocked call that asks for
  /// another requirement than the worker's lease, if the ledger grants r's requirement now
  /// (its CPU taken too: the worker's lease counts none while only lent calls run there).
  /// The call runs above its blocked ancestor with the grant's GPUs, and the grant goes
  /// back when it ends or leaves the worker (end_loan). Without it, a parent blocked on a
  /// child of another requirement, with every worker so blocked, would wait for ever.
  bool lend(std::uint32_t slot, task_record& r) {
    resource_ledger* l = ledger_at(node_[slot], r.shape);
    if (!l) return false;
    auto g = l->acquire(shape(r.shape), cpu_in_use(l));
    if (!g) return false;
    r.gpus = g->gpu_mask();
    r.lent = true;
    hold(shape(r.shape).where.group);
    loans_.insert_or_assign(r.id, loan{slot, std::move(*g), l});
    ++lent_[slot];
    return true;
  }
  /// Places actor `a`: takes what it holds for life, if free now; one given nothing needs a
  /// CPU free to be placed and holds none after (Ray's rule). False if it must wait.
  bool place(actor_entry& a) {
    resource_ledger& l = actor_ledger(a);
    if (!a.shape) return a.placed = fits_now(l, 0);
    auto g = l.acquire(shape(a.shape), cpu_in_use(&l));
    if (!g) return false;
    hold(a.group);
    a.grant = std::move(*g);
    a.placed = true;
    refresh();
    return true;
  }
  /// Whether ledger `l` could give requirement `s` now, besides the CPU its task workers hold
  /// (0, the default: a CPU free).
  bool fits_now(const resource_ledger& l, std::uint32_t s) const {
    const resource_amount busy = cpu_in_use(&l);
    return s == 0 ? l.cpu_free() - busy >= resource_unit : l.fits(shape(s), busy);
  }
  /// CPU the task workers leased from ledger `l` (a node's, or a bundle's) hold: their
  /// lease's, for each that runs something now besides the calls it was lent (whose CPU the
  /// ledger holds).
  resource_amount cpu_in_use(const resource_ledger* l) const {
    resource_amount n = 0;
    for (std::uint32_t i = 0; i < workers_; ++i) {
      const resource_ledger* from = leases_[i].ledger ? leases_[i].ledger : &resources_[node_[i]];
      if (from == l && transport_.alive(i) && tasks_.load(i, transport_.suspended(i)) > lent_[i])
        n += shape(leases_[i].shape).cpu;
    }
    return n;
  }
  /// Whether dispatch may ignore resources: only default tasks, a CPU for every worker.
  void refresh() noexcept {
    unconstrained_ = shaped_calls_ == 0 && leases_held_ == 0;
    for (std::size_t n = 0; n < resources_.size() && unconstrained_; ++n)
      unconstrained_ =
          resources_[n].cpu_free() >= resource_amount{node_workers_[n]} * resource_unit;
  }

  struct loan {
    std::uint32_t slot = 0;             // the worker lent
    resource_grant grant;               // the call's own resources (its CPU taken)
    resource_ledger* ledger = nullptr;  // where from: its node's, or its bundle's
  };
  struct worker_lease {
    std::uint32_t shape = 0;            // the requirement its calls share
    resource_grant grant;               // its GPUs
    bool held = false;                  // the ledger holds it (not the default requirement)
    resource_ledger* ledger = nullptr;  // a bundle's; null: its node's
  };

  task_table& tasks_;
  actor_table& actors_;
  transport& transport_;
  call_sender& sender_;
  std::vector<resource_ledger>& resources_;  // per node
  placement_group_table& groups_;
  std::uint32_t workers_;
  std::uint32_t max_in_flight_;
  std::uint32_t nodes_;  // the nodes (1 outside a cluster)
  /// The calls a worker on another node may carry: enough to cover the round trip's time.
  std::uint32_t remote_in_flight_;
  std::vector<resource_request> shapes_;           // requirement s is shapes_[s - 1]
  std::vector<worker_lease> leases_;               // per task worker
  std::unordered_map<std::uint64_t, loan> loans_;  // by call id: calls lent a blocked worker
  std::vector<std::uint32_t> lent_;                // per task worker: its lent calls in flight
  std::vector<std::uint32_t> node_;                // per task worker: its node
  std::vector<std::uint32_t> node_workers_;        // per node: its task workers
  std::uint32_t spread_next_ = 0;                  // the node a spread call looks at first
  std::vector<std::uint8_t> lacking_;              // per node: it cannot lease the call placed now
  std::uint32_t leases_held_ = 0;
  std::int64_t shaped_calls_ = 0;  // live task calls with a requirement other than the default
  bool unconstrained_ = true;
  std::unordered_set<std::uint64_t> backlog_;  // actors whose mailbox was full
  struct search_miss {
    std::uint64_t mark = 0, nested_queued = 0;
    bool operator==(const search_miss&) const = default;
  };
  std::vector<search_miss> missed_;  // per worker: the last search of the queue that failed
};

}  // namespace detail
CORAY_END_NAMESPACE
