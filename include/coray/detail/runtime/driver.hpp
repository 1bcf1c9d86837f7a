#pragma once
/// The driver: the user's process. It owns the segment, the supervisor and the results of
/// every call; it schedules calls onto task workers and actors (its own calls and the
/// nested ones workers make), holds back calls until their object_ref arguments are ready,
/// fails the calls of a process that dies (worker_crashed, actor_died) and asks the
/// supervisor for a replacement worker.

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <coray/detail/runtime/supervisor.hpp>
#include <coray/detail/runtime/system.hpp>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

struct driver_config {
  std::uint32_t num_workers;
  std::uint32_t max_actors;
  std::size_t object_store_bytes;
  start_method_id method;
  std::size_t inline_threshold;
  std::uint32_t spin_us;
  std::uint32_t max_tasks_in_flight_per_worker;
  std::vector<std::string> argv;
  std::string spill_directory;  // empty: no spilling
};

inline std::uint32_t next_epoch() noexcept {
  static std::uint32_t e = 0;
  return ++e;
}

/// What ray::spawn asks of the driver.
struct actor_spawn_request {
  task_spec constructor;  // fn_id: the constructor invoker; args: the constructor's
  std::uint64_t type_id = 0;
  std::string type_name;
  std::string name;
  std::uint32_t max_concurrency = 1;
  int max_restarts = 0;
  int max_task_retries = 0;
};

class driver final : public process {
 public:
  static constexpr std::size_t mailbox_capacity = 1024;

