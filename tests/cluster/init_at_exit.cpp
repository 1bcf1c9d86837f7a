// ray::init() under mpiexec, never shut down: the runtime ends at exit, before MPI does, and
// its nodes with it. Exits 0 only if the calls ran on the cluster and the exit was clean
// (a crash at exit makes mpiexec fail the job).
#include <coray/coray.hpp>
#include <coray/mpi.hpp>
#include <cstdio>

namespace {
int plus_one(int x) { return x + 1; }
}  // namespace

int main() {
  ray::init({.num_workers = 1});
  int sum = 0;
  for (int i = 0; i < 20; ++i) sum += ray::get(ray::task<plus_one>.remote(i)).get();
  const std::size_t nodes = ray::nodes().size();
  std::printf("init_at_exit: sum %d over %zu nodes\n", sum, nodes);
  return sum == 210 && nodes == 3 ? 0 : 1;
}
