// Resources: the runtime's CPUs, GPUs and custom resources, what tasks and actors hold, and
// the GPUs they run with (issue 13). GPUs are declared (num_gpus = 4): no GPU is needed.
#include <doctest/doctest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <coray/coray.hpp>
#include <coray/detail/runtime/resource_ledger.hpp>
#include <cstdlib>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "serve_until.hpp"

namespace {

using ray::detail::resource_amount;
using ray::detail::resource_grant;
using ray::detail::resource_ledger;
using ray::detail::resource_request;
using ray::detail::resource_unit;

resource_request needs(double cpus, double gpus, std::map<std::string, double> custom = {}) {
  return resource_request::from(cpus, gpus, custom, "test");
}

/// What a task or actor sees of its GPUs: get_gpu_ids() and CUDA_VISIBLE_DEVICES.
struct gpu_view {
  std::vector<std::string> ids;
  std::string env;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(ids, env);
  }
};

gpu_view seen_gpus() {
  const char* env = std::getenv("CUDA_VISIBLE_DEVICES");
  return {ray::get_gpu_ids(), env ? env : "(unset)"};
}

gpu_view gpus_of_task() { return seen_gpus(); }

/// Meets the other party at the barrier (so both run at once), then reports its GPUs.
gpu_view gpus_together(ray::barrier b) {
  b.wait();
  return seen_gpus();
}

/// Marks itself running, waits for `go`, and marks itself done.
int hold_until(ray::shared_value<int> running, ray::event go) {
  running.store(1);
  go.wait();
  running.store(0);
  return 1;
}
/// Whether the call above was running when this one started.
int other_running(ray::shared_value<int> running) { return running.load(); }

/// Publishes its pid, then waits for ever (until killed).
int hold_and_report(ray::shared_value<int> pid, ray::event never) {
  pid.store(static_cast<int>(getpid()));
  never.wait();
  return 0;
}

int one() { return 1; }
int calls_one_with_a_gpu() { return ray::get(ray::task<one>.options({.num_gpus = 1}).remote()); }
int parent_of_one() { return ray::get(ray::task<one>.remote()) + 1; }

/// What a task given GPUs sees before, while and after it waits on a child given one GPU.
struct nested_gpu_views {
  gpu_view before, child, after;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(before, child, after);
  }
};
nested_gpu_views parent_of_a_gpu_child() {
  nested_gpu_views v;
  v.before = seen_gpus();
  v.child = ray::get(ray::task<gpus_of_task>.options({.num_gpus = 1}).remote());
  v.after = seen_gpus();
  return v;
}

/// The error a call given `o` fails with when made from a task.
std::string error_of_nested(double gpus, std::string custom) {
  ray::task_options o{.num_gpus = gpus};
  if (!custom.empty()) o.resources = {{custom, 1}};
  try {
    (void)ray::get(ray::task<one>.options(o).remote());
  } catch (const ray::infeasible_resources& e) {
    return e.what();
  }
  return "no infeasible_resources";
}

/// An actor that starts tasks given a custom resource.
struct disk_user {
  /// Starts hold_until given one `disk` and returns its result's ref at once.
  ray::object_ref<int> start(ray::shared_value<int> running, ray::event go) {
    return ray::task<hold_until>.options({.resources = {{"disk", 1}}}).remote(running, go);
  }
  /// Calls a task given `amount` of `name`, and waits for it.
  int call_with(std::string name, double amount) {
    return ray::get(ray::task<one>.options({.resources = {{name, amount}}}).remote());
  }
  gpu_view gpu_child() {
    return ray::get(ray::task<gpus_of_task>.options({.num_gpus = 1}).remote());
  }
};

/// Marks itself running and spins (never blocking, so it keeps its CPU) until `go`.
int hold_spinning(ray::shared_value<int> running, ray::shared_value<int> go) {
  running.store(1);
  while (go.load() == 0) std::this_thread::yield();
  running.store(0);
  return 1;
}

/// Records, when built, whether the task it waited for was still running.
struct placed_after {
  explicit placed_after(ray::shared_value<int> running) : saw(running.load()) {}
  int seen() const { return saw; }
  int saw;
};

struct gpu_holder {
  gpu_view gpus() const { return seen_gpus(); }
};

