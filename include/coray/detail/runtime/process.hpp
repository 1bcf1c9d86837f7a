#pragma once
/// What every coray process shares: the layout of the segment's control header, and the
/// event loop that drives a process (ready coroutines, incoming messages, timers, sleeping).
/// The driver and the workers specialise it.

#include <fmt/format.h>
#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <coray/detail/runtime/actor_state.hpp>
#include <coray/detail/runtime/call_message.hpp>
#include <coray/detail/runtime/handoff.hpp>
#include <coray/detail/runtime/metric_table.hpp>
#include <coray/detail/runtime/object_state.hpp>
#include <coray/detail/runtime/output_name.hpp>
#include <coray/detail/runtime/recycled.hpp>
#include <coray/detail/runtime/wire.hpp>
#include <coray/detail/shm/futex.hpp>
#include <coray/detail/shm/segment.hpp>
#include <coroutine>
#include <cstdint>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

using clock = std::chrono::steady_clock;

/// `now + timeout`, saturated: a timeout too long to have a deadline (nanoseconds::max(),
/// what "no timeout" becomes) gives time_point::max(), which run_until and waits read as
/// "never"; a negative one gives now. Every deadline a user's timeout makes comes from here:
/// `now + timeout` itself overflows (undefined behaviour; in practice a deadline in the past).
inline clock::time_point deadline_after(clock::duration timeout) noexcept {
  const auto now = clock::now();
  if (timeout <= clock::duration::zero()) return now;
  if (timeout >= clock::time_point::max() - now) return clock::time_point::max();
  return now + timeout;
}
/// A user's timeout of any duration type as a deadline, saturated likewise (compared as
/// seconds in floating point, so no conversion overflows first).
template <class Rep, class Period>
clock::time_point deadline_in(const std::chrono::duration<Rep, Period>& timeout) {
  using seconds = std::chrono::duration<double>;
  if (seconds(timeout) >= seconds(clock::duration::max())) return clock::time_point::max();
  if (seconds(timeout) <= seconds::zero()) return clock::now();
  return deadline_after(std::chrono::ceil<clock::duration>(timeout));
}
/// A deadline on any clock (the system clock included) as one on the steady clock.
template <class Clock, class Duration>
clock::time_point deadline_at(const std::chrono::time_point<Clock, Duration>& deadline) {
  if (deadline == std::chrono::time_point<Clock, Duration>::max()) return clock::time_point::max();
  return deadline_in(deadline - Clock::now());
}

/// Per worker, in the segment: its doorbell, its mailboxes, and what the supervisor and
/// the driver need to know about it.
struct alignas(64) worker_shared {
  doorbell bell;  // the worker sleeps here
  std::atomic<std::uint32_t> state{0};
  std::atomic<std::int32_t> pid{0};
  std::atomic<std::int32_t> wait_status{0};
  std::atomic<std::uint32_t> generation{0};
  std::atomic<std::uint32_t> served{0};  // the process reached its loop (not dead at start)
  /// How the supervisor starts this slot's next process: 0 by the runtime's start method,
  /// else 1 + a start_method_id (a ray::process whose context chose one).
  std::atomic<std::uint32_t> start_as{0};
  /// 1 + the slot the driver's orchestrator knows this one as, when it differs from the
  /// slot's own number (a cluster node's slot; rank 0 numbers every node's): the ids the
  /// process gives its calls and objects carry it, so they are unique across the cluster.
  /// 0: its own.
  std::atomic<std::uint32_t> id_slot{0};
  std::uint64_t inbox = 0;   // offset of the mailbox driver -> worker
  std::uint64_t outbox = 0;  // offset of the mailbox worker -> driver
  /// Calls the process has taken from its inbox: written by it at every call, read by the
  /// driver only at its death, so alone in its cache line.
  alignas(64) std::atomic<std::uint64_t> tasks_started{0};
  /// What the driver reads at every dispatch (suspended, blocked_mark) and the process at
  /// every receive (driver_waiting): written rarely, so the line stays shared in both caches.
  /// With tasks_started in it, every sync task paid for the line crossing twice (design.md,
  /// "Where a sync call's time goes").
  alignas(64) std::atomic<std::uint32_t> suspended{0};  // task coroutines awaiting something
  /// Nonzero while a task body here is blocked in a blocking wait: the call_mark of the
  /// innermost such call. The driver then sends this worker only the calls it made itself
  /// with an id from this one up (the blocked call's descendants); see design.md, "Blocking
  /// inside a task".
  std::atomic<std::uint64_t> blocked_mark{0};
  /// Set by the driver when a message to this process found its inbox full and the driver
  /// is going to sleep: the process rings the driver once it has freed slots.
  std::atomic<std::uint32_t> driver_waiting{0};
  /// The name the process's output is shown under (the function it runs, or the actor's
  /// class): written by the process when it changes, read by the supervisor's log monitor.
  alignas(64) output_name_cell output_name;
};

