#pragma once
/// A cluster's node (every rank but 0): its own segment, supervisor, task workers and actor
/// slots (numbered after the task workers), run for rank 0's orchestrator. The agent schedules
/// nothing: it starts, stops and kills its slots' processes as rank 0 says, puts rank 0's messages
/// in their inboxes and sends back what they send, each block a message names copied between the
/// two segments.
///
/// Every block a worker here holds stands for one of rank 0's: a copy of it made when a
/// message brought its bytes, or a block granted to the worker (the request goes to rank 0,
/// which allocates its block; the agent allocates the copy the worker writes, and ships its
/// bytes the first time a message names it). References follow the worker's: a reference it
/// is granted is granted here too (this node's block ledger), one it passes or lets go is
/// dropped here and passed or let go at rank 0. A call's borrowed blocks (its arguments, its
/// carrier) live until the call's reply.
///
/// The node keeps a copy of each large block it is sent with a stamp, and of each its workers
/// wrote (copies_, by rank 0's offset and stamp): rank 0 names one it knows the node holds
/// without sending its bytes again. Rank 0 decides which it keeps, within a quarter of this
/// node's store: a drop frame, sent before any message that needs the room, lets copies go.

#include <fmt/format.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <coray/detail/cluster/channel.hpp>
#include <coray/detail/cluster/frame.hpp>
#include <coray/detail/runtime/block_ledger.hpp>
#include <coray/detail/runtime/driver.hpp>
#include <coray/detail/runtime/proc_sample.hpp>
#include <coray/detail/runtime/shm_transport.hpp>
#include <coray/detail/shm/segment.hpp>
#include <cstdint>
#include <cstring>
#include <deque>
#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail::cluster {

class node_agent final : public transport_events {
 public:
  node_agent(driver_config cfg, channel& link)
      : link_(link), workers_(cfg.num_workers), actors_(cfg.max_actors) {
    const std::uint32_t slots = workers_ + actors_;
    try {
      seg_.create(segment::root_bytes + cfg.object_store_bytes +
                  shm_transport::control_bytes(slots, workers_) + (1 << 20));
    } catch (const ray::runtime_error& e) {
      throw ray::runtime_error(fmt::format("{}, asking for a node's shared segment", e.what()));
    }
    local_.emplace(seg_, slots, cfg.spin_us, cfg.inline_threshold);
    local_->header()->set_gpu_ids(cfg.gpu_ids);
    ledger_.emplace(seg_, slots);
    slots_.resize(slots);
    local_->start_supervisor(cfg.method, /*epoch=*/1, std::move(cfg.argv), std::move(cfg.output));
  }

  ~node_agent() {
    // Actors told to shut down (idle ones, at rank 0's teardown) run their destructors first,
    // as on one machine; the supervisor then ends every process, then itself.
    std::vector<std::uint32_t> stopping;
    for (std::uint32_t j = workers_; j < slots_.size(); ++j)
      if (slots_[j].open && slots_[j].shutdown_sent) stopping.push_back(j);
    if (!stopping.empty()) local_->await_exit(stopping, std::chrono::milliseconds(500));
    for (std::uint32_t j = 0; j < slots_.size(); ++j) forget(j);
    for (auto& [off, c] : copies_) seg_.release(c.block);
    copies_.clear();
    local_->end();
  }

  std::uint32_t workers() const noexcept { return workers_; }
  std::size_t store_bytes() const noexcept { return seg_.capacity(); }
  std::uint32_t actors() const noexcept { return actors_; }

