// Seed 003: Pool.map of a callable object.
//
//   class Test:
//       def __init__(self): self.x = 1
//       def __call__(self, x):
//           print(f"call pid : {os.getpid()}")
//           return x + self.x
//   pool = mp.Pool(3)
//   print(pool.map(Test(), range(1, 5)))          # [2, 3, 4, 5]
//
// Python pickles the object into every task. In C++ a callable object's state lives in a
// process as an actor: three actors are the pool's three processes, each builds its Test
// once, and ray::actor_pool maps operator() over them. (A pool of plain functions is
// ray::pool; see mp_pool_map.cpp.)
#include <unistd.h>

#include <coray/coray.hpp>
#include <cstdio>
#include <numeric>
#include <vector>

struct test {
  test() : x(1) { std::printf("init pid : %d\n", getpid()); }
  int operator()(int v) const {
    std::printf("call pid : %d\n", getpid());
    return v + x;
  }
  int x;
};

int main(int argc, char** argv) {
  ray::runtime rt(argc, argv, {.num_workers = 1});
  std::printf("current pid : %d\n", getpid());
  std::printf("----------\n");
  std::fflush(stdout);  // before the other processes write to the same output

  std::vector<ray::actor<test>> processes;
  for (int i = 0; i < 3; ++i) processes.push_back(ray::spawn<test>());
  ray::actor_pool<test> pool(processes);

  std::vector<int> items(4);
  std::iota(items.begin(), items.end(), 1);  // range(1, 5)
  std::vector<int> results;
  for (int r : pool.map<&test::operator()>(items)) results.push_back(r);

  std::printf("[");
  for (std::size_t i = 0; i < results.size(); ++i) std::printf(i ? ", %d" : "%d", results[i]);
  std::printf("]\n");
  return results == std::vector<int>{2, 3, 4, 5} ? 0 : 1;
}