  explicit driver(driver_config cfg) : cfg_(std::move(cfg)) {
    epoch = next_epoch();
    const std::uint32_t slots = cfg_.num_workers + cfg_.max_actors;
    const std::size_t mb_bytes = mailbox::bytes_for(mailbox_capacity);
    const std::size_t control =
        shared_header::bytes_for(slots) + 2 * cfg_.num_workers * (mb_bytes + 64);
    seg.create(segment::root_bytes + cfg_.object_store_bytes + control + (1 << 20));

    hdr = new (seg.allocate_aligned(shared_header::bytes_for(slots), 64)) shared_header{};
    seg.header_root().header_offset = seg.offset_of(hdr);
    hdr->driver_pid = getpid();
    hdr->slots = slots;
    hdr->spin_us = cfg_.spin_us;
    hdr->inline_threshold = cfg_.inline_threshold;
    hdr->mailbox_capacity = mailbox_capacity;
    views_.resize(slots);
    for (std::uint32_t i = 0; i < slots; ++i) {
      views_[i].index = i;
      views_[i].shared = new (&hdr->worker(i)) worker_shared{};
    }
    for (std::uint32_t i = slots; i-- > cfg_.num_workers;) free_actor_slots_.push_back(i);
    for (std::uint32_t i = 0; i < cfg_.num_workers; ++i) {
      open_mailboxes(views_[i]);
      active_.push_back(i);
    }
    if (!cfg_.spill_directory.empty()) {
      // An unnamed file: it vanishes with the driver, even after kill -9.
      spill_fd_ = ::open(cfg_.spill_directory.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
      if (spill_fd_ < 0)
        throw ray::runtime_error("coray: cannot spill to " + cfg_.spill_directory + ": " +
                                 std::strerror(errno));
    }
    start_supervisor();
    for (std::uint32_t i = 0; i < cfg_.num_workers; ++i) start_process(i);
    process::current() = this;
    if (spill_fd_ >= 0)
      restore_spilled = [](object_state& st) {
        static_cast<driver*>(process::current())->restore(st);
      };
  }

  ~driver() override {
    stop_idle_actors();
    if (process::current() == this) process::current() = nullptr;
    // Closing the command socket tells the supervisor to end every process and exit.
    if (command_fd_ >= 0) ::close(command_fd_);
    if (supervisor_ > 0) {
      int st;
      while (waitpid(supervisor_, &st, 0) < 0 && errno == EINTR) {
      }
    }
    for (auto& [id, a] : actors_) a.queue.clear();
    tasks_.clear();
    runnable_.clear();
    if (spill_fd_ >= 0) {
      restore_spilled = nullptr;
      ::close(spill_fd_);
    }
  }

  bool is_driver() const noexcept override { return true; }
  std::uint32_t num_workers() const noexcept { return cfg_.num_workers; }

  state_ptr submit(task_spec&& spec) override { return submit_into(std::move(spec), make_state()); }
  state_ptr submit_into(task_spec&& spec, state_ptr result) override {
    if (supervisor_ < 0)
      throw worker_crashed("coray: the runtime's supervisor and workers are gone");
    auto rec = std::make_unique<task_record>();
    rec->id = next_task_id_++;
    rec->fn_id = spec.fn_id;
    rec->name = spec.name;
    rec->nargs = spec.nargs;
    rec->args = std::move(spec.args);
    rec->deps = std::move(spec.deps);
    rec->blocks = std::move(spec.blocks);
    rec->actor = spec.target_actor;
    rec->actors = std::move(spec.actors);
    rec->max_retries = spec.max_retries;
    rec->retry_matcher = spec.retry_matcher;
    rec->result = result;
    rec->result->id = rec->id;  // lets ray::cancel find the call
    admit(std::move(rec));
    dispatch();
    return result;
  }

  /// ray::cancel: a call not yet sent is removed; one running keeps running (or, with
  /// `force`, its worker is killed), and either way its result becomes `cancelled` now.
  void cancel_call(std::uint64_t id, bool force) override {
    auto it = tasks_.find(id);
    if (it == tasks_.end() || it->second->result->settled()) return;
    task_record& r = *it->second;
    r.cancelled = true;
    auto e = std::make_exception_ptr(cancelled(
        "coray: " + std::string(r.name.empty() ? "the call" : r.name) + " was cancelled"));
    if (auto q = std::find(runnable_.begin(), runnable_.end(), &r); q != runnable_.end()) {
      runnable_.erase(q);
      fail(r, e);
      return;
    }
    if (r.actor) {
      auto a = actors_.find(r.actor);
      if (a != actors_.end()) {
        auto& queue = a->second.queue;
        if (auto q = std::find(queue.begin(), queue.end(), &r); q != queue.end()) {
          if (r.pending_deps) {  // dependencies still hold it: settle now, drop when they arrive
            r.failed_dep = true;
            r.result->set_error(e);
          } else {
            queue.erase(q);
            fail(r, e);
          }
          return;
        }
      }
    }
    if (r.pending_deps) {
      r.failed_dep = true;  // dropped once its dependencies settle
      r.result->set_error(e);
      return;
    }
    r.result->set_error(e);  // dispatched: the reply, if any, is ignored
    if (force && !r.actor && r.worker >= 0)
      command({supervisor_command::kill, static_cast<std::uint32_t>(r.worker)});
  }

  /// Pids of the task workers, in slot order (0 while one starts).
  std::vector<int> worker_pids() const {
    std::vector<int> pids;
    for (std::uint32_t i = 0; i < cfg_.num_workers; ++i)
      pids.push_back(views_[i].shared->pid.load(std::memory_order_acquire));
    return pids;
  }

  // ---- actors -------------------------------------------------------------------------

  /// Creates an actor: a process of its own whose first message builds the object. Returns
  /// its id at once; calls queue behind the construction.
  std::uint64_t spawn_actor(actor_spawn_request req) {
    if (supervisor_ < 0) throw worker_crashed("coray: the runtime's supervisor is gone");
    if (!req.name.empty() && names_.count(req.name))
      throw ray::runtime_error("ray::spawn: an actor named '" + req.name + "' already exists");
    if (free_actor_slots_.empty())
      throw ray::runtime_error("ray::spawn: too many live actors (runtime_options::max_actors is " +
                               std::to_string(cfg_.max_actors) + ")");
    const std::uint32_t slot = free_actor_slots_.back();
    free_actor_slots_.pop_back();
    process_view& v = views_[slot];
    open_mailboxes(v);
    v.actor = next_actor_id_++;
    active_.push_back(slot);

    actor_entry& a = actors_[v.actor];
    a.id = v.actor;
    a.slot = slot;
    a.type_id = req.type_id;
    a.type_name = std::move(req.type_name);
    a.name = std::move(req.name);
    a.max_restarts = req.max_restarts;
    a.max_task_retries = req.max_task_retries;
    a.max_concurrency = req.max_concurrency;
    // Kept to build the actor again after a crash (max_restarts).
    a.ctor_fn = req.constructor.fn_id;
    a.ctor_name = req.constructor.name;
    a.ctor_nargs = req.constructor.nargs;
    a.ctor_args = req.constructor.args;
    a.ctor_deps = req.constructor.deps;
    for (auto* b : req.constructor.blocks) {
      seg.add_ref(b);
      a.ctor_blocks.push_back(b);
    }
    if (!a.name.empty()) names_[a.name] = a.id;

    req.constructor.target_actor = a.id;
    auto rec = std::make_unique<task_record>();
    rec->id = next_task_id_++;
    rec->fn_id = req.constructor.fn_id;
    rec->name = req.constructor.name;
    rec->nargs = req.constructor.nargs;
    rec->args = std::move(req.constructor.args);
    rec->deps = std::move(req.constructor.deps);
    rec->blocks = std::move(req.constructor.blocks);
    rec->actors = std::move(req.constructor.actors);
    rec->actor = a.id;
    rec->construct = true;
    rec->max_concurrency = req.max_concurrency;
    rec->result = make_state();
    a.constructed = rec->result;
    admit(std::move(rec));
    start_process(slot);
    return a.id;
  }

  void actor_handle(std::uint64_t id, int delta) noexcept override { actor_ref(id, delta); }

  object_block* new_block(std::size_t size) override { return allocate_object(size, true); }
  void release_block(object_block* b) noexcept override { seg.release(b); }

  // ---- spilling -------------------------------------------------------------------------

  /// Objects written to the spill file so far.
  std::uint64_t spilled_objects() const noexcept { return spilled_objects_; }

  void block_adopted(object_state& s) override {
    if (spill_fd_ >= 0) resident_.insert(&s);
  }
  void state_released(object_state& s) noexcept override {
    if (spill_fd_ < 0) return;
    resident_.erase(&s);
    if (s.spilled()) punch(s);
  }

  /// A new block; when the store is full and spilling is on, objects only the driver holds
  /// and nothing reads in place go to disk until it fits. Called for the user (`may_wait`,
  /// outside the loop), it also lets replies on their way arrive for up to a second: they
  /// may free memory or make it spillable.
  object_block* allocate_object(std::size_t size, bool may_wait = false) {
    const auto deadline = clock::now() + std::chrono::seconds(1);
    for (;;) {
      try {
        return seg.new_object(size);
      } catch (const object_store_full&) {
        if (spill_fd_ < 0) throw;
        if (spill_one()) continue;
        if (!may_wait || in_poll_ || clock::now() > deadline) throw;
        if (!poll()) sched_yield();
      }
    }
  }

  /// Brings a spilled object back into the store.
  void restore(object_state& s) {
    object_block* b = allocate_object(static_cast<std::size_t>(s.spill_size), true);
    std::size_t done = 0;
    while (done < s.spill_size) {
      ssize_t n = ::pread(spill_fd_, b->data() + done, s.spill_size - done,
                          s.spill_offset + static_cast<off_t>(done));
      if (n <= 0) {
        seg.release(b);
        throw ray::runtime_error(std::string("coray: reading a spilled object failed: ") +
                                 std::strerror(errno));
      }
      done += static_cast<std::size_t>(n);
    }
    punch(s);
    s.block = b;
    resident_.insert(&s);
  }

  /// Calls made from now on, and those not yet sent, fail at once; the process gets SIGKILL
  /// and calls it was running fail when its death is seen.
  void kill_actor(std::uint64_t id) override {
    auto it = actors_.find(id);
    if (it == actors_.end() || it->second.dead || it->second.killed) return;
    actor_entry& a = it->second;
    a.killed = true;
    const int pid = views_[a.slot].shared->pid.load(std::memory_order_acquire);
    a.cause = "coray: actor " + a.type_name + " (pid " + std::to_string(pid) +
              ") was killed by ray::kill";
    command({supervisor_command::kill, a.slot});
    std::vector<task_record*> queued(a.queue.begin(), a.queue.end());
    a.queue.clear();
    auto e = std::make_exception_ptr(actor_died(a.cause));
    for (task_record* r : queued) fail(*r, e);
  }

  actor_info lookup_actor(std::string_view name) override {
    auto it = names_.find(std::string(name));
    if (it == names_.end()) return {};
    return {it->second, actors_.at(it->second).type_id};
  }

  /// The pid of an actor's process (0 while it starts or after it ended).
  int actor_pid(std::uint64_t id) const {
    auto it = actors_.find(id);
    if (it == actors_.end() || it->second.dead) return 0;
    return views_[it->second.slot].shared->pid.load(std::memory_order_acquire);
  }

  /// An actor's process for ray::actor_process: its pid (0 while it starts), whether it ended
  /// and, once it has, its wait status. nullopt once the actor is forgotten (it ended and no
  /// handle is left).
  struct actor_process_status {
    int pid = 0;
    bool ended = false;
    int wait_status = 0;
  };
  std::optional<actor_process_status> actor_status(std::uint64_t id) const {
    auto it = actors_.find(id);
    if (it == actors_.end()) return std::nullopt;
    const actor_entry& a = it->second;
    if (a.dead) return actor_process_status{a.pid, true, a.wait_status};
    return actor_process_status{views_[a.slot].shared->pid.load(std::memory_order_acquire), false,
                                0};
  }

 protected:
  bool poll() override {
    struct in_poll {
      bool& flag;
      bool was;
      explicit in_poll(bool& f) : flag(f), was(f) { flag = true; }
      ~in_poll() { flag = was; }
    } guard(in_poll_);
    bool progress = false;
    for (std::size_t i = 0; i < active_.size(); ++i) progress |= drain(views_[active_[i]], 64);
    if (hdr->deaths.load(std::memory_order_acquire) != seen_deaths_) {
      handle_deaths();
      progress = true;
    }
    for (std::uint32_t i : active_)
      if (!views_[i].grants.empty()) progress |= grant_blocks(views_[i]);
    progress |= flush_outgoing();
    progress |= dispatch();
    return progress;
  }

  void sleep(std::chrono::nanoseconds limit) override {
    hdr->driver_bell.sleep(
        [this] {
          if (jobs_waiting() || hdr->deaths.load(std::memory_order_acquire) != seen_deaths_)
            return true;
          for (std::uint32_t i : active_)
            if (!views_[i].outbox->empty()) return true;
          // Waiting for room in an inbox: the process rings once it frees slots (Dekker with
          // worker::poll: flag set, fence, room read here; slots freed, fence, flag read there).
          for (std::uint32_t i : active_) {
            process_view& w = views_[i];
            if (w.blocked == 0) continue;
            w.shared->driver_waiting.store(1, std::memory_order_relaxed);
            std::atomic_thread_fence(std::memory_order_seq_cst);
            if (w.inbox->has_room(w.blocked)) {
              w.blocked = 0;  // retry now; a send that fails again sets it again
              return true;
            }
          }
          return false;
        },
        limit);
    check_supervisor();
  }

 private:
  struct task_record {
    std::uint64_t id = 0;
    std::uint64_t fn_id = 0;
    std::string_view name;
    std::uint32_t nargs = 0;
    std::vector<std::byte> args;
    std::vector<state_ptr> deps;
    std::vector<object_block*> blocks;
    std::vector<std::uint64_t> actors;  // actor handles in the arguments (kept alive)
    state_ptr result;
    std::uint32_t pending_deps = 0;
    bool failed_dep = false;
    std::uint64_t actor = 0;  // the actor it calls; 0 for a task
    bool construct = false;
    std::uint32_t max_concurrency = 1;
    int submitter = -1;  // slot of the process that made this nested call, -1 for the driver
    std::uint32_t submitter_generation = 0;
    std::uint64_t dispatch_seq = 0;
    int worker = -1;  // the task worker it was sent to
    int max_retries = 0;
    std::uint64_t retry_matcher = 0;
    int attempt = 1;
    bool cancelled = false;
    bool pinned = false;              // its store arguments are pinned (see pin_deps)
    object_block* message = nullptr;  // the dispatched message, when it needed a block
    driver* self = nullptr;
  };

  /// The driver's side of one process slot (task worker or actor).
  struct process_view {
    std::uint32_t index = 0;
    worker_shared* shared = nullptr;
    mailbox* inbox = nullptr;
    mailbox* outbox = nullptr;
    std::uint32_t generation = 0;
    std::uint64_t actor = 0;       // the actor living here; 0 for a task worker
    std::uint64_t dispatched = 0;  // run_task messages sent to this generation
    std::uint32_t in_flight = 0;   // tasks dispatched and not done
    std::deque<std::pair<std::uint64_t, std::uint64_t>> order;  // (dispatch_seq, task id)
    std::deque<std::function<bool()>> outgoing;                 // messages waiting for room
    std::unordered_map<std::uint64_t, state_ptr> held;          // nested results it holds
    std::unordered_multiset<std::uint64_t> owned;               // blocks it holds a reference to
    struct grant_request {
      std::uint64_t request, size;
      clock::time_point deadline;
    };
    std::deque<grant_request> grants;  // block requests waiting for room
    std::size_t blocked = 0;           // slots a message to it needed and did not find
  };

  /// Sends to `w`'s inbox; on a full inbox, remembers that the driver waits for room there.
  template <class Fill>
  bool send_to(process_view& w, msg_kind k, std::size_t size, Fill&& fill) {
    if (try_send(*w.inbox, w.shared->bell, k, size, std::forward<Fill>(fill))) return true;
    w.blocked = mailbox::slots_for(size);
    return false;
  }
  bool send_block_to(process_view& w, msg_kind k, object_block* b) {
    if (try_send_block(seg, *w.inbox, w.shared->bell, k, b)) return true;
    w.blocked = 1;
    return false;
  }

  struct actor_entry {
    std::uint64_t id = 0;
    std::uint32_t slot = 0;
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
    std::uint64_t ctor_fn = 0;
    std::string_view ctor_name;
    std::uint32_t ctor_nargs = 0;
    std::vector<std::byte> ctor_args;
    std::vector<state_ptr> ctor_deps;
    std::vector<object_block*> ctor_blocks;  // one reference each, for rebuilding
    std::deque<task_record*> queue;          // calls not yet sent, in the order they were made
    std::deque<std::uint64_t> sent;          // calls sent and not done
    std::uint64_t dispatched = 0;            // method calls sent to the current process
  };

  // ---- admission and dependencies -----------------------------------------------------

  void admit(std::unique_ptr<task_record> rec) {
    task_record* r = rec.get();
    r->self = this;
    tasks_.emplace(r->id, std::move(rec));
    for (std::uint64_t a : r->actors) actor_ref(a, +1);
    for (auto& d : r->deps) {
      if (d->st == object_state::status::failed) {
        if (!r->failed_dep) r->result->set_error(d->error);
        r->failed_dep = true;
      } else if (d->st == object_state::status::pending) {
        ++r->pending_deps;
        d->waiters.push_back({&driver::on_dependency, r});
      }
    }
    if (r->actor) {
      // Actor calls keep their order: they wait in the actor's queue, dependencies or not.
      auto it = actors_.find(r->actor);
      if (it == actors_.end() || it->second.dead || it->second.killed) {
        fail(*r, std::make_exception_ptr(
                     actor_died(it == actors_.end() ? "coray: no such actor" : it->second.cause)));
        return;
      }
      if (!r->construct) r->max_retries = it->second.max_task_retries;
      it->second.queue.push_back(r);
      pump_actor(it->second);
    } else if (r->pending_deps == 0) {
      if (r->failed_dep)
        finish(r->id);
      else
        runnable_.push_back(r);
    }
  }

  static void on_dependency(void* ctx, object_state& dep) {
    auto* r = static_cast<task_record*>(ctx);
    if (dep.st == object_state::status::failed && !r->failed_dep) {
      r->failed_dep = true;
      r->result->set_error(dep.error);
    }
    if (--r->pending_deps != 0) return;
    driver& d = *r->self;
    if (r->actor) {
      auto it = d.actors_.find(r->actor);
      if (it != d.actors_.end()) d.pump_actor(it->second);
    } else if (r->failed_dep) {
      d.finish(r->id);
    } else {
      d.runnable_.push_back(r);
    }
  }

  /// Fails a call that has not been sent and forgets it.
  void fail(task_record& r, std::exception_ptr e) {
    if (!r.result->settled()) r.result->set_error(std::move(e));
    if (r.submitter >= 0) forward(r);
    finish(r.id);
  }

  void finish(std::uint64_t id) {
    auto it = tasks_.find(id);
    if (it == tasks_.end()) return;
    for (auto* b : it->second->blocks) seg.release(b);
    if (it->second->message) seg.release(it->second->message);
    if (it->second->pinned)
      for (auto& d : it->second->deps)
        if (d->block && d->pins) --d->pins;
    std::vector<std::uint64_t> actors = std::move(it->second->actors);
    tasks_.erase(it);
    for (std::uint64_t a : actors) actor_ref(a, -1);
  }

  // ---- dispatch -----------------------------------------------------------------------

  process_view* pick_worker() {
    process_view* best = nullptr;
    std::uint32_t best_load = cfg_.max_tasks_in_flight_per_worker;
    for (std::uint32_t i = 0; i < cfg_.num_workers; ++i) {
      process_view& w = views_[i];
      if (static_cast<slot_state>(w.shared->state.load(std::memory_order_acquire)) ==
          slot_state::dead)
        continue;
      std::uint32_t susp = w.shared->suspended.load(std::memory_order_relaxed);
      std::uint32_t load = w.in_flight > susp ? w.in_flight - susp : 0;
      if (load < best_load) {
        best = &w;
        best_load = load;
        if (load == 0) break;
      }
    }
    return best;
  }

  bool dispatch() {
    bool progress = false;
    while (!runnable_.empty()) {
      process_view* w = pick_worker();
      if (!w) break;
      task_record* r = runnable_.front();
      if (!send_call(*w, *r)) break;
      grant_pinned_blocks(*w, *r);
      r->dispatch_seq = w->dispatched++;
      r->worker = static_cast<int>(w->index);
      w->order.emplace_back(r->dispatch_seq, r->id);
      ++w->in_flight;
      runnable_.pop_front();
      progress = true;
    }
    for (auto it = backlog_.begin(); it != backlog_.end();) {
      auto a = actors_.find(*it);
      it = backlog_.erase(it);
      if (a != actors_.end()) progress |= pump_actor(a->second);
    }
    return progress;
  }

  /// Sends the actor's queued calls, in order, while each is ready and its mailbox has room.
  bool pump_actor(actor_entry& a) {
    bool progress = false;
    process_view& v = views_[a.slot];
    while (!a.queue.empty() && !a.dead) {
      task_record* r = a.queue.front();
      if (r->pending_deps) break;
      if (r->failed_dep) {
        a.queue.pop_front();
        fail(*r, r->result->error);
        progress = true;
        continue;
      }
      if (!send_call(v, *r)) {
        backlog_.insert(a.id);
        break;
      }
      grant_pinned_blocks(v, *r);
      if (!r->construct)
        r->dispatch_seq = a.dispatched++;  // its place among the calls this process starts
      a.queue.pop_front();
      a.sent.push_back(r->id);
      progress = true;
    }
    if (a.closing && a.queue.empty() && !a.dead && !a.shutdown_sent) {
      a.shutdown_sent = send_to(v, msg_kind::shutdown, 0, [](std::byte*) {});
      if (!a.shutdown_sent) backlog_.insert(a.id);
    }
    return progress;
  }

  template <class F>
  static void for_each_entry(const task_record& r, F&& f) {
    const std::byte* p = r.args.data();
    for (std::uint32_t i = 0; i < r.nargs; ++i) {
      arg_entry e;
      std::memcpy(&e, p, sizeof e);
      f(e, p + sizeof e);
      p += sizeof e + entry_payload(e);
    }
  }

  /// The process a call was sent to gets a reference of its own to each block the call pins;
  /// the handle it decodes adopts it.
  void grant_pinned_blocks(process_view& w, const task_record& r) {
    for (std::uint64_t id : r.actors)
      if (id & pinned_block_tag) {
        seg.add_ref(seg.at<object_block>(id & ~pinned_block_tag));
        w.owned.insert(id & ~pinned_block_tag);
      }
  }

  /// Sends a call's message, its dependencies replaced by their values; false if no room.
  bool send_call(process_view& w, task_record& r) {
    try {
      for (auto& d : r.deps)
        if (d->spilled()) (void)d->value_bytes();  // back into the store, to be read in place
    } catch (const object_store_full&) {
      return false;  // no room yet: the call waits for a later turn
    }
    std::size_t size = sizeof(task_header);
    for_each_entry(r, [&](const arg_entry& e, const std::byte*) {
      size += sizeof(arg_entry);
      if (e.tag == arg_entry::inline_value) size += pad16(e.len);
      if (e.tag == arg_entry::dependency && !r.deps[e.ref]->block)
        size += pad16(r.deps[e.ref]->bytes.size());
      if (e.tag == arg_entry::dependency_list) size += pad16(dependency_list_bytes(e, r.deps));
    });
    const msg_kind kind = r.construct ? msg_kind::construct : msg_kind::run_task;
    auto fill = [&](std::byte* out) {
      task_header h{r.id, r.fn_id, r.nargs, r.construct ? r.max_concurrency : 0,
                    0,    0,       0,       r.retry_matcher};
      std::memcpy(out, &h, sizeof h);
      std::byte* p = out + sizeof h;
      for_each_entry(r, [&](const arg_entry& e, const std::byte* data) {
        arg_entry o = e;
        const std::byte* src = data;
        if (e.tag == arg_entry::dependency) {
          // The record keeps the dependency (and so its block) alive until the call ends.
          auto& d = *r.deps[e.ref];
          if (d.block) {
            o = {.tag = arg_entry::block_value, .ref = seg.offset_of(d.block)};
          } else {
            o = {.tag = arg_entry::inline_value, .len = static_cast<std::uint32_t>(d.bytes.size())};
            src = d.bytes.data();
          }
        }
        if (e.tag == arg_entry::dependency_list) {
          // A vector's encoding from its elements' values: count, padding, elements.
          o = {.tag = arg_entry::inline_value,
               .len = static_cast<std::uint32_t>(dependency_list_bytes(e, r.deps))};
          std::memcpy(p, &o, sizeof o);
          write_dependency_list(p + sizeof o, e, r.deps);
          p += sizeof o + pad16(o.len);
          return;
        }
        std::memcpy(p, &o, sizeof o);
        p += sizeof o;
        if (o.tag == arg_entry::inline_value) {
          if (o.len) std::memcpy(p, src, o.len);
          p += pad16(o.len);
        }
      });
    };
    if (size <= w.inbox->max_message_bytes()) {
      if (!send_to(w, kind, size, fill)) return false;
      pin_deps(r);
      return true;
    }
    // Longer than the ring takes: in a block, freed when the call ends.
    object_block* b = allocate_object(size);
    fill(b->data());
    if (!send_block_to(w, kind, b)) {
      seg.release(b);
      return false;
    }
    if (r.message) seg.release(r.message);
    r.message = b;
    pin_deps(r);
    return true;
  }

  /// A call's store arguments are read in place while it runs: they must not be spilled.
  static void pin_deps(task_record& r) {
    if (r.pinned) return;
    r.pinned = true;
    for (auto& d : r.deps)
      if (d->block) ++d->pins;
  }

  // ---- receiving ----------------------------------------------------------------------

  bool drain(process_view& w, int budget) {
    bool progress = false;
    message_view m;
    while (budget-- > 0 && peek_message(seg, *w.outbox, gathered_, m)) {
      std::uint64_t v0 = 0;
      if (m.payload.size() >= sizeof v0) std::memcpy(&v0, m.payload.data(), sizeof v0);
      switch (m.kind) {
        case msg_kind::task_done:
          on_task_done(w, m.payload);
          break;
        case msg_kind::submit:
          on_submit(w, m.payload);
          break;
        case msg_kind::release:
          w.held.erase(v0);
          break;
        case msg_kind::actor_hold:
          actor_ref(v0, +1);
          break;
        case msg_kind::actor_release:
          actor_ref(v0, -1);
          break;
        case msg_kind::actor_kill:
          kill_actor(v0);
          break;
        case msg_kind::actor_lookup: {
          std::string name(reinterpret_cast<const char*>(m.payload.data()) + sizeof v0,
                           m.payload.size() - sizeof v0);
          actor_info info = lookup_actor(name);
          std::uint64_t reply[3] = {v0, info.id, info.type_id};
          queue_message(w, msg_kind::actor_found, reply, sizeof reply);
          break;
        }
        case msg_kind::block_request: {
          std::uint64_t size;
          std::memcpy(&size, m.payload.data() + sizeof v0, sizeof size);
          w.grants.push_back({v0, size, clock::now() + std::chrono::seconds(1)});
          grant_blocks(w);
          break;
        }
        case msg_kind::block_release:
          drop_owned(w, seg.at<object_block>(v0));
          break;
        default:
          break;
      }
      w.outbox->pop(m.slots);
      if (m.block) drop_owned(w, m.block);  // a long message's block, requested by its sender
      progress = true;
    }
    return progress;
  }

  /// Answers `w`'s block requests in order. One that does not fit waits (other replies on
  /// their way may free or make spillable what it needs) for up to a second, then is
  /// refused with the store's figures.
  bool grant_blocks(process_view& w) {
    bool progress = false;
    while (!w.grants.empty()) {
      auto& g = w.grants.front();
      std::uint64_t reply[5] = {g.request, 0, g.size, 0, seg.capacity()};
      try {
        object_block* b = allocate_object(static_cast<std::size_t>(g.size));
        reply[1] = seg.offset_of(b);
        w.owned.insert(reply[1]);
      } catch (const object_store_full&) {
        if (clock::now() < g.deadline) break;
      }
      reply[3] = seg.free_bytes();
      queue_message(w, msg_kind::block_granted, reply, sizeof reply);
      w.grants.pop_front();
      progress = true;
    }
    return progress;
  }

  /// Process `w` gives up one reference it held to `b`.
  void drop_owned(process_view& w, object_block* b) {
    auto it = w.owned.find(seg.offset_of(b));
    if (it == w.owned.end()) return;  // not its to give
    w.owned.erase(it);
    seg.release(b);
  }
  /// Process `w`'s reference to `b` passes to the driver (a result, or a call's argument).
  bool take_owned(process_view& w, object_block* b) {
    auto it = w.owned.find(seg.offset_of(b));
    if (it == w.owned.end()) return false;
    w.owned.erase(it);
    return true;
  }

  void on_task_done(process_view& w, std::span<const std::byte> payload) {
    result_header h;
    std::memcpy(&h, payload.data(), sizeof h);
    auto it = tasks_.find(h.id);
    if (it == tasks_.end()) {
      if (h.status == result_header::value_block) drop_owned(w, seg.at<object_block>(h.block));
      return;
    }
    task_record& r = *it->second;
    if (h.status == result_header::value_block && !take_owned(w, seg.at<object_block>(h.block))) {
      h.status = result_header::error;  // a block it does not own: refuse rather than corrupt
      r.result->set_error(std::make_exception_ptr(
          ray::runtime_error("coray: a reply named a block its sender does not hold")));
    }
    auto body = payload.subspan(sizeof h, h.len);
    const bool is_task = r.actor == 0;
    if (h.status == result_header::retryable_error && !r.result->settled() &&
        r.attempt <= r.max_retries) {
      ++r.attempt;
      if (is_task) {
        if (w.in_flight) --w.in_flight;
        runnable_.push_back(&r);
      } else if (auto a = actors_.find(r.actor); a != actors_.end()) {
        auto& sent = a->second.sent;
        sent.erase(std::remove(sent.begin(), sent.end(), r.id), sent.end());
        a->second.queue.push_front(&r);
      }
      return;
    }
    if (!r.result->settled()) {
      switch (h.status) {
        case result_header::value_inline:
          r.result->set_inline(body);
          break;
        case result_header::value_block:
          r.result->set_block(seg.at<object_block>(h.block));
          block_adopted(*r.result);
          break;
        default: {
          wire_error e = decode<wire_error>(body);
          if (r.attempt > 1) std::get<2>(e) += attempts_note(r);
          r.result->set_error(to_exception(e));
          break;
        }
      }
    }
    if (r.construct && r.result->st == object_state::status::failed) {
      auto a = actors_.find(r.actor);
      if (a != actors_.end()) a->second.cause = describe_error(r.result->error);
    }
    if (r.submitter >= 0) forward(r);
    finish(h.id);
    if (is_task) {
      if (w.in_flight) --w.in_flight;
      while (!w.order.empty() && !tasks_.count(w.order.front().second)) w.order.pop_front();
    } else if (auto a = actors_.find(w.actor); a != actors_.end()) {
      auto& sent = a->second.sent;
      while (!sent.empty() && !tasks_.count(sent.front())) sent.pop_front();
    }
  }

  /// A nested call from a worker or actor: its dependencies arrive by value or by the id of
  /// another nested result that process holds.
  void on_submit(process_view& w, std::span<const std::byte> payload) {
    task_header h;
    std::memcpy(&h, payload.data(), sizeof h);
    auto rec = std::make_unique<task_record>();
    rec->id = h.task_id;
    rec->fn_id = h.fn_id;
    rec->nargs = h.nargs;
    rec->actor = h.target;
    rec->max_retries = h.max_retries;
    rec->retry_matcher = h.retry_matcher;
    rec->submitter = static_cast<int>(w.index);
    rec->submitter_generation = w.generation;
    if (auto* f = find_function(h.fn_id)) rec->name = f->name;
    const std::size_t actor_bytes = h.extra * sizeof(std::uint64_t);
    const std::span<const std::byte> sent_args =
        payload.subspan(sizeof h, payload.size() - sizeof h - actor_bytes);
    rec->actors.resize(h.extra);
    if (actor_bytes)
      std::memcpy(rec->actors.data(), payload.data() + payload.size() - actor_bytes, actor_bytes);
    rec->result = make_state();
    bool unknown = false;
    for (std::uint64_t& a : rec->actors)
      if ((a & pinned_block_tag) && !w.owned.count(a & ~pinned_block_tag)) {
        a = 0;  // a block its process does not hold: refuse the call
        unknown = true;
      }
    auto held_dep = [&](std::uint64_t id) {
      auto held = w.held.find(id);
      if (held == w.held.end()) {
        unknown = true;
        rec->deps.push_back(make_state());  // a placeholder: the call fails below
      } else {
        rec->deps.push_back(held->second);
      }
    };
    // The driver's form of the arguments: dependencies become indices into rec->deps.
    const std::byte* q = sent_args.data();
    for (std::uint32_t i = 0; i < rec->nargs; ++i) {
      arg_entry e;
      std::memcpy(&e, q, sizeof e);
      q += sizeof e;
      if (e.tag == arg_entry::dependency_list) {
        std::vector<std::uint64_t> ids(e.len);
        if (e.len) std::memcpy(ids.data(), q, e.len * sizeof(std::uint64_t));
        q += pad16(e.len * sizeof(std::uint64_t));
        e.ref = rec->deps.size();
        for (std::uint64_t id : ids) held_dep(id);
      } else if (e.tag == arg_entry::dependency) {
        const std::uint64_t id = e.ref;
        e.ref = rec->deps.size();
        held_dep(id);
      } else if (e.tag == arg_entry::block_value) {
        // An argument block the sender made for this call is handed over; one it holds is
        // borrowed, and the call takes a reference of its own.
        object_block* b = seg.at<object_block>(e.ref);
        if (!(e.owned && take_owned(w, b))) seg.add_ref(b);
        rec->blocks.push_back(b);
      }
      const std::size_t at = rec->args.size();
      rec->args.resize(at + sizeof e + entry_payload(e));
      std::memcpy(rec->args.data() + at, &e, sizeof e);
      if (e.tag == arg_entry::inline_value) {
        std::memcpy(rec->args.data() + at + sizeof e, q, entry_payload(e));
        q += entry_payload(e);
      }
    }
    w.held.emplace(rec->id, rec->result);
    if (unknown) {
      task_record* r = rec.get();
      tasks_.emplace(r->id, std::move(rec));
      for (std::uint64_t a : r->actors) actor_ref(a, +1);
      fail(*r, std::make_exception_ptr(ray::runtime_error(
                   "coray: a nested call used an object_ref its process does not hold")));
      return;
    }
    admit(std::move(rec));
  }

  /// Sends a nested call's result to the process that made the call, if it still wants it.
  void forward(task_record& r) {
    process_view& w = views_[static_cast<std::size_t>(r.submitter)];
    if (w.generation != r.submitter_generation || !w.held.count(r.id)) return;
    w.outgoing.push_back([this, &w, id = r.id, st = r.result] { return send_result(w, id, *st); });
    flush_outgoing(w);
  }

  void queue_message(process_view& w, msg_kind k, const void* data, std::size_t n) {
    std::vector<std::byte> bytes(static_cast<const std::byte*>(data),
                                 static_cast<const std::byte*>(data) + n);
    w.outgoing.push_back([this, &w, k, bytes = std::move(bytes)] {
      return send_to(w, k, bytes.size(), [&](std::byte* out) {
        if (!bytes.empty()) std::memcpy(out, bytes.data(), bytes.size());
      });
    });
    flush_outgoing(w);
  }

  bool flush_outgoing() {
    bool progress = false;
    for (std::uint32_t i : active_) progress |= flush_outgoing(views_[i]);
    return progress;
  }

  bool flush_outgoing(process_view& w) {
    bool progress = false;
    while (!w.outgoing.empty() && w.outgoing.front()()) {
      w.outgoing.pop_front();
      progress = true;
    }
    return progress;
  }

  bool send_result(process_view& w, std::uint64_t id, object_state& s) {
    try {
      if (s.spilled()) (void)s.value_bytes();
    } catch (const object_store_full&) {
      return false;  // no room yet: sent on a later turn
    }
    if (s.st == object_state::status::failed) {
      wire_error e;
      try {
        std::rethrow_exception(s.error);
      } catch (...) {
        e = describe_current_exception("");
      }
      std::size_t n = encoded_size(e);
      return send_to(w, msg_kind::object_ready, sizeof(result_header) + n, [&](std::byte* out) {
        result_header h{id, result_header::error, static_cast<std::uint32_t>(n), 0, 0};
        std::memcpy(out, &h, sizeof h);
        encode_to(std::span<std::byte>(out + sizeof h, n), e);
      });
    }
    if (s.block) {
      result_header h{id, result_header::value_block, 0, seg.offset_of(s.block), 0};
      bool ok = send_to(w, msg_kind::object_ready, sizeof h,
                        [&](std::byte* out) { std::memcpy(out, &h, sizeof h); });
      if (ok) {
        seg.add_ref(s.block);  // the receiving process's handle
        w.owned.insert(h.block);
      }
      return ok;
    }
    return send_to(w, msg_kind::object_ready, sizeof(result_header) + s.bytes.size(),
                   [&](std::byte* out) {
                     result_header h{id, result_header::value_inline,
                                     static_cast<std::uint32_t>(s.bytes.size()), 0, 0};
                     std::memcpy(out, &h, sizeof h);
                     if (!s.bytes.empty())
                       std::memcpy(out + sizeof h, s.bytes.data(), s.bytes.size());
                   });
  }

  static std::string describe_error(const std::exception_ptr& e) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      return x.what();
    } catch (...) {
      return "an unknown exception";
    }
  }

  // ---- actor lifetime -----------------------------------------------------------------

  void actor_ref(std::uint64_t id, int delta) noexcept {
    if (id & pinned_block_tag) {  // a block the call pins (see collect_pinned_block)
      object_block* b = seg.at<object_block>(id & ~pinned_block_tag);
      if (delta > 0)
        seg.add_ref(b);
      else
        seg.release(b);
      return;
    }
    auto it = actors_.find(id);
    if (it == actors_.end()) return;
    actor_entry& a = it->second;
    a.refs += delta;
    if (a.refs > 0) return;
    if (a.dead) {
      forget_actor(a);
    } else if (!a.closing) {
      // No handle is left anywhere: the actor ends once its queued calls are done.
      a.closing = true;
      if (!a.name.empty()) names_.erase(a.name);
      pump_actor(a);
    }
  }

  void forget_actor(actor_entry& a) {
    if (a.refs > 0 || !a.dead || !a.queue.empty()) return;
    for (auto* b : a.ctor_blocks) seg.release(b);
    actors_.erase(a.id);
  }

  /// At teardown, idle actors end on their own (running their destructor) before the
  /// supervisor kills what is left; a busy one is not waited for beyond a short grace.
  void stop_idle_actors() noexcept {
    if (supervisor_ <= 0) return;
    std::vector<std::uint32_t> stopping;
    for (auto& [id, a] : actors_) {
      if (a.dead || a.killed || !a.queue.empty() || !a.sent.empty()) continue;
      process_view& v = views_[a.slot];
      if (a.shutdown_sent || send_to(v, msg_kind::shutdown, 0, [](std::byte*) {})) {
        a.shutdown_sent = true;
        stopping.push_back(a.slot);
      }
    }
    const auto deadline = clock::now() + std::chrono::milliseconds(500);
    auto all_gone = [&] {
      for (std::uint32_t s : stopping)
        if (static_cast<slot_state>(views_[s].shared->state.load(std::memory_order_acquire)) !=
            slot_state::dead)
          return false;
      return true;
    };
    while (!all_gone() && clock::now() < deadline) {
      const std::uint32_t seen = hdr->deaths.load(std::memory_order_acquire);
      hdr->driver_bell.sleep([&] { return hdr->deaths.load(std::memory_order_acquire) != seen; },
                             std::chrono::milliseconds(10));
    }
  }

  // ---- process deaths -----------------------------------------------------------------

  void handle_deaths() {
    seen_deaths_ = hdr->deaths.load(std::memory_order_acquire);
    for (std::size_t k = 0; k < active_.size();) {
      process_view& w = views_[active_[k]];
      if (static_cast<slot_state>(w.shared->state.load(std::memory_order_acquire)) !=
          slot_state::dead) {
        ++k;
        continue;
      }
      drain(w, 1 << 30);  // replies it managed to send count
      const int pid = w.shared->pid.load(std::memory_order_relaxed);
      const std::string how = describe_exit(w.shared->wait_status.load(std::memory_order_relaxed));
      w.outgoing.clear();
      w.grants.clear();
      w.held.clear();
      // Everything the dead process held is let go on its behalf.
      for (std::uint64_t off : w.owned) seg.release(seg.at<object_block>(off));
      w.owned.clear();
      if (w.actor) {
        if (actor_ended(w, pid, how))
          ++k;
        else
          active_.erase(active_.begin() + static_cast<std::ptrdiff_t>(k));
        continue;
      }
      const std::uint64_t started = w.shared->tasks_started.load(std::memory_order_acquire);
      std::vector<task_record*> requeue;
      for (auto& [seq, id] : w.order) {
        auto it = tasks_.find(id);
        if (it == tasks_.end()) continue;
        task_record& r = *it->second;
        if (r.worker != static_cast<int>(w.index) || r.dispatch_seq != seq)
          continue;  // since re-sent elsewhere
        if (r.cancelled || (seq < started && r.attempt > r.max_retries)) {
          fail(r, std::make_exception_ptr(worker_crashed(
                      "coray: worker " + std::to_string(w.index) + " (pid " + std::to_string(pid) +
                      ") " + how + " while running " +
                      std::string(r.name.empty() ? "a task" : r.name) + attempts_note(r))));
        } else {
          if (seq < started) ++r.attempt;  // it ran and died: retried, Ray's max_retries
          if (r.message) seg.release(r.message);
          r.message = nullptr;
          requeue.push_back(&r);  // to run (again) on another worker
        }
      }
      runnable_.insert(runnable_.begin(), requeue.begin(), requeue.end());
      w.order.clear();
      w.in_flight = 0;
      w.dispatched = 0;
      open_mailboxes(w);
      start_process(w.index);
      ++k;
    }
  }

  /// An actor's process ended: its unfinished calls fail with actor_died, and so will
  /// later ones; its slot is free again.
  /// Builds an actor again after its process died (max_restarts): a new process, its
  /// constructor run again with the same arguments, its in-flight calls retried if their
  /// max_task_retries allow, its queued calls kept in order.
  bool restart_actor(process_view& w, actor_entry& a, int pid, const std::string& how) {
    ++a.restarts;
    const std::string cause =
        "coray: actor " + a.type_name + " (pid " + std::to_string(pid) + ") " + how;
    const std::uint64_t started = w.shared->tasks_started.load(std::memory_order_acquire);
    std::vector<task_record*> again;
    for (std::uint64_t id : a.sent) {
      auto t = tasks_.find(id);
      if (t == tasks_.end()) continue;
      task_record& r = *t->second;
      if (r.construct) continue;  // replaced below
      if (r.dispatch_seq >= started && !r.cancelled) {
        again.push_back(&r);  // never started: simply sent again
      } else if (r.attempt <= r.max_retries && !r.cancelled) {
        ++r.attempt;
        again.push_back(&r);
      } else {
        fail(r, std::make_exception_ptr(actor_died(cause + attempts_note(r))));
      }
    }
    a.sent.clear();
    a.dispatched = 0;
    a.queue.insert(a.queue.begin(), again.begin(), again.end());
    auto rec = std::make_unique<task_record>();
    rec->id = next_task_id_++;
    rec->fn_id = a.ctor_fn;
    rec->name = a.ctor_name;
    rec->nargs = a.ctor_nargs;
    rec->args = a.ctor_args;
    rec->deps = a.ctor_deps;
    for (auto* b : a.ctor_blocks) {
      seg.add_ref(b);
      rec->blocks.push_back(b);
    }
    rec->actor = a.id;
    rec->construct = true;
    rec->max_concurrency = a.max_concurrency;
    rec->result = make_state();
    a.constructed = rec->result;
    task_record* r = rec.get();
    r->self = this;
    tasks_.emplace(r->id, std::move(rec));
    a.queue.push_front(r);
    open_mailboxes(w);
    w.actor = a.id;
    start_process(w.index);
    pump_actor(a);
    return true;
  }

  bool spill_one() {
    for (object_state* s : resident_) {
      if (!s->block || s->pins || s->block->refs.load(std::memory_order_relaxed) != 1 ||
          s->st != object_state::status::ready)
        continue;
      const std::size_t size = static_cast<std::size_t>(s->block->size);
      const off_t at = static_cast<off_t>(spill_end_);
      std::size_t done = 0;
      while (done < size) {
        ssize_t n = ::pwrite(spill_fd_, s->block->data() + done, size - done,
                             at + static_cast<off_t>(done));
        if (n <= 0) return false;  // disk full: the store stays full
        done += static_cast<std::size_t>(n);
      }
      spill_end_ += (size + 4095) & ~std::uint64_t{4095};
      s->spill_offset = at;
      s->spill_size = size;
      seg.release(s->block);
      s->block = nullptr;
      resident_.erase(s);
      ++spilled_objects_;
      return true;
    }
    return false;
  }

  /// Frees a spilled copy's disk space.
  void punch(object_state& s) noexcept {
    ::fallocate(spill_fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, s.spill_offset,
                static_cast<off_t>(s.spill_size));
    s.spill_offset = -1;
  }

  static std::string attempts_note(const task_record& r) {
    return r.max_retries > 0 ? " (attempt " + std::to_string(r.attempt) + " of " +
                                   std::to_string(r.max_retries + 1) + ")"
                             : std::string();
  }

  /// An actor's process ended: restarted if it may be; else its unfinished calls fail with
  /// actor_died, and so will later ones, and its slot is free again. Returns true if the
  /// slot lives on.
  bool actor_ended(process_view& w, int pid, const std::string& how) {
    if (auto live = actors_.find(w.actor); live != actors_.end()) {
      actor_entry& a = live->second;
      if (!a.killed && !a.closing && a.cause.empty() && a.restarts < a.max_restarts)
        return restart_actor(w, a, pid, how);
    }
    auto it = actors_.find(w.actor);
    w.actor = 0;
    close_mailboxes(w);
    free_actor_slots_.push_back(w.index);
    if (it == actors_.end()) return false;
    actor_entry& a = it->second;
    a.dead = true;
    a.pid = pid;
    a.wait_status = w.shared->wait_status.load(std::memory_order_relaxed);
    if (!a.name.empty()) names_.erase(a.name);
    if (!a.killed) {
      const std::string why = a.cause.empty() ? how : "failed in its constructor: " + a.cause;
      a.cause = "coray: actor " + a.type_name + " (pid " + std::to_string(pid) + ") " + why;
    }
    auto e = std::make_exception_ptr(actor_died(a.cause));
    std::vector<std::uint64_t> ids(a.sent.begin(), a.sent.end());
    a.sent.clear();
    for (task_record* r : a.queue) ids.push_back(r->id);
    a.queue.clear();
    const std::uint64_t actor_id = a.id;
    for (std::uint64_t id : ids)
      if (auto t = tasks_.find(id); t != tasks_.end()) fail(*t->second, e);
    // Failing calls may have dropped handles: look the entry up again.
    if (auto again = actors_.find(actor_id); again != actors_.end()) forget_actor(again->second);
    return false;
  }

  // ---- processes ----------------------------------------------------------------------

  void open_mailboxes(process_view& v) {
    const std::size_t bytes = mailbox::bytes_for(mailbox_capacity);
    worker_shared& s = *v.shared;
    if (!s.inbox) {
      s.inbox = seg.offset_of(seg.allocate_aligned(bytes, 64));
      s.outbox = seg.offset_of(seg.allocate_aligned(bytes, 64));
    }
    v.inbox = mailbox::create(seg.at(s.inbox), mailbox_capacity);
    v.outbox = mailbox::create(seg.at(s.outbox), mailbox_capacity);
    ++v.generation;
    s.tasks_started.store(0, std::memory_order_relaxed);
    s.suspended.store(0, std::memory_order_relaxed);
    s.pid.store(0, std::memory_order_relaxed);
    s.generation.store(v.generation, std::memory_order_relaxed);
  }

  void close_mailboxes(process_view& v) {
    worker_shared& s = *v.shared;
    if (s.inbox) seg.deallocate(seg.at(s.inbox));
    if (s.outbox) seg.deallocate(seg.at(s.outbox));
    s.inbox = s.outbox = 0;
    v.inbox = v.outbox = nullptr;
  }

  void start_supervisor() {
    // A socket, not a pipe: writing to a dead supervisor must be an error, not SIGPIPE.
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0)
      throw ray::runtime_error("coray: socketpair failed");
    std::fflush(nullptr);  // buffered output must not be written twice
    pid_t pid = fork();
    if (pid < 0) throw ray::runtime_error("coray: fork of the supervisor failed");
    if (pid == 0) {
      ::close(fds[1]);
      supervisor_main({&seg, hdr, fds[0], cfg_.method, epoch, cfg_.argv});
    }
    ::close(fds[0]);
    command_fd_ = fds[1];
    supervisor_ = pid;
    hdr->supervisor_pid = pid;
  }

  void start_process(std::uint32_t slot) {
    hdr->worker(slot).state.store(static_cast<std::uint32_t>(slot_state::starting),
                                  std::memory_order_release);
    if (!command({supervisor_command::start, slot})) {
      // No supervisor, no process: the slot stays dead and its calls fail.
      hdr->worker(slot).state.store(static_cast<std::uint32_t>(slot_state::dead),
                                    std::memory_order_release);
    }
  }

  bool command(supervisor_command c) {
    return supervisor_ > 0 && send(command_fd_, &c, sizeof c, MSG_NOSIGNAL) == sizeof c;
  }

  /// The supervisor died (killed from outside): its processes died with it and none can be
  /// started, so every call fails rather than waiting forever.
  void check_supervisor() {
    int st;
    if (supervisor_ <= 0 || waitpid(supervisor_, &st, WNOHANG) != supervisor_) return;
    supervisor_ = -1;
    for (std::uint32_t i : active_) {
      views_[i].shared->wait_status.store(st, std::memory_order_relaxed);
      views_[i].shared->state.store(static_cast<std::uint32_t>(slot_state::dead),
                                    std::memory_order_release);
    }
    handle_deaths();
    const std::string why =
        "coray: the supervisor process " + describe_exit(st) + ", taking the workers with it";
    while (!runnable_.empty()) {
      task_record* r = runnable_.front();
      runnable_.pop_front();
      fail(*r, std::make_exception_ptr(worker_crashed(why)));
    }
  }

  driver_config cfg_;
  std::vector<process_view> views_;    // one per slot: task workers, then actors
  std::vector<std::uint32_t> active_;  // slots with a process
  std::vector<std::uint32_t> free_actor_slots_;
  std::unordered_map<std::uint64_t, std::unique_ptr<task_record>> tasks_;
  std::deque<task_record*> runnable_;
  std::unordered_map<std::uint64_t, actor_entry> actors_;
  std::unordered_map<std::string, std::uint64_t> names_;
  std::unordered_set<std::uint64_t> backlog_;  // actors whose mailbox was full
  std::vector<std::byte> gathered_;            // multi-slot messages, read contiguously
  int spill_fd_ = -1;
  bool in_poll_ = false;
  std::uint64_t spill_end_ = 0;
  std::uint64_t spilled_objects_ = 0;
  std::unordered_set<object_state*> resident_;  // driver objects in the store, spillable
  std::uint64_t next_task_id_ = 1;
  std::uint64_t next_actor_id_ = 1;
  std::uint32_t seen_deaths_ = 0;
  int command_fd_ = -1;
  pid_t supervisor_ = -1;
};

}  // namespace detail
CORAY_END_NAMESPACE
