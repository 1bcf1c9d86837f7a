#pragma once
/// The runtime's one shared segment: an anonymous memory file (memfd) mapped by the driver,
/// its supervisor and every worker, with a Boost.Interprocess allocator inside. Nothing is
/// named in /dev/shm: the memory goes away with the last process that maps it.

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <coray/errors.hpp>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

CORAY_BEGIN_NAMESPACE
namespace detail {

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
  CORAY_API void create(std::size_t bytes);

  /// Spawned worker: maps the segment inherited as `fd`, and makes `fd` close-on-exec again
  /// (posix_spawn had to clear that to pass it on).
  CORAY_API void attach(int fd);

  /// Takes over another segment object's mapping (a forked worker, from its parent's copy).
  CORAY_API void adopt(segment& o);

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
  CORAY_API void* allocate(std::size_t bytes);
  /// Like allocate(), aligned to `alignment` (a power of two): for cache-line aligned
  /// control structures.
  CORAY_API void* allocate_aligned(std::size_t bytes, std::size_t alignment);
  CORAY_API void deallocate(void* p) noexcept;

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
  CORAY_API std::size_t return_free_pages(std::size_t min_chunk) noexcept;
  CORAY_API std::size_t free_bytes() const noexcept;
  CORAY_API std::size_t capacity() const noexcept;

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
  friend struct segment_allocator;
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
  /// The Boost.Interprocess allocator's handle (segment_impl.hpp), made in place: a pointer
  /// to its manager inside the segment.
  alignas(16) unsigned char alloc_[16];
  bool has_alloc_ = false;
  std::atomic<std::uint64_t> large_allocations_{0};
};

}  // namespace detail
CORAY_END_NAMESPACE

#ifndef CORAY_COMPILED_LIB
#include <coray/detail/shm/segment_impl.hpp>
#endif
