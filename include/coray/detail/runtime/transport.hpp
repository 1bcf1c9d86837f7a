#pragma once
/// The seam between the orchestrator and the processes it schedules onto: "start a process
/// in this slot, send it this message, tell me what it sent and when it died". The
/// orchestrator (scheduler.hpp) knows slots, never mailboxes, doorbells or the supervisor;
/// `shm_transport` (one machine: mailboxes in the segment, processes from the supervisor)
/// is one implementation, the unit tests' fake is another, and processes on other machines
/// plug in here without touching scheduling or ownership.
///
/// All of it runs on the driver's loop thread.

#include <atomic>
#include <chrono>
#include <coray/detail/runtime/wire.hpp>
#include <cstdint>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// A non-owning reference to `void(std::byte*)` callable: how a message's writer is passed
/// through a virtual call without allocating.
class fill_ref {
 public:
  template <class F>
  requires(!std::is_same_v<std::remove_cvref_t<F>, fill_ref>) fill_ref(F&& f)
  noexcept  // NOLINT: implicit, like std::function_ref
      : ctx_(const_cast<void*>(static_cast<const void*>(&f))),
        fn_([](void* c, std::byte* out) { (*static_cast<std::remove_reference_t<F>*>(c))(out); }) {}
  void operator()(std::byte* out) const { fn_(ctx_, out); }

 private:
  void* ctx_;
  void (*fn_)(void*, std::byte*);
};

/// A non-owning `bool()` check, for what else should end a transport's sleep (work handed to
/// the loop by another thread).
struct wake_check {
  bool (*fn)(const void*) = nullptr;
  const void* ctx = nullptr;
  bool operator()() const { return fn && fn(ctx); }
};

/// How a process ended, as the transport saw it.
struct process_death {
  int pid = 0;
  int wait_status = 0;
  /// Calls the process had started (taken from its inbox) when it died: the ones sent after
  /// these never ran.
  std::uint64_t calls_started = 0;
  /// Whether it reached its loop: false for one that died starting (a program that exits
  /// before its runtime under spawn, a fork refused under `ulimit -u`).
  bool served = true;
};

/// What a transport tells the orchestrator. Called from inside transport::poll.
class transport_events {
 public:
  /// A message from the process in `slot`; `payload` is valid during the call. `carried` is
  /// the store block a long message came in (its sender's reference passes to the receiver),
  /// or null.
  virtual void on_message(std::uint32_t slot, msg_kind kind, std::span<const std::byte> payload,
                          object_block* carried) = 0;
  /// The process in `slot` died. Every message it sent before dying was delivered first.
  virtual void on_death(std::uint32_t slot, const process_death& how) = 0;
  /// No process can be started any more (the supervisor is gone); `why` says so in words.
  /// The deaths of the processes it took along are reported first.
  virtual void on_lost(const std::string& why) = 0;

 protected:
  ~transport_events() = default;
};

/// What a process publishes for the scheduler, which reads it on every dispatch: its
/// slot_state (dead once it ended), the coroutines it holds suspended (calls that do not
/// occupy it) and its blocked mark. A transport points each slot at where these live (for
/// local processes, the slot's worker_shared in the segment; one for remote processes keeps
/// local copies current), so reading them is a load, not a virtual call.
struct slot_signals {
  const std::atomic<std::uint32_t>* state = nullptr;
  const std::atomic<std::uint32_t>* suspended = nullptr;
  const std::atomic<std::uint64_t>* blocked_mark = nullptr;
};

class transport {
 public:
  virtual ~transport() = default;

  // ---- what processes publish -----------------------------------------------------------
  /// Where the slot's process publishes its signals (a transport built over another reads
  /// them through this).
  const slot_signals& signals(std::uint32_t slot) const noexcept { return signals_[slot]; }
  /// False once the slot's process is known dead (calls must not be sent to it).
  bool alive(std::uint32_t slot) const noexcept {
    return signals_[slot].state->load(std::memory_order_acquire) !=
           static_cast<std::uint32_t>(slot_state::dead);
  }
  /// Coroutines the slot's process holds suspended: calls that do not occupy it.
  std::uint32_t suspended(std::uint32_t slot) const noexcept {
    return signals_[slot].suspended->load(std::memory_order_relaxed);
  }
  struct occupancy {
    std::uint32_t suspended;
    /// 0, or while a task body of the slot's process is blocked in a blocking ray::get, the
    /// first id of the calls it made since (worker_shared::blocked_mark): it then takes only
    /// calls it made itself with ids from there up.
    std::uint64_t blocked_mark;
  };
  /// suspended() and blocked_mark() read together, so that a task entering or leaving a
  /// blocking wait is never seen counted as suspended without its mark (its worker would
  /// look free for any call): a process sets the mark before it counts the call suspended
  /// and clears it after, and the mark is read before and after the count.
  occupancy occupancy_of(std::uint32_t slot) const noexcept {
    const slot_signals& s = signals_[slot];
    const std::uint64_t before = s.blocked_mark->load(std::memory_order_acquire);
    const std::uint32_t n = s.suspended->load(std::memory_order_acquire);
    const std::uint64_t after = s.blocked_mark->load(std::memory_order_acquire);
    return {n, after != 0 ? after : before};
  }

