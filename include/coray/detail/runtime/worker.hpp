#pragma once
/// A worker process -- a task worker or an actor: takes calls from its inbox, runs them (a
/// coroutine body may await nested calls while the process runs others), and replies
/// through its outbox. Calls made from here go to the driver, which schedules them like any
/// other. An actor first receives `construct`, then starts method calls in arrival order, at
/// most max_concurrency at once: coroutine methods overlap on the loop thread while they
/// await, and a threaded actor's plain methods run on its method threads.

#include <fmt/format.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <coray/codec.hpp>
#include <coray/detail/runtime/identity.hpp>
#include <coray/detail/runtime/invocation.hpp>
#include <coray/detail/runtime/method_threads.hpp>
#include <coray/detail/runtime/process.hpp>
#include <coray/detail/runtime/registry.hpp>
#include <coray/detail/runtime/result_message.hpp>
#include <coray/detail/runtime/stream_state.hpp>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

class worker final : public process, public call_host {
 public:
  worker(std::uint32_t slot, std::uint32_t epoch_) : slot_(slot) { epoch = epoch_; }

  /// Attaches to the runtime's header and serves until told to stop or the driver goes.
  [[noreturn]] void serve() {
    hdr = seg.at<shared_header>(seg.header_root().header_offset);
    me_ = &hdr->worker(slot_);
    inbox_ = seg.at<mailbox>(me_->inbox);
    outbox_ = seg.at<mailbox>(me_->outbox);
    generation_ = me_->generation.load(std::memory_order_acquire);
    const std::uint32_t id_slot = me_->id_slot.load(std::memory_order_relaxed);
    next_id_ = (std::uint64_t{1} << 63) | (std::uint64_t{id_slot ? id_slot - 1 : slot_} << 48) |
               (std::uint64_t{generation_ & 0xFFFF} << 32);
    me_->pid.store(getpid(), std::memory_order_relaxed);
    me_->served.store(1, std::memory_order_relaxed);
    me_->state.store(static_cast<std::uint32_t>(slot_state::running), std::memory_order_release);
    process::current() = this;
    on_this_thread() = this;  // serve may run on another thread than the constructor's
    open_handoff(me_->bell, runtime_gate::phase::releases_only);
    run_until([this] { return stop_ || (stopping_ && no_calls_left()); });
    if (instance_ && destroy_) destroy_(instance_);  // an actor ends with its destructor
    std::fflush(nullptr);
    _exit(0);
  }

  /// A nested call from a task body: the driver schedules it; the result comes back as
  /// object_ready.
  state_ptr submit(task_spec&& spec) override {
    auto result = make_state();
    result->id = next_id_++;
    if (spec.returns) [[unlikely]]
      for (auto& s : *spec.returns) s->id = next_id_++;  // ray::returns: one per result
    // Dependencies first: a call whose argument already failed is never sent.
    if (const std::exception_ptr* e = failed_dependency(spec)) {
      result->set_error(*e);
      if (spec.returns)
        for (auto& s : *spec.returns) s->set_error(*e);
      if (spec.stream) {  // a stream that ends before its first item, with that error
        spec.stream->ended = true;
        spec.stream->error = *e;
      }
      return result;
    }
    awaited_.emplace(result->id, result.get());
    if (spec.returns)
      for (auto& s : *spec.returns) awaited_.emplace(s->id, s.get());
    if (spec.stream) [[unlikely]]
      consume_stream(spec.stream, result);
    with_call_message(spec, result->id, [&](const call_message_writer& message) {
      send(msg_kind::submit, message.size(), [&](std::byte* out) { message.write(out, seg); });
    });
    return result;
  }

  /// A streaming generator's call made here: its items arrive as stream_ready, its end as
  /// the call's result (design.md, "Streaming generators").
  void consume_stream(const std::shared_ptr<stream_state>& st, const state_ptr& result) {
    st->id = result->id;
    st->call = result;
    consuming_.emplace(st->id, st);
    struct ender {
      worker* self;
      std::shared_ptr<stream_state> st;
    };
    result->waiters.push_back({[](void* ctx, object_state& r) {
                                 std::unique_ptr<ender> e(static_cast<ender*>(ctx));
                                 stream_state& s = *e->st;
                                 s.ended = true;
                                 if (r.st == object_state::status::failed) s.error = r.error();
                                 s.wake_consumer();
                                 e->self->consuming_.erase(s.id);
                               },
                               new ender{this, st}});
  }
  /// The consumer here took items: the producer may go on to `limit` (0: stop it).
  void stream_credit(std::uint64_t id, std::uint64_t limit) override {
    const std::uint64_t msg[2] = {id, limit};
    send(msg_kind::stream_consumed, sizeof msg,
         [&](std::byte* out) { std::memcpy(out, msg, sizeof msg); });
  }

