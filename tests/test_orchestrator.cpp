// The orchestrator's decisions, step by step, with a fake transport: no process is started,
// every message it sends is recorded, and the test plays the processes' replies and deaths.
// (CAF tests its actors the same way, with a deterministic test coordinator.)
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <coray/detail/runtime/orchestrator.hpp>
#include <cstring>
#include <deque>
#include <map>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace ray::detail;

/// A transport that records what it is asked and never delivers anything by itself.
class fake_transport final : public transport {
 public:
  struct sent_message {
    std::uint32_t slot;
    msg_kind kind;
    std::vector<std::byte> bytes;

    task_header header() const {
      task_header h;
      std::memcpy(&h, bytes.data(), sizeof h);
      return h;
    }
    /// The call's first argument, an int sent inline.
    int int_argument() const {
      call_reader r(std::span<const std::byte>(bytes).subspan(sizeof(task_header)));
      auto [e, payload] = r.next();
      REQUIRE(e.tag == arg_entry::inline_value);
      int v;
      std::memcpy(&v, payload, sizeof v);
      return v;
    }
  };

  fake_transport() {
    for (fake_slot& s : slots_) signals_.push_back({&s.state, &s.suspended, &s.blocked_mark});
  }

  void start(std::uint32_t slot) override {
    started.push_back(slot);
    set_state(slot, slot_state::running);
  }
  void close(std::uint32_t slot) override {
    closed.push_back(slot);
    set_state(slot, slot_state::dead);
  }
  void kill(std::uint32_t slot) override { killed.push_back(slot); }
  int pid(std::uint32_t slot) const override { return 1000 + static_cast<int>(slot); }
  bool can_start() const override { return can_start_; }
  void await_exit(std::span<const std::uint32_t>, std::chrono::milliseconds) override {}
  std::size_t max_message_bytes() const override { return 120 * 1024; }
  bool send(std::uint32_t slot, msg_kind kind, std::size_t size, fill_ref fill) override {
    REQUIRE_MESSAGE(slots_.at(slot).state.load() == static_cast<std::uint32_t>(slot_state::running),
                    "a message to a slot whose process was never started or ended");
    if (!room) return false;
    sent_message m{slot, kind, std::vector<std::byte>(size)};
    fill(m.bytes.data());
    sent.push_back(std::move(m));
    return true;
  }
  bool send_carried(std::uint32_t, msg_kind, object_block*) override { return false; }
  bool poll(transport_events&) override { return false; }
  void sleep(std::chrono::nanoseconds, transport_events&, wake_check) override {}
  std::uint32_t node_count() const override { return nodes; }
  std::uint32_t node_of(std::uint32_t slot) const override {
    return slot < node_by_slot.size() ? node_by_slot[slot] : 0;
  }
  bool node_alive(std::uint32_t n) const override { return n >= lost.size() || !lost[n]; }

  /// Marks the slot's process dead (as the supervisor's report would).
  void die(std::uint32_t slot) { set_state(slot, slot_state::dead); }
  /// Plays a task of the slot's process blocked in ray::get with `mark` (the first id of the
  /// calls it made since), or no longer blocked (0). Such a task counts as suspended.
  void block(std::uint32_t slot, std::uint64_t mark) {
    slots_.at(slot).blocked_mark = mark;
    slots_.at(slot).suspended = mark != 0 ? 1 : 0;
  }
  /// The calls (run_task or construct) sent so far, oldest first.
  std::vector<sent_message> calls() const {
    std::vector<sent_message> out;
    for (auto& m : sent)
      if (m.kind == msg_kind::run_task || m.kind == msg_kind::construct) out.push_back(m);
    return out;
  }

  std::vector<sent_message> sent;
  std::vector<std::uint32_t> started, closed, killed;
  bool room = true;
  bool can_start_ = true;
  // A cluster: how many nodes, each slot's node (0 past the list) and the nodes lost.
  std::uint32_t nodes = 1;
  std::vector<std::uint32_t> node_by_slot;
  std::vector<bool> lost;

 private:
  struct fake_slot {
    std::atomic<std::uint32_t> state{0}, suspended{0};
    std::atomic<std::uint64_t> blocked_mark{0};
  };
  void set_state(std::uint32_t slot, slot_state s) {
    slots_.at(slot).state = static_cast<std::uint32_t>(s);
  }
  std::array<fake_slot, 16> slots_;  // more than any test uses
};

/// An orchestrator over a small real segment (blocks are real) and the fake transport.
struct fixture {
  explicit fixture(std::uint32_t workers = 1, std::uint32_t in_flight = 2,
                   std::uint32_t actors = 2) {
    seg.create(4 << 20);
    orch.emplace(orchestrator_config{workers, actors, in_flight, 0xC0FFEE, {}}, seg, net);
    orch->start_workers();
  }
  explicit fixture(orchestrator_config cfg, std::vector<std::uint32_t> node_by_slot = {}) {
    seg.create(4 << 20);
    if (!cfg.other_nodes.empty()) {
      net.nodes = 1 + static_cast<std::uint32_t>(cfg.other_nodes.size());
      net.node_by_slot = std::move(node_by_slot);
    }
    orch.emplace(std::move(cfg), seg, net);
    orch->start_workers();
  }

  /// A call of function 42 with one int argument (and `deps` as dependencies).
  static task_spec call(int arg, int max_retries = 0) {
    task_spec spec;
    spec.fn_id = 42;
    spec.name = "f";
    spec.max_retries = max_retries;
    spec.add_inline(sizeof arg, [&](std::byte* out) { std::memcpy(out, &arg, sizeof arg); });
    return spec;
  }

