#pragma once
/// What the driver owes each process: the nested results it awaits (by id, for the process
/// generation that asked), and the messages to it that found its inbox full, sent in order
/// once there is room. A process's death or replacement drops what was owed to it.
/// Driver only, loop thread only.

#include <coray/detail/runtime/block_ledger.hpp>
#include <coray/detail/runtime/result_message.hpp>
#include <coray/detail/runtime/transport.hpp>
#include <cstdint>
#include <deque>
#include <functional>
#include <unordered_map>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

class reply_router {
 public:
  reply_router(segment& seg, transport& t, block_ledger& ledger, std::uint32_t slots)
      : seg_(seg), transport_(t), ledger_(ledger), slots_(slots) {}

  /// A new process takes `slot`: nothing is owed to it yet.
  void new_process(std::uint32_t slot) {
    ++slots_[slot].generation;
    clear(slot);
  }
  /// The slot's process died: what was owed to it is dropped.
  void clear(std::uint32_t slot) {
    slots_[slot].outgoing.clear();
    slots_[slot].held.clear();
  }
  std::uint32_t generation(std::uint32_t slot) const noexcept { return slots_[slot].generation; }

  /// The process in `slot` awaits the result `s` of its nested call `id`.
  void hold(std::uint32_t slot, std::uint64_t id, state_ptr s) {
    slots_[slot].held.emplace(id, std::move(s));
  }
  /// It dropped its last handle to that result.
  void drop(std::uint32_t slot, std::uint64_t id) { slots_[slot].held.erase(id); }
  /// A result it awaits, by id; null if it awaits none by that id.
  state_ptr held(std::uint32_t slot, std::uint64_t id) const {
    auto& h = slots_[slot].held;
    auto it = h.find(id);
    return it == h.end() ? state_ptr() : it->second;
  }

  /// Sends the settled result `s` of nested call `id` to the process of `generation` in
  /// `slot` that made the call, if it is still there and still wants it.
  void forward(std::uint32_t slot, std::uint32_t generation, std::uint64_t id, state_ptr s) {
    slot_record& w = slots_[slot];
    if (w.generation != generation || !w.held.count(id)) return;
    w.outgoing.push_back([this, slot, id, s = std::move(s)] { return send_result(slot, id, *s); });
    flush(slot);
  }

  /// Sends `n` bytes of `data` as a message of kind `k`, after anything queued before it.
  void post(std::uint32_t slot, msg_kind k, const void* data, std::size_t n) {
    std::vector<std::byte> bytes(static_cast<const std::byte*>(data),
                                 static_cast<const std::byte*>(data) + n);
    slots_[slot].outgoing.push_back([this, slot, k, bytes = std::move(bytes)] {
      return transport_.send(slot, k, bytes.size(), [&](std::byte* out) {
        if (!bytes.empty()) std::memcpy(out, bytes.data(), bytes.size());
      });
    });
    flush(slot);
  }

  /// Whether messages wait for room.
  bool has_waiting() const noexcept { return !waiting_.empty(); }
  /// Sends what waited for room; true on progress.
  bool flush() {
    bool progress = false;
    for (std::size_t i = 0; i < waiting_.size();) {
      const std::uint32_t slot = waiting_[i];
      progress |= send_queued(slot);
      if (slots_[slot].outgoing.empty()) {
        slots_[slot].listed = false;
        waiting_[i] = waiting_.back();
        waiting_.pop_back();
      } else {
        ++i;
      }
    }
    return progress;
  }

 private:
  struct slot_record {
    std::uint32_t generation = 0;
    std::unordered_map<std::uint64_t, state_ptr> held;  // nested results it awaits
    std::deque<std::function<bool()>> outgoing;         // messages waiting for room
    bool listed = false;                                // in waiting_
  };

  void flush(std::uint32_t slot) {
    send_queued(slot);
    slot_record& w = slots_[slot];
    if (!w.outgoing.empty() && !w.listed) {
      w.listed = true;
      waiting_.push_back(slot);
    }
  }

  bool send_queued(std::uint32_t slot) {
    auto& outgoing = slots_[slot].outgoing;
    bool progress = false;
    while (!outgoing.empty() && outgoing.front()()) {
      outgoing.pop_front();
      progress = true;
    }
    return progress;
  }

  bool send_result(std::uint32_t slot, std::uint64_t id, object_state& s) {
    try {
      if (s.spilled()) (void)s.value_bytes();
    } catch (const object_store_full&) {
      return false;  // no room yet: sent on a later turn
    }
    const result_writer w(id, s);
    if (!transport_.send(slot, msg_kind::object_ready, w.size(),
                         [&](std::byte* out) { w.write(out, seg_); }))
      return false;
    if (w.lends_block()) {
      seg_.add_ref(s.block);  // the receiving process's handle
      ledger_.grant(slot, seg_.offset_of(s.block));
    }
    return true;
  }

  segment& seg_;
  transport& transport_;
  block_ledger& ledger_;
  std::vector<slot_record> slots_;
  std::vector<std::uint32_t> waiting_;  // slots with messages waiting for room
};

}  // namespace detail
CORAY_END_NAMESPACE