  /// ray::spawn in a task or an actor: the driver creates the actor and answers with its id
  /// (or why it refused), as it would to its own spawn.
  std::uint64_t spawn_actor(actor_spawn_request req) override {
    task_spec& spec = req.constructor;
    if (const std::exception_ptr* e = failed_dependency(spec)) std::rethrow_exception(*e);
    const std::uint64_t request = ++lookups_;
    const std::vector<std::byte> fields =
        encode(std::pair<actor_spawn_fields, std::optional<resource_request>>(
            req, req.resources ? std::optional(*req.resources) : std::nullopt));
    const std::size_t at = 2 * sizeof(std::uint64_t) + pad16(fields.size());
    with_call_message(spec, 0, [&](const call_message_writer& message) {
      send(msg_kind::actor_spawn, at + message.size(), [&](std::byte* out) {
        const std::uint64_t head[2] = {request, fields.size()};
        std::memcpy(out, head, sizeof head);
        std::memcpy(out + sizeof head, fields.data(), fields.size());
        std::memset(out + sizeof head + fields.size(), 0, at - sizeof head - fields.size());
        message.write(out + at, seg);
      });
    });
    internal_wait([&] { return spawned_.count(request) != 0; });
    spawn_answer answer = std::move(spawned_[request]);
    spawned_.erase(request);
    if (!answer.id) std::rethrow_exception(to_exception(answer.error));
    return answer.id;
  }

  void actor_handle(std::uint64_t id, int delta) noexcept override {
    send_u64(delta > 0 ? msg_kind::actor_hold : msg_kind::actor_release, id);
  }
  void kill_actor(std::uint64_t id) override { send_u64(msg_kind::actor_kill, id); }
  actor_info lookup_actor(std::string_view name) override {
    const std::uint64_t request = ++lookups_;
    send(msg_kind::actor_lookup, sizeof request + name.size(), [&](std::byte* out) {
      std::memcpy(out, &request, sizeof request);
      std::memcpy(out + sizeof request, name.data(), name.size());
    });
    internal_wait([&] { return found_.count(request) != 0; });
    actor_info info = found_[request];
    found_.erase(request);
    return info;
  }

  // ---- call_host: what the invoker of a call asks ------------------------------------------
  void set_instance(void* instance, void (*destroy)(void*)) noexcept override {
    instance_ = instance;
    destroy_ = destroy;
  }
  void name_output(std::string_view name) noexcept override {
    output_named_ = name.data();
    me_->output_name.set(name);
  }
  void call_finished(std::uint32_t group) noexcept override {
    if (group < groups_.size() && groups_[group].running) --groups_[group].running;
    if (exiting_ && !stop_) {
      // Its reply is sent: the driver learns why the actor ends before it sees it gone.
      send_u64(msg_kind::actor_exit, 0);
      stop_ = true;
    }
  }
  void exit_actor() override {
    if (!is_actor_) throw usage_error("ray::exit_actor: called outside an actor");
    exiting_ = true;
  }
  void run_on_thread(std::unique_ptr<threaded_call> call) override {
    if (!threads_) threads_ = std::make_unique<method_threads>(this, &post_finished);
    threads_->run(std::move(call), thread_limit_);
  }

  void state_released(object_state& s) noexcept override {
    if (s.id && awaited_.erase(s.id)) send_u64(msg_kind::release, s.id);
  }

  // ---- refs inside values (design.md, "Refs inside objects") -----------------------------
  /// A ref read from a value: this process's state for its id if it has one, else a new one
  /// that the driver settles (object_ready) once asked to (ref_hold); the driver keeps the
  /// object alive until this process lets the state go (release).
  state_ptr ref_from_id(std::uint64_t id) override {
    if (auto it = awaited_.find(id); it != awaited_.end()) return state_ptr::share(it->second);
    state_ptr s = awaited_state(id);
    send_u64(msg_kind::ref_hold, id);
    return s;
  }
  /// A new state for the driver's object `id`, which the driver settles (object_ready) and
  /// this process lets go of (release) when the state goes.
  state_ptr awaited_state(std::uint64_t id) {
    state_ptr s = make_state();
    s->id = id;
    awaited_.emplace(id, s.get());
    return s;
  }
  /// Makes objects of this process that refs name known to the driver: one put here (no id
  /// yet) is sent to it (export_object), the objects its own value holds refs to first; the
  /// driver holds it for this process until the state goes. Results of calls and refs read
  /// from values already have ids the driver knows.
  void publish_refs(std::span<const state_ptr> refs) override {
    for (const auto& r : refs) export_object(*r);
  }

  /// Asks the driver for a block and waits (running the loop) for it.
  object_block* new_block(std::size_t size) override {
    const std::uint64_t request = ++requests_;
    std::uint64_t msg[2] = {request, size};
    send(msg_kind::block_request, sizeof msg,
         [&](std::byte* out) { std::memcpy(out, msg, sizeof msg); });
    internal_wait([&] { return granted_.count(request) != 0; });
    grant g = granted_[request];
    granted_.erase(request);
    if (!g.offset) throw object_store_full(g.requested, g.free_bytes, g.capacity);
    return seg.at<object_block>(g.offset);
  }
  void release_block(object_block* b) noexcept override {
    send_u64(msg_kind::block_release, seg.offset_of(b));
  }

