// A tree reduction whose tasks return refs: `plan` lays out the whole tree of additions and
// returns the ref of its root without waiting for any of them; the driver gets that ref,
// then its value. Refs travel as values: the parts arrive as refs (not waited for), and
// the root's ref comes back inside the result.
#include <coray/coray.hpp>
#include <cstdio>
#include <numeric>
#include <vector>

double add(double a, double b) { return a + b; }

double partial_sum(std::vector<double> xs) { return std::accumulate(xs.begin(), xs.end(), 0.0); }

ray::object_ref<double> plan(std::vector<ray::object_ref<double>> parts) {
  while (parts.size() > 1) {
    std::vector<ray::object_ref<double>> next;
    for (std::size_t i = 0; i + 1 < parts.size(); i += 2)
      next.push_back(ray::task<add>.remote(parts[i], parts[i + 1]));
    if (parts.size() % 2) next.push_back(parts.back());
    parts = std::move(next);
  }
  return parts.front();
}

int main(int argc, char** argv) {
  ray::runtime rt(argc, argv, {.num_workers = 2});
  std::vector<ray::object_ref<double>> parts;
  for (int chunk = 0; chunk < 16; ++chunk) {
    std::vector<double> xs(1000);
    std::iota(xs.begin(), xs.end(), chunk * 1000.0);
    parts.push_back(ray::task<partial_sum>.remote(xs));
  }
  ray::object_ref<ray::object_ref<double>> root = ray::task<plan>.remote(parts);
  const double total = ray::get(ray::get(root).get());
  const double expected = 15999.0 * 16000.0 / 2;
  std::printf("sum of 0..15999 by a tree of tasks: %.0f (expected %.0f)\n", total, expected);
  return total == expected ? 0 : 1;
}
