#pragma once
/// The orchestrator: the driver's decisions. It admits calls (the driver's own and the
/// nested ones processes submit), holds each back until its object_ref arguments are
/// ready, sends task calls to the least busy worker and actor calls to their actor in the
/// order they were made, settles results, retries and restarts after deaths, and accounts
/// for every store block a process holds. It reaches processes only through a `transport`
/// and keeps its state in parts with one job each (design.md, "The runtime core"): parts
/// return decisions; only the orchestrator acts on them. What happens to a call inside the
/// driver (admission, dependencies, dispatch, its end) is call_lifecycle, which it builds on;
/// here is what comes from outside: new calls, replies, deaths, restarts, kills. The unit
/// tests drive it with a fake transport.
///
/// Driver only, loop thread only.

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <coray/detail/runtime/call_lifecycle.hpp>
#include <coray/detail/runtime/memory_return.hpp>
#include <coray/detail/runtime/object_directory.hpp>
#include <coray/detail/runtime/process.hpp>
#include <coray/detail/runtime/registry.hpp>
#include <coray/detail/runtime/reply_router.hpp>
#include <coray/detail/runtime/system.hpp>
#include <coray/detail/runtime/task_table.hpp>
#include <coray/detail/runtime/transport.hpp>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

class orchestrator final : public call_lifecycle, public transport_events {
 public:
  orchestrator(orchestrator_config cfg, segment& seg, transport& t)
      : call_lifecycle(std::move(cfg), seg, t),
        slot_actor_(cfg_.num_workers + cfg_.max_actors),
        start_failures_(cfg_.num_workers + cfg_.max_actors) {}

  orchestrator(const orchestrator&) = delete;
  orchestrator& operator=(const orchestrator&) = delete;

  /// Starts a process in every task worker slot.
  void start_workers() {
    for (std::uint32_t i = 0; i < cfg_.num_workers; ++i) start_process(i);
  }

  /// Forgets every call and actor (teardown, after the processes are gone).
  void clear() {
    actors_.clear_queues();
    tasks_.clear();
    spiller_.clear();
  }

  object_spiller& spiller() noexcept { return spiller_; }
  const object_spiller& spiller() const noexcept { return spiller_; }
  const task_table& tasks() const noexcept { return tasks_; }
  const actor_table& actors() const noexcept { return actors_; }
  /// The runtime's resources by Ray's names: all (`available` false), or those free now.
  std::map<std::string, double> resources(bool available, int node = -1) {
    return pump_.resources(available, node);
  }
  /// Once a memory_return::period: gives memory back when it has been idle (memory_return).
  void return_memory() { memory_.check(seg_, tasks_); }

  // ---- calls ---------------------------------------------------------------------------

  /// Admits a call; returns its result's state.
  state_ptr submit(task_spec&& spec) {
    state_ptr result = new_state();
    submit_into(std::move(spec), result);
    return result;
  }
  /// Admits a call whose result is `result` (a pending state made by the caller).
  void submit_into(task_spec&& spec, state_ptr result) {
    std::shared_ptr<stream_state> stream = std::move(spec.stream);
    if (stream) [[unlikely]]
      end_stream_with(stream, *result);  // whatever settles the call ends its stream
    if (!transport_.can_start())
      throw worker_crashed("coray: the runtime's supervisor and workers are gone");
    const std::uint64_t id = next_task_id_++;
    result->id = id;  // lets ray::cancel find the call
    if (stream) [[unlikely]] {
      stream->id = id;
      streams_.emplace(id, std::move(stream));
    }
    // Task calls already waiting mean no worker had room at the last try, and only a turn
    // of the loop (a reply, a worker suspending a call) makes some: that turn's service()
    // sends them, this one behind them. Without resources in play a try now would find the
    // same (and runs per call of a burst); with them, this call may fit where they do not.
    const bool behind = !tasks_.runnable.empty();
    admit(task_record::from(id, std::move(spec), std::move(result)));
    if (!behind || !pump_.unconstrained()) dispatch();
  }

  /// Whether an actor's calls wait in the driver behind its full inbox.
  bool actor_calls_waiting() const noexcept { return pump_.has_backlog(); }

  /// ray::cancel: a call not yet sent is removed; one running keeps running (or, with
  /// `force`, its worker is killed), and either way its result becomes `cancelled` now.
  void cancel_call(std::uint64_t id, bool force) {
    task_record* found = tasks_.find(id);
    if (!found || found->result->settled()) return;
    task_record& r = *found;
    r.cancelled = true;
    auto e = std::make_exception_ptr(
        cancelled(fmt::format("coray: {} was cancelled", r.name.empty() ? "the call" : r.name)));
    if (r.pending_deps) {
      r.failed_dep = true;  // settled now, dropped once its dependencies settle
      r.result->set_error(e);
    } else if (erase_one(tasks_.runnable, &r) ||
               (r.actor && actors_.find(r.actor) && erase_one(actors_.find(r.actor)->queue, &r))) {
      fail(r, e);  // not sent: it never runs
    } else {
      r.result->set_error(e);  // sent: the reply, if any, is ignored
      if (force && !r.actor && r.worker >= 0) transport_.kill(static_cast<std::uint32_t>(r.worker));
    }
  }

  /// A streaming generator's consumer: its producer may make items up to index `limit`;
  /// 0 stops it and cancels the call (design.md, "Streaming generators").
  void stream_credit(std::uint64_t id, std::uint64_t limit) {
    task_record* r = tasks_.find(id);
    if (!r) return;
    if (auto it = streams_.find(id); it != streams_.end() && it->second->forward_to >= 0)
      it->second->base = std::max(it->second->base, limit - std::min(limit, stream_window));
    send_credit(*r, limit);
    if (limit == 0) cancel_call(id, false);
  }

