// mpi.hpp alone: a runtime that joins the MPI job's ranks, and the nodes it lists.
#include <coray/mpi.hpp>

namespace header_check_mpi {

std::size_t uses(int argc, char** argv) {
  ray::runtime rt(argc, argv);
  return ray::nodes().size();
}

}  // namespace header_check_mpi