/// The test runs as on a machine where CUDA_VISIBLE_DEVICES is unset (the runtime's GPUs are
/// then those declared, numbered from 0 on a machine without any); restored after.
struct without_visible_devices {
  without_visible_devices() {
    if (const char* v = std::getenv("CUDA_VISIBLE_DEVICES")) was = v;
    unsetenv("CUDA_VISIBLE_DEVICES");
  }
  ~without_visible_devices() {
    if (was)
      setenv("CUDA_VISIBLE_DEVICES", was->c_str(), 1);
    else
      unsetenv("CUDA_VISIBLE_DEVICES");
  }
  std::optional<std::string> was;
};

template <class E, class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  FAIL("no error of the expected type");
  return {};
}

}  // namespace

// ---- the ledger, on its own -------------------------------------------------------------

TEST_CASE("the ledger packs fractions onto one GPU and gives whole GPUs whole") {
  resource_ledger l(4 * resource_unit, 2 * resource_unit, {"0", "1"}, {});
  auto half = needs(0, 0.5), whole = needs(0, 1);
  auto a = l.acquire(half), b = l.acquire(half);
  REQUIRE(a);
  REQUIRE(b);
  CHECK(a->gpus == b->gpus);  // the two halves share GPU 0
  auto c = l.acquire(whole);
  REQUIRE(c);
  CHECK(c->gpu_mask() == 2u);
  CHECK_FALSE(l.acquire(needs(0, 0.1)));  // nothing left, not even a tenth
  l.release(half, *a);
  CHECK_FALSE(l.acquire(whole));  // half of GPU 0 is still held
  auto d = l.acquire(needs(0, 0.25));
  REQUIRE(d);
  CHECK(d->gpu_mask() == 1u);
  l.release(half, *b);
  l.release(needs(0, 0.25), *d);
  l.release(whole, *c);
  CHECK(l.available() == l.totals());
}

TEST_CASE("the ledger counts CPU and custom resources and sees CPU held outside it") {
  resource_ledger l(2 * resource_unit, 0, {}, {{"disk", 2 * resource_unit}});
  auto r = needs(1, 0, {{"disk", 1.5}});
  auto g = l.acquire(r);
  REQUIRE(g);
  CHECK_FALSE(l.acquire(r));  // 0.5 disk left
  CHECK(l.available() == std::map<std::string, double>{{"CPU", 1}, {"disk", 0.5}});
  CHECK_FALSE(l.acquire(needs(1, 0), resource_unit));  // the last CPU is a worker's
  CHECK(l.acquire(needs(1, 0), 0, false));             // checked, not taken
  CHECK(l.cpu_free() == resource_unit);
  l.release(r, *g);
  CHECK(l.available() == l.totals());
}

TEST_CASE("the ledger refuses what it could never give, saying what was asked and what it has") {
  resource_ledger l(2 * resource_unit, 2 * resource_unit, {"0", "1"}, {{"disk", resource_unit}});
  CHECK_FALSE(l.refuse(needs(2, 2, {{"disk", 1}})));
  auto why = l.refuse(needs(1, 3));
  REQUIRE(why);
  CHECK(why->find("GPU: 3") != std::string::npos);
  CHECK(why->find("GPU: 2") != std::string::npos);
  CHECK(l.refuse(needs(3, 0)));
  CHECK(l.refuse(needs(1, 1.5)));  // above 1, a fraction of GPUs must be whole
  CHECK(l.refuse(needs(1, 0, {{"tape", 1}}))->find("'tape'") != std::string::npos);
  resource_ledger none(2 * resource_unit, 0, {}, {});
  CHECK(none.refuse(needs(1, 0.5))->find("none") != std::string::npos);
}

TEST_CASE("a negative or NaN amount is refused with invalid_resources") {
  CHECK_THROWS_AS(needs(-1, 0), ray::invalid_resources);
  CHECK_THROWS_AS(needs(1, std::nan("")), ray::invalid_resources);
  CHECK_THROWS_AS(needs(1, 0, {{"disk", -2}}), ray::invalid_resources);
  CHECK_THROWS_AS(needs(1, 0, {{"GPU", 1}}), ray::invalid_resources);
  CHECK(needs(0.00001, 0).cpu == 0);  // below Ray's granularity, 1/10,000
}

// ---- the runtime ------------------------------------------------------------------------