  // ---- refs inside values (design.md, "Refs inside objects") -----------------------------

  /// The driver's objects that refs in a value being written name: listed by id.
  void publish_refs(std::span<const state_ptr> refs) {
    for (const auto& r : refs) directory_.publish(*r, next_task_id_++);
  }
  /// The driver's handle for a ref read from a value; codec_error for an id never issued.
  state_ptr ref_from_id(std::uint64_t id) const {
    if (state_ptr s = directory_.find(id)) return s;
    throw codec_error(unknown_ref(id));
  }
  /// A driver state with an id lost its last handle.
  void forget(object_state& s) noexcept { directory_.forget(s); }
  const object_directory& directory() const noexcept { return directory_; }
  std::vector<state::object_info> list_objects() const {
    return call_lifecycle::list_objects(directory_);
  }

  // ---- actors ---------------------------------------------------------------------------

  std::uint64_t spawn_actor(actor_spawn_request req) {
    // A refused spawn keeps nothing: its constructor's argument blocks go back.
    auto refuse = [&](auto error) {
      for (auto* b : std::exchange(req.constructor.blocks, {})) seg_.release(b);
      throw error;
    };
    if (!transport_.can_start()) refuse(worker_crashed("coray: the runtime's supervisor is gone"));
    if (!req.name.empty() && actors_.name_taken(req.name))
      refuse(usage_error(fmt::format("ray::spawn: an actor named '{}' already exists", req.name)));
    resource_request need = req.resources ? *req.resources : resource_request{};
    need.where = req.where;
    if (auto why = why_never(need))
      refuse(infeasible_resources(
          fmt::format("ray::spawn: actor {} can never be placed: {}", req.type_name, *why)));
    if (need.where.group) {
      const placement_group_entry* g = groups_.find(need.where.group);
      if (g && g->pending())
        refuse(usage_error(fmt::format(
            "ray::spawn: placement group {} is not reserved yet: wait for it (its ready() or "
            "wait()) before placing actors in it",
            g->id)));
    }
    if (need.where.node >= 0 && !need.where.soft &&
        !transport_.node_alive(static_cast<std::uint32_t>(need.where.node)))
      refuse(infeasible_resources(fmt::format(
          "ray::spawn: actor {} can never be placed: it asks for node {}, which is lost",
          req.type_name, need.where.node)));
    const std::uint32_t shape = req.resources ? pump_.intern(*req.resources) : 0;
    placed_bundle* bundle = need.where.group ? bundle_for(need) : nullptr;
    if (bundle) need.where = {static_cast<std::int32_t>(bundle->node), false, false, 0, -1};
    const auto slot = actor_slot(need, shape);
    if (!slot)
      refuse(ray::runtime_error(
          fmt::format("ray::spawn: too many live actors{} (runtime_options::max_actors is {}{})",
                      transport_.node_count() > 1 ? " on the nodes that could run it" : "",
                      actors_.max_actors(), transport_.node_count() > 1 ? " in all" : "")));
    actor_entry& a = actors_.create(req, seg_, *slot, transport_.node_of(*slot));
    transport_.start_as(a.slot, req.start_as);  // a slot reused by an actor of the default
    a.shape = shape;
    if (bundle) {
      a.group = req.where.group;
      a.ledger = &bundle->ledger;
    }
    try {
      start_process(a.slot);  // its mailboxes first: the construction is sent at once
    } catch (...) {           // no room for them: refused, the spawn keeps nothing
      for (auto* b : actors_.refuse(a)) seg_.release(b);
      for (auto* b : req.constructor.blocks) seg_.release(b);
      throw;
    }
    slot_actor_[a.slot] = a.id;
    start_failures_[a.slot] = 0;
    req.constructor.target_actor = a.id;
    auto rec = task_record::from(next_task_id_++, std::move(req.constructor), new_state());
    rec->construct = true;
    rec->more().max_concurrency = req.max_concurrency;
    a.constructed = rec->result;
    admit(std::move(rec));
    return a.id;
  }

  /// A free actor slot on a node that can run an actor needing `need` (`shape`: what it holds,
  /// 0 for nothing), chosen by its placement: the node named (a soft affinity: if it can, else
  /// as by default); spread, the nodes in turn; by default, the first node (this machine
  /// first) where what it holds is free now, else the first that could ever hold it.
  /// nullopt if every such node's actor slots are taken.
  std::optional<std::uint32_t> actor_slot(const resource_request& need, std::uint32_t shape) {
    const std::uint32_t nodes = transport_.node_count();
    auto usable = [&](std::uint32_t n) {
      return transport_.node_alive(n) && n < resources_.size() && !resources_[n].refuse(need);
    };
    auto on = [&](std::uint32_t n) {
      return actors_.free_slot_where([&](std::uint32_t s) { return transport_.node_of(s) == n; });
    };
    if (need.where.node >= 0) {
      const auto n = static_cast<std::uint32_t>(need.where.node);
      if (n < nodes && usable(n))
        if (auto s = on(n); s || !need.where.soft) return s;
      if (!need.where.soft) return std::nullopt;
    }
    if (need.where.spread) {
      for (std::uint32_t k = 0; k < nodes; ++k) {
        const std::uint32_t n = (spread_actors_ + k) % nodes;
        if (!usable(n)) continue;
        if (auto s = on(n)) {
          spread_actors_ = n + 1;
          return s;
        }
      }
      return std::nullopt;
    }
    std::optional<std::uint32_t> later;
    for (std::uint32_t n = 0; n < nodes; ++n) {
      if (!usable(n)) continue;
      auto s = on(n);
      if (s && pump_.actor_fits(n, shape)) return s;
      if (!later) later = s;
    }
    return later;
  }

