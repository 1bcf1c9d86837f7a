#pragma once
/// What rank 0 and the other nodes of a cluster send each other: frames, each a fixed head,
/// a mailbox message's payload (or nothing) and the store blocks the message names. A
/// message that names a block travels with the block's bytes wherever the receiver has no
/// copy: node and rank 0 each keep their own segment, and every offset in a message is
/// rewritten into the receiver's (block_walk below says where a message kind holds one).
/// Small blocks' bytes ride in the frame; large ones (apart_bytes) follow it in messages of
/// their own, sent from one segment and received into the other.

#include <coray/detail/runtime/call_message.hpp>
#include <coray/detail/runtime/stream_state.hpp>
#include <coray/detail/runtime/wire.hpp>
#include <coray/detail/shm/segment.hpp>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail::cluster {

enum class frame_type : std::uint32_t {
  // node -> rank 0
  hello = 1,    // a: task workers, b: CPUs (as a double's bits), c: pid; payload: host name
  signals = 2,  // slot; a: state, b: suspended, c: blocked mark, d: pid
  death = 3,    // slot; a: pid, b: wait status, c: calls started, d: served
  lost = 4,     // payload: why no process can be started there any more
  bye = 5,      // the node ended its processes
  usage = 7,    // slot; a: pid, b: CPU seconds (a double's bits), c: resident bytes
  // both ways
  message = 8,  // slot, kind (in_block_flag: carried); payload; blocks
  // rank 0 -> node
  start = 16,     // slot, a: the slot's number at rank 0
  start_as = 17,  // slot, a: how
  close = 18,     // slot
  kill = 19,      // slot
  shutdown = 20,  // end every process and exit
  drop = 21,      // payload: copy_keys of copies the node may let go (rank 0 names them no more)
};

struct frame_head {
  frame_type type;
  std::uint32_t slot;
  std::uint32_t kind;
  std::uint32_t blocks;  // block records after the payload
  std::uint64_t a, b, c, d;
  std::uint64_t payload;  // bytes
};
static_assert(sizeof(frame_head) == 56);

/// How a message kind treats the blocks it names.
enum class block_use : std::uint32_t {
  borrowed,  // read while the call runs (a call's arguments, a carrier)
  passed,    // the sender's reference passes to the receiver (a result, an owned argument)
  granted,   // a new block for the receiver: no bytes yet (block_granted)
  released,  // the sender lets a reference go (block_release)
};

/// Where a block's bytes travel, if they do.
enum class block_bytes : std::uint32_t {
  none,     // the receiver needs none (a grant, a release, a block it has)
  inline_,  // after the record, in the frame
  apart,    // in messages of their own after the frame, straight from the sender's segment
  landed,   // (receiver) apart, and now in the receiver's segment at `landed`
  held,     // none: the receiver keeps a copy of this block (its stamp says which)
};

/// One block a message names: where in the payload its offset lies, the offset (rank 0's,
/// in both directions: a node rewrites its own before sending), its size, where its bytes
/// travel and how the message uses it.
struct block_record {
  std::uint64_t at;
  std::uint64_t offset;
  std::uint64_t size;
  block_bytes bytes;
  block_use use;
  std::uint64_t landed;  // the receiver's block holding the bytes sent apart (0: none)
  /// Which of the blocks ever at `offset` this is, for a node's copies (0: none kept).
  std::uint32_t stamp;
  std::uint32_t unused;
};
static_assert(sizeof(block_record) == 48);

/// A node's copy of one of rank 0's blocks: the block's offset there and its stamp.
struct copy_key {
  std::uint64_t offset;
  std::uint32_t stamp;
  std::uint32_t unused;
};
static_assert(sizeof(copy_key) == 16);

/// Blocks of this size or more travel apart from their frame (block_bytes::apart): sent from
/// the sender's segment and received into the receiver's, in chunks, never copied into a
/// frame.
inline constexpr std::uint64_t apart_bytes = 64 * 1024;

inline constexpr std::size_t pad8(std::size_t n) noexcept { return (n + 7) & ~std::size_t{7}; }

/// Builds a frame.
class frame_writer {
 public:
  explicit frame_writer(frame_type t, std::uint32_t slot = 0, std::uint32_t kind = 0) {
    head_.type = t;
    head_.slot = slot;
    head_.kind = kind;
  }
  frame_head& head() noexcept { return head_; }
  void payload(std::span<const std::byte> p) { payload_.assign(p.begin(), p.end()); }
  std::vector<std::byte>& payload() noexcept { return payload_; }
  /// A block the message names, with `size` bytes from `bytes` after it, or none when null.
  void block(std::uint64_t at, std::uint64_t offset, block_use use, std::uint64_t size,
             const std::byte* bytes, std::uint32_t stamp = 0) {
    records_.push_back(
        {at, offset, size, bytes ? block_bytes::inline_ : block_bytes::none, use, 0, stamp, 0});
    if (bytes) bytes_.push_back({bytes, static_cast<std::size_t>(size)});
  }
  /// A block the receiver keeps a copy of (`stamp` says which): no bytes.
  void block_held(std::uint64_t at, std::uint64_t offset, block_use use, std::uint64_t size,
                  std::uint32_t stamp) {
    records_.push_back({at, offset, size, block_bytes::held, use, 0, stamp, 0});
  }
  /// A block the message names whose bytes go apart, after the frame (the channel sends them
  /// from `b`, which must stay unchanged until then: the caller gives the frame a reference).
  void block_apart(std::uint64_t at, std::uint64_t offset, block_use use, object_block* b,
                   std::uint32_t stamp = 0) {
    records_.push_back({at, offset, b->size, block_bytes::apart, use, 0, stamp, 0});
    apart_.push_back(b);
  }
  /// The blocks whose bytes go apart, in record order.
  std::vector<object_block*>& apart() noexcept { return apart_; }
  /// The frame's bytes.
  std::vector<std::byte> finish() {
    head_.payload = payload_.size();
    head_.blocks = static_cast<std::uint32_t>(records_.size());
    std::size_t n = sizeof head_ + pad8(payload_.size()) + records_.size() * sizeof(block_record);
    for (auto b : bytes_) n += pad8(b.size());
    std::vector<std::byte> out(n);
    std::byte* p = out.data();
    std::memcpy(p, &head_, sizeof head_);
    p += sizeof head_;
    if (!payload_.empty()) std::memcpy(p, payload_.data(), payload_.size());
    p += pad8(payload_.size());
    std::size_t k = 0;
    for (const auto& r : records_) {
      std::memcpy(p, &r, sizeof r);
      p += sizeof r;
      if (r.bytes == block_bytes::inline_) {
        const auto b = bytes_[k++];
        if (!b.empty()) std::memcpy(p, b.data(), b.size());
        p += pad8(b.size());
      }
    }
    return out;
  }