  /// A call like call(arg) that needs `cpus` CPUs and `gpus` GPUs.
  static task_spec call_needing(int arg, double cpus, double gpus) {
    task_spec spec = call(arg);
    spec.resources =
        std::make_shared<const resource_request>(resource_request::from(cpus, gpus, {}, "test"));
    return spec;
  }

  /// Plays the reply of the process in `slot` to call `id`: an int value.
  void reply(std::uint32_t slot, std::uint64_t id, int value) {
    std::vector<std::byte> payload(sizeof(result_header) + sizeof value);
    result_header h{id, result_header::value_inline, sizeof value, 0, 0, 0};
    std::memcpy(payload.data(), &h, sizeof h);
    std::memcpy(payload.data() + sizeof h, &value, sizeof value);
    orch->on_message(slot, msg_kind::task_done, payload, nullptr);
    orch->service();
  }

  /// Plays a nested call from the process in `slot`, which numbers it `id`: a call of
  /// function 42 with one int argument.
  void nested(std::uint32_t slot, std::uint64_t id, int arg) {
    task_spec spec = call(arg);
    const call_message_writer message({id, spec.fn_id, spec.nargs, 0, 0, 0, 0, 0, 0, 0}, spec.args,
                                      spec.deps);
    std::vector<std::byte> payload(message.size());
    message.write(payload.data(), seg);
    orch->on_message(slot, msg_kind::submit, payload, nullptr);
    orch->service();
  }

  /// Plays the death of the process in `slot` after it had started `started` calls.
  void kill(std::uint32_t slot, std::uint64_t started) {
    net.die(slot);
    orch->on_death(slot, {1000 + static_cast<int>(slot), SIGKILL, started});
    orch->service();
  }

  static int value(const state_ptr& s) {
    REQUIRE(s->st == object_state::status::ready);
    int v;
    std::memcpy(&v, s->bytes.data(), sizeof v);
    return v;
  }
  template <class E>
  static std::string error_of(const state_ptr& s) {
    REQUIRE(s->st == object_state::status::failed);
    try {
      std::rethrow_exception(s->error());
    } catch (const E& e) {
      return e.what();
    } catch (...) {
      FAIL("the error has another type");
    }
    return {};
  }

  segment seg;
  fake_transport net;
  std::optional<orchestrator> orch;
};

}  // namespace

TEST_CASE("calls go to the worker in submission order, at most the in-flight limit at a time") {
  fixture f(1, 2);
  CHECK(f.net.started == std::vector<std::uint32_t>{0});
  auto a = f.orch->submit(fixture::call(1));
  auto b = f.orch->submit(fixture::call(2));
  auto c = f.orch->submit(fixture::call(3));
  auto calls = f.net.calls();
  REQUIRE(calls.size() == 2);
  CHECK(calls[0].int_argument() == 1);
  CHECK(calls[1].int_argument() == 2);
  CHECK(c->st == object_state::status::pending);

  f.reply(0, calls[0].header().task_id, 10);
  CHECK(fixture::value(a) == 10);
  calls = f.net.calls();
  REQUIRE(calls.size() == 3);  // room for the third
  CHECK(calls[2].int_argument() == 3);
  f.reply(0, calls[1].header().task_id, 20);
  f.reply(0, calls[2].header().task_id, 30);
  CHECK(fixture::value(b) == 20);
  CHECK(fixture::value(c) == 30);
  CHECK(f.orch->tasks().size() == 0);
}

TEST_CASE(
    "a worker blocked in a call is sent only the calls it made since, and nested calls go first") {
  fixture f(2, 1);
  auto a = f.orch->submit(fixture::call(1));  // to worker 0
  auto b = f.orch->submit(fixture::call(2));  // to worker 1
  auto c = f.orch->submit(fixture::call(3));  // waits: both are busy
  REQUIRE(f.net.calls().size() == 2);
  const std::uint64_t w0 = std::uint64_t{1} << 63;  // how worker 0 numbers its calls
  f.nested(0, w0 + 1, 10);                          // made before its task blocked
  f.net.block(0, w0 + 2);                           // its task blocks in ray::get
  f.orch->service();
  CHECK(f.net.calls().size() == 2);  // neither the older call nor the driver's is eligible
  f.nested(0, w0 + 2, 11);           // made while blocked: a descendant of the blocked task
  auto calls = f.net.calls();
  REQUIRE(calls.size() == 3);
  CHECK(calls[2].slot == 0);
  CHECK(calls[2].int_argument() == 11);

  f.reply(1, calls[1].header().task_id, 20);  // worker 1 frees: the nested call goes first
  calls = f.net.calls();
  REQUIRE(calls.size() == 4);
  CHECK(calls[3].slot == 1);
  CHECK(calls[3].int_argument() == 10);

  f.reply(0, calls[2].header().task_id, 110);  // the blocked task goes on, then ends
  f.net.block(0, 0);
  f.reply(0, calls[0].header().task_id, 1);
  calls = f.net.calls();
  REQUIRE(calls.size() == 5);
  CHECK(calls[4].slot == 0);
  CHECK(calls[4].int_argument() == 3);
  f.reply(1, calls[3].header().task_id, 100);
  f.reply(0, calls[4].header().task_id, 30);
  CHECK(fixture::value(a) == 1);
  CHECK(fixture::value(b) == 20);
  CHECK(fixture::value(c) == 30);
}

