// resources.hpp alone: the runtime's resources and a task's GPUs.
#include <coray/resources.hpp>

namespace header_check_resources {

double uses() {
  double n = ray::cluster_resources().at("CPU") + ray::available_resources().at("CPU");
  return n + static_cast<double>(ray::get_gpu_ids().size());
}

}  // namespace header_check_resources
