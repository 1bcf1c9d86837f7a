// ray::state (issue 14): the calls live and finished, the actors and the worker processes,
// as Ray's state API lists them, with filters; the bounded history of finished calls.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <coray/coray.hpp>
#include <coray/detail/runtime/tick_clock.hpp>
#include <coray/state.hpp>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace state_test {

int square(int x) { return x * x; }
int explode(int) { throw std::runtime_error("boom"); }
// Says it started, then holds its worker until the driver lets it go.
int hold(ray::queue<int> started, ray::queue<int> release) {
  started.put(1);
  return release.get();
}
int plus_one(int x) { return x + 1; }
std::size_t tasks_seen_inside() { return ray::state::list_tasks().size(); }
std::vector<double> filled(int n) { return std::vector<double>(static_cast<std::size_t>(n), 1.0); }

struct ledger {
  int total = 0;
  int add(int x) { return total += x; }
};

}  // namespace state_test

using namespace state_test;
using ray::state::task_state;

TEST_CASE("finished calls are listed with their function and the pid of the worker they ran on") {
  ray::runtime rt({.num_workers = 2});
  std::vector<ray::object_ref<int>> refs;
  for (int i = 0; i < 5; ++i) refs.push_back(ray::task<square>.remote(i));
  const std::vector<int> got = ray::get(refs);
  CHECK(got[4] == 16);
  const auto done = ray::state::list_tasks({.state = task_state::finished, .name = "square"});
  REQUIRE(done.size() == 5);
  const std::vector<int> pids = rt.worker_pids();
  for (const auto& t : done) {
    CHECK(t.name == "state_test::square");
    CHECK_FALSE(t.actor_call);
    CHECK(std::find(pids.begin(), pids.end(), t.pid) != pids.end());
  }
  CHECK(ray::state::list_tasks({.name = "state_test::square"}).size() == 5);
  CHECK(ray::state::list_tasks({.name = "plus_one"}).empty());
}

TEST_CASE("a running call and one waiting for its argument are listed as such") {
  ray::runtime rt({.num_workers = 2});
  ray::queue<int> started, release;
  auto held = ray::task<hold>.remote(started, release);
  CHECK(started.get() == 1);  // it runs now
  auto after = ray::task<plus_one>.remote(held);
  const auto running = ray::state::list_tasks({.state = task_state::running, .name = "hold"});
  REQUIRE(running.size() == 1);
  CHECK(running[0].name == "state_test::hold");
  CHECK(running[0].pid > 0);
  const auto waiting =
      ray::state::list_tasks({.state = task_state::waiting_for_dependencies, .name = "plus_one"});
  REQUIRE(waiting.size() == 1);
  CHECK(waiting[0].name == "state_test::plus_one");
  release.put(41);
  const int answer = ray::get(after);
  CHECK(answer == 42);
  // (The queues are actors: their calls are listed too.)
  CHECK(ray::state::list_tasks({.state = task_state::finished, .name = "hold"}).size() == 1);
  CHECK(ray::state::list_tasks({.state = task_state::finished, .name = "plus_one"}).size() == 1);
}

TEST_CASE("a call that raised is listed as failed") {
  ray::runtime rt({.num_workers = 1});
  CHECK_THROWS(ray::get(ray::task<explode>.remote(1)));
  const auto failed = ray::state::list_tasks({.state = task_state::failed});
  REQUIRE(failed.size() == 1);
  CHECK(failed[0].name == "state_test::explode");
}

TEST_CASE("the history keeps the newest finished calls, evicting the oldest first") {
  ray::runtime rt({.num_workers = 1, .task_history = 3});
  for (int i = 0; i < 5; ++i) ray::get(ray::task<square>.remote(i));
  const auto done = ray::state::list_tasks({.state = task_state::finished});
  REQUIRE(done.size() == 3);
  CHECK(done[0].id < done[1].id);
  CHECK(done[1].id < done[2].id);
}

TEST_CASE("with task_history = 0 no finished call is kept") {
  ray::runtime rt({.num_workers = 1, .task_history = 0});
  ray::get(ray::task<square>.remote(3));
  CHECK(ray::state::list_tasks().empty());
}