  /// A task blocked in ray::get (or any blocking wait) does not occupy its worker: the
  /// driver may send more calls, which run here, above it on the stack, until it can go on.
  /// Without this, tasks blocked on children they wait for would fill every worker while
  /// the children queue in the driver. Only the blocked call's descendants are sent (the
  /// calls this worker made since the blocked call started: blocked_mark), so
  /// the stack grows with the depth of a tree of tasks, not its width. A blocking wait in a
  /// resumed coroutine (no plain call running) takes any call this worker made. The driver
  /// is woken: it may be waiting for room. Actors keep their one-call-at-a-time order; the
  /// worker's own waits (internal_wait) start nothing.
  bool blocking_wait(int delta) noexcept override {
    if (delta > 0 && (is_actor_ || internal_waits_ != 0)) return false;
    // The mark is set before the call counts as suspended and cleared after it stops
    // counting, so the driver (transport::occupancy_of) never sees it suspended unmarked,
    // which would make this worker look free for any call.
    if (delta > 0) {
      blocked_marks_.push_back(call_mark != 0 ? call_mark : 1);
      me_->blocked_mark.store(blocked_marks_.back(), std::memory_order_release);
      coroutine_suspended(delta);
    } else {
      coroutine_suspended(delta);
      blocked_marks_.pop_back();
      me_->blocked_mark.store(blocked_marks_.empty() ? 0 : blocked_marks_.back(),
                              std::memory_order_release);
    }
    if (delta > 0) hdr->driver_bell.ring();
    return true;
  }

  /// Task coroutines that are suspended; the driver counts them as not occupying the worker.
  void coroutine_suspended(int delta) noexcept override {
    me_->suspended.store(
        static_cast<std::uint32_t>(
            static_cast<int>(me_->suspended.load(std::memory_order_relaxed)) + delta),
        std::memory_order_release);  // after a blocked call's mark (blocking_wait)
  }

 protected:
  void reply_filled(std::uint64_t task_id, std::size_t size, void (*fill)(void*, std::byte*),
                    void* context, const object_contents* held) override {
    const outgoing_value v = prepare_value(task_id, size, fill, context, held);
    send(msg_kind::task_done, v.bytes(), [&](std::byte* out) { v.write(out, fill, context); });
  }
  void reply_failed(std::uint64_t task_id, const wire_error& e, bool retryable) override {
    std::size_t size = encoded_size(e);
    send(msg_kind::task_done, sizeof(result_header) + size, [&](std::byte* out) {
      result_header h{task_id,
                      retryable ? result_header::retryable_error : result_header::error,
                      static_cast<std::uint32_t>(size),
                      0,
                      0,
                      0};
      std::memcpy(out, &h, sizeof h);
      encode_to(std::span<std::byte>(out + sizeof h, size), e);
    });
  }

  bool stream_filled(std::uint64_t task_id, std::size_t size, void (*fill)(void*, std::byte*),
                     void* context, const object_contents* held) override {
    const outgoing_value v = prepare_value(task_id, size, fill, context, held);
    const std::size_t len = (v.bytes() + 7) & ~std::size_t{7};
    std::unique_lock lock(streams_mutex_);
    stream_run& s = streams_[task_id];
    if (s.stopped) {
      lock.unlock();
      if (v.block) release_block(v.block);
      return false;
    }
    if (s.count && s.batch.size() + len > stream_batch_bytes) flush_stream(task_id, s);
    if (s.batch.empty()) s.batch.resize(sizeof(stream_batch_header));
    const std::size_t at = s.batch.size();
    s.batch.resize(at + len);
    v.write(s.batch.data() + at, fill, context);
    ++s.count;
    ++s.made;
    // The first item goes at once (time to first item), full batches at once, and the rest
    // within stream_flush_interval of the first item in its batch (the flusher thread).
    if (s.made == 1 || s.batch.size() >= stream_batch_bytes) {
      flush_stream(task_id, s);
    } else if (s.count == 1) {
      s.started = clock::now();
      wake_flusher();
    }
    // A consumer in this process is below this call on its stack (it waits for an item, and
    // this worker took the generator meanwhile): no credit can come, so it is not waited for.
    const bool at_limit = s.made >= s.limit && !consuming_.count(task_id);
    if (at_limit) flush_stream(task_id, s);
    lock.unlock();
    if (at_limit || !inbox_->empty()) {
      read_inbox();  // a credit or a stop
      if (at_limit) internal_wait([this, &s] { return stream_may_go(s); });
    }
    return !stream_stopped(s);
  }
  void stream_end(std::uint64_t task_id) override {
    const std::lock_guard lock(streams_mutex_);
    auto it = streams_.find(task_id);
    if (it == streams_.end()) return;
    if (it->second.count && !it->second.stopped) flush_stream(task_id, it->second);
    streams_.erase(it);
  }

