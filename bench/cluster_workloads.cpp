// Seed 004's three workloads (workload_convolution, workload_prefix_count, workload_model)
// with coray over a cluster's ranks, each rank one worker with one CPU:
//
//   mpirun -np 3 --mca btl tcp,self build/bench/bench/cluster_workloads [--quick] [--json FILE]
//
// The work is fixed at three workers' worth whatever the number of ranks, so the time under
// N ranks against the time under one is what spreading it gains:
//   - convolution:  10 iterations, each making the 3000x3000 image in rank 0's store and
//                   convolving it with 3 filters, a task each, ray::spread over the ranks (the
//                   new image crosses to every other rank each iteration, from rank 0);
//   - prefix_count: 30 documents of 10,000 random 20-byte words, document i to prefix-count
//                   actor i % 3, the actors ray::spread;
//   - model:        3 actors, ray::spread, each building its 100 MB model, then evaluating
//                   its 10 batches.
// Actors hold 1 CPU (num_cpus = 1), so under one rank they run one after another: an actor
// waiting for the CPU is built once another has ended, in no set order (not always the
// order of spawning). So every call is made at once, then each actor's results are got as
// it finishes, and its handle dropped then, which lets the next one be built.
// Every figure is the median over repetitions of the whole workload (actors' spawning
// included), from a cluster whose CPUs are all free. Every repetition's results must equal
// a serial computation's made by rank 0 (checksums, or the merged set of prefixes).
//
// Rows are named by the number of ranks: cluster_<workload>_1_rank, _3_ranks, ...; with
// more than one rank, also the time the image takes to reach a task on every other rank
// (cluster_image_72mb_to_<N>_other_ranks). scripts/bench.py runs this program under
// `mpiexec -n 1` and `mpiexec -n 3` and divides one by the other.
#include <algorithm>
#include <coray/coray.hpp>
#include <coray/mpi.hpp>
#include <cstdint>
#include <cstdio>
#include <random>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "seed004.hpp"

namespace {

using namespace seed004;

constexpr std::size_t workers = 3;  // the fixed amount of work: three workers' worth

void nothing() {}

/// Runs a call on node `rank` only.
ray::task_options on_node(int rank) { return {.scheduling_strategy = ray::node_affinity(rank)}; }

/// Returns once every rank's CPU is free: a task holding 1 CPU on each rank, by node
/// affinity, can start only when the actors of the repetition before have ended there.
void settle() {
  std::vector<ray::object_ref<void>> refs;
  for (const auto& node : ray::nodes())
    refs.push_back(ray::task<nothing>.options(on_node(node.rank)).remote());
  for (auto& r : refs) ray::get(r).get();
}

/// Runs `run` (returning whether its results agreed with the serial ones) `reps` times, each
/// from a settled cluster; the median seconds. Sets `ok` false on any disagreement.
template <class Run>
double measure(int reps, bool& ok, Run&& run) {
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    settle();
    const auto t0 = bench::clk::now();
    const bool agreed = run();
    t.push_back(bench::seconds_since(t0));
    ok = ok && agreed;
  }
  return bench::median(t);
}

/// For each actor i, once its call `last[i]` is done (its calls run in order: all of them
/// are), in the order they finish: `take(i)`, then drops its handle. Waiting on them in
/// spawn order instead could wait, under one rank, on an actor that is not built while
/// holding the one that holds the CPU.
template <class T, class R, class Take>
void as_they_finish(std::vector<ray::actor<T>>& actors, const std::vector<ray::object_ref<R>>& last,
                    Take&& take) {
  std::vector<ray::object_ref<R>> pending = last;
  while (!pending.empty()) {
    auto done = ray::wait(pending).get();
    const auto i =
        static_cast<std::size_t>(std::find(last.begin(), last.end(), done.ready[0]) - last.begin());
    take(i);
    actors[i] = {};  // it ends: its CPU goes to another (under one rank)
    pending = std::move(done.pending);
  }
}

// ---- convolution ------------------------------------------------------------------------

double serial_convolution(const std::vector<filter>& filters) {
  double sum = 0;
  std::vector<double> image(image_side * image_side), full;
  for (int it = 0; it < iterations; ++it) {
    make_image(image, it);
    std::vector<std::vector<double>> outs;
    for (const auto& f : filters) outs.push_back(convolve_subsample(image, f, full));
    sum += convolution_checksum(outs);
  }
  return sum;
}

std::size_t pixels(std::span<const double> image) { return image.size(); }

/// With several ranks: the median time for a new image to reach a task on every other rank
/// at once, as it does each iteration (the tasks only read its size). Each repetition makes
/// its own image before its clock starts: a node keeps a copy of what it was sent, and is
/// not sent it again.
double image_to_other_ranks(int reps) {
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    auto buffer = ray::put_buffer<double>(image_side * image_side);
    make_image(buffer.span(), i);
    const auto image = std::move(buffer).seal();
    const auto start = bench::clk::now();
    std::vector<ray::object_ref<std::size_t>> refs;
    for (const auto& node : ray::nodes())
      if (node.rank != 0)
        refs.push_back(ray::task<pixels>.options(on_node(node.rank)).remote(image));
    for (auto& r : refs) (void)ray::get(r).get();
    t.push_back(bench::seconds_since(start));
  }
  return bench::median(t);
}