  /// The bundle an actor asking `need` (in a reserved placement group) goes to, and with it
  /// its node: the one named, else the first with room now, else the first that could ever
  /// hold it, else the first.
  placed_bundle* bundle_for(const resource_request& need) {
    placement_group_entry* g = groups_.find(need.where.group);
    if (!g) return nullptr;
    return g->choose(
        need.where.bundle, [](const placed_bundle&) { return true; },
        [&](placed_bundle& pb) { return pb.ledger.fits(need); },
        [&](placed_bundle& pb) { return !pb.ledger.refuse(need); });
  }

  // ---- placement groups ----------------------------------------------------------------

  /// A new placement group of `bundles` (each a requirement) under `strategy`: its id and the
  /// state that becomes `true` once every bundle is reserved. infeasible_resources if the
  /// nodes could never hold it.
  std::pair<std::uint64_t, state_ptr> create_placement_group(std::vector<resource_request> bundles,
                                                             bundle_strategy strategy) {
    if (auto why = placement_group_table::why_never(bundles, strategy, resources_))
      throw infeasible_resources(
          fmt::format("ray::placement_group: it can never be reserved: {}", *why));
    placement_group_entry& g = groups_.add(strategy, std::move(bundles), new_state());
    groups_.count_pending(+1);
    place_groups();
    return {g.id, g.ready};
  }

  /// Removes a placement group: its bundles go back to their nodes, actors placed in it are
  /// killed, calls waiting for it fail (calls running in it run to their end). A group not
  /// reserved yet fails its ready() state.
  void remove_placement_group(std::uint64_t id) {
    placement_group_entry* g = groups_.find(id);
    if (!g || g->removed) return;
    if (g->pending()) {
      groups_.count_pending(-1);
      g->ready->set_error(std::make_exception_ptr(ray::runtime_error(
          fmt::format("coray: placement group {} was removed before it was reserved", id))));
    } else {
      for (std::uint64_t a : actors_.in_group(id)) kill_actor(a);
      pump_.unplace_group(*g);
    }
    g->removed = true;
    groups_.forget_if_done(*g);
  }

  /// The node of each of a placement group's bundles; empty while it waits (or removed).
  std::vector<int> placement_group_nodes(std::uint64_t id) const {
    std::vector<int> out;
    if (const placement_group_entry* g = groups_.find(id); g && !g->removed)
      for (const auto& b : g->placed) out.push_back(static_cast<int>(b.node));
    return out;
  }

  /// Reserves the groups waiting whose bundles fit now; true if one was.
  bool place_groups() {
    bool any = false;
    groups_.for_each_pending([&](placement_group_entry& g) {
      if (!pump_.place_group(g)) return;
      groups_.count_pending(-1);
      const bool yes = true;
      g.ready->set_inline(encode(yes));
      any = true;
    });
    return any;
  }

  /// Calls made from now on, and those not yet sent, fail at once; the process gets SIGKILL
  /// and calls it was running fail when its death is seen.
  void kill_actor(std::uint64_t id) {
    actor_entry* found = actors_.find(id);
    if (!found || found->dead || found->killed) return;
    end_for_good(*found, "was killed by ray::kill");  // names the pid before the kill
    transport_.kill(found->slot);
  }

  /// The actor in `slot` ends of its own accord (ray::exit_actor) after the call it replied
  /// to last: it is not restarted, and calls not yet sent to it fail now.
  void actor_exiting(std::uint32_t slot) {
    actor_entry* a = actors_.find(slot_actor_[slot]);
    if (!a || a->dead || a->killed) return;
    end_for_good(*a, "exited by ray::exit_actor");
  }
  /// Actor `a` ends and is never restarted (`why` says how, after its name and pid); the
  /// calls not yet sent to it fail now, the others when its process is gone.
  void end_for_good(actor_entry& a, std::string_view why) {
    a.killed = true;
    a.cause = fmt::format("coray: actor {} (pid {}) {}", a.type_name, transport_.pid(a.slot), why);
    auto e = std::make_exception_ptr(actor_died(a.cause));
    for (task_record* r : std::exchange(a.queue, {})) fail(*r, e);
  }

  process::actor_info lookup_actor(std::string_view name) const {
    const actor_entry* a = actors_.lookup(std::string(name));
    if (!a) return {};
    return {a->id, a->type_id};
  }

  /// At teardown, idle actors end on their own (running their destructor) before the
  /// supervisor kills what is left; a busy one is not waited for beyond a short grace.
  void stop_idle_actors() noexcept {
    if (!transport_.can_start()) return;
    std::vector<std::uint32_t> stopping;
    for (actor_entry* a : actors_.idle())
      if (a->shutdown_sent || (a->shutdown_sent = pump_.send_shutdown(a->slot)))
        stopping.push_back(a->slot);
    transport_.await_exit(stopping, std::chrono::milliseconds(500));
  }

  // ---- the loop ---------------------------------------------------------------------------

