#pragma once
/// The link between a cluster's ranks as their loops see it: frames out to a rank, frames in
/// from any. The MPI implementation (mpi_channel.hpp) moves them on a progress thread; the
/// loops never wait on the network.

#include <coray/detail/cluster/frame.hpp>
#include <coray/detail/shm/futex.hpp>
#include <coray/detail/shm/segment.hpp>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail::cluster {

/// Where a block sent apart from its frame lands on this rank: its bytes are received into
/// `data` (null: they are received and dropped), and the record's `landed` becomes `landed`.
struct landing {
  std::byte* data = nullptr;
  std::uint64_t landed = 0;
};
/// Called on the link's thread when a frame naming blocks sent apart arrives, once per block,
/// before its bytes are received; the frame reaches the loop once they all are.
using lander = std::function<landing(int peer, const block_record&)>;

class channel {
 public:
  virtual ~channel() = default;
  /// Queues `frame` for rank `peer`, and after it the bytes of `apart` (the frame's blocks
  /// sent apart, in record order: frame_writer::apart()); the channel holds a reference to
  /// each, taken by the caller, and releases it in `seg` once the bytes are sent. Loop thread.
  virtual void post(int peer, std::vector<std::byte> frame, std::vector<object_block*> apart = {},
                    segment* seg = nullptr) = 0;
  /// Where blocks sent apart land here. Set before begin().
  virtual void set_lander(lander l) = 0;
  /// The next frame that arrived, and its sender; false when none waits.
  virtual bool take(int& peer, std::vector<std::byte>& frame) = 0;
  /// Whether a frame waits (counted before it is queued: a loop that reads false after
  /// announcing its sleep is rung for the next one).
  virtual bool has_frames() const noexcept = 0;
  /// The doorbell rung when a frame arrives (the loop's).
  virtual void set_bell(doorbell* bell) noexcept = 0;
  /// Starts moving frames (after the processes that must not share its thread are forked).
  virtual void begin() = 0;
};

/// A node as rank 0 knows it: what its hello said (its processes and resources), then
/// whether it is still there.
struct node_record {
  int rank = 0;
  std::string host;
  int pid = 0;
  std::uint32_t workers = 0;  // task workers
  std::uint32_t actors = 0;   // actor slots
  double cpus = 0;
  double gpus = 0;
  std::vector<std::string> gpu_ids;
  std::map<std::string, double> resources;  // custom ones
  bool alive = true;
  std::string why;                   // why it ended early, if it did
  std::uint64_t store_bytes = 0;     // its object store's capacity
  std::uint64_t bytes_sent = 0;      // object bytes rank 0 sent it
  std::uint64_t bytes_received = 0;  // object bytes rank 0 received from it
};

}  // namespace detail::cluster
CORAY_END_NAMESPACE
