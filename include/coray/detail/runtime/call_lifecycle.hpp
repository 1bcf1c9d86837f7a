#pragma once
/// A call's life in the driver, from admission to the end: held back until its object_ref
/// arguments are ready, queued, dispatched (call_pump), failed or finished and forgotten;
/// and the handle counts a call changes, which keep actors and pinned blocks alive. The
/// orchestrator builds on it with what happens to calls and processes from outside (new
/// calls, replies, deaths, restarts). It owns the orchestrator's parts (design.md, "The
/// runtime core") and never calls up into the orchestrator.
///
/// Driver only, loop thread only.

#include <fmt/format.h>

#include <algorithm>
#include <coray/detail/runtime/actor_table.hpp>
#include <coray/detail/runtime/block_ledger.hpp>
#include <coray/detail/runtime/call_pump.hpp>
#include <coray/detail/runtime/call_sender.hpp>
#include <coray/detail/runtime/object_directory.hpp>
#include <coray/detail/runtime/object_spiller.hpp>
#include <coray/detail/runtime/process.hpp>
#include <coray/detail/runtime/reply_router.hpp>
#include <coray/detail/runtime/resource_ledger.hpp>
#include <coray/detail/runtime/state_records.hpp>
#include <coray/detail/runtime/task_table.hpp>
#include <coray/detail/runtime/tick_clock.hpp>
#include <coray/detail/runtime/transport.hpp>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

struct orchestrator_config {
  std::uint32_t num_workers = 1;  // slots [0, num_workers) are task workers
  std::uint32_t max_actors = 0;   // then this many actor slots
  std::uint32_t max_tasks_in_flight_per_worker = 4;
  std::uint32_t epoch = 0;  // of the states it makes
  std::string spill_directory = {};
  // The runtime's resources (resource_ledger). num_cpus below 0: one per task worker.
  resource_amount num_cpus = -1;
  resource_amount num_gpus = 0;
  std::vector<std::string> gpu_ids = {};  // one per started unit of num_gpus
  std::map<std::string, resource_amount> custom_resources = {};
  /// In a cluster, the other nodes' (node 1 first), whose processes the transport places
  /// (transport::node_of); each node has a ledger of its own.
  std::vector<node_resources> other_nodes = {};
  std::size_t task_history = 10000;  // finished calls the state API keeps, oldest evicted
  bool record_timeline = false;      // keep calls' times too (as many, or 10,000)
};

class call_lifecycle {
 public:
  call_lifecycle(orchestrator_config cfg, segment& seg, transport& t)
      : cfg_(std::move(cfg)),
        seg_(seg),
        transport_(t),
        tasks_(cfg_.num_workers),
        actors_(cfg_.num_workers, cfg_.max_actors),
        spiller_(seg, cfg_.spill_directory),
        ledger_(seg, cfg_.num_workers + cfg_.max_actors),
        router_(seg, t, ledger_, cfg_.num_workers + cfg_.max_actors),
        sender_(seg, t, ledger_, spiller_, stamp_),
        resources_(ledgers(cfg_)),
        pump_(tasks_, actors_, t, sender_, resources_, groups_, cfg_.num_workers,
              cfg_.max_tasks_in_flight_per_worker),
        history_(cfg_.record_timeline ? 0 : cfg_.task_history),
        timeline_(!cfg_.record_timeline ? 0
                  : cfg_.task_history   ? cfg_.task_history
                                        : 10000) {}
  call_lifecycle(const call_lifecycle&) = delete;
  call_lifecycle& operator=(const call_lifecycle&) = delete;

  const orchestrator_config& config() const noexcept { return cfg_; }

  /// A handle to actor `id` was made (+1) or dropped (-1) somewhere. An id tagged with
  /// pinned_block_tag is a shared block a call pins (see collect_pinned_block).
  void actor_ref(std::uint64_t id, int delta) noexcept {
    if (id & pinned_block_tag) {
      object_block* b = seg_.at<object_block>(id & ~pinned_block_tag);
      if (delta > 0)
        seg_.add_ref(b);
      else
        seg_.release(b);
      return;
    }
    actor_entry* a = actors_.find(id);
    if (!a) return;
    switch (actors_.adjust_handles(*a, delta)) {
      case actor_table::handle_outcome::forget:
        forget_actor(id);
        break;
      case actor_table::handle_outcome::close:
        pump_actor(*a);
        break;
      case actor_table::handle_outcome::none:
        break;
    }
  }

