// Seed 001: a class made remote -- five counter actors, each its own process.
//
//   @ray.remote
//   class Test:
//     def __init__(self): self.n = 0
//     def add(self): self.n += 1
//     def get_n(self): return self.n
//   actors = [Test.remote() for _ in range(5)]
//   [a.add.remote() for a in actors]
//   results = ray.get([a.get_n.remote() for a in actors])
#include <coray/coray.hpp>
#include <cstdio>
#include <vector>

struct test {
  test() { std::printf("init\n"); }
  void add() { n += 1; }
  int get_n() const { return n; }
  int n = 0;
};

int main(int argc, char** argv) {
  ray::runtime rt(argc, argv);
  std::vector<ray::actor<test>> actors;
  for (int i = 0; i < 5; ++i) actors.push_back(ray::spawn<test>());
  for (auto& a : actors) a.call<&test::add>();
  std::vector<ray::object_ref<int>> object_refs;
  for (auto& a : actors) object_refs.push_back(a.call<&test::get_n>());
  std::vector<int> results = ray::get(object_refs);
  for (int r : results) std::printf("%d ", r);
  std::printf("\n");
  return results == std::vector<int>(5, 1) ? 0 : 1;
}