 private:
  frame_head head_{};
  std::vector<std::byte> payload_;
  std::vector<block_record> records_;
  std::vector<std::span<const std::byte>> bytes_;
  std::vector<object_block*> apart_;
};

/// Reads a frame; throws codec_error when its bytes do not hold what its head says.
struct frame_view {
  frame_head head{};
  std::span<const std::byte> payload;
  struct block {
    block_record record;
    std::span<const std::byte> bytes;  // empty unless inline_
    std::size_t record_at;             // where the record lies in the frame
  };
  std::vector<block> blocks;

  explicit frame_view(std::span<const std::byte> f) {
    if (f.size() < sizeof head) throw codec_error("coray: a cluster frame shorter than its head");
    std::memcpy(&head, f.data(), sizeof head);
    std::size_t at = sizeof head;
    auto need = [&](std::size_t n) {
      if (f.size() - at < n) throw codec_error("coray: a truncated cluster frame");
    };
    need(head.payload);
    payload = f.subspan(at, head.payload);
    at += pad8(head.payload);
    for (std::uint32_t i = 0; i < head.blocks; ++i) {
      need(sizeof(block_record));
      block b;
      b.record_at = at;
      std::memcpy(&b.record, f.data() + at, sizeof b.record);
      at += sizeof b.record;
      if (b.record.bytes == block_bytes::inline_) {
        need(b.record.size);
        b.bytes = f.subspan(at, b.record.size);
        at += pad8(b.record.size);
      }
      blocks.push_back(b);
    }
  }
};

/// Calls f(at, use) for each u64 block offset in a message of `kind` (the offset lies at
/// payload[at]); offsets of 0 are skipped. Kinds naming no block call nothing. Bounds are
/// checked; a malformed message yields what lies within them.
template <class F>
void block_walk(msg_kind kind, std::span<const std::byte> p, F&& f) {
  auto u64_at = [&](std::size_t at) {
    std::uint64_t v = 0;
    if (at + sizeof v <= p.size()) std::memcpy(&v, p.data() + at, sizeof v);
    return v;
  };
  auto call = [&](std::size_t at, bool owned_passes) {
    if (p.size() < at + sizeof(task_header)) return;
    task_header h;
    std::memcpy(&h, p.data() + at, sizeof h);
    std::size_t e_at = at + sizeof h;
    for (std::uint32_t i = 0; i < h.nargs && e_at + sizeof(arg_entry) <= p.size(); ++i) {
      arg_entry e;
      std::memcpy(&e, p.data() + e_at, sizeof e);
      if (e.tag == arg_entry::block_value && e.ref)
        f(e_at + offsetof(arg_entry, ref),
          owned_passes && e.owned ? block_use::passed : block_use::borrowed);
      e_at += sizeof e + entry_payload(e);
    }
  };
  auto result = [&](std::size_t at) {
    if (p.size() < at + sizeof(result_header)) return std::size_t{0};
    result_header h;
    std::memcpy(&h, p.data() + at, sizeof h);
    if (h.status == result_header::value_block && h.block)
      f(at + offsetof(result_header, block), block_use::passed);
    return sizeof h + (h.status == result_header::value_block ? 0 : std::size_t{h.len}) +
           (std::size_t{h.refs} + h.actors) * sizeof(std::uint64_t);
  };
  switch (kind) {
    case msg_kind::run_task:
    case msg_kind::construct:
      call(0, false);
      break;
    case msg_kind::submit:
      call(0, true);
      break;
    case msg_kind::actor_spawn: {
      const std::uint64_t n = u64_at(8);
      if (n <= p.size()) call(16 + pad16(static_cast<std::size_t>(n)), true);
      break;
    }
    case msg_kind::object_ready:
    case msg_kind::task_done:
    case msg_kind::export_object:
      result(0);
      break;
    case msg_kind::block_granted:
      if (u64_at(8)) f(8, block_use::granted);
      break;
    case msg_kind::block_release:
      if (u64_at(0)) f(0, block_use::released);
      break;
    case msg_kind::stream_items: {
      if (p.size() < sizeof(stream_batch_header)) break;
      stream_batch_header h;
      std::memcpy(&h, p.data(), sizeof h);
      std::size_t at = sizeof h;
      for (std::uint32_t i = 0; i < h.count && at < p.size(); ++i) {
        const std::size_t n = result(at);
        if (!n) break;
        at += pad8(n);
      }
      break;
    }
    default:
      break;
  }
}

}  // namespace detail::cluster
CORAY_END_NAMESPACE
