#pragma once
/// The block ledger: which store blocks each process holds references to, and the blocks
/// processes have asked the driver for. A process's references are released on its behalf
/// when it dies, so the store's free bytes return exactly. Driver only, loop thread only.

#include <algorithm>
#include <chrono>
#include <coray/detail/shm/segment.hpp>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <unordered_set>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// Which store blocks each process holds references to. A process's references are
/// released on its behalf when it dies, so the store's free bytes return exactly.
class block_ledger {
 public:
  block_ledger(segment& seg, std::uint32_t slots) : seg_(seg), owned_(slots), requests_(slots) {}

  /// `slot` now holds one reference to the block at `offset`.
  void grant(std::uint32_t slot, std::uint64_t offset) { owned_[slot].insert(offset); }
  bool holds(std::uint32_t slot, std::uint64_t offset) const {
    return owned_[slot].count(offset) != 0;
  }
  /// `slot` gives up one reference it held to `b` (ignored if it held none).
  void drop(std::uint32_t slot, object_block* b) noexcept {
    auto& o = owned_[slot];
    auto it = o.find(seg_.offset_of(b));
    if (it == o.end()) return;  // not its to give
    o.erase(it);
    seg_.release(b);
  }
  /// `slot`'s reference to `b` passes to the driver; false if it held none.
  bool take(std::uint32_t slot, object_block* b) {
    auto& o = owned_[slot];
    auto it = o.find(seg_.offset_of(b));
    if (it == o.end()) return false;
    o.erase(it);
    return true;
  }
  /// The process in `slot` died: everything it held is let go, its requests forgotten.
  void release_all(std::uint32_t slot) noexcept {
    for (std::uint64_t off : owned_[slot]) seg_.release(seg_.at<object_block>(off));
    owned_[slot].clear();
    requests_[slot].clear();
  }

  // ---- block requests -------------------------------------------------------------------

  /// Process `slot` asks for a block of `size` bytes (its request number `request`).
  void request(std::uint32_t slot, std::uint64_t request, std::uint64_t size) {
    requests_[slot].push_back({request, size, clock::now() + std::chrono::seconds(1)});
    if (std::find(waiting_.begin(), waiting_.end(), slot) == waiting_.end())
      waiting_.push_back(slot);
  }
  /// Whether requests wait for an answer.
  bool has_requests() const noexcept { return !waiting_.empty(); }
  /// Answers requests in order with `allocate(size)` (throws object_store_full when it does
  /// not fit) and `reply(slot, message)`. One that does not fit waits (replies on their way
  /// may free or make spillable what it needs) for up to a second, then is refused with the
  /// store's figures. True on progress.
  template <class Allocate, class Reply>
  bool answer(Allocate&& allocate, Reply&& reply) {
    bool progress = false;
    for (std::size_t i = 0; i < waiting_.size();) {
      const std::uint32_t slot = waiting_[i];
      auto& q = requests_[slot];
      while (!q.empty()) {
        auto& g = q.front();
        // request, block offset (0: refused), requested, free bytes, capacity
        std::uint64_t message[5] = {g.request, 0, g.size, 0, seg_.capacity()};
        try {
          message[1] = seg_.offset_of(allocate(static_cast<std::size_t>(g.size)));
          grant(slot, message[1]);
        } catch (const object_store_full&) {
          if (clock::now() < g.deadline) break;
        }
        message[3] = seg_.free_bytes();
        reply(slot, message);
        q.pop_front();
        progress = true;
      }
      if (q.empty()) {
        waiting_[i] = waiting_.back();
        waiting_.pop_back();
      } else {
        ++i;
      }
    }
    return progress;
  }

 private:
  using clock = std::chrono::steady_clock;
  struct block_request {
    std::uint64_t request, size;
    clock::time_point deadline;
  };
  segment& seg_;
  std::vector<std::unordered_multiset<std::uint64_t>> owned_;
  std::vector<std::deque<block_request>> requests_;
  std::vector<std::uint32_t> waiting_;  // slots with requests not yet answered
};

}  // namespace detail
CORAY_END_NAMESPACE
