#pragma once
/// The link between a cluster's ranks as their loops see it: frames out to a rank, frames in
/// from any. The MPI implementation (mpi_channel.hpp) moves them on a progress thread; the
/// loops never wait on the network.

#include <coray/detail/shm/futex.hpp>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail::cluster {

class channel {
 public:
  virtual ~channel() = default;
  /// Queues `frame` for rank `peer`. Loop thread.
  virtual void post(int peer, std::vector<std::byte> frame) = 0;
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
  std::string why;  // why it ended early, if it did
};

}  // namespace detail::cluster
CORAY_END_NAMESPACE