  bool poll() override {
    if (!internal_waits_ && !deferred_.empty()) {
      // Calls that arrived during an internal wait, in their order.
      std::vector<std::byte> call = std::move(deferred_.front());
      deferred_.pop_front();
      start_task(call);
      spare_call(std::move(call));
      return true;
    }
    message_view m;
    std::vector<std::byte> gathered;
    if (!peek_message(seg, *inbox_, gathered, m)) return start_calls();
    // Take the message out of the ring before handling it: a task body may run the loop
    // again (a blocking get), which must see the next message, not this one. A message in a
    // block stays valid: the driver frees it when the call ends.
    alignas(16) std::byte local[mailbox_slot::payload_bytes];
    if (m.slots == 1 && !m.block) {
      std::memcpy(local, m.payload.data(), m.payload.size());
      m.payload = {local, m.payload.size()};
    }
    inbox_->pop(m.slots);
    // The driver may be asleep waiting for room in this inbox (Dekker with its sleep: slots
    // freed, fence, flag read here; flag set, fence, room read there).
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (me_->driver_waiting.load(std::memory_order_relaxed) != 0) {
      me_->driver_waiting.store(0, std::memory_order_relaxed);
      hdr->driver_bell.ring();
    }
    switch (m.kind) {
      case msg_kind::run_task:
        if (is_actor_) {
          // Held here rather than in the ring, so results of nested calls behind it still arrive.
          if (call_group* g = group_of(m.payload)) g->calls.push_back(copy_of_call(m.payload));
        } else if (internal_waits_ || !deferred_.empty()) {
          deferred_.push_back(copy_of_call(m.payload));
        } else {
          start_task(m.payload);
        }
        break;
      case msg_kind::construct:
        construct(m.payload);
        break;
      case msg_kind::object_ready:
        on_object_ready(m.payload);
        break;
      case msg_kind::actor_spawned: {
        std::uint64_t v[2];
        std::memcpy(v, m.payload.data(), sizeof v);
        spawn_answer& a = spawned_[v[0]];
        a.id = v[1];
        if (!a.id) a.error = decode<wire_error>(m.payload.subspan(sizeof v));
        break;
      }
      case msg_kind::actor_found: {
        std::uint64_t v[3];
        std::memcpy(v, m.payload.data(), sizeof v);
        found_[v[0]] = {v[1], v[2]};
        break;
      }
      case msg_kind::block_granted: {
        std::uint64_t v[5];
        std::memcpy(v, m.payload.data(), sizeof v);
        granted_[v[0]] = {v[1], v[2], v[3], v[4]};
        break;
      }
      case msg_kind::stream_credit: {
        std::uint64_t v[2];
        std::memcpy(v, m.payload.data(), sizeof v);
        const std::lock_guard lock(streams_mutex_);
        if (auto it = streams_.find(v[0]); it != streams_.end()) {
          if (v[1] == 0)
            it->second.stopped = true;
          else
            it->second.limit = std::max(it->second.limit, v[1]);
        }
        break;
      }
      case msg_kind::stream_ready:
        on_stream_ready(m.payload);
        break;
      case msg_kind::shutdown:
        stopping_ = true;
        break;
      default:
        break;
    }
    start_calls();
    return true;
  }

  void sleep(std::chrono::nanoseconds limit) override {
    me_->bell.sleep([this] { return !inbox_->empty() || jobs_waiting(); }, limit);
    if (getppid() != hdr->supervisor_pid) _exit(0);  // supervisor gone: the runtime is over
  }

 private:
  /// Calls of one concurrency group: queued in arrival order, started while fewer than
  /// `limit` run. groups_[0] is the default group (max_concurrency); named ones follow.
  struct call_group {
    std::uint32_t name_hash = 0;  // group_hash of its name; 0: the default group
    std::uint32_t limit = 1;
    std::uint32_t running = 0;
    std::deque<std::vector<std::byte>> calls;
  };

  /// A streaming generator running here: its items not sent yet, how many it made, and how
  /// far its consumer lets it go (design.md, "Streaming generators"). Under streams_mutex_:
  /// the flusher thread sends batches too.
  struct stream_run {
    std::vector<std::byte> batch;  // a stream_batch_header, then the item records
    std::uint32_t count = 0;       // items in the batch
    std::uint64_t made = 0;        // items made: the next one's index
    std::uint64_t limit = stream_window;
    bool stopped = false;
    clock::time_point started{};  // when the batch's first item was added
  };
  static constexpr std::size_t stream_batch_bytes = 8192;
  static constexpr auto stream_flush_interval = std::chrono::microseconds(50);

