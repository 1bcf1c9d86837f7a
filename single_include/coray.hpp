/// coray 0.1.0, single-header edition.
/// generated — do not edit: made by scripts/amalgamate.py from include/coray/;
/// change the headers there and run the script again.
/// SPDX-License-Identifier: MIT
#pragma once

// begin <coray/coray.hpp>
/// coray: Ray's model -- remote tasks, stateful actors, an immutable shared-memory object
/// store, co_await-able object refs -- for C++20, with worker processes that cost microseconds.

// begin <coray/actor.hpp>
/// Actors: a stateful object in a process of its own whose methods are called remotely.
/// ray::spawn<T>(args...) returns a ray::actor<T> at once and constructs T in the new process;
/// actor.call<&T::method>(args...) returns an object_ref to the method's result. Calls from
/// one caller run in the order they were made. The actor lives while a handle to it exists
/// in any process (or until ray::kill), and always ends with the driver.
///
///   struct counter {
///     explicit counter(int start) : n(start) {}
///     int incr(int by) { return n += by; }
///     int n;
///   };
///   ray::actor<counter> c = ray::spawn<counter>(10);
///   int v = ray::get(c.call<&counter::incr>(5));   // 15

// begin <coray/detail/runtime/actor_state.hpp>
/// A process's handle on an actor: counted locally, and each local handle counts once at the
/// driver, which ends the actor when no handle is left in any process.

#include <atomic>
// begin <coray/version.hpp>
/// coray's version and the versioned inline namespace that keeps two versions' symbols apart.

#define CORAY_VERSION_MAJOR 0
#define CORAY_VERSION_MINOR 1
#define CORAY_VERSION_PATCH 0
#define CORAY_VERSION \
  (CORAY_VERSION_MAJOR * 10000 + CORAY_VERSION_MINOR * 100 + CORAY_VERSION_PATCH)

/// Opens `namespace ray { inline namespace v0 {`: every public name lives there.
#define CORAY_BEGIN_NAMESPACE \
  namespace ray {             \
  inline namespace v0 {
#define CORAY_END_NAMESPACE \
  }                         \
  }
// end <coray/version.hpp>
#include <cstdint>
#include <utility>

