#pragma once
/// ray::pipe<T>(): two connected ends, ray::connection<T>, that any two processes of the
/// runtime use to send values to each other -- multiprocessing.Pipe.
///
///   void echo(ray::connection<std::string> c) {
///     for (std::string s = c.recv(); s != "bye"; s = c.recv()) c.send("echo " + s);
///   }
///   auto [here, there] = ray::pipe<std::string>();
///   auto done = ray::task<echo>.remote(there);
///   here.send("hi");
///   std::string reply = here.recv();                  // "echo hi"
///   if (here.poll(std::chrono::milliseconds(5))) ...  // whether a recv would not wait
///
/// A pipe is duplex by default: each end sends to the other. `ray::pipe<T>(false)` makes a
/// one-way pipe, as Python's Pipe(False): the first end only receives, the second only sends.
/// Values travel encoded with coray's codec (any type ray::encode takes, owning its data;
/// refs, actor handles, locks and shared values travel in calls, put objects and results,
/// where the runtime counts them, not through a pipe).
///
/// The ends are handles: copy them, pass them to tasks, actors and processes; the pipe lives
/// while a handle to it exists in any process. Its buffers are a block of the runtime's
/// segment, `buffer_bytes` per direction (64 KiB by default, as a Linux pipe). A value too
/// long for the buffer streams through it: its send returns once the receiver has taken all
/// but the last buffer-full, as an OS pipe's write does. A send waits while the buffer is
/// full; a recv while it is empty; a wait on a runtime loop's thread keeps serving the runtime.
///
/// Peer death. An end is owned by the process that last sent, received or polled on it (at
/// first, the process that made the pipe). A recv or poll with nothing to read, or a send
/// with no room, whose other end's owner has died (killed, crashed, or simply exited) ends
/// with ray::peer_died instead of waiting for ever; what that process sent before it died is
/// received first. close() makes the peer's waits end the same way. A process that dies in
/// the middle of a long value leaves that direction broken: its later uses throw peer_died.
/// As with Python's pipes, two processes using one end at the same time is allowed (whole
/// values never interleave) but which of them receives what is not defined.

#include <chrono>
#include <coray/codec.hpp>
#include <coray/detail/mp/pipe_state.hpp>
#include <coray/detail/mp/shared_block.hpp>
#include <coray/errors.hpp>
#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE

template <class T>
class connection;

/// The default bytes of a pipe's buffer, per direction.
inline constexpr std::size_t pipe_buffer_bytes = 64 * 1024;

template <class T>
std::pair<connection<T>, connection<T>> pipe(bool duplex = true,
                                             std::size_t buffer_bytes = pipe_buffer_bytes);

/// One end of a ray::pipe<T>: multiprocessing.connection.Connection.
template <class T>
class connection {
  static_assert(is_encodable_v<T> && is_decodable_v<T>,
                "ray::connection<T>: T must be encodable and decodable by coray's codec");

 public:
  /// An empty end, what decoding fills; using it is a usage_error.
  connection() noexcept = default;

  /// Sends `value` to the other end; waits while the buffer is full. Throws peer_died if the
  /// other end's owner died (or closed it) while there was no room, usage_error on a
  /// receive-only end.
  void send(const T& value) {
    detail::pipe_state& st = use(true);
    detail::pipe_ring& r = st.ring[end_];
    const std::uint64_t n = ray::encoded_size(value);
    const std::uint64_t frame = detail::pipe_ring::header_bytes + detail::pipe_ring::padded(n);
    lock_side(r.writers, r.writer_deaths, r.writing, r);
    struct unlock {
      detail::pipe_ring& r;
      ~unlock() { r.writers.unlock(); }
    } hold{r};
    if (frame <= r.capacity) {  // published whole, at once
      wait_room(st, r, frame);
      const std::uint64_t pos = r.head.load(std::memory_order_relaxed);
      write_header(st, r, pos, n);
      const std::uint64_t at = (pos + detail::pipe_ring::header_bytes) % r.capacity;
      if (at + n <= r.capacity) {
        ray::encode_to(std::span<std::byte>(st.data(r) + at, n), value);
      } else {
        const std::vector<std::byte> bytes = ray::encode(value);
        st.copy_in(r, pos + detail::pipe_ring::header_bytes, bytes.data(), n);
      }
      r.publish(frame);
      return;
    }
    // Longer than the buffer: streams through it as the reader frees room.
    std::vector<std::byte> bytes = ray::encode(value);
    bytes.resize(detail::pipe_ring::padded(n));
    wait_room(st, r, detail::pipe_ring::header_bytes);
    write_header(st, r, r.head.load(std::memory_order_relaxed), n);
    r.writing = true;
    r.publish(detail::pipe_ring::header_bytes);
    try {
      for (std::uint64_t done = 0; done < bytes.size();) {
        wait_room(st, r, 1);
        const std::uint64_t k = std::min<std::uint64_t>(r.room(), bytes.size() - done);
        st.copy_in(r, r.head.load(std::memory_order_relaxed), bytes.data() + done, k);
        r.publish(k);
        done += k;
      }
    } catch (...) {  // the reader went in the middle of the value: the rest can never follow
      r.broken.store(1, std::memory_order_release);
      r.writing = false;
      throw;
    }
    r.writing = false;
  }

