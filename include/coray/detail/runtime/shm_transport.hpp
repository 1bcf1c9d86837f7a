#pragma once
/// The transport of one machine: each process slot has two mailboxes in the segment (inbox,
/// driver -> process; outbox, process -> driver) and a doorbell; the supervisor starts and
/// reaps the processes and reports deaths through the segment's header.

#include <coray/detail/runtime/process.hpp>
#include <coray/detail/runtime/supervisor_link.hpp>
#include <coray/detail/runtime/system.hpp>
#include <coray/detail/runtime/transport.hpp>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

class shm_transport final : public transport {
 public:
  static constexpr std::size_t mailbox_capacity = 1024;

  /// Bytes of segment the control header and the task workers' mailboxes take.
  static std::size_t control_bytes(std::uint32_t slots, std::uint32_t workers) {
    return shared_header::bytes_for(slots) +
           2 * workers * (mailbox::bytes_for(mailbox_capacity) + 64);
  }

  /// Lays out the control header for `slots` slots in `seg`.
  shm_transport(segment& seg, std::uint32_t slots, std::uint32_t spin_us,
                std::size_t inline_threshold)
      : seg_(seg) {
    hdr_ = new (seg.allocate_aligned(shared_header::bytes_for(slots), 64)) shared_header{};
    seg.header_root().header_offset = seg.offset_of(hdr_);
    hdr_->driver_pid = getpid();
    hdr_->slots = slots;
    hdr_->spin_us = spin_us;
    hdr_->inline_threshold = inline_threshold;
    hdr_->mailbox_capacity = mailbox_capacity;
    views_.resize(slots);
    signals_.resize(slots);
    for (std::uint32_t i = 0; i < slots; ++i) {
      worker_shared* s = views_[i].shared = new (&hdr_->worker(i)) worker_shared{};
      signals_[i] = {&s->state, &s->suspended, &s->blocked_mark};
    }
  }

  shared_header* header() const noexcept { return hdr_; }

  /// Forks the supervisor (before any process is started).
  void start_supervisor(start_method_id method, std::uint32_t epoch, std::vector<std::string> argv,
                        output_options output) {
    link_.start(seg_, hdr_, method, epoch, argv, std::move(output));
  }
  /// The tail of process `pid`'s stdout and stderr (the supervisor keeps them); nullopt if
  /// the supervisor does not answer.
  std::optional<std::pair<std::string, std::string>> output_of(int pid) {
    return link_.output_of(pid);
  }
  /// Ends the supervisor and with it every process (teardown).
  void end() noexcept { link_.end(); }

  void start(std::uint32_t slot) override {
    open_mailboxes(views_[slot]);
    if (std::find(active_.begin(), active_.end(), slot) == active_.end()) active_.push_back(slot);
    worker_shared& s = hdr_->worker(slot);
    s.state.store(static_cast<std::uint32_t>(slot_state::starting), std::memory_order_release);
    // No supervisor, no process: the slot stays dead and its calls fail.
    if (!link_.command({supervisor_command::start, slot}))
      s.state.store(static_cast<std::uint32_t>(slot_state::dead), std::memory_order_release);
  }
  void start_as(std::uint32_t slot, std::uint32_t how) override {
    hdr_->worker(slot).start_as.store(how, std::memory_order_relaxed);
  }
  void close(std::uint32_t slot) override {
    view& v = views_[slot];
    worker_shared& s = *v.shared;
    if (s.inbox) seg_.deallocate(seg_.at(s.inbox));
    if (s.outbox) seg_.deallocate(seg_.at(s.outbox));
    s.inbox = s.outbox = 0;
    v.inbox = v.outbox = nullptr;
    active_.erase(std::remove(active_.begin(), active_.end(), slot), active_.end());
  }
  void kill(std::uint32_t slot) override { link_.command({supervisor_command::kill, slot}); }
  int pid(std::uint32_t slot) const override {
    return views_[slot].shared->pid.load(std::memory_order_acquire);
  }
  bool can_start() const override { return link_.running(); }

  void await_exit(std::span<const std::uint32_t> slots, std::chrono::milliseconds grace) override {
    const auto deadline = clock::now() + grace;
    auto all_gone = [&] {
      for (std::uint32_t s : slots)
        if (alive(s)) return false;
      return true;
    };
    while (!all_gone() && clock::now() < deadline) {
      const std::uint32_t seen = hdr_->deaths.load(std::memory_order_acquire);
      hdr_->driver_bell.sleep([&] { return hdr_->deaths.load(std::memory_order_acquire) != seen; },
                              std::chrono::milliseconds(10));
    }
  }

  std::size_t max_message_bytes() const override {
    return mailbox_capacity / 2 * mailbox_slot::payload_bytes;
  }
  bool send(std::uint32_t slot, msg_kind kind, std::size_t size, fill_ref fill) override {
    view& v = views_[slot];
    if (try_send(*v.inbox, v.shared->bell, kind, size, fill)) return true;
    v.blocked = mailbox::slots_for(size);
    return false;
  }
  bool send_carried(std::uint32_t slot, msg_kind kind, object_block* carrier) override {
    view& v = views_[slot];
    if (try_send_block(seg_, *v.inbox, v.shared->bell, kind, carrier)) return true;
    v.blocked = 1;
    return false;
  }