TEST_CASE("a call's arguments reach its worker whole, however many bytes they take") {
  // One int's record (32 bytes) stays in the call's record; two take a pooled buffer; more,
  // and a string of 200 bytes, the heap. Each call is moved into the table and sent.
  fixture f(1, 4);
  const std::string text(200, 'x');
  std::vector<int> counts = {1, 2, 5};
  for (int n : counts) {
    task_spec spec = fixture::call(100 * n);
    for (int k = 1; k < n; ++k) {
      const int v = 100 * n + k;
      spec.add_inline(sizeof v, [&](std::byte* out) { std::memcpy(out, &v, sizeof v); });
    }
    if (n == 5)
      spec.add_inline(text.size(),
                      [&](std::byte* out) { std::memcpy(out, text.data(), text.size()); });
    task_spec moved = std::move(spec);
    (void)f.orch->submit(std::move(moved));
  }
  auto calls = f.net.calls();
  REQUIRE(calls.size() == 3);
  for (std::size_t c = 0; c < calls.size(); ++c) {
    const int n = counts[c];
    CHECK(calls[c].header().nargs == static_cast<std::uint32_t>(n + (n == 5 ? 1 : 0)));
    call_reader r(std::span<const std::byte>(calls[c].bytes).subspan(sizeof(task_header)));
    for (int k = 0; k < n; ++k) {
      auto [e, payload] = r.next();
      REQUIRE(e.tag == arg_entry::inline_value);
      int v;
      std::memcpy(&v, payload, sizeof v);
      CHECK(v == 100 * n + k);
    }
    if (n == 5) {
      auto [e, payload] = r.next();
      REQUIRE(e.tag == arg_entry::inline_value);
      CHECK(std::string(reinterpret_cast<const char*>(payload), e.len) == text);
    }
  }
}

TEST_CASE("a call waits for the object it depends on and is sent with its value") {
  fixture f;
  auto first = f.orch->submit(fixture::call(5));
  task_spec second = fixture::call(6);
  second.add_dependency(first);
  auto result = f.orch->submit(std::move(second));
  REQUIRE(f.net.calls().size() == 1);  // the dependent call is held back

  f.reply(0, f.net.calls()[0].header().task_id, 55);
  auto calls = f.net.calls();
  REQUIRE(calls.size() == 2);
  call_reader r(std::span<const std::byte>(calls[1].bytes).subspan(sizeof(task_header)));
  (void)r.next();  // the int
  auto [e, payload] = r.next();
  CHECK(e.tag == arg_entry::inline_value);  // the dependency became its value
  int v;
  std::memcpy(&v, payload, sizeof v);
  CHECK(v == 55);
  CHECK(result->st == object_state::status::pending);
}

TEST_CASE("a call whose dependency failed fails with that error without being sent") {
  fixture f;
  auto dep = state_ptr::adopt(new object_state);
  task_spec spec = fixture::call(1);
  spec.add_dependency(dep);
  auto result = f.orch->submit(std::move(spec));
  dep->set_error(std::make_exception_ptr(ray::codec_error("bad bytes")));
  CHECK(fixture::error_of<ray::codec_error>(result) == "bad bytes");
  CHECK(f.net.calls().empty());
  CHECK(f.orch->tasks().size() == 0);
}

TEST_CASE(
    "a worker's death retries the call it was running and resends the ones it had not started") {
  fixture f(1, 3);
  auto a = f.orch->submit(fixture::call(1, /*max_retries=*/1));
  auto b = f.orch->submit(fixture::call(2, /*max_retries=*/0));
  REQUIRE(f.net.calls().size() == 2);

  f.kill(0, /*started=*/1);                                  // running a, b still in its inbox
  CHECK(f.net.started == std::vector<std::uint32_t>{0, 0});  // replaced
  auto calls = f.net.calls();
  REQUIRE(calls.size() == 4);  // both sent again, in their order
  CHECK(calls[2].int_argument() == 1);
  CHECK(calls[3].int_argument() == 2);

  f.kill(0, /*started=*/2);  // both ran this time: a's budget is spent, b never had one
  CHECK(fixture::error_of<ray::worker_crashed>(a).find("attempt 2 of 2") != std::string::npos);
  auto why = fixture::error_of<ray::worker_crashed>(b);
  CHECK(why.find("worker 0 (pid 1000)") != std::string::npos);
  CHECK(why.find("SIGKILL") != std::string::npos);
  CHECK(f.orch->tasks().size() == 0);
}

TEST_CASE("a cancelled call that has not been sent never runs") {
  fixture f(1, 1);
  auto a = f.orch->submit(fixture::call(1));
  auto b = f.orch->submit(fixture::call(2));
  f.orch->cancel_call(b->id, false);
  CHECK(fixture::error_of<ray::cancelled>(b).find("f was cancelled") != std::string::npos);
  f.reply(0, f.net.calls()[0].header().task_id, 1);
  CHECK(f.net.calls().size() == 1);
  CHECK(fixture::value(a) == 1);
}

TEST_CASE(
    "an actor is rebuilt after a crash, its calls kept in order, until max_restarts is spent") {
  fixture f(1, 2, 2);
  actor_spawn_request req;
  req.constructor = fixture::call(7);
  req.type_name = "counter";
  req.max_restarts = 1;
  const std::uint64_t id = f.orch->spawn_actor(std::move(req));
  f.orch->actor_ref(id, +1);  // the caller's handle
  const std::uint32_t slot = f.net.started.back();
  CHECK(slot >= 1);  // actor slots follow the task workers'
  task_spec m1 = fixture::call(100);
  m1.target_actor = id;
  task_spec m2 = fixture::call(200);
  m2.target_actor = id;
  auto r1 = f.orch->submit(std::move(m1));
  auto r2 = f.orch->submit(std::move(m2));
  auto calls = f.net.calls();
  REQUIRE(calls.size() == 3);
  CHECK(calls[0].kind == msg_kind::construct);
  CHECK(calls[1].int_argument() == 100);
  CHECK(calls[2].int_argument() == 200);

  f.reply(slot, calls[0].header().task_id, 0);  // constructed
  f.kill(slot, /*started=*/1);                  // died running the first method call
  calls = f.net.calls();
  REQUIRE(calls.size() == 5);
  CHECK(calls[3].kind == msg_kind::construct);  // built again in the same slot
  CHECK(calls[3].slot == slot);
  CHECK(calls[4].int_argument() == 200);  // the call it had not started; the started one
  CHECK(fixture::error_of<ray::actor_died>(r1).find("counter (pid") != std::string::npos);

  f.kill(slot, /*started=*/0);  // no restart left
  CHECK(fixture::error_of<ray::actor_died>(r2).find("SIGKILL") != std::string::npos);
  CHECK(f.net.closed == std::vector<std::uint32_t>{slot});
  task_spec later = fixture::call(300);
  later.target_actor = id;
  auto r3 = f.orch->submit(std::move(later));
  CHECK(r3->st == object_state::status::failed);  // later calls fail at once
}