  /// Receives the next value from the other end, waiting for one. Throws peer_died if the
  /// other end's owner died (or closed it) with nothing left to receive, usage_error on a
  /// send-only end, codec_error if the bytes are not a T.
  T recv() {
    detail::pipe_state& st = use(false);
    detail::pipe_ring& r = st.ring[1 - end_];
    lock_side(r.readers, r.reader_deaths, r.reading, r);
    struct unlock {
      detail::pipe_ring& r;
      ~unlock() { r.readers.unlock(); }
    } hold{r};
    wait_data(st, r, detail::pipe_ring::header_bytes, detail::clock::time_point::max());
    const std::uint64_t pos = r.tail.load(std::memory_order_relaxed);
    std::uint64_t n = 0;
    st.copy_out(r, pos, reinterpret_cast<std::byte*>(&n), sizeof n);
    const std::uint64_t padded = detail::pipe_ring::padded(n);
    const std::uint64_t frame = detail::pipe_ring::header_bytes + padded;
    if (frame <= r.capacity) {  // published whole: all here
      const std::uint64_t at = (pos + detail::pipe_ring::header_bytes) % r.capacity;
      struct consume {
        detail::pipe_ring& r;
        std::uint64_t frame;
        ~consume() { r.free_bytes(frame); }  // also when the bytes do not decode
      } done{r, frame};
      if (at + n <= r.capacity)
        return ray::decode<T>(std::span<const std::byte>(st.data(r) + at, n));
      std::vector<std::byte> bytes(n);
      st.copy_out(r, pos + detail::pipe_ring::header_bytes, bytes.data(), n);
      return ray::decode<T>(bytes);
    }
    r.reading = true;
    r.free_bytes(detail::pipe_ring::header_bytes);
    std::vector<std::byte> bytes(padded);
    for (std::uint64_t done = 0; done < padded;) {
      try {
        wait_data(st, r, 1, detail::clock::time_point::max());
      } catch (const peer_died&) {  // the writer died in the middle of the value
        r.broken.store(1, std::memory_order_release);
        r.reading = false;
        throw;
      }
      const std::uint64_t k = std::min<std::uint64_t>(r.available(), padded - done);
      st.copy_out(r, r.tail.load(std::memory_order_relaxed), bytes.data() + done, k);
      r.free_bytes(k);
      done += k;
    }
    r.reading = false;
    bytes.resize(n);
    return ray::decode<T>(bytes);
  }

  /// Whether a recv would not wait now: a value is there, or the other end's owner is gone
  /// (then recv throws peer_died). Python's poll().
  bool poll() { return poll_until(detail::clock::now()); }
  /// As poll(), waiting at most `timeout` for a value.
  template <class Rep, class Period>
  bool poll(const std::chrono::duration<Rep, Period>& timeout) {
    return poll_until(detail::deadline_in(timeout));
  }

  /// Lets go of this handle. If this process owns the end, the other end's waits (and later
  /// ones, with nothing left to receive) end with peer_died, until a process uses the end
  /// again through another handle. Later use of this handle is a usage_error.
  void close() {
    if (!block_) return;
    auto& owner = state().owner[end_];
    std::uint64_t mine = detail::my_owner_id();
    owner.compare_exchange_strong(mine, detail::closed_owner, std::memory_order_acq_rel);
    wake_peer(state());
    block_ = detail::shared_block();
  }

  /// False for an empty or closed handle.
  explicit operator bool() const noexcept { return static_cast<bool>(block_); }
  bool readable() const noexcept { return block_ && (state().duplex || end_ == 0); }
  bool writable() const noexcept { return block_ && (state().duplex || end_ == 1); }

  /// Ends travel as call arguments: the receiving process reaches the same pipe.
  template <class Archive>
  void serialize(Archive& ar) {
    ar(block_, end_);
    if constexpr (Archive::is_loading) {
      if (!block_) return;
      if (end_ > 1 || block_.size() < sizeof(detail::pipe_state) ||
          state().magic != detail::pipe_state::magic_value || state().total_bytes != block_.size())
        throw codec_error("coray: a ray::connection handle of something else");
    }
  }

 private:
  friend std::pair<connection<T>, connection<T>> pipe<T>(bool, std::size_t);
  connection(detail::shared_block b, std::uint8_t end) : block_(std::move(b)), end_(end) {}

