#pragma once
/// The runtime's resources and who holds them: totals by name (`CPU`, `GPU` and custom
/// ones), what is free, and the GPUs by id with the fraction of each that is free. A
/// requirement (`resource_request`) is checked once when a call or actor is made (refuse:
/// bad or never satisfiable) and then acquired and released as a whole; acquiring GPUs
/// says which ones (`resource_grant`). Amounts are fixed point (1/10,000, Ray's
/// granularity), so fractions add up exactly.
///
/// Knows nothing of processes or messages: the orchestrator decides who holds what (a
/// worker's lease, an actor for life), and a cluster scheduler can keep one per node.
/// Driver only, loop thread only.

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <coray/detail/runtime/resource_request.hpp>
#include <coray/errors.hpp>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// The runtime's resources: what it has and what is free.
class resource_ledger {
 public:
  /// The most GPUs a runtime may have (their indices travel as a 32-bit mask).
  static constexpr std::size_t max_gpus = 32;

  resource_ledger() = default;
  /// `cpus` and `gpus` as amounts; `gpu_ids` names each GPU (CUDA_VISIBLE_DEVICES's
  /// values), one per started unit of `gpus` (a runtime may have 0.5 of a GPU, as Ray's may).
  resource_ledger(resource_amount cpus, resource_amount gpus, std::vector<std::string> gpu_ids,
                  std::map<std::string, resource_amount> custom)
      : cpu_total_(cpus),
        cpu_free_(cpus),
        gpu_total_(gpus),
        gpu_ids_(std::move(gpu_ids)),
        custom_total_(std::move(custom)),
        custom_free_(custom_total_) {
    for (std::size_t i = 0; i < gpu_ids_.size(); ++i)
      gpu_free_.push_back(std::clamp<resource_amount>(
          gpus - static_cast<resource_amount>(i) * resource_unit, 0, resource_unit));
  }

  /// A placement group's bundle: what `r` took of a node's ledger as grant `g`, lent again
  /// to the calls and actors placed in the bundle. Its GPUs keep the node's indices (and
  /// `node_gpu_ids`), so a grant from it names the node's GPUs.
  static resource_ledger bundle(const resource_request& r, const resource_grant& g,
                                const std::vector<std::string>& node_gpu_ids) {
    resource_ledger l;
    l.cpu_total_ = l.cpu_free_ = r.cpu;
    l.gpu_total_ = r.gpu;
    l.gpu_ids_ = node_gpu_ids;
    l.gpu_free_.assign(node_gpu_ids.size(), 0);
    for (const auto& [i, a] : g.gpus) l.gpu_free_[i] = a;
    l.custom_total_ = l.custom_free_ = r.custom;
    return l;
  }

  const std::vector<std::string>& gpu_ids() const noexcept { return gpu_ids_; }
  resource_amount cpu_total() const noexcept { return cpu_total_; }
  /// CPU the ledger has not handed out (task workers' CPU is not among what it counts).
  resource_amount cpu_free() const noexcept { return cpu_free_; }

  /// Why `r` can never be met by this runtime (an unknown resource, more than it has, a
  /// fraction above one that is not whole), or nullopt if it can.
  std::optional<std::string> refuse(const resource_request& r) const {
    auto more = [&](std::string_view what) {
      return fmt::format("it asks for {} {}, and the runtime has {}", r.describe(), what,
                         describe_totals());
    };
    if (r.cpu > cpu_total_) return more("(more CPU than it has)");
    if (r.gpu > 0 && gpu_total_ == 0) return more("(a GPU, and it has none)");
    if (r.gpu > gpu_total_) return more("(more GPU than it has)");
    if (r.gpu > resource_unit && r.gpu % resource_unit != 0)
      return more("(a fraction of GPUs above 1 must be a whole number)");
    for (const auto& [name, a] : r.custom) {
      auto it = custom_total_.find(name);
      if (it == custom_total_.end())
        return more(fmt::format("(the resource '{}' is unknown to it)", name));
      if (a > it->second) return more(fmt::format("(more '{}' than it has)", name));
    }
    return std::nullopt;
  }

