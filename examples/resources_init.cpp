// Seed 001 as written: `ray.init(num_cpus=2, num_gpus=0.2)`, then five counter actors. The
// runtime has 2 CPUs and a fifth of a GPU, declared whether or not the machine has one;
// each actor, given no resources, waits for a free CPU to be placed and holds none after, so
// all five start on 2 CPUs (Ray's rule).
//
//   ray.init(num_cpus=2, num_gpus=0.2)
//   @ray.remote
//   class Test:
//     def __init__(self): self.n = 0; print('init')
//     def add(self): self.n += 1; print('add')
//     def get_n(self): print('get'); return self.n
//   actors = [Test.remote() for _ in range(5)]
//   [a.add.remote() for a in actors]
//   results = ray.get([a.get_n.remote() for a in actors])
#include <cmath>
#include <coray/coray.hpp>
#include <cstdio>
#include <vector>

struct test {
  test() { std::printf("init\n"); }
  void add() {
    n += 1;
    std::printf("add\n");
  }
  int get_n() const {
    std::printf("get\n");
    return n;
  }
  int n = 0;
};

int main(int argc, char** argv) {
  ray::runtime rt(argc, argv, {.num_cpus = 2, .num_gpus = 0.2});
  for (const auto& [name, amount] : ray::cluster_resources())
    std::printf("%s: %g\n", name.c_str(), amount);  // CPU: 2, GPU: 0.2

  std::vector<ray::actor<test>> actors;
  for (int i = 0; i < 5; ++i) actors.push_back(ray::spawn<test>());
  for (auto& a : actors) a.call<&test::add>();
  std::vector<ray::object_ref<int>> object_refs;
  for (auto& a : actors) object_refs.push_back(a.call<&test::get_n>());
  std::vector<int> results = ray::get(object_refs);
  for (int r : results) std::printf("%d ", r);
  std::printf("\n");

  const auto all = ray::cluster_resources();
  const bool declared = all.at("CPU") == 2 && std::abs(all.at("GPU") - 0.2) < 1e-9;
  return results == std::vector<int>(5, 1) && declared ? 0 : 1;
}