CORAY_BEGIN_NAMESPACE
namespace detail {

struct actor_state {
  std::atomic<std::uint32_t> handles{1};
  std::uint64_t id = 0;
  std::uint32_t epoch = 0;
};

void release_actor_state(actor_state* s) noexcept;  // defined with the process (process.hpp)

class actor_ptr {
 public:
  actor_ptr() noexcept = default;
  static actor_ptr adopt(actor_state* s) noexcept {
    actor_ptr p;
    p.s_ = s;
    return p;
  }
  actor_ptr(const actor_ptr& o) noexcept : s_(o.s_) {
    if (s_) s_->handles.fetch_add(1, std::memory_order_relaxed);
  }
  actor_ptr(actor_ptr&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  actor_ptr& operator=(actor_ptr o) noexcept {
    std::swap(s_, o.s_);
    return *this;
  }
  ~actor_ptr() {
    if (s_ && s_->handles.fetch_sub(1, std::memory_order_acq_rel) == 1) release_actor_state(s_);
  }
  actor_state* get() const noexcept { return s_; }
  explicit operator bool() const noexcept { return s_ != nullptr; }

 private:
  actor_state* s_ = nullptr;
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/actor_state.hpp>
// begin <coray/detail/runtime/driver.hpp>
/// The driver: the user's process. It owns the segment, the supervisor and the results of
/// every call; it schedules calls onto task workers and actors (its own calls and the
/// nested ones workers make), holds back calls until their object_ref arguments are ready,
/// fails the calls of a process that dies (worker_crashed, actor_died) and asks the
/// supervisor for a replacement worker.

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
// begin <coray/detail/runtime/supervisor.hpp>
/// The supervisor: a small process forked from the driver when the runtime starts (before
/// the runtime makes any thread). It starts workers on the driver's request -- by fork(), so
/// a large or multi-threaded driver is never forked, or by posix_spawn() of /proc/self/exe --
/// reaps them, and reports each death to the driver through the segment. It dies with the
/// driver (PR_SET_PDEATHSIG), and its workers die with it, so nothing outlives a kill -9.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

// begin <coray/detail/runtime/worker.hpp>
/// A worker process -- a task worker or an actor: takes calls from its inbox, runs them (a
/// coroutine body may await nested calls while the process runs others), and replies
/// through its outbox. Calls made from here go to the driver, which schedules them like any
/// other. An actor first receives `construct`, then runs method calls in arrival order, at
/// most max_concurrency at once (only coroutine methods overlap).

#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
// begin <coray/detail/runtime/process.hpp>
/// What every coray process shares: the layout of the segment's control header, and the
/// event loop that drives a process (ready coroutines, incoming messages, timers, sleeping).
/// The driver and the workers specialise it.

#include <pthread.h>

#include <atomic>
#include <chrono>
// #include <coray/detail/runtime/actor_state.hpp>: inlined above
// begin <coray/detail/runtime/object_state.hpp>
/// A process's view of one object: pending, ready (bytes inline, or a block in the store
/// holding one reference) or failed. object_ref<T> handles count it; awaiting coroutines,
/// dependent tasks and wait operations register as waiters.

#include <atomic>
// begin <coray/detail/shm/segment.hpp>
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
// begin <coray/detail/shm/robust_mutex.hpp>
/// A process-shared mutex that survives its holder's death: the next locker gets the lock
/// (EOWNERDEAD is made consistent) instead of hanging forever. Used as the object store
/// allocator's lock, whose holder can be SIGKILLed at any instant.

#include <errno.h>
#include <pthread.h>
#include <time.h>

#include <atomic>
#include <chrono>
// begin <coray/errors.hpp>
/// The exceptions coray throws. All derive from ray::error and are thrown where the user
/// gets or awaits the result they concern.

// #include <coray/version.hpp>: inlined above
#include <cstddef>
#include <stdexcept>
#include <string>

CORAY_BEGIN_NAMESPACE

/// Base of every coray exception.
struct error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// A task (or actor method) threw: carries the remote exception's type name and what().
struct task_error : error {
  task_error(std::string type_name, std::string message, std::string function)
      : error(function + " raised " + type_name + ": " + message),
        type_name_(std::move(type_name)),
        message_(std::move(message)),
        function_(std::move(function)) {}
  /// Demangled type of the exception the callee threw, e.g. "std::out_of_range".
  const std::string& type_name() const noexcept { return type_name_; }
  /// The callee exception's what().
  const std::string& remote_what() const noexcept { return message_; }
  /// Name of the function that threw.
  const std::string& function() const noexcept { return function_; }

 private:
  std::string type_name_, message_, function_;
};

/// The worker process running a task died (signal or exit) before it replied.
struct worker_crashed : error {
  using error::error;
};

/// The actor's process died; pending and later calls fail with this.
struct actor_died : error {
  using error::error;
};

/// A value did not fit in the object store.
struct object_store_full : error {
  object_store_full(std::size_t requested, std::size_t free_bytes, std::size_t capacity)
      : error("object store full: requested " + std::to_string(requested) + " bytes, " +
              std::to_string(free_bytes) + " free of " + std::to_string(capacity)),
        requested_(requested),
        free_(free_bytes),
        capacity_(capacity) {}
  std::size_t requested() const noexcept { return requested_; }
  std::size_t free_bytes() const noexcept { return free_; }
  std::size_t capacity() const noexcept { return capacity_; }

 private:
  std::size_t requested_, free_, capacity_;
};

/// A get or wait with a timeout ran out of time.
struct get_timeout : error {
  using error::error;
};

/// Bytes that do not decode as the expected type (truncated, corrupted or foreign).
struct codec_error : error {
  using error::error;
};

/// The result's task was cancelled.
struct cancelled : error {
  using error::error;
};

/// The runtime is not running, or was used from the wrong process or thread.
struct runtime_error : error {
  using error::error;
};

CORAY_END_NAMESPACE
// end <coray/errors.hpp>
#include <cstdint>

CORAY_BEGIN_NAMESPACE
namespace detail {

class robust_mutex {
 public:
  robust_mutex() { init(false); }
  ~robust_mutex() { pthread_mutex_destroy(&m_); }
  robust_mutex(const robust_mutex&) = delete;
  robust_mutex& operator=(const robust_mutex&) = delete;

  /// Blocks. If the previous holder died holding it, takes it over and counts the event.
  void lock() { recover(pthread_mutex_lock(&m_)); }
  bool try_lock() {
    int rc = pthread_mutex_trylock(&m_);
    if (rc == EBUSY) return false;
    recover(rc);
    return true;
  }
  template <class TimePoint>
  bool timed_lock(const TimePoint&) {
    lock();
    return true;
  }
  /// Waits for the lock until `deadline` (the steady clock); false if it did not come.
  bool try_lock_until(std::chrono::steady_clock::time_point deadline) {
    const auto since = deadline.time_since_epoch();
    const auto secs = std::chrono::duration_cast<std::chrono::seconds>(since);
    const auto nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(since - secs);
    timespec ts{static_cast<time_t>(secs.count()), static_cast<long>(nanos.count())};
    int rc = pthread_mutex_clocklock(&m_, CLOCK_MONOTONIC, &ts);
    if (rc == ETIMEDOUT) return false;
    recover(rc);
    return true;
  }
  void unlock() { pthread_mutex_unlock(&m_); }
  /// How many times a holder died with the lock held.
  std::uint32_t owner_deaths() const noexcept { return deaths_.load(std::memory_order_relaxed); }

 protected:
  explicit robust_mutex(bool recursive) { init(recursive); }

 private:
  void init(bool recursive) {
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    if (recursive) pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&m_, &a);
    pthread_mutexattr_destroy(&a);
  }
  void recover(int rc) {
    if (rc == EOWNERDEAD) {
      pthread_mutex_consistent(&m_);
      deaths_.fetch_add(1, std::memory_order_relaxed);
    } else if (rc != 0) {
      throw ray::runtime_error("coray: process-shared mutex failed (error " + std::to_string(rc) +
                               ")");
    }
  }
  pthread_mutex_t m_;
  std::atomic<std::uint32_t> deaths_{0};
};

class robust_recursive_mutex : public robust_mutex {
 public:
  robust_recursive_mutex() : robust_mutex(true) {}
};

/// Mutex family for Boost.Interprocess memory algorithms.
struct robust_mutex_family {
  using mutex_type = robust_mutex;
  using recursive_mutex_type = robust_recursive_mutex;
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/shm/robust_mutex.hpp>
// #include <coray/errors.hpp>: inlined above
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
  /// touched). The fd is close-on-exec; the supervisor clears that for spawned workers.
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

  /// Spawned worker: maps the segment inherited as `fd`.
  void attach(int fd) {
    fd_ = fd;
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
    return p;
  }
  /// Like allocate(), aligned to `alignment` (a power of two): for cache-line aligned
  /// control structures.
  void* allocate_aligned(std::size_t bytes, std::size_t alignment) {
    void* p = alloc().allocate_aligned(bytes, alignment, std::nothrow);
    if (!p) throw object_store_full(bytes, alloc().get_free_memory(), alloc().get_size());
    return p;
  }
  void deallocate(void* p) noexcept { alloc().deallocate(p); }
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
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/shm/segment.hpp>
// #include <coray/errors.hpp>: inlined above
#include <cstdint>
#include <exception>
#include <span>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

struct object_state;

/// Something to notify when an object settles. `fn(ctx, state)` runs on the loop thread.
struct waiter {
  void (*fn)(void* ctx, object_state& s);
  void* ctx;
};

void release_state(object_state* s) noexcept;  // defined with the process (process.hpp)

/// Brings a spilled object back into the store (set by a driver that spills).
inline void (*restore_spilled)(object_state&) = nullptr;

struct object_state {
  enum class status : std::uint8_t { pending, ready, failed };

  std::atomic<std::uint32_t> handles{1};
  status st = status::pending;
  std::uint64_t id = 0;           // nonzero for results the driver tracks by id
  std::uint32_t epoch = 0;        // the runtime that made it; its block dies with that runtime
  std::vector<std::byte> bytes;   // inline value (16-byte aligned by the allocator)
  object_block* block = nullptr;  // value in the store; this state holds one reference
  std::exception_ptr error;
  std::vector<waiter> waiters;
  std::uint32_t pins = 0;          // readers of the block in place (views, calls in flight)
  std::int64_t spill_offset = -1;  // where the value lies in the spill file, if spilled
  std::uint64_t spill_size = 0;

  bool settled() const noexcept { return st != status::pending; }
  bool spilled() const noexcept { return spill_offset >= 0; }
  /// The encoded value, wherever it lies (a spilled one is brought back first). Precondition:
  /// ready. Throws object_store_full if a spilled value does not fit back.
  std::span<const std::byte> value_bytes() const {
    if (spilled() && restore_spilled) restore_spilled(const_cast<object_state&>(*this));
    if (block) return {block->data(), static_cast<std::size_t>(block->size)};
    return {bytes.data(), bytes.size()};
  }
  void rethrow_if_failed() const {
    if (st == status::failed) std::rethrow_exception(error);
  }
  /// Settles the object and notifies every waiter once.
  void settle(status s) {
    st = s;
    auto ws = std::move(waiters);
    waiters.clear();
    for (auto& w : ws) w.fn(w.ctx, *this);
  }
  void set_inline(std::span<const std::byte> b) {
    bytes.assign(b.begin(), b.end());
    settle(status::ready);
  }
  void set_block(object_block* b) {
    block = b;
    settle(status::ready);
  }
  void set_error(std::exception_ptr e) {
    error = std::move(e);
    settle(status::failed);
  }
};

/// An intrusive owning pointer to an object_state (one handle).
class state_ptr {
 public:
  state_ptr() noexcept = default;
  /// Adopts a handle already counted (a fresh state starts with one).
  static state_ptr adopt(object_state* s) noexcept {
    state_ptr p;
    p.s_ = s;
    return p;
  }
  static state_ptr share(object_state* s) noexcept {
    if (s) s->handles.fetch_add(1, std::memory_order_relaxed);
    return adopt(s);
  }
  state_ptr(const state_ptr& o) noexcept : s_(o.s_) {
    if (s_) s_->handles.fetch_add(1, std::memory_order_relaxed);
  }
  state_ptr(state_ptr&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  state_ptr& operator=(state_ptr o) noexcept {
    std::swap(s_, o.s_);
    return *this;
  }
  ~state_ptr() {
    if (s_ && s_->handles.fetch_sub(1, std::memory_order_acq_rel) == 1) release_state(s_);
  }
  object_state* get() const noexcept { return s_; }
  object_state* operator->() const noexcept { return s_; }
  object_state& operator*() const noexcept { return *s_; }
  explicit operator bool() const noexcept { return s_ != nullptr; }

 private:
  object_state* s_ = nullptr;
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/object_state.hpp>
// begin <coray/detail/runtime/wire.hpp>
/// The messages processes exchange through their mailboxes, and how values, errors and task
/// arguments are laid out in them. Every field is fixed-width; every offset is into the
/// shared segment.

#include <cxxabi.h>

// begin <coray/codec.hpp>
/// The binary codec for task arguments, results and objects in shared memory.
///
/// Wire format (native little-endian, no type tags: both sides know the type):
/// - bool: one byte, 0 or 1. Other arithmetic types, std::byte, enums: their native bytes.
/// - string, vector, span, string_view, deque, list, (multi)set, (multi)map, unordered_*:
///   u64 element count, then the elements (maps: key then value).
/// - Contiguous runs of raw-copyable elements (vector, span, string, string_view, std::array)
///   are written with one memcpy, preceded by zero padding that puts the first element at an
///   offset from the start of the whole buffer that is a multiple of min(alignof(T), 16).
///   That is what lets decode return span / string_view views into a 16-byte aligned buffer.
/// - std::array<T, N>: no count. pair, tuple, aggregates (Boost.PFR), serialize(): their parts
///   in order. optional: u8 tag 0/1, then the value. variant: u32 index, then the alternative.
///   monostate: nothing. chrono::duration: its count().
///
/// Decoding checks every length against the bytes left before using or allocating for it and
/// throws ray::codec_error on any malformed input, including trailing bytes.

#include <algorithm>
#include <bit>
#include <cassert>
// begin <coray/detail/codec/codec_traits.hpp>
/// Compile-time classification of the types the codec accepts (see coray/codec.hpp), and the
/// traits task.remote uses to match an argument's type against a parameter's type.

#include <array>
#include <boost/pfr/core.hpp>
#include <boost/pfr/tuple_size.hpp>
#include <chrono>
// #include <coray/version.hpp>: inlined above
#include <cstddef>
#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

// The archives; declared here so a user type's serialize(Archive&) can be detected before
// codec.hpp defines them (a template serialize needs no complete archive to be found).
class size_counter;
class writer;
class reader;

/// How the codec treats a (cv-unqualified, non-reference) type; `none` = unsupported.
enum class codec_kind : unsigned char {
  none,
  serialize_member,  // has serialize(Archive&): wins over every other kind
  boolean,
  arithmetic,
  enumeration,  // only enums with a fixed underlying type (see has_fixed_underlying)
  byte,
  string,       // std::basic_string
  string_view,  // std::basic_string_view: encodes like string, decodes as a view
  c_string,     // const char*: encode only, as std::string
  char_array,   // char[N]: encode only, as std::string up to the first NUL
  vector,
  span,  // encodes like vector; span<const raw T> decodes as a view
  array,
  pair,
  tuple,
  optional,
  variant,
  monostate,
  map,       // unique keys
  multimap,  // equal keys allowed, order kept
  set,       // unique keys
  multiset,  // equal keys allowed, order kept
  sequence,  // std::deque, std::list
  duration,
  aggregate,  // reflected field by field with Boost.PFR
};

template <class T>
struct std_kind : std::integral_constant<codec_kind, codec_kind::none> {};
template <class C, class A>
struct std_kind<std::basic_string<C, std::char_traits<C>, A>>
    : std::integral_constant<codec_kind, codec_kind::string> {};
template <class C>
struct std_kind<std::basic_string_view<C, std::char_traits<C>>>
    : std::integral_constant<codec_kind, codec_kind::string_view> {};
template <class T, class A>
struct std_kind<std::vector<T, A>> : std::integral_constant<codec_kind, codec_kind::vector> {};
template <class T, std::size_t E>
struct std_kind<std::span<T, E>> : std::integral_constant<codec_kind, codec_kind::span> {};
template <class T, std::size_t N>
struct std_kind<std::array<T, N>> : std::integral_constant<codec_kind, codec_kind::array> {};
template <class A, class B>
struct std_kind<std::pair<A, B>> : std::integral_constant<codec_kind, codec_kind::pair> {};
template <class... Ts>
struct std_kind<std::tuple<Ts...>> : std::integral_constant<codec_kind, codec_kind::tuple> {};
template <class T>
struct std_kind<std::optional<T>> : std::integral_constant<codec_kind, codec_kind::optional> {};
template <class... Ts>
struct std_kind<std::variant<Ts...>> : std::integral_constant<codec_kind, codec_kind::variant> {};
template <>
struct std_kind<std::monostate> : std::integral_constant<codec_kind, codec_kind::monostate> {};
template <class K, class V, class C, class A>
struct std_kind<std::map<K, V, C, A>> : std::integral_constant<codec_kind, codec_kind::map> {};
template <class K, class V, class H, class E, class A>
struct std_kind<std::unordered_map<K, V, H, E, A>>
    : std::integral_constant<codec_kind, codec_kind::map> {};
template <class K, class V, class C, class A>
struct std_kind<std::multimap<K, V, C, A>>
    : std::integral_constant<codec_kind, codec_kind::multimap> {};
template <class K, class V, class H, class E, class A>
struct std_kind<std::unordered_multimap<K, V, H, E, A>>
    : std::integral_constant<codec_kind, codec_kind::multimap> {};
template <class K, class C, class A>
struct std_kind<std::set<K, C, A>> : std::integral_constant<codec_kind, codec_kind::set> {};
template <class K, class H, class E, class A>
struct std_kind<std::unordered_set<K, H, E, A>>
    : std::integral_constant<codec_kind, codec_kind::set> {};
template <class K, class C, class A>
struct std_kind<std::multiset<K, C, A>> : std::integral_constant<codec_kind, codec_kind::multiset> {
};
template <class K, class H, class E, class A>
struct std_kind<std::unordered_multiset<K, H, E, A>>
    : std::integral_constant<codec_kind, codec_kind::multiset> {};
template <class T, class A>
struct std_kind<std::deque<T, A>> : std::integral_constant<codec_kind, codec_kind::sequence> {};
template <class T, class A>
struct std_kind<std::list<T, A>> : std::integral_constant<codec_kind, codec_kind::sequence> {};
template <class R, class P>
struct std_kind<std::chrono::duration<R, P>>
    : std::integral_constant<codec_kind, codec_kind::duration> {};

template <class T>
concept has_serialize_member = requires(T& t, size_counter& s, writer& w, reader& r) {
  t.serialize(s);
  t.serialize(w);
  t.serialize(r);
};

// Only enums with a fixed underlying type accept every value of it; for the others loading an
// out-of-range value is undefined, so decoding garbage could not be made safe.
template <class T>
concept has_fixed_underlying = std::is_enum_v<T> && requires {
  T{std::underlying_type_t<T>{}};
};

// Converts only to a base class of T, so `T{probe}` compiles only when T's first aggregate
// element is a base: PFR hard-errors on such types, this lets them be rejected quietly.
template <class T>
struct base_probe {
  template <class U>
  requires(std::is_base_of_v<std::remove_cv_t<U>, T> && !std::is_same_v<std::remove_cv_t<U>, T>)
  operator U&() const;
};

// Aggregates PFR can reflect and decoding can fill: default constructible (rules out reference
// members), move assignable (rules out reference and const members), no bases, no unions.
template <class T>
concept pfr_aggregate =
    std::is_class_v<T> && std::is_aggregate_v<T> && !std::is_union_v<T> &&
    std::is_default_constructible_v<T> && std::is_move_assignable_v<T> && !requires {
  T{base_probe<T>{}};
};

template <class T>
consteval codec_kind kind_of() {
  if constexpr (has_serialize_member<T>)
    return codec_kind::serialize_member;
  else if constexpr (std::is_same_v<T, bool>)
    return codec_kind::boolean;
  else if constexpr (std::is_arithmetic_v<T>)
    return codec_kind::arithmetic;
  else if constexpr (std::is_same_v<T, std::byte>)
    return codec_kind::byte;
  else if constexpr (std::is_enum_v<T>)
    return has_fixed_underlying<T> ? codec_kind::enumeration : codec_kind::none;
  else if constexpr (std::is_same_v<T, const char*>)
    return codec_kind::c_string;
  else if constexpr (std::is_array_v<T>)
    return std::is_same_v<std::remove_extent_t<T>, char> && std::rank_v<T> == 1 &&
                   std::extent_v<T> > 0
               ? codec_kind::char_array
               : codec_kind::none;
  else if constexpr (std_kind<T>::value != codec_kind::none)
    return std_kind<T>::value;
  else if constexpr (pfr_aggregate<T>)
    return codec_kind::aggregate;
  else
    return codec_kind::none;
}

/// Kind of T, ignoring cv and references.
template <class T>
inline constexpr codec_kind kind_v = kind_of<std::remove_cvref_t<T>>();

template <class T, std::size_t... I, class F>
consteval bool all_fields(std::index_sequence<I...>, [[maybe_unused]] F f) {
  return (f(std::type_identity<boost::pfr::tuple_element_t<I, T>>{}) && ...);
}
/// f(type_identity<Field>) is true for every field of the PFR aggregate T.
template <class T, class F>
consteval bool all_fields_of(F f) {
  return all_fields<T>(std::make_index_sequence<boost::pfr::tuple_size_v<T>>{}, f);
}
template <class T, std::size_t... I, class F>
consteval std::size_t sum_fields(std::index_sequence<I...>, [[maybe_unused]] F f) {
  return (std::size_t{0} + ... + f(std::type_identity<boost::pfr::tuple_element_t<I, T>>{}));
}
template <class T, class F>
consteval std::size_t sum_fields_of(F f) {
  return sum_fields<T>(std::make_index_sequence<boost::pfr::tuple_size_v<T>>{}, f);
}

template <class T>
consteval bool raw_copyable();

/// Raw-copyable: every byte pattern of sizeof(T) is a valid T and T has no padding, so
/// contiguous runs of T are written and read with one memcpy. Enums with a fixed underlying
/// type count as raw (any underlying value is a valid enum value).
template <class T>
inline constexpr bool is_raw_copyable_v = raw_copyable<std::remove_cv_t<T>>();

template <class T>
consteval bool raw_copyable() {
  constexpr codec_kind k = kind_of<T>();
  if constexpr (k == codec_kind::arithmetic || k == codec_kind::enumeration ||
                k == codec_kind::byte) {
    return true;
  } else if constexpr (k == codec_kind::array) {
    return is_raw_copyable_v<typename T::value_type>;
  } else if constexpr (k == codec_kind::duration) {
    return is_raw_copyable_v<typename T::rep> && sizeof(T) == sizeof(typename T::rep) &&
           std::is_trivially_copyable_v<T>;
  } else if constexpr (k == codec_kind::aggregate) {
    if constexpr (!std::is_trivially_copyable_v<T>) {
      return false;
    } else {
      constexpr bool fields_raw =
          all_fields_of<T>([]<class F>(std::type_identity<F>) { return is_raw_copyable_v<F>; });
      if constexpr (!fields_raw)
        return false;
      else
        return sizeof(T) ==
               sum_fields_of<T>([]<class F>(std::type_identity<F>) { return sizeof(F); });
    }
  } else {
    return false;
  }
}

template <class T>
consteval bool encodable();
template <class T>
consteval bool decodable();

template <class... Ts>
consteval bool all_encodable() {
  return (encodable<std::remove_cvref_t<Ts>>() && ...);  // refs: forward_as_tuple(args...)
}

template <class Q>
consteval bool encodable() {
  using T = std::remove_cv_t<Q>;
  constexpr codec_kind k = kind_of<T>();
  if constexpr (k == codec_kind::none) {
    return false;
  } else if constexpr (k == codec_kind::vector || k == codec_kind::span || k == codec_kind::array ||
                       k == codec_kind::optional || k == codec_kind::set ||
                       k == codec_kind::multiset || k == codec_kind::sequence) {
    return all_encodable<typename T::value_type>();
  } else if constexpr (k == codec_kind::map || k == codec_kind::multimap) {
    return all_encodable<typename T::key_type, typename T::mapped_type>();
  } else if constexpr (k == codec_kind::pair) {
    return all_encodable<typename T::first_type, typename T::second_type>();
  } else if constexpr (k == codec_kind::tuple || k == codec_kind::variant) {
    return []<template <class...> class L, class... Ts>(std::type_identity<L<Ts...>>) {
      return all_encodable<Ts...>();
    }(std::type_identity<T>{});
  } else if constexpr (k == codec_kind::duration) {
    return all_encodable<typename T::rep>();
  } else if constexpr (k == codec_kind::aggregate) {
    return all_fields_of<T>([]<class F>(std::type_identity<F>) { return encodable<F>(); });
  } else {
    return true;
  }
}

template <class... Ts>
consteval bool all_decodable() {
  return (decodable<Ts>() && ...);
}

// Decoding fills default-constructed objects in place, so every decoded part must be
// default constructible and non-const.
template <class T>
consteval bool decodable() {
  constexpr codec_kind k = kind_of<std::remove_cv_t<T>>();
  if constexpr (std::is_const_v<T> || std::is_volatile_v<T>) {
    return false;
  } else if constexpr (!std::is_default_constructible_v<T> || !encodable<T>()) {
    return false;
  } else if constexpr (k == codec_kind::c_string || k == codec_kind::char_array) {
    return false;  // nothing to own the characters
  } else if constexpr (k == codec_kind::span) {
    // Views into the input: only read-only spans of raw elements.
    return T::extent == std::dynamic_extent && std::is_const_v<typename T::element_type> &&
           is_raw_copyable_v<typename T::element_type>;
  } else if constexpr (k == codec_kind::vector || k == codec_kind::array ||
                       k == codec_kind::optional || k == codec_kind::sequence) {
    return all_decodable<typename T::value_type>();
  } else if constexpr (k == codec_kind::set || k == codec_kind::multiset) {
    return all_decodable<typename T::key_type>();
  } else if constexpr (k == codec_kind::map || k == codec_kind::multimap) {
    return all_decodable<typename T::key_type, typename T::mapped_type>();
  } else if constexpr (k == codec_kind::pair) {
    return all_decodable<typename T::first_type, typename T::second_type>();
  } else if constexpr (k == codec_kind::tuple || k == codec_kind::variant) {
    return []<template <class...> class L, class... Ts>(std::type_identity<L<Ts...>>) {
      return all_decodable<Ts...>();
    }(std::type_identity<T>{});
  } else if constexpr (k == codec_kind::duration) {
    return all_decodable<typename T::rep>();
  } else if constexpr (k == codec_kind::aggregate) {
    return all_fields_of<T>([]<class F>(std::type_identity<F>) { return decodable<F>(); });
  } else {
    return true;
  }
}

/// Fewest bytes any value of T encodes to (padding not counted). Decoding rejects a count of N
/// elements when N * this exceeds the bytes left. serialize() types count 0: unknown.
template <class T>
consteval std::size_t min_encoded_size() {
  constexpr codec_kind k = kind_of<std::remove_cv_t<T>>();
  if constexpr (k == codec_kind::boolean) {
    return 1;
  } else if constexpr (k == codec_kind::arithmetic || k == codec_kind::enumeration ||
                       k == codec_kind::byte) {
    return sizeof(T);
  } else if constexpr (k == codec_kind::array) {
    return std::tuple_size_v<T> * min_encoded_size<typename T::value_type>();
  } else if constexpr (k == codec_kind::pair) {
    return min_encoded_size<typename T::first_type>() + min_encoded_size<typename T::second_type>();
  } else if constexpr (k == codec_kind::tuple) {
    return []<class... Ts>(std::type_identity<std::tuple<Ts...>>) {
      return (std::size_t{0} + ... + min_encoded_size<Ts>());
    }(std::type_identity<std::remove_cv_t<T>>{});
  } else if constexpr (k == codec_kind::optional) {
    return 1;
  } else if constexpr (k == codec_kind::variant) {
    return 4;
  } else if constexpr (k == codec_kind::duration) {
    return min_encoded_size<typename T::rep>();
  } else if constexpr (k == codec_kind::aggregate) {
    return sum_fields_of<std::remove_cv_t<T>>(
        []<class F>(std::type_identity<F>) { return min_encoded_size<F>(); });
  } else if constexpr (k == codec_kind::monostate || k == codec_kind::serialize_member) {
    return 0;
  } else {
    return 8;  // every counted container starts with its u64 count
  }
}
template <class T>
inline constexpr std::size_t min_encoded_size_v = min_encoded_size<T>();

inline constexpr std::size_t not_fixed = static_cast<std::size_t>(-1);

template <class... S>
consteval std::size_t sum_fixed(S... sizes) {
  return ((sizes != not_fixed) && ...) ? (std::size_t{0} + ... + sizes) : not_fixed;
}

/// Size every value of T encodes to wherever it sits, or not_fixed; lets encoded_size skip
/// walking containers of such elements.
template <class T>
consteval std::size_t fixed_encoded_size();
template <class T, std::size_t... I>
consteval std::size_t fixed_fields_size(std::index_sequence<I...>) {
  return sum_fixed(fixed_encoded_size<boost::pfr::tuple_element_t<I, T>>()...);
}

template <class T>
consteval std::size_t fixed_encoded_size() {
  constexpr codec_kind k = kind_of<std::remove_cv_t<T>>();
  if constexpr (k == codec_kind::boolean) {
    return 1;
  } else if constexpr (k == codec_kind::arithmetic || k == codec_kind::enumeration ||
                       k == codec_kind::byte) {
    return sizeof(T);
  } else if constexpr (k == codec_kind::monostate) {
    return 0;
  } else if constexpr (k == codec_kind::array) {
    using E = typename T::value_type;
    // A raw array is padded to its alignment, so its size depends on where it starts.
    if constexpr (is_raw_copyable_v<E>)
      return alignof(E) == 1 ? sizeof(T) : not_fixed;
    else if constexpr (fixed_encoded_size<E>() == not_fixed)
      return not_fixed;
    else
      return std::tuple_size_v<T> * fixed_encoded_size<E>();
  } else if constexpr (k == codec_kind::pair) {
    return sum_fixed(fixed_encoded_size<typename T::first_type>(),
                     fixed_encoded_size<typename T::second_type>());
  } else if constexpr (k == codec_kind::tuple) {
    return []<class... Ts>(std::type_identity<std::tuple<Ts...>>) {
      return sum_fixed(fixed_encoded_size<Ts>()...);
    }(std::type_identity<std::remove_cv_t<T>>{});
  } else if constexpr (k == codec_kind::duration) {
    return fixed_encoded_size<typename T::rep>();
  } else if constexpr (k == codec_kind::aggregate) {
    using U = std::remove_cv_t<T>;
    return fixed_fields_size<U>(std::make_index_sequence<boost::pfr::tuple_size_v<U>>{});
  } else {
    return not_fixed;
  }
}
template <class T>
inline constexpr std::size_t fixed_encoded_size_v = fixed_encoded_size<T>();

template <class T>
inline constexpr bool is_encodable = encodable<std::remove_cvref_t<T>>();
template <class T>
inline constexpr bool is_decodable = !std::is_reference_v<T> && decodable<std::remove_cv_t<T>>();

template <class P>
struct storage_type {
  using type = P;
};
template <class T, std::size_t E>
struct storage_type<std::span<T, E>> {
  using type = std::vector<std::remove_cv_t<T>>;
};
template <class C, class Tr>
struct storage_type<std::basic_string_view<C, Tr>> {
  using type = std::basic_string<C, Tr>;
};

/// The owning type a parameter of type Param is encoded as and decoded from:
/// span<const T> -> vector<T>, string_view -> string, const T& -> T.
template <class Param>
using storage_type_t = typename storage_type<std::remove_cvref_t<Param>>::type;

template <class S, class A>
consteval bool same_wire_sequence() {
  constexpr codec_kind sk = kind_of<S>(), ak = kind_of<A>();
  if constexpr (sk == codec_kind::vector) {
    // vector<T> and span<T>/span<const T> write the same count + elements.
    if constexpr (ak == codec_kind::vector || ak == codec_kind::span)
      return std::is_same_v<typename S::value_type, std::remove_cv_t<typename A::value_type>>;
    else
      return false;
  } else if constexpr (sk == codec_kind::string) {
    using C = typename S::value_type;
    if constexpr (ak == codec_kind::string || ak == codec_kind::string_view)
      return std::is_same_v<C, typename A::value_type>;
    else
      return std::is_same_v<C, char> &&
             (ak == codec_kind::c_string || ak == codec_kind::char_array);
  } else {
    return false;
  }
}

/// True when `encode(arg)` (Arg's own encoding) decodes correctly as Param: the same type
/// after removing cv/ref, or the view/owner pairs span<const T> | vector<T> with
/// vector<T> | span<T> | span<const T>, and string_view | string with string | string_view |
/// const char* | char[N]. std::array<T, N> is deliberately not wire compatible with span<const
/// T>: arrays carry no count, so callers convert them (std::span is constructible from them).
template <class Param, class Arg>
inline constexpr bool wire_compatible_v =
    is_encodable<Arg> && (std::is_same_v<std::remove_cvref_t<Param>, std::remove_cvref_t<Arg>> ||
                          same_wire_sequence<storage_type_t<Param>, std::remove_cvref_t<Arg>>());

/// Readable name of T for error messages, e.g. "std::vector<int>".
template <class T>
constexpr std::string_view type_name() {
#if defined(__clang__) || defined(__GNUC__)
  // clang: "... [T = int]"; gcc: "... [with T = int; std::string_view = ...]"
  std::string_view p = __PRETTY_FUNCTION__;
  const std::size_t b = p.find("T = ") + 4;
  std::size_t e = p.find("; ", b);
  if (e == std::string_view::npos) e = p.rfind(']');
  return p.substr(b, e - b);
#else
  return "value";
#endif
}

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/codec/codec_traits.hpp>
// #include <coray/errors.hpp>: inlined above
// #include <coray/version.hpp>: inlined above
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

static_assert(std::endian::native == std::endian::little,
              "coray's codec writes native little-endian data");

CORAY_BEGIN_NAMESPACE
namespace detail {

/// Padding never exceeds this, so every view decoded from a buffer aligned to it is aligned.
inline constexpr std::size_t max_wire_align = 16;
template <class T>
inline constexpr std::size_t wire_align_v = alignof(T) < max_wire_align ? alignof(T)
                                                                        : max_wire_align;

/// Elements that may encode to no bytes (monostate, empty structs, serialize() types) escape
/// the bytes-left bound on counts; such a count may exceed the bytes left by at most this.
inline constexpr std::uint64_t max_extra_empty_elements = std::uint64_t{1} << 20;

constexpr std::size_t padding_for(std::size_t offset, std::size_t align) noexcept {
  return (align - offset % align) % align;
}

/// type_name<T>() tidied for messages: "std::string" rather than libstdc++'s spelling.
template <class T>
std::string display_name() {
  std::string s(type_name<T>());
  const auto replace_all = [&s](std::string_view from, std::string_view to) {
    for (auto i = s.find(from); i != std::string::npos; i = s.find(from, i + to.size()))
      s.replace(i, from.size(), to);
  };
  replace_all("__cxx11::", "");
  replace_all("std::basic_string<char>", "std::string");
  replace_all("std::basic_string_view<char>", "std::string_view");
  return s;
}

[[noreturn, gnu::cold, gnu::noinline]] inline void throw_codec_error(const std::string& what) {
  throw codec_error("codec: " + what);
}

template <class Out, class T>
void encode_value(Out& out, const T& value);
template <class T>
void decode_value(reader& in, T& value);

/// Output archive that only counts the bytes writer would write (padding included).
class size_counter {
 public:
  static constexpr bool is_loading = false;

  template <class... Ts>
  void operator()(const Ts&... values) {
    (encode_value(*this, values), ...);
  }
  std::size_t size() const noexcept { return size_; }
  std::size_t offset() const noexcept { return size_; }
  void put(const void*, std::size_t n) noexcept { size_ += n; }
  void pad(std::size_t align) noexcept { size_ += padding_for(size_, align); }

 private:
  std::size_t size_ = 0;
};

/// Output archive writing into a buffer sized by size_counter; it does not check bounds
/// beyond asserts, the exact size is the caller's precondition.
class writer {
 public:
  static constexpr bool is_loading = false;

  explicit writer(std::span<std::byte> out) noexcept
      : begin_(out.data()), pos_(out.data()), end_(out.data() + out.size()) {}

  template <class... Ts>
  void operator()(const Ts&... values) {
    (encode_value(*this, values), ...);
  }
  std::size_t offset() const noexcept { return static_cast<std::size_t>(pos_ - begin_); }
  std::size_t remaining() const noexcept { return static_cast<std::size_t>(end_ - pos_); }
  void put(const void* data, std::size_t n) noexcept {
    assert(n <= remaining() && "encode_to: buffer smaller than encoded_size()");
    if (n != 0) std::memcpy(pos_, data, n);  // data may be null when n == 0
    pos_ += n;
  }
  void pad(std::size_t align) noexcept {
    const std::size_t n = padding_for(offset(), align);
    assert(n <= remaining() && "encode_to: buffer smaller than encoded_size()");
    if (n != 0) std::memset(pos_, 0, n);
    pos_ += n;
  }

 private:
  std::byte* begin_;
  std::byte* pos_;
  std::byte* end_;
};

/// Input archive: every read is bounds checked and throws codec_error when the input is short.
/// Offsets count from the start of the buffer it was given, which must be where encoding began.
class reader {
 public:
  static constexpr bool is_loading = true;

  explicit reader(std::span<const std::byte> in) noexcept
      : begin_(in.data()), pos_(in.data()), end_(in.data() + in.size()) {}

  template <class... Ts>
  void operator()(Ts&... values) {
    (decode_value(*this, values), ...);
  }
  std::size_t offset() const noexcept { return static_cast<std::size_t>(pos_ - begin_); }
  std::size_t remaining() const noexcept { return static_cast<std::size_t>(end_ - pos_); }

  /// The next n bytes, consumed; T and what only name them in the error.
  template <class T>
  const std::byte* take(std::size_t n, const char* what) {
    if (n > remaining()) [[unlikely]]
      fail_truncated<T>(what, n);
    const std::byte* p = pos_;
    pos_ += n;
    return p;
  }
  template <class T, class V>
  V take_scalar(const char* what) {
    V v;
    std::memcpy(&v, take<T>(sizeof(V), what), sizeof(V));
    return v;
  }
  template <class T>
  void skip_padding(std::size_t align) {
    take<T>(padding_for(offset(), align), "alignment padding");
  }
  /// Reads a u64 element count and rejects it unless count * MinElement bytes are left.
  template <class T, std::size_t MinElement>
  std::size_t take_count() {
    const auto n = take_scalar<T, std::uint64_t>("count");
    const std::size_t left = remaining();
    bool fits;
    if constexpr (MinElement != 0)
      fits = n <= left / MinElement;  // no overflow, unlike n * MinElement
    else
      fits = n <= left + max_extra_empty_elements;
    if (!fits) [[unlikely]]
      fail_count<T>(n, MinElement);
    return static_cast<std::size_t>(n);
  }
  /// Count, padding and bytes of a contiguous run of raw E; returns its first byte.
  template <class T, class E>
  std::pair<const std::byte*, std::size_t> take_raw_run() {
    const std::size_t n = take_count<T, sizeof(E)>();
    skip_padding<T>(wire_align_v<E>);
    return {take<T>(n * sizeof(E), "elements"), n};
  }

  template <class T>
  [[noreturn, gnu::cold, gnu::noinline]] void fail_truncated(const char* what,
                                                             std::size_t need) const {
    throw_codec_error("truncated input reading " + display_name<T>() + " " + what + " (need " +
                      std::to_string(need) + " bytes, " + std::to_string(remaining()) + " left)");
  }
  template <class T>
  [[noreturn, gnu::cold, gnu::noinline]] void fail_count(std::uint64_t n,
                                                         std::size_t min_element) const {
    throw_codec_error(display_name<T>() + " count " + std::to_string(n) + " exceeds the input (" +
                      std::to_string(remaining()) + " bytes left, at least " +
                      std::to_string(min_element) + " per element)");
  }
  template <class T>
  [[noreturn, gnu::cold, gnu::noinline]] void fail(const std::string& what) const {
    throw_codec_error("invalid " + display_name<T>() + ": " + what + " at offset " +
                      std::to_string(offset()));
  }

 private:
  const std::byte* begin_;
  const std::byte* pos_;
  const std::byte* end_;
};

// Count then elements; contiguous raw runs as one padded memcpy.
template <class E, bool Contiguous, class Out, class Range>
void encode_elements(Out& out, const Range& range, std::size_t n) {
  const std::uint64_t count = n;
  out.put(&count, sizeof count);
  if constexpr (Contiguous && is_raw_copyable_v<E>) {
    out.pad(wire_align_v<E>);
    out.put(std::data(range), n * sizeof(E));
  } else if constexpr (std::is_same_v<Out, size_counter> && fixed_encoded_size_v<E> != not_fixed) {
    out.put(nullptr, n * fixed_encoded_size_v<E>);
  } else {
    for (const auto& e : range) encode_value(out, e);
  }
}

template <class Out, class T>
void encode_value(Out& out, const T& v) {
  constexpr codec_kind k = kind_v<T>;
  static_assert(k != codec_kind::none, "coray codec: type is not encodable (see is_encodable_v)");
  if constexpr (k == codec_kind::serialize_member) {
    const_cast<T&>(v).serialize(out);  // serialize() is one non-const member for all archives
  } else if constexpr (k == codec_kind::boolean) {
    const unsigned char b = v ? 1 : 0;
    out.put(&b, 1);
  } else if constexpr (k == codec_kind::arithmetic || k == codec_kind::enumeration ||
                       k == codec_kind::byte) {
    out.put(&v, sizeof(T));
  } else if constexpr (k == codec_kind::string || k == codec_kind::string_view) {
    encode_elements<typename T::value_type, true>(out, v, v.size());
  } else if constexpr (k == codec_kind::c_string) {
    const std::string_view s = v != nullptr ? std::string_view(v) : std::string_view();
    encode_elements<char, true>(out, s, s.size());
  } else if constexpr (k == codec_kind::char_array) {
    // A string literal or char buffer: the characters up to the first NUL.
    const void* nul = std::memchr(v, 0, std::extent_v<T>);
    const std::string_view s(v, nul != nullptr
                                    ? static_cast<std::size_t>(static_cast<const char*>(nul) - v)
                                    : std::extent_v<T>);
    encode_elements<char, true>(out, s, s.size());
  } else if constexpr (k == codec_kind::vector) {
    using E = typename T::value_type;
    encode_elements<E, !std::is_same_v<E, bool>>(out, v, v.size());
  } else if constexpr (k == codec_kind::span) {
    encode_elements<std::remove_cv_t<typename T::element_type>, true>(out, v, v.size());
  } else if constexpr (k == codec_kind::array) {
    if constexpr (is_raw_copyable_v<typename T::value_type>) {
      out.pad(wire_align_v<typename T::value_type>);
      out.put(v.data(), sizeof(T));
    } else {
      for (const auto& e : v) encode_value(out, e);
    }
  } else if constexpr (k == codec_kind::pair) {
    encode_value(out, v.first);
    encode_value(out, v.second);
  } else if constexpr (k == codec_kind::tuple) {
    std::apply([&out](const auto&... e) { (encode_value(out, e), ...); }, v);
  } else if constexpr (k == codec_kind::optional) {
    const unsigned char tag = v.has_value() ? 1 : 0;
    out.put(&tag, 1);
    if (v) encode_value(out, *v);
  } else if constexpr (k == codec_kind::variant) {
    // A valueless variant writes index 0xffffffff, which decodes as codec_error.
    const auto index = static_cast<std::uint32_t>(v.index());
    out.put(&index, sizeof index);
    if (!v.valueless_by_exception())
      std::visit([&out](const auto& alt) { encode_value(out, alt); }, v);
  } else if constexpr (k == codec_kind::monostate) {
  } else if constexpr (k == codec_kind::map || k == codec_kind::multimap || k == codec_kind::set ||
                       k == codec_kind::multiset || k == codec_kind::sequence) {
    encode_elements<typename T::value_type, false>(out, v, v.size());
  } else if constexpr (k == codec_kind::duration) {
    const typename T::rep count = v.count();
    encode_value(out, count);
  } else if constexpr (k == codec_kind::aggregate) {
    boost::pfr::for_each_field(v, [&out](const auto& field) { encode_value(out, field); });
  }
}

template <class T, class E>
void decode_raw_vector(reader& in, T& v) {
  const auto [p, n] = in.take_raw_run<T, E>();
  if (reinterpret_cast<std::uintptr_t>(p) % alignof(E) == 0) {
    v.assign(reinterpret_cast<const E*>(p), reinterpret_cast<const E*>(p) + n);  // one copy
  } else {
    v.resize(n);
    if (n != 0) std::memcpy(v.data(), p, n * sizeof(E));
  }
}

template <class T, class E>
std::span<const E> decode_view(reader& in) {
  const auto [p, n] = in.take_raw_run<T, E>();
  if (reinterpret_cast<std::uintptr_t>(p) % alignof(E) != 0) [[unlikely]]
    in.fail<T>("elements misaligned for a view (decode views from a 16-byte aligned buffer)");
  return {reinterpret_cast<const E*>(p), n};
}

// Maps and sets: unique-key containers reject duplicates so a value never silently shrinks.
template <class T, bool Unique, class Insert>
void decode_associative(reader& in, T& c, std::size_t n, Insert insert) {
  c.clear();
  if constexpr (requires { c.reserve(n); }) c.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t before = c.size();
    insert();
    if (Unique && c.size() == before) [[unlikely]]
      in.fail<T>("duplicate key");
  }
}

// Default-constructs alternative `index` in v, then decodes into it.
template <class T, std::size_t... I>
void decode_alternative(reader& in, T& v, std::size_t index, std::index_sequence<I...>) {
  (void)((index == I && (decode_value(in, v.template emplace<I>()), true)) || ...);
}

template <class T>
void decode_value(reader& in, T& v) {
  constexpr codec_kind k = kind_v<T>;
  static_assert(k != codec_kind::none && !std::is_const_v<T>,
                "coray codec: type is not decodable (see is_decodable_v)");
  if constexpr (k == codec_kind::serialize_member) {
    v.serialize(in);
  } else if constexpr (k == codec_kind::boolean) {
    const auto b = in.take_scalar<T, unsigned char>("value");
    if (b > 1) [[unlikely]]
      in.fail<T>("byte " + std::to_string(b) + " is not 0 or 1");
    v = b != 0;
  } else if constexpr (k == codec_kind::arithmetic || k == codec_kind::enumeration ||
                       k == codec_kind::byte) {
    std::memcpy(&v, in.take<T>(sizeof(T), "value"), sizeof(T));
  } else if constexpr (k == codec_kind::string) {
    using C = typename T::value_type;
    const auto [p, n] = in.take_raw_run<T, C>();
    if constexpr (std::is_same_v<C, char>) {
      v.assign(reinterpret_cast<const char*>(p), n);
    } else {
      v.resize(n);
      if (n != 0) std::memcpy(v.data(), p, n * sizeof(C));
    }
  } else if constexpr (k == codec_kind::string_view) {
    using C = typename T::value_type;
    const std::span<const C> s = decode_view<T, C>(in);
    v = T(s.data(), s.size());
  } else if constexpr (k == codec_kind::span) {
    v = decode_view<T, std::remove_cv_t<typename T::element_type>>(in);
  } else if constexpr (k == codec_kind::vector) {
    using E = typename T::value_type;
    if constexpr (is_raw_copyable_v<E>) {
      decode_raw_vector<T, E>(in, v);
    } else if constexpr (std::is_same_v<E, bool>) {
      const std::size_t n = in.take_count<T, 1>();
      const std::byte* p = in.take<T>(n, "elements");
      v.assign(n, false);
      for (std::size_t i = 0; i < n; ++i) {
        const auto b = static_cast<unsigned char>(p[i]);
        if (b > 1) [[unlikely]]
          in.fail<T>("element byte " + std::to_string(b) + " is not 0 or 1");
        v[i] = b != 0;
      }
    } else {
      const std::size_t n = in.take_count<T, min_encoded_size_v<E>>();
      v.clear();
      v.reserve(std::min(n, in.remaining()));  // empty elements may be more than bytes left
      for (std::size_t i = 0; i < n; ++i) decode_value(in, v.emplace_back());
    }
  } else if constexpr (k == codec_kind::sequence) {
    const std::size_t n = in.take_count<T, min_encoded_size_v<typename T::value_type>>();
    v.clear();
    for (std::size_t i = 0; i < n; ++i) decode_value(in, v.emplace_back());
  } else if constexpr (k == codec_kind::array) {
    if constexpr (is_raw_copyable_v<typename T::value_type>) {
      in.skip_padding<T>(wire_align_v<typename T::value_type>);
      std::memcpy(v.data(), in.take<T>(sizeof(T), "elements"), sizeof(T));
    } else {
      for (auto& e : v) decode_value(in, e);
    }
  } else if constexpr (k == codec_kind::pair) {
    decode_value(in, v.first);
    decode_value(in, v.second);
  } else if constexpr (k == codec_kind::tuple) {
    std::apply([&in](auto&... e) { (decode_value(in, e), ...); }, v);
  } else if constexpr (k == codec_kind::optional) {
    const auto tag = in.take_scalar<T, unsigned char>("tag");
    if (tag == 0) {
      v.reset();
    } else if (tag == 1) {
      decode_value(in, v.emplace());
    } else [[unlikely]] {
      in.fail<T>("tag " + std::to_string(tag) + " is not 0 or 1");
    }
  } else if constexpr (k == codec_kind::variant) {
    constexpr std::size_t size = std::variant_size_v<T>;
    const auto index = in.take_scalar<T, std::uint32_t>("index");
    if (index >= size) [[unlikely]]
      in.fail<T>("index " + std::to_string(index) + " out of range (" + std::to_string(size) +
                 " alternatives)");
    decode_alternative(in, v, index, std::make_index_sequence<size>{});
  } else if constexpr (k == codec_kind::monostate) {
  } else if constexpr (k == codec_kind::map || k == codec_kind::multimap) {
    using K = typename T::key_type;
    using M = typename T::mapped_type;
    const std::size_t n = in.take_count<T, min_encoded_size_v<K> + min_encoded_size_v<M>>();
    decode_associative<T, k == codec_kind::map>(in, v, n, [&] {
      K key{};
      M mapped{};
      decode_value(in, key);
      decode_value(in, mapped);
      v.emplace_hint(v.end(), std::move(key), std::move(mapped));  // keeps multimap order
    });
  } else if constexpr (k == codec_kind::set || k == codec_kind::multiset) {
    using K = typename T::key_type;
    const std::size_t n = in.take_count<T, min_encoded_size_v<K>>();
    decode_associative<T, k == codec_kind::set>(in, v, n, [&] {
      K key{};
      decode_value(in, key);
      v.emplace_hint(v.end(), std::move(key));
    });
  } else if constexpr (k == codec_kind::duration) {
    typename T::rep count{};
    decode_value(in, count);
    v = T(count);
  } else if constexpr (k == codec_kind::aggregate) {
    boost::pfr::for_each_field(v, [&in](auto& field) { decode_value(in, field); });
  }
}

}  // namespace detail

/// True for every type encode / encoded_size accept (cv and references ignored); false, never
/// a hard error, for the rest, e.g. pointers other than const char*, std::unique_ptr,
/// structs with reference members, enums without a fixed underlying type.
template <class T>
inline constexpr bool is_encodable_v = detail::is_encodable<T>;

/// True for every T decode<T> accepts: encodable, default constructible all the way down,
/// and not const char* / char[N] (encode-only). span<const T> (raw T) and string_view decode
/// as views into the input.
template <class T>
inline constexpr bool is_decodable_v = detail::is_decodable<T>;

/// Exact number of bytes encode_to writes for value.
template <class T>
std::size_t encoded_size(const T& value) {
  static_assert(is_encodable_v<T>, "ray::encoded_size: T is not encodable (see is_encodable_v)");
  detail::size_counter counter;
  detail::encode_value(counter, value);
  return counter.size();
}

/// Writes value into out, which must be exactly encoded_size(value) bytes; never allocates.
/// Views decoded later are aligned only if out.data() is 16-byte aligned.
template <class T>
void encode_to(std::span<std::byte> out, const T& value) {
  static_assert(is_encodable_v<T>, "ray::encode_to: T is not encodable (see is_encodable_v)");
  assert(out.size() == encoded_size(value) && "encode_to: out.size() != encoded_size(value)");
  detail::writer w(out);
  detail::encode_value(w, value);
  assert(w.remaining() == 0);
}

/// value's encoding in a fresh buffer (operator new's alignment, 16 bytes on common targets).
template <class T>
std::vector<std::byte> encode(const T& value) {
  std::vector<std::byte> out(encoded_size(value));
  encode_to(std::span<std::byte>(out), value);
  return out;
}

/// Decodes a T that must span all of bytes. Throws codec_error on malformed, truncated or
/// trailing input. span / string_view parts point into bytes, which must then be 16-byte
/// aligned (a misaligned element throws codec_error) and outlive them.
template <class T>
T decode(std::span<const std::byte> bytes) {
  static_assert(!std::is_reference_v<T>, "ray::decode: T must not be a reference");
  static_assert(is_decodable_v<T>, "ray::decode: T is not decodable (see is_decodable_v)");
  std::remove_cv_t<T> value{};
  detail::reader in(bytes);
  detail::decode_value(in, value);
  if (in.remaining() != 0) [[unlikely]]
    detail::throw_codec_error(std::to_string(in.remaining()) + " trailing bytes after " +
                              detail::display_name<T>() + " (input " +
                              std::to_string(bytes.size()) + " bytes)");
  return value;
}

CORAY_END_NAMESPACE
// end <coray/codec.hpp>
// begin <coray/detail/shm/futex.hpp>
/// Cross-process waking: a doorbell a process sleeps on after spinning, rung by senders only
/// when someone sleeps.

#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <climits>
// #include <coray/version.hpp>: inlined above
#include <cstdint>

CORAY_BEGIN_NAMESPACE
namespace detail {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

/// Sleeps while `*word == expected`, at most `timeout` (negative: forever). Shared futex:
/// works across processes mapping the same memory.
inline void futex_wait(std::atomic<std::uint32_t>* word, std::uint32_t expected,
                       std::chrono::nanoseconds timeout) noexcept {
  timespec ts{};
  timespec* tsp = nullptr;
  if (timeout.count() >= 0) {
    ts.tv_sec = static_cast<time_t>(timeout.count() / 1'000'000'000);
    ts.tv_nsec = static_cast<long>(timeout.count() % 1'000'000'000);
    tsp = &ts;
  }
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAIT, expected, tsp, nullptr, 0);
}

inline void futex_wake_all(std::atomic<std::uint32_t>* word) noexcept {
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAKE, INT_MAX, nullptr, nullptr,
          0);
}

/// One per receiving process, in shared memory. The receiver spins on its queues, then
/// announces it sleeps and sleeps; a sender that published work rings only if the receiver
/// announced sleep. The seq_cst fences on both sides (Dekker) mean one of the two always sees
/// the other: no lost wake-up. Any process may ring; only the owner sleeps.
struct alignas(64) doorbell {
  std::atomic<std::uint32_t> seq{0};
  std::atomic<std::uint32_t> sleeping{0};

  /// Called by a sender after publishing work. Cheap when the receiver is awake.
  void ring() noexcept {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (sleeping.load(std::memory_order_relaxed) != 0) ring_always();
  }
  /// Wakes the receiver whether or not it announced sleep (supervisor reports, shutdown).
  void ring_always() noexcept {
    seq.fetch_add(1, std::memory_order_seq_cst);
    futex_wake_all(&seq);
  }
  /// Owner only: sleeps until rung or `timeout`, unless `has_work()` turns true after the
  /// announcement.
  template <class HasWork>
  void sleep(HasWork&& has_work, std::chrono::nanoseconds timeout) noexcept {
    std::uint32_t s = seq.load(std::memory_order_acquire);
    sleeping.store(1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (!has_work()) futex_wait(&seq, s, timeout);
    sleeping.store(0, std::memory_order_relaxed);
  }
};

/// The spin-then-sleep policy of every receive loop. Spinning beats a futex round trip
/// (~20-40 us on VMs) by two orders of magnitude, but with more processes than cores a pure
/// spinner steals the core the sender needs, so past a short pure spin we yield.
struct backoff {
  static constexpr int pure_spins = 16;  // x 16 pauses: 6 us on a Zen 2 core, ~12 us on Skylake
  int idle_rounds = 0;
  std::chrono::steady_clock::time_point idle_since{};

  /// Work was found: the next idle round starts a new spin window.
  void reset() noexcept { idle_rounds = 0; }
  /// Returns true when the caller should now sleep on its doorbell: after `spin_window` of
  /// idle rounds. The clock is read once per idle stretch, never on a busy loop's turn.
  bool pause(std::chrono::microseconds spin_window) noexcept {
    if (idle_rounds == 0) idle_since = std::chrono::steady_clock::now();
    if (idle_rounds++ < pure_spins) {
      for (int i = 0; i < 16; ++i) cpu_relax();
      return false;
    }
    if (std::chrono::steady_clock::now() - idle_since < spin_window) {
      sched_yield();
      return false;
    }
    return true;
  }
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/shm/futex.hpp>
// begin <coray/detail/shm/mailbox.hpp>
/// A bounded lock-free ring of fixed-size message slots in shared memory (Vyukov's bounded
/// MPMC queue with one consumer): sequence-numbered slots, offsets only, no pointers, so it
/// works at any mapping address. A message longer than one slot's payload occupies several
/// consecutive slots, claimed together; one longer than half the ring travels in a block of
/// the segment whose offset the slot carries.

#include <atomic>
// #include <coray/detail/shm/futex.hpp>: inlined above
// #include <coray/version.hpp>: inlined above
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
// end <coray/detail/shm/mailbox.hpp>
// #include <coray/detail/shm/segment.hpp>: inlined above
// #include <coray/errors.hpp>: inlined above
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <span>
#include <string>
#include <tuple>
#include <typeinfo>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

enum class msg_kind : std::uint32_t {
  nop = 0,
  // driver -> worker
  run_task = 1,      // task_header, arg entries
  object_ready = 2,  // result_header: a nested call's result
  shutdown = 3,
  construct = 4,    // task_header (reserved: max_concurrency), arg entries: build the actor
  actor_found = 5,  // u64 request, u64 actor id, u64 type id (0: no such actor)
  block_granted =
      6,  // u64 request, u64 block offset (0: store full), u64 requested, free, capacity
  // worker -> driver
  task_done = 16,      // result_header
  submit = 17,         // task_header, arg entries (a nested call)
  release = 18,        // u64 id: the worker dropped its last handle to a nested result
  actor_hold = 19,     // u64 actor id: a handle to the actor was made in the worker
  actor_release = 20,  // u64 actor id: a handle went
  actor_kill = 21,     // u64 actor id
  actor_lookup = 22,   // u64 request, then the name's bytes
  block_request = 23,  // u64 request, u64 size: a new object block for this process
  block_release = 24,  // u64 block offset: this process drops one reference
};
inline constexpr std::uint32_t in_block_flag = 0x80000000u;

struct task_header {
  std::uint64_t task_id;
  std::uint64_t fn_id;
  std::uint32_t nargs;
  std::uint32_t extra;       // submit: actor ids after the args; construct: max_concurrency
  std::uint64_t target;      // submit: the actor to call, 0 for any task worker
  std::int32_t max_retries;  // submit: retries after a crash or a retryable exception
  std::uint32_t reserved;
  std::uint64_t retry_matcher;  // which exceptions are retried: 0 none, 1 all, else a matcher id
};
static_assert(sizeof(task_header) == 48);

inline constexpr std::size_t pad16(std::size_t n) noexcept { return (n + 15) & ~std::size_t{15}; }

/// One task argument; inline bytes follow the entry, padded to 16.
struct arg_entry {
  /// dependency_list: a std::vector<T> argument given as refs, assembled by the driver from
  /// the values of `len` dependencies (indices ref.. in the driver; a worker's submission
  /// lists their ids after the entry).
  enum tag_t : std::uint8_t {
    inline_value = 0,
    block_value = 1,
    dependency = 2,
    dependency_list = 3
  };
  std::uint8_t tag = inline_value;
  std::uint8_t owned = 0;  // block_value: the sender's reference passes to the call (else borrowed)
  std::uint8_t pad = 0;    // dependency_list: zero bytes between the count and the elements
  std::uint8_t reserved = 0;
  std::uint32_t len = 0;
  std::uint64_t ref = 0;  // block offset, or dependency index (driver) / object id (worker submit)
};

/// Bytes an entry's payload occupies after it in a call message.
inline std::size_t entry_payload(const arg_entry& e) noexcept {
  if (e.tag == arg_entry::inline_value) return pad16(e.len);
  return 0;
}
static_assert(sizeof(arg_entry) == 16);

struct result_header {
  enum status_t : std::uint32_t {
    value_inline = 0,
    value_block = 1,
    error = 2,
    retryable_error = 3
  };
  std::uint64_t id;
  std::uint32_t status;
  std::uint32_t len;    // inline value or error bytes that follow
  std::uint64_t block;  // offset of the object block for value_block
  std::uint64_t reserved;
};
static_assert(sizeof(result_header) == 32);

// ---- errors on the wire ---------------------------------------------------------------

enum class error_kind : std::uint8_t {
  task_error = 0,
  worker_crashed,
  actor_died,
  object_store_full,
  get_timeout,
  codec_error,
  cancelled,
  runtime_error
};

inline std::string demangle(const char* name) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> d(abi::__cxa_demangle(name, nullptr, nullptr, &status),
                                           std::free);
  return status == 0 && d ? std::string(d.get()) : std::string(name);
}

/// (kind, exception type, what, function) of an exception thrown by a callee.
using wire_error = std::tuple<std::uint8_t, std::string, std::string, std::string>;

/// Describes the exception in flight. coray's own errors keep their kind, so a worker crash
/// deep in a chain of nested calls still reads as worker_crashed at the top. The text is
/// capped (32 KiB): an error travels inside one message.
inline wire_error describe_current_exception(std::string_view function) {
  std::string fn(function);
  wire_error e;
  try {
    throw;
  } catch (const task_error& x) {
    e = {std::uint8_t(error_kind::task_error), x.type_name(), x.remote_what(), x.function()};
  } catch (const worker_crashed& x) {
    e = {std::uint8_t(error_kind::worker_crashed), "", x.what(), fn};
  } catch (const actor_died& x) {
    e = {std::uint8_t(error_kind::actor_died), "", x.what(), fn};
  } catch (const object_store_full& x) {
    e = {std::uint8_t(error_kind::object_store_full),
         std::to_string(x.requested()) + " " + std::to_string(x.free_bytes()) + " " +
             std::to_string(x.capacity()),
         x.what(), fn};
  } catch (const codec_error& x) {
    e = {std::uint8_t(error_kind::codec_error), "", x.what(), fn};
  } catch (const cancelled& x) {
    e = {std::uint8_t(error_kind::cancelled), "", x.what(), fn};
  } catch (const get_timeout& x) {
    e = {std::uint8_t(error_kind::get_timeout), "", x.what(), fn};
  } catch (const std::exception& x) {
    auto* t = abi::__cxa_current_exception_type();
    e = {std::uint8_t(error_kind::task_error), t ? demangle(t->name()) : "std::exception", x.what(),
         fn};
  } catch (...) {
    auto* t = abi::__cxa_current_exception_type();
    e = {std::uint8_t(error_kind::task_error), t ? demangle(t->name()) : "unknown",
         "(not a std::exception)", fn};
  }
  if (std::get<2>(e).size() > 32 * 1024) std::get<2>(e).resize(32 * 1024);
  return e;
}

inline std::exception_ptr to_exception(const wire_error& w) {
  auto& [kind, type, what, fn] = w;
  switch (static_cast<error_kind>(kind)) {
    case error_kind::worker_crashed:
      return std::make_exception_ptr(worker_crashed(what));
    case error_kind::actor_died:
      return std::make_exception_ptr(actor_died(what));
    case error_kind::codec_error:
      return std::make_exception_ptr(codec_error(what));
    case error_kind::cancelled:
      return std::make_exception_ptr(cancelled(what));
    case error_kind::get_timeout:
      return std::make_exception_ptr(get_timeout(what));
    case error_kind::object_store_full: {
      unsigned long long requested = 0, free_bytes = 0, capacity = 0;
      std::sscanf(type.c_str(), "%llu %llu %llu", &requested, &free_bytes, &capacity);
      return std::make_exception_ptr(object_store_full(requested, free_bytes, capacity));
    }
    case error_kind::runtime_error:
      return std::make_exception_ptr(ray::runtime_error(what));
    case error_kind::task_error:
      break;
  }
  return std::make_exception_ptr(task_error(type, what, fn));
}

// ---- sending and receiving ---------------------------------------------------------------

/// Sends a message of `size` bytes that `fill(std::byte*)` writes, in one slot or in
/// consecutive slots. Returns false when the mailbox has no room now. Rings the receiver's
/// doorbell if it sleeps. Precondition: size <= mb.max_message_bytes().
template <class Fill>
bool try_send(mailbox& mb, doorbell& bell, msg_kind kind, std::size_t size, Fill&& fill) {
  const std::size_t n = mailbox::slots_for(size);
  auto c = mb.try_claim(n);
  if (!c) return false;
  if (n == 1) {
    fill(c.slot->payload);
  } else {
    thread_local std::vector<std::byte> staging;
    staging.resize(size);
    fill(staging.data());
    mb.write(c, staging.data(), size);
  }
  c.slot->kind = static_cast<std::uint32_t>(kind);
  c.slot->size = static_cast<std::uint32_t>(size);
  mb.commit(c);
  bell.ring();
  return true;
}

/// Sends a message whose payload is the block `b` (for messages longer than the ring takes).
/// The receiver hands the block back to its owner when done.
inline bool try_send_block(segment& seg, mailbox& mb, doorbell& bell, msg_kind kind,
                           object_block* b) {
  std::uint64_t desc[2] = {seg.offset_of(b), b->size};
  auto c = mb.try_claim(1);
  if (!c) return false;
  std::memcpy(c.slot->payload, desc, sizeof desc);
  c.slot->kind = static_cast<std::uint32_t>(kind) | in_block_flag;
  c.slot->size = sizeof desc;
  mb.commit(c);
  bell.ring();
  return true;
}

/// A received message: its kind and contiguous payload.
struct message_view {
  msg_kind kind;
  std::span<const std::byte> payload;
  object_block* block = nullptr;  // the block the payload lies in, if any
  std::size_t slots = 1;          // to pop
};

/// The next message, if one is published. A one-slot payload is viewed in place (valid until
/// pop); a multi-slot payload is gathered into `buffer`.
inline bool peek_message(segment& seg, mailbox& mb, std::vector<std::byte>& buffer,
                         message_view& m) {
  mailbox_slot* s = mb.peek();
  if (!s) return false;
  m.kind = static_cast<msg_kind>(s->kind & ~in_block_flag);
  m.block = nullptr;
  if (s->kind & in_block_flag) {
    std::uint64_t desc[2];
    std::memcpy(desc, s->payload, sizeof desc);
    m.block = seg.at<object_block>(desc[0]);
    m.payload = {m.block->data(), static_cast<std::size_t>(desc[1])};
    m.slots = 1;
    return true;
  }
  m.slots = mailbox::slots_for(s->size);
  if (m.slots == 1) {
    m.payload = {s->payload, s->size};
  } else {
    buffer.resize(s->size);
    mb.read(buffer.data(), s->size);
    m.payload = {buffer.data(), buffer.size()};
  }
  return true;
}

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/wire.hpp>
// #include <coray/detail/shm/futex.hpp>: inlined above
// #include <coray/detail/shm/segment.hpp>: inlined above
#include <coroutine>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string_view>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

using clock = std::chrono::steady_clock;

enum class slot_state : std::uint32_t { empty = 0, starting = 1, running = 2, dead = 3 };

/// Per worker, in the segment: its doorbell, its mailboxes, and what the supervisor and
/// the driver need to know about it.
struct alignas(64) worker_shared {
  doorbell bell;  // the worker sleeps here
  std::atomic<std::uint32_t> state{0};
  std::atomic<std::int32_t> pid{0};
  std::atomic<std::int32_t> wait_status{0};
  std::atomic<std::uint32_t> generation{0};
  std::uint64_t inbox = 0;   // offset of the mailbox driver -> worker
  std::uint64_t outbox = 0;  // offset of the mailbox worker -> driver
  alignas(64) std::atomic<std::uint64_t> tasks_started{0};
  std::atomic<std::uint32_t> suspended{0};  // task coroutines awaiting something
  /// Set by the driver when a message to this process found its inbox full and the driver
  /// is going to sleep: the process rings the driver once it has freed slots.
  std::atomic<std::uint32_t> driver_waiting{0};
};

/// The segment's control header, allocated first in the segment.
struct shared_header {
  doorbell driver_bell;  // the driver sleeps here
  alignas(64) std::atomic<std::uint32_t> deaths{0};
  std::int32_t driver_pid = 0;
  std::int32_t supervisor_pid = 0;
  std::uint32_t slots = 0;  // task workers first, then actors
  std::uint32_t spin_us = 0;
  std::uint64_t inline_threshold = 0;
  std::uint64_t mailbox_capacity = 0;

  static std::size_t bytes_for(std::uint32_t slots) {
    return sizeof(shared_header) + slots * sizeof(worker_shared);
  }
  worker_shared& worker(std::uint32_t i) noexcept {
    return reinterpret_cast<worker_shared*>(reinterpret_cast<std::byte*>(this) +
                                            sizeof(shared_header))[i];
  }
};

/// Where actor handles met while encoding call arguments are collected (see actor<T>::serialize).
inline std::vector<std::uint64_t>*& actor_collector() noexcept {
  thread_local std::vector<std::uint64_t>* c = nullptr;
  return c;
}
inline void collect_actor_handle(std::uint64_t id) {
  if (!actor_collector())
    throw ray::runtime_error(
        "coray: actor handles travel as call arguments only, not inside put objects or results");
  actor_collector()->push_back(id);
}

/// Call arguments may also carry handles to mutable shared blocks (ray::shared_value,
/// ray::mutex): the encoder lists the block's offset, tagged, with the call's actor handles.
/// The driver pins the block while the call lives (so it outlives its sender's handles) and
/// gives the process the call is sent to a reference of its own, which the decoded handle
/// adopts. A worker may pin only blocks it holds.
inline constexpr std::uint64_t pinned_block_tag = std::uint64_t{1} << 63;
inline void collect_pinned_block(segment& seg, object_block* b) {
  if (!actor_collector())
    throw ray::runtime_error(
        "coray: shared values and mutexes travel as call arguments only, not inside put objects or "
        "results");
  actor_collector()->push_back(pinned_block_tag | seg.offset_of(b));
}

/// The encoded size of the vector a dependency list stands for: count, padding, elements.
inline std::size_t dependency_list_bytes(const arg_entry& e, const std::vector<state_ptr>& deps) {
  std::size_t n = sizeof(std::uint64_t) + e.pad;
  for (std::uint32_t i = 0; i < e.len; ++i) n += deps[e.ref + i]->value_bytes().size();
  return n;
}
/// Writes that vector's encoding from the elements' values (all ready) at `out`.
inline void write_dependency_list(std::byte* out, const arg_entry& e,
                                  const std::vector<state_ptr>& deps) {
  const std::uint64_t count = e.len;
  std::memcpy(out, &count, sizeof count);
  out += sizeof count;
  std::memset(out, 0, e.pad);
  out += e.pad;
  for (std::uint32_t i = 0; i < e.len; ++i) {
    auto bytes = deps[e.ref + i]->value_bytes();
    if (!bytes.empty()) std::memcpy(out, bytes.data(), bytes.size());
    out += bytes.size();
  }
}

/// A remote call as built by task<f>.remote(): the callee, its encoded arguments, the objects
/// it depends on and the store blocks its large arguments occupy.
struct task_spec {
  std::uint64_t fn_id = 0;
  std::string_view name;
  std::vector<std::byte> args;  // arg_entry records
  std::uint32_t nargs = 0;
  std::vector<state_ptr> deps;        // arg_entry::dependency refers to these by index
  std::vector<object_block*> blocks;  // owned; released when the task ends
  std::uint64_t target_actor = 0;     // the actor to call; 0 for any task worker
  int max_retries = 0;                // re-runs after a crash or a retryable exception
  std::uint64_t retry_matcher = 0;    // 0: exceptions are final; 1: all retried; else a matcher
  std::vector<std::uint64_t> actors;  // actor handles among the arguments: kept alive in transit

  /// Appends an inline argument of `size` bytes written by `fill`.
  template <class Fill>
  void add_inline(std::size_t size, Fill&& fill) {
    std::size_t at = args.size();
    args.resize(at + sizeof(arg_entry) + pad16(size));
    arg_entry e{.tag = arg_entry::inline_value, .len = static_cast<std::uint32_t>(size)};
    std::memcpy(args.data() + at, &e, sizeof e);
    fill(args.data() + at + sizeof(arg_entry));
    ++nargs;
  }
  /// Appends a block made for this call; the call owns its reference.
  void add_block(segment& seg, object_block* b) {
    blocks.push_back(b);
    add_entry({.tag = arg_entry::block_value, .owned = 1, .ref = seg.offset_of(b)});
  }
  /// Appends a std::vector<T> argument given as refs: each element is a dependency, and
  /// `pad` zero bytes separate the count from the elements in the vector's encoding.
  void add_dependency_list(const std::vector<state_ptr>& refs, std::uint8_t pad) {
    add_entry({.tag = arg_entry::dependency_list,
               .pad = pad,
               .len = static_cast<std::uint32_t>(refs.size()),
               .ref = deps.size()});
    deps.insert(deps.end(), refs.begin(), refs.end());
  }
  void add_dependency(state_ptr s) {
    add_entry({.tag = arg_entry::dependency, .ref = deps.size()});
    deps.push_back(std::move(s));
  }

 private:
  void add_entry(const arg_entry& e) {
    std::size_t at = args.size();
    args.resize(at + sizeof e);
    std::memcpy(args.data() + at, &e, sizeof e);
    ++nargs;
  }
};

/// The runtime state of this process (driver or worker). One at a time per process; used
/// only from the thread that runs the loop.
class process {
 public:
  virtual ~process() = default;

  /// The process's runtime, or nullptr outside one.
  static process*& current() noexcept {
    static process* p = nullptr;
    return p;
  }
  static process& require() {
    process* p = current();
    if (!p) throw ray::runtime_error("coray: no runtime is running (construct ray::runtime first)");
    if (!pthread_equal(p->loop_thread_, pthread_self()))
      throw ray::runtime_error(
          "coray: the runtime is used from a thread other than the one that runs it");
    return *p;
  }

  segment seg;
  shared_header* hdr = nullptr;
  std::uint32_t epoch = 0;  // distinguishes this runtime's states from an earlier one's

  virtual bool is_driver() const noexcept = 0;
  /// Sends a call; returns the state of its result.
  virtual state_ptr submit(task_spec&& spec) = 0;
  /// A state with an id lost its last handle in this process.
  virtual void forget(object_state&) noexcept {}

  /// A new object block of `size` payload bytes holding one reference for this process.
  /// Only the driver touches the allocator and the reference counts, so that a worker
  /// killed at any instant leaves the store intact: workers ask the driver.
  /// Throws object_store_full.
  virtual object_block* new_block(std::size_t size) = 0;
  /// This process drops one reference to `b`.
  virtual void release_block(object_block* b) noexcept = 0;
  /// A state of this process now holds a block (the driver may spill it under pressure).
  virtual void block_adopted(object_state&) {}
  /// A state of this process is going away.
  virtual void state_released(object_state&) noexcept {}
  /// A coroutine of this process suspends on (+1) or resumes from (-1) a coray awaitable.
  virtual void coroutine_suspended(int /*delta*/) noexcept {}

  /// A local handle to actor `id` was made (+1) or dropped (-1).
  virtual void actor_handle(std::uint64_t id, int delta) noexcept = 0;
  /// Ends actor `id` now (ray::kill).
  virtual void kill_actor(std::uint64_t id) = 0;
  struct actor_info {
    std::uint64_t id = 0;  // 0: none
    std::uint64_t type_id = 0;
  };
  /// The live actor registered under `name`.
  virtual actor_info lookup_actor(std::string_view name) = 0;

  /// ray::cancel of the call `id` (driver only).
  virtual void cancel_call(std::uint64_t /*id*/, bool /*force*/) {}

  /// A new local handle to actor `id` (counted at the driver).
  actor_ptr make_actor_handle(std::uint64_t id) {
    auto* s = new actor_state;
    s->id = id;
    s->epoch = epoch;
    actor_handle(id, +1);
    return actor_ptr::adopt(s);
  }

  std::size_t inline_threshold() const noexcept { return hdr->inline_threshold; }
  /// True on the thread that runs this process's loop (where blocking calls may serve it).
  bool is_loop_thread() const noexcept { return pthread_equal(loop_thread_, pthread_self()); }

  /// Serves the loop once without waiting (takes in replies, sends queued work) when called
  /// on the loop thread. A caller whose refs are already ready does not run the loop; this
  /// keeps the workers fed while it carries on (a loop of ray::wait for one of n refs).
  void serve_once() {
    if (is_loop_thread() && !polling_)
      poll_guarded();  // never inside a poll (a task body it started)
  }

  /// Queues a coroutine to resume on the loop.
  void schedule(std::coroutine_handle<> h) { ready_.push_back(h); }

  /// Runs the loop until `done()` or `deadline`; returns done().
  template <class Done>
  bool run_until(Done&& done, clock::time_point deadline = clock::time_point::max()) {
    backoff bo;
    const auto spin = std::chrono::microseconds(hdr->spin_us);
    while (!done()) {
      if (!ready_.empty()) {
        auto h = ready_.front();
        ready_.pop_front();
        h.resume();
        continue;
      }
      if (poll_guarded()) {
        bo.reset();
        continue;
      }
      if (!timers_.empty() || deadline != clock::time_point::max()) {
        auto now = clock::now();
        if (fire_timers(now)) continue;
        if (now >= deadline) return done();
      }
      if (bo.pause(spin)) {
        auto limit = std::chrono::nanoseconds(std::chrono::seconds(1));
        auto next =
            std::min(deadline, timers_.empty() ? clock::time_point::max() : timers_.begin()->first);
        if (next != clock::time_point::max())
          limit = std::min(
              limit, std::chrono::duration_cast<std::chrono::nanoseconds>(next - clock::now()));
        if (limit.count() > 0) sleep(limit);
        bo.reset();
      }
    }
    return true;
  }

  /// Calls fn(ctx) on the loop at `when`. Returns an id for cancel_timer.
  std::uint64_t add_timer(clock::time_point when, void (*fn)(void*), void* ctx) {
    std::uint64_t id = ++timer_ids_;
    timers_.emplace(when, timer{id, fn, ctx});
    return id;
  }
  void cancel_timer(std::uint64_t id) noexcept {
    for (auto it = timers_.begin(); it != timers_.end(); ++it)
      if (it->second.id == id) {
        timers_.erase(it);
        return;
      }
  }

 protected:
  /// Handles what arrived; true if anything did.
  virtual bool poll() = 0;
  /// Sleeps until a message may have arrived, at most `limit`.
  virtual void sleep(std::chrono::nanoseconds limit) = 0;

  pthread_t loop_thread_ = pthread_self();

 private:
  bool poll_guarded() {
    const bool was = polling_;
    polling_ = true;
    struct reset {
      bool& flag;
      bool was;
      ~reset() { flag = was; }
    } r{polling_, was};
    return poll();
  }
  struct timer {
    std::uint64_t id;
    void (*fn)(void*);
    void* ctx;
  };
  bool fire_timers(clock::time_point now) {
    bool fired = false;
    while (!timers_.empty() && timers_.begin()->first <= now) {
      timer t = timers_.begin()->second;
      timers_.erase(timers_.begin());
      t.fn(t.ctx);
      fired = true;
    }
    return fired;
  }
  std::deque<std::coroutine_handle<>> ready_;
  std::multimap<clock::time_point, timer> timers_;
  std::uint64_t timer_ids_ = 0;
  bool polling_ = false;  // inside poll() on the loop thread
};

inline void release_state(object_state* s) noexcept {
  process* p = process::current();
  bool live = p && s->epoch == p->epoch;
  if (live) p->state_released(*s);
  if (live && s->id) p->forget(*s);
  if (live && s->block) p->release_block(s->block);
  delete s;
}

inline void release_actor_state(actor_state* s) noexcept {
  process* p = process::current();
  if (p && s->epoch == p->epoch) p->actor_handle(s->id, -1);
  delete s;
}

inline state_ptr make_state() {
  auto s = state_ptr::adopt(new object_state);
  if (process* p = process::current()) s->epoch = p->epoch;
  return s;
}

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/process.hpp>
// begin <coray/detail/runtime/registry.hpp>
/// Stable ids for remote functions. A callee is found by a hash of its name, not its address,
/// so a spawned worker (different ASLR base) and, later, another machine resolve the same one.

// #include <coray/version.hpp>: inlined above
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string_view>
#include <unordered_map>

CORAY_BEGIN_NAMESPACE
namespace detail {

constexpr std::uint64_t fnv1a(std::string_view s) noexcept {
  std::uint64_t h = 14695981039346656037ULL;
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ULL;
  }
  return h;
}

/// The name of the entity F, as the compiler spells it ("add", "ns::fib", "&counter::incr").
template <auto F>
constexpr std::string_view entity_name() noexcept {
  std::string_view p = __PRETTY_FUNCTION__;
#if defined(__clang__)
  auto b = p.find("F = ") + 4;
  auto e = p.rfind(']');
#else
  auto b = p.find("F = ") + 4;
  auto e = p.find(';', b);
  if (e == std::string_view::npos) e = p.rfind(']');
#endif
  std::string_view n = p.substr(b, e - b);
  if (!n.empty() && n.front() == '&') n.remove_prefix(1);
  return n;
}

template <auto F>
inline constexpr std::uint64_t entity_id = fnv1a(entity_name<F>());

struct invocation;
using invoker_fn = void (*)(invocation&);

struct registered_function {
  invoker_fn invoke;
  std::string_view name;
};

/// id -> callee, filled during static initialisation in every process of the program.
inline std::unordered_map<std::uint64_t, registered_function>& function_table() {
  static std::unordered_map<std::uint64_t, registered_function> table;
  return table;
}

inline bool register_function(std::uint64_t id, invoker_fn fn, std::string_view name) {
  auto [it, inserted] = function_table().try_emplace(id, registered_function{fn, name});
  if (!inserted && it->second.name != name) {
    std::fprintf(stderr, "coray: function id collision between %.*s and %.*s\n",
                 static_cast<int>(name.size()), name.data(),
                 static_cast<int>(it->second.name.size()), it->second.name.data());
    std::abort();
  }
  return true;
}

inline const registered_function* find_function(std::uint64_t id) {
  auto& t = function_table();
  auto it = t.find(id);
  return it == t.end() ? nullptr : &it->second;
}

/// Retry matchers (ray::retry_on<E...>): whether an exception in flight is to be retried.
/// Registered like functions, so a worker finds the caller's choice by id.
using retry_matcher_fn = bool (*)(std::exception_ptr);
inline std::unordered_map<std::uint64_t, retry_matcher_fn>& retry_matcher_table() {
  static std::unordered_map<std::uint64_t, retry_matcher_fn> table;
  return table;
}
inline bool register_retry_matcher(std::uint64_t id, retry_matcher_fn fn) {
  retry_matcher_table().emplace(id, fn);
  return true;
}
/// Whether the exception `e` is to be retried under matcher `id` (0: never, 1: always).
inline bool retry_matches(std::uint64_t id, std::exception_ptr e) {
  if (id <= 1) return id == 1;
  auto it = retry_matcher_table().find(id);
  return it != retry_matcher_table().end() && it->second(std::move(e));
}

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/registry.hpp>
#include <cstdio>
#include <deque>
#include <unordered_map>

CORAY_BEGIN_NAMESPACE
namespace detail {

class worker;

/// One call being run in this worker: what the invoker (task.hpp) needs to decode the
/// arguments and to reply.
struct invocation {
  worker& self;
  std::uint64_t task_id;
  std::span<const std::byte> args;  // arg_entry records, 16-byte aligned
  std::uint32_t nargs;
  std::string_view name;
  void* instance;               // the actor's object, for method calls
  std::uint64_t retry_matcher;  // which exceptions the caller retries

  /// Replies with the exception in flight (call from a catch block).
  void fail() const;
};

class worker final : public process {
 public:
  worker(std::uint32_t slot, std::uint32_t epoch_) : slot_(slot) { epoch = epoch_; }

  /// Attaches to the runtime's header and serves until told to stop or the driver goes.
  [[noreturn]] void serve() {
    hdr = seg.at<shared_header>(seg.header_root().header_offset);
    me_ = &hdr->worker(slot_);
    inbox_ = seg.at<mailbox>(me_->inbox);
    outbox_ = seg.at<mailbox>(me_->outbox);
    generation_ = me_->generation.load(std::memory_order_acquire);
    next_id_ = (std::uint64_t{1} << 63) | (std::uint64_t{slot_} << 48) |
               (std::uint64_t{generation_ & 0xFFFF} << 32);
    me_->pid.store(getpid(), std::memory_order_relaxed);
    me_->state.store(static_cast<std::uint32_t>(slot_state::running), std::memory_order_release);
    loop_thread_ = pthread_self();
    process::current() = this;
    run_until([this] { return stop_ || (stopping_ && calls_.empty() && running_ == 0); });
    if (instance_ && destroy_) destroy_(instance_);  // an actor ends with its destructor
    std::fflush(nullptr);
    _exit(0);
  }

  bool is_driver() const noexcept override { return false; }

  /// A nested call from a task body: the driver schedules it; the result comes back as
  /// object_ready.
  state_ptr submit(task_spec&& spec) override {
    auto result = make_state();
    result->id = next_id_++;
    // Dependencies first: a call whose argument already failed is never sent.
    for (auto& d : spec.deps)
      if (d->st == object_state::status::failed) {
        for (auto* b : spec.blocks) release_block(b);
        result->set_error(d->error);
        return result;
      }
    // Rewrite dependencies: ready ones travel by value, pending ones by id. A list whose
    // elements are all ready is assembled here; otherwise it travels as ids, which the driver
    // knows only for results of calls (not for values put in this process).
    auto list_ready = [&](const arg_entry& e) {
      for (std::uint32_t i = 0; i < e.len; ++i)
        if (!spec.deps[e.ref + i]->settled()) return false;
      return true;
    };
    std::size_t size = sizeof(task_header) + spec.actors.size() * sizeof(std::uint64_t);
    for_each_entry(spec, [&](const arg_entry& e, const std::byte*) {
      size += sizeof(arg_entry);
      if (e.tag == arg_entry::inline_value) size += pad16(e.len);
      if (e.tag == arg_entry::dependency) {
        auto& d = *spec.deps[e.ref];
        if (d.settled() && !d.block) size += pad16(d.bytes.size());
      }
      if (e.tag == arg_entry::dependency_list) {
        if (list_ready(e)) {
          size += pad16(dependency_list_bytes(e, spec.deps));
        } else {
          for (std::uint32_t i = 0; i < e.len; ++i)
            if (!spec.deps[e.ref + i]->id)
              throw ray::runtime_error(
                  "coray: a list of refs mixing values put in a task with pending results cannot "
                  "be passed from a task yet");
          size += pad16(e.len * sizeof(std::uint64_t));
        }
      }
    });
    awaited_.emplace(result->id, result.get());
    send(msg_kind::submit, size, [&](std::byte* out) {
      task_header h{result->id,
                    spec.fn_id,
                    spec.nargs,
                    static_cast<std::uint32_t>(spec.actors.size()),
                    spec.target_actor,
                    spec.max_retries,
                    0,
                    spec.retry_matcher};
      std::memcpy(out, &h, sizeof h);
      std::byte* p = out + sizeof h;
      for_each_entry(spec, [&](const arg_entry& e, const std::byte* data) {
        arg_entry o = e;
        const std::byte* src = data;
        if (e.tag == arg_entry::dependency_list) {
          std::memcpy(p, &o, sizeof o);
          p += sizeof o;
          if (list_ready(e)) {
            o = {.tag = arg_entry::inline_value,
                 .len = static_cast<std::uint32_t>(dependency_list_bytes(e, spec.deps))};
            std::memcpy(p - sizeof o, &o, sizeof o);
            write_dependency_list(p, e, spec.deps);
            p += pad16(o.len);
          } else {
            for (std::uint32_t i = 0; i < e.len; ++i) {
              const std::uint64_t id = spec.deps[e.ref + i]->id;
              std::memcpy(p + i * sizeof id, &id, sizeof id);
            }
            p += pad16(e.len * sizeof(std::uint64_t));
          }
          return;
        }
        if (e.tag == arg_entry::dependency) {
          auto& d = *spec.deps[e.ref];
          if (!d.settled()) {
            o.ref = d.id;
          } else if (d.block) {
            // Borrowed: the driver takes a reference of its own for the call.
            o = {.tag = arg_entry::block_value, .ref = seg.offset_of(d.block)};
          } else {
            o = {.tag = arg_entry::inline_value, .len = static_cast<std::uint32_t>(d.bytes.size())};
            src = d.bytes.data();
          }
        }
        std::memcpy(p, &o, sizeof o);
        p += sizeof o;
        if (o.tag == arg_entry::inline_value) {
          if (o.len) std::memcpy(p, src, o.len);
          p += pad16(o.len);
        }
      });
      // Actor handles in the arguments: the driver keeps those actors alive until the call ends.
      if (!spec.actors.empty())
        std::memcpy(p, spec.actors.data(), spec.actors.size() * sizeof(std::uint64_t));
    });
    return result;
  }

  void actor_handle(std::uint64_t id, int delta) noexcept override {
    send_u64(delta > 0 ? msg_kind::actor_hold : msg_kind::actor_release, id);
  }
  void kill_actor(std::uint64_t id) override { send_u64(msg_kind::actor_kill, id); }
  actor_info lookup_actor(std::string_view name) override {
    const std::uint64_t request = ++lookups_;
    send(msg_kind::actor_lookup, sizeof request + name.size(), [&](std::byte* out) {
      std::memcpy(out, &request, sizeof request);
      std::memcpy(out + sizeof request, name.data(), name.size());
    });
    internal_wait([&] { return found_.count(request) != 0; });
    actor_info info = found_[request];
    found_.erase(request);
    return info;
  }

  /// Actor construction: the invoker hands over the new object and how to destroy it.
  void set_instance(void* instance, void (*destroy)(void*)) noexcept {
    instance_ = instance;
    destroy_ = destroy;
  }
  /// An actor method call ended (its reply is sent); the next queued call may start.
  void call_finished() noexcept {
    if (running_) --running_;
  }

  void forget(object_state& s) noexcept override {
    if (awaited_.erase(s.id)) send_u64(msg_kind::release, s.id);
  }

  /// Asks the driver for a block and waits (running the loop) for it.
  object_block* new_block(std::size_t size) override {
    const std::uint64_t request = ++requests_;
    std::uint64_t msg[2] = {request, size};
    send(msg_kind::block_request, sizeof msg,
         [&](std::byte* out) { std::memcpy(out, msg, sizeof msg); });
    internal_wait([&] { return granted_.count(request) != 0; });
    grant g = granted_[request];
    granted_.erase(request);
    if (!g.offset) throw object_store_full(g.requested, g.free_bytes, g.capacity);
    return seg.at<object_block>(g.offset);
  }
  void release_block(object_block* b) noexcept override {
    send_u64(msg_kind::block_release, seg.offset_of(b));
  }

  /// Replies to the driver with a task's value (`size` bytes written by `fill`), putting
  /// large values in the store.
  template <class Fill>
  void reply_value(std::uint64_t task_id, std::size_t size, Fill&& fill) {
    if (size > inline_threshold()) {
      object_block* b = new_block(size);
      fill(b->data());
      result_header h{task_id, result_header::value_block, 0, seg.offset_of(b), 0};
      send(msg_kind::task_done, sizeof h, [&](std::byte* out) { std::memcpy(out, &h, sizeof h); });
      return;
    }
    send(msg_kind::task_done, sizeof(result_header) + size, [&](std::byte* out) {
      result_header h{task_id, result_header::value_inline, static_cast<std::uint32_t>(size), 0, 0};
      std::memcpy(out, &h, sizeof h);
      fill(out + sizeof h);
    });
  }
  void reply_error(std::uint64_t task_id, const wire_error& e, bool retryable = false) {
    std::size_t size = encoded_size(e);
    send(msg_kind::task_done, sizeof(result_header) + size, [&](std::byte* out) {
      result_header h{task_id, retryable ? result_header::retryable_error : result_header::error,
                      static_cast<std::uint32_t>(size), 0, 0};
      std::memcpy(out, &h, sizeof h);
      encode_to(std::span<std::byte>(out + sizeof h, size), e);
    });
  }

  /// Task coroutines that are suspended; the driver counts them as not occupying the worker.
  void coroutine_suspended(int delta) noexcept override {
    me_->suspended.store(
        static_cast<std::uint32_t>(
            static_cast<int>(me_->suspended.load(std::memory_order_relaxed)) + delta),
        std::memory_order_relaxed);
  }

 protected:
  bool poll() override {
    if (!internal_waits_ && !deferred_.empty()) {
      // Calls that arrived during an internal wait, in their order.
      std::vector<std::byte> call = std::move(deferred_.front());
      deferred_.pop_front();
      start_task(call);
      return true;
    }
    message_view m;
    std::vector<std::byte> gathered;
    if (!peek_message(seg, *inbox_, gathered, m)) return start_calls();
    // Take the message out of the ring before handling it: a task body may run the loop
    // again (a blocking get), which must see the next message, not this one. A message in a
    // block stays valid: the driver frees it when the call ends.
    alignas(16) std::byte local[mailbox_slot::payload_bytes];
    if (m.slots == 1 && !m.block) {
      std::memcpy(local, m.payload.data(), m.payload.size());
      m.payload = {local, m.payload.size()};
    }
    inbox_->pop(m.slots);
    // The driver may be asleep waiting for room in this inbox (Dekker with its sleep: slots
    // freed, fence, flag read here; flag set, fence, room read there).
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (me_->driver_waiting.load(std::memory_order_relaxed) != 0) {
      me_->driver_waiting.store(0, std::memory_order_relaxed);
      hdr->driver_bell.ring();
    }
    switch (m.kind) {
      case msg_kind::run_task:
        if (is_actor_) {
          // Held here rather than in the ring, so results of nested calls behind it still arrive.
          calls_.emplace_back(m.payload.begin(), m.payload.end());
        } else if (internal_waits_ || !deferred_.empty()) {
          deferred_.emplace_back(m.payload.begin(), m.payload.end());
        } else {
          start_task(m.payload);
        }
        break;
      case msg_kind::construct:
        construct(m.payload);
        break;
      case msg_kind::object_ready:
        on_object_ready(m.payload);
        break;
      case msg_kind::actor_found: {
        std::uint64_t v[3];
        std::memcpy(v, m.payload.data(), sizeof v);
        found_[v[0]] = {v[1], v[2]};
        break;
      }
      case msg_kind::block_granted: {
        std::uint64_t v[5];
        std::memcpy(v, m.payload.data(), sizeof v);
        granted_[v[0]] = {v[1], v[2], v[3], v[4]};
        break;
      }
      case msg_kind::shutdown:
        stopping_ = true;
        break;
      default:
        break;
    }
    start_calls();
    return true;
  }

  void sleep(std::chrono::nanoseconds limit) override {
    me_->bell.sleep([this] { return !inbox_->empty(); }, limit);
    if (getppid() != hdr->supervisor_pid) _exit(0);  // supervisor gone: the runtime is over
  }

 private:
  template <class F>
  static void for_each_entry(const task_spec& spec, F&& f) {
    const std::byte* p = spec.args.data();
    for (std::uint32_t i = 0; i < spec.nargs; ++i) {
      arg_entry e;
      std::memcpy(&e, p, sizeof e);
      f(e, p + sizeof e);
      p += sizeof e + entry_payload(e);
    }
  }

  /// Waits for a reply of the runtime's own (a block, an actor's id), serving the loop but
  /// starting no new task meanwhile: a task started here would nest inside the one waiting,
  /// and each would hold what it was granted while the innermost waits (with blocks: every
  /// queued task's result allocated before any is sent).
  template <class Done>
  void internal_wait(Done&& done) {
    ++internal_waits_;
    try {
      run_until(done);
    } catch (...) {
      --internal_waits_;
      throw;
    }
    --internal_waits_;
  }

  void start_task(std::span<const std::byte> payload) {
    me_->tasks_started.store(me_->tasks_started.load(std::memory_order_relaxed) + 1,
                             std::memory_order_release);
    run_task(payload);
  }

  /// Runs a call; false if its function is unknown here (an error reply is sent).
  bool run_task(std::span<const std::byte> payload) {
    task_header h;
    std::memcpy(&h, payload.data(), sizeof h);
    const registered_function* fn = find_function(h.fn_id);
    if (!fn) {
      reply_error(h.task_id, {std::uint8_t(error_kind::runtime_error), "",
                              "coray: no function with id " + std::to_string(h.fn_id) +
                                  " is registered in the worker (is it the same program?)",
                              ""});
      return false;
    }
    invocation inv{*this,     h.task_id,      payload.subspan(sizeof h), h.nargs, fn->name,
                   instance_, h.retry_matcher};
    fn->invoke(inv);
    return true;
  }

  void construct(std::span<const std::byte> payload) {
    task_header h;
    std::memcpy(&h, payload.data(), sizeof h);
    is_actor_ = true;
    max_concurrency_ = std::max<std::uint32_t>(1, h.extra);
    if (!run_task(payload) || !instance_) {
      // The constructor threw (its error is the reply): an actor without its object ends.
      std::fflush(nullptr);
      _exit(3);
    }
  }

  /// Starts queued actor calls while the concurrency limit allows.
  bool start_calls() {
    bool started = false;
    while (is_actor_ && instance_ && !internal_waits_ && !calls_.empty() &&
           running_ < max_concurrency_) {
      std::vector<std::byte> call = std::move(calls_.front());
      calls_.pop_front();
      ++running_;
      me_->tasks_started.store(me_->tasks_started.load(std::memory_order_relaxed) + 1,
                               std::memory_order_release);
      run_task(call);
      started = true;
    }
    return started;
  }

  void send_u64(msg_kind k, std::uint64_t v) noexcept {
    send(k, sizeof v, [&](std::byte* out) { std::memcpy(out, &v, sizeof v); });
  }

  void on_object_ready(std::span<const std::byte> payload) {
    result_header h;
    std::memcpy(&h, payload.data(), sizeof h);
    auto it = awaited_.find(h.id);
    if (it == awaited_.end()) {
      if (h.status == result_header::value_block) release_block(seg.at<object_block>(h.block));
      return;
    }
    object_state& s = *it->second;
    auto body = payload.subspan(sizeof h, h.len);
    switch (h.status) {
      case result_header::value_inline:
        s.set_inline(body);
        break;
      case result_header::value_block:
        s.set_block(seg.at<object_block>(h.block));
        break;
      default:
        s.set_error(to_exception(decode<wire_error>(body)));
        break;
    }
  }

  /// Sends to the driver, waiting for room (the driver always drains). A message longer than
  /// the ring takes goes in a block the driver frees after reading it.
  template <class Fill>
  void send(msg_kind k, std::size_t size, Fill&& fill) {
    object_block* b = nullptr;
    if (size > outbox_->max_message_bytes()) {
      b = new_block(size);
      fill(b->data());
    }
    auto sent = [&] {
      return b ? try_send_block(seg, *outbox_, hdr->driver_bell, k, b)
               : try_send(*outbox_, hdr->driver_bell, k, size, fill);
    };
    backoff bo;  // reads the clock only if the ring is full
    while (!sent()) {
      if (bo.pause(std::chrono::microseconds(hdr->spin_us))) {
        if (getppid() != hdr->supervisor_pid) _exit(0);
        usleep(50);
      }
    }
  }

  std::uint32_t slot_;
  std::uint32_t generation_ = 0;
  worker_shared* me_ = nullptr;
  mailbox* inbox_ = nullptr;
  mailbox* outbox_ = nullptr;
  std::uint64_t next_id_ = 0;
  bool stop_ = false;
  bool stopping_ = false;
  std::unordered_map<std::uint64_t, object_state*> awaited_;  // nested results by id
  std::uint64_t lookups_ = 0;
  std::unordered_map<std::uint64_t, actor_info> found_;
  struct grant {
    std::uint64_t offset, requested, free_bytes, capacity;
  };
  std::uint64_t requests_ = 0;
  std::unordered_map<std::uint64_t, grant> granted_;
  // Actor mode.
  bool is_actor_ = false;
  void* instance_ = nullptr;
  void (*destroy_)(void*) = nullptr;
  std::uint32_t max_concurrency_ = 1;
  std::uint32_t running_ = 0;
  std::deque<std::vector<std::byte>> calls_;
  int internal_waits_ = 0;
  std::deque<std::vector<std::byte>> deferred_;  // tasks that arrived during an internal wait
};

inline void invocation::fail() const {
  self.reply_error(task_id, describe_current_exception(name),
                   retry_matches(retry_matcher, std::current_exception()));
}

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/worker.hpp>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

extern char** environ;

CORAY_BEGIN_NAMESPACE
namespace detail {

enum class start_method_id : std::uint32_t { fork = 0, spawn = 1 };

struct supervisor_command {
  enum op_t : std::uint32_t { start = 1, kill = 2 };
  std::uint32_t op;
  std::uint32_t slot;
};

inline constexpr const char* worker_env = "CORAY_WORKER";

/// Worker-side start-up shared by both start methods. Never returns.
[[noreturn]] inline void become_worker(segment& seg, std::uint32_t slot, std::uint32_t epoch,
                                       pid_t supervisor) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != supervisor) _exit(0);
  // A worker dies of its signals as a plain process does: handlers the program installed
  // (crash reporters, test frameworks) belong to the driver.
  for (int sig = 1; sig < NSIG; ++sig)
    if (sig != SIGKILL && sig != SIGSTOP) signal(sig, SIG_DFL);
  // Output appears as it is written, not when a buffer fills: a worker may be killed.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  char name[16];
  std::snprintf(name, sizeof name, "coray-w%u", slot);
  prctl(PR_SET_NAME, name);
  // `seg` is moved into the worker's own process state.
  auto* w = new worker(slot, epoch);
  w->seg.adopt(seg);
  w->serve();
}

/// Called early by every program that may be a spawned worker (ray::runtime's constructor
/// does it). Returns at once in a normal process.
inline void enter_worker_if_spawned() {
  const char* env = std::getenv(worker_env);
  if (!env) return;
  unsigned fd = 0, slot = 0, epoch = 0;
  int sup = 0;
  if (std::sscanf(env, "%u:%u:%u:%d", &fd, &slot, &epoch, &sup) != 4) {
    std::fprintf(stderr, "coray: malformed %s=%s\n", worker_env, env);
    _exit(2);
  }
  unsetenv(worker_env);
  static segment seg;
  try {
    seg.attach(static_cast<int>(fd));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    _exit(2);
  }
  become_worker(seg, slot, epoch, sup);
}

struct supervisor_config {
  segment* seg;
  shared_header* hdr;
  int command_fd;
  start_method_id method;
  std::uint32_t epoch;
  std::vector<std::string> argv;  // for spawn
};

[[noreturn]] inline void supervisor_main(supervisor_config cfg) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != cfg.hdr->driver_pid) _exit(0);
  prctl(PR_SET_NAME, "coray-super");
  const pid_t self = getpid();

  sigset_t chld, old;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, &old);
  int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  if (cfg.method == start_method_id::spawn) {
    // Spawned workers inherit the segment's fd.
    int fl = fcntl(cfg.seg->fd(), F_GETFD);
    fcntl(cfg.seg->fd(), F_SETFD, fl & ~FD_CLOEXEC);
  }

  std::unordered_map<pid_t, std::uint32_t> children;

  auto start = [&](std::uint32_t slot) -> pid_t {
    if (cfg.method == start_method_id::fork) {
      pid_t pid = fork();
      if (pid == 0) {
        sigprocmask(SIG_SETMASK, &old, nullptr);
        close(sfd);
        close(cfg.command_fd);
        become_worker(*cfg.seg, slot, cfg.epoch, self);
      }
      return pid;
    }
    std::string env_entry = std::string(worker_env) + "=" + std::to_string(cfg.seg->fd()) + ":" +
                            std::to_string(slot) + ":" + std::to_string(cfg.epoch) + ":" +
                            std::to_string(self);
    std::vector<char*> envp;
    for (char** e = environ; *e; ++e)
      if (std::strncmp(*e, "CORAY_WORKER=", 13) != 0) envp.push_back(*e);
    envp.push_back(env_entry.data());
    envp.push_back(nullptr);
    std::vector<char*> argv;
    for (auto& a : cfg.argv) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none, dfl;
    sigemptyset(&none);
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGCHLD);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &dfl);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    pid_t pid = -1;
    if (posix_spawn(&pid, "/proc/self/exe", nullptr, &attr, argv.data(), envp.data()) != 0)
      pid = -1;
    posix_spawnattr_destroy(&attr);
    return pid;
  };

  auto report_death = [&](std::uint32_t slot, int status) {
    worker_shared& w = cfg.hdr->worker(slot);
    w.wait_status.store(status, std::memory_order_relaxed);
    w.state.store(static_cast<std::uint32_t>(slot_state::dead), std::memory_order_release);
    cfg.hdr->deaths.fetch_add(1, std::memory_order_acq_rel);
    cfg.hdr->driver_bell.ring_always();
  };

  auto reap = [&](bool block) {
    int status = 0;
    pid_t pid;
    while ((pid = waitpid(-1, &status, block ? 0 : WNOHANG)) > 0) {
      auto it = children.find(pid);
      if (it == children.end()) continue;
      std::uint32_t slot = it->second;
      children.erase(it);
      if (!block) report_death(slot, status);
    }
  };

  for (;;) {
    pollfd fds[2] = {{cfg.command_fd, POLLIN, 0}, {sfd, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) continue;
    if (fds[1].revents & POLLIN) {
      signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) == sizeof si) {
      }
      reap(false);
    }
    if (fds[0].revents & (POLLIN | POLLHUP)) {
      supervisor_command c{};
      ssize_t n = read(cfg.command_fd, &c, sizeof c);
      if (n <= 0) {
        // The driver is shutting down (or gone): end every worker, reap them, leave.
        for (auto& [pid, slot] : children) ::kill(pid, SIGKILL);
        reap(true);
        _exit(0);
      }
      if (c.op == supervisor_command::start) {
        pid_t pid = start(c.slot);
        if (pid > 0) {
          children[pid] = c.slot;
          cfg.hdr->worker(c.slot).pid.store(pid, std::memory_order_release);
        } else {
          report_death(c.slot, W_EXITCODE(127, 0));
        }
      } else if (c.op == supervisor_command::kill) {
        for (auto& [pid, slot] : children)
          if (slot == c.slot) ::kill(pid, SIGKILL);
      }
    }
  }
}

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/supervisor.hpp>
// begin <coray/detail/runtime/system.hpp>
/// Facts about the machine the runtime sizes itself by: usable cores (affinity and cgroup
/// quota) and memory (physical RAM and cgroup limit).

#include <sched.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>
// #include <coray/version.hpp>: inlined above
#include <cstdint>
#include <fstream>
#include <string>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// Cores this process may run on: the CPU affinity mask, further capped by a cgroup v2
/// `cpu.max` quota (rounded up). Never less than 1.
inline unsigned usable_cores() {
  unsigned n = 0;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) n = static_cast<unsigned>(CPU_COUNT(&set));
  if (n == 0) n = static_cast<unsigned>(std::max(1L, sysconf(_SC_NPROCESSORS_ONLN)));
  std::ifstream f("/sys/fs/cgroup/cpu.max");
  std::string quota;
  long long period = 0;
  if (f >> quota >> period && quota != "max" && period > 0) {
    long long q = std::stoll(quota);
    if (q > 0)
      n = std::min<unsigned>(n, static_cast<unsigned>(std::max(1LL, (q + period - 1) / period)));
  }
  return std::max(1u, n);
}

