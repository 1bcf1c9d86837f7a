// Placement across a cluster's nodes, under `mpirun` as 3 ranks with resources of their own
// (tests/cluster/CMakeLists.txt starts them with MPMD app contexts): rank 0 has only CPUs,
// rank 1 also 2 units of a custom resource `disk`, rank 2 also 2 GPUs. Calls and actors go
// where their resources are and where their scheduling strategy says; actors live on any
// node, and their handles work from every node.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <coray/coray.hpp>
#include <coray/mpi.hpp>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "cluster_test.hpp"

namespace {

using cluster_test::node_pid;
using cluster_test::ranks_by_pid;

/// Holds its worker a while (so calls made together need several workers), then says where
/// it ran.
int node_after(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return node_pid();
}

/// Where it ran, and the GPUs it was given.
std::pair<int, std::vector<std::string>> node_and_gpus(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return {node_pid(), ray::get_gpu_ids()};
}

struct tenant {
  int n = 0;
  int where() const { return node_pid(); }
  int add(int by) { return n += by; }
  std::string gpus() const {
    const char* v = std::getenv("CUDA_VISIBLE_DEVICES");
    return v ? v : "";
  }
  int die() {
    raise(SIGKILL);
    return 0;
  }
};

/// From a task on whatever node: a call to the actor.
int add_from(ray::actor<tenant> t, int by) {
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ray::get(t.call<&tenant::add>(by));
  return node_pid();
}

/// From a task: an actor spawned there, on node `node`; where it lives.
int spawn_on(int node) {
  auto t = ray::spawn<tenant>({.scheduling_strategy = ray::node_affinity(node)});
  return ray::get(t.call<&tenant::where>());
}

int rank_of(int pid) { return ranks_by_pid().at(pid); }

}  // namespace

TEST_CASE("ray::nodes gives each node's own resources, and the cluster's are their sum") {
  const auto nodes = ray::nodes();
  REQUIRE(nodes.size() == 3);
  CHECK(nodes[0].resources.count("disk") == 0);
  CHECK(nodes[0].resources.count("GPU") == 0);
  CHECK(nodes[1].resources.at("disk") == 2);
  CHECK(nodes[1].resources.count("GPU") == 0);
  CHECK(nodes[2].resources.at("GPU") == 2);
  CHECK(nodes[2].resources.count("disk") == 0);
  const auto all = ray::cluster_resources();
  CHECK(all.at("disk") == 2);
  CHECK(all.at("GPU") == 2);
  CHECK(all.at("CPU") == doctest::Approx(nodes[0].cpus + nodes[1].cpus + nodes[2].cpus));
}

TEST_CASE("a task asking for a node's custom resource runs on that node") {
  std::vector<ray::object_ref<int>> refs;
  for (int i = 0; i < 4; ++i)
    refs.push_back(ray::task<node_after>.options({.resources = {{"disk", 1}}}).remote(20));
  for (auto& r : refs) CHECK(rank_of(ray::get(r).get()) == 1);
}

TEST_CASE("tasks asking for GPUs run on the node with GPUs, each given its own") {
  std::vector<ray::object_ref<std::pair<int, std::vector<std::string>>>> refs;
  for (int i = 0; i < 2; ++i)
    refs.push_back(ray::task<node_and_gpus>.options({.num_gpus = 1}).remote(200));
  std::set<std::string> ids;
  for (auto& r : refs) {
    auto [pid, gpus] = ray::get(r).get();
    CHECK(rank_of(pid) == 2);
    REQUIRE(gpus.size() == 1);
    ids.insert(gpus[0]);
  }
  CHECK(ids == std::set<std::string>{"0", "1"});
}

