#pragma once
/// Cluster mode: the same program on several machines, launched by MPI.
///
///   #include <coray/coray.hpp>
///   #include <coray/mpi.hpp>   // once in the program; link coray::mpi in CMake
///
///   int main(int argc, char** argv) {
///     ray::runtime rt(argc, argv);   // rank 0 goes on as the driver; every other rank
///                                    // serves as a node here and exits when rank 0's
///                                    // runtime ends, never running the rest of main
///     ...
///   }
///
///   $ mpirun -np 3 ./app            # or: srun -n 3 ./app, mpirun --hostfile hosts ./app
///
/// Rank 0's orchestrator schedules every node's task workers and actors: each other rank runs
/// a node agent with its own shared segment, supervisor, workers and actor slots (as many as
/// its runtime_options say, by default its usable cores and 1,024 actors), and its resources
/// (its own: CPUs, the GPUs it detects, CORAY_NUM_GPUS, CORAY_RESOURCES) are its node's. A
/// call or actor goes where its resources are, and where its scheduling_strategy says
/// (ray::spread, ray::node_affinity). Calls, their arguments and results travel between rank
/// 0 and a node as MPI messages, each store block a message names copied into the
/// receiver's segment. Outside `mpirun` (or with one rank) the program runs on one machine,
/// as without this header.
///
/// Only this header needs MPI: a program that does not include it needs no MPI installed.
/// It starts MPI itself (MPI_Init_thread with MPI_THREAD_SERIALIZED) when the runtime is
/// built, and ends it when the runtime ends.

#include <fmt/format.h>
#include <mpi.h>
#include <unistd.h>

#include <coray/detail/cluster/cluster_transport.hpp>
#include <coray/detail/cluster/mpi_channel.hpp>
#include <coray/detail/cluster/node_agent.hpp>
#include <coray/detail/runtime/cluster_seam.hpp>
#include <coray/detail/runtime/entry.hpp>
#include <coray/runtime.hpp>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

CORAY_BEGIN_NAMESPACE

/// A machine of the cluster: ray::nodes() lists them, rank 0 (this process) first.
struct node_info {
  int rank = 0;  // the node's number (ray::node_affinity's)
  std::string host;
  int pid = 0;  // its driver's or node agent's process
  std::uint32_t workers = 0;
  double cpus = 0;
  /// Its resources by Ray's names ({"CPU": n, "GPU": n, custom...}), as cluster_resources().
  std::map<std::string, double> resources;
  bool alive = true;
  /// Object bytes rank 0 has sent this node, and received from it (0 for rank 0 itself). A
  /// node keeps a copy of each large object it was sent or made, within a quarter of its
  /// store, and is not sent one it holds again.
  std::uint64_t object_bytes_sent = 0;
  std::uint64_t object_bytes_received = 0;
};

namespace detail::cluster {

inline std::string host_name() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0) return "?";
  return name;
}

/// Rank 0's seam: the nodes that said hello, and the link to them.
class mpi_seam final : public cluster_seam {
 public:
  mpi_seam(std::unique_ptr<mpi_channel> link, std::vector<node_record> nodes)
      : link_(std::move(link)), nodes_(std::move(nodes)) {}
  std::uint32_t remote_workers() const override {
    std::uint32_t n = 0;
    for (const auto& r : nodes_) n += r.workers;
    return n;
  }
  std::uint32_t remote_actors() const override {
    std::uint32_t n = 0;
    for (const auto& r : nodes_) n += r.actors;
    return n;
  }
  std::vector<node_resources> remote_resources() const override {
    std::vector<node_resources> out;
    for (const auto& r : nodes_) {
      node_resources& n = out.emplace_back();
      n.num_cpus = to_resource_amount(r.cpus);
      n.num_gpus = to_resource_amount(r.gpus);
      n.gpu_ids = r.gpu_ids;
      for (const auto& [name, x] : r.resources) n.custom_resources[name] = to_resource_amount(x);
    }
    return out;
  }
  std::unique_ptr<transport> wrap(shm_transport& local, segment& seg, std::uint32_t local_workers,
                                  std::uint32_t actors) override {
    return std::make_unique<cluster_transport>(local, seg, local_workers, actors, std::move(link_),
                                               nodes_);
  }

 private:
  std::unique_ptr<mpi_channel> link_;
  std::vector<node_record> nodes_;
};

/// Every rank but 0: a node, serving until rank 0's runtime ends; then the process exits.
[[noreturn]] inline void run_node(driver_config cfg, MPI_Comm comm, MPI_Comm data, int rank) {
  {
    auto link = std::make_unique<mpi_channel>(comm, data);
    try {
      // What rank 0 schedules here: this node's processes and resources (resolved from its
      // own options and environment).
      node_record me;
      me.rank = rank;
      me.host = host_name();
      me.pid = static_cast<int>(getpid());
      me.workers = cfg.num_workers;
      me.actors = cfg.max_actors;
      me.cpus = cfg.num_cpus.value_or(cfg.num_workers);
      me.gpus = cfg.num_gpus.value_or(0);
      me.gpu_ids = cfg.gpu_ids;
      me.resources = cfg.resources;
      node_agent agent(std::move(cfg), *link);
      me.store_bytes = agent.store_bytes();
      frame_writer hello(frame_type::hello);
      hello.payload(encode(me));
      auto bytes = hello.finish();
      MPI_Send(bytes.data(), static_cast<int>(bytes.size()), MPI_BYTE, 0, mpi_channel::tag, comm);
      agent.serve();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "coray: node %d (%s) failed: %s\n", rank, host_name().c_str(), e.what());
      std::fflush(stderr);
      MPI_Abort(comm, 1);
    }
    // The agent ended its processes: rank 0 hears so, then the link ends.
    link->post(0, frame_writer(frame_type::bye).finish());
  }
  MPI_Finalize();
  std::exit(0);
}