  // ---- where processes run ---------------------------------------------------------------
  /// The machines a transport reaches (a cluster's nodes; one outside a cluster), numbered
  /// from 0, this one; and the node the slot's processes run on.
  virtual std::uint32_t node_count() const { return 1; }
  virtual std::uint32_t node_of(std::uint32_t /*slot*/) const { return 0; }
  /// False once node `n` can run no process (its supervisor is gone).
  virtual bool node_alive(std::uint32_t n) const { return n != 0 || can_start(); }
  /// The nodes other than this one that keep a copy of store block `b` (bit n - 1 for node
  /// n): where a call reading it finds its bytes already. None outside a cluster.
  virtual std::uint64_t copy_holders(const object_block* /*b*/) const { return 0; }
  /// Another node's process in `slot`: its CPU seconds and resident bytes as its node last
  /// reported them (each second); false for this machine's (read /proc) or none yet.
  virtual bool usage_of(std::uint32_t /*slot*/, double& /*cpu_seconds*/,
                        std::uint64_t& /*rss_bytes*/) const {
    return false;
  }

  // ---- processes ----------------------------------------------------------------------
  /// Starts a process in `slot` with empty mailboxes (a first one, or a replacement).
  virtual void start(std::uint32_t slot) = 0;
  /// How the slot's processes are started from now on: 0 by the runtime's start method, else
  /// 1 + a start_method_id. A transport with one way of starting ignores it.
  virtual void start_as(std::uint32_t /*slot*/, std::uint32_t /*how*/) {}
  /// The slot has no process any more and will have none until start(): frees its mailboxes.
  virtual void close(std::uint32_t slot) = 0;
  /// Kills the slot's process (SIGKILL); its death is reported as any other.
  virtual void kill(std::uint32_t slot) = 0;
  /// The slot's process id; 0 while it starts.
  virtual int pid(std::uint32_t slot) const = 0;
  /// False once no process can be started (the supervisor is gone).
  virtual bool can_start() const = 0;
  /// Asks the slots' processes' deaths to be awaited for up to `grace` (at teardown: idle
  /// actors told to shut down run their destructors). Reports nothing.
  virtual void await_exit(std::span<const std::uint32_t> slots,
                          std::chrono::milliseconds grace) = 0;

  // ---- messages -----------------------------------------------------------------------
  /// Largest message send() takes without a carrier block.
  virtual std::size_t max_message_bytes() const = 0;
  /// Sends `size` bytes written by `fill` to the slot's process. False when its inbox has no
  /// room now: the transport remembers to wake the driver when room frees.
  virtual bool send(std::uint32_t slot, msg_kind kind, std::size_t size, fill_ref fill) = 0;
  /// Sends a message whose payload lies in `carrier` (longer than max_message_bytes()). The
  /// sender keeps its reference to the block until the message is no longer needed.
  virtual bool send_carried(std::uint32_t slot, msg_kind kind, object_block* carrier) = 0;

  // ---- the loop -----------------------------------------------------------------------
  /// Delivers what arrived (messages, then deaths) to `to`; true if anything did.
  virtual bool poll(transport_events& to) = 0;
  /// Sleeps until something may have arrived or `also()` holds (checked after announcing
  /// the sleep, so whoever makes it hold and rings the driver's doorbell is never missed), at
  /// most `limit`; reports a lost supervisor.
  virtual void sleep(std::chrono::nanoseconds limit, transport_events& to,
                     wake_check also = {}) = 0;

 protected:
  /// One per slot, each pointing at memory that outlives the transport's use; set by the
  /// implementation's constructor.
  std::vector<slot_signals> signals_;
};

}  // namespace detail
CORAY_END_NAMESPACE