TEST_CASE("node affinity: hard runs only there, soft falls back, an unknown node is refused") {
  std::vector<ray::object_ref<int>> refs;
  for (int i = 0; i < 6; ++i)
    refs.push_back(
        ray::task<node_after>.options({.scheduling_strategy = ray::node_affinity(2)}).remote(20));
  for (auto& r : refs) CHECK(rank_of(ray::get(r).get()) == 2);

  CHECK_THROWS_AS(
      ray::get(
          ray::task<node_after>.options({.scheduling_strategy = ray::node_affinity(7)}).remote(0))
          .get(),
      ray::infeasible_resources);
  auto soft = ray::task<node_after>.options({.scheduling_strategy = ray::node_affinity(7, true)});
  CHECK(ranks_by_pid().count(ray::get(soft.remote(0)).get()) == 1);

  // Node 1 has no GPU: hard affinity can never run there; soft runs where the GPUs are.
  CHECK_THROWS_AS(ray::get(ray::task<node_after>
                               .options({.num_gpus = 1,
                                         .scheduling_strategy = ray::node_affinity(1)})
                               .remote(0))
                      .get(),
                  ray::infeasible_resources);
  auto gpu_soft = ray::task<node_after>.options(
      {.num_gpus = 1, .scheduling_strategy = ray::node_affinity(1, true)});
  CHECK(rank_of(ray::get(gpu_soft.remote(0)).get()) == 2);
}

TEST_CASE("spread: calls made together go to every node in turn") {
  std::vector<ray::object_ref<int>> refs;
  for (int i = 0; i < 6; ++i)
    refs.push_back(ray::task<node_after>.options({.scheduling_strategy = ray::spread}).remote(100));
  std::map<int, int> per_rank;
  for (auto& r : refs) ++per_rank[rank_of(ray::get(r).get())];
  CHECK(per_rank == std::map<int, int>{{0, 2}, {1, 2}, {2, 2}});
}

TEST_CASE("actors live on the node their resources or affinity name") {
  auto by_default = ray::spawn<tenant>();
  CHECK(ray::get(by_default.call<&tenant::where>()).get() == getpid());  // this machine first

  auto with_disk = ray::spawn<tenant>({.resources = {{"disk", 1}}});
  CHECK(rank_of(ray::get(with_disk.call<&tenant::where>()).get()) == 1);

  auto with_gpu = ray::spawn<tenant>({.num_gpus = 1});
  CHECK(rank_of(ray::get(with_gpu.call<&tenant::where>()).get()) == 2);
  const std::string visible = ray::get(with_gpu.call<&tenant::gpus>());
  CHECK((visible == "0" || visible == "1"));

  auto pinned = ray::spawn<tenant>({.scheduling_strategy = ray::node_affinity(2)});
  CHECK(rank_of(ray::get(pinned.call<&tenant::where>()).get()) == 2);
  // The state API says where each actor and worker runs.
  for (const auto& a : ray::state::list_actors())
    if (a.id == pinned.id()) CHECK(a.node == 2);
  std::map<int, int> workers_per_node;
  for (const auto& w : ray::state::list_workers())
    if (w.kind == ray::state::worker_kind::task_worker) ++workers_per_node[w.node];
  CHECK(workers_per_node == std::map<int, int>{{0, 2}, {1, 2}, {2, 2}});

  CHECK_THROWS_AS(ray::spawn<tenant>(
                      {.resources = {{"disk", 1}}, .scheduling_strategy = ray::node_affinity(2)}),
                  ray::infeasible_resources);
  CHECK_THROWS_AS(ray::spawn<tenant>({.scheduling_strategy = ray::node_affinity(9)}),
                  ray::infeasible_resources);
}

TEST_CASE("spread actors take a node each") {
  std::vector<ray::actor<tenant>> actors;
  for (int i = 0; i < 3; ++i)
    actors.push_back(ray::spawn<tenant>({.scheduling_strategy = ray::spread}));
  std::set<int> ranks;
  for (auto& a : actors) ranks.insert(rank_of(ray::get(a.call<&tenant::where>()).get()));
  CHECK(ranks == std::set<int>{0, 1, 2});
}

