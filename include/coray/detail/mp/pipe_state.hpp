#pragma once
/// ray::pipe's state in the segment: two byte rings (one per direction; a one-way pipe uses
/// one), the owner of each end, and how a waiter on a ring sleeps and learns that its peer
/// died.
///
/// A ring carries frames: a 16-byte header (the payload's length) and the encoded value,
/// padded to 16 bytes, so every header and payload starts 16-byte aligned. `head` counts the
/// bytes written and published, `tail` those read and freed; each grows for ever and is read
/// modulo the capacity. A frame that fits the ring is published at once (one store of head);
/// a longer one streams through it, piece by piece as the reader frees room, as an OS pipe
/// does. A robust lock per side (writers, readers) keeps whole frames apart when several
/// processes use one end; a process that dies holding one in the middle of a frame leaves the
/// ring broken (`broken`): every later use of that direction throws ray::peer_died.
///
/// Owners. An end is owned by the process that last sent, received or polled on it (at first,
/// the process that made the pipe); `owner[e]` holds that process's identity, its pid and the
/// kernel's start time for it, so that a reused pid is not mistaken for it. A waiter on end e
/// that finds no data (or no room) looks, between its sleeps, whether the owner of the other
/// end still runs (/proc/<pid>/stat: present, not a zombie, the same start time); if not, and
/// still nothing came, it throws ray::peer_died. What the dead process sent before it died is
/// still received first. close() marks an end as closed, which reads the same to its peer.

#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <coray/detail/mp/shared_wait.hpp>
#include <coray/detail/shm/futex.hpp>
#include <coray/detail/shm/robust_mutex.hpp>
#include <coray/errors.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// A process as an end's owner: pid (22 bits, Linux's largest pid_max) and its start time
/// in clock ticks since boot above them. 0: no one; closed_owner: closed by its owner.
inline constexpr std::uint64_t closed_owner = ~std::uint64_t{0};
inline constexpr int owner_pid_bits = 22;

/// The state letter and start time of process `pid` from /proc; false if there is none.
inline bool read_proc_stat(int pid, char& state, std::uint64_t& start) noexcept {
  char path[48];
  std::snprintf(path, sizeof path, "/proc/%d/stat", pid);
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[1024];
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  const char* p = std::strrchr(buf, ')');  // the command name may hold spaces and parentheses
  if (p == nullptr || p[1] != ' ') return false;
  p += 2;
  state = *p;
  for (int field = 3; field < 22; ++field) {  // starttime is field 22; the state is field 3
    p = std::strchr(p, ' ');
    if (p == nullptr) return false;
    ++p;
  }
  start = std::strtoull(p, nullptr, 10);
  return true;
}

inline std::uint64_t make_owner_id(int pid, std::uint64_t start) noexcept {
  return (start << owner_pid_bits) | static_cast<std::uint64_t>(pid);
}

/// This process as an owner, read once per process (a forked child reads its own).
inline std::uint64_t my_owner_id() noexcept {
  static std::atomic<std::uint64_t> id{0};
  static const bool reset_on_fork = [] {
    pthread_atfork(nullptr, nullptr, [] { id.store(0, std::memory_order_relaxed); });
    return true;
  }();
  (void)reset_on_fork;
  std::uint64_t v = id.load(std::memory_order_relaxed);
  if (v != 0) return v;
  const int pid = static_cast<int>(::getpid());
  char state = 0;
  std::uint64_t start = 0;
  read_proc_stat(pid, state, start);  // without /proc, the pid alone
  v = make_owner_id(pid, start);
  id.store(v, std::memory_order_relaxed);
  return v;
}

/// Whether the owner `id` is gone: it closed its end, or its process no longer runs.
inline bool owner_gone(std::uint64_t id) noexcept {
  if (id == 0) return false;  // no one yet: nothing to tell
  if (id == closed_owner) return true;
  if (id == my_owner_id()) return false;
  const int pid = static_cast<int>(id & ((std::uint64_t{1} << owner_pid_bits) - 1));
  char state = 0;
  std::uint64_t start = 0;
  if (!read_proc_stat(pid, state, start)) return true;
  if (state == 'Z' || state == 'X' || state == 'x') return true;  // killed, not yet reaped
  return make_owner_id(pid, start) != id;                         // its pid was reused
}

/// One direction of a pipe.
struct pipe_ring {
  static constexpr std::size_t header_bytes = 16;
  static std::uint64_t padded(std::uint64_t n) noexcept { return (n + 15) & ~std::uint64_t{15}; }

  // What the writer and the reader each change on every frame lies 64 bytes or more apart
  // from the other's, so that neither side's lock or counter bounces the other's cache line.
  // (Padding, not alignas: a block of the segment is 16-byte aligned.)
  std::uint64_t capacity = 0;            // bytes, a multiple of 16; 0 for an unused direction
  std::uint64_t data_offset = 0;         // of the bytes, from the pipe_state
  std::atomic<std::uint32_t> broken{0};  // a process died in the middle of a frame
  std::byte pad0[64];
  robust_mutex writers;             // held while one frame is written
  std::uint32_t writer_deaths = 0;  // writers.owner_deaths() when last taken
  bool writing = false;             // under writers: a frame is partly written
  std::byte pad1[64];
  std::atomic<std::uint64_t> head{0};
  std::atomic<std::uint32_t> data_word{0};  // bumped when head moves; sleepers_bit
  std::byte pad2[64];
  robust_mutex readers;             // held while one frame is read
  std::uint32_t reader_deaths = 0;  // readers.owner_deaths() when last taken
  bool reading = false;             // under readers: a frame is partly read
  std::byte pad3[64];
  std::atomic<std::uint64_t> tail{0};
  std::atomic<std::uint32_t> room_word{0};  // bumped when tail moves; sleepers_bit
  std::byte pad4[64];