TEST_CASE("the runtime reports its CPUs, GPUs and custom resources by Ray's names") {
  ray::runtime rt({.num_workers = 2, .num_cpus = 3, .num_gpus = 4, .resources = {{"disk", 2}}});
  const std::map<std::string, double> all{{"CPU", 3}, {"GPU", 4}, {"disk", 2}};
  CHECK(ray::cluster_resources() == all);
  CHECK(ray::available_resources() == all);
  CHECK(ray::get_gpu_ids().empty());  // the driver is given no GPU, as in Ray
}

TEST_CASE("by default the runtime has a CPU for every worker at least") {
  ray::runtime rt({.num_workers = 3});
  CHECK(ray::cluster_resources().at("CPU") >= 3);
}

TEST_CASE("the runtime's resources may come from the environment") {
  setenv("CORAY_NUM_CPUS", "5", 1);
  setenv("CORAY_NUM_GPUS", "0.5", 1);
  setenv("CORAY_RESOURCES", "disk=2,licence=1", 1);
  {
    ray::runtime rt({.num_workers = 1});
    CHECK(ray::cluster_resources() ==
          std::map<std::string, double>{{"CPU", 5}, {"GPU", 0.5}, {"disk", 2}, {"licence", 1}});
  }
  setenv("CORAY_RESOURCES", "disk", 1);
  CHECK_THROWS_AS(ray::runtime({.num_workers = 1}), ray::invalid_resources);
  unsetenv("CORAY_NUM_CPUS");
  unsetenv("CORAY_NUM_GPUS");
  unsetenv("CORAY_RESOURCES");
  CHECK_THROWS_AS(ray::runtime({.num_workers = 1, .num_gpus = -1}), ray::invalid_resources);
}

TEST_CASE("with CUDA_VISIBLE_DEVICES set, the runtime's GPUs are its ids") {
  without_visible_devices clean;
  setenv("CUDA_VISIBLE_DEVICES", "3,5", 1);
  {
    ray::runtime rt({.num_workers = 1});
    CHECK(ray::cluster_resources().at("GPU") == 2);
    gpu_view v = ray::get(ray::task<gpus_of_task>.options({.num_gpus = 2}).remote());
    CHECK(v.ids == std::vector<std::string>{"3", "5"});
    CHECK(v.env == "3,5");
    v = ray::get(ray::task<gpus_of_task>.options({.num_gpus = 1}).remote());
    CHECK(v.ids == std::vector<std::string>{"3"});
    CHECK(v.env == "3");
  }
}

TEST_CASE("a task given GPUs runs with CUDA_VISIBLE_DEVICES set to exactly its GPU ids") {
  without_visible_devices clean;
  ray::runtime rt({.num_workers = 2, .num_gpus = 4});
  gpu_view v = ray::get(ray::task<gpus_of_task>.options({.num_gpus = 2}).remote());
  REQUIRE(v.ids.size() == 2);
  CHECK(v.ids[0] != v.ids[1]);
  CHECK(v.env == v.ids[0] + "," + v.ids[1]);
  for (const auto& id : v.ids) CHECK(std::set<std::string>{"0", "1", "2", "3"}.count(id) == 1);
  // A task given no GPU, on the same workers, sees the environment it started with.
  v = ray::get(ray::task<gpus_of_task>.remote());
  CHECK(v.ids.empty());
  CHECK(v.env == "(unset)");
}

TEST_CASE("two tasks of half a GPU running at once share one GPU") {
  without_visible_devices clean;
  ray::runtime rt({.num_workers = 2, .num_gpus = 4});
  ray::barrier both(2);
  auto half = ray::task<gpus_together>.options({.num_gpus = 0.5});
  auto a = half.remote(both), b = half.remote(both);
  gpu_view va = ray::get(a), vb = ray::get(b);
  REQUIRE(va.ids.size() == 1);
  CHECK(va.ids == vb.ids);
  CHECK(va.env == vb.env);
  CHECK(ray::available_resources().at("GPU") == 4);
}

TEST_CASE("a call waits until the resources it needs are free") {
  ray::runtime rt({.num_workers = 2, .num_gpus = 1});
  ray::shared_value<int> running(0);
  ray::event go;
  auto first = ray::task<hold_until>.options({.num_gpus = 1}).remote(running, go);
  REQUIRE(serve_until([&] { return running.load() == 1; }, std::chrono::seconds(30)));
  auto second = ray::task<other_running>.options({.num_gpus = 1}).remote(running);
  CHECK(ray::available_resources().at("GPU") == 0);
  go.set();
  CHECK(ray::get(first).get() == 1);
  CHECK(ray::get(second).get() == 0);  // it started only once the first had let its GPU go
}