/// Physical memory available to this process: RAM, capped by a cgroup v2 `memory.max`.
inline std::uint64_t usable_memory_bytes() {
  std::uint64_t ram = static_cast<std::uint64_t>(sysconf(_SC_PHYS_PAGES)) *
                      static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
  std::ifstream f("/sys/fs/cgroup/memory.max");
  std::string limit;
  if (f >> limit && limit != "max") {
    std::uint64_t l = std::stoull(limit);
    if (l > 0) ram = std::min(ram, l);
  }
  return ram;
}

/// "SIGKILL (Killed)" for a signal number.
inline std::string signal_description(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  const char* desc = sigdescr_np(sig);
  std::string s = abbrev ? std::string("SIG") + abbrev : "signal " + std::to_string(sig);
  if (desc) s += std::string(" (") + desc + ")";
  return s;
}

/// Words for a wait() status: "was killed by SIGSEGV (Segmentation fault)" or "exited with code 3".
inline std::string describe_exit(int wait_status) {
  if (WIFSIGNALED(wait_status)) return "was killed by " + signal_description(WTERMSIG(wait_status));
  if (WIFEXITED(wait_status)) return "exited with code " + std::to_string(WEXITSTATUS(wait_status));
  return "stopped";
}

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/system.hpp>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

struct driver_config {
  std::uint32_t num_workers;
  std::uint32_t max_actors;
  std::size_t object_store_bytes;
  start_method_id method;
  std::size_t inline_threshold;
  std::uint32_t spin_us;
  std::uint32_t max_tasks_in_flight_per_worker;
  std::vector<std::string> argv;
  std::string spill_directory;  // empty: no spilling
};

