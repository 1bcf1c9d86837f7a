// Seed 004, workload 2 (stateful): a streaming prefix count. Each worker keeps, across the
// documents it is sent, a count of every word prefix and the set of prefixes seen more than
// three times; at the end the popular prefixes of all workers are merged.
//
//   @ray.remote
//   class StreamingPrefixCount(object):
//       def add_document(self, document): ...   # counts the prefixes of every word
//       def get_popular(self): return self.popular_prefixes
//   streaming_actors = [StreamingPrefixCount.remote() for _ in range(num_cpus)]
//   for i in range(num_cpus * 10):
//       document = [np.random.bytes(20) for _ in range(10000)]
//       streaming_actors[i % num_cpus].add_document.remote(document)
//
// and its multiprocessing version, which has nowhere to keep state, so sends it back and
// forth: every round,
//
//   results = pool.map(accumulate_prefixes,
//                      zip(running_prefix_counts, running_popular_prefixes, documents))
//   running_prefix_counts = [r[0] for r in results]; running_popular_prefixes = [r[1] ...]
//
// Here: documents of 10,000 random 20-byte words from one std::mt19937_64 of a fixed seed,
// 10 documents per worker, 2 workers; document i goes to worker i % 2. Every variant makes
// its documents inside the timed region as it goes, in the same order, as the seed does:
//   - serial:  one thread makes each document and adds it to that worker's state;
//   - threads: a std::thread per worker owns its state and takes documents from a queue the
//              main thread fills as it makes them;
//   - mp:      bench::mp_pool of two forked processes; 10 rounds, each making one document
//              per worker, then a map over (prefix counts, popular prefixes, document) per
//              worker returning the updated counts and popular prefixes, so the state
//              travels by value both ways every round;
//   - coray:   an actor per worker (spawned inside the timed region), add_document calls
//              sent as documents are made, get_popular at the end.
// A figure is the median over repetitions (fewer for mp, the slow one) of the time until
// the merged set of popular prefixes is known. Freeing the workers' state comes after the
// clock stops (the actors' end is waited for before the next repetition), and then
// malloc_trim hands the freed memory back to the system: every repetition of every variant
// builds its state in memory it must fault in afresh, as a fresh run of the seed does and
// as each new actor's process must (otherwise the serial and threads variants would reuse
// the heap of the repetition before). The merged set's size must agree across variants.
// Usage: workload_prefix_count [--quick] [--json FILE]
#include <malloc.h>

#include <chrono>
#include <condition_variable>
#include <coray/coray.hpp>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bench_common.hpp"
#include "mp_pool.hpp"
#include "seed004.hpp"

