// Seed 004, workload 1 (numerical): every worker convolves the same large image with a
// filter of its own, ten times over.
//
//   @ray.remote
//   def f(image, random_filter):
//       return scipy.signal.convolve2d(image, random_filter)[::5, ::5]
//   filters = [np.random.normal(size=(4, 4)) for _ in range(num_cpus)]
//   for _ in range(10):
//       image = np.zeros((3000, 3000))
//       image_id = ray.put(image)
//       ray.get([f.remote(image_id, filters[i]) for i in range(num_cpus)])
//
// and its multiprocessing version, which sends the image by value every iteration:
//
//   pool.map(f, zip(num_cpus * [image], filters))
//
// Here: a 3000x3000 image of doubles, made afresh each iteration from a fixed seed (the
// same data in every variant); one random 4x4 filter per worker (fixed seed); the full 2-D
// convolution (3003x3003, scipy's mode 'full') computed into a full-size buffer, of which
// every 5th row and column is kept (601x601). Ten iterations, two workers. One kernel,
// convolve_subsample(), serves every variant; each worker (thread or process) keeps its
// full-size buffer from call to call, and every variant is warm (buffers touched, processes
// started) before it is timed:
//   - serial:  one thread makes the image, then does the two convolutions in turn;
//   - threads: each iteration, one std::thread per filter, each reading the one image by
//              reference;
//   - mp:      bench::mp_pool of two forked processes; each iteration maps over
//              (image, filter) pairs, so the image is serialised and piped to each process;
//   - coray:   the image made in the object store (ray::put_buffer, then seal: no copy)
//              once per iteration, a task per filter taking the image as a
//              std::span<const double> (read in place in shared memory); the results are
//              read in place too (ray::get_view).
// Each figure is the median over repetitions (fewer for mp, the slow one) of the whole ten
// iterations, image making included. The four variants' results must agree exactly (a
// checksum over all outputs).
// Usage: workload_convolution [--quick] [--json FILE]
#include <coray/coray.hpp>
#include <cstdio>
#include <span>
#include <thread>
#include <vector>

#include "bench_common.hpp"
#include "mp_pool.hpp"
#include "seed004.hpp"

namespace {

using namespace seed004;

constexpr unsigned num_workers = 2;
constexpr std::size_t n = image_side, w = full_side;

/// One full-size scratch buffer per worker, kept (and touched) across repetitions, as the
/// processes of the mp and coray variants keep theirs.
using scratch = std::vector<std::vector<double>>;

double run_serial(const std::vector<filter>& filters, scratch& full, int iters = iterations) {
  double sum = 0;
  std::vector<double> image(n * n);
  for (int it = 0; it < iters; ++it) {
    make_image(image, it);
    std::vector<std::vector<double>> outs;
    for (const auto& f : filters) outs.push_back(convolve_subsample(image, f, full[0]));
    sum += convolution_checksum(outs);
  }
  return sum;
}

double run_threads(const std::vector<filter>& filters, scratch& full, int iters = iterations) {
  double sum = 0;
  std::vector<double> image(n * n);
  for (int it = 0; it < iters; ++it) {
    make_image(image, it);
    std::vector<std::vector<double>> outs(filters.size());
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < filters.size(); ++i)
      threads.emplace_back([&, i] { outs[i] = convolve_subsample(image, filters[i], full[i]); });
    for (auto& t : threads) t.join();
    sum += convolution_checksum(outs);
  }
  return sum;
}

/// One item of the multiprocessing map: what zip(num_cpus * [image], filters) yields. The
/// items refer to the one image, which is serialised into each item's message; the process
/// reads it where it lands in its receive buffer (the peer at its best: no copy on either
/// side beyond the pipe's).
struct image_and_filter {
  std::span<const double> image;
  filter f;
};

using conv_pool = bench::mp_pool<image_and_filter, std::vector<double>>;

double run_mp(conv_pool& pool, const std::vector<filter>& filters, int iters = iterations) {
  double sum = 0;
  std::vector<double> image(n * n);
  std::vector<image_and_filter> items(filters.size());
  for (std::size_t i = 0; i < filters.size(); ++i) items[i] = {image, filters[i]};
  for (int it = 0; it < iters; ++it) {
    make_image(image, it);
    sum += convolution_checksum(pool.map(items));
  }
  return sum;
}

double run_coray(const std::vector<filter>& filters, int iters = iterations) {
  return convolve_in_store(filters, iters, ray::task<convolve_task>);
}

}  // namespace

int main(int argc, char** argv) {
  ray::enter_worker_if_spawned();
  auto opt = bench::parse_options(argc, argv);
  const int reps = opt.reps, mp_reps = opt.quick ? 1 : 3;  // mp is the slow one
  const std::vector<filter> filters = make_filters(num_workers);

  double sum_serial = 0, sum_threads = 0, sum_mp = 0, sum_coray = 0;
  double t_serial = 0, t_threads = 0, t_mp = 0, t_coray = 0;
  {
    scratch full(num_workers, std::vector<double>(w * w));
    t_serial = bench::median(bench::times(reps, [&] { sum_serial = run_serial(filters, full); }));
    bench::report("convolution_serial", t_serial, "s", false,
                  "10 iterations x 2 filters, one thread");
    t_threads =
        bench::median(bench::times(reps, [&] { sum_threads = run_threads(filters, full); }));
    bench::report("convolution_threads", t_threads, "s", false,
                  "a std::thread per filter, image by reference");
  }
  {
    conv_pool pool(num_workers,
                   [](const image_and_filter& a) { return convolve_task(a.image, a.f); });
    run_mp(pool, filters, 1);  // each process has its scratch buffer
    t_mp = bench::median(bench::times(mp_reps, [&] { sum_mp = run_mp(pool, filters); }));
    bench::report("convolution_mp", t_mp, "s", false, "mp_pool of 2 processes, image by value");
  }

  ray::runtime rt(argc, argv, {.num_workers = num_workers});
  run_coray(filters, 1);  // the workers are up, each with its scratch buffer
  t_coray = bench::median(bench::times(reps, [&] { sum_coray = run_coray(filters); }));
  bench::report(
      "convolution_coray", t_coray, "s", false,
      "image made in the store (ray::put_buffer), a task per filter, results read in place");

  bench::report("convolution_coray_speedup_vs_serial", t_serial / t_coray, "x", true,
                "target >= 1.7");
  bench::report("convolution_coray_vs_threads", t_coray / t_threads, "x", false, "target <= 1.15");
  bench::report("convolution_coray_speedup_vs_mp", t_mp / t_coray, "x", true, "target >= 3");
  bench::write_json(opt);

  if (sum_serial != sum_threads || sum_serial != sum_mp || sum_serial != sum_coray) {
    std::printf("MISMATCH checksums: serial %.17g threads %.17g mp %.17g coray %.17g\n", sum_serial,
                sum_threads, sum_mp, sum_coray);
    return 1;
  }
  return 0;
}