  /// Serves rank 0 until it says to stop.
  void serve() {
    link_.set_bell(&local_->header()->driver_bell);
    // A large block rank 0 sends lands in a new block here (receive() takes it from there);
    // no room, and the record says so.
    link_.set_lander([this](int, const block_record& r) {
      object_block* b = seg_.new_object(static_cast<std::size_t>(r.size));
      return landing{b->data(), seg_.offset_of(b)};
    });
    link_.begin();
    auto idle_since = std::chrono::steady_clock::now();
    while (!done_) {
      bool progress = local_->poll(*this);
      progress |= take_frames();
      progress |= flush_pending();
      progress |= publish_signals();
      publish_usage();
      if (progress) {
        idle_since = std::chrono::steady_clock::now();
        continue;
      }
      // Spin a little (a call's reply follows its call closely), then sleep until rung: by a
      // frame's arrival, a worker's message or death, or room in a full inbox.
      const auto idle = std::chrono::steady_clock::now() - idle_since;
      if (idle < std::chrono::microseconds(50)) continue;
      if (idle < std::chrono::milliseconds(1)) {
        sched_yield();
        continue;
      }
      local_->sleep(
          std::chrono::milliseconds(100), *this,
          {[](const void* p) { return static_cast<const channel*>(p)->has_frames(); }, &link_});
    }
  }

  // ---- what the workers send (transport_events) ---------------------------------------
  void on_message(std::uint32_t j, msg_kind kind, std::span<const std::byte> payload,
                  object_block* carried) override {
    frame_writer w(frame_type::message, j,
                   static_cast<std::uint32_t>(kind) | (carried ? in_block_flag : 0));
    w.payload(payload);
    std::vector<std::byte>& p = w.payload();
    // References the message passes or lets go, dropped once the frame holds the bytes.
    dropped_.clear();
    kept_.clear();
    block_walk(kind, p, [&](std::size_t at, block_use use) {
      std::uint64_t off;
      std::memcpy(&off, p.data() + at, sizeof off);
      const auto it = rank0_of_.find(off);
      const std::uint64_t theirs = it == rank0_of_.end() ? 0 : it->second;
      std::memcpy(p.data() + at, &theirs, sizeof theirs);
      if (!theirs) return;  // not a block of this worker's: rank 0 refuses the message
      auto* b = seg_.at<object_block>(off);
      if (unsynced_.erase(off)) {
        const auto stamp = grant_stamps_.find(off);
        const std::uint32_t s = stamp == grant_stamps_.end() ? 0 : stamp->second;
        if (stamp != grant_stamps_.end()) grant_stamps_.erase(stamp);
        if (use != block_use::released) {
          if (b->size >= apart_bytes) {
            seg_.add_ref(b);  // the frame's, until its bytes are sent
            w.block_apart(at, theirs, use, b, s);
            kept_.push_back({theirs, s, b});  // kept once the message is on its way
          } else {
            w.block(at, theirs, use, b->size, b->data());
          }
        }
      }
      if (use == block_use::passed || use == block_use::released) dropped_.push_back(b);
    });
    if (carried) {
      const std::uint64_t off = seg_.offset_of(carried);
      const auto it = rank0_of_.find(off);
      if (it == rank0_of_.end()) {  // a carrier rank 0 never granted: dropped
        for (object_block* b : w.apart()) seg_.release(b);
        return;
      }
      w.head().a = it->second;
      unsynced_.erase(off);
      dropped_.push_back(carried);
    }
    link_.post(0, w.finish(), std::move(w.apart()), &seg_);
    for (const auto& k : kept_) keep_copy(k.theirs, k.stamp, k.block);
    for (object_block* b : dropped_)
      if (ledger_->take(j, b)) seg_.release(b);
    if (kind == msg_kind::task_done && payload.size() >= sizeof(result_header)) {
      result_header h;
      std::memcpy(&h, payload.data(), sizeof h);
      end_call(j, h.id);
    }
  }

  void on_death(std::uint32_t j, const process_death& how) override {
    // The local transport reports a dead slot again at each later death until the slot is
    // started again, which here waits for rank 0's word: one death per process goes out.
    if (std::exchange(slots_[j].death_sent, true)) return;
    forget(j);
    frame_writer w(frame_type::death, j);
    w.head().a = static_cast<std::uint64_t>(how.pid);
    w.head().b = static_cast<std::uint64_t>(static_cast<std::uint32_t>(how.wait_status));
    w.head().c = how.calls_started;
    w.head().d = how.served ? 1 : 0;
    link_.post(0, w.finish());
  }