  std::uint64_t available() const noexcept {
    return head.load(std::memory_order_acquire) - tail.load(std::memory_order_relaxed);
  }
  std::uint64_t room() const noexcept {
    return capacity - (head.load(std::memory_order_relaxed) - tail.load(std::memory_order_acquire));
  }

  /// Moves head or tail by `n` and wakes whoever sleeps on the other side's word.
  static void advance(std::atomic<std::uint64_t>& counter, std::atomic<std::uint32_t>& word,
                      std::uint64_t n) noexcept {
    counter.fetch_add(n, std::memory_order_release);  // one side only writes it
    std::atomic_thread_fence(std::memory_order_seq_cst);
    std::uint32_t v = word.load(std::memory_order_relaxed);
    if ((v & sleepers_bit) == 0) return;
    while (!word.compare_exchange_weak(v, (v + 1) & ~sleepers_bit, std::memory_order_acq_rel,
                                       std::memory_order_relaxed)) {
    }
    futex_wake_all(&word);
  }
  void publish(std::uint64_t n) noexcept { advance(head, data_word, n); }
  void free_bytes(std::uint64_t n) noexcept { advance(tail, room_word, n); }
};

/// Sleeps on `word` until `until`, unless `ready()` holds: the sleepers-bit protocol of
/// pipe_ring::advance (set the bit, fence, look again, sleep).
template <class Ready>
void sleep_on_ring(std::atomic<std::uint32_t>& word, Ready& ready, clock::time_point until) {
  std::uint32_t v = word.load(std::memory_order_acquire);
  if (ready()) return;
  if ((v & sleepers_bit) == 0) {
    if (!word.compare_exchange_strong(v, v | sleepers_bit, std::memory_order_acq_rel)) return;
    v |= sleepers_bit;
  }
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (ready()) return;
  futex_wait_until(word, v, until);
}

struct pipe_state {
  static_assert(alignof(pipe_ring) <= 16, "a block of the segment is 16-byte aligned");
  static constexpr std::uint32_t magic_value = 0x70697065;  // "pipe"
  static std::size_t header_size() noexcept { return (sizeof(pipe_state) + 63) & ~std::size_t{63}; }
  static std::size_t bytes(std::uint64_t capacity, bool duplex) noexcept {
    return header_size() + (duplex ? 2 : 1) * capacity;
  }

  pipe_state(std::uint64_t capacity, bool duplex_, std::uint64_t owner_id) : duplex(duplex_) {
    // ring[e] is written through end e. A one-way pipe (Python's Pipe(False)) sends through
    // end 1 only, to end 0.
    std::uint64_t at = header_size();
    for (int e = duplex ? 0 : 1; e < 2; ++e) {
      ring[e].capacity = capacity;
      ring[e].data_offset = at;
      at += capacity;
    }
    owner[0].store(owner_id, std::memory_order_relaxed);
    owner[1].store(owner_id, std::memory_order_relaxed);
  }

  const std::uint32_t magic = magic_value;
  const bool duplex;
  std::uint64_t total_bytes = 0;
  std::atomic<std::uint64_t> owner[2];
  pipe_ring ring[2];

  std::byte* data(const pipe_ring& r) noexcept {
    return reinterpret_cast<std::byte*>(this) + r.data_offset;
  }
  /// Copies `n` bytes into ring `r` at stream position `pos`, wrapping.
  void copy_in(pipe_ring& r, std::uint64_t pos, const std::byte* src, std::uint64_t n) noexcept {
    const std::uint64_t at = pos % r.capacity;
    const std::uint64_t first = std::min(n, r.capacity - at);
    std::memcpy(data(r) + at, src, first);
    if (n > first) std::memcpy(data(r), src + first, n - first);
  }
  void copy_out(pipe_ring& r, std::uint64_t pos, std::byte* dst, std::uint64_t n) noexcept {
    const std::uint64_t at = pos % r.capacity;
    const std::uint64_t first = std::min(n, r.capacity - at);
    std::memcpy(dst, data(r) + at, first);
    if (n > first) std::memcpy(dst + first, data(r), n - first);
  }
};

/// Waits until `ready()` or `deadline`; returns ready(). Serves the runtime meanwhile on a
/// loop thread: for its spin window first (a reply usually comes within it, with no sleep
/// on either side), then in 1 ms slices of sleep on `word`, which the other side's change
/// wakes at once. Between slices it asks `peer_gone()`; if so and still not ready, throws
/// peer_died with `what`.
template <class Ready, class Gone>
bool wait_ring(std::atomic<std::uint32_t>& word, Ready&& ready, Gone&& peer_gone,
               clock::time_point deadline, const char* what) {
  if (ready()) return true;
  process* p = process::here();
  bool first = true;
  for (;;) {
    auto now = clock::now();
    if (now >= deadline) return ready();
    if (p != nullptr) {
      const auto spin = first ? std::chrono::microseconds(p->hdr->spin_us) : clock::duration{};
      if (p->run_until(ready, std::min(deadline, now + spin))) return true;
    } else if (first) {
      backoff bo;
      while (!bo.pause(std::chrono::microseconds(100)))
        if (ready()) return true;
    }
    first = false;
    if (peer_gone()) {
      if (ready()) return true;
      throw peer_died(what);
    }
    now = clock::now();
    if (now >= deadline) return ready();
    sleep_on_ring(word, ready, std::min(deadline, now + wait_slice));
    if (ready()) return true;
  }
}

}  // namespace detail
CORAY_END_NAMESPACE
