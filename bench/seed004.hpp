// Seed 004's three workloads (Ray's blog post "Modern Parallel and Distributed Python"):
// their kernels and their data, shared by the programs that run them: workload_convolution,
// workload_prefix_count and workload_model (one machine, every variant side by side) and
// cluster_workloads (coray over a cluster's ranks). Each program chooses how many workers
// it runs; the data of worker i (its filter, its documents, its model and batches) is the
// same whatever that number is.
#pragma once

#include <algorithm>
#include <array>
#include <coray/coray.hpp>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <set>
#include <span>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace seed004 {

// ---- Workload 1 (numerical): convolve one large image with a filter per worker ----------

inline constexpr std::size_t image_side = 3000;                                    // n
inline constexpr std::size_t filter_side = 4;                                      // k
inline constexpr std::size_t full_side = image_side + filter_side - 1;             // w: 3003
inline constexpr std::size_t subsample = 5;                                        // [::5, ::5]
inline constexpr std::size_t kept_side = (full_side + subsample - 1) / subsample;  // 601
inline constexpr int iterations = 10;

using filter = std::array<double, filter_side * filter_side>;

/// full[i][j] = sum over a, b of image[i - a][j - b] * f[a][b] (zero outside the image), for
/// 0 <= i, j < w: scipy.signal.convolve2d(image, f), mode 'full'.
inline void convolve_full(const double* __restrict image, const filter& f,
                          double* __restrict full) {
  constexpr std::size_t n = image_side, k = filter_side, w = full_side;
  for (std::size_t i = 0; i < w; ++i) {
    double* __restrict out = full + i * w;
    std::fill(out, out + w, 0.0);
    const std::size_t a_first = i >= n ? i - n + 1 : 0, a_last = std::min(k - 1, i);
    for (std::size_t a = a_first; a <= a_last; ++a) {
      const double* __restrict in = image + (i - a) * n;
      const double f0 = f[a * k], f1 = f[a * k + 1], f2 = f[a * k + 2], f3 = f[a * k + 3];
      // Columns where some taps fall outside the image.
      for (std::size_t j = 0; j < k; ++j)
        for (std::size_t b = 0; b <= j; ++b) out[j] += f[a * k + b] * in[j - b];
      for (std::size_t j = n; j < w; ++j)
        for (std::size_t b = j - n + 1; b < k; ++b) out[j] += f[a * k + b] * in[j - b];
      // The rest: all four taps inside, one pass over the row.
      for (std::size_t j = k; j < n; ++j)
        out[j] += f0 * in[j] + f1 * in[j - 1] + f2 * in[j - 2] + f3 * in[j - 3];
    }
  }
}

/// f(image, filter): the full convolution into `full` (a scratch buffer the caller keeps
/// from call to call), every 5th row and column of it.
inline std::vector<double> convolve_subsample(std::span<const double> image, const filter& f,
                                              std::vector<double>& full) {
  constexpr std::size_t w = full_side, s = kept_side;
  full.resize(w * w);
  convolve_full(image.data(), f, full.data());
  std::vector<double> out(s * s);
  for (std::size_t r = 0; r < s; ++r)
    for (std::size_t c = 0; c < s; ++c) out[r * s + c] = full[r * subsample * w + c * subsample];
  return out;
}

/// The same as a task or a process's function: the scratch buffer is the thread's own.
inline std::vector<double> convolve_task(std::span<const double> image, filter f) {
  thread_local std::vector<double> full;
  return convolve_subsample(image, f, full);
}