  // ---- blocks ---------------------------------------------------------------------------

  /// A new block for the driver (spilling to make room if enabled); throws object_store_full.
  object_block* allocate(std::size_t size) { return spiller_.allocate(size); }

 protected:
  ~call_lifecycle() = default;

  state_ptr new_state() const {
    auto s = state_ptr::adopt(new object_state);
    s->epoch = cfg_.epoch;
    return s;
  }

  void start_process(std::uint32_t slot) {
    router_.new_process(slot);
    transport_.start(slot);
  }

  /// Enters a call in the table, as one whose dependencies call back here (and, recording
  /// a timeline, as submitted now).
  task_record* insert(std::unique_ptr<task_record> rec) {
    task_record* r = tasks_.insert(std::move(rec));
    r->owner = this;
    if (timeline_.capacity()) [[unlikely]]
      stamp_.admit(r->submitted_tick);
    return r;
  }

  // ---- admission and dependencies -----------------------------------------------------

  void admit(std::unique_ptr<task_record> rec) {
    task_record* r = insert(std::move(rec));
    for (std::uint64_t a : held_actors(r->held)) actor_ref(a, +1);
    if (r->returns) [[unlikely]]
      settle_returns_with(*r);
    task_table::watch_dependencies(*r, &call_lifecycle::on_dependency);
    if (r->extras && r->extras->resources && !r->actor && !admit_requirement(*r)) return;
    if (r->actor) {
      // Actor calls keep their order: they wait in the actor's queue, dependencies or not.
      actor_entry* a = actors_.find(r->actor);
      if (!a || a->dead || a->killed) {
        fail(*r, std::make_exception_ptr(actor_died(!a ? "coray: no such actor" : a->cause)));
        return;
      }
      if (!r->construct) r->max_retries = a->max_task_retries;
      a->queue.push_back(r);
      pump_actor(*a);
    } else if (r->pending_deps == 0) {
      if (r->failed_dep)
        fail(*r, nullptr);  // settled already: its error goes to a nested call's maker
      else
        make_runnable(*r);
    }
  }

  static void on_dependency(void* ctx, object_state& dep) {
    auto* r = static_cast<task_record*>(ctx);
    if (dep.st == object_state::status::failed && !r->failed_dep) {
      r->failed_dep = true;
      r->result->set_error(dep.error());
    }
    if (--r->pending_deps != 0) return;
    auto& o = *static_cast<call_lifecycle*>(r->owner);
    if (r->actor) {
      if (actor_entry* a = o.actors_.find(r->actor)) o.pump_actor(*a);
    } else if (r->failed_dep) {
      o.fail(*r, nullptr);  // settled already: its error goes to a nested call's maker
    } else {
      o.make_runnable(*r);
    }
  }

  /// Why no node could ever meet `r` (a hard affinity: the node named), or nullopt if one can.
  std::optional<std::string> why_never(const resource_request& r) const {
    const auto n = static_cast<std::uint32_t>(resources_.size());
    if (r.where.group) return why_never_in_group(r);
    if (r.where.node >= 0) {
      const auto node = static_cast<std::uint32_t>(r.where.node);
      if (node >= n) {
        if (!r.where.soft)
          return fmt::format("it asks for node {}, and the runtime has {} node{} (0 to {})", node,
                             n, n == 1 ? "" : "s", n - 1);
      } else if (auto why = resources_[node].refuse(r); !why || !r.where.soft) {
        return why;
      }
    }
    std::optional<std::string> first;
    for (const auto& l : resources_) {
      auto why = l.refuse(r);
      if (!why) return std::nullopt;
      if (!first) first = std::move(why);
    }
    if (n > 1)
      *first += fmt::format(" (node 0's; none of the other {} nodes has it either)", n - 1);
    return first;
  }