TEST_CASE("an actor ends once its last handle goes and its queued calls are done") {
  fixture f;
  actor_spawn_request req;
  req.constructor = fixture::call(0);
  req.type_name = "t";
  req.name = "named";
  const std::uint64_t id = f.orch->spawn_actor(std::move(req));
  f.orch->actor_ref(id, +1);
  CHECK(f.orch->lookup_actor("named").id == id);
  f.orch->actor_ref(id, -1);
  CHECK(f.orch->lookup_actor("named").id == 0);  // a closing actor is not found by name
  const std::uint32_t slot = f.net.started.back();
  f.reply(slot, f.net.calls()[0].header().task_id, 0);
  REQUIRE(!f.net.sent.empty());
  CHECK(f.net.sent.back().kind == msg_kind::shutdown);
}

TEST_CASE("a full inbox holds calls back until the transport has room again") {
  fixture f(1, 4);
  f.net.room = false;
  auto a = f.orch->submit(fixture::call(1));
  CHECK(f.net.calls().empty());
  f.net.room = true;
  f.orch->service();
  REQUIRE(f.net.calls().size() == 1);
  CHECK(f.net.calls()[0].int_argument() == 1);
}

TEST_CASE("when no process can be started any more, waiting calls fail with worker_crashed") {
  fixture f(1, 1);
  auto a = f.orch->submit(fixture::call(1));
  auto b = f.orch->submit(fixture::call(2));
  f.net.die(0);
  f.net.can_start_ = false;
  f.orch->on_lost("coray: the supervisor process was killed by SIGKILL");
  CHECK(fixture::error_of<ray::worker_crashed>(b).find("supervisor") != std::string::npos);
  CHECK_THROWS_AS(f.orch->submit(fixture::call(3)), ray::worker_crashed);
}

TEST_CASE(
    "a worker that dies before it serves is started again after a doubling pause, then given up") {
  fixture f(1, 2);
  auto a = f.orch->submit(fixture::call(1));
  REQUIRE(f.net.calls().size() == 1);
  const int exited_3 = W_EXITCODE(3, 0);
  constexpr std::uint32_t limit = orchestrator::max_start_failures;
  for (std::uint32_t n = 1; n < limit; ++n) {
    f.net.die(0);
    const auto before = clock::now();
    f.orch->on_death(0, {0, exited_3, 0, /*served=*/false});
    f.orch->service();
    CHECK(f.net.started.size() == n);  // not at once
    const auto due = f.orch->next_start();
    CHECK(due - before >= std::chrono::milliseconds(10) * (1 << (n - 1)));
    while (clock::now() < due) {
    }
    f.orch->service();
    REQUIRE(f.net.started.size() == n + 1);           // started again once the pause is over
    CHECK(f.net.calls().back().int_argument() == 1);  // and the call sent to it
  }
  f.net.die(0);
  f.orch->on_death(0, {0, exited_3, 0, /*served=*/false});
  f.orch->service();
  CHECK(f.net.started.size() == limit);  // given up
  CHECK(f.orch->next_start() == clock::time_point::max());
  const std::string why = fixture::error_of<ray::worker_crashed>(a);
  CHECK(why.find("exited with code 3") != std::string::npos);
  CHECK(why.find("5 times in a row") != std::string::npos);
  auto later = f.orch->submit(fixture::call(2));
  CHECK(fixture::error_of<ray::worker_crashed>(later) == why);  // later calls fail at once
  CHECK(f.orch->tasks().size() == 0);
}

TEST_CASE("a worker that served before it died is started again at once") {
  fixture f(1, 2);
  auto a = f.orch->submit(fixture::call(1, /*max_retries=*/1));
  f.net.die(0);
  f.orch->on_death(0, {1000, SIGKILL, 1, /*served=*/true});
  f.orch->service();
  CHECK(f.net.started.size() == 2);
  CHECK(f.orch->next_start() == clock::time_point::max());
}

// ---- resources ----------------------------------------------------------------------------

namespace {
/// Two task workers taking one call each, `cpus` CPUs and one GPU, named "7".
orchestrator_config with_one_gpu(double cpus = 2, std::uint32_t in_flight = 1) {
  orchestrator_config cfg{2, 2, in_flight, 0xC0FFEE, {}};
  cfg.num_cpus = to_resource_amount(cpus);
  cfg.num_gpus = resource_unit;
  cfg.gpu_ids = {"7"};
  return cfg;
}
}  // namespace

