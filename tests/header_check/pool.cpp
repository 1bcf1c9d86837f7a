// pool.hpp alone: map, imap_unordered, apply and apply_async, with an initializer.
#include <coray/pool.hpp>
#include <string>
#include <vector>

namespace header_check_pool {

int square(int x) { return x * x; }
void load_model(std::string) {}

int uses() {
  ray::pool p(2, ray::initializer<load_model>, "model.bin");
  std::vector<int> ys = p.map<square>(std::vector{1, 2, 3});
  int sum = 0;
  for (int y : p.imap_unordered<square>(ys)) sum += y;
  ray::object_ref<int> r = p.apply_async<square>(7);
  sum += p.apply<square>(3) + ray::sync_wait(ray::get(r));
  p.close();
  p.join();
  return sum;
}

}  // namespace header_check_pool