  /// why_never for a call or actor in a placement group: the group must be there, and the
  /// bundle named (or one of them) hold at least what it asks.
  std::optional<std::string> why_never_in_group(const resource_request& r) const {
    const placement_group_entry* g = groups_.find(r.where.group);
    if (!g || g->removed)
      return fmt::format("it asks for placement group {}, which was removed", r.where.group);
    if (r.where.bundle >= static_cast<std::int32_t>(g->bundles.size()))
      return fmt::format("it asks for bundle {} of placement group {}, which has {}",
                         r.where.bundle, g->id, g->bundles.size());
    for (std::size_t b = 0; b < g->bundles.size(); ++b) {
      if (r.where.bundle >= 0 && b != static_cast<std::size_t>(r.where.bundle)) continue;
      const resource_request& held = g->bundles[b];
      std::vector<std::string> ids(
          static_cast<std::size_t>((held.gpu + resource_unit - 1) / resource_unit));
      if (!resource_ledger(held.cpu, held.gpu, ids, held.custom).refuse(r)) return std::nullopt;
    }
    return fmt::format(
        "it asks for more than {} of placement group {} holds ({})",
        r.where.bundle < 0 ? std::string("any bundle") : fmt::format("bundle {}", r.where.bundle),
        g->id,
        r.where.bundle < 0 ? g->bundles[0].describe()
                           : g->bundles[static_cast<std::size_t>(r.where.bundle)].describe());
  }

  /// Gives a task call its requirement's shape; fails it if the runtime could never meet it.
  bool admit_requirement(task_record& r) {
    const auto requirement = std::move(r.extras->resources);
    if (auto why = why_never(*requirement)) {
      auto e = std::make_exception_ptr(
          infeasible_resources(fmt::format("coray: {} can never run: {}", r.label(), *why)));
      if (r.pending_deps) {  // settled now, dropped once its dependencies settle
        if (!r.failed_dep) r.result->set_error(e);
        r.failed_dep = true;
      } else {
        fail(r, e);
      }
      return false;
    }
    r.shape = pump_.shape_of(*requirement);
    if (r.shape) pump_.count_shaped(+1);
    return true;
  }

  /// Queues a task whose arguments are ready; fails it if no task worker is left.
  void make_runnable(task_record& r) {
    if (!workers_lost_.empty())
      fail(r, std::make_exception_ptr(worker_crashed(workers_lost_)));
    else
      tasks_.make_runnable(&r);
  }

  /// Fails a call that has not been sent and forgets it.
  void fail(task_record& r, std::exception_ptr e) {
    if (!r.result->settled()) r.result->set_error(std::move(e));
    if (r.submitter >= 0) forward(r);
    finish(r.id);
  }

  /// Forgets a call, letting go of what it held.
  void finish(std::uint64_t id) {
    auto r = tasks_.remove(id);
    if (!r) return;
    const int pid = r->worker >= 0 ? transport_.pid(r->worker) : 0;
    const bool failed =
        r->result && r->result->st.load(std::memory_order_relaxed) == object_state::status::failed;
    if (r->submitted_tick) [[unlikely]]  // recording a timeline (insert)
      record_timeline(*r, pid, failed);  // which keeps the history too
    else
      history_.record(
          {r->id, r->name, pid, r->actor, static_cast<std::uint16_t>(r->attempt), failed});
    if (r->shape) {
      pump_.end_loan(*r);
      pump_.count_shaped(-1);
    }
    for (auto* b : r->blocks()) seg_.release(b);
    if (r->message()) seg_.release(r->message());
    if (r->pinned)
      for (auto& d : r->deps)
        if (d->block && d->pins) --d->pins;
    held_contents held = std::move(r->held);
    r.reset();
    for (std::uint64_t a : held_actors(held)) actor_ref(a, -1);
  }