  void on_lost(const std::string& why) override {
    frame_writer w(frame_type::lost);
    w.payload({reinterpret_cast<const std::byte*>(why.data()), why.size()});
    link_.post(0, w.finish());
  }

 private:
  struct pending_message {
    msg_kind kind;
    std::vector<std::byte> bytes;     // the message, or nothing when carried
    object_block* carrier = nullptr;  // its block, when carried
  };
  struct slot {
    bool open = false;
    bool death_sent = false;              // its process's death went to rank 0
    bool shutdown_sent = false;           // told to end after its calls
    std::deque<pending_message> pending;  // what its inbox had no room for, in order
    /// Blocks its calls borrow, by call id: freed when the call's reply comes.
    std::vector<std::pair<std::uint64_t, object_block*>> borrowed;
    std::uint64_t last[4] = {~0ull, ~0ull, ~0ull, ~0ull};  // the signals last sent
  };

  /// Drops what the agent holds for slot `j`'s process (it died, or the node ends).
  void forget(std::uint32_t j) {
    slot& s = slots_[j];
    for (auto& [id, b] : s.borrowed) seg_.release(b);
    s.borrowed.clear();
    for (auto& m : s.pending)
      if (m.carrier) seg_.release(m.carrier);
    s.pending.clear();
    ledger_->release_all(j);
  }

  void end_call(std::uint32_t j, std::uint64_t id) {
    auto& v = slots_[j].borrowed;
    for (std::size_t i = 0; i < v.size();) {
      if (v[i].first == id) {
        seg_.release(v[i].second);
        v[i] = v.back();
        v.pop_back();
      } else {
        ++i;
      }
    }
  }

  bool take_frames() {
    bool progress = false;
    int peer;
    for (int budget = 256; budget > 0 && link_.take(peer, frame_); --budget) {
      progress = true;
      frame_view v(frame_);
      const frame_head& h = v.head;
      if (h.type == frame_type::shutdown) {
        done_ = true;
        return true;
      }
      if (h.slot >= slots_.size()) {
        drop_landed(v);
        continue;
      }
      slot& s = slots_[h.slot];
      switch (h.type) {
        case frame_type::start:
          forget(h.slot);
          s.open = true;
          s.death_sent = false;
          s.shutdown_sent = false;
          used_ = std::max(used_, h.slot + 1);
          std::fill(std::begin(s.last), std::end(s.last), ~0ull);
          local_->header()->worker(h.slot).id_slot.store(static_cast<std::uint32_t>(h.a) + 1,
                                                         std::memory_order_relaxed);
          local_->start(h.slot);
          break;
        case frame_type::start_as:
          local_->start_as(h.slot, static_cast<std::uint32_t>(h.a));
          break;
        case frame_type::close:
          forget(h.slot);
          s.open = false;
          local_->close(h.slot);
          break;
        case frame_type::kill:
          local_->kill(h.slot);
          break;
        case frame_type::message:
          if (s.open)
            receive(h.slot, v);
          else
            drop_landed(v);
          break;
        case frame_type::drop:
          drop_copies(v.payload);
          break;
        default:
          break;
      }
    }
    return progress;
  }