/// The segment's control header, allocated first in the segment.
struct shared_header {
  doorbell driver_bell;  // the driver sleeps here
  alignas(64) std::atomic<std::uint32_t> deaths{0};
  std::int32_t driver_pid = 0;
  std::int32_t supervisor_pid = 0;
  std::uint32_t slots = 0;  // task workers first, then actors
  std::uint32_t spin_us = 0;
  std::uint64_t inline_threshold = 0;
  std::uint64_t mailbox_capacity = 0;
  /// The runtime's GPU ids, comma-separated ("0,1" or CUDA_VISIBLE_DEVICES's values): a
  /// call's GPUs travel as a mask of indices into this list.
  char gpu_ids[512] = {};
  /// The user metrics (ray::metrics), recorded by every process of the runtime.
  metric_table metrics;

  void set_gpu_ids(const std::vector<std::string>& ids) {
    std::string joined;
    for (const auto& id : ids) joined += (joined.empty() ? "" : ",") + id;
    const std::size_t n = std::min(joined.size(), sizeof gpu_ids - 1);
    std::memcpy(gpu_ids, joined.data(), n);
    gpu_ids[n] = '\0';
  }
  /// The ids of the GPUs in `mask`, comma-separated.
  std::string gpu_ids_of(std::uint32_t mask) const {
    std::string out;
    std::string_view all(gpu_ids);
    for (std::uint32_t i = 0; mask && !all.empty(); ++i) {
      const std::size_t end = std::min(all.find(','), all.size());
      if (mask & (std::uint32_t{1} << i)) {
        out += (out.empty() ? "" : ",") + std::string(all.substr(0, end));
        mask &= ~(std::uint32_t{1} << i);
      }
      all.remove_prefix(std::min(end + 1, all.size()));
    }
    return out;
  }

  static std::size_t bytes_for(std::uint32_t slots) {
    return sizeof(shared_header) + slots * sizeof(worker_shared);
  }
  worker_shared& worker(std::uint32_t i) noexcept {
    return reinterpret_cast<worker_shared*>(reinterpret_cast<std::byte*>(this) +
                                            sizeof(shared_header))[i];
  }
};

/// The GPU ids of the task or actor this process runs (ray::get_gpu_ids); empty in the
/// driver and for calls given no GPU. Written by the worker before user code runs.
inline std::vector<std::string>& assigned_gpu_ids() noexcept {
  static std::vector<std::string> ids;
  return ids;
}

/// An actor handle met while sizing a value (actor<T>::serialize): what will hold the value
/// (a put object, a call, a result) counts it at the driver while it lives.
inline void collect_actor_handle(std::uint64_t id) {
  if (!actor_collector())
    throw usage_error(
        "coray: an actor handle is encoded only inside a put object, a call argument or a "
        "result");
  actor_collector()->push_back(id);
}

