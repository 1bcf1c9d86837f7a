#pragma once
/// The runtime's one shared segment: an anonymous memory file (memfd) mapped by the driver,
/// its supervisor and every worker, with a Boost.Interprocess allocator inside. Nothing is
/// named in /dev/shm: the memory goes away with the last process that maps it.

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <boost/interprocess/indexes/null_index.hpp>
#include <boost/interprocess/managed_external_buffer.hpp>
#include <boost/interprocess/mem_algo/rbtree_best_fit.hpp>
#include <cerrno>
#include <coray/detail/shm/robust_mutex.hpp>
#include <coray/errors.hpp>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

CORAY_BEGIN_NAMESPACE
namespace detail {

namespace bip = boost::interprocess;

/// Several processes allocate, so the allocator takes a lock; a robust one, because any of
/// them may be killed while holding it.
using shared_allocator =
    bip::basic_managed_external_buffer<char, bip::rbtree_best_fit<robust_mutex_family>,
                                       bip::null_index>;

/// An object in the store: a header, then the encoded bytes (16-byte aligned).
struct alignas(16) object_block {
  std::atomic<std::uint32_t> refs;
  std::uint32_t reserved;
  std::uint64_t size;
  std::byte* data() noexcept { return reinterpret_cast<std::byte*>(this + 1); }
};
static_assert(sizeof(object_block) == 16);

class segment {
 public:
  static constexpr std::uint64_t magic = 0x636f7261792d7631ULL;  // "coray-v1"
  static constexpr std::size_t root_bytes = 4096;

  struct root {
    std::uint64_t magic;
    std::uint64_t size;
    std::uint64_t header_offset;  // of the runtime's shared_header
  };

  segment() = default;
  segment(const segment&) = delete;
  segment& operator=(const segment&) = delete;
  ~segment() { close(); }

  /// Driver: makes a new anonymous segment of `bytes` (sparse: pages cost memory only once
  /// touched). The fd is close-on-exec, as it is in every process: a program that a task or
  /// the supervisor runs must not hold the segment.
  void create(std::size_t bytes) {
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

  /// Spawned worker: maps the segment inherited as `fd`, and makes `fd` close-on-exec again
  /// (posix_spawn had to clear that to pass it on).
  void attach(int fd) {
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

  /// Takes over another segment object's mapping (a forked worker, from its parent's copy).
  void adopt(segment& o) {
    fd_ = std::exchange(o.fd_, -1);
    base_ = std::exchange(o.base_, nullptr);
    size_ = std::exchange(o.size_, 0);
    o.has_alloc_ = false;
    new (&alloc_) shared_allocator(bip::open_only, base_ + root_bytes, size_ - root_bytes);
    has_alloc_ = true;
  }

  void close() noexcept {
    if (has_alloc_) {
      // The allocator lives in the shared memory; dropping our view must not run its
      // destructor logic on memory other processes still use.
      has_alloc_ = false;
    }
    if (base_) munmap(base_, size_);
    base_ = nullptr;
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  int fd() const noexcept { return fd_; }
  std::byte* base() const noexcept { return base_; }
  std::size_t size() const noexcept { return size_; }
  root& header_root() const noexcept { return *reinterpret_cast<root*>(base_); }

  std::uint64_t offset_of(const void* p) const noexcept {
    return static_cast<std::uint64_t>(static_cast<const std::byte*>(p) - base_);
  }
  template <class T = std::byte>
  T* at(std::uint64_t off) const noexcept {
    return reinterpret_cast<T*>(base_ + off);
  }

  /// Allocates `bytes` in the segment (16-byte aligned). Thread- and process-safe.
  /// Throws object_store_full with the sizes when it does not fit.
  void* allocate(std::size_t bytes) {
    void* p = alloc().allocate(bytes, std::nothrow);
    if (!p) throw object_store_full(bytes, alloc().get_free_memory(), alloc().get_size());
    if (bytes >= large_bytes) large_allocations_.fetch_add(1, std::memory_order_relaxed);
    return p;
  }
  /// Like allocate(), aligned to `alignment` (a power of two): for cache-line aligned
  /// control structures.
  void* allocate_aligned(std::size_t bytes, std::size_t alignment) {
    void* p = alloc().allocate_aligned(bytes, alignment, std::nothrow);
    if (!p) throw object_store_full(bytes, alloc().get_free_memory(), alloc().get_size());
    if (bytes >= large_bytes) large_allocations_.fetch_add(1, std::memory_order_relaxed);
    return p;
  }
  void deallocate(void* p) noexcept { alloc().deallocate(p); }

  /// Allocations of `large_bytes` or more made by this process so far.
  static constexpr std::size_t large_bytes = std::size_t{1} << 20;
  std::uint64_t large_allocations() const noexcept {
    return large_allocations_.load(std::memory_order_relaxed);
  }
  /// Gives the memory of the free ranges of `min_chunk` bytes or more back to the operating
  /// system: their whole pages are punched out of the memory file (they read as zeros and
  /// cost nothing until written again). Each range is held allocated while it is punched, so
  /// no allocation can be inside it, less its last `min_chunk / 2` bytes, left free (not
  /// punched) for allocations other processes make meanwhile. Returns the bytes punched
  /// (pages never touched included).
  std::size_t return_free_pages(std::size_t min_chunk) noexcept {
    const auto page = static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
    const std::size_t reserve = min_chunk / 2;
    std::size_t punched = 0;
    void* held = nullptr;  // the ranges taken so far, chained through their first word
    for (;;) {
      std::size_t got = alloc().get_size();  // the largest free range there is
      char* p = nullptr;
      p = alloc().allocation_command<char>(bip::allocate_new | bip::nothrow_allocation,
                                           min_chunk + reserve, got, p);
      if (!p) break;
      std::size_t kept = got - reserve;
      char* same = p;
      if (alloc().allocation_command<char>(bip::shrink_in_place | bip::nothrow_allocation, kept,
                                           kept, same))
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
  std::size_t free_bytes() const noexcept {
    return const_cast<segment*>(this)->alloc().get_free_memory();
  }
  std::size_t capacity() const noexcept { return const_cast<segment*>(this)->alloc().get_size(); }

  /// A new object block with one reference, for `size` bytes of payload.
  object_block* new_object(std::size_t size) {
    auto* b = static_cast<object_block*>(allocate(sizeof(object_block) + size));
    b->refs.store(1, std::memory_order_relaxed);
    b->reserved = 0;
    b->size = size;
    return b;
  }
  void add_ref(object_block* b) noexcept { b->refs.fetch_add(1, std::memory_order_relaxed); }
  void release(object_block* b) noexcept {
    if (b->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) deallocate(b);
  }

 private:
  shared_allocator& alloc() noexcept {
    return *std::launder(reinterpret_cast<shared_allocator*>(&alloc_));
  }

  void map(std::size_t bytes) {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    if (p == MAP_FAILED) throw_errno("mmap");
    base_ = static_cast<std::byte*>(p);
    size_ = bytes;
  }
  [[noreturn]] static void throw_errno(const char* what) {
    throw ray::runtime_error(std::string("coray: ") + what + " failed: " + std::strerror(errno));
  }

  int fd_ = -1;
  std::byte* base_ = nullptr;
  std::size_t size_ = 0;
  alignas(shared_allocator) unsigned char alloc_[sizeof(shared_allocator)];
  bool has_alloc_ = false;
  std::atomic<std::uint64_t> large_allocations_{0};
};

}  // namespace detail
CORAY_END_NAMESPACE