TEST_CASE("a running task holds one CPU, given back when it ends") {
  ray::runtime rt({.num_workers = 2, .num_cpus = 2});
  ray::shared_value<int> running(0), go(0);
  auto task = ray::task<hold_spinning>.remote(running, go);
  REQUIRE(serve_until([&] { return running.load() == 1; }, std::chrono::seconds(30)));
  CHECK(ray::available_resources().at("CPU") == 1);
  go.store(1);
  CHECK(ray::get(task).get() == 1);
  CHECK(ray::available_resources().at("CPU") == 2);
}

TEST_CASE("with fewer CPUs than workers, a task waits for a CPU") {
  ray::runtime rt({.num_workers = 2, .num_cpus = 1});
  ray::shared_value<int> running(0), go(0);
  auto first = ray::task<hold_spinning>.remote(running, go);
  REQUIRE(serve_until([&] { return running.load() == 1; }, std::chrono::seconds(30)));
  auto second = ray::task<other_running>.remote(running);
  CHECK(ray::available_resources().at("CPU") == 0);
  go.store(1);
  CHECK(ray::get(first).get() == 1);
  CHECK(ray::get(second).get() == 0);
}

TEST_CASE("a task blocked in a get gives its CPU to the calls it waits on") {
  ray::runtime rt({.num_workers = 2, .num_cpus = 1});
  CHECK(ray::get(ray::task<parent_of_one>.remote()).get() == 2);
  CHECK(ray::get(ray::task<parent_of_one>.options({.num_cpus = 0.5}).remote()).get() == 2);
}

TEST_CASE("the state API lists the GPUs each process holds: an actor's, a running task's") {
  without_visible_devices clean;
  ray::runtime rt({.num_workers = 2, .num_gpus = 4});
  auto a = ray::spawn<gpu_holder>({.num_gpus = 1});
  const gpu_view actor_sees = ray::get(a.call<&gpu_holder::gpus>());
  ray::shared_value<int> running(0);
  ray::event go;
  auto held = ray::task<hold_until>.options({.num_gpus = 2}).remote(running, go);
  REQUIRE(serve_until([&] { return running.load() == 1; }, std::chrono::seconds(30)));
  std::vector<std::string> task_gpus, actor_gpus;
  int idle_workers = 0;
  for (const auto& w : ray::state::list_workers()) {
    if (w.kind == ray::state::worker_kind::actor)
      actor_gpus = w.gpu_ids;
    else if (!w.gpu_ids.empty())
      task_gpus = w.gpu_ids;
    else
      ++idle_workers;
  }
  CHECK(actor_gpus == actor_sees.ids);
  CHECK(task_gpus.size() == 2);
  CHECK(std::find(task_gpus.begin(), task_gpus.end(), actor_sees.ids.at(0)) == task_gpus.end());
  CHECK(idle_workers == 1);
  go.set();
  CHECK(ray::get(held).get() == 1);
  for (const auto& w : ray::state::list_workers())
    if (w.kind == ray::state::worker_kind::task_worker) CHECK(w.gpu_ids.empty());
}

TEST_CASE("an actor given a GPU keeps the same one for life and holds it meanwhile") {
  without_visible_devices clean;
  ray::runtime rt({.num_workers = 1, .num_gpus = 4});
  auto a = ray::spawn<gpu_holder>({.num_gpus = 1});
  gpu_view first = ray::get(a.call<&gpu_holder::gpus>());
  REQUIRE(first.ids.size() == 1);
  CHECK(first.env == first.ids[0]);
  for (int i = 0; i < 50; ++i) {
    gpu_view v = ray::get(a.call<&gpu_holder::gpus>());
    CHECK(v.ids == first.ids);
    CHECK(v.env == first.env);
  }
  CHECK(ray::available_resources().at("GPU") == 3);
  // Tasks take the other GPUs.
  gpu_view t = ray::get(ray::task<gpus_of_task>.options({.num_gpus = 3}).remote());
  CHECK(std::find(t.ids.begin(), t.ids.end(), first.ids[0]) == t.ids.end());
  // An actor given nothing holds nothing.
  auto plain = ray::spawn<gpu_holder>();
  CHECK(ray::get(plain.call<&gpu_holder::gpus>()).get().ids.empty());
  CHECK(ray::available_resources().at("CPU") == ray::cluster_resources().at("CPU"));
}

