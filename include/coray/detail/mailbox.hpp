#pragma once
/// A bounded lock-free ring of fixed-size message slots in shared memory (Vyukov's bounded
/// MPMC queue with one consumer): sequence-numbered slots, offsets only, no pointers, so it
/// works at any mapping address. Messages longer than a slot carry the offset of a block in
/// the segment instead of their bytes.

#include <coray/detail/futex.hpp>
#include <coray/version.hpp>

#include <atomic>
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
  std::uint32_t kind;  // message kind; high bit set: payload is {offset, size} of a block
  std::uint32_t size;  // bytes used in `payload`
  alignas(16) std::byte payload[payload_bytes];
};
static_assert(sizeof(mailbox_slot) == 256);

class mailbox {
 public:
  /// Bytes to reserve in the segment for a mailbox of `capacity` slots (a power of two).
  static constexpr std::size_t bytes_for(std::size_t capacity) {
    return sizeof(mailbox) + capacity * sizeof(mailbox_slot);
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

  /// Claims a slot for writing; an empty claim when the ring is full. Any number of producers, any
  /// process. The claimed slot must be published with commit(); until then the consumer
  /// waits at it, so a claim must not be abandoned.
  struct claim {
    mailbox_slot* slot = nullptr;
    std::uint64_t pos = 0;
    explicit operator bool() const noexcept { return slot != nullptr; }
  };

  claim try_claim() noexcept {
    std::uint64_t pos = head_.load(std::memory_order_relaxed);
    for (;;) {
      mailbox_slot& s = slots()[pos & mask_];
      std::uint64_t seq = s.seq.load(std::memory_order_acquire);
      auto dif = static_cast<std::int64_t>(seq - pos);
      if (dif == 0) {
        if (head_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) return {&s, pos};
      } else if (dif < 0) {
        return {};
      } else {
        pos = head_.load(std::memory_order_relaxed);
      }
    }
  }
  /// Publishes a claimed slot to the consumer.
  void commit(const claim& c) noexcept { c.slot->seq.store(c.pos + 1, std::memory_order_release); }

  /// The next message, or nullptr when none is published. Single consumer.
  mailbox_slot* peek() noexcept {
    mailbox_slot& s = slots()[tail_ & mask_];
    return s.seq.load(std::memory_order_acquire) == tail_ + 1 ? &s : nullptr;
  }
  /// Frees the slot returned by peek(). Single consumer.
  void pop() noexcept {
    mailbox_slot& s = slots()[tail_ & mask_];
    s.seq.store(tail_ + capacity_, std::memory_order_release);
    ++tail_;
  }
  bool empty() noexcept { return peek() == nullptr; }
  std::size_t capacity() const noexcept { return capacity_; }

 private:
  explicit mailbox(std::size_t capacity) : capacity_(capacity), mask_(capacity - 1) {}

  mailbox_slot* slots() noexcept {
    return reinterpret_cast<mailbox_slot*>(reinterpret_cast<std::byte*>(this) + sizeof(mailbox));
  }
  alignas(64) std::atomic<std::uint64_t> head_{0};
  alignas(64) std::uint64_t tail_ = 0;
  alignas(64) std::uint64_t capacity_;
  std::uint64_t mask_;
};

}  // namespace detail
CORAY_END_NAMESPACE