  /// Takes `r` if it is free now, with `cpu_in_use` CPU held besides what the ledger
  /// counts (task workers' CPU, which follows their load); nullopt if not. With `take_cpu`
  /// false the CPU is checked but not taken (the caller counts it). `r` must have passed
  /// refuse().
  std::optional<resource_grant> acquire(const resource_request& r, resource_amount cpu_in_use = 0,
                                        bool take_cpu = true) {
    if (!fits(r, cpu_in_use)) return std::nullopt;
    resource_grant g;
    if (r.gpu > 0 && !pick_gpus(r.gpu, g)) return std::nullopt;
    if (take_cpu) cpu_free_ -= r.cpu;
    for (const auto& [name, a] : r.custom) custom_free_[name] -= a;
    for (const auto& [i, a] : g.gpus) gpu_free_[i] -= a;
    return g;
  }

  /// Whether acquire(r, cpu_in_use) would succeed now (takes nothing).
  bool fits(const resource_request& r, resource_amount cpu_in_use = 0) const {
    if (cpu_free_ - cpu_in_use < r.cpu) return false;
    for (const auto& [name, a] : r.custom) {
      auto it = custom_free_.find(name);
      if (it == custom_free_.end() || it->second < a) return false;
    }
    resource_grant g;
    return r.gpu == 0 || pick_gpus(r.gpu, g);
  }

  /// Gives back what acquire(r, ..., take_cpu) took as `g`.
  void release(const resource_request& r, const resource_grant& g, bool take_cpu = true) {
    if (take_cpu) cpu_free_ += r.cpu;
    for (const auto& [name, a] : r.custom) custom_free_[name] += a;
    for (const auto& [i, a] : g.gpus) gpu_free_[i] += a;
  }

  /// Ray's names and amounts: {"CPU": n, "GPU": n, custom...}. `cpu_in_use` as for acquire.
  std::map<std::string, double> totals() const {
    std::map<std::string, double> m{{"CPU", from_resource_amount(cpu_total_)}};
    if (gpu_total_) m["GPU"] = from_resource_amount(gpu_total_);
    for (const auto& [name, a] : custom_total_) m[name] = from_resource_amount(a);
    return m;
  }
  std::map<std::string, double> available(resource_amount cpu_in_use = 0) const {
    std::map<std::string, double> m{
        {"CPU", from_resource_amount(std::max<resource_amount>(0, cpu_free_ - cpu_in_use))}};
    if (gpu_total_) {
      resource_amount gpu = 0;
      for (resource_amount a : gpu_free_) gpu += a;
      m["GPU"] = from_resource_amount(gpu);
    }
    for (const auto& [name, a] : custom_free_) m[name] = from_resource_amount(a);
    return m;
  }

 private:
  /// Chooses GPUs for `amount`: a fraction goes to the GPU that has least room left that
  /// still fits it (packing fractions together), a whole number to wholly free GPUs.
  bool pick_gpus(resource_amount amount, resource_grant& g) const {
    if (amount < resource_unit) {
      std::optional<std::uint32_t> best;
      for (std::uint32_t i = 0; i < gpu_free_.size(); ++i)
        if (gpu_free_[i] >= amount && (!best || gpu_free_[i] < gpu_free_[*best])) best = i;
      if (!best) return false;
      g.gpus.emplace_back(*best, amount);
      return true;
    }
    resource_amount need = amount / resource_unit;
    for (std::uint32_t i = 0; i < gpu_free_.size() && need > 0; ++i)
      if (gpu_free_[i] == resource_unit) {
        g.gpus.emplace_back(i, resource_unit);
        --need;
      }
    return need == 0;
  }

  std::string describe_totals() const {
    std::string s = fmt::format("{{CPU: {}, GPU: {}", from_resource_amount(cpu_total_),
                                from_resource_amount(gpu_total_));
    for (const auto& [name, a] : custom_total_)
      s += fmt::format(", {}: {}", name, from_resource_amount(a));
    return s + "}";
  }

  resource_amount cpu_total_ = 0, cpu_free_ = 0, gpu_total_ = 0;
  std::vector<std::string> gpu_ids_;
  std::vector<resource_amount> gpu_free_;  // per GPU (the last may have less than a unit)
  std::map<std::string, resource_amount> custom_total_, custom_free_;
};

}  // namespace detail
CORAY_END_NAMESPACE