/// Call arguments may also carry handles to mutable shared blocks (ray::shared_value,
/// ray::mutex): the encoder lists the block's offset, tagged, with the call's actor handles.
/// The driver pins the block while the call lives (so it outlives its sender's handles) and
/// gives the process the call is sent to a reference of its own, which the decoded handle
/// adopts. A worker may pin only blocks it holds.
inline void collect_pinned_block(segment& seg, object_block* b) {
  if (!actor_collector())
    throw usage_error(
        "coray: shared memory handles (shared values, arrays, buffers, locks) travel as call "
        "arguments only, not inside put objects or results");
  actor_collector()->push_back(pinned_block_tag | seg.offset_of(b));
}

class driver;

/// The runtime state of this process (driver or worker). One at a time per process. Its
/// state is the loop thread's: other threads reach it only through jobs (handoff.hpp), which
/// the loop runs.
class process {
 public:
  process() noexcept { on_this_thread() = this; }
  virtual ~process() {
    if (on_this_thread() == this) on_this_thread() = nullptr;
  }
  process(const process&) = delete;
  process& operator=(const process&) = delete;

  /// The process's runtime, or nullptr outside one. Read and written by the loop thread only;
  /// other threads use runtime_gate.
  static process*& current() noexcept {
    static process* p = nullptr;
    return p;
  }
  /// The runtime whose loop this thread runs (the thread that built it), or nullptr: another
  /// thread, or no runtime. Thread-safe: each thread reads its own.
  static process*& on_this_thread() noexcept {
    thread_local process* p = nullptr;
    return p;
  }
  /// The running runtime if this thread runs its loop, else nullptr.
  static process* here() noexcept {
    process* p = on_this_thread();
    return p && p == current() ? p : nullptr;  // current() is read by its own thread only
  }
  /// The runtime, for an API that only the loop thread may use; throws ray::runtime_error
  /// saying why not on any other thread.
  static process& require(const char* what = "coray") {
    if (process* p = here()) return *p;
    throw usage_error(runtime_gate::instance().refusal(what));
  }

  segment seg;
  shared_header* hdr = nullptr;
  std::uint32_t epoch = 0;  // distinguishes this runtime's states from an earlier one's

  /// The driver's interface (driver.hpp) in the driver process, null in a worker.
  virtual driver* as_driver() noexcept { return nullptr; }
  /// Sends a call; returns the state of its result.
  virtual state_ptr submit(task_spec&& spec) = 0;
  /// Sends a call whose result state was made by the thread that built it (a thread other
  /// than the loop's, in the driver); returns `result`.
  virtual state_ptr submit_into(task_spec&& /*spec*/, state_ptr /*result*/) {
    throw ray::runtime_error("coray: only the driver takes calls from other threads");
  }
  /// Makes the objects of `refs` known to the driver by id (each then has a nonzero id),
  /// before a value holding them is written. Loop thread.
  virtual void publish_refs(std::span<const state_ptr> /*refs*/) {
    throw usage_error("coray: refs inside values need a runtime");
  }
  /// The ref an id read from a value names (0: an empty ref). Throws codec_error for an id
  /// the runtime never issued. Loop thread.
  virtual state_ptr ref_from_id(std::uint64_t /*id*/) {
    throw usage_error("coray: refs inside values need a runtime");
  }

  /// A new object block of `size` payload bytes holding one reference for this process.
  /// Only the driver touches the allocator and the reference counts, so that a worker
  /// killed at any instant leaves the store intact: workers ask the driver.
  /// Throws object_store_full.
  virtual object_block* new_block(std::size_t size) = 0;
  /// This process drops one reference to `b`.
  virtual void release_block(object_block* b) noexcept = 0;
  /// A state of this process now holds a block (the driver may spill it under pressure).
  virtual void block_adopted(object_state&) {}
  /// A state of this process lost its last handle and is going away (one with an id is
  /// forgotten by it: a worker tells the driver it no longer awaits or holds that object).
  virtual void state_released(object_state&) noexcept {}
  /// Brings a spilled state's value back into the store (only the driver spills).
  virtual void restore(object_state&) {
    throw ray::runtime_error("coray: a spilled object outside the driver");
  }
  /// A coroutine of this process suspends on (+1) or resumes from (-1) a coray awaitable.
  virtual void coroutine_suspended(int /*delta*/) noexcept {}
  /// A call's body starts (+1) or ends (-1) a blocking wait, which runs the loop inside the
  /// loop. True if the process counts it (and must be told its end): a task worker does, so
  /// that the driver sends it more calls meanwhile (design.md, "Blocking inside a task").
  virtual bool blocking_wait(int /*delta*/) noexcept { return false; }

