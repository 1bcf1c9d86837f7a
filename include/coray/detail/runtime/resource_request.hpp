#pragma once
/// What a call or an actor needs of the runtime's resources (resource_request) and which GPUs
/// an acquisition took (resource_grant): what calls carry, apart from the ledger that grants
/// them (resource_ledger.hpp), which only the orchestrator uses.

#include <cmath>
#include <coray/errors.hpp>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// An amount of a resource, in 1/10,000 of a unit.
using resource_amount = std::int64_t;
inline constexpr resource_amount resource_unit = 10000;

/// `x` units as a resource_amount (rounded to the granularity); -1 for a negative, NaN or
/// too large amount, which the caller refuses.
inline resource_amount to_resource_amount(double x) noexcept {
  if (!(x >= 0) || x > 1e12) return -1;
  return static_cast<resource_amount>(std::llround(x * static_cast<double>(resource_unit)));
}
inline double from_resource_amount(resource_amount a) noexcept {
  return static_cast<double>(a) / static_cast<double>(resource_unit);
}

/// Where a call or an actor may run among a cluster's nodes (ray::scheduling_strategy): any
/// (this machine's processes first), spread over the nodes, on one node (`soft`: unless it
/// is gone or could never meet the requirement), or in a placement group's bundle (its
/// resources come from what the bundle reserved). Outside a cluster the one node is 0.
struct placement {
  std::int32_t node = -1;  // node_affinity's node; -1: none
  bool soft = false;
  bool spread = false;
  std::uint64_t group = 0;   // a placement group's id; 0: none
  std::int32_t bundle = -1;  // its bundle's index; -1: any of them

  bool operator==(const placement&) const = default;
  bool is_default() const noexcept { return node < 0 && !spread && group == 0; }
};

/// What a call or an actor needs: CPU, GPU and custom resources by name, and for a call where
/// it runs. The default is a task's ({CPU: 1}, anywhere), which the orchestrator schedules
/// without asking the ledger at all.
struct resource_request {
  resource_amount cpu = resource_unit;
  resource_amount gpu = 0;
  std::map<std::string, resource_amount> custom;  // only nonzero amounts
  placement where;                                // a call's; an actor's is its spawn's

  bool operator==(const resource_request&) const = default;
  bool is_default_task() const noexcept {
    return cpu == resource_unit && gpu == 0 && custom.empty() && where.is_default();
  }

  /// From user-facing amounts; throws invalid_resources for a negative or NaN amount.
  CORAY_API static resource_request from(double cpus, double gpus,
                                         const std::map<std::string, double>& res, const char* who);

  /// "{CPU: 2, GPU: 0.5, disk: 1}": for messages.
  CORAY_API std::string describe() const;
};

/// The resources of a cluster's node other than the driver's machine (resource_ledger's
/// terms).
struct node_resources {
  resource_amount num_cpus = 0;
  resource_amount num_gpus = 0;
  std::vector<std::string> gpu_ids = {};
  std::map<std::string, resource_amount> custom_resources = {};
};

/// How a placement group's bundles are spread over the nodes (Ray's strategies).
enum class bundle_strategy : std::uint32_t { pack, spread, strict_pack, strict_spread };

/// The GPUs an acquisition took: each GPU's index among the runtime's and the amount taken
/// of it. A fraction below one takes part of one GPU; a whole number takes whole GPUs.
struct resource_grant {
  std::vector<std::pair<std::uint32_t, resource_amount>> gpus;

  /// The GPUs as a bit mask of indices (the runtime has at most 32 GPUs).
  std::uint32_t gpu_mask() const noexcept {
    std::uint32_t m = 0;
    for (const auto& g : gpus) m |= std::uint32_t{1} << g.first;
    return m;
  }
};

}  // namespace detail
CORAY_END_NAMESPACE

#ifndef CORAY_COMPILED_LIB
#include <coray/detail/runtime/resource_request_impl.hpp>
#endif