  detail::pipe_state& state() const noexcept {
    return *std::launder(reinterpret_cast<detail::pipe_state*>(block_.data()));
  }

  /// The state, for a send (`sending`) or a receive; this process becomes the end's owner.
  detail::pipe_state& use(bool sending) {
    if (!block_) throw usage_error("coray: a ray::connection that is empty or closed");
    detail::pipe_state& st = state();
    if (!st.duplex && (end_ == 1) != sending)
      throw usage_error(sending ? "coray: send on the receiving end of a one-way ray::pipe"
                                : "coray: recv on the sending end of a one-way ray::pipe");
    const std::uint64_t me = detail::my_owner_id();
    if (st.owner[end_].load(std::memory_order_relaxed) != me)
      st.owner[end_].store(me, std::memory_order_relaxed);
    return st;
  }

  bool peer_gone(detail::pipe_state& st) const noexcept {
    return detail::owner_gone(st.owner[1 - end_].load(std::memory_order_relaxed));
  }
  static void check_broken(const detail::pipe_ring& r) {
    if (r.broken.load(std::memory_order_acquire) != 0)
      throw peer_died("coray: a process died in the middle of a value on this ray::pipe");
  }

  /// Takes one side's lock of `r`, waiting (and serving) while another process holds it. A
  /// process that died holding it in the middle of a frame broke the ring.
  static void lock_side(detail::robust_mutex& m, std::uint32_t& deaths_seen, bool& partial,
                        detail::pipe_ring& r) {
    detail::wait_serving([&] { return m.try_lock(); },
                         [&](detail::clock::time_point until) { return m.try_lock_until(until); },
                         detail::clock::time_point::max());
    if (m.owner_deaths() != deaths_seen) {
      deaths_seen = m.owner_deaths();
      if (partial) r.broken.store(1, std::memory_order_release);
      partial = false;
    }
    try {
      check_broken(r);
    } catch (...) {
      m.unlock();
      throw;
    }
  }

  void wait_room(detail::pipe_state& st, detail::pipe_ring& r, std::uint64_t bytes) {
    detail::wait_ring(
        r.room_word, [&] { return r.room() >= bytes; }, [&] { return peer_gone(st); },
        detail::clock::time_point::max(),
        "coray: the other end of a ray::pipe is gone (its process died, or it was closed) "
        "and its buffer is full");
  }
  bool wait_data(detail::pipe_state& st, detail::pipe_ring& r, std::uint64_t bytes,
                 detail::clock::time_point deadline) {
    return detail::wait_ring(
        r.data_word, [&] { return r.available() >= bytes; }, [&] { return peer_gone(st); },
        deadline,
        "coray: the other end of a ray::pipe is gone (its process died, or it was closed) "
        "with nothing left to receive");
  }

  static void write_header(detail::pipe_state& st, detail::pipe_ring& r, std::uint64_t pos,
                           std::uint64_t n) noexcept {
    std::byte header[detail::pipe_ring::header_bytes] = {};
    std::memcpy(header, &n, sizeof n);
    st.copy_in(r, pos, header, sizeof header);
  }

  bool poll_until(detail::clock::time_point deadline) {
    detail::pipe_state& st = use(false);
    detail::pipe_ring& r = st.ring[1 - end_];
    if (r.broken.load(std::memory_order_acquire) != 0) return true;
    try {
      return wait_data(st, r, detail::pipe_ring::header_bytes, deadline) || peer_gone(st);
    } catch (const peer_died&) {
      return true;  // recv would not wait: it throws
    }
  }

  /// Wakes the other end's waiters, so that they look at this end's owner again.
  void wake_peer(detail::pipe_state& st) const noexcept {
    for (auto* w : {&st.ring[end_].data_word, &st.ring[1 - end_].room_word}) {
      w->fetch_add(1, std::memory_order_acq_rel);
      detail::futex_wake_all(w);
    }
  }

  detail::shared_block block_;
  std::uint8_t end_ = 0;
};

/// multiprocessing.Pipe: two connected ends. Duplex by default; with `duplex` false the first
/// end only receives and the second only sends. `buffer_bytes` per direction (rounded up to
/// 16; at least 64). Throws object_store_full.
template <class T>
std::pair<connection<T>, connection<T>> pipe(bool duplex, std::size_t buffer_bytes) {
  const std::uint64_t capacity = detail::pipe_ring::padded(std::max<std::size_t>(buffer_bytes, 64));
  const std::size_t bytes = detail::pipe_state::bytes(capacity, duplex);
  detail::shared_block b = detail::shared_block::allocate(bytes);
  auto* st = new (b.data()) detail::pipe_state(capacity, duplex, detail::my_owner_id());
  st->total_bytes = b.size();
  return {connection<T>(b, 0), connection<T>(b, 1)};
}

CORAY_END_NAMESPACE
