#pragma once
/// A worker process -- a task worker or an actor: takes calls from its inbox, runs them (a
/// coroutine body may await nested calls while the process runs others), and replies
/// through its outbox. Calls made from here go to the driver, which schedules them like any
/// other. An actor first receives `construct`, then runs method calls in arrival order, at
/// most max_concurrency at once (only coroutine methods overlap).

#include <fmt/format.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <coray/detail/runtime/identity.hpp>
#include <coray/detail/runtime/invocation.hpp>
#include <coray/detail/runtime/process.hpp>
#include <coray/detail/runtime/registry.hpp>
#include <coray/detail/runtime/result_message.hpp>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <optional>
#include <string>
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
    next_id_ = (std::uint64_t{1} << 63) | (std::uint64_t{slot_} << 48) |
               (std::uint64_t{generation_ & 0xFFFF} << 32);
    me_->pid.store(getpid(), std::memory_order_relaxed);
    me_->served.store(1, std::memory_order_relaxed);
    me_->state.store(static_cast<std::uint32_t>(slot_state::running), std::memory_order_release);
    process::current() = this;
    on_this_thread() = this;  // serve may run on another thread than the constructor's
    open_handoff(me_->bell, runtime_gate::phase::releases_only);
    run_until([this] { return stop_ || (stopping_ && calls_.empty() && running_ == 0); });
    if (instance_ && destroy_) destroy_(instance_);  // an actor ends with its destructor
    std::fflush(nullptr);
    _exit(0);
  }

  /// A nested call from a task body: the driver schedules it; the result comes back as
  /// object_ready.
  state_ptr submit(task_spec&& spec) override {
    auto result = make_state();
    result->id = next_id_++;
    // Dependencies first: a call whose argument already failed is never sent.
    for (auto& d : spec.deps)
      if (d->st == object_state::status::failed) {
        for (auto* b : spec.blocks) release_block(b);
        result->set_error(d->error);
        return result;
      }
    // Ready dependencies travel by value, pending ones by id (the driver knows the ids of
    // results of calls only, not of values put in this process).
    const call_message_writer message(
        {result->id, spec.fn_id, spec.nargs, static_cast<std::uint32_t>(spec.actors.size()),
         spec.target_actor, spec.max_retries, 0, spec.retry_matcher},
        spec.args, spec.deps, spec.actors);
    const std::size_t size = message.size();
    awaited_.emplace(result->id, result.get());
    // Actor handles in the arguments: the driver keeps those actors alive until the call ends.
    send(msg_kind::submit, size, [&](std::byte* out) { message.write(out, seg); });
    return result;
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
  void call_finished() noexcept override {
    if (running_) --running_;
  }

  void forget(object_state& s) noexcept override {
    if (awaited_.erase(s.id)) send_u64(msg_kind::release, s.id);
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
                    void* context) override {
    if (size > inline_threshold()) {
      object_block* b = new_block(size);
      fill(context, b->data());
      result_header h{task_id, result_header::value_block, 0, seg.offset_of(b), 0};
      send(msg_kind::task_done, sizeof h, [&](std::byte* out) { std::memcpy(out, &h, sizeof h); });
      return;
    }
    send(msg_kind::task_done, sizeof(result_header) + size, [&](std::byte* out) {
      result_header h{task_id, result_header::value_inline, static_cast<std::uint32_t>(size), 0, 0};
      std::memcpy(out, &h, sizeof h);
      fill(context, out + sizeof h);
    });
  }
  void reply_failed(std::uint64_t task_id, const wire_error& e, bool retryable) override {
    std::size_t size = encoded_size(e);
    send(msg_kind::task_done, sizeof(result_header) + size, [&](std::byte* out) {
      result_header h{task_id, retryable ? result_header::retryable_error : result_header::error,
                      static_cast<std::uint32_t>(size), 0, 0};
      std::memcpy(out, &h, sizeof h);
      encode_to(std::span<std::byte>(out + sizeof h, size), e);
    });
  }

  bool poll() override {
    if (!internal_waits_ && !deferred_.empty()) {
      // Calls that arrived during an internal wait, in their order.
      std::vector<std::byte> call = std::move(deferred_.front());
      deferred_.pop_front();
      start_task(call);
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
          calls_.emplace_back(m.payload.begin(), m.payload.end());
        } else if (internal_waits_ || !deferred_.empty()) {
          deferred_.emplace_back(m.payload.begin(), m.payload.end());
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
    me_->tasks_started.store(me_->tasks_started.load(std::memory_order_relaxed) + 1,
                             std::memory_order_release);
    std::uint32_t gpus;
    std::memcpy(&gpus, payload.data() + offsetof(task_header, gpus), sizeof gpus);
    if (gpus != gpus_) [[unlikely]]
      use_gpus(gpus);
    run_task(payload);
  }

  /// Runs a call; false if its function is unknown here (an error reply is sent).
  bool run_task(std::span<const std::byte> payload) {
    task_header h;
    std::memcpy(&h, payload.data(), sizeof h);
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
    invocation inv{*this,   seg,      h.task_id, payload.subspan(sizeof h),
                   h.nargs, fn->name, instance_, h.retry_matcher};
    const std::uint64_t outer = std::exchange(call_mark, next_id_);
    fn->invoke(inv);  // replies with the outcome; never throws
    call_mark = outer;
    return true;
  }

  void construct(std::span<const std::byte> payload) {
    task_header h;
    std::memcpy(&h, payload.data(), sizeof h);
    is_actor_ = true;
    this_process().kind = process_kind::actor;
    max_concurrency_ = std::max<std::uint32_t>(1, h.extra);
    use_gpus(h.gpus);  // for life
    if (!run_task(payload) || !instance_) {
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

  /// Starts queued actor calls while the concurrency limit allows.
  bool start_calls() {
    bool started = false;
    while (is_actor_ && instance_ && !internal_waits_ && !calls_.empty() &&
           running_ < max_concurrency_) {
      std::vector<std::byte> call = std::move(calls_.front());
      calls_.pop_front();
      ++running_;
      me_->tasks_started.store(me_->tasks_started.load(std::memory_order_relaxed) + 1,
                               std::memory_order_release);
      run_task(call);
      started = true;
    }
    return started;
  }

  void send_u64(msg_kind k, std::uint64_t v) noexcept {
    send(k, sizeof v, [&](std::byte* out) { std::memcpy(out, &v, sizeof v); });
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
  std::unordered_map<std::uint64_t, object_state*> awaited_;  // nested results by id
  std::uint64_t lookups_ = 0;
  std::unordered_map<std::uint64_t, actor_info> found_;
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
  std::uint32_t max_concurrency_ = 1;
  std::uint32_t running_ = 0;
  std::uint32_t gpus_ = 0;                 // the GPUs its calls run with now (a mask)
  bool env_saved_ = false;                 // env_before_ was read
  std::optional<std::string> env_before_;  // CUDA_VISIBLE_DEVICES as the process started
  std::deque<std::vector<std::byte>> calls_;
  int internal_waits_ = 0;
  std::vector<std::uint64_t> blocked_marks_;     // blocking waits on the stack, innermost last
  std::deque<std::vector<std::byte>> deferred_;  // tasks that arrived during an internal wait
};

}  // namespace detail
CORAY_END_NAMESPACE