  /// A call of a function returning ray::returns: its own result is a ref to each result,
  /// stored by the process that ran it. Once it settles, each of the caller's results takes
  /// its value (sharing its block), or the call's error.
  void settle_returns_with(task_record& r) {
    struct returns_waiter {
      call_lifecycle* self;
      std::vector<state_ptr> outs;
      static void settled(void* ctx, object_state& all) {
        std::unique_ptr<returns_waiter> w(static_cast<returns_waiter*>(ctx));
        w->self->settle_returns(all, w->outs);
      }
    };
    r.result->waiters.push_back(
        {&returns_waiter::settled, new returns_waiter{this, std::move(*r.returns)}});
    r.returns.reset();
  }
  void settle_returns(object_state& all, std::vector<state_ptr>& outs) {
    auto fail_all = [&](const std::exception_ptr& e) {
      for (auto& o : outs)
        if (!o->settled()) o->set_error(e);
    };
    if (all.st.load(std::memory_order_relaxed) == object_state::status::failed)
      return fail_all(all.error());
    const std::span<const state_ptr> values = held_refs(all.contained());
    if (values.size() != outs.size())
      return fail_all(std::make_exception_ptr(
          internal_error("coray: a call's reply did not hold a ref per ray::returns result")));
    for (std::size_t i = 0; i < outs.size(); ++i) {
      object_state& out = *outs[i];
      object_state& in = *values[i];
      if (out.settled()) continue;
      if (in.st.load(std::memory_order_relaxed) != object_state::status::ready) {
        out.set_error(in.settled() ? in.error()
                                   : std::make_exception_ptr(internal_error(
                                         "coray: a ray::returns result arrived unsettled")));
        continue;
      }
      try {
        if (const object_contents* c = in.contained()) {  // held by this object too
          out.set_contained(std::make_unique<object_contents>(*c));
          for (std::uint64_t a : c->actors) actor_ref(a, +1);
        }
        const auto bytes = in.value_bytes();  // a spilled value is brought back
        if (in.block) {
          seg_.add_ref(in.block);
          out.set_block(in.block);
          spiller_.adopted(out);
        } else {
          out.set_inline(bytes);
        }
      } catch (...) {
        out.set_error(std::current_exception());
      }
    }
  }

  /// The process an actor's calls run in, as the records show it: its current one, or its
  /// last once it is dead.
  int pid_of(const actor_entry& a) const { return a.dead ? a.pid : transport_.pid(a.slot); }

  /// `pid` and `failed` as the task history took them.
  void record_timeline(const task_record& r, int pid, bool failed) noexcept {
    if (r.actor)
      if (const actor_entry* a = actors_.find(r.actor)) pid = pid_of(*a);
    std::uint64_t bytes = r.args.size();
    for (const object_block* b : r.blocks()) bytes += b->size;
    // Ticks until timeline() converts them. An admission waiting for its stamp gets it now,
    // before the call leaves the table; one spread between two readings may be later than
    // the send made while admitting it (that took the earlier reading): it takes the send's.
    stamp_.settle();
    const std::int64_t ended = std::max(stamp_.now(), r.submitted_tick);
    const std::int64_t sent = r.sent_tick ? std::min(r.sent_tick, ended) : 0;
    const std::int64_t submitted = sent ? std::min(r.submitted_tick, sent) : r.submitted_tick;
    timeline_.record({r.id, r.name, pid, r.actor, static_cast<std::uint16_t>(r.attempt), failed,
                      submitted, sent, ended, bytes});
  }

  // ---- dispatch -----------------------------------------------------------------------

  bool dispatch() {
    std::vector<task_record*> failed;
    const bool progress = pump_.dispatch(failed);
    for (task_record* r : failed) fail(*r, r->result->error());
    return progress;
  }
  bool pump_actor(actor_entry& a) {
    std::vector<task_record*> failed;
    const bool progress = pump_.pump(a, failed);
    for (task_record* r : failed) fail(*r, r->result->error());
    return progress;
  }

  bool answer_block_requests() {
    return ledger_.answer([this](std::size_t size) { return allocate(size); },
                          [this](std::uint32_t slot, const std::uint64_t(&message)[5]) {
                            router_.post(slot, msg_kind::block_granted, message, sizeof message);
                          });
  }

  /// Sends a nested call's result to the process that made the call, if it still wants it.
  void forward(task_record& r) {
    router_.forward(static_cast<std::uint32_t>(r.submitter), r.submitter_generation, r.id,
                    r.result);
  }