TEST_CASE("an actor given nothing waits for a free CPU to be placed, and holds none after") {
  ray::runtime rt({.num_workers = 2, .num_cpus = 1});
  ray::shared_value<int> running(0), go(0);
  auto task = ray::task<hold_spinning>.remote(running, go);
  REQUIRE(serve_until([&] { return running.load() == 1; }, std::chrono::seconds(30)));
  auto a = ray::spawn<placed_after>(running);  // the one CPU is the task's
  go.store(1);
  CHECK(ray::get(task).get() == 1);
  CHECK(ray::get(a.call<&placed_after::seen>()).get() == 0);
  CHECK(ray::available_resources().at("CPU") == 1);
}

TEST_CASE("an actor's resources go back when it ends") {
  without_visible_devices clean;
  ray::runtime rt({.num_workers = 1, .num_gpus = 1, .resources = {{"disk", 1}}});
  {
    auto a = ray::spawn<gpu_holder>({.num_cpus = 1, .num_gpus = 1, .resources = {{"disk", 1}}});
    CHECK(ray::get(a.call<&gpu_holder::gpus>()).get().ids == std::vector<std::string>{"0"});
    CHECK(ray::available_resources().at("disk") == 0);
    ray::kill(a);
  }
  REQUIRE(serve_until([] { return ray::available_resources() == ray::cluster_resources(); },
                      std::chrono::seconds(30)));
  // The next actor asking for them is placed.
  auto b = ray::spawn<gpu_holder>({.num_gpus = 1});
  CHECK(ray::get(b.call<&gpu_holder::gpus>()).get().ids == std::vector<std::string>{"0"});
}

TEST_CASE("a placement group reserves its bundles: calls and actors in it take theirs") {
  without_visible_devices clean;
  ray::runtime rt({.num_workers = 2, .num_cpus = 2, .num_gpus = 2});
  ray::placement_group pg({{{"CPU", 1}, {"GPU", 1}}, {{"CPU", 1}}});
  REQUIRE(pg.wait(std::chrono::seconds(30)));
  CHECK(pg.bundle_nodes() == std::vector<int>{0, 0});
  CHECK(ray::available_resources().at("GPU") == 1);  // the group holds one GPU
  CHECK(ray::available_resources().at("CPU") == 0);  // and both CPUs
  // Every CPU is the group's now: a call in a bundle runs on what the bundle holds.
  gpu_view in = ray::get(ray::task<gpus_of_task>
                             .options({.num_cpus = 1, .num_gpus = 1,
                                       .scheduling_strategy = pg.bundle(0)})
                             .remote());
  REQUIRE(in.ids.size() == 1);
  CHECK(in.env == in.ids[0]);
  auto a = ray::spawn<gpu_holder>({.num_gpus = 1, .scheduling_strategy = pg.bundle(0)});
  CHECK(ray::get(a.call<&gpu_holder::gpus>()).get().ids == in.ids);  // the bundle's GPU
  // More than a bundle holds can never run in it.
  CHECK_THROWS_AS(
      ray::get(
          ray::task<one>.options({.num_gpus = 1, .scheduling_strategy = pg.bundle(1)}).remote())
          .get(),
      ray::infeasible_resources);
  ray::remove_placement_group(pg);  // its actor is killed, its resources go back
  CHECK_THROWS_AS(ray::get(a.call<&gpu_holder::gpus>()).get(), ray::actor_died);
  REQUIRE(serve_until([] { return ray::available_resources() == ray::cluster_resources(); },
                      std::chrono::seconds(30)));
  CHECK_THROWS_AS(
      ray::get(ray::task<one>.options({.scheduling_strategy = pg.bundle()}).remote()).get(),
      ray::infeasible_resources);
}

