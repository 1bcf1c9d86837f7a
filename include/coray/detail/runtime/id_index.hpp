#pragma once
/// The driver's index of live calls by id: a table of buckets, each the head of a list
/// threaded through the entries themselves (an entry has `id` and `index_next`), so entering
/// a call allocates nothing. An id's bucket is its low 32 bits, the number within its series,
/// plus an offset mixed from its high 32, which name the series (0 for the driver's calls; a
/// worker's nested calls carry its slot and generation there and number from 1 as the driver
/// does), masked to the table's size, a power of two.
///
/// Why not a standard map: call ids are handed out one after another, so the live ones are
/// mostly runs of consecutive ids. Here such a run fills consecutive buckets, one entry
/// each: a tide of a million queued calls walks the table in order, and no operation divides
/// (std::unordered_map finds a bucket with a modulo by a prime, four times per call, and
/// allocates a node per entry). A table with a mixing hash (boost::unordered_flat_map)
/// scatters the run, a cache miss per call; open addressing without one lets the runs of two
/// series that land near each other pile up, a probe per entry of the overlap, where here a
/// bucket holds one entry per series at most. At most one entry per bucket on average.
///
/// Not thread-safe; the driver's loop thread only.

#include <coray/version.hpp>
#include <cstddef>
#include <cstdint>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

template <class T>
class id_index {
 public:
  /// The entry with `id`, or null.
  T* find(std::uint64_t id) const noexcept {
    if (size_ == 0) return nullptr;
    for (T* p = heads_[bucket(id)]; p != nullptr; p = p->index_next)
      if (p->id == id) return p;
    return nullptr;
  }
  /// Enters `entry`, whose id must not be present.
  void insert(T* entry) {
    if (size_ + 1 > heads_.size()) rebuild(heads_.empty() ? min_buckets : heads_.size() * 2);
    T*& head = heads_[bucket(entry->id)];
    entry->index_next = head;
    head = entry;
    ++size_;
  }
  /// Takes the entry with `id` out and returns it, or null if there was none.
  T* erase(std::uint64_t id) noexcept {
    if (size_ == 0) return nullptr;
    for (T** link = &heads_[bucket(id)]; *link != nullptr; link = &(*link)->index_next) {
      T* const found = *link;
      if (found->id != id) continue;
      *link = found->index_next;
      found->index_next = nullptr;
      --size_;
      return found;
    }
    return nullptr;
  }
  std::size_t size() const noexcept { return size_; }
  /// The number of buckets.
  std::size_t capacity() const noexcept { return heads_.size(); }
  /// Each entry, in no order. `f` must not change the index.
  template <class F>
  void for_each(F&& f) const {
    for (T* head : heads_)
      for (T* p = head; p != nullptr;) {
        T* const next = p->index_next;  // read first: `f` may free the entry (clear's owner)
        f(p);
        p = next;
      }
  }
  /// Sizes the table for what it holds now (none: no table at all).
  void shrink_to_fit() {
    std::size_t n = size_ == 0 ? 0 : min_buckets;
    while (n < size_) n *= 2;
    if (n < heads_.size()) rebuild(n);
  }
  /// Forgets every entry (their owner frees them) and keeps the table's size.
  void clear() noexcept {
    for (T*& head : heads_) head = nullptr;
    size_ = 0;
  }

 private:
  static constexpr std::size_t min_buckets = 64;

  std::size_t bucket(std::uint64_t id) const noexcept {
    return static_cast<std::size_t>(id + ((id >> 32) * 0x9E3779B97F4A7C15u >> 29)) & mask_;
  }
  void rebuild(std::size_t n) {
    std::vector<T*> old(n, nullptr);
    old.swap(heads_);
    mask_ = n == 0 ? 0 : n - 1;
    for (T* head : old)
      for (T* p = head; p != nullptr;) {
        T* const next = p->index_next;
        T*& to = heads_[bucket(p->id)];
        p->index_next = to;
        to = p;
        p = next;
      }
  }

  std::vector<T*> heads_;
  std::size_t mask_ = 0;
  std::size_t size_ = 0;
};

}  // namespace detail
CORAY_END_NAMESPACE
