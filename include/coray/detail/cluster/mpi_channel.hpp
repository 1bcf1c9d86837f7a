#pragma once
/// The cluster's channel on MPI: one progress thread per rank makes every MPI call while the
/// link runs (MPI_THREAD_SERIALIZED is all it needs: the main thread calls MPI only before the
/// thread starts and after it is joined). Frames go out with MPI_Isend (the small ones
/// queued for one rank together as one message, a batch) and come in with MPI_Iprobe and
/// MPI_Recv, on a communicator of their own; they reach the loop through a
/// lock-free queue, and the loop's doorbell is rung.
///
/// A large block a frame names (block_bytes::apart) follows its frame on a second
/// communicator, in chunks of 4 MiB all sent at once, straight from the sender's segment; the
/// receiver posts a receive for each chunk into the block its lander gives (in its segment)
/// as soon as the frame arrives, and hands the frame to the loop once they have all landed.
/// Frames from one rank reach the loop in the order they were sent: one waiting for its
/// bytes holds back those behind it.
///
/// MPI has no wait for "a message, or work from another thread", and a blocking receive spins
/// a core in Open MPI, so the thread polls: continuously while frames flow and for 100 us
/// after (and while bytes are in flight: Open MPI's TCP transport moves them only inside MPI
/// calls), yielding its core up to 5 ms after, then sleeping on its own doorbell between
/// probes (1 ms, and 5 ms once idle for 100 ms; a frame queued to go out rings it at once). A
/// frame arriving at an idle rank waits up to that long; an idle cluster costs each rank 200
/// short wake-ups a second.

#include <concurrentqueue.h>
#include <mpi.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <coray/detail/cluster/channel.hpp>
#include <coray/detail/shm/futex.hpp>
#include <coray/errors.hpp>
#include <cstdint>
#include <cstring>
#include <deque>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail::cluster {

class mpi_channel final : public channel {
 public:
  static constexpr int tag = 0x636f;

  /// Takes `comm` (frames) and `data` (the bytes of blocks sent apart), communicators of the
  /// link's own, and frees them when done.
  mpi_channel(MPI_Comm comm, MPI_Comm data) : comm_(comm), data_(data) {}
  ~mpi_channel() override {
    end();
    MPI_Comm_free(&data_);
    MPI_Comm_free(&comm_);
  }

  void post(int peer, std::vector<std::byte> frame, std::vector<object_block*> apart = {},
            segment* seg = nullptr) override {
    if (frame.size() > static_cast<std::size_t>(INT_MAX)) {
      for (object_block* b : apart) seg->release(b);
      throw usage_error("coray: a message between a cluster's nodes is limited to 2 GiB");
    }
    out_.enqueue({peer, std::move(frame), std::move(apart), seg});
    bell_.ring();
  }
  void set_lander(lander l) override { lander_ = std::move(l); }
  bool take(int& peer, std::vector<std::byte>& frame) override {
    item it;
    if (!in_.try_dequeue(it)) return false;
    waiting_.fetch_sub(1, std::memory_order_relaxed);
    peer = it.peer;
    frame = std::move(it.bytes);
    return true;
  }
  bool has_frames() const noexcept override {
    return waiting_.load(std::memory_order_seq_cst) != 0;
  }
  void set_bell(doorbell* bell) noexcept override { loop_bell_.store(bell); }
  void begin() override {
    if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
  }

  /// Sends what is queued, then stops the thread.
  void end() {
    if (!thread_.joinable()) return;
    stop_.store(true);
    bell_.ring_always();
    thread_.join();
  }

  /// Blocking exchanges before the thread starts (the nodes' hellos).
  MPI_Comm comm() const noexcept { return comm_; }