TEST_CASE("a call needing a GPU waits until it is free and is sent with its GPU") {
  fixture f(with_one_gpu());
  auto a = f.orch->submit(fixture::call_needing(1, 1, 1));
  auto b = f.orch->submit(fixture::call_needing(2, 1, 1));
  REQUIRE(f.net.calls().size() == 1);  // b waits: the one GPU is a's worker's
  CHECK(f.net.calls()[0].header().gpus == 1u);
  CHECK(f.orch->resources(true).at("GPU") == 0);
  f.reply(f.net.calls()[0].slot, a->id, 10);
  REQUIRE(f.net.calls().size() == 2);
  CHECK(f.net.calls()[1].int_argument() == 2);
  CHECK(f.net.calls()[1].header().gpus == 1u);
  f.reply(f.net.calls()[1].slot, b->id, 20);
  CHECK(f.orch->resources(true) == f.orch->resources(false));
}

TEST_CASE("calls of one CPU requirement share a worker's lease when no other can be granted") {
  fixture f(with_one_gpu(2, 2));
  auto a = f.orch->submit(fixture::call_needing(1, 1.5, 0));
  auto b = f.orch->submit(fixture::call_needing(2, 1.5, 0));  // 0.5 CPUs left: a's lease
  auto calls = f.net.calls();
  REQUIRE(calls.size() == 2);
  CHECK(calls[0].slot == calls[1].slot);
  CHECK(f.orch->resources(true).at("CPU") == 0.5);  // one lease for both
  f.reply(calls[0].slot, a->id, 1);
  f.reply(calls[1].slot, b->id, 2);
  CHECK(fixture::value(b) == 2);
  CHECK(f.orch->resources(true) == f.orch->resources(false));
}

TEST_CASE("calls needing the GPU run one at a time, and a default call takes another worker") {
  fixture f(with_one_gpu(2, 2));
  auto a = f.orch->submit(fixture::call_needing(1, 1, 1));
  auto b = f.orch->submit(fixture::call_needing(2, 1, 1));
  REQUIRE(f.net.calls().size() == 1);  // b is not queued behind a on the GPU's lease
  CHECK(f.net.calls()[0].header().gpus == 1u);
  auto c = f.orch->submit(fixture::call(3));  // a default call: the other worker, no GPU
  auto calls = f.net.calls();
  REQUIRE(calls.size() == 2);
  CHECK(calls[1].int_argument() == 3);
  CHECK(calls[1].slot != calls[0].slot);
  CHECK(calls[1].header().gpus == 0u);
  CHECK(f.orch->resources(true) == std::map<std::string, double>{{"CPU", 0}, {"GPU", 0}});
  f.reply(calls[0].slot, a->id, 1);  // the GPU is free: b goes, with it
  calls = f.net.calls();
  REQUIRE(calls.size() == 3);
  CHECK(calls[2].int_argument() == 2);
  CHECK(calls[2].header().gpus == 1u);
  f.reply(calls[2].slot, b->id, 2);
  f.reply(calls[1].slot, c->id, 3);
  CHECK(fixture::value(b) == 2);
  CHECK(fixture::value(c) == 3);
  CHECK(f.orch->resources(true) == f.orch->resources(false));
}

TEST_CASE("a worker's death gives back what its calls held") {
  fixture f(with_one_gpu());
  auto a = f.orch->submit(fixture::call_needing(1, 1, 1));
  REQUIRE(f.net.calls().size() == 1);
  f.kill(f.net.calls()[0].slot, 1);
  CHECK_FALSE(fixture::error_of<ray::worker_crashed>(a).empty());
  CHECK(f.orch->resources(true) == f.orch->resources(false));
}

TEST_CASE("a call the runtime can never run fails at once with infeasible_resources") {
  fixture f(with_one_gpu());
  auto a = f.orch->submit(fixture::call_needing(1, 1, 2));
  CHECK(fixture::error_of<ray::infeasible_resources>(a).find("GPU: 2") != std::string::npos);
  auto b = f.orch->submit(fixture::call_needing(1, 3, 0));
  CHECK(fixture::error_of<ray::infeasible_resources>(b).find("CPU: 2") != std::string::npos);
  CHECK(f.net.calls().empty());
}

TEST_CASE("with fewer CPUs than workers, a worker blocked in a get lends its CPU") {
  fixture f(with_one_gpu(1, 2));
  auto a = f.orch->submit(fixture::call(1));
  auto b = f.orch->submit(fixture::call(2));
  REQUIRE(f.net.calls().size() == 2);  // one CPU: both on the same worker, one after the other
  const std::uint32_t busy = f.net.calls()[0].slot;
  CHECK(f.net.calls()[1].slot == busy);
  f.reply(busy, b->id, 2);
  // a blocks in a get on a call it makes: its descendant runs on its worker, and while it is
  // blocked its CPU is free for another call, which goes to the other worker.
  f.net.block(busy, 1000);
  f.nested(busy, 1000, 5);
  REQUIRE(f.net.calls().size() == 3);
  CHECK(f.net.calls()[2].slot == busy);
  f.reply(busy, 1000, 5);
  auto c = f.orch->submit(fixture::call(3));
  REQUIRE(f.net.calls().size() == 4);
  CHECK(f.net.calls()[3].slot != busy);
  f.net.block(busy, 0);
  f.reply(busy, a->id, 1);
  f.reply(f.net.calls()[3].slot, c->id, 3);
  CHECK(fixture::value(c) == 3);
}