  void forget_actor(std::uint64_t id) {
    for (auto* b : actors_.forget(id)) seg_.release(b);
  }

  // ---- the state API's records (ray::state): copies, on the loop thread -----------------

 public:
  /// Live calls, then the finished ones kept in the history, oldest first.
  std::vector<state::task_info> list_tasks() const {
    std::vector<state::task_info> out;
    tasks_.for_each([&](const task_record& r) {
      state::task_info t{
          r.id,   std::string(r.name), state::task_state::queued, r.actor != 0, 0, r.attempt,
          r.actor};
      const actor_entry* a = r.actor ? actors_.find(r.actor) : nullptr;
      if (r.pending_deps > 0) {
        t.state = state::task_state::waiting_for_dependencies;
      } else if (r.worker >= 0) {
        t.state = state::task_state::running;
        t.pid = transport_.pid(static_cast<std::uint32_t>(r.worker));
      } else if (a && std::find(a->queue.begin(), a->queue.end(), &r) == a->queue.end()) {
        t.state = state::task_state::running;  // sent to its actor
        t.pid = pid_of(*a);
      }
      out.push_back(std::move(t));
    });
    auto ended = [&](const auto& e) {
      int pid = e.pid;
      if (e.actor)
        if (const actor_entry* a = actors_.find(e.actor)) pid = pid_of(*a);
      out.push_back({e.id, std::string(e.name),
                     e.failed ? state::task_state::failed : state::task_state::finished,
                     e.actor != 0, pid, e.attempt, e.actor});
    };
    if (!cfg_.record_timeline)
      history_.for_each(ended);
    else if (cfg_.task_history)  // the timeline keeps as many calls, and all the history says
      timeline_.for_each(ended);
    return out;
  }
  std::vector<timeline_entry> timeline() const {
    std::vector<timeline_entry> out;
    out.reserve(timeline_.size());
    const tick_clock::to_ns ns = stamp_.clock().converter();
    timeline_.for_each([&](timeline_entry e) {
      e.submitted_ns = ns(e.submitted_ns);
      e.sent_ns = e.sent_ns ? ns(e.sent_ns) : 0;
      e.ended_ns = ns(e.ended_ns);
      out.push_back(e);
    });
    return out;
  }
  bool records_timeline() const noexcept { return timeline_.capacity() != 0; }
  /// Recording a timeline: a loop turn's events (replies, sends) take one stamp, read by
  /// the first of them after the turn begins (here); a call's admission reads it anew, or
  /// once per eight in a fast run of admissions (turn_stamp::admit).
  void stamp_turn() noexcept { stamp_.next_turn(); }
  /// The actors the driver still tracks (a dead one until its last handle goes).
  std::vector<state::actor_info> list_actors() const {
    std::vector<state::actor_info> out;
    actors_.for_each([&](const actor_entry& a) {
      state::actor_info i{a.id, a.type_name, a.name,  state::actor_state::alive,
                          0,    a.restarts,  a.cause, static_cast<int>(a.node)};
      if (a.dead) {
        i.state = state::actor_state::dead;
        i.pid = a.pid;
      } else {
        i.pid = transport_.pid(a.slot);
        if (!a.constructed || !a.constructed->settled())
          i.state = a.restarts > 0 ? state::actor_state::restarting
                                   : state::actor_state::pending_creation;
      }
      out.push_back(std::move(i));
    });
    std::sort(out.begin(), out.end(), [](const auto& x, const auto& y) { return x.id < y.id; });
    return out;
  }
  /// The objects the driver holds with a value in the store or the spill file, and those
  /// refs inside values named (ray::state::list_objects), by id then size.
  std::vector<state::object_info> list_objects(const object_directory& named) const {
    std::vector<state::object_info> out;
    std::unordered_set<const object_state*> seen;
    auto add = [&](const object_state& s) {
      if (!seen.insert(&s).second) return;
      state::object_info i;
      i.id = s.id;
      i.handles = s.handles.load(std::memory_order_relaxed);
      i.pins = s.pins;
      if (const object_contents* c = s.contained())
        i.contained = static_cast<std::uint32_t>(c->refs.size() + c->actors.size());
      const auto st = s.st.load(std::memory_order_acquire);
      if (st == object_state::status::pending) {
        i.location = state::object_location::pending;
      } else if (st == object_state::status::failed) {
        i.location = state::object_location::failed;
      } else if (s.block) {
        i.location = state::object_location::store;
        i.size = static_cast<std::size_t>(s.block->size);
        i.store_refs = s.block->refs.load(std::memory_order_relaxed);
      } else if (s.spilled()) {
        i.location = state::object_location::spilled;
        i.size = static_cast<std::size_t>(s.spill_size());
      } else {
        i.location = state::object_location::inline_value;
        i.size = s.bytes.size();
      }
      out.push_back(i);
    };
    spiller_.for_each_held(add);
    named.for_each(add);
    std::sort(out.begin(), out.end(), [](const auto& x, const auto& y) {
      return x.id != y.id ? x.id < y.id : x.size > y.size;
    });
    return out;
  }
  /// The task workers, in slot order, then the actors' live processes.
  std::vector<state::worker_info> list_workers() const {
    std::vector<state::worker_info> out;
    std::vector<std::uint32_t> held(cfg_.num_workers, 0);  // GPUs of the calls each runs
    tasks_.for_each([&](const task_record& r) {
      if (!r.actor && r.worker >= 0 && static_cast<std::uint32_t>(r.worker) < held.size())
        held[static_cast<std::size_t>(r.worker)] |= r.gpus;
    });
    for (std::uint32_t s = 0; s < cfg_.num_workers; ++s) {
      out.push_back({transport_.pid(s), state::worker_kind::task_worker, transport_.alive(s),
                     tasks_.in_flight(s), 0, gpu_names(held[s], transport_.node_of(s)),
                     static_cast<int>(transport_.node_of(s))});
      transport_.usage_of(s, out.back().cpu_seconds, out.back().rss_bytes);
    }
    for (const auto& a : list_actors())
      if (a.state != state::actor_state::dead && a.pid > 0) {
        const actor_entry* e = actors_.find(a.id);
        out.push_back({a.pid, state::worker_kind::actor, true, 0, a.id,
                       gpu_names(e ? e->grant.gpu_mask() : 0, e ? e->node : 0), a.node});
        if (e) transport_.usage_of(e->slot, out.back().cpu_seconds, out.back().rss_bytes);
      }
    return out;
  }
  /// The names of the GPUs in `mask` (indices into node `node`'s GPU ids).
  std::vector<std::string> gpu_names(std::uint32_t mask, std::uint32_t node = 0) const {
    std::vector<std::string> out;
    const auto& ids = resources_[node < resources_.size() ? node : 0].gpu_ids();
    for (std::size_t i = 0; i < ids.size() && i < 32; ++i)
      if (mask & (std::uint32_t{1} << i)) out.push_back(ids[i]);
    return out;
  }

 protected:
  /// One ledger per node: this machine's, then the other nodes' (orchestrator_config).
  static std::vector<resource_ledger> ledgers(const orchestrator_config& c) {
    std::vector<resource_ledger> out;
    out.emplace_back(c.num_cpus < 0 ? resource_amount{c.num_workers} * resource_unit : c.num_cpus,
                     c.num_gpus, c.gpu_ids, c.custom_resources);
    for (const auto& n : c.other_nodes)
      out.emplace_back(n.num_cpus, n.num_gpus, n.gpu_ids, n.custom_resources);
    return out;
  }

  orchestrator_config cfg_;
  segment& seg_;
  transport& transport_;
  task_table tasks_;
  actor_table actors_;
  object_spiller spiller_;
  block_ledger ledger_;
  reply_router router_;
  call_sender sender_;
  std::vector<resource_ledger> resources_;  // per node
  placement_group_table groups_;
  call_pump pump_;
  std::string workers_lost_;  // why no task worker can run calls any more; empty while one can
  task_history history_;
  call_timeline timeline_;
  turn_stamp stamp_;  // recording a timeline: the loop turn's time (stamp_turn, admit)
};

}  // namespace detail
CORAY_END_NAMESPACE