  /// Answers block requests, sends queued replies and dispatches calls; true on progress.
  /// Each step is skipped by one emptiness check when it has nothing to do: this runs on
  /// every turn of the loop.
  bool service() {
    bool progress = ledger_.has_requests() && answer_block_requests();
    if (groups_.any_pending()) [[unlikely]]
      progress |= place_groups();
    if (!delayed_starts_.empty()) progress |= start_due();
    if (router_.has_waiting()) progress |= router_.flush();
    if (!tasks_.runnable.empty() || pump_.has_backlog()) progress |= dispatch();
    return progress;
  }

  // ---- transport_events ---------------------------------------------------------------

  void on_message(std::uint32_t slot, msg_kind kind, std::span<const std::byte> payload,
                  object_block* carried) override {
    std::uint64_t v0 = 0;
    if (payload.size() >= sizeof v0) std::memcpy(&v0, payload.data(), sizeof v0);
    switch (kind) {
      case msg_kind::task_done:
        on_task_done(slot, payload);
        break;
      case msg_kind::submit:
        on_submit(slot, payload);
        break;
      case msg_kind::release:
        router_.drop(slot, v0);
        break;
      case msg_kind::actor_hold:
        count_handle(slot, v0, +1);
        break;
      case msg_kind::actor_release:
        count_handle(slot, v0, -1);
        break;
      case msg_kind::actor_kill:
        kill_actor(v0);
        break;
      case msg_kind::actor_lookup: {
        std::string name(reinterpret_cast<const char*>(payload.data()) + sizeof v0,
                         payload.size() - sizeof v0);
        process::actor_info info = lookup_actor(name);
        std::uint64_t reply[3] = {v0, info.id, info.type_id};
        router_.post(slot, msg_kind::actor_found, reply, sizeof reply);
        break;
      }
      case msg_kind::block_request: {
        std::uint64_t size;
        std::memcpy(&size, payload.data() + sizeof v0, sizeof size);
        ledger_.request(slot, v0, size);
        answer_block_requests();
        break;
      }
      case msg_kind::block_release:
        ledger_.drop(slot, seg_.at<object_block>(v0));
        break;
      case msg_kind::ref_hold:
        on_ref_hold(slot, v0);
        break;
      case msg_kind::export_object:
        on_export(slot, payload);
        break;
      case msg_kind::actor_exit:
        actor_exiting(slot);
        break;
      case msg_kind::actor_spawn:
        on_actor_spawn(slot, payload);
        break;
      case msg_kind::stream_items:
        on_stream_items(slot, payload);
        break;
      case msg_kind::stream_consumed:
        if (payload.size() >= 2 * sizeof v0) {
          std::uint64_t limit;
          std::memcpy(&limit, payload.data() + sizeof v0, sizeof limit);
          if (const task_record* r = tasks_.find(v0); r && r->submitter == static_cast<int>(slot))
            stream_credit(v0, limit);
        }
        break;
      default:
        break;
    }
    if (carried) ledger_.drop(slot, carried);  // a long message's block, requested by its sender
  }

  void on_death(std::uint32_t slot, const process_death& how) override {
    stop_streams_of(slot);
    router_.clear(slot);
    drop_handles(slot);
    ledger_.release_all(slot);  // everything the dead process held is let go on its behalf
    const std::string words = describe_exit(how.wait_status);
    if (slot_actor_[slot]) {
      actor_ended(slot, how, words);
      return;
    }
    const std::uint32_t failures = count_start_failure(slot, how);
    auto plan = tasks_.worker_died(slot, how.calls_started);
    for (task_record* r : plan.crashed)
      fail(*r, std::make_exception_ptr(worker_crashed(
                   fmt::format("coray: worker {} (pid {}) {} while running {}{}", slot, how.pid,
                               words, r->label(), r->attempts_note()))));
    for (task_record* r : plan.again) {
      if (r->message()) seg_.release(std::exchange(r->extras->message, nullptr));
      r->gpus = 0;  // given again by the worker it goes to
      pump_.end_loan(*r);
    }
    tasks_.requeue(plan.again);
    pump_.release_if_idle(slot);  // its lease, if it held one, goes back
    if (failures == 0) {
      start_process(slot);
      return;
    }
    // It died before it served: started again after a pause that doubles each time, and
    // not at all after max_start_failures in a row. With no task worker left, calls fail.
    transport_.close(slot);  // no mailboxes until it starts again
    if (failures < max_start_failures) {
      delayed_starts_.push_back({clock::now() + start_backoff(failures), slot});
      return;
    }
    for (std::uint32_t i = 0; i < cfg_.num_workers; ++i)
      if (transport_.alive(i) || start_failures_[i] < max_start_failures) return;
    workers_lost_ = fmt::format(
        "coray: no task worker could be started: worker {} (pid {}) {}, {} times in a row "
        "before it could serve",
        slot, how.pid, words, failures);
    on_lost(workers_lost_);
  }

  /// Processes that died starting and wait to be started again: the time of the next, or
  /// time_point::max() if none.
  clock::time_point next_start() const noexcept {
    clock::time_point t = clock::time_point::max();
    for (const auto& d : delayed_starts_) t = std::min(t, d.first);
    return t;
  }

  /// A process that failed to start this many times in a row is not started again.
  static constexpr std::uint32_t max_start_failures = 5;

  void on_lost(const std::string& why) override {
    auto& runnable = tasks_.runnable;
    while (!runnable.empty()) {
      task_record* r = runnable.front();
      runnable.pop_front();
      fail(*r, std::make_exception_ptr(worker_crashed(why)));
    }
  }

