#pragma once
/// The orchestrator's placement groups (Ray's): bundles of resources reserved together on the
/// nodes by a strategy (pack, spread, strict_pack, strict_spread), then lent to the calls and
/// actors placed in them. A group waits until every bundle can be reserved at once; reserving
/// takes each bundle from its node's ledger, and the bundle keeps a ledger of its own
/// (resource_ledger::bundle) that the calls and actors in it lease from, with the node's GPU
/// indices. Its answers are decisions; the orchestrator acts on them. Driver only, loop thread
/// only.

#include <fmt/format.h>

#include <coray/detail/runtime/object_state.hpp>
#include <coray/detail/runtime/resource_ledger.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

struct placed_bundle {
  std::uint32_t node = 0;
  resource_grant grant;    // what the bundle took of its node's ledger
  resource_ledger ledger;  // what it lends to the calls and actors in it
};

struct placement_group_entry {
  std::uint64_t id = 0;
  bundle_strategy strategy = bundle_strategy::pack;
  std::vector<resource_request> bundles;
  std::vector<placed_bundle> placed;  // one per bundle once reserved; empty while pending
  bool removed = false;
  state_ptr ready;          // true once reserved; failed if removed before
  std::uint32_t users = 0;  // leases, loans and actors holding a bundle's resources

  bool pending() const noexcept { return !removed && placed.empty(); }

  /// The reserved bundle a call or actor takes: among those `accept`s (and only bundle
  /// `named`, when it is not -1), the first that `fits` now, else the first that `could`
  /// ever hold it, else the first; null when none is accepted.
  template <class Accept, class Fits, class Could>
  placed_bundle* choose(std::int32_t named, Accept&& accept, Fits&& fits, Could&& could) {
    placed_bundle *possible = nullptr, *first = nullptr;
    for (std::size_t b = 0; b < placed.size(); ++b) {
      placed_bundle& pb = placed[b];
      if ((named >= 0 && b != static_cast<std::size_t>(named)) || !accept(pb)) continue;
      if (fits(pb)) return &pb;
      if (!possible && could(pb)) possible = &pb;
      if (!first) first = &pb;
    }
    return possible ? possible : first;
  }
};

class placement_group_table {
 public:
  /// A node's ledger and the CPU its task workers hold besides (call_pump's view).
  using node_view = std::function<std::pair<resource_ledger*, resource_amount>(std::uint32_t)>;

  placement_group_entry& add(bundle_strategy s, std::vector<resource_request> bundles,
                             state_ptr ready) {
    placement_group_entry& g = groups_[next_id_];
    g.id = next_id_++;
    g.strategy = s;
    g.bundles = std::move(bundles);
    g.ready = std::move(ready);
    return g;
  }
  placement_group_entry* find(std::uint64_t id) noexcept {
    auto it = groups_.find(id);
    return it == groups_.end() ? nullptr : &it->second;
  }
  const placement_group_entry* find(std::uint64_t id) const noexcept {
    auto it = groups_.find(id);
    return it == groups_.end() ? nullptr : &it->second;
  }
  bool any_pending() const noexcept { return pending_ != 0; }
  void count_pending(int delta) noexcept { pending_ += delta; }

  /// Why `bundles` under `s` could never be reserved on nodes with these ledgers, or nullopt.
  static std::optional<std::string> why_never(const std::vector<resource_request>& bundles,
                                              bundle_strategy s,
                                              const std::vector<resource_ledger>& nodes) {
    if (bundles.empty()) return "it has no bundle";
    for (std::size_t i = 0; i < bundles.size(); ++i) {
      const resource_request& b = bundles[i];
      if (b.cpu == 0 && b.gpu == 0 && b.custom.empty())
        return fmt::format("bundle {} asks for nothing", i);
      bool somewhere = false;
      for (const auto& l : nodes) somewhere |= !l.refuse(b);
      if (!somewhere)
        return fmt::format("no node could ever hold bundle {}: {}", i, *nodes[0].refuse(b));
    }
    if (s == bundle_strategy::strict_spread && bundles.size() > nodes.size())
      return fmt::format(
          "strict_spread puts each of its {} bundles on a node of its own, and "
          "the runtime has {} node{}",
          bundles.size(), nodes.size(), nodes.size() == 1 ? "" : "s");
    if (s == bundle_strategy::strict_pack) {
      resource_request sum{0, 0, {}, {}};
      for (const auto& b : bundles) {
        sum.cpu += b.cpu;
        sum.gpu += b.gpu;
        for (const auto& [name, a] : b.custom) sum.custom[name] += a;
      }
      bool one = false;
      for (const auto& l : nodes) one |= !l.refuse(sum);
      if (!one)
        return fmt::format(
            "strict_pack puts its bundles ({} in all) on one node, and no node "
            "could ever hold them: {}",
            sum.describe(), *nodes[0].refuse(sum));
    }
    return std::nullopt;
  }