inline std::uint32_t next_epoch() noexcept {
  static std::uint32_t e = 0;
  return ++e;
}

/// What ray::spawn asks of the driver.
struct actor_spawn_request {
  task_spec constructor;  // fn_id: the constructor invoker; args: the constructor's
  std::uint64_t type_id = 0;
  std::string type_name;
  std::string name;
  std::uint32_t max_concurrency = 1;
  int max_restarts = 0;
  int max_task_retries = 0;
};

class driver final : public process {
 public:
  static constexpr std::size_t mailbox_capacity = 1024;

  explicit driver(driver_config cfg) : cfg_(std::move(cfg)) {
    epoch = next_epoch();
    const std::uint32_t slots = cfg_.num_workers + cfg_.max_actors;
    const std::size_t mb_bytes = mailbox::bytes_for(mailbox_capacity);
    const std::size_t control =
        shared_header::bytes_for(slots) + 2 * cfg_.num_workers * (mb_bytes + 64);
    seg.create(segment::root_bytes + cfg_.object_store_bytes + control + (1 << 20));

    hdr = new (seg.allocate_aligned(shared_header::bytes_for(slots), 64)) shared_header{};
    seg.header_root().header_offset = seg.offset_of(hdr);
    hdr->driver_pid = getpid();
    hdr->slots = slots;
    hdr->spin_us = cfg_.spin_us;
    hdr->inline_threshold = cfg_.inline_threshold;
    hdr->mailbox_capacity = mailbox_capacity;
    views_.resize(slots);
    for (std::uint32_t i = 0; i < slots; ++i) {
      views_[i].index = i;
      views_[i].shared = new (&hdr->worker(i)) worker_shared{};
    }
    for (std::uint32_t i = slots; i-- > cfg_.num_workers;) free_actor_slots_.push_back(i);
    for (std::uint32_t i = 0; i < cfg_.num_workers; ++i) {
      open_mailboxes(views_[i]);
      active_.push_back(i);
    }
    if (!cfg_.spill_directory.empty()) {
      // An unnamed file: it vanishes with the driver, even after kill -9.
      spill_fd_ = ::open(cfg_.spill_directory.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
      if (spill_fd_ < 0)
        throw ray::runtime_error("coray: cannot spill to " + cfg_.spill_directory + ": " +
                                 std::strerror(errno));
    }
    start_supervisor();
    for (std::uint32_t i = 0; i < cfg_.num_workers; ++i) start_process(i);
    process::current() = this;
    if (spill_fd_ >= 0)
      restore_spilled = [](object_state& st) {
        static_cast<driver*>(process::current())->restore(st);
      };
  }

  ~driver() override {
    stop_idle_actors();
    if (process::current() == this) process::current() = nullptr;
    // Closing the command socket tells the supervisor to end every process and exit.
    if (command_fd_ >= 0) ::close(command_fd_);
    if (supervisor_ > 0) {
      int st;
      while (waitpid(supervisor_, &st, 0) < 0 && errno == EINTR) {
      }
    }
    for (auto& [id, a] : actors_) a.queue.clear();
    tasks_.clear();
    runnable_.clear();
    if (spill_fd_ >= 0) {
      restore_spilled = nullptr;
      ::close(spill_fd_);
    }
  }

  bool is_driver() const noexcept override { return true; }
  std::uint32_t num_workers() const noexcept { return cfg_.num_workers; }

  state_ptr submit(task_spec&& spec) override {
    if (supervisor_ < 0)
      throw worker_crashed("coray: the runtime's supervisor and workers are gone");
    auto rec = std::make_unique<task_record>();
    rec->id = next_task_id_++;
    rec->fn_id = spec.fn_id;
    rec->name = spec.name;
    rec->nargs = spec.nargs;
    rec->args = std::move(spec.args);
    rec->deps = std::move(spec.deps);
    rec->blocks = std::move(spec.blocks);
    rec->actor = spec.target_actor;
    rec->actors = std::move(spec.actors);
    rec->max_retries = spec.max_retries;
    rec->retry_matcher = spec.retry_matcher;
    rec->result = make_state();
    rec->result->id = rec->id;  // lets ray::cancel find the call
    state_ptr result = rec->result;
    admit(std::move(rec));
    dispatch();
    return result;
  }

  /// ray::cancel: a call not yet sent is removed; one running keeps running (or, with
  /// `force`, its worker is killed), and either way its result becomes `cancelled` now.
  void cancel_call(std::uint64_t id, bool force) override {
    auto it = tasks_.find(id);
    if (it == tasks_.end() || it->second->result->settled()) return;
    task_record& r = *it->second;
    r.cancelled = true;
    auto e = std::make_exception_ptr(cancelled(
        "coray: " + std::string(r.name.empty() ? "the call" : r.name) + " was cancelled"));
    if (auto q = std::find(runnable_.begin(), runnable_.end(), &r); q != runnable_.end()) {
      runnable_.erase(q);
      fail(r, e);
      return;
    }
    if (r.actor) {
      auto a = actors_.find(r.actor);
      if (a != actors_.end()) {
        auto& queue = a->second.queue;
        if (auto q = std::find(queue.begin(), queue.end(), &r); q != queue.end()) {
          if (r.pending_deps) {  // dependencies still hold it: settle now, drop when they arrive
            r.failed_dep = true;
            r.result->set_error(e);
          } else {
            queue.erase(q);
            fail(r, e);
          }
          return;
        }
      }
    }
    if (r.pending_deps) {
      r.failed_dep = true;  // dropped once its dependencies settle
      r.result->set_error(e);
      return;
    }
    r.result->set_error(e);  // dispatched: the reply, if any, is ignored
    if (force && !r.actor && r.worker >= 0)
      command({supervisor_command::kill, static_cast<std::uint32_t>(r.worker)});
  }

  /// Pids of the task workers, in slot order (0 while one starts).
  std::vector<int> worker_pids() const {
    std::vector<int> pids;
    for (std::uint32_t i = 0; i < cfg_.num_workers; ++i)
      pids.push_back(views_[i].shared->pid.load(std::memory_order_acquire));
    return pids;
  }

  // ---- actors -------------------------------------------------------------------------

  /// Creates an actor: a process of its own whose first message builds the object. Returns
  /// its id at once; calls queue behind the construction.
  std::uint64_t spawn_actor(actor_spawn_request req) {
    if (supervisor_ < 0) throw worker_crashed("coray: the runtime's supervisor is gone");
    if (!req.name.empty() && names_.count(req.name))
      throw ray::runtime_error("ray::spawn: an actor named '" + req.name + "' already exists");
    if (free_actor_slots_.empty())
      throw ray::runtime_error("ray::spawn: too many live actors (runtime_options::max_actors is " +
                               std::to_string(cfg_.max_actors) + ")");
    const std::uint32_t slot = free_actor_slots_.back();
    free_actor_slots_.pop_back();
    process_view& v = views_[slot];
    open_mailboxes(v);
    v.actor = next_actor_id_++;
    active_.push_back(slot);

    actor_entry& a = actors_[v.actor];
    a.id = v.actor;
    a.slot = slot;
    a.type_id = req.type_id;
    a.type_name = std::move(req.type_name);
    a.name = std::move(req.name);
    a.max_restarts = req.max_restarts;
    a.max_task_retries = req.max_task_retries;
    a.max_concurrency = req.max_concurrency;
    // Kept to build the actor again after a crash (max_restarts).
    a.ctor_fn = req.constructor.fn_id;
    a.ctor_name = req.constructor.name;
    a.ctor_nargs = req.constructor.nargs;
    a.ctor_args = req.constructor.args;
    a.ctor_deps = req.constructor.deps;
    for (auto* b : req.constructor.blocks) {
      seg.add_ref(b);
      a.ctor_blocks.push_back(b);
    }
    if (!a.name.empty()) names_[a.name] = a.id;

    req.constructor.target_actor = a.id;
    auto rec = std::make_unique<task_record>();
    rec->id = next_task_id_++;
    rec->fn_id = req.constructor.fn_id;
    rec->name = req.constructor.name;
    rec->nargs = req.constructor.nargs;
    rec->args = std::move(req.constructor.args);
    rec->deps = std::move(req.constructor.deps);
    rec->blocks = std::move(req.constructor.blocks);
    rec->actors = std::move(req.constructor.actors);
    rec->actor = a.id;
    rec->construct = true;
    rec->max_concurrency = req.max_concurrency;
    rec->result = make_state();
    a.constructed = rec->result;
    admit(std::move(rec));
    start_process(slot);
    return a.id;
  }

  void actor_handle(std::uint64_t id, int delta) noexcept override { actor_ref(id, delta); }

  object_block* new_block(std::size_t size) override { return allocate_object(size, true); }
  void release_block(object_block* b) noexcept override { seg.release(b); }

  // ---- spilling -------------------------------------------------------------------------

  /// Objects written to the spill file so far.
  std::uint64_t spilled_objects() const noexcept { return spilled_objects_; }

  void block_adopted(object_state& s) override {
    if (spill_fd_ >= 0) resident_.insert(&s);
  }
  void state_released(object_state& s) noexcept override {
    if (spill_fd_ < 0) return;
    resident_.erase(&s);
    if (s.spilled()) punch(s);
  }

  /// A new block; when the store is full and spilling is on, objects only the driver holds
  /// and nothing reads in place go to disk until it fits. Called for the user (`may_wait`,
  /// outside the loop), it also lets replies on their way arrive for up to a second: they
  /// may free memory or make it spillable.
  object_block* allocate_object(std::size_t size, bool may_wait = false) {
    const auto deadline = clock::now() + std::chrono::seconds(1);
    for (;;) {
      try {
        return seg.new_object(size);
      } catch (const object_store_full&) {
        if (spill_fd_ < 0) throw;
        if (spill_one()) continue;
        if (!may_wait || in_poll_ || clock::now() > deadline) throw;
        if (!poll()) sched_yield();
      }
    }
  }

  /// Brings a spilled object back into the store.
  void restore(object_state& s) {
    object_block* b = allocate_object(static_cast<std::size_t>(s.spill_size), true);
    std::size_t done = 0;
    while (done < s.spill_size) {
      ssize_t n = ::pread(spill_fd_, b->data() + done, s.spill_size - done,
                          s.spill_offset + static_cast<off_t>(done));
      if (n <= 0) {
        seg.release(b);
        throw ray::runtime_error(std::string("coray: reading a spilled object failed: ") +
                                 std::strerror(errno));
      }
      done += static_cast<std::size_t>(n);
    }
    punch(s);
    s.block = b;
    resident_.insert(&s);
  }

  /// Calls made from now on, and those not yet sent, fail at once; the process gets SIGKILL
  /// and calls it was running fail when its death is seen.
  void kill_actor(std::uint64_t id) override {
    auto it = actors_.find(id);
    if (it == actors_.end() || it->second.dead || it->second.killed) return;
    actor_entry& a = it->second;
    a.killed = true;
    const int pid = views_[a.slot].shared->pid.load(std::memory_order_acquire);
    a.cause = "coray: actor " + a.type_name + " (pid " + std::to_string(pid) +
              ") was killed by ray::kill";
    command({supervisor_command::kill, a.slot});
    std::vector<task_record*> queued(a.queue.begin(), a.queue.end());
    a.queue.clear();
    auto e = std::make_exception_ptr(actor_died(a.cause));
    for (task_record* r : queued) fail(*r, e);
  }

  actor_info lookup_actor(std::string_view name) override {
    auto it = names_.find(std::string(name));
    if (it == names_.end()) return {};
    return {it->second, actors_.at(it->second).type_id};
  }

  /// The pid of an actor's process (0 while it starts or after it ended).
  int actor_pid(std::uint64_t id) const {
    auto it = actors_.find(id);
    if (it == actors_.end() || it->second.dead) return 0;
    return views_[it->second.slot].shared->pid.load(std::memory_order_acquire);
  }

  /// An actor's process for ray::actor_process: its pid (0 while it starts), whether it ended
  /// and, once it has, its wait status. nullopt once the actor is forgotten (it ended and no
  /// handle is left).
  struct actor_process_status {
    int pid = 0;
    bool ended = false;
    int wait_status = 0;
  };
  std::optional<actor_process_status> actor_status(std::uint64_t id) const {
    auto it = actors_.find(id);
    if (it == actors_.end()) return std::nullopt;
    const actor_entry& a = it->second;
    if (a.dead) return actor_process_status{a.pid, true, a.wait_status};
    return actor_process_status{views_[a.slot].shared->pid.load(std::memory_order_acquire), false,
                                0};
  }

 protected:
  bool poll() override {
    struct in_poll {
      bool& flag;
      bool was;
      explicit in_poll(bool& f) : flag(f), was(f) { flag = true; }
      ~in_poll() { flag = was; }
    } guard(in_poll_);
    bool progress = false;
    for (std::size_t i = 0; i < active_.size(); ++i) progress |= drain(views_[active_[i]], 64);
    if (hdr->deaths.load(std::memory_order_acquire) != seen_deaths_) {
      handle_deaths();
      progress = true;
    }
    for (std::uint32_t i : active_)
      if (!views_[i].grants.empty()) progress |= grant_blocks(views_[i]);
    progress |= flush_outgoing();
    progress |= dispatch();
    return progress;
  }

  void sleep(std::chrono::nanoseconds limit) override {
    hdr->driver_bell.sleep(
        [this] {
          if (hdr->deaths.load(std::memory_order_acquire) != seen_deaths_) return true;
          for (std::uint32_t i : active_)
            if (!views_[i].outbox->empty()) return true;
          // Waiting for room in an inbox: the process rings once it frees slots (Dekker with
          // worker::poll: flag set, fence, room read here; slots freed, fence, flag read there).
          for (std::uint32_t i : active_) {
            process_view& w = views_[i];
            if (w.blocked == 0) continue;
            w.shared->driver_waiting.store(1, std::memory_order_relaxed);
            std::atomic_thread_fence(std::memory_order_seq_cst);
            if (w.inbox->has_room(w.blocked)) {
              w.blocked = 0;  // retry now; a send that fails again sets it again
              return true;
            }
          }
          return false;
        },
        limit);
    check_supervisor();
  }

 private:
  struct task_record {
    std::uint64_t id = 0;
    std::uint64_t fn_id = 0;
    std::string_view name;
    std::uint32_t nargs = 0;
    std::vector<std::byte> args;
    std::vector<state_ptr> deps;
    std::vector<object_block*> blocks;
    std::vector<std::uint64_t> actors;  // actor handles in the arguments (kept alive)
    state_ptr result;
    std::uint32_t pending_deps = 0;
    bool failed_dep = false;
    std::uint64_t actor = 0;  // the actor it calls; 0 for a task
    bool construct = false;
    std::uint32_t max_concurrency = 1;
    int submitter = -1;  // slot of the process that made this nested call, -1 for the driver
    std::uint32_t submitter_generation = 0;
    std::uint64_t dispatch_seq = 0;
    int worker = -1;  // the task worker it was sent to
    int max_retries = 0;
    std::uint64_t retry_matcher = 0;
    int attempt = 1;
    bool cancelled = false;
    bool pinned = false;              // its store arguments are pinned (see pin_deps)
    object_block* message = nullptr;  // the dispatched message, when it needed a block
    driver* self = nullptr;
  };

  /// The driver's side of one process slot (task worker or actor).
  struct process_view {
    std::uint32_t index = 0;
    worker_shared* shared = nullptr;
    mailbox* inbox = nullptr;
    mailbox* outbox = nullptr;
    std::uint32_t generation = 0;
    std::uint64_t actor = 0;       // the actor living here; 0 for a task worker
    std::uint64_t dispatched = 0;  // run_task messages sent to this generation
    std::uint32_t in_flight = 0;   // tasks dispatched and not done
    std::deque<std::pair<std::uint64_t, std::uint64_t>> order;  // (dispatch_seq, task id)
    std::deque<std::function<bool()>> outgoing;                 // messages waiting for room
    std::unordered_map<std::uint64_t, state_ptr> held;          // nested results it holds
    std::unordered_multiset<std::uint64_t> owned;               // blocks it holds a reference to
    struct grant_request {
      std::uint64_t request, size;
      clock::time_point deadline;
    };
    std::deque<grant_request> grants;  // block requests waiting for room
    std::size_t blocked = 0;           // slots a message to it needed and did not find
  };

  /// Sends to `w`'s inbox; on a full inbox, remembers that the driver waits for room there.
  template <class Fill>
  bool send_to(process_view& w, msg_kind k, std::size_t size, Fill&& fill) {
    if (try_send(*w.inbox, w.shared->bell, k, size, std::forward<Fill>(fill))) return true;
    w.blocked = mailbox::slots_for(size);
    return false;
  }
  bool send_block_to(process_view& w, msg_kind k, object_block* b) {
    if (try_send_block(seg, *w.inbox, w.shared->bell, k, b)) return true;
    w.blocked = 1;
    return false;
  }

  struct actor_entry {
    std::uint64_t id = 0;
    std::uint32_t slot = 0;
    std::uint64_t type_id = 0;
    std::string type_name;
    std::string name;
    int refs = 0;
    bool dead = false;
    bool killed = false;
    bool closing = false;  // no handle is left: end after the queued calls
    bool shutdown_sent = false;
    std::string cause;
    int pid = 0, wait_status = 0;  // of its process, once it ended
    state_ptr constructed;
    int max_restarts = 0;
    int restarts = 0;
    int max_task_retries = 0;
    std::uint32_t max_concurrency = 1;
    std::uint64_t ctor_fn = 0;
    std::string_view ctor_name;
    std::uint32_t ctor_nargs = 0;
    std::vector<std::byte> ctor_args;
    std::vector<state_ptr> ctor_deps;
    std::vector<object_block*> ctor_blocks;  // one reference each, for rebuilding
    std::deque<task_record*> queue;          // calls not yet sent, in the order they were made
    std::deque<std::uint64_t> sent;          // calls sent and not done
    std::uint64_t dispatched = 0;            // method calls sent to the current process
  };

  // ---- admission and dependencies -----------------------------------------------------

  void admit(std::unique_ptr<task_record> rec) {
    task_record* r = rec.get();
    r->self = this;
    tasks_.emplace(r->id, std::move(rec));
    for (std::uint64_t a : r->actors) actor_ref(a, +1);
    for (auto& d : r->deps) {
      if (d->st == object_state::status::failed) {
        if (!r->failed_dep) r->result->set_error(d->error);
        r->failed_dep = true;
      } else if (d->st == object_state::status::pending) {
        ++r->pending_deps;
        d->waiters.push_back({&driver::on_dependency, r});
      }
    }
    if (r->actor) {
      // Actor calls keep their order: they wait in the actor's queue, dependencies or not.
      auto it = actors_.find(r->actor);
      if (it == actors_.end() || it->second.dead || it->second.killed) {
        fail(*r, std::make_exception_ptr(
                     actor_died(it == actors_.end() ? "coray: no such actor" : it->second.cause)));
        return;
      }
      if (!r->construct) r->max_retries = it->second.max_task_retries;
      it->second.queue.push_back(r);
      pump_actor(it->second);
    } else if (r->pending_deps == 0) {
      if (r->failed_dep)
        finish(r->id);
      else
        runnable_.push_back(r);
    }
  }

  static void on_dependency(void* ctx, object_state& dep) {
    auto* r = static_cast<task_record*>(ctx);
    if (dep.st == object_state::status::failed && !r->failed_dep) {
      r->failed_dep = true;
      r->result->set_error(dep.error);
    }
    if (--r->pending_deps != 0) return;
    driver& d = *r->self;
    if (r->actor) {
      auto it = d.actors_.find(r->actor);
      if (it != d.actors_.end()) d.pump_actor(it->second);
    } else if (r->failed_dep) {
      d.finish(r->id);
    } else {
      d.runnable_.push_back(r);
    }
  }

  /// Fails a call that has not been sent and forgets it.
  void fail(task_record& r, std::exception_ptr e) {
    if (!r.result->settled()) r.result->set_error(std::move(e));
    if (r.submitter >= 0) forward(r);
    finish(r.id);
  }

  void finish(std::uint64_t id) {
    auto it = tasks_.find(id);
    if (it == tasks_.end()) return;
    for (auto* b : it->second->blocks) seg.release(b);
    if (it->second->message) seg.release(it->second->message);
    if (it->second->pinned)
      for (auto& d : it->second->deps)
        if (d->block && d->pins) --d->pins;
    std::vector<std::uint64_t> actors = std::move(it->second->actors);
    tasks_.erase(it);
    for (std::uint64_t a : actors) actor_ref(a, -1);
  }

  // ---- dispatch -----------------------------------------------------------------------

  process_view* pick_worker() {
    process_view* best = nullptr;
    std::uint32_t best_load = cfg_.max_tasks_in_flight_per_worker;
    for (std::uint32_t i = 0; i < cfg_.num_workers; ++i) {
      process_view& w = views_[i];
      if (static_cast<slot_state>(w.shared->state.load(std::memory_order_acquire)) ==
          slot_state::dead)
        continue;
      std::uint32_t susp = w.shared->suspended.load(std::memory_order_relaxed);
      std::uint32_t load = w.in_flight > susp ? w.in_flight - susp : 0;
      if (load < best_load) {
        best = &w;
        best_load = load;
        if (load == 0) break;
      }
    }
    return best;
  }

  bool dispatch() {
    bool progress = false;
    while (!runnable_.empty()) {
      process_view* w = pick_worker();
      if (!w) break;
      task_record* r = runnable_.front();
      if (!send_call(*w, *r)) break;
      grant_pinned_blocks(*w, *r);
      r->dispatch_seq = w->dispatched++;
      r->worker = static_cast<int>(w->index);
      w->order.emplace_back(r->dispatch_seq, r->id);
      ++w->in_flight;
      runnable_.pop_front();
      progress = true;
    }
    for (auto it = backlog_.begin(); it != backlog_.end();) {
      auto a = actors_.find(*it);
      it = backlog_.erase(it);
      if (a != actors_.end()) progress |= pump_actor(a->second);
    }
    return progress;
  }

  /// Sends the actor's queued calls, in order, while each is ready and its mailbox has room.
  bool pump_actor(actor_entry& a) {
    bool progress = false;
    process_view& v = views_[a.slot];
    while (!a.queue.empty() && !a.dead) {
      task_record* r = a.queue.front();
      if (r->pending_deps) break;
      if (r->failed_dep) {
        a.queue.pop_front();
        fail(*r, r->result->error);
        progress = true;
        continue;
      }
      if (!send_call(v, *r)) {
        backlog_.insert(a.id);
        break;
      }
      grant_pinned_blocks(v, *r);
      if (!r->construct)
        r->dispatch_seq = a.dispatched++;  // its place among the calls this process starts
      a.queue.pop_front();
      a.sent.push_back(r->id);
      progress = true;
    }
    if (a.closing && a.queue.empty() && !a.dead && !a.shutdown_sent) {
      a.shutdown_sent = send_to(v, msg_kind::shutdown, 0, [](std::byte*) {});
      if (!a.shutdown_sent) backlog_.insert(a.id);
    }
    return progress;
  }

  template <class F>
  static void for_each_entry(const task_record& r, F&& f) {
    const std::byte* p = r.args.data();
    for (std::uint32_t i = 0; i < r.nargs; ++i) {
      arg_entry e;
      std::memcpy(&e, p, sizeof e);
      f(e, p + sizeof e);
      p += sizeof e + entry_payload(e);
    }
  }

  /// The process a call was sent to gets a reference of its own to each block the call pins;
  /// the handle it decodes adopts it.
  void grant_pinned_blocks(process_view& w, const task_record& r) {
    for (std::uint64_t id : r.actors)
      if (id & pinned_block_tag) {
        seg.add_ref(seg.at<object_block>(id & ~pinned_block_tag));
        w.owned.insert(id & ~pinned_block_tag);
      }
  }

  /// Sends a call's message, its dependencies replaced by their values; false if no room.
  bool send_call(process_view& w, task_record& r) {
    try {
      for (auto& d : r.deps)
        if (d->spilled()) (void)d->value_bytes();  // back into the store, to be read in place
    } catch (const object_store_full&) {
      return false;  // no room yet: the call waits for a later turn
    }
    std::size_t size = sizeof(task_header);
    for_each_entry(r, [&](const arg_entry& e, const std::byte*) {
      size += sizeof(arg_entry);
      if (e.tag == arg_entry::inline_value) size += pad16(e.len);
      if (e.tag == arg_entry::dependency && !r.deps[e.ref]->block)
        size += pad16(r.deps[e.ref]->bytes.size());
      if (e.tag == arg_entry::dependency_list) size += pad16(dependency_list_bytes(e, r.deps));
    });
    const msg_kind kind = r.construct ? msg_kind::construct : msg_kind::run_task;
    auto fill = [&](std::byte* out) {
      task_header h{r.id, r.fn_id, r.nargs, r.construct ? r.max_concurrency : 0,
                    0,    0,       0,       r.retry_matcher};
      std::memcpy(out, &h, sizeof h);
      std::byte* p = out + sizeof h;
      for_each_entry(r, [&](const arg_entry& e, const std::byte* data) {
        arg_entry o = e;
        const std::byte* src = data;
        if (e.tag == arg_entry::dependency) {
          // The record keeps the dependency (and so its block) alive until the call ends.
          auto& d = *r.deps[e.ref];
          if (d.block) {
            o = {.tag = arg_entry::block_value, .ref = seg.offset_of(d.block)};
          } else {
            o = {.tag = arg_entry::inline_value, .len = static_cast<std::uint32_t>(d.bytes.size())};
            src = d.bytes.data();
          }
        }
        if (e.tag == arg_entry::dependency_list) {
          // A vector's encoding from its elements' values: count, padding, elements.
          o = {.tag = arg_entry::inline_value,
               .len = static_cast<std::uint32_t>(dependency_list_bytes(e, r.deps))};
          std::memcpy(p, &o, sizeof o);
          write_dependency_list(p + sizeof o, e, r.deps);
          p += sizeof o + pad16(o.len);
          return;
        }
        std::memcpy(p, &o, sizeof o);
        p += sizeof o;
        if (o.tag == arg_entry::inline_value) {
          if (o.len) std::memcpy(p, src, o.len);
          p += pad16(o.len);
        }
      });
    };
    if (size <= w.inbox->max_message_bytes()) {
      if (!send_to(w, kind, size, fill)) return false;
      pin_deps(r);
      return true;
    }
    // Longer than the ring takes: in a block, freed when the call ends.
    object_block* b = allocate_object(size);
    fill(b->data());
    if (!send_block_to(w, kind, b)) {
      seg.release(b);
      return false;
    }
    if (r.message) seg.release(r.message);
    r.message = b;
    pin_deps(r);
    return true;
  }

  /// A call's store arguments are read in place while it runs: they must not be spilled.
  static void pin_deps(task_record& r) {
    if (r.pinned) return;
    r.pinned = true;
    for (auto& d : r.deps)
      if (d->block) ++d->pins;
  }

  // ---- receiving ----------------------------------------------------------------------

  bool drain(process_view& w, int budget) {
    bool progress = false;
    message_view m;
    while (budget-- > 0 && peek_message(seg, *w.outbox, gathered_, m)) {
      std::uint64_t v0 = 0;
      if (m.payload.size() >= sizeof v0) std::memcpy(&v0, m.payload.data(), sizeof v0);
      switch (m.kind) {
        case msg_kind::task_done:
          on_task_done(w, m.payload);
          break;
        case msg_kind::submit:
          on_submit(w, m.payload);
          break;
        case msg_kind::release:
          w.held.erase(v0);
          break;
        case msg_kind::actor_hold:
          actor_ref(v0, +1);
          break;
        case msg_kind::actor_release:
          actor_ref(v0, -1);
          break;
        case msg_kind::actor_kill:
          kill_actor(v0);
          break;
        case msg_kind::actor_lookup: {
          std::string name(reinterpret_cast<const char*>(m.payload.data()) + sizeof v0,
                           m.payload.size() - sizeof v0);
          actor_info info = lookup_actor(name);
          std::uint64_t reply[3] = {v0, info.id, info.type_id};
          queue_message(w, msg_kind::actor_found, reply, sizeof reply);
          break;
        }
        case msg_kind::block_request: {
          std::uint64_t size;
          std::memcpy(&size, m.payload.data() + sizeof v0, sizeof size);
          w.grants.push_back({v0, size, clock::now() + std::chrono::seconds(1)});
          grant_blocks(w);
          break;
        }
        case msg_kind::block_release:
          drop_owned(w, seg.at<object_block>(v0));
          break;
        default:
          break;
      }
      w.outbox->pop(m.slots);
      if (m.block) drop_owned(w, m.block);  // a long message's block, requested by its sender
      progress = true;
    }
    return progress;
  }

  /// Answers `w`'s block requests in order. One that does not fit waits (other replies on
  /// their way may free or make spillable what it needs) for up to a second, then is
  /// refused with the store's figures.
  bool grant_blocks(process_view& w) {
    bool progress = false;
    while (!w.grants.empty()) {
      auto& g = w.grants.front();
      std::uint64_t reply[5] = {g.request, 0, g.size, 0, seg.capacity()};
      try {
        object_block* b = allocate_object(static_cast<std::size_t>(g.size));
        reply[1] = seg.offset_of(b);
        w.owned.insert(reply[1]);
      } catch (const object_store_full&) {
        if (clock::now() < g.deadline) break;
      }
      reply[3] = seg.free_bytes();
      queue_message(w, msg_kind::block_granted, reply, sizeof reply);
      w.grants.pop_front();
      progress = true;
    }
    return progress;
  }

  /// Process `w` gives up one reference it held to `b`.
  void drop_owned(process_view& w, object_block* b) {
    auto it = w.owned.find(seg.offset_of(b));
    if (it == w.owned.end()) return;  // not its to give
    w.owned.erase(it);
    seg.release(b);
  }
  /// Process `w`'s reference to `b` passes to the driver (a result, or a call's argument).
  bool take_owned(process_view& w, object_block* b) {
    auto it = w.owned.find(seg.offset_of(b));
    if (it == w.owned.end()) return false;
    w.owned.erase(it);
    return true;
  }

  void on_task_done(process_view& w, std::span<const std::byte> payload) {
    result_header h;
    std::memcpy(&h, payload.data(), sizeof h);
    auto it = tasks_.find(h.id);
    if (it == tasks_.end()) {
      if (h.status == result_header::value_block) drop_owned(w, seg.at<object_block>(h.block));
      return;
    }
    task_record& r = *it->second;
    if (h.status == result_header::value_block && !take_owned(w, seg.at<object_block>(h.block))) {
      h.status = result_header::error;  // a block it does not own: refuse rather than corrupt
      r.result->set_error(std::make_exception_ptr(
          ray::runtime_error("coray: a reply named a block its sender does not hold")));
    }
    auto body = payload.subspan(sizeof h, h.len);
    const bool is_task = r.actor == 0;
    if (h.status == result_header::retryable_error && !r.result->settled() &&
        r.attempt <= r.max_retries) {
      ++r.attempt;
      if (is_task) {
        if (w.in_flight) --w.in_flight;
        runnable_.push_back(&r);
      } else if (auto a = actors_.find(r.actor); a != actors_.end()) {
        auto& sent = a->second.sent;
        sent.erase(std::remove(sent.begin(), sent.end(), r.id), sent.end());
        a->second.queue.push_front(&r);
      }
      return;
    }
    if (!r.result->settled()) {
      switch (h.status) {
        case result_header::value_inline:
          r.result->set_inline(body);
          break;
        case result_header::value_block:
          r.result->set_block(seg.at<object_block>(h.block));
          block_adopted(*r.result);
          break;
        default: {
          wire_error e = decode<wire_error>(body);
          if (r.attempt > 1) std::get<2>(e) += attempts_note(r);
          r.result->set_error(to_exception(e));
          break;
        }
      }
    }
    if (r.construct && r.result->st == object_state::status::failed) {
      auto a = actors_.find(r.actor);
      if (a != actors_.end()) a->second.cause = describe_error(r.result->error);
    }
    if (r.submitter >= 0) forward(r);
    finish(h.id);
    if (is_task) {
      if (w.in_flight) --w.in_flight;
      while (!w.order.empty() && !tasks_.count(w.order.front().second)) w.order.pop_front();
    } else if (auto a = actors_.find(w.actor); a != actors_.end()) {
      auto& sent = a->second.sent;
      while (!sent.empty() && !tasks_.count(sent.front())) sent.pop_front();
    }
  }

  /// A nested call from a worker or actor: its dependencies arrive by value or by the id of
  /// another nested result that process holds.
  void on_submit(process_view& w, std::span<const std::byte> payload) {
    task_header h;
    std::memcpy(&h, payload.data(), sizeof h);
    auto rec = std::make_unique<task_record>();
    rec->id = h.task_id;
    rec->fn_id = h.fn_id;
    rec->nargs = h.nargs;
    rec->actor = h.target;
    rec->max_retries = h.max_retries;
    rec->retry_matcher = h.retry_matcher;
    rec->submitter = static_cast<int>(w.index);
    rec->submitter_generation = w.generation;
    if (auto* f = find_function(h.fn_id)) rec->name = f->name;
    const std::size_t actor_bytes = h.extra * sizeof(std::uint64_t);
    const std::span<const std::byte> sent_args =
        payload.subspan(sizeof h, payload.size() - sizeof h - actor_bytes);
    rec->actors.resize(h.extra);
    if (actor_bytes)
      std::memcpy(rec->actors.data(), payload.data() + payload.size() - actor_bytes, actor_bytes);
    rec->result = make_state();
    bool unknown = false;
    for (std::uint64_t& a : rec->actors)
      if ((a & pinned_block_tag) && !w.owned.count(a & ~pinned_block_tag)) {
        a = 0;  // a block its process does not hold: refuse the call
        unknown = true;
      }
    auto held_dep = [&](std::uint64_t id) {
      auto held = w.held.find(id);
      if (held == w.held.end()) {
        unknown = true;
        rec->deps.push_back(make_state());  // a placeholder: the call fails below
      } else {
        rec->deps.push_back(held->second);
      }
    };
    // The driver's form of the arguments: dependencies become indices into rec->deps.
    const std::byte* q = sent_args.data();
    for (std::uint32_t i = 0; i < rec->nargs; ++i) {
      arg_entry e;
      std::memcpy(&e, q, sizeof e);
      q += sizeof e;
      if (e.tag == arg_entry::dependency_list) {
        std::vector<std::uint64_t> ids(e.len);
        if (e.len) std::memcpy(ids.data(), q, e.len * sizeof(std::uint64_t));
        q += pad16(e.len * sizeof(std::uint64_t));
        e.ref = rec->deps.size();
        for (std::uint64_t id : ids) held_dep(id);
      } else if (e.tag == arg_entry::dependency) {
        const std::uint64_t id = e.ref;
        e.ref = rec->deps.size();
        held_dep(id);
      } else if (e.tag == arg_entry::block_value) {
        // An argument block the sender made for this call is handed over; one it holds is
        // borrowed, and the call takes a reference of its own.
        object_block* b = seg.at<object_block>(e.ref);
        if (!(e.owned && take_owned(w, b))) seg.add_ref(b);
        rec->blocks.push_back(b);
      }
      const std::size_t at = rec->args.size();
      rec->args.resize(at + sizeof e + entry_payload(e));
      std::memcpy(rec->args.data() + at, &e, sizeof e);
      if (e.tag == arg_entry::inline_value) {
        std::memcpy(rec->args.data() + at + sizeof e, q, entry_payload(e));
        q += entry_payload(e);
      }
    }
    w.held.emplace(rec->id, rec->result);
    if (unknown) {
      task_record* r = rec.get();
      tasks_.emplace(r->id, std::move(rec));
      for (std::uint64_t a : r->actors) actor_ref(a, +1);
      fail(*r, std::make_exception_ptr(ray::runtime_error(
                   "coray: a nested call used an object_ref its process does not hold")));
      return;
    }
    admit(std::move(rec));
  }

  /// Sends a nested call's result to the process that made the call, if it still wants it.
  void forward(task_record& r) {
    process_view& w = views_[static_cast<std::size_t>(r.submitter)];
    if (w.generation != r.submitter_generation || !w.held.count(r.id)) return;
    w.outgoing.push_back([this, &w, id = r.id, st = r.result] { return send_result(w, id, *st); });
    flush_outgoing(w);
  }

  void queue_message(process_view& w, msg_kind k, const void* data, std::size_t n) {
    std::vector<std::byte> bytes(static_cast<const std::byte*>(data),
                                 static_cast<const std::byte*>(data) + n);
    w.outgoing.push_back([this, &w, k, bytes = std::move(bytes)] {
      return send_to(w, k, bytes.size(), [&](std::byte* out) {
        if (!bytes.empty()) std::memcpy(out, bytes.data(), bytes.size());
      });
    });
    flush_outgoing(w);
  }

  bool flush_outgoing() {
    bool progress = false;
    for (std::uint32_t i : active_) progress |= flush_outgoing(views_[i]);
    return progress;
  }

  bool flush_outgoing(process_view& w) {
    bool progress = false;
    while (!w.outgoing.empty() && w.outgoing.front()()) {
      w.outgoing.pop_front();
      progress = true;
    }
    return progress;
  }

  bool send_result(process_view& w, std::uint64_t id, object_state& s) {
    try {
      if (s.spilled()) (void)s.value_bytes();
    } catch (const object_store_full&) {
      return false;  // no room yet: sent on a later turn
    }
    if (s.st == object_state::status::failed) {
      wire_error e;
      try {
        std::rethrow_exception(s.error);
      } catch (...) {
        e = describe_current_exception("");
      }
      std::size_t n = encoded_size(e);
      return send_to(w, msg_kind::object_ready, sizeof(result_header) + n, [&](std::byte* out) {
        result_header h{id, result_header::error, static_cast<std::uint32_t>(n), 0, 0};
        std::memcpy(out, &h, sizeof h);
        encode_to(std::span<std::byte>(out + sizeof h, n), e);
      });
    }
    if (s.block) {
      result_header h{id, result_header::value_block, 0, seg.offset_of(s.block), 0};
      bool ok = send_to(w, msg_kind::object_ready, sizeof h,
                        [&](std::byte* out) { std::memcpy(out, &h, sizeof h); });
      if (ok) {
        seg.add_ref(s.block);  // the receiving process's handle
        w.owned.insert(h.block);
      }
      return ok;
    }
    return send_to(w, msg_kind::object_ready, sizeof(result_header) + s.bytes.size(),
                   [&](std::byte* out) {
                     result_header h{id, result_header::value_inline,
                                     static_cast<std::uint32_t>(s.bytes.size()), 0, 0};
                     std::memcpy(out, &h, sizeof h);
                     if (!s.bytes.empty())
                       std::memcpy(out + sizeof h, s.bytes.data(), s.bytes.size());
                   });
  }

  static std::string describe_error(const std::exception_ptr& e) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      return x.what();
    } catch (...) {
      return "an unknown exception";
    }
  }

  // ---- actor lifetime -----------------------------------------------------------------

  void actor_ref(std::uint64_t id, int delta) noexcept {
    if (id & pinned_block_tag) {  // a block the call pins (see collect_pinned_block)
      object_block* b = seg.at<object_block>(id & ~pinned_block_tag);
      if (delta > 0)
        seg.add_ref(b);
      else
        seg.release(b);
      return;
    }
    auto it = actors_.find(id);
    if (it == actors_.end()) return;
    actor_entry& a = it->second;
    a.refs += delta;
    if (a.refs > 0) return;
    if (a.dead) {
      forget_actor(a);
    } else if (!a.closing) {
      // No handle is left anywhere: the actor ends once its queued calls are done.
      a.closing = true;
      if (!a.name.empty()) names_.erase(a.name);
      pump_actor(a);
    }
  }

  void forget_actor(actor_entry& a) {
    if (a.refs > 0 || !a.dead || !a.queue.empty()) return;
    for (auto* b : a.ctor_blocks) seg.release(b);
    actors_.erase(a.id);
  }

  /// At teardown, idle actors end on their own (running their destructor) before the
  /// supervisor kills what is left; a busy one is not waited for beyond a short grace.
  void stop_idle_actors() noexcept {
    if (supervisor_ <= 0) return;
    std::vector<std::uint32_t> stopping;
    for (auto& [id, a] : actors_) {
      if (a.dead || a.killed || !a.queue.empty() || !a.sent.empty()) continue;
      process_view& v = views_[a.slot];
      if (a.shutdown_sent || send_to(v, msg_kind::shutdown, 0, [](std::byte*) {})) {
        a.shutdown_sent = true;
        stopping.push_back(a.slot);
      }
    }
    const auto deadline = clock::now() + std::chrono::milliseconds(500);
    auto all_gone = [&] {
      for (std::uint32_t s : stopping)
        if (static_cast<slot_state>(views_[s].shared->state.load(std::memory_order_acquire)) !=
            slot_state::dead)
          return false;
      return true;
    };
    while (!all_gone() && clock::now() < deadline) {
      const std::uint32_t seen = hdr->deaths.load(std::memory_order_acquire);
      hdr->driver_bell.sleep([&] { return hdr->deaths.load(std::memory_order_acquire) != seen; },
                             std::chrono::milliseconds(10));
    }
  }

  // ---- process deaths -----------------------------------------------------------------

  void handle_deaths() {
    seen_deaths_ = hdr->deaths.load(std::memory_order_acquire);
    for (std::size_t k = 0; k < active_.size();) {
      process_view& w = views_[active_[k]];
      if (static_cast<slot_state>(w.shared->state.load(std::memory_order_acquire)) !=
          slot_state::dead) {
        ++k;
        continue;
      }
      drain(w, 1 << 30);  // replies it managed to send count
      const int pid = w.shared->pid.load(std::memory_order_relaxed);
      const std::string how = describe_exit(w.shared->wait_status.load(std::memory_order_relaxed));
      w.outgoing.clear();
      w.grants.clear();
      w.held.clear();
      // Everything the dead process held is let go on its behalf.
      for (std::uint64_t off : w.owned) seg.release(seg.at<object_block>(off));
      w.owned.clear();
      if (w.actor) {
        if (actor_ended(w, pid, how))
          ++k;
        else
          active_.erase(active_.begin() + static_cast<std::ptrdiff_t>(k));
        continue;
      }
      const std::uint64_t started = w.shared->tasks_started.load(std::memory_order_acquire);
      std::vector<task_record*> requeue;
      for (auto& [seq, id] : w.order) {
        auto it = tasks_.find(id);
        if (it == tasks_.end()) continue;
        task_record& r = *it->second;
        if (r.worker != static_cast<int>(w.index) || r.dispatch_seq != seq)
          continue;  // since re-sent elsewhere
        if (r.cancelled || (seq < started && r.attempt > r.max_retries)) {
          fail(r, std::make_exception_ptr(worker_crashed(
                      "coray: worker " + std::to_string(w.index) + " (pid " + std::to_string(pid) +
                      ") " + how + " while running " +
                      std::string(r.name.empty() ? "a task" : r.name) + attempts_note(r))));
        } else {
          if (seq < started) ++r.attempt;  // it ran and died: retried, Ray's max_retries
          if (r.message) seg.release(r.message);
          r.message = nullptr;
          requeue.push_back(&r);  // to run (again) on another worker
        }
      }
      runnable_.insert(runnable_.begin(), requeue.begin(), requeue.end());
      w.order.clear();
      w.in_flight = 0;
      w.dispatched = 0;
      open_mailboxes(w);
      start_process(w.index);
      ++k;
    }
  }

  /// An actor's process ended: its unfinished calls fail with actor_died, and so will
  /// later ones; its slot is free again.
  /// Builds an actor again after its process died (max_restarts): a new process, its
  /// constructor run again with the same arguments, its in-flight calls retried if their
  /// max_task_retries allow, its queued calls kept in order.
  bool restart_actor(process_view& w, actor_entry& a, int pid, const std::string& how) {
    ++a.restarts;
    const std::string cause =
        "coray: actor " + a.type_name + " (pid " + std::to_string(pid) + ") " + how;
    const std::uint64_t started = w.shared->tasks_started.load(std::memory_order_acquire);
    std::vector<task_record*> again;
    for (std::uint64_t id : a.sent) {
      auto t = tasks_.find(id);
      if (t == tasks_.end()) continue;
      task_record& r = *t->second;
      if (r.construct) continue;  // replaced below
      if (r.dispatch_seq >= started && !r.cancelled) {
        again.push_back(&r);  // never started: simply sent again
      } else if (r.attempt <= r.max_retries && !r.cancelled) {
        ++r.attempt;
        again.push_back(&r);
      } else {
        fail(r, std::make_exception_ptr(actor_died(cause + attempts_note(r))));
      }
    }
    a.sent.clear();
    a.dispatched = 0;
    a.queue.insert(a.queue.begin(), again.begin(), again.end());
    auto rec = std::make_unique<task_record>();
    rec->id = next_task_id_++;
    rec->fn_id = a.ctor_fn;
    rec->name = a.ctor_name;
    rec->nargs = a.ctor_nargs;
    rec->args = a.ctor_args;
    rec->deps = a.ctor_deps;
    for (auto* b : a.ctor_blocks) {
      seg.add_ref(b);
      rec->blocks.push_back(b);
    }
    rec->actor = a.id;
    rec->construct = true;
    rec->max_concurrency = a.max_concurrency;
    rec->result = make_state();
    a.constructed = rec->result;
    task_record* r = rec.get();
    r->self = this;
    tasks_.emplace(r->id, std::move(rec));
    a.queue.push_front(r);
    open_mailboxes(w);
    w.actor = a.id;
    start_process(w.index);
    pump_actor(a);
    return true;
  }

  bool spill_one() {
    for (object_state* s : resident_) {
      if (!s->block || s->pins || s->block->refs.load(std::memory_order_relaxed) != 1 ||
          s->st != object_state::status::ready)
        continue;
      const std::size_t size = static_cast<std::size_t>(s->block->size);
      const off_t at = static_cast<off_t>(spill_end_);
      std::size_t done = 0;
      while (done < size) {
        ssize_t n = ::pwrite(spill_fd_, s->block->data() + done, size - done,
                             at + static_cast<off_t>(done));
        if (n <= 0) return false;  // disk full: the store stays full
        done += static_cast<std::size_t>(n);
      }
      spill_end_ += (size + 4095) & ~std::uint64_t{4095};
      s->spill_offset = at;
      s->spill_size = size;
      seg.release(s->block);
      s->block = nullptr;
      resident_.erase(s);
      ++spilled_objects_;
      return true;
    }
    return false;
  }

  /// Frees a spilled copy's disk space.
  void punch(object_state& s) noexcept {
    ::fallocate(spill_fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, s.spill_offset,
                static_cast<off_t>(s.spill_size));
    s.spill_offset = -1;
  }

  static std::string attempts_note(const task_record& r) {
    return r.max_retries > 0 ? " (attempt " + std::to_string(r.attempt) + " of " +
                                   std::to_string(r.max_retries + 1) + ")"
                             : std::string();
  }

  /// An actor's process ended: restarted if it may be; else its unfinished calls fail with
  /// actor_died, and so will later ones, and its slot is free again. Returns true if the
  /// slot lives on.
  bool actor_ended(process_view& w, int pid, const std::string& how) {
    if (auto live = actors_.find(w.actor); live != actors_.end()) {
      actor_entry& a = live->second;
      if (!a.killed && !a.closing && a.cause.empty() && a.restarts < a.max_restarts)
        return restart_actor(w, a, pid, how);
    }
    auto it = actors_.find(w.actor);
    w.actor = 0;
    close_mailboxes(w);
    free_actor_slots_.push_back(w.index);
    if (it == actors_.end()) return false;
    actor_entry& a = it->second;
    a.dead = true;
    a.pid = pid;
    a.wait_status = w.shared->wait_status.load(std::memory_order_relaxed);
    if (!a.name.empty()) names_.erase(a.name);
    if (!a.killed) {
      const std::string why = a.cause.empty() ? how : "failed in its constructor: " + a.cause;
      a.cause = "coray: actor " + a.type_name + " (pid " + std::to_string(pid) + ") " + why;
    }
    auto e = std::make_exception_ptr(actor_died(a.cause));
    std::vector<std::uint64_t> ids(a.sent.begin(), a.sent.end());
    a.sent.clear();
    for (task_record* r : a.queue) ids.push_back(r->id);
    a.queue.clear();
    const std::uint64_t actor_id = a.id;
    for (std::uint64_t id : ids)
      if (auto t = tasks_.find(id); t != tasks_.end()) fail(*t->second, e);
    // Failing calls may have dropped handles: look the entry up again.
    if (auto again = actors_.find(actor_id); again != actors_.end()) forget_actor(again->second);
    return false;
  }

  // ---- processes ----------------------------------------------------------------------

  void open_mailboxes(process_view& v) {
    const std::size_t bytes = mailbox::bytes_for(mailbox_capacity);
    worker_shared& s = *v.shared;
    if (!s.inbox) {
      s.inbox = seg.offset_of(seg.allocate_aligned(bytes, 64));
      s.outbox = seg.offset_of(seg.allocate_aligned(bytes, 64));
    }
    v.inbox = mailbox::create(seg.at(s.inbox), mailbox_capacity);
    v.outbox = mailbox::create(seg.at(s.outbox), mailbox_capacity);
    ++v.generation;
    s.tasks_started.store(0, std::memory_order_relaxed);
    s.suspended.store(0, std::memory_order_relaxed);
    s.pid.store(0, std::memory_order_relaxed);
    s.generation.store(v.generation, std::memory_order_relaxed);
  }

  void close_mailboxes(process_view& v) {
    worker_shared& s = *v.shared;
    if (s.inbox) seg.deallocate(seg.at(s.inbox));
    if (s.outbox) seg.deallocate(seg.at(s.outbox));
    s.inbox = s.outbox = 0;
    v.inbox = v.outbox = nullptr;
  }

  void start_supervisor() {
    // A socket, not a pipe: writing to a dead supervisor must be an error, not SIGPIPE.
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0)
      throw ray::runtime_error("coray: socketpair failed");
    std::fflush(nullptr);  // buffered output must not be written twice
    pid_t pid = fork();
    if (pid < 0) throw ray::runtime_error("coray: fork of the supervisor failed");
    if (pid == 0) {
      ::close(fds[1]);
      supervisor_main({&seg, hdr, fds[0], cfg_.method, epoch, cfg_.argv});
    }
    ::close(fds[0]);
    command_fd_ = fds[1];
    supervisor_ = pid;
    hdr->supervisor_pid = pid;
  }

  void start_process(std::uint32_t slot) {
    hdr->worker(slot).state.store(static_cast<std::uint32_t>(slot_state::starting),
                                  std::memory_order_release);
    if (!command({supervisor_command::start, slot})) {
      // No supervisor, no process: the slot stays dead and its calls fail.
      hdr->worker(slot).state.store(static_cast<std::uint32_t>(slot_state::dead),
                                    std::memory_order_release);
    }
  }

  bool command(supervisor_command c) {
    return supervisor_ > 0 && send(command_fd_, &c, sizeof c, MSG_NOSIGNAL) == sizeof c;
  }

  /// The supervisor died (killed from outside): its processes died with it and none can be
  /// started, so every call fails rather than waiting forever.
  void check_supervisor() {
    int st;
    if (supervisor_ <= 0 || waitpid(supervisor_, &st, WNOHANG) != supervisor_) return;
    supervisor_ = -1;
    for (std::uint32_t i : active_) {
      views_[i].shared->wait_status.store(st, std::memory_order_relaxed);
      views_[i].shared->state.store(static_cast<std::uint32_t>(slot_state::dead),
                                    std::memory_order_release);
    }
    handle_deaths();
    const std::string why =
        "coray: the supervisor process " + describe_exit(st) + ", taking the workers with it";
    while (!runnable_.empty()) {
      task_record* r = runnable_.front();
      runnable_.pop_front();
      fail(*r, std::make_exception_ptr(worker_crashed(why)));
    }
  }

  driver_config cfg_;
  std::vector<process_view> views_;    // one per slot: task workers, then actors
  std::vector<std::uint32_t> active_;  // slots with a process
  std::vector<std::uint32_t> free_actor_slots_;
  std::unordered_map<std::uint64_t, std::unique_ptr<task_record>> tasks_;
  std::deque<task_record*> runnable_;
  std::unordered_map<std::uint64_t, actor_entry> actors_;
  std::unordered_map<std::string, std::uint64_t> names_;
  std::unordered_set<std::uint64_t> backlog_;  // actors whose mailbox was full
  std::vector<std::byte> gathered_;            // multi-slot messages, read contiguously
  int spill_fd_ = -1;
  bool in_poll_ = false;
  std::uint64_t spill_end_ = 0;
  std::uint64_t spilled_objects_ = 0;
  std::unordered_set<object_state*> resident_;  // driver objects in the store, spillable
  std::uint64_t next_task_id_ = 1;
  std::uint64_t next_actor_id_ = 1;
  std::uint32_t seen_deaths_ = 0;
  int command_fd_ = -1;
  pid_t supervisor_ = -1;
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/driver.hpp>
// begin <coray/task.hpp>
/// Remote tasks: ray::task<f>.remote(args...) runs f in a worker process and returns an
/// object_ref to its result at once. Arguments are checked against f's parameters at
/// compile time; object_ref arguments are dependencies (f runs once they are ready and
/// receives their values). f may be a coroutine (returning ray::async<R>) that awaits
/// nested calls; the worker runs other tasks meanwhile.
///
///   int add(int a, int b) { return a + b; }
///   ray::object_ref<int> r = ray::task<add>.remote(1, 2);