  bool poll(transport_events& to) override {
    bool progress = false;
    for (std::size_t i = 0; i < active_.size(); ++i) progress |= drain(active_[i], 64, to);
    if (hdr_->deaths.load(std::memory_order_acquire) != seen_deaths_) {
      report_deaths(to);
      progress = true;
    }
    return progress;
  }

  void sleep(std::chrono::nanoseconds limit, transport_events& to, wake_check also) override {
    hdr_->driver_bell.sleep(
        [this, also] {
          if (also() || hdr_->deaths.load(std::memory_order_acquire) != seen_deaths_) return true;
          for (std::uint32_t i : active_)
            if (!views_[i].outbox->empty()) return true;
          // Waiting for room in an inbox: the process rings once it frees slots (Dekker with
          // worker::poll: flag set, fence, room read here; slots freed, fence, flag read there).
          for (std::uint32_t i : active_) {
            view& w = views_[i];
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
    check_supervisor(to);
  }

 private:
  struct view {
    worker_shared* shared = nullptr;
    mailbox* inbox = nullptr;
    mailbox* outbox = nullptr;
    std::uint32_t generation = 0;
    std::size_t blocked = 0;  // slots a message to it needed and did not find
  };

  void open_mailboxes(view& v) {
    const std::size_t bytes = mailbox::bytes_for(mailbox_capacity);
    worker_shared& s = *v.shared;
    if (!s.inbox) {  // both or neither: a slot refused for want of room keeps no half
      void* inbox = seg_.allocate_aligned(bytes, 64);
      try {
        s.outbox = seg_.offset_of(seg_.allocate_aligned(bytes, 64));
      } catch (...) {
        seg_.deallocate(inbox);
        throw;
      }
      s.inbox = seg_.offset_of(inbox);
    }
    v.inbox = mailbox::create(seg_.at(s.inbox), mailbox_capacity);
    v.outbox = mailbox::create(seg_.at(s.outbox), mailbox_capacity);
    v.blocked = 0;
    ++v.generation;
    s.tasks_started.store(0, std::memory_order_relaxed);
    s.suspended.store(0, std::memory_order_relaxed);
    s.blocked_mark.store(0, std::memory_order_relaxed);
    s.pid.store(0, std::memory_order_relaxed);
    s.served.store(0, std::memory_order_relaxed);
    s.generation.store(v.generation, std::memory_order_relaxed);
  }

  bool drain(std::uint32_t slot, int budget, transport_events& to) {
    view& w = views_[slot];
    bool progress = false;
    message_view m;
    while (budget-- > 0 && w.outbox && peek_message(seg_, *w.outbox, gathered_, m)) {
      to.on_message(slot, m.kind, m.payload, m.block);
      if (!w.outbox) break;  // the slot was closed while handling
      w.outbox->pop(m.slots);
      progress = true;
    }
    return progress;
  }

  void report_deaths(transport_events& to) {
    seen_deaths_ = hdr_->deaths.load(std::memory_order_acquire);
    std::vector<std::uint32_t> dead;
    for (std::uint32_t i : active_)
      if (!alive(i)) dead.push_back(i);
    for (std::uint32_t i : dead) {
      drain(i, 1 << 30, to);  // replies it managed to send count
      const worker_shared& s = *views_[i].shared;
      process_death how{s.pid.load(std::memory_order_relaxed),
                        s.wait_status.load(std::memory_order_relaxed),
                        s.tasks_started.load(std::memory_order_acquire),
                        s.served.load(std::memory_order_acquire) != 0};
      views_[i].blocked = 0;
      to.on_death(i, how);
    }
  }

  /// The supervisor died (killed from outside): its processes died with it and none can be
  /// started, so the orchestrator fails every call rather than letting it wait forever.
  void check_supervisor(transport_events& to) {
    int st;
    if (!link_.reap_if_gone(st)) return;
    for (std::uint32_t i : active_) {
      views_[i].shared->wait_status.store(st, std::memory_order_relaxed);
      views_[i].shared->state.store(static_cast<std::uint32_t>(slot_state::dead),
                                    std::memory_order_release);
    }
    report_deaths(to);
    to.on_lost("coray: the supervisor process " + describe_exit(st) +
               ", taking the workers with it");
  }

  segment& seg_;
  shared_header* hdr_ = nullptr;
  std::vector<view> views_;            // one per slot: task workers, then actors
  std::vector<std::uint32_t> active_;  // slots with mailboxes (a process, or one starting)
  std::vector<std::byte> gathered_;    // multi-slot messages, read contiguously
  std::uint32_t seen_deaths_ = 0;
  supervisor_link link_;
};

}  // namespace detail
CORAY_END_NAMESPACE
