#pragma once
/// The driver process on one machine: it owns the segment, the transport of mailboxes and
/// supervised processes (`shm_transport`) and the `orchestrator` that makes every decision,
/// and runs them in the event loop it inherits from `process`.
///
///   local_driver --poll/sleep--> shm_transport --events--> orchestrator
///        |                            ^                        |
///        +--submit/spawn/cancel-------|------------------------+
///                                     +--start/send/kill-------+

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <coray/detail/runtime/cluster_seam.hpp>
#include <coray/detail/runtime/driver.hpp>
#include <coray/detail/runtime/orchestrator.hpp>
#include <coray/detail/runtime/shm_transport.hpp>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

inline std::uint32_t next_epoch() noexcept {
  static std::uint32_t e = 0;
  return ++e;
}

class local_driver final : public driver {
 public:
  /// With `cluster`, the other nodes' task workers are scheduled too (cluster_seam.hpp): the
  /// orchestrator sees them as more task workers, behind the transport the seam wraps.
  explicit local_driver(driver_config cfg, cluster_seam* cluster = nullptr) {
    epoch = next_epoch();
    const std::uint32_t slots = cfg.num_workers + cfg.max_actors;
    create_segment(cfg, segment::root_bytes + cfg.object_store_bytes +
                            shm_transport::control_bytes(slots, cfg.num_workers) + (1 << 20));
    transport_.emplace(seg, slots, cfg.spin_us, cfg.inline_threshold);
    hdr = transport_->header();
    const std::uint32_t remote = cluster ? cluster->remote_workers() : 0;
    const std::uint32_t remote_actors = cluster ? cluster->remote_actors() : 0;
    if (cluster) cluster_ = cluster->wrap(*transport_, seg, cfg.num_workers, cfg.max_actors);
    active_ = cluster_ ? cluster_.get() : &*transport_;
    orchestrator_config oc{cfg.num_workers + remote, cfg.max_actors + remote_actors,
                           cfg.max_tasks_in_flight_per_worker, epoch, cfg.spill_directory};
    oc.num_cpus = to_resource_amount(cfg.num_cpus.value_or(cfg.num_workers));
    if (cluster) oc.other_nodes = cluster->remote_resources();
    oc.num_gpus = to_resource_amount(cfg.num_gpus.value_or(0));
    oc.gpu_ids = cfg.gpu_ids;
    oc.task_history = cfg.task_history;
    oc.record_timeline = cfg.record_timeline;
    for (const auto& [name, x] : cfg.resources) oc.custom_resources[name] = to_resource_amount(x);
    hdr->set_gpu_ids(cfg.gpu_ids);  // workers name their GPUs from these
    orchestrator_.emplace(std::move(oc), seg, *active_);
    transport_->start_supervisor(cfg.method, epoch, std::move(cfg.argv), std::move(cfg.output));
    orchestrator_->start_workers();
    process::current() = this;
    memory_timer_ = add_timer(clock::now() + memory_return::period, &on_memory_timer, this);
  }

  ~local_driver() override {
    cancel_timer(memory_timer_);
    orchestrator_->stop_idle_actors();
    if (process::current() == this) process::current() = nullptr;
    transport_->end();  // the supervisor ends every process, then itself
    orchestrator_->clear();
  }

  // ---- process ---------------------------------------------------------------------------
  state_ptr submit(task_spec&& spec) override {
    state_ptr result = orchestrator_->submit(std::move(spec));
    turn_in_burst();
    return result;
  }
  state_ptr submit_into(task_spec&& spec, state_ptr result) override {
    orchestrator_->submit_into(std::move(spec), result);
    turn_in_burst();
    return result;
  }
  void cancel_call(std::uint64_t id, bool force) override { orchestrator_->cancel_call(id, force); }
  void stream_credit(std::uint64_t id, std::uint64_t limit) override {
    orchestrator_->stream_credit(id, limit);
  }
  void actor_handle(std::uint64_t id, int delta) noexcept override {
    orchestrator_->actor_ref(id, delta);
  }
  void kill_actor(std::uint64_t id) override { orchestrator_->kill_actor(id); }
  actor_info lookup_actor(std::string_view name) override {
    return orchestrator_->lookup_actor(name);
  }

  /// A new block for the user (a put, a large argument). When the store is full and spilling
  /// is on, it also lets replies on their way arrive for up to a second: they may free
  /// memory or make it spillable.
  object_block* new_block(std::size_t size) override {
    const auto deadline = clock::now() + std::chrono::seconds(1);
    for (;;) {
      try {
        return orchestrator_->allocate(size);
      } catch (const object_store_full&) {
        if (!orchestrator_->spiller().enabled() || in_poll_ || clock::now() > deadline) throw;
        if (!poll()) sched_yield();
      }
    }
  }
  void release_block(object_block* b) noexcept override { seg.release(b); }
  void block_adopted(object_state& s) override { orchestrator_->spiller().adopted(s); }
  void state_released(object_state& s) noexcept override {
    orchestrator_->spiller().released(s);
    if (s.id) orchestrator_->forget(s);
  }
  void publish_refs(std::span<const state_ptr> refs) override { orchestrator_->publish_refs(refs); }
  state_ptr ref_from_id(std::uint64_t id) override { return orchestrator_->ref_from_id(id); }
  void restore(object_state& s) override {
    orchestrator_->spiller().restore(s, new_block(static_cast<std::size_t>(s.spill_size())));
  }