TEST_CASE("actors are listed with their class, name, state and pid, and method calls with them") {
  ray::runtime rt({.num_workers = 1});
  auto a = ray::spawn<ledger>(ray::actor_options{.name = "books"});
  const int total = ray::get(a.call<&ledger::add>(5));
  CHECK(total == 5);
  const auto actors = ray::state::list_actors();
  REQUIRE(actors.size() == 1);
  CHECK(actors[0].class_name == "state_test::ledger");
  CHECK(actors[0].name == "books");
  CHECK(actors[0].state == ray::state::actor_state::alive);
  CHECK(actors[0].pid == ray::actor_process(a).pid);
  CHECK(ray::state::list_actors({.class_name = "ledger"}).size() == 1);
  CHECK(ray::state::list_actors({.name = "other"}).empty());
  CHECK(ray::state::list_actors({.state = ray::state::actor_state::dead}).empty());
  const auto calls = ray::state::list_tasks({.state = task_state::finished});
  const auto method = std::find_if(calls.begin(), calls.end(), [](const auto& t) {
    return t.name == "state_test::ledger::add";
  });
  REQUIRE(method != calls.end());
  CHECK(method->actor_call);
  CHECK(method->pid == actors[0].pid);
}

TEST_CASE("workers are listed: the task workers in order, then the actors' processes") {
  ray::runtime rt({.num_workers = 2});
  auto a = ray::spawn<ledger>();
  ray::get(a.call<&ledger::add>(1));
  const auto workers = ray::state::list_workers();
  REQUIRE(workers.size() == 3);
  const std::vector<int> pids = rt.worker_pids();
  CHECK(workers[0].pid == pids[0]);
  CHECK(workers[1].pid == pids[1]);
  CHECK(workers[2].kind == ray::state::worker_kind::actor);
  CHECK(workers[2].actor_id == a.id());
  CHECK(ray::state::list_workers({.kind = ray::state::worker_kind::task_worker}).size() == 2);
  CHECK(ray::state::list_workers({.alive = false}).empty());
}

TEST_CASE("summarize_tasks counts calls by function and state") {
  ray::runtime rt({.num_workers = 2});
  std::vector<ray::object_ref<int>> refs;
  for (int i = 0; i < 4; ++i) refs.push_back(ray::task<square>.remote(i));
  (void)ray::get(refs);
  CHECK_THROWS(ray::get(ray::task<explode>.remote(0)));
  const auto summary = ray::state::summarize_tasks();
  CHECK(summary.at("state_test::square").at(task_state::finished) == 4);
  CHECK(summary.at("state_test::explode").at(task_state::failed) == 1);
  CHECK(ray::state::to_string(task_state::finished) == "FINISHED");
}

TEST_CASE("objects in the store are listed with their size and holders until their refs go") {
  ray::runtime rt({.num_workers = 1, .object_store_bytes = 64 << 20});
  const std::size_t bytes = 1 << 20;  // 1 MiB of doubles: past the inline threshold
  auto put = ray::put(std::vector<double>(bytes / sizeof(double), 2.0));
  auto made = ray::task<filled>.remote(static_cast<int>(bytes / sizeof(double)));
  (void)ray::get(made);
  auto objects = ray::state::list_objects();
  const auto in_store = std::count_if(objects.begin(), objects.end(), [&](const auto& o) {
    return o.location == ray::state::object_location::store && o.size >= bytes && o.handles == 1 &&
           o.store_refs >= 1;
  });
  CHECK(in_store == 2);
  const std::string summary = ray::memory_summary();
  CHECK(summary.find("Object store:") != std::string::npos);
  CHECK(summary.find("STORE") != std::string::npos);
  put = {};
  made = {};
  objects = ray::state::list_objects();
  CHECK(
      std::none_of(objects.begin(), objects.end(), [&](const auto& o) { return o.size >= bytes; }));
}

TEST_CASE("a spilled object is listed as spilled") {
  char tmpl[] = "/tmp/coray-state-spill-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  {
    ray::runtime rt({.num_workers = 1, .object_store_bytes = 24 << 20, .spill_directory = tmpl});
    std::vector<ray::object_ref<std::vector<double>>> refs;
    for (int i = 0; i < 5; ++i) refs.push_back(ray::put(std::vector<double>(1 << 20, i)));
    REQUIRE(rt.objects_spilled() > 0);
    const auto objects = ray::state::list_objects();
    CHECK(std::count_if(objects.begin(), objects.end(), [](const auto& o) {
            return o.location == ray::state::object_location::spilled && o.size >= (8u << 20);
          }) >= 1);
    CHECK(ray::memory_summary().find("SPILLED") != std::string::npos);
  }
  rmdir(tmpl);
}

TEST_CASE("another thread of the driver may list the state while the loop serves") {
  ray::runtime rt({.num_workers = 1});
  ray::get(ray::task<square>.remote(2));
  std::atomic<bool> done{false};
  std::size_t seen = 0;
  std::thread t([&] {
    seen = ray::state::list_tasks().size();
    done = true;
  });
  rt.serve_until([&] { return done.load(); });
  t.join();
  CHECK(seen == 1);
}

