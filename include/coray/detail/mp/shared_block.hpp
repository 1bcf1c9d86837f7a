#pragma once
/// A process's handle on a block of the runtime's segment that holds one mutable shared
/// object (ray::shared_value, ray::mutex): unlike store objects these are written in place,
/// so every process sees the same bytes.
///
/// Lifetime follows the store's rules. Each process holds references of its own to the
/// block, which the driver accounts for (a process that dies lets go of them); handles
/// within one process count locally and hold one reference between them. In a call's
/// arguments a handle travels as the block's offset: the call pins the block until it
/// ends, and the process that runs the call receives a reference of its own with the
/// message, which the decoded handle adopts.

#include <atomic>
#include <coray/codec.hpp>
#include <coray/detail/runtime/process.hpp>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

CORAY_BEGIN_NAMESPACE
namespace detail {

class shared_block {
 public:
  shared_block() noexcept = default;

  /// A new block with `bytes` of payload, uninitialised. Any process of a runtime; in a worker
  /// it asks the driver. Throws object_store_full.
  static shared_block allocate(std::size_t bytes) {
    process& p = process::require();
    object_block* b = p.new_block(bytes);
    return shared_block(new local{{1}, b, p.epoch});
  }

  shared_block(const shared_block& o) noexcept : l_(o.l_) {
    if (l_) l_->handles.fetch_add(1, std::memory_order_relaxed);
  }
  shared_block(shared_block&& o) noexcept : l_(std::exchange(o.l_, nullptr)) {}
  shared_block& operator=(shared_block o) noexcept {
    std::swap(l_, o.l_);
    return *this;
  }
  ~shared_block() { reset(); }

  explicit operator bool() const noexcept { return l_ != nullptr; }
  std::byte* data() const noexcept { return l_->block->data(); }
  std::size_t size() const noexcept { return static_cast<std::size_t>(l_->block->size); }

  template <class Archive>
  void serialize(Archive& ar) {
    std::uint64_t offset = 0;
    if constexpr (!Archive::is_loading) {
      if (l_) offset = process::require().seg.offset_of(l_->block);
    }
    ar(offset);
    if constexpr (Archive::is_loading) {
      adopt(offset);
    } else if constexpr (std::is_same_v<Archive, writer>) {
      if (l_) collect_pinned_block(process::require().seg, l_->block);
    }
  }

 private:
  struct local {
    std::atomic<std::uint32_t> handles;
    object_block* block;
    std::uint32_t epoch;
  };
  explicit shared_block(local* l) noexcept : l_(l) {}

  /// Takes over the reference that came with the call's message.
  void adopt(std::uint64_t offset) {
    reset();
    if (offset == 0) return;
    process& p = process::require();
    if (offset % alignof(object_block) != 0 || offset < segment::root_bytes ||
        offset > p.seg.size() - sizeof(object_block))
      throw codec_error("coray: a shared value's offset is outside the segment");
    l_ = new local{{1}, p.seg.at<object_block>(offset), p.epoch};
  }

  void reset() noexcept {
    if (!l_ || l_->handles.fetch_sub(1, std::memory_order_acq_rel) != 1) {
      l_ = nullptr;
      return;
    }
    if (process::on_this_thread())
      release_on_loop(l_);
    else  // the last handle went on another thread: the loop drops the reference
      release_from_another_thread<local, &release_on_loop>(l_);
    l_ = nullptr;
  }
  static void release_on_loop(local* l) noexcept {
    process* p = process::current();
    if (p && p->epoch == l->epoch) p->release_block(l->block);
    delete l;
  }

  local* l_ = nullptr;
};

}  // namespace detail
CORAY_END_NAMESPACE