  /// Reserves group `g`'s bundles if they all fit now, by its strategy; true if it did.
  static bool try_place(placement_group_entry& g, std::uint32_t nodes, const node_view& view) {
    const std::size_t n = g.bundles.size();
    std::vector<std::uint32_t> where(n, 0);
    std::vector<std::optional<resource_grant>> grants(n);
    auto undo = [&](std::size_t upto) {
      for (std::size_t i = 0; i < upto; ++i)
        if (grants[i]) view(where[i]).first->release(g.bundles[i], *grants[i]);
    };
    auto take = [&](std::size_t i, std::uint32_t node) {
      auto [ledger, busy] = view(node);
      if (!ledger) return false;
      grants[i] = ledger->acquire(g.bundles[i], busy);
      if (!grants[i]) return false;
      where[i] = node;
      return true;
    };
    auto all_on = [&](std::uint32_t node) {
      for (std::size_t i = 0; i < n; ++i)
        if (!take(i, node)) {
          undo(i);
          std::fill(grants.begin(), grants.end(), std::nullopt);
          return false;
        }
      return true;
    };
    bool done = false;
    if (g.strategy == bundle_strategy::pack || g.strategy == bundle_strategy::strict_pack)
      for (std::uint32_t node = 0; node < nodes && !done; ++node) done = all_on(node);
    if (!done && g.strategy != bundle_strategy::strict_pack) {
      // Bundle by bundle: spread ones each on the next node not used yet where they can (strict:
      // only such), packed ones on the node of the bundle before where they can.
      const bool spread =
          g.strategy == bundle_strategy::spread || g.strategy == bundle_strategy::strict_spread;
      std::vector<bool> used(nodes, false);
      done = true;
      for (std::size_t i = 0; i < n && done; ++i) {
        bool ok = false;
        const std::uint32_t start = i == 0 ? 0 : (spread ? where[i - 1] + 1 : where[i - 1]);
        for (int pass = 0; pass < 2 && !ok; ++pass) {
          if (pass == 1 && g.strategy == bundle_strategy::strict_spread) break;
          for (std::uint32_t k = 0; k < nodes && !ok; ++k) {
            const std::uint32_t node = (start + k) % nodes;
            if (pass == 0 && spread && used[node]) continue;
            ok = take(i, node);
          }
        }
        if (ok) used[where[i]] = true;
        done = ok;
        if (!ok) undo(i);
      }
    }
    if (!done) return false;
    for (std::size_t i = 0; i < n; ++i) {
      const resource_ledger& node = *view(where[i]).first;
      g.placed.push_back({where[i], *grants[i],
                          resource_ledger::bundle(g.bundles[i], *grants[i], node.gpu_ids())});
    }
    return true;
  }

  template <class F>
  void for_each_pending(F&& f) {
    for (auto& [id, g] : groups_)
      if (g.pending()) f(g);
  }

  /// Forgets a removed group once nothing holds its bundles' resources.
  void forget_if_done(placement_group_entry& g) {
    if (g.removed && g.users == 0) groups_.erase(g.id);
  }

 private:
  std::map<std::uint64_t, placement_group_entry> groups_;
  std::uint64_t next_id_ = 1;
  int pending_ = 0;
};

}  // namespace detail
CORAY_END_NAMESPACE