  /// Sends the batch of `s`. Under streams_mutex_.
  void flush_stream(std::uint64_t task_id, stream_run& s) {
    if (!s.count) return;
    const stream_batch_header head{task_id, s.made - s.count, s.limit, s.count, 0};
    std::memcpy(s.batch.data(), &head, sizeof head);
    send(msg_kind::stream_items, s.batch.size(),
         [&s](std::byte* out) { std::memcpy(out, s.batch.data(), s.batch.size()); });
    s.batch.clear();
    s.count = 0;
  }
  bool stream_may_go(const stream_run& s) {
    const std::lock_guard lock(streams_mutex_);
    return s.made < s.limit || s.stopped;
  }
  bool stream_stopped(const stream_run& s) {
    const std::lock_guard lock(streams_mutex_);
    return s.stopped;
  }
  /// Reads what the driver sent while a generator runs (credits, stops), starting no call.
  void read_inbox() {
    ++internal_waits_;
    try {
      while (!inbox_->empty()) poll();
    } catch (...) {
      --internal_waits_;
      throw;
    }
    --internal_waits_;
  }
  /// Under streams_mutex_: a batch was started; the flusher sends it if the generator does
  /// not within stream_flush_interval (a generator that yields, then works or waits).
  void wake_flusher() {
    if (!flusher_.joinable()) flusher_ = std::thread([this] { flush_late_batches(); });
    flusher_wake_.notify_one();
  }
  /// The flusher thread: for the life of the process, once a generator ran in it.
  void flush_late_batches() {
    std::unique_lock lock(streams_mutex_);
    for (;;) {
      auto due = clock::time_point::max();
      const auto now = clock::now();
      for (auto& [id, s] : streams_) {
        if (!s.count || s.stopped) continue;
        if (now - s.started >= stream_flush_interval)
          flush_stream(id, s);
        else
          due = std::min(due, s.started + stream_flush_interval);
      }
      if (due == clock::time_point::max())
        flusher_wake_.wait(lock);
      else
        flusher_wake_.wait_until(lock, due);
    }
  }

  /// Waits for a reply of the runtime's own (a block, an actor's id), serving the loop but
  /// starting no new task meanwhile: a task started here would nest inside the one waiting,
  /// and each would hold what it was granted while the innermost waits (with blocks: every
  /// queued task's result allocated before any is sent).
  template <class Done>
  void internal_wait(Done&& done) {
    ++internal_waits_;
    try {
      run_until(done);
    } catch (...) {
      --internal_waits_;
      throw;
    }
    --internal_waits_;
  }

  void start_task(std::span<const std::byte> payload) {
    count_taken();
    std::uint32_t gpus;
    std::memcpy(&gpus, payload.data() + offsetof(task_header, gpus), sizeof gpus);
    if (gpus != gpus_) [[unlikely]]
      return start_task_with(payload, gpus);
    run_task(payload);
  }
  /// A call whose GPUs are not those this process runs with now: it runs with its own. Run
  /// above a blocked call (a call lent this worker: design.md, "Resources"), it gives the
  /// blocked call its GPUs back when it returns.
  [[gnu::noinline]] void start_task_with(std::span<const std::byte> payload, std::uint32_t gpus) {
    const std::uint32_t below = gpus_;
    use_gpus(gpus);
    run_task(payload);
    if (!blocked_marks_.empty() && gpus_ != below) use_gpus(below);
  }

  /// Runs a call (of actor call group `group`); false if its function is unknown here (an
  /// error reply is sent).
  bool run_task(std::span<const std::byte> payload, std::uint32_t group = 0) {
    task_header h;
    std::memcpy(&h, payload.data(), sizeof h);
    return run_call(h, payload.subspan(sizeof h), group);
  }
  bool run_call(const task_header& h, std::span<const std::byte> args, std::uint32_t group) {
    const registered_function* fn = find_function(h.fn_id);
    if (!fn) {
      const usage_error e(fmt::format(
          "coray: no function with id {} is registered in the worker (is it the same program?)",
          h.fn_id));
      reply_error(h.task_id, describe_exception(std::make_exception_ptr(e), ""));
      return false;
    }
    // A task worker's output is shown under the function it runs; the name is written only
    // when it changes (names are constants: comparing where they lie is enough).
    if (!is_actor_ && fn->name.data() != output_named_) [[unlikely]]
      name_output(fn->name);
    invocation inv{*this,    seg,       h.task_id,       args,      h.nargs,
                   fn->name, instance_, h.retry_matcher, threaded_, group};
    const std::uint64_t outer = std::exchange(call_mark, next_id_);
    const std::uint64_t outer_task = std::exchange(this_process().task_id, h.task_id);
    fn->invoke(inv);  // replies with the outcome; never throws
    this_process().task_id = outer_task;
    call_mark = outer;
    return true;
  }

  void construct(std::span<const std::byte> payload) {
    task_header h;
    std::memcpy(&h, payload.data(), sizeof h);
    is_actor_ = true;
    this_process().kind = process_kind::actor;
    this_process().actor_id = h.target;
    this_process().restarts = static_cast<std::uint32_t>(std::max(0, h.max_retries));
    const std::uint32_t max_concurrency =
        std::max<std::uint32_t>(1, h.extra & max_concurrency_limit);
    groups_.assign(1, call_group{0, max_concurrency, 0, {}});
    if (h.extra & has_concurrency_groups) {
      // The groups are the last argument, after the constructor's.
      call_reader args(payload.subspan(sizeof h));
      std::span<const std::byte> last;
      for (std::uint32_t i = 0; i < h.nargs; ++i) last = args.next_value(seg);
      for (auto& [name, limit] : decode<std::vector<std::pair<std::string, std::uint32_t>>>(last))
        groups_.push_back(call_group{group_hash(name), std::max<std::uint32_t>(1, limit), 0, {}});
      --h.nargs;  // the constructor's
    }
    // With groups, a blocking plain method must not hold up the others': all run on threads.
    threaded_ =
        (max_concurrency > 1 || groups_.size() > 1) && (h.extra & plain_methods_on_loop) == 0;
    for (const call_group& g : groups_) thread_limit_ += g.limit;
    use_gpus(h.gpus);  // for life
    if (!run_call(h, payload.subspan(sizeof h), 0) || !instance_) {
      // The constructor threw (its error is the reply): an actor without its object ends.
      std::fflush(nullptr);
      _exit(3);
    }
  }

