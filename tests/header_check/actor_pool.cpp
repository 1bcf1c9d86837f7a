// actor_pool.hpp alone: submit and take results, and map over a range.
#include <coray/actor_pool.hpp>
#include <vector>

namespace header_check_actor_pool {

struct doubler {
  int twice(int v) { return 2 * v; }
};

int uses() {
  std::vector<ray::actor<doubler>> actors{ray::spawn<doubler>(), ray::spawn<doubler>()};
  ray::actor_pool<doubler> pool(actors);
  pool.submit<&doubler::twice>(5);
  int sum = pool.get_next<int>();
  for (int r : pool.map<&doubler::twice>(std::vector{1, 2, 3})) sum += r;
  return sum;
}

}  // namespace header_check_actor_pool