  /// A local handle to actor `id` was made (+1) or dropped (-1).
  virtual void actor_handle(std::uint64_t id, int delta) noexcept = 0;
  /// Ends actor `id` now (ray::kill).
  virtual void kill_actor(std::uint64_t id) = 0;
  /// This actor ends once the call running now has replied (ray::exit_actor).
  virtual void exit_actor() { throw usage_error("ray::exit_actor: called outside an actor"); }
  struct actor_info {
    std::uint64_t id = 0;  // 0: none
    std::uint64_t type_id = 0;
  };
  /// The live actor registered under `name`.
  virtual actor_info lookup_actor(std::string_view name) = 0;
  /// Creates an actor: a process of its own whose first message builds the object. Returns
  /// its id (the driver's at once, a worker's once the driver has it); calls queue behind the
  /// construction.
  virtual std::uint64_t spawn_actor(actor_spawn_request req) = 0;

  /// ray::cancel of the call `id` (driver only).
  virtual void cancel_call(std::uint64_t /*id*/, bool /*force*/) {}
  /// The driver: lets the producer of stream `id` make items up to index `limit`, or (0)
  /// stops it.
  virtual void stream_credit(std::uint64_t /*id*/, std::uint64_t /*limit*/) {}

  /// A new local handle to actor `id` (counted at the driver).
  actor_ptr make_actor_handle(std::uint64_t id) {
    auto* s = new actor_state;
    s->id = id;
    s->epoch = epoch;
    actor_handle(id, +1);
    return actor_ptr::adopt(s);
  }

  std::size_t inline_threshold() const noexcept { return hdr->inline_threshold; }
  /// True on the thread that runs this process's loop (where blocking calls may serve it).
  bool is_loop_thread() const noexcept { return on_this_thread() == this; }

  // ---- other threads ------------------------------------------------------------------
  // A thread other than the loop's calls these only while it holds an entry of the
  // runtime_gate (foreign_entry), which keeps this object alive.

  /// Hands `j` to the loop and wakes it. Thread-safe, lock-free; throws only if the queue
  /// could not allocate.
  void post(loop_job j) {
    if (!jobs_.push(j)) throw std::bad_alloc();
    bell_->ring();
  }
  /// Runs `f(process&)` on the loop and returns its result (or rethrows its exception) to
  /// this thread, which blocks meanwhile. Throws ray::runtime_error if the runtime ends
  /// first. Not on the loop thread, which would wait for itself.
  template <class F>
  auto call_on_loop(F&& f) -> decltype(f(*this)) {
    using result = decltype(f(*this));
    struct call {
      explicit call(F& fn) noexcept : f(fn) {}
      F& f;
      std::conditional_t<std::is_void_v<result>, bool, std::optional<result>> value{};
      std::exception_ptr error;
      bool ended = false;
      completion done;
      static void run(void* ctx, process& p, bool live) noexcept {
        auto* c = static_cast<call*>(ctx);
        if (!live) {
          c->ended = true;
        } else {
          try {
            if constexpr (std::is_void_v<result>)
              c->f(p);
            else
              c->value.emplace(c->f(p));
          } catch (...) {
            c->error = std::current_exception();
          }
        }
        c->done.signal();
      }
    } c(f);
    post({&call::run, &c});
    c.done.wait();
    if (c.ended) throw ray::runtime_error("coray: the runtime ended before the call was made");
    if (c.error) std::rethrow_exception(c.error);
    if constexpr (!std::is_void_v<result>) return std::move(*c.value);
  }
  /// new_block from any thread: on another thread than the loop's the loop allocates (the
  /// allocator and spilling are the loop's) while this one waits.
  object_block* allocate_block(std::size_t size) {
    if (is_loop_thread()) return new_block(size);
    return call_on_loop([size](process& p) { return p.new_block(size); });
  }