  /// Gives this process the GPUs (a mask of the runtime's) the calls it runs now were given:
  /// CUDA_VISIBLE_DEVICES and ray::get_gpu_ids(). No GPU: the environment it started with.
  void use_gpus(std::uint32_t mask) {
    if (!env_saved_) {
      const char* v = std::getenv("CUDA_VISIBLE_DEVICES");
      if (v) env_before_ = v;
      env_saved_ = true;
    }
    gpus_ = mask;
    auto& ids = assigned_gpu_ids();
    ids.clear();
    if (mask == 0) {
      if (env_before_)
        setenv("CUDA_VISIBLE_DEVICES", env_before_->c_str(), 1);
      else
        unsetenv("CUDA_VISIBLE_DEVICES");
      return;
    }
    const std::string list = hdr->gpu_ids_of(mask);
    setenv("CUDA_VISIBLE_DEVICES", list.c_str(), 1);
    for (std::size_t at = 0; at < list.size();) {
      const std::size_t end = std::min(list.find(',', at), list.size());
      ids.push_back(list.substr(at, end - at));
      at = end + 1;
    }
  }

  /// A call's message, copied to wait here until it starts, in a buffer a started call gave
  /// back when there is one: an actor's every call waits so, and malloc and free of its copy
  /// were some 160 of the actor's instructions per call.
  std::vector<std::byte> copy_of_call(std::span<const std::byte> payload) {
    std::vector<std::byte> call;
    if (!spare_calls_.empty()) {
      call = std::move(spare_calls_.back());
      spare_calls_.pop_back();
    }
    call.assign(payload.begin(), payload.end());
    return call;
  }
  /// Keeps a started call's buffer for the next copy (its bytes are no longer read: a body
  /// that outlives the call, a coroutine's or a method thread's, holds its own copy).
  void spare_call(std::vector<std::byte>&& call) {
    if (spare_calls_.size() < 64 && call.capacity() <= mailbox_slot::payload_bytes)
      spare_calls_.push_back(std::move(call));
  }

  /// Starts queued actor calls while their groups' limits allow, each group's in order.
  bool start_calls() {
    if (!is_actor_ || !instance_ || internal_waits_) return false;
    bool started = false;
    for (std::uint32_t i = 0; i < groups_.size(); ++i) {
      call_group& g = groups_[i];
      while (!g.calls.empty() && g.running < g.limit && !internal_waits_ && !exiting_) {
        std::vector<std::byte> call = std::move(g.calls.front());
        g.calls.pop_front();
        ++g.running;
        if (groups_.size() == 1) count_taken();
        run_task(call, i);
        spare_call(std::move(call));
        started = true;
      }
    }
    return started;
  }

  /// The error of the first of `spec`'s dependencies that failed, its blocks released (the
  /// call is never sent), or null.
  const std::exception_ptr* failed_dependency(const task_spec& spec) noexcept {
    for (const auto& d : spec.deps)
      if (d->st == object_state::status::failed) {
        for (auto* b : spec.blocks) release_block(b);
        return &d->error();
      }
    return nullptr;
  }

  /// `f(message)` with the message of a call this process makes (`id`: its result's). Ready
  /// dependencies travel by value, pending ones by id (the driver knows the ids of results of
  /// calls only, not of values put in this process). Refs inside the arguments (published
  /// while they were sized) travel by id, and actor handles inside them as they are: the
  /// driver keeps both alive until the call ends. A task's resources other than the
  /// default travel last (carries_resources); the driver schedules the call with them.
  template <class F>
  void with_call_message(const task_spec& spec, std::uint64_t id, F&& f) {
    const std::vector<std::uint64_t> refs = ids_of(held_refs(spec.held));
    const auto actors = held_actors(spec.held);
    const resource_request* resources = spec.resources.get();
    const task_header h{
        id,
        spec.fn_id,
        spec.nargs,
        static_cast<std::uint32_t>(actors.size()) | (resources ? carries_resources : 0),
        spec.target_actor,
        spec.max_retries,
        spec.group,
        spec.retry_matcher,
        static_cast<std::uint32_t>(refs.size()),
        spec.stream    ? returns_stream
        : spec.returns ? static_cast<std::uint32_t>(spec.returns->size())
                       : 0};
    f(call_message_writer(h, spec.args, spec.deps, actors, refs, resources));
  }

  static std::vector<std::uint64_t> ids_of(std::span<const state_ptr> refs) {
    std::vector<std::uint64_t> ids;
    ids.reserve(refs.size());
    for (const auto& r : refs) ids.push_back(r->id);
    return ids;
  }