// begin <coray/async.hpp>
/// ray::async<T>: the coroutine type of coray. Lazy (starts when awaited or run), single
/// awaiter, move-only, resumes its awaiter by symmetric transfer. User coroutines in the
/// driver run on the runtime loop's thread only, so they need no locks.
///
///   ray::async<int> twice(ray::object_ref<int> r) { co_return 2 * co_await ray::get(r); }

// #include <coray/version.hpp>: inlined above
#include <coroutine>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

CORAY_BEGIN_NAMESPACE

template <class T = void>
class async;

namespace detail {

struct async_promise_base {
  std::coroutine_handle<> continuation_;
  std::exception_ptr error_;

  std::suspend_always initial_suspend() noexcept { return {}; }
  struct final_awaiter {
    bool await_ready() noexcept { return false; }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) noexcept {
      auto c = h.promise().continuation_;
      return c ? c : std::noop_coroutine();
    }
    void await_resume() noexcept {}
  };
  final_awaiter final_suspend() noexcept { return {}; }
  void unhandled_exception() noexcept { error_ = std::current_exception(); }
  void rethrow_if_failed() const {
    if (error_) std::rethrow_exception(error_);
  }
};

template <class T>
struct async_promise : async_promise_base {
  std::optional<T> value_;
  async<T> get_return_object() noexcept;
  template <class U>
  void return_value(U&& v) {
    value_.emplace(std::forward<U>(v));
  }
  T take() {
    rethrow_if_failed();
    return std::move(*value_);
  }
};

template <>
struct async_promise<void> : async_promise_base {
  async<void> get_return_object() noexcept;
  void return_void() noexcept {}
  void take() { rethrow_if_failed(); }
};

template <class T>
struct is_async : std::false_type {};
template <class T>
struct is_async<async<T>> : std::true_type {
  using value_type = T;
};

}  // namespace detail

template <class T>
class [[nodiscard]] async {
 public:
  using promise_type = detail::async_promise<T>;
  using value_type = T;

  async() noexcept = default;
  explicit async(std::coroutine_handle<promise_type> h) noexcept : h_(h) {}
  async(async&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  async& operator=(async&& o) noexcept {
    if (this != &o) {
      reset();
      h_ = std::exchange(o.h_, {});
    }
    return *this;
  }
  ~async() { reset(); }

  /// Awaiting starts the coroutine and resumes the awaiter with its result (or exception).
  auto operator co_await() && noexcept {
    struct awaiter {
      std::coroutine_handle<promise_type> h;
      bool await_ready() noexcept { return !h || h.done(); }
      std::coroutine_handle<> await_suspend(std::coroutine_handle<> c) noexcept {
        h.promise().continuation_ = c;
        return h;
      }
      T await_resume() { return h.promise().take(); }
    };
    return awaiter{h_};
  }

  /// Runtime internals: the handle, to start and poll it from an event loop.
  std::coroutine_handle<promise_type> handle() const noexcept { return h_; }
  bool done() const noexcept { return !h_ || h_.done(); }
  /// The result of a finished coroutine; rethrows its exception.
  T take() { return h_.promise().take(); }

 private:
  void reset() noexcept {
    if (h_) h_.destroy();
    h_ = {};
  }
  std::coroutine_handle<promise_type> h_;
};

namespace detail {
template <class T>
async<T> async_promise<T>::get_return_object() noexcept {
  return async<T>{std::coroutine_handle<async_promise<T>>::from_promise(*this)};
}
inline async<void> async_promise<void>::get_return_object() noexcept {
  return async<void>{std::coroutine_handle<async_promise<void>>::from_promise(*this)};
}

/// A coroutine that starts at once and frees itself when it ends: the runtime uses it to run
/// a task body that is a coroutine and send its reply when it finishes.
struct detached {
  struct promise_type {
    detached get_return_object() noexcept { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };
};
}  // namespace detail

CORAY_END_NAMESPACE
// end <coray/async.hpp>
// #include <coray/codec.hpp>: inlined above
// #include <coray/detail/runtime/registry.hpp>: inlined above
// #include <coray/detail/runtime/worker.hpp>: inlined above
// begin <coray/object_ref.hpp>
/// ray::object_ref<T>: a handle to an immutable object -- a put value or a call's result --
/// that may not exist yet. Copyable and cheap; the object lives while any handle does.
/// Pass it to remote calls (they wait for it) or get it (co_await ray::get(ref)).

// #include <coray/detail/runtime/object_state.hpp>: inlined above
// #include <coray/version.hpp>: inlined above
#include <type_traits>
#include <utility>

CORAY_BEGIN_NAMESPACE

template <class T>
class object_ref {
 public:
  using value_type = T;

  object_ref() noexcept = default;
  explicit object_ref(detail::state_ptr s) noexcept : s_(std::move(s)) {}

  /// False for a default-constructed ref.
  bool valid() const noexcept { return static_cast<bool>(s_); }
  /// True once the object exists or its call failed: get() will not wait.
  bool is_ready() const noexcept { return s_ && s_->settled(); }

  friend bool operator==(const object_ref& a, const object_ref& b) noexcept {
    return a.s_.get() == b.s_.get();
  }

  /// Runtime internals.
  const detail::state_ptr& state() const noexcept { return s_; }

 private:
  detail::state_ptr s_;
};

namespace detail {
template <class T>
struct is_object_ref : std::false_type {};
template <class T>
struct is_object_ref<object_ref<T>> : std::true_type {
  using value_type = T;
};
template <class T>
inline constexpr bool is_object_ref_v = is_object_ref<std::remove_cvref_t<T>>::value;
}  // namespace detail

CORAY_END_NAMESPACE
// end <coray/object_ref.hpp>
// begin <coray/object_store.hpp>
/// The object store's user surface: ray::put, ray::get, ray::get_view and ray::wait, each
/// usable with co_await in a coroutine or blocking in plain code.
///
///   auto img = ray::put(std::vector<double>(9'000'000, 1.0));   // once, into shared memory
///   std::vector<double> copy = ray::get(img);                   // blocking
///   auto view = co_await ray::get_view(img);                    // in place, no copy
///   auto [ready, pending] = co_await ray::wait(refs, {.num_returns = 1});

#include <chrono>
// #include <coray/codec.hpp>: inlined above
// #include <coray/detail/runtime/process.hpp>: inlined above
// #include <coray/object_ref.hpp>: inlined above
#include <coroutine>
#include <cstring>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE

namespace detail {

/// The type a value is stored as: a span is stored as a vector, a string literal as a string.
template <class T>
using put_type_t = std::conditional_t<std::is_same_v<std::decay_t<T>, const char*> ||
                                          std::is_same_v<std::decay_t<T>, char*>,
                                      std::string, storage_type_t<std::decay_t<T>>>;

/// Room for a value of `size` encoded bytes in `s`, which stays pending: inline bytes below
/// the threshold, else a new block in the store (pending, so never spilled while written).
inline std::span<std::byte> reserve_value(process& p, object_state& s, std::size_t size) {
  if (size > p.inline_threshold()) {
    s.block = p.new_block(size);
    p.block_adopted(s);
    return {s.block->data(), size};
  }
  s.bytes.resize(size);
  return {s.bytes.data(), size};
}

/// Encodes `v` into `s`: inline below the threshold, else into a new block in the store.
template <class V>
void store_value(process& p, object_state& s, const V& v) {
  encode_to(reserve_value(p, s, encoded_size(v)), v);
  s.st = object_state::status::ready;
}

template <class T>
T read_value(const object_state& s) {
  s.rethrow_if_failed();
  if constexpr (!std::is_void_v<T>) return decode<T>(s.value_bytes());
}

inline void resume_waiter(void* ctx, object_state&) {
  process& p = *process::current();
  p.coroutine_suspended(-1);
  p.schedule(std::coroutine_handle<>::from_address(ctx));
}

/// Blocks the calling (loop) thread until `s` settles, running the loop meanwhile.
inline void block_until_settled(object_state& s) {
  if (!s.settled()) process::require().run_until([&] { return s.settled(); });
}

template <class T>
struct view_of {
  static_assert(sizeof(T) == 0,
                "ray::get_view: the object must be a std::vector or std::array of plain numbers or "
                "trivially copyable structs, or a std::string");
};
template <class E, class A>
struct view_of<std::vector<E, A>> {
  using type = std::span<const E>;
};
template <>
struct view_of<std::string> {
  using type = std::string_view;
};

}  // namespace detail

namespace detail {
/// The waiting half of an awaitable of one object: suspends until it settles, or blocks
/// (running the loop) in the conversion forms.
class state_awaiter {
 public:
  explicit state_awaiter(state_ptr s) : s_(std::move(s)) {}
  bool await_ready() const noexcept { return s_->settled(); }
  void await_suspend(std::coroutine_handle<> h) {
    s_->waiters.push_back({&resume_waiter, h.address()});
    process::current()->coroutine_suspended(+1);
  }

 protected:
  object_state& settled() {
    block_until_settled(*s_);
    return *s_;
  }
  state_ptr s_;
};
}  // namespace detail

/// What ray::get returns: co_await it in a coroutine, or convert it to T to block.
template <class T>
class [[nodiscard]] get_awaitable : public detail::state_awaiter {
 public:
  using state_awaiter::state_awaiter;
  T await_resume() { return detail::read_value<T>(*s_); }
  /// Blocking form: waits (running the loop) and returns the value or throws its error.
  operator T() && { return detail::read_value<T>(settled()); }
  /// Blocking form, explicitly.
  T get() && { return static_cast<T>(std::move(*this)); }
};

template <>
class [[nodiscard]] get_awaitable<void> : public detail::state_awaiter {
 public:
  using state_awaiter::state_awaiter;
  void await_resume() { s_->rethrow_if_failed(); }
  void get() && { settled().rethrow_if_failed(); }
};

/// The value of `ref`, decoded into a T of this process.
template <class T>
get_awaitable<T> get(const object_ref<T>& ref) {
  if (!ref.valid()) throw ray::runtime_error("ray::get: the object_ref is empty");
  return get_awaitable<T>(ref.state());
}

struct get_options {
  /// Give up after this long with ray::get_timeout; none: wait as long as it takes.
  std::optional<std::chrono::nanoseconds> timeout = std::nullopt;
};

template <class T>
class wait_awaitable;
struct wait_options;

/// What ray::get with a timeout returns: co_await it, or convert it to T to block.
template <class T>
class [[nodiscard]] timed_get_awaitable;

/// What ray::get of several refs returns: the values in the order of the refs.
template <class T>
class [[nodiscard]] get_all_awaitable {
 public:
  explicit get_all_awaitable(std::vector<object_ref<T>> refs) : refs_(std::move(refs)) {}
  bool await_ready() noexcept {
    for (auto& r : refs_)
      if (!r.is_ready()) ++pending_;
    return pending_ == 0;
  }
  void await_suspend(std::coroutine_handle<> h) {
    h_ = h;
    for (auto& r : refs_)
      if (!r.is_ready()) r.state()->waiters.push_back({&on_settled, this});
    detail::process::current()->coroutine_suspended(+1);
  }
  std::vector<T> await_resume() { return values(); }
  operator std::vector<T>() && {
    for (auto& r : refs_) detail::block_until_settled(*r.state());
    return values();
  }
  std::vector<T> get() && { return static_cast<std::vector<T>>(std::move(*this)); }

 private:
  static void on_settled(void* ctx, detail::object_state&) {
    auto* self = static_cast<get_all_awaitable*>(ctx);
    if (--self->pending_ == 0)
      detail::resume_waiter(self->h_.address(), *self->refs_.front().state());
  }
  std::vector<T> values() {
    std::vector<T> out;
    out.reserve(refs_.size());
    for (auto& r : refs_) out.push_back(detail::read_value<T>(*r.state()));
    return out;
  }
  std::vector<object_ref<T>> refs_;
  std::size_t pending_ = 0;
  std::coroutine_handle<> h_;
};

template <class T>
get_all_awaitable<T> get(std::vector<object_ref<T>> refs) {
  for (auto& r : refs)
    if (!r.valid()) throw ray::runtime_error("ray::get: an object_ref is empty");
  return get_all_awaitable<T>(std::move(refs));
}

/// A read-only view of an object where it lies (shared memory or the driver's heap): a
/// span for a vector, a string_view for a string. Holds the object alive while it lives.
template <class T>
class object_view {
 public:
  using view_type = typename detail::view_of<T>::type;
  object_view(detail::state_ptr s) : s_(std::move(s)), v_(decode<view_type>(s_->value_bytes())) {
    ++s_->pins;
  }
  object_view(const object_view& o) : s_(o.s_), v_(o.v_) { ++s_->pins; }
  object_view& operator=(const object_view&) = delete;
  ~object_view() { --s_->pins; }
  const view_type& operator*() const noexcept { return v_; }
  const view_type* operator->() const noexcept { return &v_; }
  auto begin() const noexcept { return v_.begin(); }
  auto end() const noexcept { return v_.end(); }
  auto data() const noexcept { return v_.data(); }
  std::size_t size() const noexcept { return v_.size(); }
  decltype(auto) operator[](std::size_t i) const noexcept { return v_[i]; }

 private:
  detail::state_ptr s_;
  view_type v_;
};

template <class T>
class [[nodiscard]] get_view_awaitable : public detail::state_awaiter {
 public:
  using state_awaiter::state_awaiter;
  object_view<T> await_resume() {
    s_->rethrow_if_failed();
    return object_view<T>(s_);
  }
  operator object_view<T>() && {
    settled();
    return await_resume();
  }
  object_view<T> get() && { return static_cast<object_view<T>>(std::move(*this)); }
};

/// A view of `ref`'s object in place: getting a 72 MB array costs what getting an int does.
template <class T>
get_view_awaitable<T> get_view(const object_ref<T>& ref) {
  (void)sizeof(typename detail::view_of<T>::type);
  if (!ref.valid()) throw ray::runtime_error("ray::get_view: the object_ref is empty");
  return get_view_awaitable<T>(ref.state());
}

/// Puts `value` in the object store once; tasks that take the ref read it there.
template <class T>
object_ref<detail::put_type_t<T>> put(const T& value) {
  using stored = detail::put_type_t<T>;
  static_assert(is_encodable_v<stored>,
                "ray::put: this type cannot be stored; give it a `template <class Archive> void "
                "serialize(Archive&)` member or make it an aggregate of storable members");
  auto& p = detail::process::require();
  auto s = detail::make_state();
  if constexpr (std::is_same_v<stored, std::decay_t<T>>)
    detail::store_value(p, *s, value);
  else
    detail::store_value(p, *s, stored(value));
  return object_ref<stored>(std::move(s));
}

/// An array being built where it will live, in the object store (Plasma's create, then
/// seal): fill it through data() / span() / operator[], then seal() it into an immutable
/// object that tasks read in place. It saves ray::put's copy of an array made only to be put.
/// Move-only; one dropped unsealed gives its memory back.
///
///   auto buf = ray::put_buffer<double>(3000 * 3000);
///   std::fill(buf.begin(), buf.end(), 0.0);
///   ray::object_ref<std::vector<double>> image = std::move(buf).seal();
template <class E>
class object_buffer {
 public:
  object_buffer(object_buffer&& o) noexcept
      : s_(std::move(o.s_)),
        data_(std::exchange(o.data_, nullptr)),
        size_(std::exchange(o.size_, 0)) {}
  object_buffer& operator=(object_buffer&& o) noexcept {
    s_ = std::move(o.s_);  // an unsealed buffer this one held gives its memory back
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
    return *this;
  }

  E* data() noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  std::span<E> span() noexcept { return {data_, size_}; }
  E* begin() noexcept { return data_; }
  E* end() noexcept { return data_ + size_; }
  E& operator[](std::size_t i) noexcept { return data_[i]; }

  /// The finished object; the buffer is empty afterwards.
  object_ref<std::vector<E>> seal() && {
    if (!s_)
      throw ray::runtime_error(
          "ray::object_buffer::seal: the buffer was already sealed or moved from");
    s_->st = detail::object_state::status::ready;
    data_ = nullptr;
    size_ = 0;
    return object_ref<std::vector<E>>(std::move(s_));
  }

