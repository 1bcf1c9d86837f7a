// Seed 004, workload 3: expensive initialisation. The actor builds a large read-only model
// once, in its constructor, in its own process; every later call only evaluates. With
// stateless tasks the model would be rebuilt (or shipped) for every batch.
#include <chrono>
#include <coray/coray.hpp>
#include <cstdio>
#include <numeric>
#include <random>
#include <vector>

struct model {
  explicit model(std::size_t weights, std::uint64_t seed) : w(weights) {
    std::mt19937_64 gen(seed);  // stands in for loading a 100 MB model from disk
    std::normal_distribution<float> normal;
    for (auto& x : w) x = normal(gen);
  }
  // Evaluates a batch: one dot product per input row, against a window of the weights.
  std::vector<double> evaluate(const std::vector<float>& batch, std::size_t dim) const {
    std::vector<double> out(batch.size() / dim);
    for (std::size_t r = 0; r < out.size(); ++r)
      out[r] = std::inner_product(
          batch.begin() + static_cast<std::ptrdiff_t>(r * dim),
          batch.begin() + static_cast<std::ptrdiff_t>((r + 1) * dim),
          w.begin() + static_cast<std::ptrdiff_t>((r * 7919) % (w.size() - dim)), 0.0);
    return out;
  }
  std::vector<float> w;
};

int main(int argc, char** argv) {
  ray::runtime rt(argc, argv);
  const std::size_t dim = 1024;
  auto t0 = std::chrono::steady_clock::now();
  std::vector<ray::actor<model>> models;
  for (unsigned i = 0; i < rt.num_workers(); ++i)
    models.push_back(ray::spawn<model>(std::size_t{25'000'000}, std::uint64_t{7}));

  std::vector<ray::object_ref<std::vector<double>>> results;
  std::vector<float> batch(256 * dim, 0.5f);
  for (int b = 0; b < 10; ++b)
    for (auto& m : models) results.push_back(m.call<&model::evaluate>(batch, dim));
  std::size_t rows = 0;
  for (auto& r : ray::get(results).get()) rows += r.size();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%zu models (100 MB each) built once, %zu rows evaluated in %.2f s\n", models.size(),
              rows, secs);
  return 0;
}