  /// The ids of what a value holds, refs (published first) then actors, as a result or an
  /// export lists them after the value; counts them in `h`.
  /// A value about to go to the driver as a call's result or a stream's item: its header,
  /// the ids of the refs and handles inside it, and its block when it is too large to travel
  /// inline (filled already).
  struct outgoing_value {
    result_header h;
    std::vector<std::uint64_t> ids;
    object_block* block = nullptr;
    /// The message's bytes: the header, the inline value if any, the ids.
    std::size_t bytes() const noexcept {
      return sizeof h + (block ? 0 : h.len) + ids.size() * sizeof(std::uint64_t);
    }
    void write(std::byte* out, void (*fill)(void*, std::byte*), void* context) const {
      std::memcpy(out, &h, sizeof h);
      const std::size_t value = block ? 0 : h.len;
      if (value) fill(context, out + sizeof h);
      if (!ids.empty())
        std::memcpy(out + sizeof h + value, ids.data(), ids.size() * sizeof(std::uint64_t));
    }
  };
  outgoing_value prepare_value(std::uint64_t task_id, std::size_t size,
                               void (*fill)(void*, std::byte*), void* context,
                               const object_contents* held) {
    outgoing_value v{
        {task_id, result_header::value_inline, static_cast<std::uint32_t>(size), 0, 0, 0}, {}};
    if (held) v.ids = contents_ids(*held, v.h);
    if (size > inline_threshold()) {
      v.block = new_block(size);
      fill(context, v.block->data());
      v.h.status = result_header::value_block;
      v.h.len = 0;
      v.h.block = seg.offset_of(v.block);
    }
    return v;
  }

  std::vector<std::uint64_t> contents_ids(const object_contents& held, result_header& h) {
    publish_refs(held.refs);
    std::vector<std::uint64_t> ids = ids_of(held.refs);
    ids.insert(ids.end(), held.actors.begin(), held.actors.end());
    h.refs = static_cast<std::uint32_t>(held.refs.size());
    h.actors = static_cast<std::uint32_t>(held.actors.size());
    return ids;
  }

  void export_object(object_state& s) {
    if (s.id) return;
    if (s.st.load(std::memory_order_acquire) != object_state::status::ready)
      throw internal_error("coray: a ref to an unfinished object of this process has no id");
    const std::size_t len = s.block ? 0 : s.bytes.size();
    result_header h{0,
                    s.block ? result_header::value_block : result_header::value_inline,
                    static_cast<std::uint32_t>(len),
                    s.block ? seg.offset_of(s.block) : 0,
                    0,
                    0};
    const std::vector<std::uint64_t> ids =
        s.contained() ? contents_ids(*s.contained(), h) : std::vector<std::uint64_t>{};
    s.id = h.id = next_id_++;
    awaited_.emplace(s.id, &s);
    const std::size_t id_bytes = ids.size() * sizeof(std::uint64_t);
    send(msg_kind::export_object, sizeof h + len + id_bytes, [&](std::byte* out) {
      std::memcpy(out, &h, sizeof h);
      if (len) std::memcpy(out + sizeof h, s.bytes.data(), len);
      if (id_bytes) std::memcpy(out + sizeof h + len, ids.data(), id_bytes);
    });
  }

  /// The group an actor call runs in: the one it names, else the one its method declares
  /// if the actor has it, else the default one. Null, once an error reply is sent, when it
  /// names one the actor lacks. With groups, calls start out of their arrival order, so a
  /// call counts as taken (tasks_started, which tells the driver which calls a death
  /// interrupted) on arrival: one cut off before it started then fails rather than run twice.
  call_group* group_of(std::span<const std::byte> payload) {
    task_header h;
    std::memcpy(&h, payload.data(), sizeof h);
    if (groups_.size() == 1 && h.extra == 0) [[likely]]
      return &groups_[0];
    if (groups_.size() > 1) count_taken();
    const std::uint32_t wanted = h.extra != 0 ? h.extra : declared_group(h.fn_id);
    for (call_group& g : groups_)
      if (g.name_hash == wanted) return &g;
    if (h.extra == 0) return &groups_[0];
    if (groups_.size() == 1) count_taken();
    const usage_error e("coray: the call names a concurrency group the actor was not spawned with");
    const registered_function* fn = find_function(h.fn_id);
    reply_error(h.task_id, describe_exception(std::make_exception_ptr(e), fn ? fn->name : ""));
    return nullptr;
  }

  /// One more call taken (tasks_started): the driver sends again, after a death, only the
  /// calls beyond it.
  void count_taken() noexcept {
    me_->tasks_started.store(me_->tasks_started.load(std::memory_order_relaxed) + 1,
                             std::memory_order_release);
  }

  bool no_calls_left() const noexcept {
    for (const call_group& g : groups_)
      if (!g.calls.empty() || g.running != 0) return false;
    return true;
  }

  /// A method thread: hands a finished threaded call to the loop thread, which replies.
  static void post_finished(void* self, threaded_call* call) noexcept {
    static_cast<worker*>(self)->post({&reply_finished, call});  // bad_alloc: terminates
  }
  static void reply_finished(void* ctx, process& p, bool /*live*/) noexcept {
    auto& self = static_cast<worker&>(p);
    std::uint32_t group = 0;
    {
      const std::unique_ptr<threaded_call> call(static_cast<threaded_call*>(ctx));
      group = call->group();
      try {
        call->reply(self);
      } catch (...) {  // no reply could be sent: the process cannot go on honestly
        std::terminate();
      }
    }  // its arguments go here, on the loop thread
    self.call_finished(group);
  }

