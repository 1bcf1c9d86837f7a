#pragma once
/// How threads other than the loop's reach a process's runtime: they hand small jobs to the
/// loop through a lock-free queue and ring its doorbell; the loop runs the jobs between its
/// other work. A gate, one per OS process, says whether a runtime takes such jobs and keeps
/// it alive while a thread is inside.

#include <concurrentqueue.h>

#include <atomic>
#include <chrono>
#include <coray/detail/shm/futex.hpp>
#include <coray/errors.hpp>
#include <cstddef>
#include <cstdint>
#include <string>

CORAY_BEGIN_NAMESPACE
namespace detail {

class process;

/// Work handed to the loop. `run(ctx, p, live)` runs once, on the loop thread: with `live`
/// true to do the work, or false while the runtime ends, to fail it (waking whoever waits)
/// and free what it holds.
struct loop_job {
  void (*run)(void* ctx, process& p, bool live) noexcept;
  void* ctx;
};

/// The loop's inbox of jobs. Any thread pushes; only the loop drains. Lock-free.
class job_queue {
 public:
  /// Thread-safe. Counts the job before queueing it, so a loop that reads zero has nothing
  /// to take and nothing on its way (the doorbell's Dekker pairs with this seq_cst add).
  /// Allocates a block of the queue now and then; false if that failed.
  bool push(loop_job j) noexcept {
    waiting_.fetch_add(1, std::memory_order_seq_cst);
    if (q_.enqueue(j)) return true;
    waiting_.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
  /// Whether a job may be queued or on its way: one relaxed load, the loop's per-turn cost.
  bool maybe_waiting() const noexcept { return waiting_.load(std::memory_order_relaxed) != 0; }
  /// Loop thread only: takes up to 64 jobs and runs each with `live`; returns how many.
  std::size_t run_some(process& p, bool live) noexcept {
    loop_job batch[64];
    const std::size_t n = q_.try_dequeue_bulk(consumer_, batch, 64);
    if (n == 0) return 0;
    waiting_.fetch_sub(static_cast<std::int64_t>(n), std::memory_order_relaxed);
    for (std::size_t i = 0; i < n; ++i) batch[i].run(batch[i].ctx, p, live);
    return n;
  }

 private:
  moodycamel::ConcurrentQueue<loop_job> q_{0};
  moodycamel::ConsumerToken consumer_{q_};
  std::atomic<std::int64_t> waiting_{0};
};

/// Wakes one thread waiting for the loop. The waker never touches it after signal() has
/// stored, so the waiter may free it as soon as wait() returns.
class completion {
 public:
  void signal() noexcept {
    done_.store(1, std::memory_order_release);
    futex_wake_all(&done_);  // only the address: harmless if the waiter has already gone
  }
  void wait() noexcept {
    while (done_.load(std::memory_order_acquire) == 0)
      futex_wait(&done_, 0, std::chrono::nanoseconds(-1));
  }

 private:
  std::atomic<std::uint32_t> done_{0};
};

/// True on a thread that runs a threaded actor's plain methods (method_threads.hpp): the
/// runtime refuses it, saying why (runtime_gate::refusal).
inline bool& on_method_thread() noexcept {
  thread_local bool yes = false;
  return yes;
}

/// Whether this OS process's runtime takes work from threads other than its loop's. The
/// driver opens it for calls; a worker opens it for releases of refs only (a task's own
/// threads may drop refs, not make calls); ending the runtime closes it, and the runtime is
/// destroyed only after every thread inside has left. Constant-initialised, never destroyed.
class runtime_gate {
 public:
  enum class phase : std::uint8_t { none, calls, releases_only, ended };

  static runtime_gate& instance() noexcept {
    static runtime_gate g;
    return g;
  }

  /// The runtime taking jobs, counted as entered (leave() when done), or nullptr.
  /// Thread-safe; never blocks.
  process* try_enter() noexcept {
    users_.fetch_add(1, std::memory_order_seq_cst);
    process* p = open_.load(std::memory_order_seq_cst);
    if (!p) leave();
    return p;
  }
  void leave() noexcept { users_.fetch_sub(1, std::memory_order_release); }
  phase current_phase() const noexcept { return phase_.load(std::memory_order_acquire); }
  /// A driver's runtime runs and takes calls from any thread.
  bool accepts_calls() const noexcept { return current_phase() == phase::calls; }
  /// The epoch of the runtime open in this process, 0 when none: a ref whose state has
  /// another one belongs to a runtime that has ended. Any thread.
  std::uint32_t live_epoch() const noexcept { return epoch_.load(std::memory_order_acquire); }

  /// The loop thread, once its process (of runtime `epoch`) is built.
  void open(process* p, phase ph, std::uint32_t epoch) noexcept {
    epoch_.store(epoch, std::memory_order_release);
    phase_.store(ph, std::memory_order_release);
    open_.store(p, std::memory_order_seq_cst);
  }
  /// The loop thread: no thread enters from now on. (Threads inside are waited for by the
  /// caller, which keeps failing their jobs meanwhile.)
  void close() noexcept {
    open_.store(nullptr, std::memory_order_seq_cst);
    phase_.store(phase::ended, std::memory_order_release);
    epoch_.store(0, std::memory_order_release);
  }
  bool anyone_inside() const noexcept { return users_.load(std::memory_order_seq_cst) != 0; }

  /// Why a thread other than the loop's cannot use the runtime now, for `what` (an API name).
  std::string refusal(const char* what) const {
    if (on_method_thread())
      return std::string(what) +
             ": this thread runs a plain method of a threaded actor (max_concurrency > 1), "
             "which may not use the runtime (it may drop refs and handles): make the method a "
             "coroutine (ray::async) to make calls, puts or gets from it";
    switch (current_phase()) {
      case phase::none:
        return std::string(what) + ": no runtime is running (construct ray::runtime first)";
      case phase::releases_only:
        return std::string(what) +
               ": in a task or actor process only the thread that runs the task may use the "
               "runtime";
      case phase::ended:
        return std::string(what) + ": the runtime has ended";
      case phase::calls:
        break;
    }
    return std::string(what) +
           ": must be called on the thread that runs the runtime (other threads may submit "
           "tasks and actor calls, spawn, put, get, wait, kill and cancel)";
  }

 private:
  constexpr runtime_gate() noexcept = default;
  std::atomic<process*> open_{nullptr};
  std::atomic<std::uint32_t> users_{0};
  std::atomic<phase> phase_{phase::none};
  std::atomic<std::uint32_t> epoch_{0};
};

/// Something a thread other than the loop's waits for that the loop holds on to (a wait
/// registered on objects, a coroutine being run): ended() fails it if the runtime ends first.
/// Loop thread only.
struct foreign_pending {
  foreign_pending* prev = nullptr;
  foreign_pending* next = nullptr;
  virtual void ended(process& p) noexcept = 0;

 protected:
  ~foreign_pending() = default;
};

}  // namespace detail
CORAY_END_NAMESPACE