  /// A message for slot `j` from rank 0: its blocks copied here, its offsets rewritten.
  void receive(std::uint32_t j, const frame_view& v) {
    const auto kind = static_cast<msg_kind>(v.head.kind & ~in_block_flag);
    pending_message m{kind, {v.payload.begin(), v.payload.end()}, nullptr};
    std::uint64_t call = 0;
    if ((kind == msg_kind::run_task || kind == msg_kind::construct) &&
        m.bytes.size() >= sizeof call)
      std::memcpy(&call, m.bytes.data(), sizeof call);
    slot& s = slots_[j];
    for (const auto& b : v.blocks) {
      const block_record& r = b.record;
      if (r.bytes == block_bytes::landed && !r.landed)
        throw ray::runtime_error(fmt::format(
            "coray: this node's object store has no room for a block of {} bytes from rank 0",
            r.size));
      if (r.at + sizeof(std::uint64_t) > m.bytes.size()) {
        if (r.bytes == block_bytes::landed) {
          auto* mine = seg_.at<object_block>(r.landed);
          keep_copy(r.offset, r.stamp, mine);  // rank 0 counts it held
          seg_.release(mine);
        }
        continue;
      }
      object_block* mine = nullptr;
      if (r.bytes == block_bytes::landed) {
        mine = seg_.at<object_block>(r.landed);  // received straight into it
        keep_copy(r.offset, r.stamp, mine);
      } else if (r.bytes == block_bytes::held) {
        const auto it = copies_.find(r.offset);
        if (it == copies_.end() || it->second.stamp != r.stamp)
          throw ray::runtime_error(fmt::format(
              "coray: rank 0 named a copy of its block at {} this node does not hold", r.offset));
        mine = it->second.block;
        seg_.add_ref(mine);
      } else {
        mine = seg_.new_object(static_cast<std::size_t>(r.size));
        if (r.bytes == block_bytes::inline_ && r.size)
          std::memcpy(mine->data(), b.bytes.data(), b.bytes.size());
      }
      const std::uint64_t off = seg_.offset_of(mine);
      rank0_of_[off] = r.offset;
      std::memcpy(m.bytes.data() + r.at, &off, sizeof off);
      if (r.use == block_use::granted) {
        unsynced_.insert(off);
        if (r.stamp) grant_stamps_[off] = r.stamp;
        ledger_->grant(j, off);
      } else if (r.use == block_use::passed) {
        ledger_->grant(j, off);
      } else {
        s.borrowed.emplace_back(call, mine);
      }
    }
    if (v.head.kind & in_block_flag) {
      m.carrier = seg_.new_object(m.bytes.size());
      std::memcpy(m.carrier->data(), m.bytes.data(), m.bytes.size());
      m.bytes.clear();
      seg_.add_ref(m.carrier);  // one for the call's life, one while it waits to be sent
      s.borrowed.emplace_back(call, m.carrier);
    }
    s.pending.push_back(std::move(m));
    flush(j);
  }

  /// Keeps `b` as this node's copy of rank 0's block at `theirs` (stamp 0: not kept), in place
  /// of an older one there.
  void keep_copy(std::uint64_t theirs, std::uint32_t stamp, object_block* b) {
    if (!stamp) return;
    auto [it, fresh] = copies_.try_emplace(theirs);
    cached_copy& c = it->second;
    if (!fresh) {
      if (c.stamp == stamp && c.block == b) return;
      seg_.release(c.block);
    }
    seg_.add_ref(b);
    c = {stamp, b};
  }

  /// Drops the copies rank 0 will not name again (it said so before any message that needs
  /// their room).
  void drop_copies(std::span<const std::byte> keys) {
    for (std::size_t at = 0; at + sizeof(copy_key) <= keys.size(); at += sizeof(copy_key)) {
      copy_key k;
      std::memcpy(&k, keys.data() + at, sizeof k);
      const auto it = copies_.find(k.offset);
      if (it == copies_.end() || it->second.stamp != k.stamp) continue;
      seg_.release(it->second.block);
      copies_.erase(it);
    }
  }

  /// Frees the blocks a frame's bytes landed in, when the frame is not taken; each is kept
  /// as a copy first, since rank 0 counts it held from the moment it sent it.
  void drop_landed(const frame_view& v) {
    for (const auto& b : v.blocks)
      if (b.record.bytes == block_bytes::landed && b.record.landed) {
        auto* mine = seg_.at<object_block>(b.record.landed);
        keep_copy(b.record.offset, b.record.stamp, mine);
        seg_.release(mine);
      }
  }