TEST_CASE("an actor with a GPU holds it for life, and the next one waits for it") {
  fixture f(with_one_gpu());
  auto spawn = [&] {
    actor_spawn_request req;
    req.constructor.fn_id = 7;
    req.type_name = "model";
    req.resources =
        std::make_shared<const resource_request>(resource_request::from(0, 1, {}, "test"));
    return f.orch->spawn_actor(std::move(req));
  };
  const std::uint64_t first = spawn();
  REQUIRE(f.net.calls().size() == 1);
  CHECK(f.net.calls()[0].kind == msg_kind::construct);
  CHECK(f.net.calls()[0].header().gpus == 1u);
  const std::uint32_t first_slot = f.net.calls()[0].slot;
  spawn();
  f.orch->service();
  CHECK(f.net.calls().size() == 1);  // its construction waits for the GPU
  f.orch->kill_actor(first);
  f.kill(first_slot, 1);
  REQUIRE(f.net.calls().size() == 2);
  CHECK(f.net.calls()[1].kind == msg_kind::construct);
  CHECK(f.net.calls()[1].header().gpus == 1u);
}

namespace {
/// An object recycled as a call's record is, with an idle bound of 16.
struct tide_probe : recycled<tide_probe, 16> {
  char bytes[48] = {};
};
}  // namespace