 private:
  template <class T>
  friend object_buffer<T> put_buffer(std::size_t n);
  object_buffer(detail::state_ptr s, E* data, std::size_t n)
      : s_(std::move(s)), data_(data), size_(n) {}
  detail::state_ptr s_;
  E* data_ = nullptr;
  std::size_t size_ = 0;
};

/// A buffer of `n` default-initialised (for numbers: uninitialised) elements in the object
/// store, to fill and seal(). E must be a plain number or trivially copyable struct, as for
/// ray::get_view.
template <class E>
object_buffer<E> put_buffer(std::size_t n) {
  static_assert(
      detail::is_raw_copyable_v<E> && !std::is_same_v<E, bool>,
      "ray::put_buffer<E>: E must be a plain number or a trivially copyable struct of them");
  auto& p = detail::process::require();
  // The encoding of a std::vector<E>: its count, padding to E's wire alignment, the elements.
  const std::size_t offset =
      sizeof(std::uint64_t) + detail::padding_for(sizeof(std::uint64_t), detail::wire_align_v<E>);
  if (n > (std::numeric_limits<std::size_t>::max() - offset) / sizeof(E))
    throw ray::runtime_error("ray::put_buffer: " + std::to_string(n) +
                             " elements do not fit in memory");
  const std::size_t size = offset + n * sizeof(E);
  auto s = detail::make_state();
  std::byte* out = detail::reserve_value(p, *s, size).data();  // pending until sealed
  const std::uint64_t count = n;
  std::memcpy(out, &count, sizeof count);
  std::memset(out + sizeof count, 0, offset - sizeof count);
  return object_buffer<E>(std::move(s), reinterpret_cast<E*>(out + offset), n);
}

struct wait_options {
  /// Return once this many refs are ready (at most the number of refs).
  std::size_t num_returns = 1;
  /// Give up waiting after this long and return what is ready; none: wait as long as it takes.
  std::optional<std::chrono::nanoseconds> timeout = std::nullopt;
};

template <class T>
struct wait_result {
  std::vector<object_ref<T>> ready;    // at most num_returns, in the order given
  std::vector<object_ref<T>> pending;  // the rest, in the order given
};

/// What ray::wait returns: co_await it, or convert it to wait_result<T> to block.
template <class T>
class [[nodiscard]] wait_awaitable {
 public:
  wait_awaitable(std::vector<object_ref<T>> refs, wait_options o)
      : refs_(std::move(refs)), opts_(o) {
    opts_.num_returns = std::min(opts_.num_returns, refs_.size());
  }
  bool await_ready() {
    detail::process::require().serve_once();
    return ready_count() >= opts_.num_returns || timed_out_now();
  }
  void await_suspend(std::coroutine_handle<> h) {
    auto& p = detail::process::require();
    op_ = new op{};
    op_->h = h;
    op_->needed = opts_.num_returns - ready_count();
    for (auto& r : refs_)
      if (!r.is_ready()) {
        ++op_->refs;
        r.state()->waiters.push_back({&op::on_settled, op_});
      }
    if (opts_.timeout) {
      ++op_->refs;
      op_->timer = p.add_timer(detail::clock::now() + *opts_.timeout, &op::on_timeout, op_);
    }
    p.coroutine_suspended(+1);
  }
  wait_result<T> await_resume() {
    if (op_) {
      op_->drop();
      op_ = nullptr;
    }
    return split();
  }
  operator wait_result<T>() && {
    auto& p = detail::process::require();
    auto deadline =
        opts_.timeout ? detail::clock::now() + *opts_.timeout : detail::clock::time_point::max();
    p.serve_once();
    p.run_until([&] { return ready_count() >= opts_.num_returns; }, deadline);
    return split();
  }
  wait_result<T> get() && { return static_cast<wait_result<T>>(std::move(*this)); }

 private:
  // Outlives the wait: refs that settle later still hold it.
  struct op {
    std::coroutine_handle<> h;
    std::size_t needed = 0;
    int refs = 1;
    bool done = false;
    std::uint64_t timer = 0;
    void drop() {
      if (--refs == 0) delete this;
    }
    void complete() {
      done = true;
      auto& p = *detail::process::current();
      if (timer) {
        p.cancel_timer(timer);
        timer = 0;
        --refs;
      }
      p.coroutine_suspended(-1);
      p.schedule(h);
    }
    static void on_settled(void* ctx, detail::object_state&) {
      auto* o = static_cast<op*>(ctx);
      if (!o->done && --o->needed == 0) o->complete();
      o->drop();
    }
    static void on_timeout(void* ctx) {
      auto* o = static_cast<op*>(ctx);
      o->timer = 0;
      if (!o->done) o->complete();
      o->drop();
    }
  };
  bool timed_out_now() const noexcept { return opts_.timeout && opts_.timeout->count() <= 0; }
  std::size_t ready_count() const noexcept {
    std::size_t n = 0;
    for (auto& r : refs_) n += r.is_ready();
    return n;
  }
  // Moves the refs out (the wait is over): no reference counts change, so a loop of waits
  // for one of n refs costs n pointer moves per wait, not n counted copies.
  wait_result<T> split() {
    wait_result<T> w;
    w.ready.reserve(opts_.num_returns);
    w.pending.reserve(refs_.size() - opts_.num_returns);
    for (auto& r : refs_) {
      if (r.is_ready() && w.ready.size() < opts_.num_returns)
        w.ready.push_back(std::move(r));
      else
        w.pending.push_back(std::move(r));
    }
    refs_.clear();
    return w;
  }
  std::vector<object_ref<T>> refs_;
  wait_options opts_;
  op* op_ = nullptr;
};

/// Waits until `num_returns` of `refs` are ready or the timeout passes.
template <class T>
wait_awaitable<T> wait(std::vector<object_ref<T>> refs, wait_options opts = {}) {
  return wait_awaitable<T>(std::move(refs), opts);
}

template <class T>
class [[nodiscard]] timed_get_awaitable {
 public:
  timed_get_awaitable(const object_ref<T>& ref, std::chrono::nanoseconds timeout)
      : ref_(ref), timeout_(timeout), wait_({ref}, {.num_returns = 1, .timeout = timeout}) {}
  bool await_ready() noexcept { return wait_.await_ready(); }
  void await_suspend(std::coroutine_handle<> h) { wait_.await_suspend(h); }
  T await_resume() { return finish(wait_.await_resume()); }
  operator T() && { return finish(static_cast<wait_result<T>>(std::move(wait_))); }
  T get() && { return static_cast<T>(std::move(*this)); }

 private:
  T finish(const wait_result<T>& w) {
    if (w.ready.empty())
      throw get_timeout(
          "ray::get: the object was not ready within " +
          std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(timeout_).count()) +
          " ms");
    return detail::read_value<T>(*ref_.state());
  }
  object_ref<T> ref_;
  std::chrono::nanoseconds timeout_;
  wait_awaitable<T> wait_;
};

/// The value of `ref`, waiting at most `opts.timeout` (then ray::get_timeout).
template <class T>
timed_get_awaitable<T> get(const object_ref<T>& ref, get_options opts) {
  if (!ref.valid()) throw ray::runtime_error("ray::get: the object_ref is empty");
  return timed_get_awaitable<T>(ref, opts.timeout.value_or(std::chrono::nanoseconds::max()));
}

struct cancel_options {
  /// Also kill the worker running the task (tasks only; actor calls cannot be forced).
  bool force = false;
};

/// Cancels the call whose result `ref` is: a call still waiting is never run; one running
/// runs on (unless `force`), but either way getting `ref` raises ray::cancelled. A call
/// that already finished keeps its result. Driver only.
template <class T>
void cancel(const object_ref<T>& ref, cancel_options opts = {}) {
  auto& p = detail::process::require();
  if (!p.is_driver())
    throw ray::runtime_error("ray::cancel is only available in the driver process");
  if (ref.valid() && ref.state()->id) p.cancel_call(ref.state()->id, opts.force);
}

/// Runs the loop until `awaitable` completes and returns its result: the blocking form of
/// any coray awaitable or ray::async, for code that is not a coroutine.
template <class Awaitable>
auto sync_wait(Awaitable&& aw) {
  return std::forward<Awaitable>(aw).get();
}

CORAY_END_NAMESPACE
// end <coray/object_store.hpp>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

CORAY_BEGIN_NAMESPACE

template <class T>
class actor;

namespace detail {

/// What a callee is: its parameters, its return type and how to call it (with the actor's
/// object for a member function).
template <class F>
struct function_traits {
  static constexpr bool is_function = false;
  static constexpr bool is_member = false;
};
template <class R, class... A>
struct function_traits<R (*)(A...)> {
  static constexpr bool is_function = true;
  static constexpr bool is_member = false;
  using return_type = R;
  using params = std::tuple<A...>;
  static constexpr std::size_t arity = sizeof...(A);
  template <auto F, class... X>
  static decltype(auto) call(void*, X&&... x) {
    return F(std::forward<X>(x)...);
  }
};
template <class R, class... A>
struct function_traits<R (*)(A...) noexcept> : function_traits<R (*)(A...)> {};

template <class C, class R, class... A>
struct member_traits {
  static constexpr bool is_function = true;
  static constexpr bool is_member = true;
  using class_type = C;
  using return_type = R;
  using params = std::tuple<A...>;
  static constexpr std::size_t arity = sizeof...(A);
  template <auto F, class... X>
  static decltype(auto) call(void* self, X&&... x) {
    return (static_cast<C*>(self)->*F)(std::forward<X>(x)...);
  }
};
template <class C, class R, class... A>
struct function_traits<R (C::*)(A...)> : member_traits<C, R, A...> {};
template <class C, class R, class... A>
struct function_traits<R (C::*)(A...) const> : member_traits<C, R, A...> {};
template <class C, class R, class... A>
struct function_traits<R (C::*)(A...) noexcept> : member_traits<C, R, A...> {};
template <class C, class R, class... A>
struct function_traits<R (C::*)(A...) const noexcept> : member_traits<C, R, A...> {};

/// The value a call produces: R, or X for a coroutine returning ray::async<X>.
template <class R>
struct call_result {
  using type = R;
};
template <class X>
struct call_result<async<X>> {
  using type = X;
};
template <class R>
using call_result_t = typename call_result<R>::type;

template <class T>
struct is_actor : std::false_type {};
template <class T>
struct is_actor<actor<T>> : std::true_type {};
template <class T>
inline constexpr bool is_actor_v = is_actor<std::remove_cvref_t<T>>::value;

/// A std::vector of object_refs: passed for a vector parameter, each element a dependency.
template <class T>
struct is_ref_vector : std::false_type {};
template <class U, class A>
struct is_ref_vector<std::vector<object_ref<U>, A>> : std::true_type {
  using value_type = U;
};
template <class T>
inline constexpr bool is_ref_vector_v = is_ref_vector<std::remove_cvref_t<T>>::value;

template <class P>
inline constexpr bool is_mutable_ref_v =
    std::is_lvalue_reference_v<P> && !std::is_const_v<std::remove_reference_t<P>>;

/// Whether argument A may be passed for parameter P.
template <class P, class A>
constexpr bool argument_fits() {
  using S = storage_type_t<std::remove_cvref_t<P>>;
  if constexpr (is_mutable_ref_v<P>)
    return false;
  else if constexpr (is_actor_v<P> || is_actor_v<A>)
    return std::is_same_v<std::remove_cvref_t<P>, std::remove_cvref_t<A>>;
  else if constexpr (is_object_ref_v<A>)
    return std::is_same_v<typename is_object_ref<std::remove_cvref_t<A>>::value_type, S>;
  else if constexpr (is_ref_vector_v<A>)
    return std::is_same_v<std::vector<typename is_ref_vector<std::remove_cvref_t<A>>::value_type>,
                          S>;
  else if constexpr (wire_compatible_v<std::remove_cvref_t<P>, std::remove_cvref_t<A>>)
    return true;
  else
    return std::is_convertible_v<A, S>;
}

template <class Params, class... A, std::size_t... I>
constexpr bool arguments_fit(std::index_sequence<I...>) {
  return (argument_fits<std::tuple_element_t<I, Params>, A>() && ...);
}

template <class Params>
constexpr bool parameters_storable() {
  return []<std::size_t... I>(std::index_sequence<I...>) {
    return ((
        is_actor_v<std::tuple_element_t<I, Params>> ||
        is_encodable_v<storage_type_t<std::remove_cvref_t<std::tuple_element_t<I, Params>>>>)&&...);
  }
  (std::make_index_sequence<std::tuple_size_v<Params>>{});
}

template <class V>
void add_value(task_spec& spec, process& p, const V& v) {
  // Actor handles inside the value are kept alive for the call's duration.
  struct collecting {
    std::vector<std::uint64_t>* saved;
    explicit collecting(std::vector<std::uint64_t>& into)
        : saved(std::exchange(actor_collector(), &into)) {}
    ~collecting() { actor_collector() = saved; }
  } collect(spec.actors);
  const std::size_t size = encoded_size(v);
  if (size > p.inline_threshold()) {
    object_block* b = p.new_block(size);
    encode_to(std::span<std::byte>(b->data(), size), v);
    spec.add_block(p.seg, b);
  } else {
    spec.add_inline(size, [&](std::byte* out) { encode_to(std::span<std::byte>(out, size), v); });
  }
}

template <class P, class A>
void add_argument(task_spec& spec, process& p, A&& a) {
  using S = storage_type_t<std::remove_cvref_t<P>>;
  if constexpr (is_object_ref_v<A>) {
    spec.add_dependency(a.state());
  } else if constexpr (is_ref_vector_v<A>) {
    // The elements' encodings, after the count, make the vector's: raw elements start
    // aligned (the argument starts 16-aligned, the count takes 8 bytes).
    using U = typename is_ref_vector<std::remove_cvref_t<A>>::value_type;
    constexpr std::size_t align = is_raw_copyable_v<U> ? wire_align_v<U> : 1;
    constexpr std::size_t pad = (align - sizeof(std::uint64_t) % align) % align;
    std::vector<state_ptr> refs;
    refs.reserve(a.size());
    for (const auto& r : a) {
      if (!r.valid())
        throw ray::runtime_error("ray::task<f>.remote: an object_ref in the list is empty");
      refs.push_back(r.state());
    }
    spec.add_dependency_list(refs, static_cast<std::uint8_t>(pad));
  } else if constexpr (wire_compatible_v<std::remove_cvref_t<P>, std::remove_cvref_t<A>>) {
    add_value(spec, p, a);
  } else {
    add_value(spec, p, S(std::forward<A>(a)));
  }
}

/// Walks a call's argument records in a worker.
class argument_reader {
 public:
  argument_reader(segment& seg, std::span<const std::byte> args)
      : seg_(seg), p_(args.data()), end_(args.data() + args.size()) {}
  std::span<const std::byte> next() {
    if (static_cast<std::size_t>(end_ - p_) < sizeof(arg_entry))
      throw codec_error("coray: call has fewer arguments than its function");
    arg_entry e;
    std::memcpy(&e, p_, sizeof e);
    p_ += sizeof e;
    if (e.tag == arg_entry::block_value) {
      auto* b = seg_.at<object_block>(e.ref);
      return {b->data(), static_cast<std::size_t>(b->size)};
    }
    if (e.tag != arg_entry::inline_value || static_cast<std::size_t>(end_ - p_) < e.len)
      throw codec_error("coray: malformed call arguments");
    std::span<const std::byte> bytes(p_, e.len);
    p_ += std::min<std::size_t>(pad16(e.len), static_cast<std::size_t>(end_ - p_));
    return bytes;
  }

 private:
  segment& seg_;
  const std::byte* p_;
  const std::byte* end_;
};

template <class T>
struct is_span_parameter : std::false_type {};
template <class E, std::size_t N>
struct is_span_parameter<std::span<E, N>> : std::true_type {};

/// Holds one decoded argument for the duration of the call: a view into the message or the
/// store for span/string_view parameters, else a decoded value.
template <class P>
class argument {
  using D = std::remove_cvref_t<P>;
  static constexpr bool is_view =
      std::is_same_v<D, std::string_view> || is_span_parameter<D>::value;
  using held = std::conditional_t<is_view, D, storage_type_t<D>>;

 public:
  explicit argument(std::span<const std::byte> bytes) : v_(decode<held>(bytes)) {}
  decltype(auto) pass() {
    if constexpr (std::is_rvalue_reference_v<P> || !std::is_reference_v<P>)
      return held(std::move(v_));
    else
      return static_cast<const held&>(v_);
  }

 private:
  held v_;
};

template <class Params, std::size_t... I>
auto decode_arguments(argument_reader& r, std::index_sequence<I...>) {
  // Braced initialisation evaluates left to right: arguments are read in order.
  return std::tuple<argument<std::tuple_element_t<I, Params>>...>{
      argument<std::tuple_element_t<I, Params>>(r.next())...};
}

template <class V>
void reply(worker& w, std::uint64_t id, const V& v) {
  const std::size_t size = encoded_size(v);
  w.reply_value(id, size, [&](std::byte* out) { encode_to(std::span<std::byte>(out, size), v); });
}

/// Runs calls of F (a free function, or a member function of an actor) in this process:
/// decodes the arguments, calls, and replies with the value or the exception.
template <auto F>
struct invoker {
  using traits = function_traits<decltype(F)>;
  using params = typename traits::params;
  using R = typename traits::return_type;
  static constexpr auto indices = std::make_index_sequence<traits::arity>{};

  template <class Args>
  static decltype(auto) call(void* self, Args& args) {
    return std::apply(
        [self](auto&... a) -> decltype(auto) {
          return traits::template call<F>(self, a.pass()...);
        },
        args);
  }

  static void invoke(invocation& inv) {
    if constexpr (is_async<R>::value) {
      // The body outlives this message: keep a copy of its arguments.
      run_coroutine(inv, std::vector<std::byte>(inv.args.begin(), inv.args.end()));
    } else {
      try {
        argument_reader reader(inv.self.seg, inv.args);
        auto args = decode_arguments<params>(reader, indices);
        if constexpr (std::is_void_v<R>) {
          call(inv.instance, args);
          inv.self.reply_value(inv.task_id, 0, [](std::byte*) {});
        } else {
          reply(inv.self, inv.task_id, call(inv.instance, args));
        }
      } catch (...) {
        inv.fail();
      }
      if constexpr (traits::is_member) inv.self.call_finished();
    }
  }

  static detached run_coroutine(invocation inv, std::vector<std::byte> bytes) {
    worker& w = inv.self;
    const std::uint64_t id = inv.task_id;
    void* self = inv.instance;
    inv.args = bytes;  // the copy outlives the message
    try {
      argument_reader reader(w.seg, bytes);
      auto args = decode_arguments<params>(reader, indices);
      if constexpr (std::is_void_v<call_result_t<R>>) {
        co_await call(self, args);
        w.reply_value(id, 0, [](std::byte*) {});
      } else {
        auto value = co_await call(self, args);
        reply(w, id, value);
      }
    } catch (...) {
      inv.fail();
    }
    if constexpr (traits::is_member) w.call_finished();
  }

  static inline const bool registered = register_function(entity_id<F>, &invoke, entity_name<F>());
};

/// The message of a call of F with `args` (already checked against F's parameters).
template <auto F, class... A>
task_spec make_call(process& p, A&&... args) {
  using params = typename function_traits<decltype(F)>::params;
  (void)invoker<F>::registered;
  task_spec spec;
  spec.fn_id = entity_id<F>;
  spec.name = entity_name<F>();
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    (add_argument<std::tuple_element_t<I, params>>(spec, p, std::forward<A>(args)), ...);
  }
  (std::make_index_sequence<sizeof...(A)>{});
  return spec;
}

}  // namespace detail

/// Which exceptions of a task are retried: none (false, the default), all (true), or those
/// of given types (ray::retry_on<E...>, matching derived types too).
struct retry_policy {
  constexpr retry_policy(bool all = false) noexcept : matcher(all ? 1 : 0) {}
  constexpr retry_policy(std::uint64_t id, std::nullptr_t) noexcept : matcher(id) {}
  std::uint64_t matcher;
};

namespace detail {
template <class E, class... Rest>
bool exception_is(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const E&) {
    return true;
  } catch (...) {
    if constexpr (sizeof...(Rest) > 0)
      return exception_is<Rest...>(e);
    else
      return false;
  }
}
template <class... E>
retry_policy make_retry_policy() {
  // Named by its types (a function template instance's printed name lacks them under clang).
  std::string key = "retry_on";
  ((key += ',', key += type_name<E>()), ...);
  const std::uint64_t id = fnv1a(key) | 2;  // 0 and 1 mean none and all
  register_retry_matcher(id, &exception_is<E...>);
  return retry_policy(id, nullptr);
}
}  // namespace detail

/// Retry a task when it throws one of E... (or a type derived from one):
/// `ray::task<f>.options({.retry_exceptions = ray::retry_on<std::runtime_error>})`.
template <class... E>
inline const retry_policy retry_on = detail::make_retry_policy<E...>();

/// Per-call options of a task, as Ray's `f.options(...)`.
struct task_options {
  /// Re-runs after the worker running the task dies (and after a retryable exception).
  /// The final error says how many attempts were made.
  int max_retries = 3;
  /// Whether an exception thrown by the task is retried too.
  retry_policy retry_exceptions = false;
};

/// The remote form of the free function F: `ray::task<f>.remote(args...)`.
template <auto F>
struct remote_function {
  using traits = detail::function_traits<decltype(F)>;
  static_assert(traits::is_function && !traits::is_member,
                "ray::task<f>: f must be a free function or a static member function (call member "
                "functions on an actor: actor.call<&T::method>(...))");
  using params = typename traits::params;
  using result_type = detail::call_result_t<typename traits::return_type>;
  static_assert(std::is_void_v<result_type> || is_encodable_v<result_type>,
                "ray::task<f>: f's return type cannot be sent between processes; give it a "
                "`template <class Archive> void serialize(Archive&)` member");
  static_assert(detail::parameters_storable<params>(),
                "ray::task<f>: a parameter of f cannot be sent between processes (it must be "
                "encodable, a std::span<const T> or a std::string_view)");

  constexpr remote_function() noexcept = default;
  constexpr explicit remote_function(task_options o) noexcept : options_(o) {}

  /// The same function with other options: `ray::task<f>.options({.max_retries = 0}).remote(...)`.
  constexpr remote_function options(task_options o) const noexcept { return remote_function(o); }

  /// Submits the call and returns its result's ref at once. Call from the thread that runs
  /// the runtime (or from inside a task).
  template <class... A>
  object_ref<result_type> remote(A&&... args) const {
    static_assert(sizeof...(A) == traits::arity,
                  "ray::task<f>.remote(...): wrong number of arguments for f");
    if constexpr (sizeof...(A) == traits::arity) {
      constexpr bool fits =
          detail::arguments_fit<params, A...>(std::make_index_sequence<sizeof...(A)>{});
      static_assert(
          fits,
          "ray::task<f>.remote(...): an argument does not match f's parameter: pass the "
          "parameter's type, a value convertible to it, or an object_ref of it (non-const "
          "reference parameters are not allowed)");
      if constexpr (fits) {
        auto& p = detail::process::require();
        auto spec = detail::make_call<F>(p, std::forward<A>(args)...);
        spec.max_retries = options_.max_retries;
        spec.retry_matcher = options_.retry_exceptions.matcher;
        return object_ref<result_type>(p.submit(std::move(spec)));
      }
    }
    return {};
  }

 private:
  task_options options_{};
};

/// `ray::task<f>`: the handle through which f is called remotely.
template <auto F>
inline constexpr remote_function<F> task{};

CORAY_END_NAMESPACE
// end <coray/task.hpp>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

CORAY_BEGIN_NAMESPACE

struct actor_options {
  /// Registers the actor under this name for ray::get_actor (empty: anonymous).
  std::string name = {};
  /// How many calls may run at once: calls to coroutine methods (ray::async) overlap while
  /// they await, up to this many (Ray's async actors). Plain methods always run one at a time.
  std::uint32_t max_concurrency = 1;
  /// How many times the actor is rebuilt (its constructor run again with the same
  /// arguments, in a new process) after its process dies. 0: never; -1: always.
  int max_restarts = 0;
  /// How many times a call that was running when the actor died is run again on the
  /// rebuilt actor (else it fails with actor_died).
  int max_task_retries = 0;
};

/// No live actor has the name given to ray::get_actor, or it is of another type.
struct actor_not_found : error {
  using error::error;
};

namespace detail {

/// The actor type's id: a hash of its name. (Not of a function template instance's name:
/// clang prints those without their template arguments.)
template <class T>
inline constexpr std::uint64_t actor_type_id = fnv1a(type_name<T>());

/// How a constructor argument travels: refs by their values, literals as strings.
template <class A>
struct constructor_arg {
  using type = put_type_t<A>;
};
template <class A>
requires is_object_ref_v<A>
struct constructor_arg<A> {
  using type = typename is_object_ref<std::remove_cvref_t<A>>::value_type;
};
template <class A>
requires is_actor_v<A>
struct constructor_arg<A> {
  using type = std::remove_cvref_t<A>;
};
template <class A>
using constructor_arg_t = typename constructor_arg<A>::type;

/// Builds T in the actor's process from arguments of types S...
template <class T, class... S>
struct actor_constructor {
  static void construct(S... args, worker& w, std::uint64_t id) {
    T* obj = new T(std::move(args)...);
    w.set_instance(obj, [](void* p) { delete static_cast<T*>(p); });
    w.reply_value(id, 0, [](std::byte*) {});
  }
  static void invoke(invocation& inv) {
    try {
      argument_reader reader(inv.self.seg, inv.args);
      auto args = decode_arguments<std::tuple<S...>>(reader, std::index_sequence_for<S...>{});
      std::apply([&](auto&... a) { construct(a.pass()..., inv.self, inv.task_id); }, args);
    } catch (...) {
      inv.self.reply_error(inv.task_id, describe_current_exception(type_name<T>()));
    }
  }
  static void marker() {}
  static inline const bool registered = register_function(
      entity_id<&actor_constructor::marker>, &invoke, entity_name<&actor_constructor::marker>());
};

inline driver& require_driver(const char* what) {
  process& p = process::require();
  if (!p.is_driver())
    throw ray::runtime_error(std::string(what) + " is only available in the driver process");
  return static_cast<driver&>(p);
}

}  // namespace detail

/// A handle to an actor of type T: a value, copyable, and passable to tasks and to other
/// actors' methods, where it reaches the same actor.
template <class T>
class actor {
 public:
  actor() noexcept = default;
  explicit actor(detail::actor_ptr p) noexcept : p_(std::move(p)) {}

  /// Calls `Method` (a member function of T) in the actor's process; returns the result's
  /// ref at once. Arguments are checked against the method's parameters at compile time.
  template <auto Method, class... A>
  auto call(A&&... args) const {
    using traits = detail::function_traits<decltype(Method)>;
    static_assert(
        traits::is_member,
        "actor<T>.call<&T::method>(...): the template argument must be a member function of T");
    if constexpr (traits::is_member) {
      static_assert(std::is_base_of_v<typename traits::class_type, T>,
                    "actor<T>.call<&T::method>(...): the method belongs to another class than T");
      using params = typename traits::params;
      using result_type = detail::call_result_t<typename traits::return_type>;
      static_assert(std::is_void_v<result_type> || is_encodable_v<result_type>,
                    "actor<T>.call<&T::method>(...): the method's return type cannot be sent "
                    "between processes");
      static_assert(sizeof...(A) == traits::arity,
                    "actor<T>.call<&T::method>(...): wrong number of arguments for the method");
      if constexpr (sizeof...(A) == traits::arity) {
        constexpr bool fits =
            detail::arguments_fit<params, A...>(std::make_index_sequence<sizeof...(A)>{});
        static_assert(fits,
                      "actor<T>.call<&T::method>(...): an argument does not match the method's "
                      "parameter: pass the "
                      "parameter's type, a value convertible to it, or an object_ref of it");
        if constexpr (fits) {
          if (!p_) throw ray::runtime_error("actor<T>.call: the actor handle is empty");
          auto& p = detail::process::require();
          auto spec = detail::make_call<Method>(p, std::forward<A>(args)...);
          spec.target_actor = p_.get()->id;
          return object_ref<result_type>(p.submit(std::move(spec)));
        } else {
          return object_ref<result_type>{};
        }
      } else {
        return object_ref<result_type>{};
      }
    }
  }

  /// The actor's id, unique within the runtime; 0 for an empty handle.
  std::uint64_t id() const noexcept { return p_ ? p_.get()->id : 0; }
  bool valid() const noexcept { return static_cast<bool>(p_); }
  /// The actor's process id (0 while it starts or after it ended). Driver only.
  int pid() const { return detail::require_driver("actor<T>.pid()").actor_pid(id()); }

  friend bool operator==(const actor& a, const actor& b) noexcept { return a.id() == b.id(); }

  /// Handles travel as call arguments, alone or inside containers and structs: the id is
  /// sent, the call keeps the actor alive until it ends, and the receiving process makes a
  /// handle of its own.
  template <class Archive>
  void serialize(Archive& ar) {
    std::uint64_t id = this->id();
    ar(id);
    if constexpr (Archive::is_loading) {
      p_ = detail::process::require().make_actor_handle(id);
    } else if constexpr (std::is_same_v<Archive, detail::writer>) {
      detail::collect_actor_handle(id);
    }
  }

 private:
  detail::actor_ptr p_;
};

/// Starts an actor: constructs T(args...) in a new process. Returns at once; calls queue
/// behind the construction. If the constructor throws, calls fail with actor_died.
template <class T, class... A>
actor<T> spawn(actor_options opts, A&&... args) {
  using ctor = detail::actor_constructor<T, detail::constructor_arg_t<A>...>;
  static_assert(std::is_constructible_v<T, detail::constructor_arg_t<A>&&...>,
                "ray::spawn<T>(args...): T has no constructor taking these arguments");
  static_assert(((detail::is_actor_v<A> || is_encodable_v<detail::constructor_arg_t<A>>)&&...),
                "ray::spawn<T>(args...): a constructor argument cannot be sent between processes");
  if constexpr (std::is_constructible_v<T, detail::constructor_arg_t<A>&&...>) {
    auto& d = detail::require_driver("ray::spawn");
    (void)ctor::registered;
    detail::actor_spawn_request req;
    req.constructor.fn_id = detail::entity_id<&ctor::marker>;
    req.constructor.name = detail::type_name<T>();
    (detail::add_argument<detail::constructor_arg_t<A>>(req.constructor, d, std::forward<A>(args)),
     ...);
    req.type_id = detail::actor_type_id<T>;
    req.type_name = std::string(detail::type_name<T>());
    req.name = std::move(opts.name);
    req.max_concurrency = opts.max_concurrency;
    req.max_restarts = opts.max_restarts < 0 ? std::numeric_limits<int>::max() : opts.max_restarts;
    req.max_task_retries =
        opts.max_task_retries < 0 ? std::numeric_limits<int>::max() : opts.max_task_retries;
    std::uint64_t id = d.spawn_actor(std::move(req));
    return actor<T>(d.make_actor_handle(id));
  } else {
    return {};
  }
}

template <class T, class... A>
actor<T> spawn(A&&... args) {
  return spawn<T>(actor_options{}, std::forward<A>(args)...);
}

/// The live actor named `name`, from any process. Throws actor_not_found if there is none,
/// or if it is not a T.
template <class T>
actor<T> get_actor(std::string_view name) {
  auto& p = detail::process::require();
  auto info = p.lookup_actor(name);
  if (!info.id)
    throw actor_not_found("ray::get_actor: no live actor is named '" + std::string(name) + "'");
  if (info.type_id != detail::actor_type_id<T>)
    throw actor_not_found("ray::get_actor: the actor named '" + std::string(name) + "' is not a " +
                          std::string(detail::type_name<T>()));
  return actor<T>(p.make_actor_handle(info.id));
}

/// Ends the actor now (SIGKILL). Its pending and later calls fail with actor_died.
template <class T>
void kill(const actor<T>& a) {
  if (a.valid()) detail::process::require().kill_actor(a.id());
}

CORAY_END_NAMESPACE
// end <coray/actor.hpp>
// begin <coray/actor_pool.hpp>
/// ray::actor_pool<T>: Ray's ActorPool -- spreads method calls over a fixed set of actors,
/// one call per actor at a time, the rest waiting until an actor is free.
///
///   struct doubler { int twice(int v) { return 2 * v; } };
///   std::vector<ray::actor<doubler>> actors{ray::spawn<doubler>(), ray::spawn<doubler>()};
///   ray::actor_pool<doubler> pool(actors);
///   for (int r : pool.map<&doubler::twice>(std::vector{1, 2, 3, 4})) ...   // 2 4 6 8
///   pool.submit<&doubler::twice>(5);
///   int ten = pool.get_next<int>();
///
/// An actor takes the next waiting call as soon as its current one finishes (Ray frees it
/// only when its result is fetched). map and map_unordered return their own result streams,
/// independent of submit/get_next. Driver only, from the loop's thread. Destroying the pool
/// waits for the calls it sent; the actors live on while other handles to them exist.

#include <chrono>
// #include <coray/actor.hpp>: inlined above
// begin <coray/detail/mp/dispatcher.hpp>
/// Spreads calls over a set of actors -- at most `depth` sent to each and not yet finished,
/// the rest waiting here in the order they came -- so that a free actor always takes the
/// next call, and settles each call's own result state when it ends. ray::pool and
/// ray::actor_pool are built on it. Driver only, on the loop's thread.
///
/// A call is sent from user code (enqueue) or, when one ends, from a coroutine the loop
/// resumes: never from inside the driver's own callbacks, so the driver is not re-entered
/// while it settles results.

// #include <coray/detail/runtime/driver.hpp>: inlined above
#include <coroutine>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <list>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// Settles `to` as `from` settled (same value, or the same error). Driver only.
inline void forward_outcome(driver& d, object_state& from, object_state& to) {
  if (to.settled()) return;
  if (from.st == object_state::status::failed) {
    to.set_error(from.error);
  } else if (from.block) {
    d.seg.add_ref(from.block);  // `to` holds a reference of its own
    to.set_block(from.block);
  } else {
    to.set_inline(from.value_bytes());
  }
}

inline bool is_actor_died(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const actor_died&) {
    return true;
  } catch (...) {
    return false;
  }
}

class dispatcher {
 public:
  /// What to do when a member's process died: return a replacement actor's handle, or an
  /// empty one to drop the member. Runs on the loop, outside any callback.
  using replace_fn = std::function<actor_ptr(std::size_t member)>;

  dispatcher(driver& d, std::uint32_t depth, replace_fn replace = {})
      : d_(d),
        epoch_(d.epoch),
        depth_(depth),
        replace_(std::move(replace)),
        pump_(pump_loop(this)) {}
  dispatcher(const dispatcher&) = delete;
  dispatcher& operator=(const dispatcher&) = delete;

  /// Precondition: idle(), or the runtime is gone (then nothing can call back).
  ~dispatcher() {
    if (runtime_alive()) {
      if (pump_scheduled_) d_.run_until([this] { return !pump_scheduled_; });
      for (auto& w : queue_) discard(w);
    }
    pump_.destroy();
  }

  /// Adds an actor; returns its member index (stable).
  std::size_t add(actor_ptr a) {
    members_.push_back({std::move(a)});
    pump();
    return members_.size() - 1;
  }

  /// Queues a call; its target_actor is chosen when it is sent. Returns the state that
  /// settles with its outcome.
  state_ptr enqueue(task_spec spec) {
    waiting w{std::move(spec), make_state()};
    state_ptr result = w.result;
    hold(w.spec.actors, +1);
    queue_.push_back(std::move(w));
    pump();
    return result;
  }

  /// Fails every call not yet sent with `e`.
  void fail_waiting(const std::exception_ptr& e) {
    while (!queue_.empty()) {
      waiting w = std::move(queue_.front());
      queue_.pop_front();
      discard(w);
      w.result->set_error(e);
    }
  }

  /// Runs the loop until every call has ended.
  void drain() {
    d_.run_until([this] { return idle(); });
  }
  bool idle() const noexcept { return queue_.empty() && running_.empty(); }
  /// The runtime this dispatcher belongs to is still the process's (not ended or replaced).
  bool runtime_alive() const noexcept {
    process* p = process::current();
    return p && p->epoch == epoch_;
  }

