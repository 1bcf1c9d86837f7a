// pool.hpp alone: map, starmap, imap_unordered, apply and apply_async (with callbacks), a
// lambda, an initializer and maxtasksperchild.
#include <coray/pool.hpp>
#include <string>
#include <utility>
#include <vector>

namespace header_check_pool {

int square(int x) { return x * x; }
int add(int a, int b) { return a + b; }
void load_model(std::string) {}

int uses() {
  ray::pool p(2, ray::maxtasksperchild(100), ray::initializer<load_model>, "model.bin");
  std::vector<int> ys = p.map<square>(std::vector{1, 2, 3});
  std::vector<int> zs = p.starmap<add>(std::vector<std::pair<int, int>>{{1, 2}});
  std::vector<int> ws = p.map<[](int x) { return x * 10; }>(ys);
  int sum = zs[0] + ws[0];
  for (int y : p.imap_unordered<square>(ys)) sum += y;
  ray::object_ref<int> r = p.apply_async<square>(7);
  p.apply_async<square>(8, ray::callback([&](int v) { sum += v; }),
                        ray::error_callback([](std::exception_ptr) {}));
  p.starmap_async<add>(std::vector<std::pair<int, int>>{{3, 4}},
                       ray::callback([&](std::vector<int> v) { sum += v[0]; }));
  sum += p.apply<square>(3) + ray::sync_wait(ray::get(r));
  p.close();
  p.join();
  return sum;
}

}  // namespace header_check_pool