TEST_CASE(
    "a tide of calls larger than the idle bound is recycled whole, and once idle the rest goes "
    "back") {
  std::vector<std::unique_ptr<tide_probe>> tide;
  auto make_tide = [&] {
    for (int i = 0; i < 10'000; ++i) tide.push_back(std::make_unique<tide_probe>());
  };
  make_tide();
  tide.clear();
  if constexpr (recycling) {
    CHECK(tide_probe::kept_here() == 10'000);  // kept whole while busy
    CHECK(trim_recycled() >= 10'000 - 16);     // idle: all but the bound go back
    CHECK(tide_probe::kept_here() == 16);
    CHECK(trim_recycled() == 0);  // nothing more to give back
    make_tide();
    CHECK(tide_probe::kept_here() == 0);  // the next tide takes the kept ones first
  } else {
    CHECK(tide_probe::kept_here() == 0);  // AddressSanitizer: every object goes to malloc
    CHECK(trim_recycled() == 0);
  }
}

namespace {
/// An object recycled as a result's state is, with an idle bound of 16.
struct chunk_probe : recycled<chunk_probe, 16> {
  char bytes[112] = {};
};
/// Whether the page holding `p` is mapped in this process.
bool mapped(const void* p) {
  auto page = reinterpret_cast<std::uintptr_t>(p) & ~std::uintptr_t{4095};
  return ::msync(reinterpret_cast<void*>(page), 4096, MS_ASYNC) == 0 || errno != ENOMEM;
}
}  // namespace

TEST_CASE("a tide's memory goes back to the system once its objects are freed, by any thread") {
  // One thread makes 300,000 objects (34 MB of its chunks) and ends; another frees them
  // all, keeping 65,536 on its list while busy, then is idle and ends.
  constexpr int n = 300'000;
  std::vector<chunk_probe*> tide;
  tide.reserve(n);
  std::thread([&] {
    for (int i = 0; i < n; ++i) tide.push_back(new chunk_probe);
  }).join();
  std::size_t kept_while_busy = 0, kept_when_idle = 0;
  int changed = 0;
  std::thread([&] {
    for (chunk_probe* p : tide) {
      changed += p->bytes[5] != 0 ? 1 : 0;  // each object as made
      delete p;
    }
    kept_while_busy = chunk_probe::kept_here();
    trim_recycled();
    kept_when_idle = chunk_probe::kept_here();
  }).join();
  CHECK(changed == 0);
  int still_mapped = 0;
  for (chunk_probe* p : tide) still_mapped += mapped(p) ? 1 : 0;
  if constexpr (recycling) {
    CHECK(kept_while_busy == recycle_busy_limit);
    CHECK(kept_when_idle == 16);
    CHECK(still_mapped == 0);  // every chunk unmapped once both threads ended
  } else {
    CHECK(kept_while_busy == 0);  // AddressSanitizer: every object goes to malloc
  }
}

TEST_CASE("the index of live calls finds each live call and no other, whatever their ids") {
  // The driver's ids count from 1; each worker's nested calls count from 1 too, in a series
  // named by the high 32 bits (bit 63, the slot and the process's generation).
  auto series = [](std::uint64_t slot, std::uint64_t generation) {
    return (std::uint64_t{1} << 63) | (slot << 48) | (generation << 32);
  };
  const std::array<std::uint64_t, 4> bases{0, series(0, 1), series(1, 1), series(0, 2)};
  std::deque<task_record> records;  // entries never move
  id_index<task_record> index;
  std::map<std::uint64_t, task_record*> expected;
  std::array<std::uint64_t, 4> next{1, 1, 1, 1};
  std::uint64_t seed = 12345;
  auto random = [&] {
    seed = seed * 6364136223846793005u + 1442695040888963407u;
    return seed >> 33;
  };
  auto check_all = [&] {
    REQUIRE(index.size() == expected.size());
    for (const auto& [id, r] : expected) REQUIRE(index.find(id) == r);
    std::size_t seen = 0;
    index.for_each([&](task_record* r) {
      CHECK(expected.count(r->id) == 1);
      ++seen;
    });
    REQUIRE(seen == expected.size());
  };
  for (int step = 0; step < 200000; ++step) {
    const auto s = random() % bases.size();
    if (expected.size() < 300 && random() % 3 != 0) {
      // Mostly consecutive, now and then a jump (ids spent on refs, calls elsewhere).
      task_record& r = records.emplace_back();
      r.id = bases[s] + next[s];
      next[s] += random() % 8 == 0 ? 1 + random() % 1000 : 1;
      index.insert(&r);
      expected.emplace(r.id, &r);
    } else if (!expected.empty()) {
      auto it = expected.begin();
      std::advance(it, static_cast<long>(random() % expected.size()));
      CHECK(index.erase(it->first) == it->second);
      CHECK(index.find(it->first) == nullptr);
      CHECK(index.erase(it->first) == nullptr);
      expected.erase(it);
    }
    CHECK(index.find(bases[s] + next[s]) == nullptr);  // never handed out yet
    if (step % 997 == 0) check_all();
  }
  check_all();
}

TEST_CASE("the index of live calls keeps an old call among a tide, and gives back its room") {
  std::deque<task_record> records(100000);
  id_index<task_record> index;
  for (std::uint64_t id = 1; id <= records.size(); ++id) {
    records[id - 1].id = id;
    index.insert(&records[id - 1]);
  }
  CHECK(index.size() == records.size());
  CHECK(index.capacity() >= index.size());
  for (std::uint64_t id = 2; id <= records.size(); ++id)
    REQUIRE(index.erase(id) == &records[id - 1]);
  CHECK(index.find(1) == &records[0]);  // the call that outlived the tide
  index.shrink_to_fit();
  CHECK(index.capacity() < 1024);
  CHECK(index.find(1) == &records[0]);
  CHECK(index.erase(1) == &records[0]);
  index.shrink_to_fit();
  CHECK(index.capacity() == 0);
  CHECK(index.find(1) == nullptr);
}

// ---- a cluster's nodes ------------------------------------------------------------------

namespace {
/// Two nodes of two task workers (slots 0-1 on node 0, 2-3 on node 1) and an actor slot each
/// (4 on node 0, 5 on node 1): node 0 has 2 CPUs, node 1 2 CPUs and a GPU named "g".
fixture two_nodes() {
  orchestrator_config cfg{4, 2, 1, 0xC0FFEE, {}};
  cfg.num_cpus = to_resource_amount(2);
  cfg.other_nodes.push_back({to_resource_amount(2), resource_unit, {"g"}, {}});
  return fixture(std::move(cfg), {0, 0, 1, 1, 0, 1});
}
task_spec placed(int arg, placement where, double gpus = 0) {
  task_spec spec = fixture::call(arg);
  auto r = resource_request::from(1, gpus, {}, "test");
  r.where = where;
  spec.resources = std::make_shared<const resource_request>(std::move(r));
  return spec;
}
}  // namespace

TEST_CASE("in a cluster each node has its own ledger: a GPU call goes to the node with the GPU") {
  fixture f = two_nodes();
  CHECK(f.orch->resources(false) == std::map<std::string, double>{{"CPU", 4}, {"GPU", 1}});
  CHECK(f.orch->resources(false, 0) == std::map<std::string, double>{{"CPU", 2}});
  CHECK(f.orch->resources(false, 1) == std::map<std::string, double>{{"CPU", 2}, {"GPU", 1}});
  auto a = f.orch->submit(fixture::call_needing(1, 1, 1));
  REQUIRE(f.net.calls().size() == 1);
  CHECK(f.net.node_of(f.net.calls()[0].slot) == 1);
  CHECK(f.net.calls()[0].header().gpus == 1u);  // node 1's GPU 0
  f.reply(f.net.calls()[0].slot, a->id, 1);
  CHECK(fixture::value(a) == 1);
  CHECK(f.orch->resources(true) == f.orch->resources(false));
}

TEST_CASE("in a cluster, node affinity holds a call to its node, and spread takes nodes in turn") {
  fixture f = two_nodes();
  std::vector<state_ptr> results;
  for (int i = 0; i < 2; ++i) results.push_back(f.orch->submit(placed(i, {1, false, false})));
  auto calls = f.net.calls();
  REQUIRE(calls.size() == 2);
  for (auto& c : calls) CHECK(f.net.node_of(c.slot) == 1);
  for (std::size_t i = 0; i < calls.size(); ++i)
    f.reply(calls[i].slot, results[i]->id, static_cast<int>(i));

  for (int i = 0; i < 4; ++i) results.push_back(f.orch->submit(placed(i, {-1, false, true})));
  calls = f.net.calls();
  REQUIRE(calls.size() == 6);
  std::vector<std::uint32_t> nodes;
  for (std::size_t i = 2; i < 6; ++i) nodes.push_back(f.net.node_of(calls[i].slot));
  CHECK(nodes == std::vector<std::uint32_t>{0, 1, 0, 1});
}

TEST_CASE("in a cluster, a call bound to a lost node fails, and a soft one runs elsewhere") {
  fixture f = two_nodes();
  f.net.lost = {false, true};
  for (std::uint32_t s : {2u, 3u}) f.net.die(s);
  auto hard = f.orch->submit(placed(1, {1, false, false}));
  f.orch->service();
  CHECK(fixture::error_of<ray::worker_crashed>(hard).find("node 1, which is lost") !=
        std::string::npos);
  auto soft = f.orch->submit(placed(2, {1, true, false}));
  REQUIRE(f.net.calls().size() == 1);
  CHECK(f.net.node_of(f.net.calls()[0].slot) == 0);
  // An affinity to a node the cluster lacks can never run.
  auto nowhere = f.orch->submit(placed(3, {5, false, false}));
  CHECK(fixture::error_of<ray::infeasible_resources>(nowhere).find("node 5") != std::string::npos);
}

TEST_CASE("in a cluster an actor takes a slot on the node its resources or affinity name") {
  fixture f = two_nodes();
  auto spawn = [&](double gpus, placement where) {
    actor_spawn_request req;
    req.constructor.fn_id = 7;
    req.type_name = "model";
    if (gpus > 0)
      req.resources =
          std::make_shared<const resource_request>(resource_request::from(0, gpus, {}, "test"));
    req.where = where;
    return f.orch->spawn_actor(std::move(req));
  };
  spawn(1, {});
  REQUIRE(f.net.calls().size() == 1);
  CHECK(f.net.calls()[0].slot == 5);  // node 1's actor slot: the GPU is there
  CHECK(f.net.calls()[0].header().gpus == 1u);
  spawn(0, {});
  REQUIRE(f.net.calls().size() == 2);
  CHECK(f.net.calls()[1].slot == 4);                                 // by default, this machine
  CHECK_THROWS_AS(spawn(0, {1, false, false}), ray::runtime_error);  // node 1's slot is taken
  CHECK_THROWS_AS(spawn(0, {3, false, false}), ray::infeasible_resources);
}

namespace {
std::vector<resource_request> bundles_of(std::vector<std::pair<double, double>> cpu_gpu) {
  std::vector<resource_request> out;
  for (auto [c, g] : cpu_gpu) out.push_back(resource_request::from(c, g, {}, "test"));
  return out;
}
task_spec in_bundle(int arg, std::uint64_t group, std::int32_t bundle, double cpus = 1) {
  task_spec spec = fixture::call(arg);
  auto r = resource_request::from(cpus, 0, {}, "test");
  r.where.group = group;
  r.where.bundle = bundle;
  spec.resources = std::make_shared<const resource_request>(std::move(r));
  return spec;
}
}  // namespace

TEST_CASE("a placement group reserves its bundles by strategy, and its calls lease from them") {
  fixture f = two_nodes();
  auto [id, ready] =
      f.orch->create_placement_group(bundles_of({{1, 0}, {1, 0}}), bundle_strategy::strict_spread);
  REQUIRE(ready->st == object_state::status::ready);
  CHECK(f.orch->placement_group_nodes(id) == std::vector<int>{0, 1});
  CHECK(f.orch->resources(true).at("CPU") == 2);  // one CPU of each node is the group's
  auto a = f.orch->submit(in_bundle(1, id, 1));
  auto b = f.orch->submit(in_bundle(2, id, 1));
  REQUIRE(f.net.calls().size() == 1);  // the bundle's one CPU is a's: b waits for it
  CHECK(f.net.node_of(f.net.calls()[0].slot) == 1);
  f.reply(f.net.calls()[0].slot, a->id, 1);
  REQUIRE(f.net.calls().size() == 2);
  CHECK(f.net.calls()[1].int_argument() == 2);
  CHECK(f.net.node_of(f.net.calls()[1].slot) == 1);
  f.reply(f.net.calls()[1].slot, b->id, 2);
  CHECK(fixture::value(b) == 2);
  // More than a bundle holds can never run in it.
  auto big = f.orch->submit(in_bundle(3, id, 0, 2));
  CHECK(fixture::error_of<ray::infeasible_resources>(big).find("bundle 0") != std::string::npos);
}

TEST_CASE("a strict_pack group waits for one node's room, and a removed group gives it back") {
  fixture f = two_nodes();
  auto [gpu_group, gpu_ready] =
      f.orch->create_placement_group(bundles_of({{2, 0}, {0, 1}}), bundle_strategy::strict_pack);
  REQUIRE(gpu_ready->st == object_state::status::ready);
  CHECK(f.orch->placement_group_nodes(gpu_group) == std::vector<int>{1, 1});  // the GPU's node
  auto [cpu_group, cpu_ready] =
      f.orch->create_placement_group(bundles_of({{2, 0}}), bundle_strategy::strict_pack);
  CHECK(f.orch->placement_group_nodes(cpu_group) == std::vector<int>{0});
  auto [waiting, waiting_ready] =
      f.orch->create_placement_group(bundles_of({{1, 0}}), bundle_strategy::pack);
  f.orch->service();
  CHECK(waiting_ready->st == object_state::status::pending);  // no CPU is left anywhere
  auto queued = f.orch->submit(in_bundle(1, waiting, 0));
  CHECK(f.net.calls().empty());  // it waits for its group
  f.orch->remove_placement_group(gpu_group);
  f.orch->service();
  REQUIRE(waiting_ready->st == object_state::status::ready);
  CHECK(f.orch->placement_group_nodes(waiting) == std::vector<int>{1});
  REQUIRE(f.net.calls().size() == 1);  // its call goes, on its bundle's node
  CHECK(f.net.node_of(f.net.calls()[0].slot) == 1);
  // A call in the removed group fails; a group no node could hold is refused at once.
  auto late = f.orch->submit(in_bundle(2, gpu_group, 0));
  CHECK(fixture::error_of<ray::infeasible_resources>(late).find("removed") != std::string::npos);
  CHECK_THROWS_AS(f.orch->create_placement_group(bundles_of({{1, 0}, {1, 0}, {1, 0}}),
                                                 bundle_strategy::strict_spread),
                  ray::infeasible_resources);
  CHECK_THROWS_AS(f.orch->create_placement_group(bundles_of({{0, 2}}), bundle_strategy::pack),
                  ray::infeasible_resources);
}

TEST_CASE("an actor in a bundle takes its GPU from the bundle, on the bundle's node") {
  fixture f = two_nodes();
  auto [id, ready] = f.orch->create_placement_group(bundles_of({{0, 1}}), bundle_strategy::pack);
  REQUIRE(ready->st == object_state::status::ready);
  CHECK(f.orch->resources(true).count("GPU") == 1);
  CHECK(f.orch->resources(true).at("GPU") == 0);  // the group holds it
  actor_spawn_request req;
  req.constructor.fn_id = 7;
  req.type_name = "model";
  req.resources =
      std::make_shared<const resource_request>(resource_request::from(0, 1, {}, "test"));
  req.where.group = id;
  req.where.bundle = 0;
  f.orch->spawn_actor(std::move(req));
  REQUIRE(f.net.calls().size() == 1);
  CHECK(f.net.calls()[0].slot == 5);  // node 1's actor slot
  CHECK(f.net.calls()[0].header().gpus == 1u);
}