  std::size_t members() const noexcept { return members_.size(); }
  const actor_ptr& member(std::size_t i) const noexcept { return members_[i].handle; }
  /// A member that takes calls and has none now.
  bool is_idle(std::size_t i) const noexcept {
    return members_[i].handle && !members_[i].dead && members_[i].running == 0;
  }
  bool is_live(std::size_t i) const noexcept { return static_cast<bool>(members_[i].handle); }
  /// Takes the member out of the set; calls it runs finish. Returns its handle.
  actor_ptr remove(std::size_t i) {
    actor_ptr h = std::move(members_[i].handle);
    members_[i].handle = actor_ptr();
    members_[i].removed = true;
    return h;
  }

 private:
  struct member_state {
    actor_ptr handle;  // empty: removed, or dead and not replaced
    std::uint32_t running = 0;
    bool dead = false;     // its process died; replaced once its calls have failed
    bool removed = false;  // taken out by remove(): it may come back through add()
  };
  struct waiting {
    task_spec spec;
    state_ptr result;
  };
  struct running_call {
    dispatcher* self;
    std::size_t member;
    state_ptr result;
    std::list<running_call>::iterator at;
  };

  /// A coroutine the loop resumes to send calls after others ended.
  struct pump_task {
    struct promise_type {
      pump_task get_return_object() noexcept {
        return {std::coroutine_handle<promise_type>::from_promise(*this)};
      }
      std::suspend_never initial_suspend() noexcept { return {}; }
      std::suspend_always final_suspend() noexcept { return {}; }
      void return_void() noexcept {}
      void unhandled_exception() noexcept { std::terminate(); }
    };
    std::coroutine_handle<promise_type> h;
    void destroy() noexcept {
      if (h) h.destroy();
      h = {};
    }
  };
  static pump_task pump_loop(dispatcher* self) {
    for (;;) {
      co_await std::suspend_always{};
      self->pump_scheduled_ = false;
      self->pump();
    }
  }
  void schedule_pump() {
    if (pump_scheduled_) return;
    pump_scheduled_ = true;
    d_.schedule(pump_.h);
  }

  /// While a call waits here, the actors and shared blocks its arguments name stay alive
  /// (counted as a sent call counts them).
  void hold(const std::vector<std::uint64_t>& ids, int delta) noexcept {
    for (std::uint64_t id : ids) d_.actor_handle(id, delta);
  }
  void discard(waiting& w) noexcept {
    hold(w.spec.actors, -1);
    for (object_block* b : w.spec.blocks) d_.release_block(b);
    w.spec.blocks.clear();
  }

  std::size_t pick() const noexcept {
    std::size_t best = members_.size();
    std::uint32_t best_load = depth_;
    for (std::size_t i = 0; i < members_.size(); ++i) {
      const member_state& m = members_[i];
      if (!m.handle || m.dead || m.running >= best_load) continue;
      best = i;
      best_load = m.running;
      if (best_load == 0) break;
    }
    return best;
  }

  void pump() {
    if (pumping_) return;
    pumping_ = true;
    replace_dead();
    while (!queue_.empty()) {
      const std::size_t i = pick();
      if (i == members_.size()) break;
      waiting w = std::move(queue_.front());
      queue_.pop_front();
      send(i, w);
    }
    if (!queue_.empty() && all_died())
      fail_waiting(std::make_exception_ptr(actor_died(
          last_death_.empty() ? "coray: no actor is left to run the call" : last_death_)));
    pumping_ = false;
  }

  void replace_dead() {
    for (std::size_t i = 0; i < members_.size(); ++i) {
      member_state& m = members_[i];
      if (!m.dead || m.running) continue;
      m.dead = false;
      m.handle = actor_ptr();
      if (replace_) {
        try {
          m.handle = replace_(i);
        } catch (...) {
        }
      }
    }
  }
  /// Every member died and none was replaced: no call can ever run.
  bool all_died() const noexcept {
    for (const member_state& m : members_)
      if ((m.handle && !m.dead) || m.removed) return false;
    return !members_.empty();
  }

  void send(std::size_t i, waiting& w) {
    member_state& m = members_[i];
    const std::vector<std::uint64_t> held = w.spec.actors;
    w.spec.target_actor = m.handle.get()->id;
    state_ptr source;
    try {
      source = d_.submit(std::move(w.spec));
    } catch (...) {
      hold(held, -1);
      w.result->set_error(std::current_exception());
      return;
    }
    hold(held, -1);  // the call holds them now
    ++m.running;
    running_.push_back({this, i, w.result, {}});
    auto at = std::prev(running_.end());
    at->at = at;
    if (source->settled())
      ended(&*at, *source);
    else
      source->waiters.push_back({&dispatcher::ended, &*at});
  }

  /// A call ended (in a driver callback): settle its result and let the pump send more.
  static void ended(void* ctx, object_state& source) {
    auto* c = static_cast<running_call*>(ctx);
    dispatcher& self = *c->self;
    member_state& m = self.members_[c->member];
    if (m.running) --m.running;
    if (source.st == object_state::status::failed && is_actor_died(source.error)) {
      m.dead = true;
      try {
        std::rethrow_exception(source.error);
      } catch (const std::exception& e) {
        self.last_death_ = e.what();
      }
    }
    state_ptr result = std::move(c->result);
    self.running_.erase(c->at);
    forward_outcome(self.d_, source, *result);
    self.schedule_pump();
  }

  driver& d_;
  std::uint32_t epoch_;
  std::uint32_t depth_;
  replace_fn replace_;
  std::vector<member_state> members_;
  std::deque<waiting> queue_;
  std::list<running_call> running_;
  std::string last_death_;
  bool pumping_ = false;
  bool pump_scheduled_ = false;
  pump_task pump_;
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/mp/dispatcher.hpp>
// begin <coray/result_stream.hpp>
/// ray::result_stream<R>: results that arrive one by one -- what pool::imap,
/// pool::imap_unordered and actor_pool::map return (multiprocessing's IMapIterator). Iterate
/// it (blocking, serving the runtime meanwhile) or co_await next_async() in a coroutine.
///
///   for (int r : p.imap_unordered<square>(xs)) use(r);     // as each result arrives
///   while (auto r = co_await stream.next_async()) use(*r);
///
/// A call that failed throws its error where its result would have come; iterating on goes
/// past it. Single pass; movable, not copyable. Loop thread only.

#include <algorithm>
// #include <coray/async.hpp>: inlined above
// #include <coray/codec.hpp>: inlined above
// #include <coray/detail/runtime/process.hpp>: inlined above
// #include <coray/object_store.hpp>: inlined above
#include <coroutine>
#include <cstddef>
#include <deque>
#include <iterator>
#include <memory>
#include <optional>
#include <vector>

CORAY_BEGIN_NAMESPACE

template <class R>
class result_stream {
 public:
  /// Runtime internals: `units` settle with either one R each or, if `chunked`, a
  /// std::vector<R> each; `ordered` yields them in the order given, else as they settle.
  result_stream(std::vector<detail::state_ptr> units, bool ordered, bool chunked)
      : s_(std::make_unique<state>(std::move(units), ordered, chunked)) {}
  result_stream(result_stream&&) noexcept = default;
  result_stream& operator=(result_stream&&) noexcept = default;
  ~result_stream() = default;

  /// The next result, waiting for it (serving the runtime); nullopt after the last one.
  std::optional<R> next() {
    state& s = *s_;
    if (!s.available()) detail::process::require().run_until([&] { return s.available(); });
    return s.take();
  }

  /// The same, in a coroutine: `while (auto r = co_await stream.next_async())`.
  async<std::optional<R>> next_async() {
    state& s = *s_;
    while (!s.available()) co_await arrival{s};
    co_return s.take();
  }

  /// True once every result has been returned.
  bool done() const noexcept { return s_->exhausted(); }

  class iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = R;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(result_stream* s) : s_(s) { ++*this; }
    R& operator*() noexcept { return *v_; }
    R* operator->() noexcept { return &*v_; }
    iterator& operator++() {
      v_ = s_->next();
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& i, std::default_sentinel_t) noexcept { return !i.v_; }

   private:
    result_stream* s_ = nullptr;
    std::optional<R> v_;
  };
  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() const noexcept { return {}; }

 private:
  struct state;
  struct unit_watch {
    state* s;
    std::size_t index;
  };

  struct state {
    std::vector<detail::state_ptr> units;
    std::vector<unit_watch> watches;  // waiter contexts, one per unit
    bool ordered, chunked;
    std::deque<std::size_t> settled;  // unordered: indices in the order they settled
    std::size_t next_unit = 0;        // ordered: the next to take; unordered: how many taken
    std::vector<R> buffer;            // decoded results of the unit being returned
    std::size_t buffer_at = 0;
    std::coroutine_handle<> waiting;

    state(std::vector<detail::state_ptr> u, bool o, bool c)
        : units(std::move(u)), ordered(o), chunked(c) {
      watches.reserve(units.size());
      for (std::size_t i = 0; i < units.size(); ++i) watches.push_back({this, i});
      for (std::size_t i = 0; i < units.size(); ++i) {
        if (units[i]->settled()) {
          if (!ordered) settled.push_back(i);
        } else {
          units[i]->waiters.push_back({&state::on_settled, &watches[i]});
        }
      }
    }
    state(const state&) = delete;
    ~state() {
      // Units still running must not call back into a stream that is gone.
      for (std::size_t i = 0; i < units.size(); ++i) {
        if (!units[i] || units[i]->settled()) continue;
        auto& ws = units[i]->waiters;
        ws.erase(std::remove_if(ws.begin(), ws.end(),
                                [&](const detail::waiter& w) { return w.ctx == &watches[i]; }),
                 ws.end());
      }
    }

    static void on_settled(void* ctx, detail::object_state&) {
      auto* w = static_cast<unit_watch*>(ctx);
      if (!w->s->ordered) w->s->settled.push_back(w->index);
      if (auto h = std::exchange(w->s->waiting, {}))
        detail::resume_waiter(h.address(), *w->s->units[w->index]);
    }

    bool exhausted() const noexcept {
      return buffer_at == buffer.size() && next_unit == units.size();
    }
    /// A result (or an error, or the end) can be returned without waiting.
    bool available() const noexcept {
      if (buffer_at < buffer.size() || next_unit == units.size()) return true;
      return ordered ? units[next_unit]->settled() : !settled.empty();
    }
    /// Precondition: available().
    std::optional<R> take() {
      while (buffer_at == buffer.size()) {
        if (next_unit == units.size()) return std::nullopt;
        std::size_t i = next_unit;
        if (!ordered) {
          i = settled.front();
          settled.pop_front();
        }
        ++next_unit;
        buffer.clear();
        buffer_at = 0;
        detail::state_ptr unit = std::move(units[i]);
        unit->rethrow_if_failed();
        if (chunked)
          buffer = decode<std::vector<R>>(unit->value_bytes());
        else
          buffer.push_back(decode<R>(unit->value_bytes()));
      }
      return std::move(buffer[buffer_at++]);
    }
  };

  /// Suspends a coroutine until the next unit settles.
  struct arrival {
    state& s;
    bool await_ready() const noexcept { return s.available(); }
    void await_suspend(std::coroutine_handle<> h) {
      s.waiting = h;
      detail::process::current()->coroutine_suspended(+1);
    }
    void await_resume() const noexcept {}
  };

  std::unique_ptr<state> s_;
};

CORAY_END_NAMESPACE
// end <coray/result_stream.hpp>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <ranges>
#include <string>
#include <string_view>
#include <vector>

CORAY_BEGIN_NAMESPACE

template <class T>
class actor_pool {
  template <auto Method>
  using method_result_t =
      detail::call_result_t<typename detail::function_traits<decltype(Method)>::return_type>;

 public:
  explicit actor_pool(std::vector<actor<T>> actors)
      : s_(std::make_unique<state>(detail::require_driver("ray::actor_pool"))) {
    for (auto& a : actors) push(std::move(a));
  }
  actor_pool(actor_pool&&) noexcept = default;
  actor_pool& operator=(actor_pool&&) noexcept = default;

  /// Waits for the calls the pool sent (the actors' results still arrive where they belong).
  ~actor_pool() {
    if (!s_ || !s_->disp.runtime_alive() || !s_->d.is_loop_thread()) return;
    try {
      s_->disp.drain();
    } catch (...) {
    }
  }

  /// Calls `Method` with `args` on the next free actor; its result is taken with get_next()
  /// or get_next_unordered().
  template <auto Method, class... A>
  void submit(A&&... args) {
    using R = method_result_t<Method>;
    state& s = *s_;
    auto result = s.disp.enqueue(make_call<Method>(std::forward<A>(args)...));
    const std::uint64_t index = s.next_index++;
    auto [it, inserted] =
        s.submitted.emplace(index, entry{std::move(result), detail::type_name<R>(), {&s, index}});
    if (it->second.result->settled())
      s.settled.push_back(index);
    else
      it->second.result->waiters.push_back({&state::on_settled, &it->second.watch});
  }

  /// Whether results of submit() remain to be taken.
  bool has_next() const noexcept { return !s_->submitted.empty(); }
  /// Whether an actor is free now.
  bool has_free() const noexcept {
    for (std::size_t i = 0; i < s_->disp.members(); ++i)
      if (s_->disp.is_idle(i)) return true;
    return false;
  }

  /// The next result of submit(), in submission order; waits (serving the runtime) at most
  /// `timeout`, then throws get_timeout and leaves it in place. R is the method's result type.
  template <class R>
  R get_next(std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
    state& s = *s_;
    if (s.submitted.empty())
      throw ray::runtime_error("ray::actor_pool::get_next: no pending results");
    auto it = s.submitted.begin();
    wait(timeout, [&] { return it->second.result->settled(); });
    return take<R>(it);
  }

  /// Any finished result of submit(), the first to finish first.
  template <class R>
  R get_next_unordered(std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
    state& s = *s_;
    if (s.submitted.empty())
      throw ray::runtime_error("ray::actor_pool::get_next_unordered: no pending results");
    auto first_settled = [&] {
      while (!s.settled.empty() && !s.submitted.count(s.settled.front())) s.settled.pop_front();
      return !s.settled.empty();
    };
    wait(timeout, first_settled);
    return take<R>(s.submitted.find(s.settled.front()));
  }

  /// `Method` over every value, results in the values' order as they are ready.
  template <auto Method, std::ranges::input_range Range>
  result_stream<method_result_t<Method>> map(Range&& values) {
    return result_stream<method_result_t<Method>>(enqueue_all<Method>(std::forward<Range>(values)),
                                                  true, false);
  }
  /// `Method` over every value, results as they finish.
  template <auto Method, std::ranges::input_range Range>
  result_stream<method_result_t<Method>> map_unordered(Range&& values) {
    return result_stream<method_result_t<Method>>(enqueue_all<Method>(std::forward<Range>(values)),
                                                  false, false);
  }

  /// Takes a free actor out of the pool; nullopt if none is free.
  std::optional<actor<T>> pop_idle() {
    for (std::size_t i = 0; i < s_->disp.members(); ++i)
      if (s_->disp.is_idle(i)) return actor<T>(s_->disp.remove(i));
    return std::nullopt;
  }
  /// Adds an actor to the pool; it takes waiting calls at once.
  void push(actor<T> a) {
    if (!a.valid()) throw ray::runtime_error("ray::actor_pool: an empty actor handle");
    s_->disp.add(s_->d.make_actor_handle(a.id()));
  }

 private:
  template <auto Method, class... A>
  detail::task_spec make_call(A&&... args) {
    using traits = detail::function_traits<decltype(Method)>;
    static_assert(
        traits::is_member,
        "ray::actor_pool<T>: the template argument must be a member function of T (&T::method)");
    if constexpr (traits::is_member) {
      static_assert(std::is_base_of_v<typename traits::class_type, T>,
                    "ray::actor_pool<T>: the method belongs to another class than T");
      using R = method_result_t<Method>;
      static_assert(
          std::is_void_v<R> || is_encodable_v<R>,
          "ray::actor_pool<T>: the method's return type cannot be sent between processes");
      static_assert(sizeof...(A) == traits::arity,
                    "ray::actor_pool<T>: wrong number of arguments for the method");
      if constexpr (sizeof...(A) == traits::arity) {
        constexpr bool fits = detail::arguments_fit<typename traits::params, A...>(
            std::make_index_sequence<sizeof...(A)>{});
        static_assert(fits,
                      "ray::actor_pool<T>: an argument does not match the method's parameter");
        if constexpr (fits) {
          if (!s_->disp.runtime_alive())
            throw ray::runtime_error("ray::actor_pool: its runtime has ended");
          return detail::make_call<Method>(s_->d, std::forward<A>(args)...);
        }
      }
    }
    return {};
  }

  template <auto Method, class Range>
  std::vector<detail::state_ptr> enqueue_all(Range&& values) {
    std::vector<detail::state_ptr> units;
    for (auto&& v : values)
      units.push_back(s_->disp.enqueue(make_call<Method>(std::forward<decltype(v)>(v))));
    return units;
  }

  struct state;
  struct settle_watch {
    state* s;
    std::uint64_t index;
  };
  struct entry {
    detail::state_ptr result;
    std::string_view type;  // the method's result type, checked by get_next<R>
    settle_watch watch;
  };

  struct state {
    explicit state(detail::driver& driver) : d(driver), disp(driver, 1) {}
    ~state() {
      for (auto& kv : submitted) {
        entry& e = kv.second;
        if (e.result->settled()) continue;
        auto& ws = e.result->waiters;
        std::erase_if(ws, [&](const detail::waiter& w) { return w.ctx == &e.watch; });
      }
    }
    static void on_settled(void* ctx, detail::object_state&) {
      auto* w = static_cast<settle_watch*>(ctx);
      w->s->settled.push_back(w->index);
    }
    detail::driver& d;
    std::map<std::uint64_t, entry> submitted;  // results of submit() not yet taken, by order
    std::deque<std::uint64_t> settled;         // indices in the order they settled
    std::uint64_t next_index = 0;
    detail::dispatcher disp;
  };

  template <class Done>
  void wait(std::optional<std::chrono::nanoseconds> timeout, Done&& done) {
    auto deadline = timeout ? detail::clock::now() + *timeout : detail::clock::time_point::max();
    if (!done() && !detail::process::require().run_until(done, deadline))
      throw get_timeout("ray::actor_pool: no result within the timeout");
  }

  template <class R>
  R take(typename std::map<std::uint64_t, entry>::iterator it) {
    if (it->second.type != detail::type_name<R>())
      throw ray::runtime_error("ray::actor_pool::get_next<" + std::string(detail::type_name<R>()) +
                               ">: the next result is a " + std::string(it->second.type));
    detail::state_ptr result = std::move(it->second.result);
    s_->submitted.erase(it);
    return detail::read_value<R>(*result);
  }

  std::unique_ptr<state> s_;
};

CORAY_END_NAMESPACE
// end <coray/actor_pool.hpp>
// #include <coray/async.hpp>: inlined above
// #include <coray/codec.hpp>: inlined above
// #include <coray/errors.hpp>: inlined above
// begin <coray/mutex.hpp>
/// ray::mutex: a lock that every process of the runtime can take -- multiprocessing.Lock,
/// robust to its holder's death. Works with std::lock_guard, std::unique_lock and
/// std::scoped_lock.
///
///   void add_one(ray::mutex lock, ray::shared_value<int> total) {
///     std::lock_guard hold(lock);
///     total.store(total.load() + 1);                  // exact under the lock
///   }
///
/// If a process dies holding the lock, the next locker gets it (lock() succeeds, as pthread
/// robust mutexes do) and owner_died() tells it that what the lock protects may be half
/// updated. A handle is a value: copy it, pass it to tasks and actors, create it in any
/// process. The lock lives while a handle to it exists in any process.
///
/// Waiting in lock() or try_lock_for() on a runtime loop's thread keeps serving the runtime
/// (as a blocking ray::get does), so the holder can finish work that needs this process. The
/// lock is not recursive: the thread holding it must not lock it again.

#include <algorithm>
#include <chrono>
// begin <coray/detail/mp/shared_block.hpp>
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
// #include <coray/codec.hpp>: inlined above
// #include <coray/detail/runtime/process.hpp>: inlined above
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
    process* p = process::current();
    if (p && p->epoch == l_->epoch) p->release_block(l_->block);
    delete l_;
    l_ = nullptr;
  }

  local* l_ = nullptr;
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/mp/shared_block.hpp>
// #include <coray/detail/shm/robust_mutex.hpp>: inlined above
#include <cstdint>
#include <new>

CORAY_BEGIN_NAMESPACE

class mutex {
 public:
  /// A new unlocked lock. Its memory is taken at first use (locking, a copy, or passing it to
  /// a call), so that decoding a handle never allocates one to throw away.
  mutex() noexcept = default;
  /// Copies are handles to the same lock.
  mutex(const mutex& o) : block_((o.s(), o.block_)) {}
  mutex(mutex&&) noexcept = default;
  mutex& operator=(const mutex& o) {
    o.s();
    block_ = o.block_;
    return *this;
  }
  mutex& operator=(mutex&&) noexcept = default;

  /// Blocks until this thread holds the lock.
  void lock() { acquire_until(clock::time_point::max()); }
  /// Takes the lock if it is free; never waits.
  bool try_lock() {
    if (!s().lock.try_lock()) return false;
    acquired();
    return true;
  }
  /// Waits at most `timeout` for the lock; false if it did not come.
  template <class Rep, class Period>
  bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout) {
    return acquire_until(clock::now() + std::chrono::ceil<clock::duration>(timeout));
  }
  template <class Clock, class Duration>
  bool try_lock_until(const std::chrono::time_point<Clock, Duration>& deadline) {
    return acquire_until(clock::now() +
                         std::chrono::ceil<clock::duration>(deadline - Clock::now()));
  }
  /// Precondition: this thread holds the lock.
  void unlock() { s().lock.unlock(); }

  /// While holding the lock: true if this acquisition took it over from a process that died
  /// holding it, so the state the lock protects may be inconsistent.
  bool owner_died() const { return s().owner_died; }

  /// Handles travel as call arguments: the receiving process reaches the same lock.
  template <class Archive>
  void serialize(Archive& ar) {
    if constexpr (!Archive::is_loading) s();
    ar(block_);
    if constexpr (Archive::is_loading) {
      if (block_ && block_.size() != sizeof(state))
        throw codec_error("coray: a ray::mutex handle of another type");
    }
  }

 private:
  using clock = std::chrono::steady_clock;

  struct state {
    detail::robust_mutex lock;
    std::uint32_t deaths_seen = 0;  // the lock's owner_deaths() at the last acquisition
    bool owner_died = false;
  };

  state& s() const {
    if (!block_) {
      block_ = detail::shared_block::allocate(sizeof(state));
      new (block_.data()) state{};
    }
    return *std::launder(reinterpret_cast<state*>(block_.data()));
  }

  /// Run by each new holder: owner deaths are counted only by the acquisition that
  /// recovered the lock, so a count that moved since the last acquisition was ours.
  void acquired() {
    state& st = s();
    const std::uint32_t deaths = st.lock.owner_deaths();
    st.owner_died = deaths != st.deaths_seen;
    st.deaths_seen = deaths;
  }

  bool acquire_until(clock::time_point deadline) {
    if (try_lock()) return true;
    detail::process* p = detail::process::current();
    const bool serve = p && p->is_loop_thread();
    for (;;) {
      const auto now = clock::now();
      if (now >= deadline) return false;
      // Serve what has arrived (trying the lock as we go), then sleep on the lock itself for
      // a short slice: its release wakes us at once; the slice bounds how long the runtime
      // waits for this process.
      if (serve && p->run_until([&] { return try_lock(); }, now)) return true;
      const auto slice =
          serve ? std::min(deadline, clock::now() + std::chrono::milliseconds(1)) : deadline;
      if (s().lock.try_lock_until(slice)) {
        acquired();
        return true;
      }
    }
  }

  mutable detail::shared_block block_;
};

CORAY_END_NAMESPACE
// end <coray/mutex.hpp>
// #include <coray/object_ref.hpp>: inlined above
// #include <coray/object_store.hpp>: inlined above
// begin <coray/pool.hpp>
/// ray::pool: multiprocessing.Pool for coray -- worker processes of its own that map a
/// function over a range in chunks, or run single calls, with an optional initializer run
/// once in each process. The function is named at compile time, as with ray::task.
///
///   int square(int x) { return x * x; }
///   void load_model(std::string path);                 // once per pool process
///
///   ray::pool p(4, ray::initializer<load_model>, "model.bin");
///   std::vector<int> ys = p.map<square>(xs);           // in order, chunked automatically
///   for (int y : p.imap_unordered<square>(xs)) ...     // as chunks finish
///   ray::object_ref<int> r = p.apply_async<square>(7);
///
/// Chunks go to whichever process is free (each process has at most two sent to it at a
/// time), so uneven work balances. By default a map is cut into about four chunks per
/// process, as multiprocessing does, so a million tiny items cost a handful of messages,
/// not a million. Raw items (numbers, plain structs) are read by the pool processes in
/// place, in shared memory.
///
/// The pool is driver-only, used from the loop's thread. A process that dies fails the calls
/// it was running (actor_died) and is replaced, with its initializer run again; if the
/// initializer itself fails, the pool's calls fail with actor_died carrying its error.
/// Destroying the pool waits for the work submitted to it (close() and join()).

#include <algorithm>
// #include <coray/actor.hpp>: inlined above
// #include <coray/detail/mp/dispatcher.hpp>: inlined above
// begin <coray/detail/mp/pool_process.hpp>
/// A process of a ray::pool: an actor that runs chunks of a map and single calls of the
/// pool's functions, after its initializer ran once in its constructor.

#include <unistd.h>

// #include <coray/detail/codec/codec_traits.hpp>: inlined above
// #include <coray/task.hpp>: inlined above
#include <span>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

template <auto F>
using map_param_t = std::tuple_element_t<0, typename function_traits<decltype(F)>::params>;
/// What a map's items are carried as: F's parameter's owning type.
template <auto F>
using map_item_t = storage_type_t<map_param_t<F>>;
template <auto F>
using map_result_t = call_result_t<typename function_traits<decltype(F)>::return_type>;
/// A chunk of items: raw items are read in place, others decoded.
template <class S>
using chunk_t = std::conditional_t<is_raw_copyable_v<S>, std::span<const S>, std::vector<S>>;

/// F applied to one item of a chunk: moved from when the chunk owns it.
template <auto F, class X>
decltype(auto) call_item(X& x) {
  using P = map_param_t<F>;
  if constexpr (!std::is_const_v<X>)
    return F(std::move(x));
  else if constexpr (std::is_rvalue_reference_v<P>)
    return F(std::remove_cvref_t<P>(x));
  else
    return F(x);
}

struct pool_process {
  /// F over a chunk's items, in order.
  template <auto F, class Chunk>
  std::vector<map_result_t<F>> run_chunk(Chunk items) {
    std::vector<map_result_t<F>> out;
    out.reserve(items.size());
    for (auto& x : items) out.push_back(call_item<F>(x));
    return out;
  }
  /// One call of F (pool::apply); a coroutine F is awaited.
  template <auto F, class... P>
  typename function_traits<decltype(F)>::return_type run(P... args) {
    return F(std::forward<P>(args)...);
  }
  /// Answers once the process is built: its initializer succeeded.
  int pid() const { return getpid(); }
};

/// A pool process whose constructor runs Init(args...) once.
template <auto Init, class... S>
struct initialized_pool_process : pool_process {
  explicit initialized_pool_process(S... args) { Init(std::move(args)...); }
};

template <auto F, class Params = typename function_traits<decltype(F)>::params>
struct pool_run;
template <auto F, class... P>
struct pool_run<F, std::tuple<P...>> {
  static constexpr auto method = &pool_process::template run<F, P...>;
};

template <class Chunk>
struct map_chunk_tag {};
struct apply_tag {};

/// The id a pool method running F is called by. Compilers print a pointer to a member
/// function template without its template arguments, so entity_id<&pool_process::run_chunk<F,
/// C>> is the same for every F; this id is F's own, mixed with what the method does with it.
/// Errors read as coming from F.
template <auto Method, auto F, class Tag>
struct pool_callee {
  static constexpr std::uint64_t id = [] {
    std::uint64_t h = entity_id<F>;
    for (char c : type_name<Tag>()) {
      h ^= static_cast<unsigned char>(c);
      h *= 1099511628211ULL;
    }
    return h;
  }();
  static inline const bool registered =
      register_function(id, &invoker<Method>::invoke, entity_name<F>());
};

/// The message of a pool method's call: make_call, under the pool_callee id.
template <auto Method, auto F, class Tag, class... A>
task_spec make_pool_call(process& p, A&&... args) {
  task_spec spec = make_call<Method>(p, std::forward<A>(args)...);
  (void)pool_callee<Method, F, Tag>::registered;
  spec.fn_id = pool_callee<Method, F, Tag>::id;
  spec.name = entity_name<F>();
  return spec;
}

template <auto Init, class Params = typename function_traits<decltype(Init)>::params>
struct initialized_process_type;
template <auto Init, class... P>
struct initialized_process_type<Init, std::tuple<P...>> {
  using type = initialized_pool_process<Init, storage_type_t<P>...>;
};

/// Appends a chunk's encoded std::vector<R> to `out`: one copy for raw R.
template <class R>
void append_chunk(std::vector<R>& out, std::span<const std::byte> bytes) {
  if constexpr (is_raw_copyable_v<R>) {
    reader in(bytes);
    auto [p, n] = in.take_raw_run<std::vector<R>, R>();
    if (in.remaining() != 0) throw codec_error("coray: trailing bytes after a map chunk's results");
    if (reinterpret_cast<std::uintptr_t>(p) % alignof(R) == 0) {
      const R* first = reinterpret_cast<const R*>(p);
      out.insert(out.end(), first, first + n);
    } else {
      const std::size_t at = out.size();
      out.resize(at + n);
      if (n) std::memcpy(out.data() + at, p, n * sizeof(R));
    }
  } else {
    auto v = decode<std::vector<R>>(bytes);
    out.insert(out.end(), std::make_move_iterator(v.begin()), std::make_move_iterator(v.end()));
  }
}

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/mp/pool_process.hpp>
// #include <coray/object_store.hpp>: inlined above
// begin <coray/processes.hpp>
/// The runtime's processes as multiprocessing describes its children: pids, liveness and
/// exit codes of the task workers and actors. Driver only.
///
///   for (const ray::process_info& w : ray::workers())
///     std::printf("worker %u: pid %d %s\n", w.slot, w.pid, w.alive ? "alive" : "ended");
///   std::size_t n = ray::active_children().size();   // workers and actors now running
///   ray::process_info a = ray::actor_process(counter); // a.pid, a.alive, a.exitcode

#include <sys/wait.h>

// #include <coray/actor.hpp>: inlined above
#include <cstdint>
#include <optional>
#include <vector>

CORAY_BEGIN_NAMESPACE

enum class process_kind : std::uint8_t { task_worker, actor };

/// One process of the runtime.
struct process_info {
  process_kind kind = process_kind::task_worker;
  /// Its slot: task workers are 0..num_workers-1, actors come after.
  std::uint32_t slot = 0;
  /// 0 while it starts.
  int pid = 0;
  /// Started and not yet ended (multiprocessing's is_alive()).
  bool alive = false;
  /// Once it ended: its exit code, or -N if signal N killed it (multiprocessing's exitcode).
  std::optional<int> exitcode;
  /// Task workers: how many times the slot's process was replaced after dying.
  std::uint32_t restarts = 0;
};

namespace detail {

inline std::optional<int> exitcode_of(int wait_status) {
  if (WIFSIGNALED(wait_status)) return -WTERMSIG(wait_status);
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  return std::nullopt;
}

inline process_info slot_info(driver& d, std::uint32_t slot) {
  const worker_shared& w = d.hdr->worker(slot);
  process_info info;
  info.kind = slot < d.num_workers() ? process_kind::task_worker : process_kind::actor;
  info.slot = slot;
  info.pid = w.pid.load(std::memory_order_acquire);
  const auto state = static_cast<slot_state>(w.state.load(std::memory_order_acquire));
  info.alive = info.pid != 0 && (state == slot_state::starting || state == slot_state::running);
  if (state == slot_state::dead)
    info.exitcode = exitcode_of(w.wait_status.load(std::memory_order_relaxed));
  const std::uint32_t generation = w.generation.load(std::memory_order_relaxed);
  if (info.kind == process_kind::task_worker && generation > 1) info.restarts = generation - 1;
  return info;
}

}  // namespace detail

/// The task workers, in slot order. A worker that died shows alive == false with its exit code
/// until its replacement starts (restarts counts the replacements).
inline std::vector<process_info> workers() {
  auto& d = detail::require_driver("ray::workers()");
  std::vector<process_info> out;
  for (std::uint32_t i = 0; i < d.num_workers(); ++i) out.push_back(detail::slot_info(d, i));
  return out;
}

/// Every process of the runtime now running: task workers and actors (multiprocessing's
/// active_children()). The supervisor, which only starts and reaps them, is not listed.
inline std::vector<process_info> active_children() {
  auto& d = detail::require_driver("ray::active_children()");
  std::vector<process_info> out;
  for (std::uint32_t i = 0; i < d.hdr->slots; ++i) {
    process_info info = detail::slot_info(d, i);
    if (info.alive) out.push_back(info);
  }
  return out;
}

/// The process of `a`: its pid, whether it is alive and, once it ended, its exit code.
template <class T>
process_info actor_process(const actor<T>& a) {
  auto& d = detail::require_driver("ray::actor_process()");
  process_info info;
  info.kind = process_kind::actor;
  auto st = d.actor_status(a.id());
  if (!st) return info;
  info.pid = st->pid;
  info.alive = st->pid != 0 && !st->ended;
  if (st->ended) info.exitcode = detail::exitcode_of(st->wait_status);
  for (std::uint32_t i = d.num_workers(); i < d.hdr->slots && info.alive; ++i)
    if (d.hdr->worker(i).pid.load(std::memory_order_relaxed) == info.pid) info.slot = i;
  return info;
}

CORAY_END_NAMESPACE
// end <coray/processes.hpp>
// #include <coray/result_stream.hpp>: inlined above
#include <cstdint>
#include <functional>
#include <list>
#include <ranges>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE

/// Names a pool's initializer: `ray::pool p(n, ray::initializer<f>, args...)`.
template <auto F>
struct initializer_t {};
template <auto F>
inline constexpr initializer_t<F> initializer{};

class pool {
 public:
  /// A pool of `processes` processes (0: the runtime's number of task workers).
  explicit pool(std::uint32_t processes = 0)
      : pool(processes, [](detail::driver& d) {
          return d.make_actor_handle(ray::spawn<detail::pool_process>().id());
        }) {}

  /// A pool whose processes each run Init(initargs...) once, before any work.
  template <auto Init, class... A>
  pool(std::uint32_t processes, initializer_t<Init>, A&&... initargs)
      : pool(processes, spawner<Init>(std::forward<A>(initargs)...)) {}

  pool(const pool&) = delete;
  pool& operator=(const pool&) = delete;

  /// close() and join(): waits for the submitted work, then for the processes to end.
  ~pool() {
    if (!disp_.runtime_alive() || !d_.is_loop_thread()) return;  // the runtime is gone
    try {
      close();
      join();
    } catch (...) {
    }
  }

  /// F over every item, results in the items' order. Blocks (serving the runtime) until all
  /// are done; throws the first failed chunk's error. `chunksize` 0: automatic.
  template <auto F, std::ranges::input_range Range>
  std::vector<detail::map_result_t<F>> map(Range&& items, std::size_t chunksize = 0) {
    using R = detail::map_result_t<F>;
    std::size_t n = 0;
    auto units = submit_map<F>(std::forward<Range>(items), chunksize, n);
    std::vector<R> out;
    out.reserve(n);
    for (auto& u : units) {
      detail::block_until_settled(*u);
      u->rethrow_if_failed();
      detail::append_chunk(out, u->value_bytes());
    }
    return out;
  }

  /// map() without waiting: the ref settles with every result, in order, or the first error.
  template <auto F, std::ranges::input_range Range>
  object_ref<std::vector<detail::map_result_t<F>>> map_async(Range&& items,
                                                             std::size_t chunksize = 0) {
    std::size_t n = 0;
    auto units = submit_map<F>(std::forward<Range>(items), chunksize, n);
    auto result = detail::make_state();
    gathers_.emplace_back(*this, std::move(units), result, n,
                          &gather::template assemble<detail::map_result_t<F>>);
    gathers_.back().self = std::prev(gathers_.end());
    gathers_.back().start();
    return object_ref<std::vector<detail::map_result_t<F>>>(std::move(result));
  }

