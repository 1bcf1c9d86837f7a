#pragma once
/// Placement groups, as Ray's: bundles of resources reserved together, on one node or spread
/// over a cluster's nodes, for the tasks and actors placed in them. A group is reserved once
/// every bundle fits at the same time (until then it waits); each bundle then holds what it
/// asked of its node, and a call or actor placed in it takes its resources from the bundle,
/// not from the node's free resources.
///
///   ray::placement_group pg({{{"CPU", 1}, {"GPU", 1}}, {{"CPU", 1}}},
///                           ray::placement_strategy::strict_spread);
///   pg.wait(std::chrono::seconds(10));                // or co_await ray::get(pg.ready())
///   auto a = ray::spawn<trainer>({.num_gpus = 1, .scheduling_strategy = pg.bundle(0)});
///   auto r = ray::task<f>.options({.scheduling_strategy = pg.bundle(1)}).remote(x);
///   ray::remove_placement_group(pg);
///
/// Strategies: pack (all on one node if they fit, else as few as they can), spread (each on
/// another node where it can), strict_pack (all on one node, or the group waits),
/// strict_spread (each on a node of its own, or the group waits). A group no nodes could ever
/// hold is refused at once with ray::infeasible_resources. Driver only (as Ray's
/// placement_group(), called from the driver); handles may travel to tasks, whose calls and
/// spawns use them.

#include <chrono>
#include <coray/detail/runtime/driver.hpp>
#include <coray/detail/runtime/foreign.hpp>
#include <coray/detail/runtime/resource_request.hpp>
#include <coray/errors.hpp>
#include <coray/object_ref.hpp>
#include <coray/object_store.hpp>
#include <coray/task.hpp>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE

/// How a placement group's bundles go over the nodes.
enum class placement_strategy : std::uint32_t { pack, spread, strict_pack, strict_spread };

class placement_group {
 public:
  placement_group() = default;

  /// Creates the group of `bundles`, each what it holds by Ray's names ({"CPU": 1, "GPU": 1,
  /// "disk": 2}); it is reserved as soon as all of them fit (ready()).
  /// ray::invalid_resources for a bad amount, ray::infeasible_resources for a group the nodes
  /// could never hold.
  explicit placement_group(const std::vector<std::map<std::string, double>>& bundles,
                           placement_strategy strategy = placement_strategy::pack) {
    std::vector<detail::resource_request> requests;
    for (const auto& b : bundles) {
      std::map<std::string, double> custom;
      double cpus = 0, gpus = 0;
      for (const auto& [name, x] : b) {
        if (name == "CPU")
          cpus = x;
        else if (name == "GPU")
          gpus = x;
        else
          custom[name] = x;
      }
      requests.push_back(
          detail::resource_request::from(cpus, gpus, custom, "ray::placement_group"));
    }
    auto made = detail::on_loop("ray::placement_group", [&](detail::process& p) {
      return detail::require_driver(p, "ray::placement_group")
          .create_placement_group(std::move(requests),
                                  static_cast<detail::bundle_strategy>(strategy));
    });
    id_ = made.first;
    size_ = bundles.size();
    ready_ = object_ref<bool>(std::move(made.second));
  }

  std::uint64_t id() const noexcept { return id_; }
  std::size_t bundle_count() const noexcept { return size_; }

  /// A ref that becomes true once every bundle is reserved (fails if the group is removed
  /// first), as Ray's pg.ready().
  const object_ref<bool>& ready() const noexcept { return ready_; }

  /// Waits up to `timeout` for the group to be reserved; true if it is.
  bool wait(std::chrono::milliseconds timeout) const {
    try {
      return ray::get(ready_, {.timeout = timeout});
    } catch (const get_timeout&) {
      return false;
    }
  }

  /// Each bundle's node (its MPI rank; 0 outside a cluster) once reserved; empty before.
  std::vector<int> bundle_nodes() const {
    return detail::on_loop("ray::placement_group::bundle_nodes", [&](detail::process& p) {
      return detail::require_driver(p, "ray::placement_group::bundle_nodes")
          .placement_group_nodes(id_);
    });
  }

  /// Places a call or actor in bundle `index`, or in any of the group's bundles (-1), as
  /// Ray's PlacementGroupSchedulingStrategy.
  scheduling_strategy bundle(int index = -1) const noexcept {
    scheduling_strategy s;
    s.how = scheduling_strategy::kind::placement_group;
    s.group = id_;
    s.bundle = index;
    return s;
  }

  template <class Archive>
  void serialize(Archive& ar) {
    ar(id_, size_);
  }

 private:
  std::uint64_t id_ = 0;
  std::size_t size_ = 0;
  object_ref<bool> ready_;
};

/// Removes the group: its bundles' resources go back to their nodes, the actors placed in it
/// are killed and the calls waiting to run in it fail; calls running in it run to their end.
/// Driver only.
inline void remove_placement_group(const placement_group& pg) {
  detail::on_loop("ray::remove_placement_group", [&](detail::process& p) {
    detail::require_driver(p, "ray::remove_placement_group").remove_placement_group(pg.id());
  });
}

CORAY_END_NAMESPACE
