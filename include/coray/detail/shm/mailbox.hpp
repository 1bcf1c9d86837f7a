#pragma once
/// A bounded lock-free ring of fixed-size message slots in shared memory (Vyukov's bounded
/// MPMC queue with one consumer): sequence-numbered slots, offsets only, no pointers, so it
/// works at any mapping address. A message longer than one slot's payload occupies several
/// consecutive slots, claimed together; one longer than half the ring travels in a block of
/// the segment whose offset the slot carries.

#include <atomic>
#include <coray/detail/shm/futex.hpp>
#include <coray/version.hpp>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// One message slot: 256 bytes, so that most calls and replies fit in one.
struct alignas(64) mailbox_slot {
  static constexpr std::size_t payload_bytes = 240;
  std::atomic<std::uint64_t> seq;
  std::uint32_t kind;  // message kind (first slot of a message); high bit: payload is a block
  std::uint32_t size;  // payload bytes of the whole message
  alignas(16) std::byte payload[payload_bytes];
};
static_assert(sizeof(mailbox_slot) == 256);

class mailbox {
 public:
  /// Bytes to reserve in the segment for a mailbox of `capacity` slots (a power of two).
  static constexpr std::size_t bytes_for(std::size_t capacity) {
    return sizeof(mailbox) + capacity * sizeof(mailbox_slot);
  }
  /// Slots a message of `bytes` occupies.
  static constexpr std::size_t slots_for(std::size_t bytes) noexcept {
    return bytes <= mailbox_slot::payload_bytes
               ? 1
               : (bytes + mailbox_slot::payload_bytes - 1) / mailbox_slot::payload_bytes;
  }
  /// Constructs a mailbox in `memory` (bytes_for(capacity) bytes, 64-byte aligned).
  static mailbox* create(void* memory, std::size_t capacity) {
    auto* m = new (memory) mailbox(capacity);
    for (std::size_t i = 0; i < capacity; ++i) {
      new (&m->slots()[i]) mailbox_slot{};
      m->slots()[i].seq.store(i, std::memory_order_relaxed);
    }
    return m;
  }

  /// The longest message that travels in slots; longer ones go in a block.
  std::size_t max_message_bytes() const noexcept {
    return capacity_ / 2 * mailbox_slot::payload_bytes;
  }

  struct claim {
    mailbox_slot* slot = nullptr;  // the first
    std::uint64_t pos = 0;
    std::size_t count = 0;
    explicit operator bool() const noexcept { return slot != nullptr; }
  };

  /// Claims `n` consecutive slots for writing; an empty claim when they are not free. Any
  /// number of producers, any process. A claim must be published with commit(): until then
  /// the consumer waits at it.
  claim try_claim(std::size_t n = 1) noexcept {
    std::uint64_t pos = head_.load(std::memory_order_relaxed);
    for (;;) {
      // The consumer frees slots in order, so the last of the n being free means all are.
      mailbox_slot& last = at(pos + n - 1);
      std::uint64_t seq = last.seq.load(std::memory_order_acquire);
      auto dif = static_cast<std::int64_t>(seq - (pos + n - 1));
      if (dif == 0) {
        if (head_.compare_exchange_weak(pos, pos + n, std::memory_order_relaxed))
          return {&at(pos), pos, n};
      } else if (dif < 0) {
        return {};
      } else {
        pos = head_.load(std::memory_order_relaxed);
      }
    }
  }
  /// Whether `n` slots are free now (a producer's look, claiming nothing).
  bool has_room(std::size_t n = 1) noexcept {
    const std::uint64_t pos = head_.load(std::memory_order_relaxed);
    return at(pos + n - 1).seq.load(std::memory_order_acquire) == pos + n - 1;
  }
  /// Writes a claimed message's payload across its slots.
  void write(const claim& c, const std::byte* src, std::size_t size) noexcept {
    for (std::size_t i = 0; size; ++i) {
      std::size_t n = size < mailbox_slot::payload_bytes ? size : mailbox_slot::payload_bytes;
      std::memcpy(at(c.pos + i).payload, src, n);
      src += n;
      size -= n;
    }
  }
  /// Publishes a claim, last slot first: once the consumer sees the first, it sees them all.
  void commit(const claim& c) noexcept {
    for (std::size_t i = c.count; i-- > 0;)
      at(c.pos + i).seq.store(c.pos + i + 1, std::memory_order_release);
  }

  /// The first slot of the next message, or nullptr when none is published. Single consumer.
  mailbox_slot* peek() noexcept {
    mailbox_slot& s = at(tail_);
    return s.seq.load(std::memory_order_acquire) == tail_ + 1 ? &s : nullptr;
  }
  /// Copies the payload of the message at peek() (size bytes over its slots) to `dst`.
  void read(std::byte* dst, std::size_t size) noexcept {
    for (std::size_t i = 0; size; ++i) {
      std::size_t n = size < mailbox_slot::payload_bytes ? size : mailbox_slot::payload_bytes;
      std::memcpy(dst, at(tail_ + i).payload, n);
      dst += n;
      size -= n;
    }
  }
  /// Frees the `n` slots of the message returned by peek(). Single consumer.
  void pop(std::size_t n = 1) noexcept {
    for (std::size_t i = 0; i < n; ++i)
      at(tail_ + i).seq.store(tail_ + i + capacity_, std::memory_order_release);
    tail_ += n;
  }
  bool empty() noexcept { return peek() == nullptr; }
  std::size_t capacity() const noexcept { return capacity_; }

 private:
  explicit mailbox(std::size_t capacity) : capacity_(capacity), mask_(capacity - 1) {}

  mailbox_slot* slots() noexcept {
    return reinterpret_cast<mailbox_slot*>(reinterpret_cast<std::byte*>(this) + sizeof(mailbox));
  }
  mailbox_slot& at(std::uint64_t pos) noexcept { return slots()[pos & mask_]; }

  alignas(64) std::atomic<std::uint64_t> head_{0};
  alignas(64) std::uint64_t tail_ = 0;
  alignas(64) std::uint64_t capacity_;
  std::uint64_t mask_;
};

}  // namespace detail
CORAY_END_NAMESPACE
