#pragma once
/// Puts a call on the wire: writes its message (dependencies replaced by their values) to
/// the slot's process through the transport, in a store block when it is longer than a
/// mailbox takes, pins its store arguments while it runs and gives the receiving process a
/// reference to each shared block it carries. Driver only, loop thread only.

#include <coray/detail/runtime/block_ledger.hpp>
#include <coray/detail/runtime/object_spiller.hpp>
#include <coray/detail/runtime/task_table.hpp>
#include <coray/detail/runtime/tick_clock.hpp>
#include <coray/detail/runtime/transport.hpp>

CORAY_BEGIN_NAMESPACE
namespace detail {

class call_sender {
 public:
  call_sender(segment& seg, transport& t, block_ledger& ledger, object_spiller& spiller,
              turn_stamp& stamp)
      : seg_(seg), transport_(t), ledger_(ledger), spiller_(spiller), stamp_(&stamp) {}

  /// Sends `r` to the process in `slot`; false when there is no room now (the caller keeps
  /// the call and tries again later).
  bool send(std::uint32_t slot, task_record& r) {
    if (r.submitted_tick) [[unlikely]]  // recording a timeline: the loop turn's stamp
      r.sent_tick = stamp_->now();
    try {
      for (auto& d : r.deps)
        if (d->spilled()) (void)d->value_bytes();  // back into the store, to be read in place
    } catch (const object_store_full&) {
      return false;  // no room yet: the call waits for a later turn
    }
    // An actor's construction carries its id and how many times it was built before; a method
    // call, its concurrency group.
    const call_message_writer message(
        {r.id, r.fn_id, r.nargs, r.construct ? r.max_concurrency() : r.group,
         r.construct ? r.actor : 0, r.construct ? static_cast<std::int32_t>(r.restart()) : 0,
         r.gpus, r.retry_matcher, 0, 0},
        r.args, r.deps);
    const std::size_t size = message.size();
    const msg_kind kind = r.construct ? msg_kind::construct : msg_kind::run_task;
    auto fill = [&](std::byte* out) { message.write(out, seg_); };
    if (size <= transport_.max_message_bytes()) {
      if (!transport_.send(slot, kind, size, fill)) return false;
    } else {
      // Longer than the ring takes: in a block, freed when the call ends.
      object_block* b = spiller_.allocate(size);
      fill(b->data());
      if (!transport_.send_carried(slot, kind, b)) {
        seg_.release(b);
        return false;
      }
      if (r.message()) seg_.release(r.message());
      r.more().message = b;
    }
    pin_arguments(r);
    grant_pinned_blocks(slot, r);
    return true;
  }

 private:
  /// A call's store arguments are read in place while it runs: they must not be spilled.
  static void pin_arguments(task_record& r) {
    if (r.pinned) return;
    r.pinned = true;
    for (auto& d : r.deps)
      if (d->block) ++d->pins;
  }

  /// The process a call was sent to gets a reference of its own to each shared block the
  /// call pins; the handle it decodes adopts it. At each send, so retries are covered.
  void grant_pinned_blocks(std::uint32_t slot, const task_record& r) {
    for (std::uint64_t id : held_actors(r.held))
      if (id & pinned_block_tag) {
        seg_.add_ref(seg_.at<object_block>(id & ~pinned_block_tag));
        ledger_.grant(slot, id & ~pinned_block_tag);
      }
  }

  segment& seg_;
  transport& transport_;
  block_ledger& ledger_;
  object_spiller& spiller_;
  turn_stamp* stamp_;  // the timeline's stamp of the loop turn (call_lifecycle)
};

}  // namespace detail
CORAY_END_NAMESPACE