TEST_CASE(
    "the state is the driver's: a task asking is refused, and so is a program without a runtime") {
  {
    ray::runtime rt({.num_workers = 1});
    CHECK_THROWS_WITH(ray::get(ray::task<tasks_seen_inside>.remote()),
                      doctest::Contains("listed by the driver"));
  }
  CHECK_THROWS_AS(ray::state::list_tasks(), ray::runtime_error);
}

TEST_CASE("ray::timeline writes each call as a slice on its process's track, with an arrow") {
  ray::runtime rt({.num_workers = 2, .record_timeline = true});
  std::vector<ray::object_ref<int>> refs;
  for (int i = 0; i < 6; ++i) refs.push_back(ray::task<square>.remote(i));
  ray::get(refs).get();
  CHECK_THROWS(ray::get(ray::task<explode>.options({.max_retries = 0}).remote(1)).get());
  auto l = ray::spawn<ledger>();
  ray::get(l.call<&ledger::add>(3)).get();
  const int actor_pid = ray::actor_process(l).pid;

  const std::string file = "timeline_test_" + std::to_string(getpid()) + ".json";
  const std::size_t written = ray::timeline(file);
  CHECK(written == 6 + 1 + 2);  // the squares, the failure, the ledger's construction and call
  const nlohmann::json trace = nlohmann::json::parse(std::ifstream(file));
  std::remove(file.c_str());

  const std::vector<int> pids = rt.worker_pids();
  int squares = 0, failed = 0, ledger_calls = 0;
  std::set<std::uint64_t> flow_starts, flow_ends;
  for (const auto& e : trace.at("traceEvents")) {
    const std::string ph = e.at("ph");
    if (ph == "s") flow_starts.insert(e.at("id").get<std::uint64_t>());
    if (ph == "f") flow_ends.insert(e.at("id").get<std::uint64_t>());
    if (ph != "X" || e.at("cat") == "submit") continue;
    CHECK(e.at("dur").get<double>() >= 0);
    const std::string name = e.at("name");
    if (name == "state_test::square") {
      ++squares;
      CHECK(std::find(pids.begin(), pids.end(), e.at("pid").get<int>()) != pids.end());
      CHECK(e.at("args").at("argument_bytes").get<std::uint64_t>() > 0);
    } else if (name == "state_test::explode") {
      ++failed;
      CHECK(e.at("args").at("outcome") == "failed");
    } else if (e.at("cat") == "actor_call") {
      ++ledger_calls;
      CHECK(e.at("pid").get<int>() == actor_pid);
    }
  }
  CHECK(squares == 6);
  CHECK(failed == 1);
  CHECK(ledger_calls == 2);
  CHECK(flow_starts.size() == written);
  CHECK(flow_starts == flow_ends);
}

// A call that takes `ms` milliseconds in its worker.
int nap(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}