TEST_CASE("an actor on another node keeps its state across calls from every node") {
  auto t = ray::spawn<tenant>({.scheduling_strategy = ray::node_affinity(1)});
  int expected = 0;
  std::set<int> from;
  for (int round = 0; round < 10 && from.size() < 3; ++round) {
    std::vector<ray::object_ref<int>> refs;
    for (int i = 0; i < 6; ++i) {
      refs.push_back(ray::task<add_from>.remote(t, 2));
      expected += 2;
    }
    for (auto& r : refs) from.insert(rank_of(ray::get(r).get()));
  }
  CHECK(from.size() == 3);
  CHECK(ray::get(t.call<&tenant::add>(1)).get() == expected + 1);
}

TEST_CASE("an actor spawned inside a task on another node lands where it asks") {
  CHECK(
      rank_of(
          ray::get(
              ray::task<spawn_on>.options({.scheduling_strategy = ray::node_affinity(1)}).remote(2))
              .get()) == 2);
}

TEST_CASE("a remote actor that dies is restarted on its node, and a killed one fails its calls") {
  auto t = ray::spawn<tenant>({.max_restarts = 1, .scheduling_strategy = ray::node_affinity(2)});
  CHECK(ray::get(t.call<&tenant::add>(5)).get() == 5);
  CHECK_THROWS_AS(ray::get(t.call<&tenant::die>()).get(), ray::actor_died);
  CHECK(ray::get(t.call<&tenant::add>(1)).get() == 1);  // rebuilt: its state is new
  CHECK(rank_of(ray::get(t.call<&tenant::where>()).get()) == 2);

  auto k = ray::spawn<tenant>({.scheduling_strategy = ray::node_affinity(1)});
  CHECK(ray::get(k.call<&tenant::add>(1)).get() == 1);
  ray::kill(k);
  CHECK_THROWS_AS(ray::get(k.call<&tenant::add>(1)).get(), ray::actor_died);
}

TEST_CASE("a strict_spread placement group puts a bundle on each node, and calls follow it") {
  ray::placement_group pg({{{"CPU", 1}}, {{"CPU", 1}}, {{"CPU", 1}}},
                          ray::placement_strategy::strict_spread);
  REQUIRE(pg.wait(std::chrono::seconds(60)));
  const std::vector<int> nodes = pg.bundle_nodes();
  CHECK(std::set<int>(nodes.begin(), nodes.end()) == std::set<int>{0, 1, 2});
  for (int b = 0; b < 3; ++b) {
    auto on = ray::task<node_after>.options({.scheduling_strategy = pg.bundle(b)});
    CHECK(rank_of(ray::get(on.remote(0)).get()) == nodes[static_cast<std::size_t>(b)]);
  }
  auto t = ray::spawn<tenant>({.num_cpus = 1, .scheduling_strategy = pg.bundle(1)});
  CHECK(rank_of(ray::get(t.call<&tenant::where>()).get()) == nodes[1]);
  ray::remove_placement_group(pg);
  CHECK_THROWS_AS(ray::get(t.call<&tenant::where>()).get(), ray::actor_died);
}

TEST_CASE("a packed placement group asking for GPUs and disk is reserved where they are") {
  ray::placement_group pg({{{"GPU", 1}}, {{"disk", 1}}}, ray::placement_strategy::pack);
  REQUIRE(pg.wait(std::chrono::seconds(60)));
  CHECK(pg.bundle_nodes() == std::vector<int>{2, 1});  // no node has both: each where it can
  CHECK_THROWS_AS(
      ray::placement_group({{{"GPU", 1}}, {{"disk", 1}}}, ray::placement_strategy::strict_pack),
      ray::infeasible_resources);
  auto in_gpu = ray::task<node_and_gpus>.options(
      {.num_cpus = 0, .num_gpus = 1, .scheduling_strategy = pg.bundle(0)});
  auto [pid, gpus] = ray::get(in_gpu.remote(0)).get();
  CHECK(rank_of(pid) == 2);
  CHECK(gpus.size() == 1);
  ray::remove_placement_group(pg);
}

int main(int argc, char** argv) { return cluster_test::run(argc, argv); }