  /// Sends slot `j`'s waiting messages in order while its inbox has room.
  bool flush(std::uint32_t j) {
    slot& s = slots_[j];
    bool progress = false;
    while (!s.pending.empty()) {
      pending_message& m = s.pending.front();
      const bool sent = m.carrier ? local_->send_carried(j, m.kind, m.carrier)
                                  : local_->send(j, m.kind, m.bytes.size(), [&](std::byte* out) {
                                      if (!m.bytes.empty())
                                        std::memcpy(out, m.bytes.data(), m.bytes.size());
                                    });
      if (!sent) break;
      if (m.kind == msg_kind::shutdown) s.shutdown_sent = true;
      if (m.carrier) seg_.release(m.carrier);
      s.pending.pop_front();
      progress = true;
    }
    return progress;
  }

  bool flush_pending() {
    bool progress = false;
    for (std::uint32_t j = 0; j < used_; ++j)
      if (!slots_[j].pending.empty()) progress |= flush(j);
    return progress;
  }

  /// Sends rank 0 each open slot's signals that changed: its state, suspended calls, blocked
  /// mark and pid, which rank 0's scheduler reads as it would a local slot's.
  bool publish_signals() {
    bool progress = false;
    for (std::uint32_t j = 0; j < used_; ++j) {
      slot& s = slots_[j];
      if (!s.open) continue;
      const slot_signals& sig = local_->signals(j);
      const std::uint64_t mark = sig.blocked_mark->load(std::memory_order_acquire);
      const std::uint64_t now[4] = {sig.state->load(std::memory_order_acquire),
                                    sig.suspended->load(std::memory_order_acquire), mark,
                                    static_cast<std::uint64_t>(local_->pid(j))};
      if (std::equal(std::begin(now), std::end(now), std::begin(s.last))) continue;
      std::copy(std::begin(now), std::end(now), std::begin(s.last));
      frame_writer w(frame_type::signals, j);
      w.head().a = now[0];
      w.head().b = now[1];
      w.head().c = now[2];
      w.head().d = now[3];
      link_.post(0, w.finish());
      progress = true;
    }
    return progress;
  }

  /// Sends rank 0 each open slot's process's CPU time and resident memory, once a second (the
  /// dashboard's machine view shows them).
  void publish_usage() {
    const auto now = std::chrono::steady_clock::now();
    if (now - usage_at_ < std::chrono::seconds(1)) return;
    usage_at_ = now;
    for (std::uint32_t j = 0; j < used_; ++j) {
      const int pid = slots_[j].open ? local_->pid(j) : 0;
      if (pid <= 0) continue;
      const proc_sample s = sample_proc(pid);
      if (!s.exists) continue;
      frame_writer w(frame_type::usage, j);
      w.head().a = static_cast<std::uint64_t>(pid);
      std::memcpy(&w.head().b, &s.cpu_seconds, sizeof s.cpu_seconds);
      w.head().c = s.rss_bytes;
      link_.post(0, w.finish());
    }
  }

  channel& link_;
  std::chrono::steady_clock::time_point usage_at_{};
  std::uint32_t workers_;
  std::uint32_t actors_;
  std::uint32_t used_ = 0;  // slots above this were never started (the loop looks below)
  segment seg_;
  std::optional<shm_transport> local_;
  std::optional<block_ledger> ledger_;
  std::vector<slot> slots_;
  std::unordered_map<std::uint64_t, std::uint64_t> rank0_of_;  // this node's block -> rank 0's
  std::unordered_set<std::uint64_t> unsynced_;  // granted blocks whose bytes rank 0 lacks
  std::unordered_map<std::uint64_t, std::uint32_t> grant_stamps_;  // their stamps, if kept
  /// This node's copy of one of rank 0's blocks (holding a reference to it).
  struct cached_copy {
    std::uint32_t stamp = 0;
    object_block* block = nullptr;
  };
  std::unordered_map<std::uint64_t, cached_copy> copies_;  // by rank 0's offset
  std::vector<std::byte> frame_;
  std::vector<object_block*> dropped_;
  struct kept_copy {
    std::uint64_t theirs;
    std::uint32_t stamp;
    object_block* block;
  };
  std::vector<kept_copy> kept_;  // blocks a message ships up, kept as copies once it is sent
  bool done_ = false;
};

}  // namespace detail::cluster
CORAY_END_NAMESPACE
