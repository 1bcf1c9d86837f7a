#pragma once
/// segment's allocating members: Boost.Interprocess's rbtree_best_fit allocator, kept inside
/// the segment. Included by segment.hpp in header-only mode (inline), and compiled once by
/// src/coray.cpp into coray::coray_compiled in compiled mode (CORAY_COMPILED_LIB), so that a
/// translation unit including coray.hpp does not parse Boost.Interprocess.

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <boost/interprocess/indexes/null_index.hpp>
#include <boost/interprocess/managed_external_buffer.hpp>
#include <boost/interprocess/mem_algo/rbtree_best_fit.hpp>
#include <coray/detail/shm/robust_mutex.hpp>
#include <coray/detail/shm/segment.hpp>
#include <coray/errors.hpp>
#include <cstring>
#include <new>

CORAY_BEGIN_NAMESPACE
namespace detail {

namespace bip = boost::interprocess;

/// Several processes allocate, so the allocator takes a lock; a robust one, because any of
/// them may be killed while holding it.
using shared_allocator =
    bip::basic_managed_external_buffer<char, bip::rbtree_best_fit<robust_mutex_family>,
                                       bip::null_index>;

/// The allocator handle a segment keeps in place.
struct segment_allocator {
  static_assert(sizeof(shared_allocator) <= sizeof(segment::alloc_) &&
                    alignof(shared_allocator) <= alignof(segment),
                "coray: segment::alloc_ must hold a shared_allocator");
  static shared_allocator& of(segment& s) noexcept {
    return *std::launder(reinterpret_cast<shared_allocator*>(&s.alloc_));
  }
};

CORAY_API void segment::create(std::size_t bytes) {
  fd_ = memfd_create("coray", MFD_CLOEXEC);
  if (fd_ < 0) throw_errno("memfd_create");
  if (ftruncate(fd_, static_cast<off_t>(bytes)) != 0) throw_errno("ftruncate");
  map(bytes);
  new (&alloc_) shared_allocator(bip::create_only, base_ + root_bytes, bytes - root_bytes);
  has_alloc_ = true;
  auto* r = reinterpret_cast<root*>(base_);
  r->magic = magic;
  r->size = bytes;
  r->header_offset = 0;
}

CORAY_API void segment::attach(int fd) {
  fd_ = fd;
  if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) throw_errno("fcntl on inherited segment");
  off_t len = lseek(fd, 0, SEEK_END);
  if (len <= 0) throw_errno("lseek on inherited segment");
  map(static_cast<std::size_t>(len));
  auto* r = reinterpret_cast<root*>(base_);
  if (r->magic != magic) throw ray::runtime_error("coray: inherited fd is not a coray segment");
  new (&alloc_) shared_allocator(bip::open_only, base_ + root_bytes, size_ - root_bytes);
  has_alloc_ = true;
}

CORAY_API void segment::adopt(segment& o) {
  fd_ = std::exchange(o.fd_, -1);
  base_ = std::exchange(o.base_, nullptr);
  size_ = std::exchange(o.size_, 0);
  o.has_alloc_ = false;
  new (&alloc_) shared_allocator(bip::open_only, base_ + root_bytes, size_ - root_bytes);
  has_alloc_ = true;
}

CORAY_API void* segment::allocate(std::size_t bytes) {
  shared_allocator& a = segment_allocator::of(*this);
  void* p = a.allocate(bytes, std::nothrow);
  if (!p) throw object_store_full(bytes, a.get_free_memory(), a.get_size());
  if (bytes >= large_bytes) large_allocations_.fetch_add(1, std::memory_order_relaxed);
  return p;
}

CORAY_API void* segment::allocate_aligned(std::size_t bytes, std::size_t alignment) {
  shared_allocator& a = segment_allocator::of(*this);
  void* p = a.allocate_aligned(bytes, alignment, std::nothrow);
  if (!p) throw object_store_full(bytes, a.get_free_memory(), a.get_size());
  if (bytes >= large_bytes) large_allocations_.fetch_add(1, std::memory_order_relaxed);
  return p;
}

CORAY_API std::size_t segment::return_free_pages(std::size_t min_chunk) noexcept {
  shared_allocator& a = segment_allocator::of(*this);
  const auto page = static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
  const std::size_t reserve = min_chunk / 2;
  std::size_t punched = 0;
  void* held = nullptr;  // the ranges taken so far, chained through their first word
  for (;;) {
    std::size_t got = a.get_size();  // the largest free range there is
    char* p = nullptr;
    p = a.allocation_command<char>(bip::allocate_new | bip::nothrow_allocation, min_chunk + reserve,
                                   got, p);
    if (!p) break;
    std::size_t kept = got - reserve;
    char* same = p;
    if (a.allocation_command<char>(bip::shrink_in_place | bip::nothrow_allocation, kept, kept,
                                   same))
      got = kept;
    std::memcpy(p, &held, sizeof held);
    held = p;
    const std::uint64_t begin = (offset_of(p) + sizeof held + page - 1) / page * page;
    const std::uint64_t end = (offset_of(p) + got) / page * page;
    if (end > begin && fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                 static_cast<off_t>(begin), static_cast<off_t>(end - begin)) == 0)
      punched += end - begin;
  }
  while (held) {
    void* next;
    std::memcpy(&next, held, sizeof next);
    deallocate(held);
    held = next;
  }
  return punched;
}

CORAY_API std::size_t segment::free_bytes() const noexcept {
  return segment_allocator::of(const_cast<segment&>(*this)).get_free_memory();
}

CORAY_API void segment::deallocate(void* p) noexcept { segment_allocator::of(*this).deallocate(p); }

CORAY_API std::size_t segment::capacity() const noexcept {
  return segment_allocator::of(const_cast<segment&>(*this)).get_size();
}

}  // namespace detail
CORAY_END_NAMESPACE