  /// Loop thread: keeps `w` to fail if the runtime ends before `w` is done.
  void add_pending(foreign_pending& w) noexcept {
    w.prev = nullptr;
    w.next = pending_;
    if (pending_) pending_->prev = &w;
    pending_ = &w;
  }
  void remove_pending(foreign_pending& w) noexcept {
    (w.prev ? w.prev->next : pending_) = w.next;
    if (w.next) w.next->prev = w.prev;
    w.prev = w.next = nullptr;
  }

  /// Loop thread, once the process is built: from now on other threads may hand it jobs
  /// (`calls`: the driver's API; `releases_only`: dropped refs and actor handles) and ring
  /// `bell`, the doorbell this process sleeps on.
  void open_handoff(doorbell& bell, runtime_gate::phase what) noexcept {
    bell_ = &bell;
    runtime_gate::instance().open(this, what, epoch);
  }
  /// Loop thread, before the runtime is destroyed: refuses new jobs, fails those queued and
  /// the waits of other threads, and returns once no other thread is inside the runtime.
  void close_handoff() noexcept {
    auto& gate = runtime_gate::instance();
    gate.close();
    for (;;) {
      const bool nobody_inside = !gate.anyone_inside();
      while (pending_) {
        foreign_pending& w = *pending_;
        remove_pending(w);
        w.ended(*this);
      }
      while (jobs_.maybe_waiting()) jobs_.run_some(*this, false);
      if (nobody_inside) return;
      sched_yield();
    }
  }

  /// Serves the loop once without waiting (takes in replies, sends queued work) when called
  /// on the loop thread. A caller whose refs are already ready does not run the loop; this
  /// keeps the workers fed while it carries on (a loop of ray::wait for one of n refs).
  void serve_once() {
    if (is_loop_thread() && !polling_)
      poll_guarded();  // never inside a poll (a task body it started)
  }

  /// Queues a coroutine to resume on the loop.
  void schedule(std::coroutine_handle<> h) { ready_.push_back(h); }

  /// Runs the loop until `done()` or `deadline`; returns done(). A run inside another one
  /// is a call's body blocking (in ray::get, ray::wait, ...): blocking_wait says so.
  template <class Done>
  bool run_until(Done&& done, clock::time_point deadline = clock::time_point::max()) {
    if (done()) return true;
    struct depth_guard {
      process& p;
      bool counted;
      ~depth_guard() {
        --p.loop_depth_;
        if (counted) p.blocking_wait(-1);
      }
    } depth{*this, ++loop_depth_ > 1 && blocking_wait(+1)};
    backoff bo(loop_depth_ > 1);  // a call's body blocked in a wait (see backoff)
    const auto spin = std::chrono::microseconds(hdr->spin_us);
    while (!done()) {
      if (!ready_.empty()) {
        auto h = ready_.front();
        ready_.pop_front();
        const std::uint64_t outer = std::exchange(call_mark, 0);
        h.resume();
        call_mark = outer;
        continue;
      }
      if (jobs_.maybe_waiting() && jobs_.run_some(*this, true) != 0) {
        bo.reset();
        worked_ = true;
        continue;
      }
      if (poll_guarded()) {
        bo.reset();
        worked_ = true;
        continue;
      }
      if (!timers_.empty() || deadline != clock::time_point::max()) {
        const auto now = bo.round_time();  // the backoff's reading (see there)
        if (fire_timers(now)) continue;
        if (now >= deadline) return done();
      }
      if (bo.pause(spin)) {
        // Idle: what a tide of calls left kept goes back (recycled.hpp), at most once a
        // second, as a loop that sleeps between tides (an actor whose next call waits on
        // another's) would otherwise give back and take again every tide. malloc's free
        // memory goes back once a whole such second passed without work after some: a
        // process that works in bursts keeps its pages, an idle one keeps only what it holds.
        if (const auto now = bo.round_time(); now - trimmed_at_ >= std::chrono::seconds(1)) {
          trim_recycled();
          if (heap_used_ && !worked_) {
            ::malloc_trim(0);
            heap_used_ = false;
          }
          heap_used_ = heap_used_ || worked_;
          worked_ = false;
          trimmed_at_ = now;
        }
        auto limit = std::chrono::nanoseconds(std::chrono::seconds(1));
        auto next =
            std::min(deadline, timers_.empty() ? clock::time_point::max() : timers_.begin()->first);
        if (next != clock::time_point::max())
          limit = std::min(
              limit, std::chrono::duration_cast<std::chrono::nanoseconds>(next - clock::now()));
        if (limit.count() > 0) sleep(limit);
        bo.reset();
      }
    }
    return true;
  }

