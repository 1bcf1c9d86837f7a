// Rank 0 of a 3-rank job kills node 2's agent with SIGKILL while calls run on every node,
// then waits for them. Under Open MPI 4 (no process-fault tolerance) the job ends: mpiexec
// sees the rank die and aborts every other. node_loss.py checks that it ends, names the node,
// and leaves no process behind.
#include <signal.h>

#include <chrono>
#include <coray/coray.hpp>
#include <coray/mpi.hpp>
#include <cstdio>
#include <thread>
#include <vector>

namespace {
int slow(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return 1;
}
}  // namespace

int main(int argc, char** argv) {
  ray::runtime rt(argc, argv, {.num_workers = 2});
  const auto nodes = ray::nodes();
  if (nodes.size() != 3) {
    std::fprintf(stderr, "node_loss: %zu nodes, not 3\n", nodes.size());
    return 2;
  }
  std::vector<ray::object_ref<int>> refs;
  for (int i = 0; i < 12; ++i) refs.push_back(ray::task<slow>.remote(200));
  std::printf("node_loss: killing rank %d (pid %d)\n", nodes[2].rank, nodes[2].pid);
  std::fflush(stdout);
  kill(nodes[2].pid, SIGKILL);
  int done = 0;
  for (auto& r : refs) {
    try {
      done += ray::get(r).get();
    } catch (const ray::error& e) {
      std::printf("node_loss: a call failed: %s\n", e.what());
    }
  }
  std::printf("node_loss: %d calls returned\n", done);
  std::fflush(stdout);
  // The job should have ended before this point; if the MPI library keeps the survivors
  // going, this run ends here, and the test reads what it printed.
  return 0;
}