 private:
  /// Counts a death before the process served (reset by one that served); returns the count.
  std::uint32_t count_start_failure(std::uint32_t slot, const process_death& how) noexcept {
    return how.served ? (start_failures_[slot] = 0) : ++start_failures_[slot];
  }
  /// 10 ms after the first failure to start, doubling, at most 1 s.
  static clock::duration start_backoff(std::uint32_t failures) noexcept {
    return std::chrono::milliseconds(10) * (1 << std::min<std::uint32_t>(failures - 1, 6));
  }
  bool start_due() {
    const auto now = clock::now();
    bool started = false;
    for (std::size_t i = 0; i < delayed_starts_.size();) {
      if (delayed_starts_[i].first > now) {
        ++i;
        continue;
      }
      const std::uint32_t slot = delayed_starts_[i].second;
      delayed_starts_.erase(delayed_starts_.begin() + static_cast<std::ptrdiff_t>(i));
      start_process(slot);
      started = true;
    }
    return started;
  }

  template <class Queue>
  static bool erase_one(Queue& q, task_record* r) {
    auto it = std::find(q.begin(), q.end(), r);
    if (it == q.end()) return false;
    q.erase(it);
    return true;
  }

  // ---- receiving ----------------------------------------------------------------------

  void on_task_done(std::uint32_t slot, std::span<const std::byte> payload) {
    result_header h;
    std::memcpy(&h, payload.data(), sizeof h);
    task_record* found = tasks_.find(h.id);
    if (!found) {
      if (h.status == result_header::value_block)
        ledger_.drop(slot, seg_.at<object_block>(h.block));
      return;
    }
    task_record& r = *found;
    if (h.status == result_header::value_block &&
        !ledger_.take(slot, seg_.at<object_block>(h.block))) {
      h.status = result_header::error;  // a block it does not own: refuse rather than corrupt
      r.result->set_error(std::make_exception_ptr(
          internal_error("coray: a reply named a block its sender does not hold")));
    }
    const bool is_task = r.actor == 0;
    if (h.status == result_header::retryable_error && !r.result->settled() &&
        r.attempt <= r.max_retries) {
      ++r.attempt;  // runs again: a task from the run queue, an actor call first in its queue
      if (is_task) {
        pump_.end_loan(r);  // lent again, or not, when it goes again
        tasks_.retry(slot, r);
      } else {
        actors_.retry(r);
      }
      return;
    }
    if (!r.result->settled()) {
      if (r.attempt > 1)
        settle_from_worker(slot, *r.result, h, payload, r.attempts_note());
      else
        settle_from_worker(slot, *r.result, h, payload);
    }
    if (r.construct && r.result->st == object_state::status::failed) {
      if (actor_entry* a = actors_.find(r.actor)) a->cause = exception_what(r.result->error());
    }
    if (r.submitter >= 0) forward(r);
    finish(h.id);
    if (is_task) {
      tasks_.done(slot);
      pump_.release_if_idle(slot);
    } else if (actor_entry* a = actors_.find(slot_actor_[slot])) {
      auto& sent = a->sent;
      while (!sent.empty() && !tasks_.contains(sent.front())) sent.pop_front();
    }
  }

  // ---- streaming generators (design.md, "Streaming generators") --------------------------

  /// Ends `st` when `result`, its call's own result, settles: by the call's end, its error,
  /// a crash or a cancel. The item the consumer awaits, if any, settles then too.
  void end_stream_with(const std::shared_ptr<stream_state>& st, object_state& result) {
    struct ender {
      orchestrator* self;
      std::shared_ptr<stream_state> st;
    };
    result.waiters.push_back({[](void* ctx, object_state& r) {
                                std::unique_ptr<ender> e(static_cast<ender*>(ctx));
                                stream_state& s = *e->st;
                                s.ended = true;
                                if (r.st == object_state::status::failed) s.error = r.error();
                                s.wake_consumer();
                                if (s.id) e->self->streams_.erase(s.id);
                              },
                              new ender{this, st}});
  }