inline std::uint64_t splitmix64(std::uint64_t& x) {
  std::uint64_t z = (x += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

/// The image of iteration `it`, the same in every variant: row i is a window, at a
/// pseudo-random offset, into n + 4096 random values in [-1, 1) drawn for the iteration. It
/// costs about what copying the image does (the seed's np.zeros costs next to nothing).
inline void make_image(std::span<double> image, int it) {
  constexpr std::size_t n = image_side, spread = 4096;
  std::uint64_t x = 0x5eed0004u + static_cast<std::uint64_t>(it) * 0x2545f4914f6cdd1du;
  std::vector<double> values(n + spread);
  for (auto& v : values) v = static_cast<double>(splitmix64(x) >> 11) * 0x1.0p-52 - 1.0;
  for (std::size_t i = 0; i < n; ++i)
    std::copy_n(values.data() + splitmix64(x) % spread, n, image.data() + i * n);
}

/// One random 4x4 filter per worker, from one generator of a fixed seed: worker i's filter
/// is the same whatever the count.
inline std::vector<filter> make_filters(std::size_t workers) {
  std::mt19937_64 gen(4);
  std::normal_distribution<double> normal;
  std::vector<filter> filters(workers);
  for (auto& f : filters)
    for (auto& x : f) x = normal(gen);
  return filters;
}

/// A checksum of one iteration's outputs, in worker order; summed over the iterations.
template <class Outputs>
double convolution_checksum(const Outputs& outs) {
  double sum = 0;
  for (const auto& o : outs)
    for (std::size_t i = 0; i < o.size(); ++i) sum += o[i] * static_cast<double>(1 + i % 7);
  return sum;
}

/// The coray variant: `iters` iterations, each making the image in the object store
/// (ray::put_buffer, fill, seal: no copy), calling `task` (ray::task<convolve_task>, with
/// whatever options) once per filter on it, and reading the results where they lie
/// (ray::get_view). Returns the summed checksums.
template <class Task>
double convolve_in_store(const std::vector<filter>& filters, int iters, const Task& task) {
  double sum = 0;
  for (int it = 0; it < iters; ++it) {
    // The image is made where it will be read: in the object store (create, fill, seal).
    auto buffer = ray::put_buffer<double>(image_side * image_side);
    make_image(buffer.span(), it);
    auto image_ref = std::move(buffer).seal();
    std::vector<ray::object_ref<std::vector<double>>> refs;
    for (const auto& f : filters) refs.push_back(task.remote(image_ref, f));
    // The results are read where they lie (ray::get_view), as the image was.
    std::vector<ray::object_view<std::vector<double>>> outs;
    for (const auto& r : refs) outs.push_back(ray::get_view(r));
    sum += convolution_checksum(outs);
  }
  return sum;
}

// ---- Workload 2 (stateful): a streaming prefix count ------------------------------------

/// The seed of the one generator every document is drawn from, in order.
inline constexpr std::uint64_t document_seed = 2024;
inline constexpr unsigned documents_per_worker = 10;

using document = std::vector<std::string>;

/// 10,000 random 20-byte words.
inline document random_document(std::mt19937_64& gen) {
  document doc(10'000, std::string(20, '\0'));
  for (auto& word : doc)
    for (auto& c : word) c = static_cast<char>(gen() & 0xff);
  return doc;
}

/// One worker's state.
struct prefix_state {
  std::unordered_map<std::string, int> prefix_count;
  std::unordered_set<std::string> popular_prefixes;

  void add_document(const document& doc) {
    for (const auto& word : doc)
      for (std::size_t i = 1; i < word.size(); ++i) {
        std::string prefix = word.substr(0, i);
        if (++prefix_count[prefix] > 3) popular_prefixes.insert(prefix);
      }
  }
};

/// The actor: a state, fed documents one call at a time.
struct streaming_prefix_count {
  prefix_state state;
  void add_document(const document& doc) { state.add_document(doc); }
  std::vector<std::string> get_popular() const {
    return {state.popular_prefixes.begin(), state.popular_prefixes.end()};
  }
};

/// The coray variant's calls: the documents, each made as it is sent (document i to actor
/// i % actors.size(), 10 per actor), then every actor's get_popular, whose refs it returns.
inline std::vector<ray::object_ref<std::vector<std::string>>> stream_documents(
    const std::vector<ray::actor<streaming_prefix_count>>& actors) {
  std::mt19937_64 gen(document_seed);
  for (std::size_t i = 0; i < actors.size() * documents_per_worker; ++i)
    actors[i % actors.size()].call<&streaming_prefix_count::add_document>(random_document(gen));
  std::vector<ray::object_ref<std::vector<std::string>>> refs;
  for (const auto& a : actors) refs.push_back(a.call<&streaming_prefix_count::get_popular>());
  return refs;
}

/// Every worker's popular prefixes, merged.
inline std::set<std::string> merged_popular(const std::vector<prefix_state>& states) {
  std::set<std::string> popular;
  for (const auto& s : states) popular.insert(s.popular_prefixes.begin(), s.popular_prefixes.end());
  return popular;
}

// ---- Workload 3: expensive initialisation (a 100 MB model per worker) -------------------

inline constexpr std::size_t model_weights = 25'000'000;  // 100 MB of floats
inline constexpr std::size_t dim = 1000;  // weights per window, floats per input row
inline constexpr std::size_t rows_per_batch = 16;
inline constexpr std::size_t rounds = 10;  // batches per worker

inline std::uint64_t model_seed(std::size_t worker) { return 7 + worker; }

/// One round's outputs of one worker: one value per input row.
using outputs = std::vector<double>;

struct model {
  explicit model(std::uint64_t seed) : w(model_weights) {
    std::mt19937_64 gen(seed);
    std::normal_distribution<float> normal;
    for (auto& x : w) x = normal(gen);
  }

  /// Dots every input row against every window of the weights; each row's output is the
  /// sum of the positive dot products.
  outputs evaluate(const std::vector<float>& batch) const {
    const std::size_t rows = batch.size() / dim;
    outputs out(rows, 0.0);
    for (std::size_t k = 0; k + dim <= w.size(); k += dim) {
      const float* window = w.data() + k;
      for (std::size_t r = 0; r < rows; ++r) {
        const float* x = batch.data() + r * dim;
        float acc[8] = {};
        for (std::size_t i = 0; i < dim; i += 8)
          for (std::size_t j = 0; j < 8; ++j) acc[j] += x[i + j] * window[i + j];
        const float dot =
            ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
        if (dot > 0) out[r] += static_cast<double>(dot);
      }
    }
    return out;
  }

  std::vector<float> w;
};
static_assert(dim % 8 == 0);

/// The input batches: batches[worker][round], fixed (worker i's are the same whatever the
/// count).
using batch_set = std::vector<std::vector<std::vector<float>>>;

inline batch_set make_batches(std::size_t workers, std::size_t batches_per_worker = rounds) {
  batch_set b(workers);
  for (std::size_t wk = 0; wk < workers; ++wk)
    for (std::size_t r = 0; r < batches_per_worker; ++r) {
      std::mt19937_64 gen(1000 + 100 * wk + r);
      std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
      std::vector<float> batch(rows_per_batch * dim);
      for (auto& x : batch) x = uniform(gen);
      b[wk].push_back(std::move(batch));
    }
  return b;
}

/// Every output of a run: results[worker][round].
using run_results = std::vector<std::vector<outputs>>;

/// FNV-1a over the outputs' bit patterns, in worker and round order.
inline std::uint64_t model_checksum(const run_results& results) {
  std::uint64_t h = 14695981039346656037ull;
  for (const auto& per_worker : results)
    for (const auto& out : per_worker)
      for (double v : out) {
        std::uint64_t bits = 0;
        std::memcpy(&bits, &v, sizeof bits);
        for (int i = 0; i < 8; ++i) {
          h ^= (bits >> (8 * i)) & 0xff;
          h *= 1099511628211ull;
        }
      }
  return h;
}

/// One worker's whole job: build its model, evaluate each of its batches.
inline std::vector<outputs> worker_job(std::size_t worker, const batch_set& batches) {
  model m(model_seed(worker));
  std::vector<outputs> out;
  for (const auto& batch : batches[worker]) out.push_back(m.evaluate(batch));
  return out;
}

}  // namespace seed004
