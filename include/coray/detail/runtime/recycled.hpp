#pragma once
/// Allocation for the objects every call makes and drops (its task_record in the driver, its
/// result's object_state in every process, the bytes of its arguments): a class deriving
/// from recycled<T, Keep>, or a vector given small_buffer_allocator<T, Small, Keep>,
/// keeps the objects a thread frees and hands them out again before asking malloc, so a
/// steady stream of calls allocates nothing once warm.
///
/// How many: while a thread is busy, up to recycle_busy_limit (65,536) of each kind, so that a
/// tide of calls larger than the idle bound is recycled whole: with only 4,096 kept, two
/// actors each keeping 10,000 nested tasks in flight (multi_client_tasks_async) ran at 0.70x
/// of a driver that used malloc for everything, malloc's free lists fragmented by objects
/// half recycled and half not; with the tide kept, 1.05x. When the thread goes idle (its loop
/// is about to sleep, at most once a second: process::run_until; or the driver's memory
/// check finds it idle: memory_return.hpp), trim_recycled() gives back all but `Keep` of
/// each kind, so an idle process holds little.
/// The busy bound caps what one thread can gather from objects another thread allocated. A
/// thread's lists are given back when it ends.
///
/// When no freed object is kept, a new one is carved from a chunk of memory of its kind
/// (slab_chunk, below), not taken from malloc: no header per object, no search of malloc's
/// bins, and a tide's memory faulted in 2 MiB at a time.
///
/// Under AddressSanitizer it passes straight to operator new and delete, so a use after free
/// is still caught.

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <coray/detail/sanitizers.hpp>
#include <coray/version.hpp>
#include <cstddef>
#include <cstdint>
#include <new>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// A chunk of address space new objects of one kind are carved from, in order, by the thread
/// that mapped it. A thread's first chunk of a kind is 64 KiB and each next one twice the last,
/// up to 2 MiB; chunks of 2 MiB ask the kernel for transparent huge pages (madvise), so a tide
/// of a million queued calls faults its records in a 2 MiB page at a time, not 4 KiB: the
/// faults, with malloc's search for room, were a third of the driver's time queuing them. Every
/// chunk starts at a multiple of 2 MiB, so an object finds its chunk by masking its address.
///
/// An object comes back to its chunk (from any thread) when the list of the thread freeing it
/// is full, or trimmed, or the thread ends. A chunk is unmapped once all it handed out came back
/// and its thread carves from it no more: `live` starts at `open`, each object back takes one,
/// and the carving thread, moving on, takes `open` less what it carved, so exactly one of them
/// sees it reach zero. Objects kept on a thread's list keep their chunk mapped.
struct slab_chunk {
  static constexpr std::size_t span = std::size_t{2} << 20;  // alignment and largest length
  static constexpr std::size_t first = std::size_t{64} << 10;
  static constexpr std::uint64_t open = std::uint64_t{1} << 62;

  std::atomic<std::uint64_t> live{open};
  std::size_t length;

  static slab_chunk* of(void* p) noexcept {
    return reinterpret_cast<slab_chunk*>(reinterpret_cast<std::uintptr_t>(p) & ~(span - 1));
  }
  /// A new chunk of `length` bytes (at most span) at a multiple of span. Throws bad_alloc.
  static slab_chunk* map(std::size_t length) {
    void* m = ::mmap(nullptr, 2 * span, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) throw std::bad_alloc();
    const auto base = reinterpret_cast<std::uintptr_t>(m);
    const std::uintptr_t at = (base + span - 1) & ~(span - 1);
    if (at > base) ::munmap(m, at - base);
    ::munmap(reinterpret_cast<void*>(at + length), base + 2 * span - (at + length));
    if (length == span) ::madvise(reinterpret_cast<void*>(at), span, MADV_HUGEPAGE);
    auto* c = ::new (reinterpret_cast<void*>(at)) slab_chunk;
    c->length = length;
    return c;
  }
  /// An object of this chunk came back. Any thread.
  static void give_back(void* p) noexcept { slab_chunk::of(p)->drop(1); }
  /// Its thread carves from it no more, having handed out `carved` objects.
  void seal(std::uint64_t carved) noexcept { drop(open - carved); }

 private:
  void drop(std::uint64_t n) noexcept {
    if (live.fetch_sub(n, std::memory_order_acq_rel) == n) {
      const std::size_t len = length;
      this->~slab_chunk();
      ::munmap(this, len);
    }
  }
};

/// A thread's carving of objects of `Size` bytes (a multiple of `Align`) from its chunks.
template <std::size_t Size, std::size_t Align>
class slab_carver {
  static_assert(Size % Align == 0 && Size * 16 <= slab_chunk::first, "small objects only");

 public:
  slab_carver() noexcept = default;
  slab_carver(const slab_carver&) = delete;
  slab_carver& operator=(const slab_carver&) = delete;
  ~slab_carver() { retire(); }

  void* carve() {
    if (static_cast<std::size_t>(end_ - next_) < Size) [[unlikely]]
      refill();
    void* p = next_;
    next_ += Size;
    ++carved_;
    return p;
  }

 private:
  [[gnu::noinline]] void refill() {
    const std::size_t length =
        last_ ? std::min(last_ * 2, slab_chunk::span) : std::max(slab_chunk::first, 2 * Size + 64);
    slab_chunk* c = slab_chunk::map(length);  // throws bad_alloc, nothing changed
    retire();
    chunk_ = c;
    last_ = length;
    auto* base = reinterpret_cast<std::byte*>(c);
    next_ = base + ((sizeof(slab_chunk) + Align - 1) & ~(Align - 1));
    end_ = base + length;
  }
  void retire() noexcept {
    if (chunk_) chunk_->seal(carved_);
    chunk_ = nullptr;
    next_ = end_ = nullptr;
    carved_ = 0;
  }