  /// A batch of a stream's items: each becomes the next ref its consumer takes, here or, for
  /// a stream a worker consumes, there: listed to it by id (stream_ready) and held for it, its
  /// value sent as a nested result's is. Items of a call that ended (cancelled) and an
  /// attempt's repeats of items already delivered (a retry runs the generator again from the
  /// start) are dropped.
  void on_stream_items(std::uint32_t slot, std::span<const std::byte> payload) {
    stream_batch_header b;
    if (payload.size() < sizeof b) return;
    std::memcpy(&b, payload.data(), sizeof b);
    auto found = streams_.find(b.id);
    const task_record* r = tasks_.find(b.id);
    stream_state* st =
        found != streams_.end() && r && !r->result->settled() ? found->second.get() : nullptr;
    std::size_t at = sizeof b;
    std::vector<std::uint64_t> ready;  // for a consuming worker: the call, the count, the ids
    if (st && st->forward_to >= 0) ready = {b.id, 0};
    for (std::uint32_t i = 0; i < b.count; ++i) {
      result_header h;
      if (payload.size() - at < sizeof h) return;  // malformed: the rest is not read
      std::memcpy(&h, payload.data() + at, sizeof h);
      const std::size_t value = h.status == result_header::value_block ? 0 : h.len;
      const std::size_t len = sizeof h + value + (std::size_t{h.refs} + h.actors) * 8;
      if (payload.size() - at < len) return;
      const auto record = payload.subspan(at, len);
      at = std::min(payload.size(), at + ((len + 7) & ~std::size_t{7}));
      object_block* block =
          h.status == result_header::value_block ? seg_.at<object_block>(h.block) : nullptr;
      if (!st || b.first + i != st->delivered) {
        if (block) ledger_.drop(slot, block);
        continue;
      }
      state_ptr item = new_state();
      object_state& s = *item;
      ++st->delivered;
      if (st->forward_to >= 0) {
        directory_.publish(s, next_task_id_++);  // its id, by which the worker holds it
        ready.push_back(s.id);
        router_.hold(static_cast<std::uint32_t>(st->forward_to), s.id, item);
      } else {
        st->items.push_back(std::move(item));
      }
      if (block && !ledger_.take(slot, block)) {
        s.set_error(std::make_exception_ptr(
            internal_error("coray: a stream's item named a block its sender does not hold")));
        continue;
      }
      settle_from_worker(slot, s, h, record);
    }
    if (ready.size() > 2) {
      const auto to = static_cast<std::uint32_t>(st->forward_to);
      ready[1] = ready.size() - 2;
      router_.post(to, msg_kind::stream_ready, ready.data(), ready.size() * sizeof ready[0]);
      for (std::size_t k = 2; k < ready.size(); ++k)
        send_when_settled(to, ready[k], router_.held(to, ready[k]));
    } else if (st && st->forward_to < 0 && !st->items.empty()) {
      st->wake_consumer();
    }
    // The producer's limit may lag (a retry starts again from the default): give it room.
    if (st && b.limit + stream_window / 2 <= st->base + stream_window) {
      st->credited = st->base + stream_window;
      send_credit(*r, st->credited);
    }
  }

  /// The process in `slot` died: the streams it consumed stop (their producers would wait
  /// for its credit for ever).
  void stop_streams_of(std::uint32_t slot) {
    std::vector<std::uint64_t> ids;
    for (const auto& [id, st] : streams_)
      if (st->forward_to == static_cast<int>(slot)) ids.push_back(id);
    for (std::uint64_t id : ids) stream_credit(id, 0);
  }

  /// Tells the process running call `r` (if sent) how far its stream may go.
  void send_credit(const task_record& r, std::uint64_t limit) {
    int slot = r.worker;
    if (r.actor) {
      const actor_entry* a = actors_.find(r.actor);
      slot = a ? static_cast<int>(a->slot) : -1;
    }
    if (slot < 0) return;
    const std::uint64_t msg[2] = {r.id, limit};
    router_.post(static_cast<std::uint32_t>(slot), msg_kind::stream_credit, msg, sizeof msg);
  }

  /// Settles `s` from a worker's record of an outcome (a call's reply, a stream's item: a
  /// result_header, then the inline value or the error, then the ids inside the value), its
  /// block already taken from what the sender holds. The refs and actor handles inside the
  /// value are held for `s` first; if one cannot be (an id never issued), `s` keeps that
  /// error and the block goes.
  void settle_from_worker(std::uint32_t slot, object_state& s, const result_header& h,
                          std::span<const std::byte> record, std::string_view note = {}) {
    const bool value =
        h.status == result_header::value_inline || h.status == result_header::value_block;
    if (value && (h.refs || h.actors)) [[unlikely]] {
      hold_contained(slot, s, ids_after_value(record, h), h);
      if (s.settled()) {
        if (h.status == result_header::value_block) seg_.release(seg_.at<object_block>(h.block));
        return;
      }
    }
    settle_from_result(s, h, record.subspan(sizeof h, h.len), seg_, note);
    if (s.block) spiller_.adopted(s);
  }

  /// A nested call from a worker or actor: its dependencies arrive by value or by the id of
  /// another nested result that process holds.
  void on_submit(std::uint32_t slot, std::span<const std::byte> payload) {
    submission sub;
    try {
      sub = read_call(slot, payload);
    } catch (const codec_error&) {
      sub.known = false;  // malformed: refused below
      if (payload.size() < sizeof sub.header) return;
    }
    if (auto* f = find_function(sub.header.fn_id)) sub.spec.name = f->name;
    auto rec = task_record::from(sub.header.task_id, std::move(sub.spec), new_state());
    rec->submitter = static_cast<int>(slot);
    rec->submitter_generation = router_.generation(slot);
    router_.hold(slot, rec->id, rec->result);
    if (sub.header.returns == returns_stream) [[unlikely]] {
      // A streaming generator's call: its items go to this worker (stream_ready).
      auto st = std::make_shared<stream_state>();
      st->id = rec->id;
      st->forward_to = static_cast<int>(slot);
      end_stream_with(st, *rec->result);
      streams_.emplace(rec->id, std::move(st));
    } else if (sub.header.returns) [[unlikely]] {
      // ray::returns: the caller awaits its results by the ids after the call's own.
      rec->returns = std::make_unique<std::vector<state_ptr>>();
      for (std::uint32_t k = 1; k <= sub.header.returns; ++k) {
        state_ptr s = new_state();
        router_.hold(slot, rec->id + k, s);
        send_when_settled(slot, rec->id + k, s);
        rec->returns->push_back(std::move(s));
      }
    }
    if (!sub.known) {
      task_record* r = insert(std::move(rec));
      for (std::uint64_t a : held_actors(r->held)) actor_ref(a, +1);
      fail(*r, std::make_exception_ptr(internal_error(
                   "coray: a nested call used an object_ref its process does not hold")));
      return;
    }
    admit(std::move(rec));
  }