TEST_CASE("a placement group waits until its bundles fit, and one that never can is refused") {
  ray::runtime rt({.num_workers = 1, .num_cpus = 2});
  ray::placement_group first({{{"CPU", 2}}}, ray::placement_strategy::strict_pack);
  REQUIRE(first.wait(std::chrono::seconds(30)));
  ray::placement_group second({{{"CPU", 1}}});
  CHECK_FALSE(second.wait(std::chrono::milliseconds(50)));  // every CPU is the first's
  CHECK(second.bundle_nodes().empty());
  ray::remove_placement_group(first);
  CHECK(second.wait(std::chrono::seconds(30)));
  CHECK(second.bundle_nodes() == std::vector<int>{0});
  ray::placement_group never({{{"CPU", 2}}});  // the second holds one of the two
  ray::remove_placement_group(never);          // removed before it was reserved: ready() fails
  CHECK_THROWS_AS(ray::get(never.ready()).get(), ray::runtime_error);
  CHECK_THROWS_AS(
      ray::placement_group({{{"CPU", 1}}, {{"CPU", 1}}}, ray::placement_strategy::strict_spread),
      ray::infeasible_resources);  // one node: no second node for a bundle
  CHECK_THROWS_AS(ray::placement_group({{{"CPU", 3}}}), ray::infeasible_resources);
  CHECK_THROWS_AS(ray::placement_group({{{"CPU", -1}}}), ray::invalid_resources);
}

TEST_CASE("a request the runtime can never meet fails at once, naming what was asked and had") {
  ray::runtime rt({.num_workers = 1, .num_cpus = 2, .num_gpus = 4, .resources = {{"disk", 1}}});
  auto too_many = ray::task<one>.options({.num_gpus = 8}).remote();
  const std::string why = error_of<ray::infeasible_resources>([&] { (void)ray::get(too_many); });
  CHECK(why.find("GPU: 8") != std::string::npos);
  CHECK(why.find("GPU: 4") != std::string::npos);
  CHECK_THROWS_AS(ray::get(ray::task<one>.options({.num_cpus = 3}).remote()),
                  ray::infeasible_resources);
  CHECK_THROWS_AS(ray::get(ray::task<one>.options({.resources = {{"tape", 1}}}).remote()),
                  ray::infeasible_resources);
  CHECK_THROWS_AS(ray::spawn<gpu_holder>({.num_gpus = 5}), ray::infeasible_resources);
  CHECK_THROWS_AS(ray::spawn<gpu_holder>({.resources = {{"tape", 1}}}), ray::infeasible_resources);
  // The runtime carries on.
  CHECK(ray::get(ray::task<one>.options({.num_gpus = 4, .resources = {{"disk", 1}}}).remote())
            .get() == 1);
}

TEST_CASE("bad amounts are refused at the call with invalid_resources") {
  ray::runtime rt({.num_workers = 1, .num_gpus = 0});
  CHECK_THROWS_AS(ray::task<one>.options({.num_cpus = -1}), ray::invalid_resources);
  CHECK_THROWS_AS(ray::task<one>.options({.num_gpus = std::nan("")}), ray::invalid_resources);
  CHECK_THROWS_AS(ray::task<one>.options({.resources = {{"disk", -1}}}), ray::invalid_resources);
  CHECK_THROWS_AS(ray::spawn<gpu_holder>({.num_gpus = -0.5}), ray::invalid_resources);
  CHECK_THROWS_AS(ray::spawn<gpu_holder>({.num_cpus = std::numeric_limits<double>::infinity()}),
                  ray::invalid_resources);
  // A GPU from a runtime without one can never be had.
  const std::string why = error_of<ray::infeasible_resources>(
      [&] { (void)ray::get(ray::task<one>.options({.num_gpus = 0.5}).remote()); });
  CHECK(why.find("none") != std::string::npos);
}

// ---- calls with resources made inside a task or an actor --------------------------------

/// Waits at most a minute: a call that can never be scheduled fails the test, not hangs it.
constexpr ray::get_options a_minute{.timeout = std::chrono::seconds(60)};

TEST_CASE("a task calls a task given a GPU: the child sees its own, the parent keeps its own") {
  without_visible_devices clean;
  // One worker: the child runs on its blocked parent's worker. Two: on the other one.
  for (std::uint32_t workers : {1u, 2u}) {
    CAPTURE(workers);
    ray::runtime rt({.num_workers = workers, .num_gpus = 4});
    const nested_gpu_views v =
        ray::get(ray::task<parent_of_a_gpu_child>.options({.num_gpus = 2}).remote(), a_minute);
    REQUIRE(v.before.ids.size() == 2);
    CHECK(v.before.env == v.before.ids[0] + "," + v.before.ids[1]);
    REQUIRE(v.child.ids.size() == 1);
    CHECK(v.child.env == v.child.ids[0]);
    CHECK(std::find(v.before.ids.begin(), v.before.ids.end(), v.child.ids[0]) ==
          v.before.ids.end());
    CHECK(v.after.ids == v.before.ids);
    CHECK(v.after.env == v.before.env);
    CHECK(ray::available_resources() == ray::cluster_resources());
  }
}

