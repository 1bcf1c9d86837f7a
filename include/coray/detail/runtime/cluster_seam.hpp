#pragma once
/// Where other machines join a driver: rank 0 of an MPI job builds its driver with one
/// (<coray/mpi.hpp>), which adds the task workers of every other node behind the transport
/// the orchestrator schedules onto. Nothing here knows MPI; a program without a cluster
/// never builds one.

#include <coray/detail/runtime/resource_request.hpp>
#include <coray/detail/runtime/transport.hpp>
#include <cstdint>
#include <memory>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

class segment;
class shm_transport;

class cluster_seam {
 public:
  virtual ~cluster_seam() = default;
  /// Task workers on the other nodes, all of them.
  virtual std::uint32_t remote_workers() const = 0;
  /// Actor slots on the other nodes, all of them.
  virtual std::uint32_t remote_actors() const = 0;
  /// Each other node's resources, node 1 first (the transport's node numbers).
  virtual std::vector<node_resources> remote_resources() const = 0;
  /// The transport the orchestrator uses: this machine's (`local`, whose slots are its
  /// `local_workers` task workers, then `actors` actor slots) with the other nodes' task
  /// workers as slots `local_workers` up to `local_workers + remote_workers()`, then this
  /// machine's actor slots, then the other nodes' (remote_actors()). Called once; the result
  /// owns the link to the other nodes and ends it (and them) when destroyed.
  virtual std::unique_ptr<transport> wrap(shm_transport& local, segment& seg,
                                          std::uint32_t local_workers, std::uint32_t actors) = 0;
};

}  // namespace detail
CORAY_END_NAMESPACE