  void send_u64(msg_kind k, std::uint64_t v) noexcept {
    send(k, sizeof v, [&](std::byte* out) { std::memcpy(out, &v, sizeof v); });
  }

  /// The next items of a stream consumed here: a state for each id, which the driver holds
  /// for this process and settles (object_ready) next.
  void on_stream_ready(std::span<const std::byte> payload) {
    std::uint64_t head[2];
    if (payload.size() < sizeof head) return;
    std::memcpy(head, payload.data(), sizeof head);
    auto it = consuming_.find(head[0]);
    const std::size_t n = std::min<std::size_t>(head[1], payload.size() / 8 - 2);
    for (std::size_t k = 0; k < n; ++k) {
      std::uint64_t id;
      std::memcpy(&id, payload.data() + sizeof head + k * sizeof id, sizeof id);
      state_ptr s = awaited_state(id);
      if (it != consuming_.end()) {
        it->second->items.push_back(std::move(s));
        ++it->second->delivered;
      }
    }
    if (it != consuming_.end() && n) it->second->wake_consumer();
  }

  void on_object_ready(std::span<const std::byte> payload) {
    result_header h;
    std::memcpy(&h, payload.data(), sizeof h);
    auto it = awaited_.find(h.id);
    if (it == awaited_.end()) {
      if (h.status == result_header::value_block) release_block(seg.at<object_block>(h.block));
      return;
    }
    settle_from_result(*it->second, h, payload.subspan(sizeof h, h.len), seg);
  }

  /// Sends to the driver, waiting for room (the driver always drains). A message longer than
  /// the ring takes goes in a block the driver frees after reading it.
  template <class Fill>
  void send(msg_kind k, std::size_t size, Fill&& fill) {
    object_block* b = nullptr;
    if (size > outbox_->max_message_bytes()) {
      b = new_block(size);
      fill(b->data());
    }
    auto sent = [&] {
      return b ? try_send_block(seg, *outbox_, hdr->driver_bell, k, b)
               : try_send(*outbox_, hdr->driver_bell, k, size, fill);
    };
    backoff bo;  // reads the clock only if the ring is full
    while (!sent()) {
      if (bo.pause(std::chrono::microseconds(hdr->spin_us))) {
        if (getppid() != hdr->supervisor_pid) _exit(0);
        usleep(50);
      }
    }
  }

  std::uint32_t slot_;
  std::uint32_t generation_ = 0;
  worker_shared* me_ = nullptr;
  mailbox* inbox_ = nullptr;
  mailbox* outbox_ = nullptr;
  std::uint64_t next_id_ = 0;
  bool stop_ = false;
  bool stopping_ = false;
  bool exiting_ = false;  // ray::exit_actor: stop once the running call has replied
  std::unordered_map<std::uint64_t, object_state*> awaited_;  // nested results by id
  std::uint64_t lookups_ = 0;
  std::unordered_map<std::uint64_t, actor_info> found_;
  struct spawn_answer {
    std::uint64_t id = 0;  // 0: refused, for `error`
    wire_error error;
  };
  std::unordered_map<std::uint64_t, spawn_answer> spawned_;
  struct grant {
    std::uint64_t offset, requested, free_bytes, capacity;
  };
  std::uint64_t requests_ = 0;
  std::unordered_map<std::uint64_t, grant> granted_;
  // Actor mode.
  bool is_actor_ = false;
  const char* output_named_ = nullptr;  // the name last given to name_output
  void* instance_ = nullptr;
  void (*destroy_)(void*) = nullptr;
  std::vector<call_group> groups_{call_group{}};
  bool threaded_ = false;                    // plain methods run on threads_
  std::unique_ptr<method_threads> threads_;  // started at the first threaded call
  std::uint32_t thread_limit_ = 0;           // the groups' limits together
  std::uint32_t gpus_ = 0;                   // the GPUs its calls run with now (a mask)
  bool env_saved_ = false;                   // env_before_ was read
  std::optional<std::string> env_before_;    // CUDA_VISIBLE_DEVICES as the process started
  int internal_waits_ = 0;
  std::vector<std::uint64_t> blocked_marks_;         // blocking waits on the stack, innermost last
  std::deque<std::vector<std::byte>> deferred_;      // tasks that arrived during an internal wait
  std::vector<std::vector<std::byte>> spare_calls_;  // buffers of started calls, for the next
  std::mutex streams_mutex_;
  std::unordered_map<std::uint64_t, stream_run> streams_;  // generators running, by call id
  /// Streams consumed here, by call id, until they end.
  std::unordered_map<std::uint64_t, std::shared_ptr<stream_state>> consuming_;
  std::condition_variable flusher_wake_;
  std::thread flusher_;  // never joined: the process ends with _exit
};

}  // namespace detail
CORAY_END_NAMESPACE