TEST_CASE("a parent blocked on a child given a GPU, on the only worker, lends it its worker") {
  without_visible_devices clean;
  ray::runtime rt({.num_workers = 1, .num_gpus = 1});
  CHECK(ray::get(ray::task<calls_one_with_a_gpu>.remote(), a_minute).get() == 1);
  // A child given no GPU still runs with none, above its parent.
  CHECK(ray::available_resources() == ray::cluster_resources());
}

TEST_CASE("parents blocking every worker take turns lending them to children sharing a GPU") {
  ray::runtime rt({.num_workers = 2, .num_gpus = 1, .resources = {{"disk", 1}}});
  std::vector<ray::object_ref<int>> parents;
  for (int i = 0; i < 4; ++i) parents.push_back(ray::task<calls_one_with_a_gpu>.remote());
  for (auto& p : parents) CHECK(ray::get(p, a_minute).get() == 1);
  CHECK(ray::available_resources() == ray::cluster_resources());
}

TEST_CASE("a nested request the runtime can never meet fails at once, naming what was asked") {
  ray::runtime rt({.num_workers = 1, .num_gpus = 4, .resources = {{"disk", 1}}});
  const std::string gpus = ray::get(ray::task<error_of_nested>.remote(100.0, ""), a_minute);
  CHECK(gpus.find("GPU: 100") != std::string::npos);
  CHECK(gpus.find("GPU: 4") != std::string::npos);
  const std::string tape = ray::get(ray::task<error_of_nested>.remote(0.0, "tape"), a_minute);
  CHECK(tape.find("'tape'") != std::string::npos);
  CHECK(ray::available_resources() == ray::cluster_resources());
}

TEST_CASE("an actor's method calls tasks given a custom resource or a GPU") {
  without_visible_devices clean;
  ray::runtime rt({.num_workers = 1, .num_gpus = 2, .resources = {{"disk", 1}}});
  auto a = ray::spawn<disk_user>();
  ray::shared_value<int> running(0);
  ray::event go;
  ray::object_ref<int> held = ray::get(a.call<&disk_user::start>(running, go), a_minute);
  REQUIRE(serve_until([&] { return running.load() == 1; }, std::chrono::seconds(30)));
  CHECK(ray::available_resources().at("disk") == 0);  // the actor's call holds it
  go.set();
  CHECK(ray::get(held, a_minute).get() == 1);
  CHECK(ray::get(a.call<&disk_user::call_with>(std::string("disk"), 1.0), a_minute).get() == 1);
  CHECK_THROWS_AS(ray::get(a.call<&disk_user::call_with>(std::string("tape"), 1.0), a_minute),
                  ray::infeasible_resources);
  const gpu_view v = ray::get(a.call<&disk_user::gpu_child>(), a_minute);
  REQUIRE(v.ids.size() == 1);
  CHECK(v.env == v.ids[0]);
  CHECK(ray::available_resources() == ray::cluster_resources());
}

TEST_CASE("a worker killed while holding resources gives them back") {
  ray::runtime rt({.num_workers = 2, .num_gpus = 2, .resources = {{"disk", 1}}});
  ray::shared_value<int> pid(0);
  ray::event never;
  auto ref = ray::task<hold_and_report>
                 .options({.max_retries = 0, .num_gpus = 1, .resources = {{"disk", 1}}})
                 .remote(pid, never);
  REQUIRE(serve_until([&] { return pid.load() != 0; }, std::chrono::seconds(30)));
  auto held = ray::available_resources();
  CHECK(held.at("GPU") == 1);
  CHECK(held.at("disk") == 0);
  REQUIRE(::kill(pid.load(), SIGKILL) == 0);
  CHECK_THROWS_AS(ray::get(ref), ray::worker_crashed);
  CHECK(ray::available_resources() == ray::cluster_resources());
}
