// Seed 004, workload 3: expensive initialisation (Ray's blog post "Modern Parallel and
// Distributed Python"). Each of two workers builds a large read-only model -- 25M floats
// (100 MB) drawn from std::mt19937_64 with seed 7 + the worker's index, standing in for
// loading a model from disk -- then evaluates 10 batches with it. A batch is 16 input rows
// of 1,000 floats; evaluating it dots every row against each of the model's 25,000 windows
// of 1,000 weights (the whole model is read once per batch) and sums the positive parts, one
// output per row. Building takes about as long as evaluating the 10 batches.
//
// Variants, each timed end to end, model building included (median of several runs):
//   - serial:  one thread builds worker 0's model and evaluates its 10 batches, then worker 1's;
//   - threads: one std::thread per worker builds its own model and evaluates its 10 batches;
//   - mp:      as the blog post's multiprocessing version: the mapped function is stateless,
//              so each of the 10 rounds is a bench::mp_pool map over the workers, and every
//              call rebuilds its worker's model before evaluating that round's batch (the
//              pool of two forked processes is started before timing);
//   - coray:   one actor per worker, ray::spawn<model>(seed), whose constructor builds the
//              model in the actor's process; then 10 rounds, each calling evaluate on every
//              actor and getting the round's results.
// Every variant's outputs must equal the serial run's, bit for bit (checksummed).
// The serial, threads and mp variants run before the runtime exists (mp_pool forks the
// process, which must have no runtime threads then).
// Usage: workload_model [--quick] [--json FILE]
#include <coray/coray.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "bench_common.hpp"
#include "mp_pool.hpp"
#include "seed004.hpp"

namespace {

using namespace seed004;

constexpr std::size_t workers = 2;

run_results run_serial(const batch_set& batches) {
  run_results res;
  for (std::size_t wk = 0; wk < workers; ++wk) res.push_back(worker_job(wk, batches));
  return res;
}

run_results run_threads(const batch_set& batches) {
  run_results res(workers);
  std::vector<std::thread> ts;
  for (std::size_t wk = 0; wk < workers; ++wk)
    ts.emplace_back([&, wk] { res[wk] = worker_job(wk, batches); });
  for (auto& t : ts) t.join();
  return res;
}

/// The multiprocessing version's argument: which worker, and this round's batch.
struct mp_job {
  std::uint32_t worker = 0;
  std::vector<float> batch;
};

/// Stateless, as a function given to Pool.map must be: builds the model, evaluates once.
outputs evaluate_next_batch(const mp_job& job) {
  return model(model_seed(job.worker)).evaluate(job.batch);
}

run_results run_mp(bench::mp_pool<mp_job, outputs>& pool, const batch_set& batches) {
  run_results res(workers);
  for (std::size_t r = 0; r < rounds; ++r) {
    std::vector<mp_job> jobs;
    for (std::size_t wk = 0; wk < workers; ++wk)
      jobs.push_back({static_cast<std::uint32_t>(wk), batches[wk][r]});
    auto outs = pool.map(jobs);
    for (std::size_t wk = 0; wk < workers; ++wk) res[wk].push_back(std::move(outs[wk]));
  }
  return res;
}

run_results run_coray(const batch_set& batches) {
  std::vector<ray::actor<model>> actors;
  for (std::size_t wk = 0; wk < workers; ++wk) actors.push_back(ray::spawn<model>(model_seed(wk)));
  run_results res(workers);
  for (std::size_t r = 0; r < rounds; ++r) {
    std::vector<ray::object_ref<outputs>> refs;
    for (std::size_t wk = 0; wk < workers; ++wk)
      refs.push_back(actors[wk].call<&model::evaluate>(batches[wk][r]));
    std::vector<outputs> outs = ray::get(refs);
    for (std::size_t wk = 0; wk < workers; ++wk) res[wk].push_back(std::move(outs[wk]));
  }
  return res;
}

std::uint64_t reference = 0;
bool mismatch = false;

/// Times `run`, checks each run's outputs against the serial run's checksum, reports the
/// median under model_<variant> and returns it.
template <class Run>
double measure(const std::string& variant, int reps, Run&& run) {
  std::vector<std::uint64_t> sums;
  auto t = bench::times(reps, [&] {
    run_results res = run();
    sums.push_back(model_checksum(res));  // a hash of 320 values: negligible next to the run
  });
  const std::string name = "model_" + variant;
  for (std::uint64_t s : sums) {
    if (reference == 0) reference = s;
    if (s != reference) {
      std::printf("MISMATCH %s: checksum %016llx, serial %016llx\n", name.c_str(),
                  static_cast<unsigned long long>(s), static_cast<unsigned long long>(reference));
      std::fflush(stdout);
      mismatch = true;
      break;
    }
  }
  const double m = bench::median(t);
  bench::report(name, m, "s", false);
  return m;
}

}  // namespace

int main(int argc, char** argv) {
  ray::enter_worker_if_spawned();
  auto opt = bench::parse_options(argc, argv);
  const batch_set batches = make_batches(workers);

  // Before the runtime: no runtime threads may exist while mp_pool forks.
  const double serial = measure("serial", opt.reps, [&] { return run_serial(batches); });
  const double threads = measure("threads", opt.reps, [&] { return run_threads(batches); });
  double mp = 0;
  {
    bench::mp_pool<mp_job, outputs> pool(static_cast<unsigned>(workers), evaluate_next_batch);
    // Each run rebuilds the models 20 times: run it fewer times.
    mp = measure("mp", opt.quick ? 1 : 3, [&] { return run_mp(pool, batches); });
  }  // the processes have ended

  ray::runtime rt(argc, argv, {.num_workers = 2});
  const double coray = measure("coray", opt.reps, [&] { return run_coray(batches); });

  bench::report("model_coray_speedup_vs_serial", serial / coray, "x", true, "target >= 1.7");
  bench::report("model_coray_vs_threads", coray / threads, "x", false, "target <= 1.15");
  bench::report("model_coray_speedup_vs_mp", mp / coray, "x", true);

  bench::write_json(opt);
  return mismatch ? 1 : 0;
}
