// placement_group.hpp alone: reserving bundles and placing a call in one.
#include <coray/placement_group.hpp>

namespace header_check_placement_group {

std::size_t uses() {
  ray::placement_group pg({{{"CPU", 1}}}, ray::placement_strategy::strict_pack);
  const ray::scheduling_strategy in = pg.bundle(0);
  const bool ready = pg.wait(std::chrono::milliseconds(1));
  ray::remove_placement_group(pg);
  return pg.bundle_nodes().size() + static_cast<std::size_t>(in.bundle) + (ready ? 1 : 0);
}

}  // namespace header_check_placement_group