namespace {

using namespace seed004;

constexpr unsigned num_workers = 2;

struct run_result {
  double seconds = 0;
  std::size_t popular = 0;
};

std::size_t merged_size(const std::vector<prefix_state>& states) {
  return merged_popular(states).size();
}

run_result run_serial() {
  const auto t0 = bench::clk::now();
  std::mt19937_64 gen(document_seed);
  std::vector<prefix_state> states(num_workers);
  for (unsigned i = 0; i < num_workers * documents_per_worker; ++i)
    states[i % num_workers].add_document(random_document(gen));
  const std::size_t popular = merged_size(states);
  return {bench::seconds_since(t0), popular};  // the states are freed after the clock stops
}

/// A queue of documents for one thread; an empty optional ends it.
class inbox {
 public:
  void push(std::optional<document> d) {
    {
      std::lock_guard lock(mutex_);
      queue_.push_back(std::move(d));
    }
    ready_.notify_one();
  }
  std::optional<document> pop() {
    std::unique_lock lock(mutex_);
    ready_.wait(lock, [&] { return !queue_.empty(); });
    auto d = std::move(queue_.front());
    queue_.pop_front();
    return d;
  }

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::optional<document>> queue_;
};

run_result run_threads() {
  const auto t0 = bench::clk::now();
  std::vector<prefix_state> states(num_workers);
  std::vector<inbox> inboxes(num_workers);
  std::vector<std::thread> threads;
  for (unsigned w = 0; w < num_workers; ++w)
    threads.emplace_back([&, w] {
      while (auto d = inboxes[w].pop()) states[w].add_document(*d);
    });
  std::mt19937_64 gen(document_seed);
  for (unsigned i = 0; i < num_workers * documents_per_worker; ++i)
    inboxes[i % num_workers].push(random_document(gen));
  for (auto& box : inboxes) box.push(std::nullopt);
  for (auto& t : threads) t.join();
  const std::size_t popular = merged_size(states);
  return {bench::seconds_since(t0), popular};
}

/// One item of the multiprocessing map: a worker's state and its next document.
struct state_and_document {
  // The process updates its own decoded copy in place and sends it back, as the Python
  // function updates the dict and set it unpickled.
  mutable prefix_state state;
  document doc;
};

using prefix_pool = bench::mp_pool<state_and_document, prefix_state>;

prefix_state accumulate_prefixes(const state_and_document& item) {
  item.state.add_document(item.doc);
  return std::move(item.state);
}

run_result run_mp(prefix_pool& pool) {
  const auto t0 = bench::clk::now();
  std::mt19937_64 gen(document_seed);
  std::vector<prefix_state> states(num_workers);
  std::vector<state_and_document> items(num_workers);
  for (unsigned round = 0; round < documents_per_worker; ++round) {
    for (unsigned w = 0; w < num_workers; ++w)
      items[w] = {std::move(states[w]), random_document(gen)};
    states = pool.map(items);
  }
  const std::size_t popular = merged_size(states);
  return {bench::seconds_since(t0), popular};
}

run_result run_coray() {
  const auto t0 = bench::clk::now();
  std::vector<ray::actor<streaming_prefix_count>> actors;
  for (unsigned w = 0; w < num_workers; ++w) actors.push_back(ray::spawn<streaming_prefix_count>());
  std::set<std::string> popular;
  for (auto& p : ray::get(stream_documents(actors)).get()) popular.insert(p.begin(), p.end());
  const run_result r{bench::seconds_since(t0), popular.size()};

  // The actors end with their last handles; wait for them to free their state, so that it
  // does not overlap the next repetition.
  std::vector<int> pids;
  for (auto& a : actors) pids.push_back(ray::actor_process(a).pid);
  actors.clear();
  const auto t1 = bench::clk::now();
  for (bool alive = true; alive && bench::seconds_since(t1) < 10;) {
    alive = false;
    for (const auto& c : ray::active_children())
      for (int pid : pids) alive = alive || c.pid == pid;
    if (alive) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return r;
}

/// Runs `f` reps times; the median time, and the popular count (which must not vary).
template <class F>
run_result repeat(int reps, F&& f) {
  std::vector<double> t;
  std::size_t popular = 0;
  for (int i = 0; i < reps; ++i) {
    run_result r = f();
    ::malloc_trim(0);  // the freed state's memory goes back to the system
    popular = i == 0 || r.popular == popular ? r.popular : SIZE_MAX;
    t.push_back(r.seconds);
  }
  return {bench::median(t), popular};
}

}  // namespace

int main(int argc, char** argv) {
  ray::enter_worker_if_spawned();
  auto opt = bench::parse_options(argc, argv);
  // A run of the mp variant takes several times the others': fewer repetitions of it.
  const int reps = opt.quick ? 2 : opt.reps, mp_reps = opt.quick ? 1 : 3;

  const run_result serial = repeat(reps, run_serial);
  bench::report("prefix_count_serial", serial.seconds, "s", false,
                "20 documents into 2 states, one thread");
  const run_result threads = repeat(reps, run_threads);
  bench::report("prefix_count_threads", threads.seconds, "s", false, "a std::thread per state");
  run_result mp;
  {
    prefix_pool pool(num_workers, accumulate_prefixes);
    mp = repeat(mp_reps, [&] { return run_mp(pool); });
  }
  bench::report("prefix_count_mp", mp.seconds, "s", false,
                "mp_pool of 2 processes, state by value each round");

  ray::runtime rt(argc, argv, {.num_workers = num_workers});
  const run_result coray = repeat(reps, run_coray);
  bench::report("prefix_count_coray", coray.seconds, "s", false, "an actor per state");

  bench::report("prefix_count_coray_speedup_vs_serial", serial.seconds / coray.seconds, "x", true,
                "target >= 1.7");
  bench::report("prefix_count_coray_vs_threads", coray.seconds / threads.seconds, "x", false,
                "target <= 1.15");
  bench::report("prefix_count_coray_speedup_vs_mp", mp.seconds / coray.seconds, "x", true,
                "target >= 3");
  bench::write_json(opt);

  if (serial.popular != threads.popular || serial.popular != mp.popular ||
      serial.popular != coray.popular) {
    std::printf("MISMATCH popular prefixes: serial %zu threads %zu mp %zu coray %zu\n",
                serial.popular, threads.popular, mp.popular, coray.popular);
    return 1;
  }
  return 0;
}