// ---- prefix count -----------------------------------------------------------------------

std::set<std::string> serial_prefix_count() {
  std::mt19937_64 gen(document_seed);
  std::vector<prefix_state> states(workers);
  for (unsigned i = 0; i < workers * documents_per_worker; ++i)
    states[i % workers].add_document(random_document(gen));
  return merged_popular(states);
}

std::set<std::string> coray_prefix_count() {
  std::vector<ray::actor<streaming_prefix_count>> actors;
  for (std::size_t w = 0; w < workers; ++w)
    actors.push_back(
        ray::spawn<streaming_prefix_count>({.num_cpus = 1, .scheduling_strategy = ray::spread}));
  const auto refs = stream_documents(actors);
  std::set<std::string> popular;
  as_they_finish(actors, refs, [&](std::size_t w) {
    const std::vector<std::string> mine = ray::get(refs[w]);
    popular.insert(mine.begin(), mine.end());
  });
  return popular;
}

// ---- model ------------------------------------------------------------------------------

run_results coray_models(const batch_set& batches) {
  std::vector<ray::actor<model>> actors;
  for (std::size_t w = 0; w < workers; ++w)
    actors.push_back(
        ray::spawn<model>({.num_cpus = 1, .scheduling_strategy = ray::spread}, model_seed(w)));
  std::vector<std::vector<ray::object_ref<outputs>>> refs(workers);
  for (std::size_t w = 0; w < workers; ++w)
    for (const auto& batch : batches[w]) refs[w].push_back(actors[w].call<&model::evaluate>(batch));
  std::vector<ray::object_ref<outputs>> last;
  for (const auto& r : refs) last.push_back(r.back());
  run_results res(workers);
  as_they_finish(actors, last, [&](std::size_t w) {
    for (auto& r : refs[w]) res[w].push_back(ray::get(r));
  });
  return res;
}

}  // namespace

int main(int argc, char** argv) {
  ray::enter_worker_if_spawned();
  const bench::options opt = bench::parse_options(argc, argv);
  ray::runtime rt(argc, argv, {.num_workers = 1, .num_cpus = 1});  // every rank: 1 worker
  const std::size_t ranks = ray::nodes().size();
  const std::string on = ranks == 1 ? "_1_rank" : "_" + std::to_string(ranks) + "_ranks";
  const std::string shape = std::to_string(ranks) + (ranks == 1 ? " rank" : " ranks") +
                            " of 1 worker; 3 workers' worth, ray::spread";
  const int reps = opt.quick ? 2 : 5;
  bool ok = true;

  // What the coray runs must give, computed by rank 0 alone, before any is timed.
  const std::vector<filter> filters = make_filters(workers);
  const double convolution_expected = serial_convolution(filters);
  const std::set<std::string> popular_expected = serial_prefix_count();
  const batch_set batches = make_batches(workers);
  run_results model_serial;
  for (std::size_t w = 0; w < workers; ++w) model_serial.push_back(worker_job(w, batches));
  const std::uint64_t model_expected = model_checksum(model_serial);

  const auto convolution_task =
      ray::task<convolve_task>.options({.scheduling_strategy = ray::spread});
  (void)convolve_in_store(filters, 1, convolution_task);  // every rank's worker has its scratch
  const double convolution = measure(reps, ok, [&] {
    return convolve_in_store(filters, iterations, convolution_task) == convolution_expected;
  });
  bench::report("cluster_convolution" + on, convolution, "s", false,
                "10 iterations x 3 filters, image in rank 0's store; " + shape);
  if (ranks > 1)
    bench::report("cluster_image_72mb_to_" + std::to_string(ranks - 1) + "_other_ranks",
                  image_to_other_ranks(reps * 2), "s", false,
                  "a 72 MB object put on rank 0, read by a task on each other rank at once");

  const double prefix_count =
      measure(reps, ok, [&] { return coray_prefix_count() == popular_expected; });
  bench::report("cluster_prefix_count" + on, prefix_count, "s", false,
                "30 documents over 3 actors holding 1 CPU each; " + shape);

  const double models =
      measure(reps, ok, [&] { return model_checksum(coray_models(batches)) == model_expected; });
  bench::report("cluster_model" + on, models, "s", false,
                "3 actors of 1 CPU, each a 100 MB model and 10 batches; " + shape);

  bench::write_json(opt);
  if (!ok) {
    std::printf("MISMATCH: a coray run's results differ from the serial computation's\n");
    return 1;
  }
  return 0;
}
