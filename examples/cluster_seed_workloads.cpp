// Seed 004's three workloads spread over a cluster's ranks (cluster mode, <coray/mpi.hpp>),
// at sizes that take a moment:
//
//   mpirun -np 3 ./cluster_seed_workloads
//
// With ray::spread each task or actor goes to the next rank in turn. Each piece returns its
// process id with its result, which ray::state::list_workers() maps to the rank it ran on;
// the driver prints where each ran and checks every result against the same code run here.
// It exits with 1 if a result differs or if a workload's three pieces did not reach
// min(3, ranks) ranks. Run without mpirun (one rank), everything runs on rank 0.
#include <unistd.h>

#include <algorithm>
#include <array>
#include <coray/coray.hpp>
#include <coray/mpi.hpp>
#include <cstdio>
#include <map>
#include <random>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <vector>

// 1. Numerical: one image in the object store, convolved with a 3x3 filter per task.
constexpr std::size_t side = 512;
using filter = std::array<double, 9>;

/// The sum of the image's 'valid' convolution with f (a checksum of it).
double convolve(std::span<const double> image, const filter& f) {
  double sum = 0;
  for (std::size_t i = 1; i + 1 < side; ++i)
    for (std::size_t j = 1; j + 1 < side; ++j)
      for (std::size_t a = 0; a < 3; ++a)
        for (std::size_t b = 0; b < 3; ++b)
          sum += f[a * 3 + b] * image[(i + a - 1) * side + j + b - 1];
  return sum;
}

/// Task k's filter.
filter make_filter(int k) { return {1, 0, -1, 2, 0, -2, 1, 0, -1.0 - k}; }

std::pair<int, double> convolve_task(std::span<const double> image, filter f) {
  return {getpid(), convolve(image, f)};
}

// 2. Stateful: an actor per stream of documents, counting word prefixes across them.
struct prefix_counter {
  std::map<std::string, int> counts;
  void add(const std::vector<std::string>& document) {
    for (const auto& word : document)
      for (std::size_t n = 1; n < word.size(); ++n) ++counts[word.substr(0, n)];
  }
  /// The prefixes seen more than 3 times, and where they were counted.
  std::pair<int, std::vector<std::string>> popular() const {
    std::vector<std::string> out;
    for (const auto& [prefix, n] : counts)
      if (n > 3) out.push_back(prefix);
    return {getpid(), out};
  }
};

std::vector<std::string> random_document(std::mt19937& gen) {
  std::vector<std::string> words(300, std::string(6, 'a'));
  for (auto& w : words)
    for (auto& c : w) c = static_cast<char>('a' + gen() % 6);
  return words;
}

// 3. Expensive initialisation: an actor builds its model once, then only evaluates.
struct model {
  std::vector<float> weights;
  explicit model(unsigned seed) : weights(1 << 20) {  // stands in for loading a large model
    std::mt19937 gen(seed);
    std::uniform_real_distribution<float> uniform(-1, 1);
    for (auto& w : weights) w = uniform(gen);
  }
  std::pair<int, double> evaluate(const std::vector<float>& input) const {
    double out = 0;
    for (std::size_t k = 0; k + input.size() <= weights.size(); k += input.size())
      for (std::size_t i = 0; i < input.size(); ++i) out += double{input[i]} * weights[k + i];
    return {getpid(), out};
  }
};

/// Input i of every model.
std::vector<float> input(int i) {
  std::vector<float> in(1000, 0.5f);
  in[0] = static_cast<float>(i);
  return in;
}

/// The rank a task worker's or actor's process runs on.
int rank_of(int pid) {
  for (const auto& w : ray::state::list_workers())
    if (w.pid == pid) return w.node;
  return -1;
}

/// Prints where a workload's pieces ran; whether they reached min(pieces, ranks) ranks and
/// every result matched.
bool report(const char* workload, const std::vector<int>& pids, bool results_match) {
  std::set<int> ranks;
  std::printf("%-28s", workload);
  for (int pid : pids) {
    const int rank = rank_of(pid);
    ranks.insert(rank);
    std::printf(" rank %d", rank);
  }
  const bool spread = ranks.size() == std::min(pids.size(), ray::nodes().size());
  std::printf("  results %s%s\n", results_match ? "match" : "DIFFER",
              spread ? "" : ", NOT SPREAD over the ranks");
  return spread && results_match;
}

int main(int argc, char** argv) {
  ray::runtime rt(argc, argv);  // under mpirun, ranks 1 and up serve here until the end
  std::printf("ranks: %zu\n", ray::nodes().size());
  bool ok = true;

  {  // 1. a task per filter on one image, put once
    std::vector<double> image(side * side);
    for (std::size_t i = 0; i < image.size(); ++i) image[i] = static_cast<double>(i % 251) / 251;
    auto image_ref = ray::put(image);
    const auto spread_task = ray::task<convolve_task>.options({.scheduling_strategy = ray::spread});
    std::vector<ray::object_ref<std::pair<int, double>>> refs;
    for (int k = 0; k < 3; ++k) refs.push_back(spread_task.remote(image_ref, make_filter(k)));
    std::vector<int> pids;
    bool match = true;
    for (int k = 0; k < 3; ++k) {
      const auto [pid, sum] = ray::get(refs[k]).get();
      pids.push_back(pid);
      match = match && sum == convolve(image, make_filter(k));
    }
    ok = report("convolution, 3 tasks:", pids, match) && ok;
  }

  {  // 2. three prefix counters, each fed its own stream of documents
    std::vector<ray::actor<prefix_counter>> counters;
    std::vector<prefix_counter> here(3);
    for (int k = 0; k < 3; ++k)
      counters.push_back(ray::spawn<prefix_counter>({.scheduling_strategy = ray::spread}));
    std::mt19937 gen(2024);
    for (int d = 0; d < 12; ++d) {
      const auto document = random_document(gen);
      counters[d % 3].call<&prefix_counter::add>(document);
      here[d % 3].add(document);
    }
    std::vector<int> pids;
    bool match = true;
    for (int k = 0; k < 3; ++k) {
      const auto [pid, popular] = ray::get(counters[k].call<&prefix_counter::popular>()).get();
      pids.push_back(pid);
      match = match && popular == here[k].popular().second;
    }
    ok = report("prefix count, 3 actors:", pids, match) && ok;
  }

  {  // 3. three models, each built once in its actor, then evaluated on 4 inputs
    std::vector<ray::actor<model>> models;
    for (unsigned k = 0; k < 3; ++k)
      models.push_back(ray::spawn<model>({.scheduling_strategy = ray::spread}, 7 + k));
    std::vector<ray::object_ref<std::pair<int, double>>> outs;  // model k's input i: 4k + i
    for (unsigned k = 0; k < 3; ++k)
      for (int i = 0; i < 4; ++i) outs.push_back(models[k].call<&model::evaluate>(input(i)));
    std::vector<int> pids;
    bool match = true;
    for (unsigned k = 0; k < 3; ++k) {
      const model built_here(7 + k);
      for (int i = 0; i < 4; ++i) {
        const auto [pid, out] = ray::get(outs[4 * k + i]).get();
        if (i == 0) pids.push_back(pid);
        match = match && out == built_here.evaluate(input(i)).second;
      }
    }
    ok = report("model, 3 actors:", pids, match) && ok;
  }
  return ok ? 0 : 1;
}