TEST_CASE("the timeline's clock converts its ticks to the steady clock's nanoseconds") {
  const ray::detail::tick_clock clock;
  const auto steady = [] { return std::chrono::steady_clock::now().time_since_epoch().count(); };
  const std::int64_t before = steady();
  const std::int64_t tick = clock.now();
  const std::int64_t after = steady();
  const ray::detail::tick_clock::to_ns ns = clock.converter();  // at least 1 ms after the start
  // The rate is measured over a millisecond or more: a tick read between two clock reads
  // converts to between them, give or take a few microseconds.
  CHECK(ns(tick) >= before - 20'000);
  CHECK(ns(tick) <= after + 20'000);
  CHECK(ns(clock.now()) >= after);
}

namespace state_test {
/// Spins until `ns` nanoseconds of the steady clock have passed.
void spin_for_ns(std::int64_t ns) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::nanoseconds(ns);
  while (std::chrono::steady_clock::now() < until) {
  }
}

/// Admits into `opener` until a reading opens a fast run's group: a reading taken soon after
/// the last (a preemption between two makes them far apart; the next pair tries again).
bool open_group(ray::detail::turn_stamp& stamp, std::int64_t& opener) {
  stamp.next_turn();
  for (int tries = 0; tries < 10'000 && !stamp.waits_next(); ++tries) stamp.admit(opener);
  return stamp.waits_next();
}

/// The calls the driver's timeline holds, as ray::timeline writes them.
std::vector<ray::detail::timeline_entry> recorded_calls() {
  return ray::detail::on_loop("recorded_calls",
                              [](ray::detail::process& p) { return p.as_driver()->timeline(); });
}
}  // namespace state_test

TEST_CASE("a fast run of admissions reads the clock once per eight, and spreads the rest") {
  ray::detail::turn_stamp stamp;
  spin_for_ns(200'000);  // the clock's rate is measurable 100 us after its start
  std::int64_t opener = 0;
  REQUIRE(open_group(stamp, opener));
  std::array<std::int64_t, 7> at{};
  for (auto& t : at) {
    stamp.admit(t);
    CHECK(t == opener);  // waiting, with the last reading
  }
  CHECK_FALSE(stamp.waits_next());  // the eighth reads
  std::int64_t closer = 0;
  stamp.admit(closer);
  CHECK(closer > opener);  // and the seven between get their stamps, evenly and in order
  CHECK(at.front() >= opener);
  for (std::size_t k = 1; k < at.size(); ++k) CHECK(at[k] >= at[k - 1]);
  CHECK(at.back() < closer);

  REQUIRE(open_group(stamp, opener));
  std::array<std::int64_t, 2> before_turn{};
  for (auto& t : before_turn) stamp.admit(t);
  CHECK(before_turn[1] == opener);
  stamp.next_turn();  // a loop turn: those waiting get their stamps first
  CHECK(before_turn[0] > opener);
  CHECK(before_turn[1] > before_turn[0]);
}

TEST_CASE("admissions with work between them read the clock each") {
  ray::detail::turn_stamp stamp;
  spin_for_ns(200'000);
  std::int64_t opener = 0;
  REQUIRE(open_group(stamp, opener));
  std::array<std::int64_t, 7> at{};
  for (auto& t : at) {
    spin_for_ns(5'000);  // 40 us in all: more than the 10 us a group may span
    stamp.admit(t);
  }
  std::int64_t last = 0;
  stamp.admit(last);  // the group was slow: from here, each admission reads
  const ray::detail::tick_clock::to_ns ns = stamp.clock().converter();
  for (int k = 0; k < 3; ++k) {
    CHECK_FALSE(stamp.waits_next());
    spin_for_ns(20'000);
    std::int64_t now = 0;
    stamp.admit(now);
    CHECK(ns(now) - ns(last) >= 19'000);  // read now, not the last reading
    last = now;
  }
}

TEST_CASE("with the timeline recording, the task history is the timeline's calls") {
  ray::runtime rt({.num_workers = 1, .task_history = 3, .record_timeline = true});
  for (int i = 0; i < 3; ++i) ray::get(ray::task<square>.remote(i));
  CHECK_THROWS(ray::get(ray::task<explode>.remote(1)));
  ray::get(ray::task<square>.remote(7));
  const auto kept = ray::state::list_tasks();
  REQUIRE(kept.size() == 3);
  CHECK(kept[0].id < kept[1].id);
  CHECK(kept[1].id < kept[2].id);
  CHECK(kept[0].state == task_state::finished);
  CHECK(kept[1].name == "state_test::explode");
  CHECK(kept[1].state == task_state::failed);
  CHECK(kept[2].state == task_state::finished);
  const std::vector<int> pids = rt.worker_pids();
  for (const auto& t : kept) CHECK(std::find(pids.begin(), pids.end(), t.pid) != pids.end());
  const auto calls = recorded_calls();
  CHECK(calls.size() == 3);
}

TEST_CASE("with the timeline recording and task_history = 0, no finished call is listed") {
  ray::runtime rt({.num_workers = 1, .task_history = 0, .record_timeline = true});
  ray::get(ray::task<square>.remote(3));
  CHECK(ray::state::list_tasks().empty());
  const auto calls = recorded_calls();
  CHECK(calls.size() == 1);  // the timeline keeps 10,000 calls then
}

TEST_CASE("the timeline's times are the steady clock's, in order, and span each call's run") {
  ray::runtime rt({.num_workers = 2, .record_timeline = true});
  const std::int64_t start = std::chrono::steady_clock::now().time_since_epoch().count();
  std::vector<ray::object_ref<int>> refs;
  for (int i = 0; i < 4; ++i) refs.push_back(ray::task<nap>.remote(5));
  for (int i = 0; i < 200; ++i) refs.push_back(ray::task<square>.remote(i));
  ray::get(refs).get();
  const std::int64_t end = std::chrono::steady_clock::now().time_since_epoch().count();
  const auto calls = recorded_calls();
  REQUIRE(calls.size() == refs.size());
  int naps = 0;
  for (const auto& c : calls) {
    CHECK(c.submitted_ns >= start);
    CHECK(c.submitted_ns <= c.sent_ns);
    CHECK(c.sent_ns <= c.ended_ns);
    CHECK(c.ended_ns <= end);
    if (c.name.ends_with("nap")) {
      ++naps;
      // Sent before the worker began its 5 ms and read after it ended.
      CHECK(c.ended_ns - c.sent_ns >= 5'000'000);
    }
  }
  CHECK(naps == 4);
}

TEST_CASE("ray::timeline on a runtime that records none says how to turn it on") {
  ray::runtime rt({.num_workers = 1});
  CHECK_THROWS_WITH_AS(ray::timeline("never_written.json"), doctest::Contains("record_timeline"),
                       ray::usage_error);
}