  /// Calls fn(ctx) on the loop at `when`. Returns an id for cancel_timer.
  std::uint64_t add_timer(clock::time_point when, void (*fn)(void*), void* ctx) {
    std::uint64_t id = ++timer_ids_;
    timers_.emplace(when, timer{id, fn, ctx});
    return id;
  }
  void cancel_timer(std::uint64_t id) noexcept {
    for (auto it = timers_.begin(); it != timers_.end(); ++it)
      if (it->second.id == id) {
        timers_.erase(it);
        return;
      }
  }

 protected:
  /// Handles what arrived; true if anything did.
  virtual bool poll() = 0;
  /// Sleeps until a message may have arrived, at most `limit`.
  virtual void sleep(std::chrono::nanoseconds limit) = 0;
  /// For sleep()'s check: another thread handed the loop a job (or is about to).
  bool jobs_waiting() const noexcept { return jobs_.maybe_waiting(); }

  /// Set by a worker while a plain call's body runs (the innermost on the stack): the id its
  /// first nested call gets or got, so that the calls it and its descendants made here are
  /// those with an id from this one up. 0 while the loop resumes a coroutine.
  std::uint64_t call_mark = 0;

 private:
  bool poll_guarded() {
    const bool was = polling_;
    polling_ = true;
    struct reset {
      bool& flag;
      bool was;
      ~reset() { flag = was; }
    } r{polling_, was};
    return poll();
  }
  struct timer {
    std::uint64_t id;
    void (*fn)(void*);
    void* ctx;
  };
  bool fire_timers(clock::time_point now) {
    bool fired = false;
    while (!timers_.empty() && timers_.begin()->first <= now) {
      timer t = timers_.begin()->second;
      timers_.erase(timers_.begin());
      t.fn(t.ctx);
      fired = true;
    }
    return fired;
  }
  job_queue jobs_;  // from other threads
  doorbell* bell_ = nullptr;
  foreign_pending* pending_ = nullptr;  // other threads' waits the loop holds
  std::deque<std::coroutine_handle<>> ready_;
  std::multimap<clock::time_point, timer> timers_;
  std::uint64_t timer_ids_ = 0;
  bool polling_ = false;            // inside poll() on the loop thread
  std::uint32_t loop_depth_ = 0;    // run_until calls on the stack
  clock::time_point trimmed_at_{};  // when an idle loop last trimmed the recycled objects
  bool worked_ = false;             // the loop found work since trimmed_at_
  bool heap_used_ = false;          // ... before it, and malloc was not trimmed since
};

}  // namespace detail
CORAY_END_NAMESPACE

// What a process does with its objects' states (release, restore, make, the checks of
// refs): they need the complete process, and every user of a state_ptr needs them.
#include <coray/detail/runtime/process_states.hpp>