/// The most slots (task workers and actor slots, every node's) a cluster's runtime numbers.
inline constexpr std::uint64_t max_cluster_slots = 32767;

inline bool& cluster_used() {
  static bool used = false;
  return used;
}

inline std::unique_ptr<driver> start_mpi_cluster(driver_config cfg) {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized || cluster_used())
    throw usage_error(
        "coray: a program under MPI builds its ray::runtime once: the cluster's nodes ended "
        "with the first one");
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided);
    if (provided < MPI_THREAD_SERIALIZED) {
      MPI_Finalize();
      throw ray::runtime_error(
          "coray: the MPI library does not support MPI_THREAD_SERIALIZED, which the cluster's "
          "progress thread needs");
    }
    // Ended at exit, by this process only: a child forked from it (a ray::process) that
    // calls exit() must not end the MPI state it merely copied.
    static const pid_t starter = getpid();
    // A runtime of ray::init() would otherwise end after this (its holder was made first):
    // it ends first, while the link to the nodes still works.
    std::atexit([] {
      int f = 0;
      MPI_Finalized(&f);
      if (f || getpid() != starter) return;
      global_runtime().reset();
      MPI_Finalize();
    });
  }
  // The link's own communicators: frames, and the bytes of large blocks sent apart from them.
  MPI_Comm comm, data;
  MPI_Comm_dup(MPI_COMM_WORLD, &comm);
  MPI_Comm_dup(MPI_COMM_WORLD, &data);
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  if (size == 1) {
    MPI_Comm_free(&data);
    MPI_Comm_free(&comm);
    return make_local_driver(std::move(cfg));
  }
  cluster_used() = true;
  resolve_driver_config(cfg);
  if (rank != 0) run_node(std::move(cfg), comm, data, rank);
  // Rank 0: every node says hello (its workers and CPUs) before the first call is scheduled.
  std::vector<node_record> nodes;
  for (int r = 1; r < size; ++r) {
    MPI_Status st;
    MPI_Probe(r, mpi_channel::tag, comm, &st);
    int n = 0;
    MPI_Get_count(&st, MPI_BYTE, &n);
    std::vector<std::byte> bytes(static_cast<std::size_t>(n));
    MPI_Recv(bytes.data(), n, MPI_BYTE, r, mpi_channel::tag, comm, MPI_STATUS_IGNORE);
    frame_view v(bytes);
    node_record rec = decode<node_record>(v.payload);
    rec.rank = r;
    nodes.push_back(std::move(rec));
  }
  // A worker's ids carry its slot's number in 15 bits (worker.hpp): every node's slots count.
  std::uint64_t slots = std::uint64_t{cfg.num_workers} + cfg.max_actors;
  for (const auto& n : nodes) slots += std::uint64_t{n.workers} + n.actors;
  if (slots > max_cluster_slots) {
    for (const auto& n : nodes) {  // the nodes end their processes and exit
      auto bye = frame_writer(frame_type::shutdown).finish();
      MPI_Send(bye.data(), static_cast<int>(bye.size()), MPI_BYTE, n.rank, mpi_channel::tag, comm);
    }
    throw usage_error(fmt::format(
        "coray: the cluster's {} nodes have {} task workers and actor slots in all, above the "
        "{} a runtime can number: lower runtime_options::max_actors (1,024 per node by "
        "default) or num_workers",
        size, slots, max_cluster_slots));
  }
  mpi_seam seam(std::make_unique<mpi_channel>(comm, data), std::move(nodes));
  return make_local_driver(std::move(cfg), &seam);
}

/// Sets cluster_start_hook before main() in every program that includes this header.
inline const bool installed = (cluster_start_hook() = &start_mpi_cluster, true);

}  // namespace detail::cluster

/// The cluster's machines: this one (rank 0) first, then every node that joined, in rank
/// order. One entry outside a cluster. In the driver, on the runtime's thread.
inline std::vector<node_info> nodes() {
  std::vector<node_info> out;
  auto* d = detail::process::here() ? detail::process::here()->as_driver() : nullptr;
  auto resources = [&](int node) {
    return d ? d->resources(false, node) : std::map<std::string, double>{};
  };
  auto cpus = [](const std::map<std::string, double>& m) {
    const auto it = m.find("CPU");
    return it == m.end() ? 0.0 : it->second;
  };
  const auto mine = resources(0);
  out.push_back({0, detail::cluster::host_name(), static_cast<int>(getpid()),
                 d ? d->num_workers() : 0, cpus(mine), mine, true, 0, 0});
  for (const auto& n : detail::cluster::known_nodes()) {
    auto theirs = resources(n.rank);
    out.push_back({n.rank, n.host, n.pid, n.workers, cpus(theirs), std::move(theirs), n.alive,
                   n.bytes_sent, n.bytes_received});
    out[0].workers -= std::min(out[0].workers, n.workers);
  }
  return out;
}

CORAY_END_NAMESPACE