  /// A call a worker sent (a nested call, an actor's construction), read back: its
  /// dependencies and refs by the ids the process in `slot` holds them by.
  submission read_call(std::uint32_t slot, std::span<const std::byte> payload) {
    return read_submission(
        payload, [&](std::uint64_t offset) { return ledger_.holds(slot, offset); },
        [&](std::uint64_t id) { return router_.held(slot, id); },
        [&](std::uint64_t id) { return held_ref(slot, id); },
        [&](std::uint64_t offset, bool owned) {
          // An argument block the sender made for this call is handed over; one it holds
          // is borrowed, and the call takes a reference of its own.
          object_block* b = seg_.at<object_block>(offset);
          if (!(owned && ledger_.take(slot, b))) seg_.add_ref(b);
          return b;
        });
  }

  /// ray::spawn in a worker: created as the driver's own spawn is, answered with the id or
  /// with why it was refused (the spawn throws that in the worker).
  void on_actor_spawn(std::uint32_t slot, std::span<const std::byte> payload) {
    std::uint64_t head[2] = {0, 0};  // request, length of the encoded fields
    std::uint64_t id = 0;
    std::vector<std::byte> error;
    try {
      if (payload.size() < sizeof head) throw codec_error("coray: a malformed spawn");
      std::memcpy(head, payload.data(), sizeof head);
      const std::size_t at = sizeof head + pad16(head[1]);
      if (head[1] > payload.size() || at > payload.size())
        throw codec_error("coray: a malformed spawn");
      auto [fields, resources] =
          decode<std::pair<actor_spawn_fields, std::optional<resource_request>>>(
              payload.subspan(sizeof head, head[1]));
      submission sub = read_call(slot, payload.subspan(at));
      actor_spawn_request req;
      static_cast<actor_spawn_fields&>(req) = std::move(fields);
      req.constructor = std::move(sub.spec);
      if (auto* f = find_function(req.constructor.fn_id)) req.constructor.name = f->name;
      if (resources) req.resources = std::make_shared<const resource_request>(*resources);
      if (!sub.known) {
        for (auto* b : std::exchange(req.constructor.blocks, {})) seg_.release(b);
        throw codec_error(
            "coray: ray::spawn in a worker named an object_ref its process does not hold");
      }
      id = spawn_actor(std::move(req));
    } catch (...) {
      error = encode(describe_current_exception("ray::spawn"));
    }
    std::vector<std::byte> reply(2 * sizeof(std::uint64_t) + error.size());
    const std::uint64_t ids[2] = {head[0], id};
    std::memcpy(reply.data(), ids, sizeof ids);
    if (!error.empty()) std::memcpy(reply.data() + sizeof ids, error.data(), error.size());
    router_.post(slot, msg_kind::actor_spawned, reply.data(), reply.size());
  }

  /// A process made (+1) or dropped (-1) a handle to actor `id`: counted for the actor, and
  /// for the process, so that what a process holds when it dies is let go for it.
  void count_handle(std::uint32_t slot, std::uint64_t id, int delta) {
    auto it = handles_.try_emplace({slot, id}, 0).first;
    if ((it->second += delta) == 0) handles_.erase(it);
    actor_ref(id, delta);
  }
  void drop_handles(std::uint32_t slot) {
    auto it = handles_.lower_bound({slot, 0});
    while (it != handles_.end() && it->first.first == slot) {
      const std::uint64_t id = it->first.second;
      const std::int64_t n = it->second;
      it = handles_.erase(it);
      if (n > 0) actor_ref(id, -static_cast<int>(n));
    }
  }

  // ---- refs inside values ------------------------------------------------------------

  static std::string unknown_ref(std::uint64_t id) {
    return fmt::format(
        "coray: an object_ref names object {:#x}, which the runtime does not hold (bytes that "
        "were not written by this runtime, or an object already freed)",
        id);
  }

  /// An object the process in `slot` holds under `id` (a result of its nested call, a ref it
  /// read, an object it exported), listed in the directory since a value names it; null if
  /// it holds none by that id.
  state_ptr held_ref(std::uint32_t slot, std::uint64_t id) {
    state_ptr s = router_.held(slot, id);
    if (s) directory_.publish(*s, id);
    return s;
  }

  /// The value `into` is settling with holds the refs and actor handles whose ids start
  /// `ids` (h.refs, then h.actors): it keeps their objects and actors alive. A ref its sender
  /// does not hold fails the object.
  void hold_contained(std::uint32_t slot, object_state& into, std::span<const std::byte> ids,
                      const result_header& h) {
    const std::size_t n = std::size_t{h.refs} + h.actors;
    if (ids.size() < n * sizeof(std::uint64_t)) {
      into.set_error(std::make_exception_ptr(codec_error("coray: a malformed result")));
      return;
    }
    auto id_at = [&](std::size_t k) {
      std::uint64_t id;
      std::memcpy(&id, ids.data() + k * sizeof id, sizeof id);
      return id;
    };
    auto held = std::make_unique<object_contents>();
    held->refs.reserve(h.refs);
    for (std::size_t k = 0; k < h.refs; ++k) {
      state_ptr s = held_ref(slot, id_at(k));
      if (!s) {
        into.set_error(std::make_exception_ptr(codec_error(unknown_ref(id_at(k)))));
        return;
      }
      held->refs.push_back(std::move(s));
    }
    for (std::size_t k = h.refs; k < n; ++k) {
      held->actors.push_back(id_at(k));
      actor_ref(id_at(k), +1);  // released with the object (release_on_loop)
    }
    into.set_contained(std::move(held));
  }