  /// F over every item; results come in the items' order as they are ready.
  template <auto F, std::ranges::input_range Range>
  result_stream<detail::map_result_t<F>> imap(Range&& items, std::size_t chunksize = 0) {
    std::size_t n = 0;
    return result_stream<detail::map_result_t<F>>(
        submit_map<F>(std::forward<Range>(items), chunksize, n), true, true);
  }

  /// F over every item; results come as chunks finish, in no particular order.
  template <auto F, std::ranges::input_range Range>
  result_stream<detail::map_result_t<F>> imap_unordered(Range&& items, std::size_t chunksize = 0) {
    std::size_t n = 0;
    return result_stream<detail::map_result_t<F>>(
        submit_map<F>(std::forward<Range>(items), chunksize, n), false, true);
  }

  /// F(args...) in a pool process; the ref settles with its result (F may be a coroutine).
  template <auto F, class... A>
  auto apply_async(A&&... args) {
    using traits = detail::function_traits<decltype(F)>;
    static_assert(traits::is_function && !traits::is_member,
                  "ray::pool::apply<f>: f must be a free function or a static member function");
    using params = typename traits::params;
    using result_type = detail::call_result_t<typename traits::return_type>;
    static_assert(sizeof...(A) == traits::arity,
                  "ray::pool::apply<f>(...): wrong number of arguments for f");
    if constexpr (sizeof...(A) == traits::arity) {
      constexpr bool fits =
          detail::arguments_fit<params, A...>(std::make_index_sequence<sizeof...(A)>{});
      static_assert(fits,
                    "ray::pool::apply<f>(...): an argument does not match f's parameter: pass the "
                    "parameter's "
                    "type, a value convertible to it, or an object_ref of it");
      if constexpr (fits) {
        require_open("ray::pool::apply");
        auto spec = detail::make_pool_call<detail::pool_run<F>::method, F, detail::apply_tag>(
            d_, std::forward<A>(args)...);
        return object_ref<result_type>(disp_.enqueue(std::move(spec)));
      } else {
        return object_ref<result_type>{};
      }
    } else {
      return object_ref<result_type>{};
    }
  }

  /// F(args...) in a pool process, waiting for its result.
  template <auto F, class... A>
  auto apply(A&&... args) {
    return ray::get(apply_async<F>(std::forward<A>(args)...)).get();
  }

  /// No more work may be submitted; what was submitted still runs.
  void close() noexcept { closed_ = true; }

  /// Waits (serving the runtime) until the work submitted so far has finished. After close()
  /// or terminate(), also until the pool's processes have ended.
  void join() {
    disp_.drain();
    if (!closed_) return;
    std::vector<std::uint64_t> ids;
    for (std::size_t i = 0; i < disp_.members(); ++i)
      if (disp_.is_live(i)) ids.push_back(disp_.remove(i).get()->id);
    d_.run_until([&] {
      for (std::uint64_t id : ids) {
        auto st = d_.actor_status(id);
        if (st && !st->ended) return false;
      }
      return true;
    });
  }

  /// Ends the processes now: running calls fail with actor_died, queued ones too.
  void terminate() {
    closed_ = true;
    disp_.fail_waiting(
        std::make_exception_ptr(actor_died("coray: ray::pool::terminate() ended the pool")));
    for (std::size_t i = 0; i < disp_.members(); ++i)
      if (disp_.is_live(i)) d_.kill_actor(disp_.member(i).get()->id);
  }

  /// How many processes the pool has.
  std::size_t size() const noexcept { return disp_.members(); }

  /// The pool's processes: pid, liveness and, once ended, exit code. Waits (serving the
  /// runtime) until each has started and run its initializer, or failed to.
  std::vector<process_info> processes() const {
    for (const auto& r : ready_)
      if (r) detail::block_until_settled(*r);
    std::vector<process_info> out;
    for (std::size_t i = 0; i < disp_.members(); ++i) {
      process_info info;
      info.kind = process_kind::actor;
      if (disp_.is_live(i)) {
        if (auto st = d_.actor_status(disp_.member(i).get()->id)) {
          info.pid = st->pid;
          info.alive = st->pid != 0 && !st->ended;
          if (st->ended) info.exitcode = detail::exitcode_of(st->wait_status);
        }
      }
      out.push_back(info);
    }
    return out;
  }

 private:
  using spawn_fn = std::function<detail::actor_ptr(detail::driver&)>;

  pool(std::uint32_t processes, spawn_fn spawn)
      : d_(detail::require_driver("ray::pool")),
        spawn_(std::move(spawn)),
        disp_(d_, 2, [this](std::size_t i) { return replace(i); }) {
    const std::uint32_t n = processes ? processes : d_.num_workers();
    for (std::uint32_t i = 0; i < n; ++i) {
      ready_.emplace_back();
      start(disp_.add(spawn_(d_)));
    }
  }

  template <auto Init, class... A>
  static spawn_fn spawner(A&&... initargs) {
    using traits = detail::function_traits<decltype(Init)>;
    static_assert(traits::is_function && !traits::is_member,
                  "ray::initializer<f>: f must be a free function or a static member function");
    using process_type = typename detail::initialized_process_type<Init>::type;
    static_assert(sizeof...(A) == traits::arity,
                  "ray::pool(n, ray::initializer<f>, initargs...): wrong number of initargs for f");
    static_assert(std::is_constructible_v<process_type,
                                          detail::constructor_arg_t<detail::put_type_t<A>>&&...>,
                  "ray::pool(n, ray::initializer<f>, initargs...): an initarg does not convert to "
                  "f's parameter");
    return [args = std::make_tuple(detail::put_type_t<A>(std::forward<A>(initargs))...)](
               detail::driver& d) {
      return std::apply(
          [&](const auto&... a) {
            return d.make_actor_handle(ray::spawn<process_type>(a...).id());
          },
          args);
    };
  }

  /// Asks the new process at `member` to answer once built: then it is known to have
  /// initialised, and may be replaced should it die.
  void start(std::size_t member) {
    auto spec = detail::make_call<&detail::pool_process::pid>(d_);
    spec.target_actor = disp_.member(member).get()->id;
    ready_[member] = d_.submit(std::move(spec));
  }

  detail::actor_ptr replace(std::size_t member) {
    const auto& r = ready_[member];
    if (closed_ || !r || r->st != detail::object_state::status::ready)
      return {};  // its initializer failed
    ready_[member] = {};
    auto h = spawn_(d_);
    auto spec = detail::make_call<&detail::pool_process::pid>(d_);
    spec.target_actor = h.get()->id;
    ready_[member] = d_.submit(std::move(spec));
    return h;
  }

  void require_open(const char* what) const {
    if (closed_) throw ray::runtime_error(std::string(what) + ": the pool is closed");
    if (!disp_.runtime_alive())
      throw ray::runtime_error(std::string(what) + ": the pool's runtime has ended");
  }

  std::size_t chunk_size(std::size_t n, std::size_t requested) const {
    if (requested) return requested;
    const std::size_t parts = 4 * std::max<std::size_t>(1, disp_.members());
    return std::max<std::size_t>(1, (n + parts - 1) / parts);
  }

  /// Cuts the items into chunks and queues one call per chunk; `n` gets the item count.
  template <auto F, class Range>
  std::vector<detail::state_ptr> submit_map(Range&& items, std::size_t chunksize, std::size_t& n) {
    using traits = detail::function_traits<decltype(F)>;
    static_assert(traits::is_function && !traits::is_member,
                  "ray::pool::map<f>: f must be a free function or a static member function");
    static_assert(traits::arity == 1, "ray::pool::map<f>: f must take one parameter (an item)");
    using P = detail::map_param_t<F>;
    using S = detail::map_item_t<F>;
    using R = detail::map_result_t<F>;
    static_assert(!detail::is_mutable_ref_v<P>,
                  "ray::pool::map<f>: f's parameter must not be a non-const reference");
    static_assert(!detail::is_async<typename traits::return_type>::value,
                  "ray::pool::map<f>: f must not be a coroutine (use apply_async)");
    static_assert(!std::is_void_v<R> && is_encodable_v<R>,
                  "ray::pool::map<f>: f must return a value that can be sent between processes");
    static_assert(is_encodable_v<S>,
                  "ray::pool::map<f>: f's parameter cannot be sent between processes");
    static_assert(std::is_convertible_v<std::ranges::range_reference_t<Range>, S>,
                  "ray::pool::map<f>(items): an item does not convert to f's parameter");
    using chunk = detail::chunk_t<S>;
    constexpr auto method = &detail::pool_process::template run_chunk<F, chunk>;
    require_open("ray::pool::map");

    std::vector<detail::state_ptr> units;
    auto send = [&](auto&& c) {
      units.push_back(disp_.enqueue(detail::make_pool_call<method, F, detail::map_chunk_tag<chunk>>(
          d_, std::forward<decltype(c)>(c))));
    };
    using V = std::remove_cv_t<std::ranges::range_value_t<Range>>;
    if constexpr (std::ranges::contiguous_range<Range> && std::ranges::sized_range<Range> &&
                  std::is_same_v<V, S> && detail::is_raw_copyable_v<S>) {
      // In place: each chunk is copied once, into its message or block.
      std::span<const S> all(std::ranges::data(items), std::ranges::size(items));
      n = all.size();
      const std::size_t cs = chunk_size(n, chunksize);
      for (std::size_t i = 0; i < n; i += cs) send(all.subspan(i, std::min(cs, n - i)));
    } else {
      std::vector<S> all;
      if constexpr (std::ranges::sized_range<Range>) all.reserve(std::ranges::size(items));
      for (auto&& x : items) all.push_back(static_cast<S>(std::forward<decltype(x)>(x)));
      n = all.size();
      const std::size_t cs = chunk_size(n, chunksize);
      for (std::size_t i = 0; i < n; i += cs) {
        const std::size_t len = std::min(cs, n - i);
        if constexpr (detail::is_raw_copyable_v<S>) {
          send(std::span<const S>(all.data() + i, len));
        } else {
          send(std::vector<S>(
              std::make_move_iterator(all.begin() + static_cast<std::ptrdiff_t>(i)),
              std::make_move_iterator(all.begin() + static_cast<std::ptrdiff_t>(i + len))));
        }
      }
    }
    return units;
  }

  /// A map_async in progress: settles its result once every chunk has.
  struct gather {
    gather(pool& p, std::vector<detail::state_ptr> u, detail::state_ptr r, std::size_t n,
           void (*a)(gather&))
        : owner(p), units(std::move(u)), result(std::move(r)), items(n), assemble_fn(a) {}
    pool& owner;
    std::vector<detail::state_ptr> units;
    detail::state_ptr result;
    std::size_t items;
    void (*assemble_fn)(gather&);
    std::size_t pending = 0;
    std::list<gather>::iterator self;

    void start() {
      for (auto& u : units)
        if (!u->settled()) {
          ++pending;
          u->waiters.push_back({&gather::on_settled, this});
        }
      if (pending == 0) finish();
    }
    static void on_settled(void* ctx, detail::object_state&) {
      auto* g = static_cast<gather*>(ctx);
      if (--g->pending == 0) g->finish();
    }
    void finish() {
      assemble_fn(*this);
      owner.gathers_.erase(self);  // destroys *this
    }
    template <class R>
    static void assemble(gather& g) {
      try {
        std::vector<R> all;
        all.reserve(g.items);
        for (auto& u : g.units) {
          u->rethrow_if_failed();
          detail::append_chunk(all, u->value_bytes());
        }
        detail::store_value(g.owner.d_, *g.result, all);
        g.result->settle(detail::object_state::status::ready);
      } catch (...) {
        g.result->set_error(std::current_exception());
      }
    }
  };

  detail::driver& d_;
  spawn_fn spawn_;
  std::vector<detail::state_ptr> ready_;  // per process: its answer once built
  std::list<gather> gathers_;
  bool closed_ = false;
  detail::dispatcher disp_;
};

CORAY_END_NAMESPACE
// end <coray/pool.hpp>
// #include <coray/processes.hpp>: inlined above
// begin <coray/queue.hpp>
/// ray::queue<T>: a FIFO queue that every process of the runtime can use -- the driver, tasks
/// and actors -- with Ray's Queue semantics: put() waits while the queue is full, get() while
/// it is empty; with a timeout they throw ray::queue_full / ray::queue_empty instead.
///
///   void produce(ray::queue<int> q, int n) { for (int i = 0; i < n; ++i) q.put(i); }
///
///   ray::queue<int> q(100);                        // at most 100 items; 0: unbounded
///   ray::task<produce>.remote(q, 1000);
///   int first = q.get();                           // blocking, serving the runtime
///   int next = co_await q.get_async();             // in a coroutine
///   int maybe = q.get(std::chrono::milliseconds(10));   // or ray::queue_empty
///
/// Like Ray's, the queue is an actor holding a std::deque<T>; a put or get that must wait
/// suspends inside the actor, which meanwhile serves the calls that unblock it. Each
/// operation costs one actor call; put_nowait_batch / get_nowait_batch move many items in
/// one. A handle is a value: pass it to tasks and actors (alone or inside containers). The
/// queue's process starts at the handle's first use; create queues in the driver. It ends
/// when its last handle in any process goes.

#include <algorithm>
#include <chrono>
// #include <coray/actor.hpp>: inlined above
// begin <coray/detail/mp/queue_actor.hpp>
/// The actor behind a ray::queue<T>: a std::deque<T> whose blocking put and get are coroutine
/// methods, so a call that must wait (queue full, or empty) suspends and the actor goes on
/// serving others -- the put that makes room for it, the get that frees a slot.

#include <chrono>
// #include <coray/async.hpp>: inlined above
// #include <coray/detail/runtime/process.hpp>: inlined above
#include <coroutine>
#include <cstdint>
#include <deque>
#include <list>
#include <optional>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

template <class T>
class queue_actor {
 public:
  /// Calls that may wait at once (each blocked put or get holds one).
  static constexpr std::uint32_t max_waiting_calls = 1u << 20;

  explicit queue_actor(std::uint64_t maxsize) : maxsize_(maxsize) {}

  /// Puts `item`, waiting at most `timeout_ns` for room (< 0: as long as it takes; 0: not at
  /// all). False if there was no room in time.
  async<bool> put(T item, std::int64_t timeout_ns) {
    if (!full()) {
      push(std::move(item));
      co_return true;
    }
    if (timeout_ns == 0) co_return false;
    waiter w;
    w.item = std::move(item);
    co_await wait_in{putters_, w, timeout_ns};
    co_return w.done;
  }

  /// Takes the oldest item, waiting at most `timeout_ns` for one; nullopt if none came.
  async<std::optional<T>> get(std::int64_t timeout_ns) {
    if (!items_.empty()) co_return pop();
    if (timeout_ns == 0) co_return std::nullopt;
    waiter w;
    co_await wait_in{getters_, w, timeout_ns};
    if (!w.done) co_return std::nullopt;
    co_return std::move(w.item);
  }

  /// Puts all of `items` if there is room for all; else none and false.
  bool put_batch(std::vector<T> items) {
    if (maxsize_ && items_.size() + items.size() > maxsize_) return false;
    for (auto& x : items) push(std::move(x));
    return true;
  }

  /// Takes `n` items if there are that many; else none and nullopt.
  std::optional<std::vector<T>> get_batch(std::uint64_t n) {
    if (items_.size() < n) return std::nullopt;
    std::vector<T> out;
    out.reserve(static_cast<std::size_t>(n));
    for (std::uint64_t i = 0; i < n; ++i) out.push_back(pop());
    return out;
  }

  std::uint64_t size() const noexcept { return items_.size(); }

 private:
  struct waiter {
    std::coroutine_handle<> h;
    std::optional<T> item;  // a putter's item, or what a getter received
    bool done = false;      // the put went in, or the get got an item
    std::uint64_t timer = 0;
    typename std::list<waiter*>::iterator at;
    std::list<waiter*>* in = nullptr;
  };

  /// Suspends the calling method in `list` until served or `timeout_ns` passes.
  struct wait_in {
    std::list<waiter*>& list;
    waiter& w;
    std::int64_t timeout_ns;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) {
      process& p = *process::current();
      w.h = h;
      w.in = &list;
      w.at = list.insert(list.end(), &w);
      if (timeout_ns > 0)
        w.timer = p.add_timer(clock::now() + std::chrono::nanoseconds(timeout_ns),
                              &queue_actor::timed_out, &w);
      p.coroutine_suspended(+1);
    }
    void await_resume() const noexcept {}
  };

  static void wake(waiter& w) {
    process& p = *process::current();
    w.in->erase(w.at);
    if (w.timer) p.cancel_timer(w.timer);
    p.coroutine_suspended(-1);
    p.schedule(w.h);
  }
  static void timed_out(void* ctx) {
    auto& w = *static_cast<waiter*>(ctx);
    w.timer = 0;
    wake(w);
  }

  bool full() const noexcept { return maxsize_ && items_.size() >= maxsize_; }

  /// A new item goes to the oldest waiting getter, else to the back of the queue.
  void push(T&& item) {
    if (!getters_.empty()) {
      waiter& g = *getters_.front();
      g.item = std::move(item);
      g.done = true;
      wake(g);
    } else {
      items_.push_back(std::move(item));
    }
  }
  /// The oldest item; the oldest waiting putter's item takes the room it leaves.
  T pop() {
    T item = std::move(items_.front());
    items_.pop_front();
    if (!putters_.empty()) {
      waiter& w = *putters_.front();
      items_.push_back(std::move(*w.item));
      w.done = true;
      wake(w);
    }
    return item;
  }

  std::uint64_t maxsize_;
  std::deque<T> items_;
  std::list<waiter*> getters_, putters_;
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/mp/queue_actor.hpp>
// #include <coray/errors.hpp>: inlined above
// #include <coray/object_store.hpp>: inlined above
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE

/// A put found the queue full (at once, or after its timeout): Ray's queue.Full.
struct queue_full : error {
  using error::error;
};
/// A get found the queue empty (at once, or after its timeout): Ray's queue.Empty.
struct queue_empty : error {
  using error::error;
};

template <class T>
class queue {
  using actor_type = detail::queue_actor<T>;

 public:
  using timeout_type = std::optional<std::chrono::nanoseconds>;

  /// An unbounded queue.
  queue() noexcept = default;
  /// A queue of at most `maxsize` items (0: unbounded, as in Python).
  explicit queue(std::size_t maxsize) : maxsize_(maxsize) {}
  /// Copies are handles to the same queue.
  queue(const queue& o) : actor_((o.start(), o.actor_)), maxsize_(o.maxsize_) {}
  queue(queue&&) noexcept = default;
  queue& operator=(const queue& o) {
    o.start();
    actor_ = o.actor_;
    maxsize_ = o.maxsize_;
    return *this;
  }
  queue& operator=(queue&&) noexcept = default;

  /// Appends `item`, waiting while the queue is full; after `timeout`, throws queue_full.
  void put(T item, timeout_type timeout = std::nullopt) {
    if (!ray::get(put_call(std::move(item), wait_ns(timeout))).get()) throw full_error();
  }
  /// Appends `item` if there is room now; else throws queue_full.
  void put_nowait(T item) { put(std::move(item), std::chrono::nanoseconds(0)); }
  /// put() in a coroutine: `co_await q.put_async(item)`. The put is sent at once.
  async<void> put_async(T item, timeout_type timeout = std::nullopt) {
    return await_put(put_call(std::move(item), wait_ns(timeout)));
  }

  /// Takes the oldest item, waiting while the queue is empty; after `timeout`, throws
  /// queue_empty.
  T get(timeout_type timeout = std::nullopt) {
    std::optional<T> v = ray::get(get_call(wait_ns(timeout))).get();
    if (!v) throw empty_error();
    return std::move(*v);
  }
  /// Takes the oldest item if there is one now; else throws queue_empty.
  T get_nowait() { return get(std::chrono::nanoseconds(0)); }
  /// get() in a coroutine: `T v = co_await q.get_async()`. The get is sent at once.
  async<T> get_async(timeout_type timeout = std::nullopt) {
    return await_get(get_call(wait_ns(timeout)));
  }

  /// Appends every item if there is room for all now; else none, and throws queue_full.
  void put_nowait_batch(std::vector<T> items) {
    if (!ray::get(handle().template call<&actor_type::put_batch>(std::move(items))).get())
      throw full_error();
  }
  /// Takes `n` items if there are that many now; else none, and throws queue_empty.
  std::vector<T> get_nowait_batch(std::size_t n) {
    std::optional<std::vector<T>> v =
        ray::get(handle().template call<&actor_type::get_batch>(std::uint64_t{n})).get();
    if (!v) throw empty_error();
    return std::move(*v);
  }

  /// Items in the queue now (Ray's qsize()).
  std::size_t size() const { return ray::get(handle().template call<&actor_type::size>()).get(); }
  bool empty() const { return size() == 0; }
  bool full() const { return maxsize_ != 0 && size() >= maxsize_; }
  /// The bound given at construction; 0 for an unbounded queue.
  std::size_t maxsize() const noexcept { return maxsize_; }

  /// Ends the queue's process now (Ray's shutdown(force=True)); waiting calls fail with
  /// actor_died.
  void shutdown() {
    if (actor_.valid()) ray::kill(actor_);
  }

  /// Handles travel as call arguments: the receiving process reaches the same queue.
  template <class Archive>
  void serialize(Archive& ar) {
    if constexpr (!Archive::is_loading) start();
    std::uint64_t maxsize = maxsize_;
    ar(actor_, maxsize);
    maxsize_ = static_cast<std::size_t>(maxsize);
  }

 private:
  const actor<actor_type>& handle() const {
    start();
    return actor_;
  }
  void start() const {
    if (actor_.valid()) return;
    actor_ = ray::spawn<actor_type>(actor_options{.max_concurrency = actor_type::max_waiting_calls},
                                    std::uint64_t{maxsize_});
  }
  static std::int64_t wait_ns(timeout_type timeout) {
    return timeout ? std::max<std::int64_t>(0, timeout->count()) : -1;
  }

  object_ref<bool> put_call(T&& item, std::int64_t ns) {
    return handle().template call<&actor_type::put>(std::move(item), ns);
  }
  object_ref<std::optional<T>> get_call(std::int64_t ns) {
    return handle().template call<&actor_type::get>(ns);
  }

  queue_full full_error() const {
    return queue_full("ray::queue: full (maxsize " + std::to_string(maxsize_) + ")");
  }
  static queue_empty empty_error() { return queue_empty("ray::queue: empty"); }

  static async<void> await_put(object_ref<bool> r) {
    const bool put = co_await ray::get(r);  // (g++ 12 mishandles co_await inside `if (!...)`)
    if (!put) throw queue_full("ray::queue: full");
  }
  static async<T> await_get(object_ref<std::optional<T>> r) {
    std::optional<T> v = co_await ray::get(r);
    if (!v) throw empty_error();
    co_return std::move(*v);
  }

  mutable actor<actor_type> actor_;
  std::size_t maxsize_ = 0;
};

CORAY_END_NAMESPACE
// end <coray/queue.hpp>
// #include <coray/result_stream.hpp>: inlined above
// begin <coray/runtime.hpp>
/// ray::runtime: starts coray in this process -- the shared segment, a supervisor and the
/// worker pool -- and stops it all when destroyed. Construct it first thing in main():
/// with the spawn start method, worker processes re-run the program and become workers
/// inside this constructor, which then never returns in them.
///
///   int main(int argc, char** argv) {
///     ray::runtime rt(argc, argv, {.num_workers = 2});
///     return rt.run(amain());
///   }

#include <chrono>
// #include <coray/async.hpp>: inlined above
// #include <coray/detail/runtime/driver.hpp>: inlined above
// #include <coray/errors.hpp>: inlined above
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

CORAY_BEGIN_NAMESPACE

/// How worker processes are started (as in Python's multiprocessing).
enum class start_method {
  /// fork() from the supervisor, a small process made when the runtime starts: fast, and
  /// safe even when the driver has grown threads since.
  fork,
  /// posix_spawn() of /proc/self/exe: a fresh program image that becomes a worker in
  /// ray::runtime's constructor (or in ray::enter_worker_if_spawned()).
  spawn,
};

struct runtime_options {
  /// Worker processes; 0 means the usable cores (CPU affinity and cgroup quota).
  std::uint32_t num_workers = 0;
  /// Capacity of the object store; 0 means 30% of usable memory, as Ray does.
  std::size_t object_store_bytes = 0;
  /// Unset: the CORAY_START_METHOD environment variable ("fork" or "spawn"), else fork.
  std::optional<ray::start_method> start_method = std::nullopt;
  /// Values up to this size travel inside messages; larger ones go through the store.
  /// At most 120 KiB (what one mailbox message carries).
  std::size_t inline_threshold = 100 * 1024;
  /// How long an idle process spins before it sleeps on its futex.
  std::chrono::microseconds spin = std::chrono::microseconds(200);
  /// Calls queued on one worker beyond the one it runs; more waits in the driver.
  std::uint32_t max_tasks_in_flight_per_worker = 4;
  /// Actors that may be alive at once (each is a process with two 256 KiB mailboxes).
  std::uint32_t max_actors = 1024;
  /// When set, objects that do not fit in the store spill to an unnamed file in this
  /// directory (Ray's object spilling) instead of failing with object_store_full.
  std::string spill_directory = {};
};

/// Becomes a worker if this process was spawned as one; returns at once otherwise. The
/// runtime's constructor calls it; call it yourself before anything else in main() if main
/// does work before constructing the runtime that workers must not repeat.
inline void enter_worker_if_spawned() { detail::enter_worker_if_spawned(); }

class runtime {
 public:
  explicit runtime(runtime_options opts = {}) : runtime(0, nullptr, opts) {}

  runtime(int argc, char** argv, runtime_options opts = {}) {
    detail::enter_worker_if_spawned();
    if (detail::process::current())
      throw ray::runtime_error("coray: a runtime is already running in this process");
    detail::driver_config cfg;
    cfg.num_workers = opts.num_workers ? opts.num_workers : detail::usable_cores();
    cfg.max_actors = opts.max_actors;
    cfg.object_store_bytes = opts.object_store_bytes
                                 ? opts.object_store_bytes
                                 : static_cast<std::size_t>(detail::usable_memory_bytes() * 3 / 10);
    cfg.method = resolve(opts.start_method) == start_method::spawn ? detail::start_method_id::spawn
                                                                   : detail::start_method_id::fork;
    // A value inline in a reply must fit one mailbox message (half a ring, 120 KiB).
    cfg.inline_threshold = std::min<std::size_t>(opts.inline_threshold, 120 * 1024);
    cfg.spin_us = static_cast<std::uint32_t>(opts.spin.count());
    cfg.max_tasks_in_flight_per_worker =
        std::max<std::uint32_t>(1, opts.max_tasks_in_flight_per_worker);
    cfg.argv = program_arguments(argc, argv);
    cfg.spill_directory = opts.spill_directory;
    driver_ = std::make_unique<detail::driver>(std::move(cfg));
  }

  runtime(const runtime&) = delete;
  runtime& operator=(const runtime&) = delete;
  /// Ends every worker and frees the segment. Refs still held afterwards are inert.
  ~runtime() = default;

  /// Runs the coroutine `main` to completion on this thread, serving the runtime meanwhile;
  /// returns its result or rethrows its exception.
  template <class T>
  T run(async<T> main) {
    auto h = main.handle();
    driver_->schedule(h);
    driver_->run_until([&] { return h.done(); });
    return main.take();
  }

  std::uint32_t num_workers() const noexcept { return driver_->num_workers(); }
  /// Process ids of the task workers, in slot order (0 for one being started).
  std::vector<int> worker_pids() const { return driver_->worker_pids(); }
  /// Bytes the object store can still hand out, and its capacity.
  std::size_t object_store_free_bytes() const noexcept { return driver_->seg.free_bytes(); }
  std::size_t object_store_capacity() const noexcept { return driver_->seg.capacity(); }
  /// How many objects have been spilled to disk (with runtime_options::spill_directory).
  std::uint64_t objects_spilled() const noexcept { return driver_->spilled_objects(); }

 private:
  static start_method resolve(std::optional<start_method> m) {
    if (m) return *m;
    if (const char* e = std::getenv("CORAY_START_METHOD")) {
      std::string_view v(e);
      if (v == "spawn") return start_method::spawn;
      if (v == "fork" || v.empty()) return start_method::fork;
      throw ray::runtime_error("coray: CORAY_START_METHOD must be fork or spawn, not " +
                               std::string(v));
    }
    return start_method::fork;
  }
  static std::vector<std::string> program_arguments(int argc, char** argv) {
    std::vector<std::string> args;
    if (argv) {
      for (int i = 0; i < argc; ++i) args.emplace_back(argv[i]);
    } else {
      std::ifstream f("/proc/self/cmdline", std::ios::binary);
      std::string a;
      while (std::getline(f, a, '\0')) args.push_back(a);
    }
    if (args.empty()) args.emplace_back("coray-worker");
    return args;
  }
  std::unique_ptr<detail::driver> driver_;
};

namespace detail {
inline std::unique_ptr<runtime>& global_runtime() {
  static std::unique_ptr<runtime> rt;
  return rt;
}
}  // namespace detail

/// Starts a process-wide runtime (Ray's ray.init()); ray::shutdown() ends it.
inline void init(runtime_options opts = {}) {
  if (detail::global_runtime()) throw ray::runtime_error("ray::init: already initialised");
  detail::global_runtime() = std::make_unique<runtime>(opts);
}
inline void shutdown() { detail::global_runtime().reset(); }
inline bool is_initialized() noexcept { return detail::process::current() != nullptr; }

/// Runs a coroutine to completion from plain code, serving the runtime meanwhile.
template <class T>
T sync_wait(async<T> a) {
  auto h = a.handle();
  auto& p = detail::process::require();
  p.schedule(h);
  p.run_until([&] { return h.done(); });
  return a.take();
}

CORAY_END_NAMESPACE
// end <coray/runtime.hpp>
// begin <coray/shared_value.hpp>
/// ray::shared_value<T>: one value of a trivially copyable T in the runtime's shared memory,
/// read and written in place by every process that holds a handle -- multiprocessing.Value,
/// with atomic operations instead of a lock where T allows them.
///
///   int bump(ray::shared_value<int> hits, int n) {
///     for (int i = 0; i < n; ++i) hits.fetch_add(1);   // atomic across processes
///     return n;
///   }
///   ray::shared_value<int> hits(0);
///   ray::get(ray::task<bump>.remote(hits, 1000)).get();
///   int total = hits.load();                            // 1000
///
/// A handle is a value: copy it, pass it to tasks and actors (alone or inside containers),
/// create it in any process. The value lives while a handle to it exists in any process.

#include <atomic>
// #include <coray/detail/mp/shared_block.hpp>: inlined above
// #include <coray/detail/shm/robust_mutex.hpp>: inlined above
#include <cstring>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

CORAY_BEGIN_NAMESPACE

template <class T>
class shared_value {
  static_assert(
      std::is_trivially_copyable_v<T> && !std::is_const_v<T> && !std::is_volatile_v<T>,
      "ray::shared_value<T>: T must be a trivially copyable, non-const type (a number, an "
      "enum, or a struct or array of them), as multiprocessing.Value takes ctypes");

 public:
  /// True when load/store/fetch_* are single atomic instructions; otherwise each operation
  /// takes a robust process-shared lock kept next to the value.
  static constexpr bool is_always_lock_free =
      std::atomic_ref<T>::is_always_lock_free && std::atomic_ref<T>::required_alignment <= 16;

  /// A new shared T{}. Its memory is taken at first use (any operation, a copy, or passing
  /// it to a call), so that decoding a handle never allocates one to throw away.
  shared_value() noexcept = default;
  /// A new shared value holding `initial`. Any process of a runtime. Throws object_store_full.
  explicit shared_value(const T& initial) { materialize(initial); }
  /// Copies share the value.
  shared_value(const shared_value& o) : block_((o.c(), o.block_)) {}
  shared_value(shared_value&&) noexcept = default;
  shared_value& operator=(const shared_value& o) {
    o.c();
    block_ = o.block_;
    return *this;
  }
  shared_value& operator=(shared_value&&) noexcept = default;

  T load(std::memory_order order = std::memory_order_seq_cst) const {
    if constexpr (is_always_lock_free) {
      return atomic(order).load(order);
    } else {
      guard g(*c());
      return c()->value;
    }
  }
  void store(T v, std::memory_order order = std::memory_order_seq_cst) {
    if constexpr (is_always_lock_free) {
      atomic(order).store(v, order);
    } else {
      guard g(*c());
      c()->value = v;
    }
  }
  /// Replaces the value; returns the previous one.
  T exchange(T v, std::memory_order order = std::memory_order_seq_cst) {
    if constexpr (is_always_lock_free) {
      return atomic(order).exchange(v, order);
    } else {
      guard g(*c());
      return std::exchange(c()->value, v);
    }
  }
  /// If the value equals `expected` (bytewise), replaces it by `desired` and returns true;
  /// otherwise loads it into `expected` and returns false.
  bool compare_exchange_strong(T& expected, T desired,
                               std::memory_order order = std::memory_order_seq_cst) {
    if constexpr (is_always_lock_free) {
      return atomic(order).compare_exchange_strong(expected, desired, order);
    } else {
      guard g(*c());
      if (std::memcmp(&c()->value, &expected, sizeof(T)) == 0) {
        c()->value = desired;
        return true;
      }
      expected = c()->value;
      return false;
    }
  }
  bool compare_exchange_weak(T& expected, T desired,
                             std::memory_order order = std::memory_order_seq_cst) {
    if constexpr (is_always_lock_free)
      return atomic(order).compare_exchange_weak(expected, desired, order);
    else
      return compare_exchange_strong(expected, desired, order);
  }
  /// Atomically replaces the value by f(value) and returns the new value. `f` may run more
  /// than once (a compare-exchange loop), so it should only compute.
  template <class F>
  T update(F&& f) {
    if constexpr (is_always_lock_free) {
      T old = load(std::memory_order_relaxed);
      T next = f(old);
      while (!compare_exchange_weak(old, next)) next = f(old);
      return next;
    } else {
      guard g(*c());
      c()->value = f(c()->value);
      return c()->value;
    }
  }

  /// Atomic arithmetic; each returns the previous value.
  T fetch_add(T d, std::memory_order order = std::memory_order_seq_cst) requires(
      std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
    return atomic(order).fetch_add(d, order);
  }
  T fetch_sub(T d, std::memory_order order = std::memory_order_seq_cst) requires(
      std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
    return atomic(order).fetch_sub(d, order);
  }
  T fetch_and(T d, std::memory_order order = std::memory_order_seq_cst) requires(
      std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    return atomic(order).fetch_and(d, order);
  }
  T fetch_or(T d, std::memory_order order = std::memory_order_seq_cst) requires(
      std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    return atomic(order).fetch_or(d, order);
  }
  T fetch_xor(T d, std::memory_order order = std::memory_order_seq_cst) requires(
      std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    return atomic(order).fetch_xor(d, order);
  }

  /// Handles travel as call arguments: the receiving process reaches the same value.
  template <class Archive>
  void serialize(Archive& ar) {
    if constexpr (!Archive::is_loading) c();
    ar(block_);
    if constexpr (Archive::is_loading) {
      if (block_ && block_.size() != sizeof(cell))
        throw codec_error("coray: a shared_value handle of another type");
    }
  }

 private:
  struct lock_free_cell {
    T value;
  };
  struct locked_cell {
    detail::robust_mutex lock;
    T value;
  };
  using cell = std::conditional_t<is_always_lock_free, lock_free_cell, locked_cell>;
  struct guard {
    explicit guard(cell& c) : c_(c) { c_.lock.lock(); }
    ~guard() { c_.lock.unlock(); }
    cell& c_;
  };

  cell* c() const {
    if (!block_) materialize(T{});
    return std::launder(reinterpret_cast<cell*>(block_.data()));
  }
  void materialize(const T& initial) const {
    block_ = detail::shared_block::allocate(sizeof(cell));
    auto* c = new (block_.data()) cell{};
    c->value = initial;
  }
  std::atomic_ref<T> atomic(std::memory_order) const { return std::atomic_ref<T>(c()->value); }

  mutable detail::shared_block block_;
};

CORAY_END_NAMESPACE
// end <coray/shared_value.hpp>
// #include <coray/task.hpp>: inlined above
// #include <coray/version.hpp>: inlined above
// end <coray/coray.hpp>
