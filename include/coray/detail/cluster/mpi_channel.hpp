#pragma once
/// The cluster's channel on MPI: one progress thread per rank makes every MPI call while the
/// link runs (MPI_THREAD_SERIALIZED is all it needs: the main thread calls MPI only before the
/// thread starts and after it is joined). Frames go out with MPI_Isend and come in with
/// MPI_Iprobe and MPI_Recv, on a communicator of their own; they reach the loop through a
/// lock-free queue, and the loop's doorbell is rung.
///
/// MPI has no wait for "a message, or work from another thread", and a blocking receive spins
/// a core in Open MPI, so the thread polls: continuously while frames flow and for 100 us
/// after, yielding its core up to 5 ms after, then sleeping on its own doorbell between probes
/// (1 ms, and 5 ms once idle for 100 ms; a frame queued to go out rings it at once). A frame
/// arriving at an idle rank waits up to that long; an idle cluster costs each rank 200 short
/// wake-ups a second.

#include <concurrentqueue.h>
#include <mpi.h>
#include <sched.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <coray/detail/cluster/channel.hpp>
#include <coray/detail/shm/futex.hpp>
#include <coray/errors.hpp>
#include <deque>
#include <thread>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail::cluster {

class mpi_channel final : public channel {
 public:
  static constexpr int tag = 0x636f;

  /// Takes `comm` (a communicator of the link's own) and frees it when done.
  explicit mpi_channel(MPI_Comm comm) : comm_(comm) {}
  ~mpi_channel() override {
    end();
    MPI_Comm_free(&comm_);
  }

  void post(int peer, std::vector<std::byte> frame) override {
    if (frame.size() > static_cast<std::size_t>(INT_MAX))
      throw usage_error("coray: a message between a cluster's nodes is limited to 2 GiB");
    out_.enqueue({peer, std::move(frame)});
    bell_.ring();
  }
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
  };
  struct sending {
    MPI_Request request = MPI_REQUEST_NULL;
    std::vector<std::byte> bytes;
  };

  void run() {
    using clock = std::chrono::steady_clock;
    std::deque<sending> sends;
    auto last_work = clock::now();
    for (;;) {
      bool work = false;
      item it;
      while (out_.try_dequeue(it)) {
        sends.push_back({MPI_REQUEST_NULL, std::move(it.bytes)});
        sending& s = sends.back();
        MPI_Isend(s.bytes.data(), static_cast<int>(s.bytes.size()), MPI_BYTE, it.peer, tag, comm_,
                  &s.request);
        work = true;
      }
      while (!sends.empty()) {
        int done = 0;
        MPI_Test(&sends.front().request, &done, MPI_STATUS_IGNORE);
        if (!done) break;
        sends.pop_front();
      }
      for (int k = 0; k < 64; ++k) {
        int flag = 0;
        MPI_Status st;
        MPI_Iprobe(MPI_ANY_SOURCE, tag, comm_, &flag, &st);
        if (!flag) break;
        int n = 0;
        MPI_Get_count(&st, MPI_BYTE, &n);
        item in{st.MPI_SOURCE, std::vector<std::byte>(static_cast<std::size_t>(n))};
        MPI_Recv(in.bytes.data(), n, MPI_BYTE, st.MPI_SOURCE, tag, comm_, MPI_STATUS_IGNORE);
        waiting_.fetch_add(1, std::memory_order_seq_cst);
        in_.enqueue(std::move(in));
        if (doorbell* b = loop_bell_.load()) b->ring();
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

  MPI_Comm comm_;
  moodycamel::ConcurrentQueue<item> out_, in_;
  std::atomic<std::size_t> waiting_{0};
  std::atomic<doorbell*> loop_bell_{nullptr};
  doorbell bell_;  // the progress thread sleeps here
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace detail::cluster
CORAY_END_NAMESPACE
