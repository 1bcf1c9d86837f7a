#pragma once
// What the cluster test programs share: where a process runs (its rank), and the main that
// builds the one runtime every case uses (ranks 1 and 2 become nodes inside its constructor
// and never reach doctest; rank 0 runs the cases).
#include <doctest/doctest.h>
#include <unistd.h>

#include <coray/coray.hpp>
#include <coray/mpi.hpp>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <string_view>

namespace cluster_test {

/// The process that started this process's supervisor: the rank's driver or node agent.
inline int node_pid() {
  std::ifstream f("/proc/" + std::to_string(getppid()) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  // pid (comm) state ppid ...: the comm may hold spaces, so read after its closing paren.
  const auto close = stat.rfind(')');
  int ppid = 0;
  std::sscanf(stat.c_str() + close + 2, "%*c %d", &ppid);
  return ppid;
}

/// The rank (index in ray::nodes()) each node's pid belongs to.
inline std::map<int, int> ranks_by_pid() {
  std::map<int, int> out;
  for (const auto& n : ray::nodes()) out[n.pid] = n.rank;
  return out;
}

/// main: --coray-start-method=fork|spawn chooses the start method; 2 task workers a rank, and
/// an object store of 512 MiB on rank 0 and 128 MiB on each node.
inline int run(int argc, char** argv) {
  ray::enter_worker_if_spawned();
  for (int i = 1; i < argc; ++i) {
    std::string_view a(argv[i]);
    if (a.starts_with("--coray-start-method=")) setenv("CORAY_START_METHOD", argv[i] + 21, 1);
  }
  // Rank 0's store holds what the cases put; a node's is small enough that the copies it
  // keeps must be dropped as a case sends it more (Open MPI names a process's rank).
  const char* rank = std::getenv("OMPI_COMM_WORLD_RANK");
  const bool node = rank && std::atoi(rank) != 0;
  ray::runtime rt(
      argc, argv,
      {.num_workers = 2, .object_store_bytes = (node ? std::size_t{128} : std::size_t{512}) << 20});
  doctest::Context context(argc, argv);
  return context.run();
}

}  // namespace cluster_test