  // ---- driver ----------------------------------------------------------------------------
  std::uint32_t num_workers() const noexcept override {
    return orchestrator_->config().num_workers;
  }
  std::vector<int> worker_pids() const override {
    std::vector<int> pids;
    for (std::uint32_t i = 0, n = num_workers(); i < n; ++i) pids.push_back(active_->pid(i));
    return pids;
  }
  std::vector<state::task_info> list_tasks() const override { return orchestrator_->list_tasks(); }
  std::vector<state::actor_info> list_actors() const override {
    return orchestrator_->list_actors();
  }
  std::vector<timeline_entry> timeline() const override { return orchestrator_->timeline(); }
  bool records_timeline() const noexcept override { return orchestrator_->records_timeline(); }
  std::vector<state::worker_info> list_workers() const override {
    return orchestrator_->list_workers();
  }
  std::vector<state::object_info> list_objects() const override {
    return orchestrator_->list_objects();
  }
  std::optional<std::pair<std::string, std::string>> process_output(int pid) override {
    return transport_->output_of(pid);
  }
  std::uint64_t spawn_actor(actor_spawn_request req) override {
    return orchestrator_->spawn_actor(std::move(req));
  }
  int actor_pid(std::uint64_t id) const override {
    const actor_entry* a = orchestrator_->actors().find(id);
    return !a || a->dead ? 0 : active_->pid(a->slot);
  }
  std::optional<actor_process_status> actor_status(std::uint64_t id) const override {
    const actor_entry* a = orchestrator_->actors().find(id);
    if (!a) return std::nullopt;
    if (a->dead) return actor_process_status{a->pid, true, a->wait_status};
    return actor_process_status{active_->pid(a->slot), false, 0};
  }
  std::pair<std::uint64_t, state_ptr> create_placement_group(std::vector<resource_request> bundles,
                                                             bundle_strategy strategy) override {
    return orchestrator_->create_placement_group(std::move(bundles), strategy);
  }
  void remove_placement_group(std::uint64_t id) override {
    orchestrator_->remove_placement_group(id);
  }
  std::vector<int> placement_group_nodes(std::uint64_t id) const override {
    return orchestrator_->placement_group_nodes(id);
  }
  std::map<std::string, double> resources(bool available, int node = -1) override {
    return orchestrator_->resources(available, node);
  }
  std::uint64_t spilled_objects() const noexcept override {
    return orchestrator_->spiller().spilled_objects();
  }

 protected:
  bool poll() override {
    struct in_poll {
      bool& flag;
      bool was;
      explicit in_poll(bool& f) : flag(f), was(f) { flag = true; }
      ~in_poll() { flag = was; }
    } guard(in_poll_);
    orchestrator_->stamp_turn();
    bool progress = active_->poll(*orchestrator_);
    progress |= orchestrator_->service();
    return progress;
  }

  void sleep(std::chrono::nanoseconds limit) override {
    // Jobs other threads hand over wake the loop too (they ring the driver's doorbell).
    const auto next_start = orchestrator_->next_start();
    if (next_start != clock::time_point::max())
      limit = std::clamp<std::chrono::nanoseconds>(next_start - clock::now(),
                                                   std::chrono::nanoseconds(0), limit);
    active_->sleep(
        limit, *orchestrator_,
        {[](const void* p) { return static_cast<const local_driver*>(p)->jobs_waiting(); }, this});
  }

 private:
  /// Submissions between two turns of the loop in a burst (see turn_in_burst).
  static constexpr std::uint32_t burst_turn = 16;

  /// A burst of calls to an actor from the loop's thread (a loop of `.call()`, then a
  /// `get`) outruns it: its inbox holds 1,024 calls, the rest wait in the driver, and its
  /// replies are read, and the calls behind them sent, only when the loop turns, so without
  /// a turn the actor would stop once its outbox is full, until the burst ends. While an
  /// actor's calls wait, the loop turns once every `burst_turn` submissions (never inside a
  /// poll): the actor works through the burst beside it. Not for task calls waiting in the
  /// run queue: a turn gives a task worker only its few calls in flight, and a million tasks
  /// ran slower with turns (design.md, "Bursts").
  void turn_in_burst() {
    if (++since_turn_ < burst_turn || !orchestrator_->actor_calls_waiting()) return;
    since_turn_ = 0;
    serve_once();
  }

  static void on_memory_timer(void* self) {
    auto& d = *static_cast<local_driver*>(self);
    d.orchestrator_->return_memory();
    d.memory_timer_ = d.add_timer(clock::now() + memory_return::period, &on_memory_timer, self);
  }

  /// The shared segment, with the object store in it; refused with the figures when the
  /// address space is limited below it (ulimit -v). (make_local_driver has refused a store
  /// larger than memory.)
  void create_segment(const driver_config& cfg, std::size_t bytes) {
    try {
      seg.create(bytes);
    } catch (const ray::runtime_error& e) {
      throw ray::runtime_error(fmt::format(
          "{}, asking for a shared segment of {} bytes, {} of them the object store "
          "(runtime_options::object_store_bytes; an address-space limit such as `ulimit -v` "
          "below the segment refuses it)",
          e.what(), bytes, cfg.object_store_bytes));
    }
  }

  // Declared in the order they are built; destroyed in reverse (the orchestrator first).
  std::optional<shm_transport> transport_;
  /// The cluster's transport (this machine's and the other nodes' processes), if any.
  std::unique_ptr<transport> cluster_;
  transport* active_ = nullptr;  // what the orchestrator uses: cluster_, else transport_
  std::optional<orchestrator> orchestrator_;
  bool in_poll_ = false;
  std::uint32_t since_turn_ = 0;  // submissions since the loop last turned in a burst
  std::uint64_t memory_timer_ = 0;
};

}  // namespace detail
CORAY_END_NAMESPACE
