// Cluster mode against raw MPI on the same transport, measured in one run:
//
//   mpirun -np 3 --mca btl tcp,self build/bench/bench/cluster_bench [--quick] [--json FILE]
//
// First raw MPI between ranks 0 and 1 (an 8-byte ping-pong; one-way transfers of 8 MiB to 1
// GiB, each acknowledged; 256 MiB at most with --quick), then the same program's
// ray::runtime over the three ranks: the round trip of a sync task on a worker of another
// rank, async tasks to the two other ranks' workers, a new object of each size carried to a
// task on rank 1 (which reads it in place, as a std::span: the figure is the object's move,
// not a copy the task makes), the largest read there again (its copy kept), and the largest
// carried to a task on each of ranks 1 and 2 at once (a broadcast), against one such
// transfer. Rank 0's own
// worker is held by a task for the whole run, so calls go to the other ranks' workers (up to
// max_tasks_in_flight_per_worker calls queue behind it: the async figure counts the others).
// Prints one line per figure; --json FILE writes them for scripts/bench.py, which runs this
// program under mpiexec on 3 ranks.
#include <mpi.h>

#include <chrono>
#include <coray/coray.hpp>
#include <coray/mpi.hpp>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "bench_common.hpp"

namespace {

using bench::clk;
using bench::median;
using bench::seconds_since;

constexpr int tag = 7;

int noop(int x) { return x; }

/// Holds rank 0's worker until `release` is set.
int hold(ray::shared_value<int> release) {
  while (release.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return 0;
}

std::size_t length(std::span<const std::uint8_t> v) { return v.size(); }

/// Raw MPI: 8-byte round trips between ranks 0 and 1, each timed.
std::vector<double> raw_round_trips(int rank, int n) {
  std::uint64_t x = 0;
  std::vector<double> out;
  for (int i = 0; i < n; ++i) {
    if (rank == 0) {
      const auto t = clk::now();
      MPI_Send(&x, 1, MPI_UINT64_T, 1, tag, MPI_COMM_WORLD);
      MPI_Recv(&x, 1, MPI_UINT64_T, 1, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      out.push_back(seconds_since(t));
    } else if (rank == 1) {
      MPI_Recv(&x, 1, MPI_UINT64_T, 0, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      MPI_Send(&x, 1, MPI_UINT64_T, 0, tag, MPI_COMM_WORLD);
    }
  }
  return out;
}

/// Raw MPI: `bytes` from rank 0 to rank 1, acknowledged; the median seconds of `reps`.
double raw_transfer(int rank, std::size_t bytes, int reps) {
  std::vector<char> buf(bytes, 1);
  char ack = 0;
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    if (rank == 0) {
      const auto s = clk::now();
      MPI_Send(buf.data(), static_cast<int>(bytes), MPI_BYTE, 1, tag, MPI_COMM_WORLD);
      MPI_Recv(&ack, 1, MPI_BYTE, 1, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      t.push_back(seconds_since(s));
    } else if (rank == 1) {
      MPI_Recv(buf.data(), static_cast<int>(bytes), MPI_BYTE, 0, tag, MPI_COMM_WORLD,
               MPI_STATUS_IGNORE);
      MPI_Send(&ack, 1, MPI_BYTE, 0, tag, MPI_COMM_WORLD);
    }
  }
  return rank == 0 ? median(t) : 0;
}

/// A task on rank 0's worker that holds it until the returned flag is set.
std::pair<ray::shared_value<int>, ray::object_ref<int>> hold_rank0_worker() {
  auto release = ray::shared_value<int>(0);
  auto held = ray::task<hold>.remote(release);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // let it start
  return {release, held};
}

}  // namespace

int main(int argc, char** argv) {
  ray::enter_worker_if_spawned();
  const bench::options o = bench::parse_options(argc, argv);
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);

  std::vector<std::size_t> sizes = {std::size_t{8} << 20, std::size_t{64} << 20,
                                    std::size_t{256} << 20};
  if (!o.quick) sizes.push_back(std::size_t{1} << 30);
  const int trips = o.quick ? 2000 : 20000;
  const std::vector<double> raw = raw_round_trips(rank, trips);
  std::vector<double> raw_bw;
  for (std::size_t s : sizes) raw_bw.push_back(raw_transfer(rank, s, o.reps));
  MPI_Barrier(MPI_COMM_WORLD);

  {
    ray::runtime rt(argc, argv, {.num_workers = 1});  // ranks 1 and 2 serve here

    auto [release, held] = hold_rank0_worker();
    std::vector<double> sync;
    for (int i = 0; i < trips / 4; ++i) {
      const auto t = clk::now();
      (void)ray::get(ray::task<noop>.remote(i)).get();
      sync.push_back(seconds_since(t));
    }
    const int n = o.quick ? 20000 : 100000;
    std::vector<ray::object_ref<int>> refs;
    refs.reserve(static_cast<std::size_t>(n));
    const auto t_async = clk::now();
    for (int i = 0; i < n; ++i) refs.push_back(ray::task<noop>.remote(i));
    // Every call but those queued behind the hold on rank 0's worker (at most
    // max_tasks_in_flight_per_worker, 4) runs on the other ranks.
    const int queued_here = 4;
    (void)ray::wait(refs, {.num_returns = static_cast<std::size_t>(n - queued_here)}).get();
    const double async_s = seconds_since(t_async);
    release.store(1);
    for (auto& r : refs) (void)ray::get(r).get();
    (void)ray::get(held).get();

    auto [release2, held2] = hold_rank0_worker();
    // Each object is new to rank 1 (a node keeps a copy of what it was sent, and is not sent
    // it again): put before its clock starts, released after. A put of a large object takes
    // long enough for the other ranks' links to fall idle (then they probe each 1-5 ms), so a
    // small call to each wakes them before the clock starts: the figures are the moves.
    auto on = [&](int rank) {
      return ray::task<length>.options({.scheduling_strategy = ray::node_affinity(rank)});
    };
    auto wake = [&] {
      for (int rank : {1, 2})
        (void)ray::get(
            ray::task<noop>.options({.scheduling_strategy = ray::node_affinity(rank)}).remote(rank))
            .get();
    };
    std::vector<double> coray_bw, again;
    for (std::size_t s : sizes) {
      std::vector<double> t;
      for (int i = 0; i < o.reps; ++i) {
        auto obj = ray::put(std::vector<std::uint8_t>(s, 1));
        wake();
        auto start = clk::now();
        (void)ray::get(on(1).remote(obj)).get();
        t.push_back(seconds_since(start));
        if (s == sizes.back()) {  // the same object again, on the rank that holds it now
          start = clk::now();
          (void)ray::get(on(1).remote(obj)).get();
          again.push_back(seconds_since(start));
        }
      }
      coray_bw.push_back(median(t));
    }
    // A broadcast: the largest object to a task on rank 1 alone, then to one on each of ranks
    // 1 and 2 at once, alternated.
    const std::size_t cast = sizes.back();
    std::vector<double> one, both;
    {
      for (int i = 0; i < o.reps; ++i) {
        auto obj = ray::put(std::vector<std::uint8_t>(cast, 1));
        wake();
        auto t = clk::now();
        (void)ray::get(on(1).remote(obj)).get();
        one.push_back(seconds_since(t));
        obj = ray::put(std::vector<std::uint8_t>(cast, 1));
        wake();
        t = clk::now();
        auto a = on(1).remote(obj), b = on(2).remote(obj);
        (void)ray::get(a).get();
        (void)ray::get(b).get();
        both.push_back(seconds_since(t));
      }
    }
    release2.store(1);
    (void)ray::get(held2).get();

    const double raw_p50 = median(raw) * 1e6, sync_p50 = median(sync) * 1e6;
    bench::report("raw_mpi_round_trip_8B_p50", raw_p50, "us", false, "ranks 0 and 1");
    bench::report("raw_mpi_round_trip_8B_p99", bench::percentile(raw, 99) * 1e6, "us", false);
    bench::report("cross_node_sync_task_p50", sync_p50, "us", false, "a task on another rank");
    bench::report("cross_node_sync_task_p99", bench::percentile(sync, 99) * 1e6, "us", false);
    bench::report("cross_node_sync_task_vs_raw_mpi", sync_p50 / raw_p50, "x", false, "target <= 3");
    bench::report("cross_node_async_tasks", (n - queued_here) / async_s, "tasks/s", true,
                  "to 2 other ranks; target >= 200000");
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      const std::string mib = std::to_string(sizes[i] >> 20);
      const double size_mib = static_cast<double>(sizes[i]) / (1 << 20);
      bench::report("raw_mpi_transfer_" + mib + "MiB", size_mib / raw_bw[i], "MiB/s", true);
      bench::report("cross_node_object_" + mib + "MiB", size_mib / coray_bw[i], "MiB/s", true,
                    "put on rank 0, read by a task on another rank");
      bench::report("cross_node_object_" + mib + "MiB_vs_raw_mpi", raw_bw[i] / coray_bw[i], "x",
                    true, "target >= 0.8");
    }
    const std::string cast_mib = std::to_string(cast >> 20);
    bench::report("cross_node_object_" + cast_mib + "MiB_held_p50", median(again) * 1e6, "us",
                  false, "the same object read again on the rank that keeps its copy");
    bench::report("cross_node_broadcast_" + cast_mib + "MiB_vs_one_transfer",
                  median(both) / median(one), "x", false,
                  "to tasks on ranks 1 and 2 at once; target <= 2");
    bench::write_json(o);
  }
  MPI_Finalize();  // this program started MPI, so it ends it, after the runtime
  return 0;
}