  /// A process read a ref from a value: it holds the object until it lets its state go
  /// (release), and gets the value once there is one.
  void on_ref_hold(std::uint32_t slot, std::uint64_t id) {
    state_ptr s = directory_.find(id);
    if (!s) {
      s = new_state();
      s->set_error(std::make_exception_ptr(codec_error(unknown_ref(id))));
    }
    router_.hold(slot, id, s);
    send_when_settled(slot, id, std::move(s));
  }

  /// Sends `s` to the process in `slot` (which holds it under `id`) once it is settled.
  void send_when_settled(std::uint32_t slot, std::uint64_t id, state_ptr s) {
    const std::uint32_t generation = router_.generation(slot);
    if (s->settled()) {
      router_.forward(slot, generation, id, std::move(s));
      return;
    }
    struct pending_send {
      orchestrator* self;
      std::uint32_t slot, generation;
      std::uint64_t id;
    };
    s->waiters.push_back({[](void* ctx, object_state& st) {
                            std::unique_ptr<pending_send> p(static_cast<pending_send*>(ctx));
                            p->self->router_.forward(p->slot, p->generation, p->id,
                                                     state_ptr::share(&st));
                          },
                          new pending_send{this, slot, generation, id}});
  }

  /// An object a process made (a put) that a ref in one of its values names: the driver
  /// keeps a copy (a reference, for a block) under its id, held for that process.
  void on_export(std::uint32_t slot, std::span<const std::byte> payload) {
    result_header h;
    if (payload.size() < sizeof h) return;
    std::memcpy(&h, payload.data(), sizeof h);
    state_ptr s = new_state();
    if (h.status == result_header::value_block) {
      object_block* b = seg_.at<object_block>(h.block);
      if (!ledger_.holds(slot, h.block)) {
        s->set_error(std::make_exception_ptr(
            internal_error("coray: an exported object named a block its sender does not hold")));
      } else {
        seg_.add_ref(b);  // the driver's copy holds a reference of its own
        hold_contained(slot, *s, ids_after_value(payload, h), h);
        if (!s->settled()) {
          s->set_block(b);
          spiller_.adopted(*s);
        } else {
          seg_.release(b);
        }
      }
    } else {
      if (payload.size() < sizeof h + h.len) return;
      hold_contained(slot, *s, ids_after_value(payload, h), h);
      if (!s->settled()) s->set_inline(payload.subspan(sizeof h, h.len));
    }
    directory_.publish(*s, h.id);
    router_.hold(slot, h.id, std::move(s));
  }

  // ---- actor lifetime and deaths ------------------------------------------------------

  /// An actor's process ended: restarted if it may be; else its unfinished calls fail with
  /// actor_died, and so will later ones, and its slot is free again.
  void actor_ended(std::uint32_t slot, const process_death& how, const std::string& words) {
    actor_entry* a = actors_.find(slot_actor_[slot]);
    const std::uint32_t failures = count_start_failure(slot, how);
    if (a && a->may_restart() && failures < max_start_failures) {
      restart_actor(slot, *a, how, words);
      return;
    }
    slot_actor_[slot] = 0;
    transport_.close(slot);
    if (!a) {
      actors_.free_slot(slot);
      return;
    }
    const std::uint64_t actor_id = a->id;
    pump_.release_actor(*a);
    auto ids = actors_.end(*a, how.pid, how.wait_status, words);
    auto e = std::make_exception_ptr(actor_died(a->cause));
    for (std::uint64_t id : ids)
      if (task_record* r = tasks_.find(id)) fail(*r, e);
    // Failing calls may have dropped handles: look the entry up again.
    if (actor_entry* again = actors_.find(actor_id); again && actor_table::forgettable(*again))
      forget_actor(actor_id);
  }

  /// Builds an actor again after its process died (max_restarts): a new process, its
  /// constructor run again with the same arguments, its in-flight calls retried if their
  /// max_task_retries allow, its queued calls kept in order.
  void restart_actor(std::uint32_t slot, actor_entry& a, const process_death& how,
                     const std::string& words) {
    const std::string cause =
        fmt::format("coray: actor {} (pid {}) {}", a.type_name, how.pid, words);
    auto plan = actors_.plan_restart(a, how.calls_started, tasks_);
    for (task_record* r : plan.exhausted)
      fail(*r, std::make_exception_ptr(actor_died(cause + r->attempts_note())));
    auto rec =
        a.constructor_call(next_task_id_++, new_state(), [&](object_block* b) { seg_.add_ref(b); });
    a.constructed = rec->result;
    task_record* r = insert(std::move(rec));
    a.queue.push_front(r);
    start_process(slot);
    pump_actor(a);
  }

  std::vector<std::uint64_t> slot_actor_;  // the actor living in each slot; 0 for none
  std::uint32_t spread_actors_ = 0;        // the node a spread actor looks at first
  /// Actor handles each process holds, by (slot, actor id): let go when it dies.
  std::map<std::pair<std::uint32_t, std::uint64_t>, std::int64_t> handles_;
  std::vector<std::uint32_t> start_failures_;  // deaths before serving in a row, per slot
  std::vector<std::pair<clock::time_point, std::uint32_t>> delayed_starts_;  // (when, slot)
  std::uint64_t next_task_id_ = 1;
  memory_return memory_;
  object_directory directory_;
  /// Streaming generators' calls that have not ended, by call id.
  std::unordered_map<std::uint64_t, std::shared_ptr<stream_state>> streams_;
};

}  // namespace detail
CORAY_END_NAMESPACE