  slab_chunk* chunk_ = nullptr;
  std::byte* next_ = nullptr;
  std::byte* end_ = nullptr;
  std::uint64_t carved_ = 0;
  std::size_t last_ = 0;
};

/// Whether freed objects are kept for reuse (not under AddressSanitizer).
inline constexpr bool recycling = !CORAY_DETAIL_ASAN;

/// The most freed objects of one kind a thread keeps while busy (see above).
inline constexpr std::size_t recycle_busy_limit = std::size_t{1} << 16;

/// One kind's list on its thread's chain of lists that have kept something.
struct recycle_list_link {
  std::size_t (*trim)() noexcept;
  recycle_list_link* next;
};
inline thread_local recycle_list_link* recycle_lists = nullptr;

/// Gives back to malloc what this thread's lists keep beyond each one's `Keep`; returns how
/// many objects went back. Cheap when nothing is over: a look at a few counts.
inline std::size_t trim_recycled() noexcept {
  std::size_t n = 0;
  for (recycle_list_link* l = recycle_lists; l != nullptr; l = l->next) n += l->trim();
  return n;
}

template <class T, std::size_t Keep>
struct recycled {
  static_assert(Keep <= recycle_busy_limit);
  static void* operator new(std::size_t n) {
    if constexpr (recycling) {
      kept& k = freed;
      if (k.head != nullptr && n == sizeof(T)) {
        void* p = k.head;
        k.head = *static_cast<void**>(p);
        --k.count;
        return p;
      }
      if (n == sizeof(T)) return carver().carve();
    }
    return ::operator new(n);
  }
  static void operator delete(void* p, std::size_t n) noexcept {
    static_assert(sizeof(T) >= sizeof(void*), "the list is threaded through freed objects");
    if constexpr (recycling) {
      kept& k = freed;
      if (k.count < recycle_busy_limit && n == sizeof(T) && !k.gone) {
        if (!k.armed) arm();
        *static_cast<void**>(p) = k.head;
        k.head = p;
        ++k.count;
        return;
      }
      if (n == sizeof(T)) return slab_chunk::give_back(p);
    }
    ::operator delete(p);  // unsized: clang enables sized deallocation only when asked
  }
  /// How many freed objects this thread keeps now.
  static std::size_t kept_here() noexcept { return freed.count; }

 private:
  /// The freed objects, a list threaded through their first bytes. Trivially destructible,
  /// so every use is a plain thread-local access; the reaper gives the objects back when the
  /// thread ends, after which deletes go straight to operator delete.
  struct kept {
    void* head = nullptr;
    std::size_t count = 0;
    bool armed = false;
    bool gone = false;
  };
  struct reaper {
    ~reaper() {
      free_down_to(0);
      freed.gone = true;
    }
  };
  [[gnu::noinline, gnu::cold]] static void arm() noexcept {
    static thread_local reaper r;
    (void)r;
    freed.armed = true;
    link.next = recycle_lists;
    recycle_lists = &link;
  }
  /// Frees all but Keep of this thread's kept objects (trim_recycled).
  static std::size_t trim() noexcept { return free_down_to(Keep); }
  /// Frees kept objects, newest first, until `keep` are left; returns how many it freed.
  static std::size_t free_down_to(std::size_t keep) noexcept {
    kept& k = freed;
    std::size_t n = 0;
    for (; k.count > keep; ++n) {
      void* p = k.head;
      k.head = *static_cast<void**>(p);
      --k.count;
      slab_chunk::give_back(p);  // only objects of sizeof(T) are kept
    }
    return n;
  }
  static inline thread_local recycle_list_link link{&trim, nullptr};
  static inline thread_local kept freed;
  /// This thread's carving of new objects (a function's, as T is incomplete here).
  static auto& carver() noexcept {
    static_assert(alignof(T) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__, "carved at its own alignment");
    static thread_local slab_carver<sizeof(T), alignof(T)> c;
    return c;
  }
};

/// Small buffers for a vector that most often holds a few bytes (a call's encoded
/// arguments): an allocation of up to `Small` bytes takes a whole `Small`-byte buffer from a
/// bounded per-thread list, as recycled<T, Keep> does; a larger one goes to operator new.
/// The vector gives back the capacity it asked for, so each buffer returns to its own kind.
template <class T, std::size_t Small, std::size_t Keep>
struct small_buffer_allocator {
  using value_type = T;
  template <class U>
  struct rebind {
    using other = small_buffer_allocator<U, Small, Keep>;
  };
  small_buffer_allocator() noexcept = default;
  template <class U>
  small_buffer_allocator(const small_buffer_allocator<U, Small, Keep>&) noexcept {}

  T* allocate(std::size_t n) {
    if (n <= Small / sizeof(T)) return static_cast<T*>(buffer::operator new(sizeof(buffer)));
    if (n > std::size_t(-1) / sizeof(T)) throw std::bad_array_new_length();
    return static_cast<T*>(::operator new(n * sizeof(T)));
  }
  void deallocate(T* p, std::size_t n) noexcept {
    if (n <= Small / sizeof(T))
      buffer::operator delete(p, sizeof(buffer));
    else
      ::operator delete(p);
  }
  template <class U>
  bool operator==(const small_buffer_allocator<U, Small, Keep>&) const noexcept {
    return true;
  }

 private:
  struct buffer : recycled<buffer, Keep> {
    alignas(std::max_align_t) unsigned char bytes[Small];
  };
  static_assert(alignof(T) <= alignof(std::max_align_t) && Small >= sizeof(T));
};

}  // namespace detail
CORAY_END_NAMESPACE
