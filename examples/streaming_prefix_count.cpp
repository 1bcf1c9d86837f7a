// Seed 004, workload 2: stateful computation. Each actor keeps prefix counts across the
// documents it is sent; at the end the popular prefixes of all actors are merged.
//
//   @ray.remote
//   class StreamingPrefixCount(object):
//       def add_document(self, document): ...
//       def get_popular(self): return self.popular_prefixes
//   streaming_actors = [StreamingPrefixCount.remote() for _ in range(num_cpus)]
//   for i in range(num_cpus * 10):
//       document = [np.random.bytes(20) for _ in range(10000)]
//       streaming_actors[i % num_cpus].add_document.remote(document)
#include <chrono>
#include <coray/coray.hpp>
#include <cstdio>
#include <random>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

struct streaming_prefix_count {
  std::unordered_map<std::string, int> prefix_count;
  std::unordered_set<std::string> popular_prefixes;

  void add_document(const std::vector<std::string>& document) {
    for (const auto& word : document)
      for (std::size_t i = 1; i < word.size(); ++i) {
        std::string prefix = word.substr(0, i);
        if (++prefix_count[prefix] > 3) popular_prefixes.insert(prefix);
      }
  }
  std::vector<std::string> get_popular() const {
    return {popular_prefixes.begin(), popular_prefixes.end()};
  }
};

std::vector<std::string> random_document(std::mt19937_64& gen) {
  std::vector<std::string> document(10'000, std::string(20, '\0'));
  for (auto& word : document)
    for (auto& c : word) c = static_cast<char>(gen() & 0xff);
  return document;
}

int main(int argc, char** argv) {
  ray::runtime rt(argc, argv);
  const unsigned num_cpus = rt.num_workers();
  std::vector<ray::actor<streaming_prefix_count>> streaming_actors;
  for (unsigned i = 0; i < num_cpus; ++i)
    streaming_actors.push_back(ray::spawn<streaming_prefix_count>());

  std::mt19937_64 gen(2024);
  auto t0 = std::chrono::steady_clock::now();
  for (unsigned i = 0; i < num_cpus * 10; ++i)
    streaming_actors[i % num_cpus].call<&streaming_prefix_count::add_document>(
        random_document(gen));

  std::vector<ray::object_ref<std::vector<std::string>>> results;
  for (auto& a : streaming_actors)
    results.push_back(a.call<&streaming_prefix_count::get_popular>());
  std::set<std::string> popular_prefixes;
  for (auto& prefixes : ray::get(results).get())
    popular_prefixes.insert(prefixes.begin(), prefixes.end());
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%zu popular prefixes from %u documents on %u actors in %.2f s\n",
              popular_prefixes.size(), num_cpus * 10, num_cpus, secs);
  return 0;
}