 private:
  struct item {
    int peer = 0;
    std::vector<std::byte> bytes;
    std::vector<object_block*> apart;  // sent after the frame
    segment* seg = nullptr;            // where they are released once sent
  };
  struct sending {
    MPI_Request request = MPI_REQUEST_NULL;
    std::vector<std::byte> bytes;
    object_block* hold = nullptr;  // released in `seg` once sent (a block's last chunk)
    segment* seg = nullptr;
  };
  /// A frame that arrived, waiting for the bytes of its blocks sent apart (or behind one that
  /// does, from the same rank).
  struct incoming {
    std::vector<std::byte> frame;
    std::vector<MPI_Request> requests;
    std::vector<std::vector<std::byte>> dropped;  // where bytes nobody takes are received
    bool unlanded = false;  // a block found no room yet (the loop may be freeing some)
    std::chrono::steady_clock::time_point since{}, retry_at{};
  };
  /// How long a block waits for room before its bytes are dropped (its frame then says so).
  static constexpr auto room_wait = std::chrono::seconds(30);

  void run() {
    using clock = std::chrono::steady_clock;
    std::deque<sending> sends;
    auto last_work = clock::now();
    for (;;) {
      bool work = false;
      item it;
      while (out_.try_dequeue(it)) {
        work = true;
        if (it.bytes.size() > batch_limit || !it.apart.empty()) {
          // Sent alone, uncopied; what was batched for its rank goes first, to keep the order.
          flush_batch(it.peer, sends);
          isend(it.peer, single_tag, std::move(it.bytes), sends);
          for (object_block* b : it.apart) send_apart(it.peer, b, it.seg, sends);
          continue;
        }
        batch_for(it.peer).push_back(std::move(it.bytes));
      }
      for (auto& [peer, b] : batches_)
        if (!b.empty()) flush_batch(peer, sends);
      while (!sends.empty()) {
        int done = 0;
        MPI_Test(&sends.front().request, &done, MPI_STATUS_IGNORE);
        if (!done) break;
        if (sends.front().hold) sends.front().seg->release(sends.front().hold);
        sends.pop_front();
      }
      work |= land();
      for (int k = 0; k < 64; ++k) {
        int flag = 0;
        MPI_Status st;
        MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, comm_, &flag, &st);
        if (!flag) break;
        int n = 0;
        MPI_Get_count(&st, MPI_BYTE, &n);
        std::vector<std::byte> bytes(static_cast<std::size_t>(n));
        MPI_Recv(bytes.data(), n, MPI_BYTE, st.MPI_SOURCE, st.MPI_TAG, comm_, MPI_STATUS_IGNORE);
        if (st.MPI_TAG == single_tag) {
          arrive(st.MPI_SOURCE, std::move(bytes));
        } else {
          // A batch: each frame's length, the frame, padding to 8.
          for (std::size_t at = 0; at + sizeof(std::uint64_t) <= bytes.size();) {
            std::uint64_t len;
            std::memcpy(&len, bytes.data() + at, sizeof len);
            at += sizeof len;
            if (len > bytes.size() - at) break;  // malformed: the rest is dropped
            const auto* f = bytes.data() + at;
            arrive(st.MPI_SOURCE, std::vector<std::byte>(f, f + len));
            at += pad8(len);
          }
        }
        work = true;
      }
      if (stop_.load() && sends.empty() && out_.size_approx() == 0) return;
      const auto now = clock::now();
      if (work) {
        last_work = now;
        continue;
      }
      const auto idle = now - last_work;
      if (idle < std::chrono::microseconds(100)) continue;
      if (in_flight()) {  // bytes move only while MPI is called
        sched_yield();
        continue;
      }
      if (idle < std::chrono::milliseconds(5)) {
        sched_yield();
        continue;
      }
      // Idle: probe each millisecond, each 5 ms after 100 ms (a frame to send rings the bell).
      const auto nap = !sends.empty()                          ? std::chrono::microseconds(50)
                       : idle < std::chrono::milliseconds(100) ? std::chrono::microseconds(1000)
                                                               : std::chrono::microseconds(5000);
      bell_.sleep([&] { return out_.size_approx() != 0 || stop_.load(); }, nap);
    }
  }

  /// Frames up to this size queued for one rank together go as one MPI message (tag
  /// batch_tag); larger ones go alone (single_tag), their bytes not copied again.
  static constexpr std::size_t batch_limit = 64 * 1024;
  /// Blocks sent apart go in chunks of this size (an MPI count is an int; and a receiver's
  /// chunks land while the next ones are in flight).
  static constexpr std::size_t chunk_bytes = std::size_t{4} << 20;
  static constexpr int single_tag = tag;
  static constexpr int batch_tag = tag + 1;

  static std::size_t pad8(std::size_t n) noexcept { return (n + 7) & ~std::size_t{7}; }

  /// The bytes of block `b`, after its frame, in chunks on the data communicator; the last
  /// chunk's entry releases the frame's reference.
  void send_apart(int peer, object_block* b, segment* seg, std::deque<sending>& sends) {
    const std::size_t size = static_cast<std::size_t>(b->size);
    for (std::size_t at = 0; at < size; at += chunk_bytes) {
      const std::size_t n = std::min(chunk_bytes, size - at);
      sending& s = sends.emplace_back();
      if (at + n == size) {
        s.hold = b;
        s.seg = seg;
      }
      MPI_Isend(b->data() + at, static_cast<int>(n), MPI_BYTE, peer, 0, data_, &s.request);
    }
    if (size == 0) seg->release(b);
  }

  /// A frame from `peer`: the bytes of its blocks sent apart are received where the lander
  /// says; it reaches the loop once they have landed and every frame before it from `peer`
  /// has.
  void arrive(int peer, std::vector<std::byte> frame) {
    incoming in{std::move(frame), {}, {}, false, std::chrono::steady_clock::now(), {}};
    frame_head h{};
    if (in.frame.size() >= sizeof h) std::memcpy(&h, in.frame.data(), sizeof h);
    auto& held = held_for(peer);
    // Receives are matched in the order they are posted: a frame behind one whose block
    // waits for room lands after it.
    if (h.blocks) in.unlanded = (!held.empty() && held.back().unlanded) || !land_blocks(peer, in);
    if (held.empty() && !in.unlanded && in.requests.empty())
      deliver({peer, std::move(in.frame), {}, nullptr});
    else
      held.push_back(std::move(in));
  }
  /// Posts the receives of frame `in`'s blocks sent apart, in order, each where the lander
  /// says; false when one found no room (the rest wait with it), unless it has waited
  /// room_wait, when its bytes are received and dropped and its record says so (landed 0).
  bool land_blocks(int peer, incoming& in) {
    const auto now = std::chrono::steady_clock::now();
    if (now < in.retry_at) return false;  // a store without room is asked each millisecond
    const bool give_up = now - in.since > room_wait;
    std::optional<frame_view> v;
    try {
      v.emplace(in.frame);
    } catch (const codec_error&) {
      return true;  // malformed: the loop refuses it
    }
    for (const auto& b : v->blocks) {
      block_record r = b.record;
      if (r.bytes != block_bytes::apart) continue;
      landing l;
      try {
        if (lander_) l = lander_(peer, r);
      } catch (...) {
        l = {};  // no room now
      }
      if (!l.data && !give_up) {
        in.retry_at = now + std::chrono::milliseconds(1);
        return false;
      }
      r.bytes = block_bytes::landed;
      r.landed = l.data ? l.landed : 0;
      std::memcpy(in.frame.data() + b.record_at, &r, sizeof r);
      std::byte* to = l.data;
      if (!to) to = in.dropped.emplace_back(static_cast<std::size_t>(r.size)).data();
      for (std::size_t at = 0; at < r.size; at += chunk_bytes) {
        const std::size_t n = std::min<std::size_t>(chunk_bytes, r.size - at);
        MPI_Request& q = in.requests.emplace_back(MPI_REQUEST_NULL);
        MPI_Irecv(to + at, static_cast<int>(n), MPI_BYTE, peer, 0, data_, &q);
      }
    }
    return true;
  }
  /// Hands the loop each held frame whose bytes have all landed, in order per rank.
  bool land() {
    bool progress = false;
    for (auto& [peer, held] : held_) {
      for (auto& in : held) {  // blocks that waited for room, in order
        if (!in.unlanded) continue;
        in.unlanded = !land_blocks(peer, in);
        if (in.unlanded) break;
      }
      while (!held.empty() && !held.front().unlanded) {
        incoming& in = held.front();
        int done = 1;
        if (!in.requests.empty())
          MPI_Testall(static_cast<int>(in.requests.size()), in.requests.data(), &done,
                      MPI_STATUSES_IGNORE);
        if (!done) break;
        deliver({peer, std::move(in.frame), {}, nullptr});
        held.pop_front();
        progress = true;
      }
    }
    return progress;
  }
  bool in_flight() const noexcept {
    for (const auto& [peer, held] : held_)
      if (!held.empty()) return true;
    return false;
  }
  std::deque<incoming>& held_for(int peer) {
    for (auto& [p, h] : held_)
      if (p == peer) return h;
    return held_.emplace_back(peer, std::deque<incoming>{}).second;
  }

  void isend(int peer, int t, std::vector<std::byte> bytes, std::deque<sending>& sends) {
    sends.push_back({MPI_REQUEST_NULL, std::move(bytes), nullptr, nullptr});
    sending& s = sends.back();
    MPI_Isend(s.bytes.data(), static_cast<int>(s.bytes.size()), MPI_BYTE, peer, t, comm_,
              &s.request);
  }
  std::vector<std::vector<std::byte>>& batch_for(int peer) {
    for (auto& [p, b] : batches_)
      if (p == peer) return b;
    return batches_.emplace_back(peer, std::vector<std::vector<std::byte>>{}).second;
  }
  /// Sends the frames queued for `peer`: one alone as itself, several as one batch (each
  /// frame's length, the frame, padding to 8).
  void flush_batch(int peer, std::deque<sending>& sends) {
    auto& frames = batch_for(peer);
    if (frames.size() == 1) {
      isend(peer, single_tag, std::move(frames.front()), sends);
    } else if (frames.size() > 1) {
      std::size_t total = 0;
      for (const auto& f : frames) total += sizeof(std::uint64_t) + pad8(f.size());
      std::vector<std::byte> b(total);
      std::size_t at = 0;
      for (const auto& f : frames) {
        const std::uint64_t n = f.size();
        std::memcpy(b.data() + at, &n, sizeof n);
        if (n) std::memcpy(b.data() + at + sizeof n, f.data(), n);
        at += sizeof n + pad8(n);
      }
      isend(peer, batch_tag, std::move(b), sends);
    }
    frames.clear();
  }
  void deliver(item in) {
    waiting_.fetch_add(1, std::memory_order_seq_cst);
    in_.enqueue(std::move(in));
    if (doorbell* b = loop_bell_.load()) b->ring();
  }

  MPI_Comm comm_;
  MPI_Comm data_;
  lander lander_;
  /// Frames waiting for their bytes, by rank (progress thread only).
  std::vector<std::pair<int, std::deque<incoming>>> held_;
  /// Small frames dequeued in this pass, by rank (progress thread only).
  std::vector<std::pair<int, std::vector<std::vector<std::byte>>>> batches_;
  moodycamel::ConcurrentQueue<item> out_, in_;
  std::atomic<std::size_t> waiting_{0};
  std::atomic<doorbell*> loop_bell_{nullptr};
  doorbell bell_;  // the progress thread sleeps here
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace detail::cluster
CORAY_END_NAMESPACE
