// generator.hpp alone: a generator body, run in place as an input range.
#include <coray/generator.hpp>

namespace header_check_generator {

ray::generator<int> count_to(int n) {
  for (int i = 0; i < n; ++i) co_yield i;
}

inline int sum_to(int n) {
  int total = 0;
  for (int v : count_to(n)) total += v;
  return total;
}

static_assert(ray::detail::is_generator_v<ray::generator<int>>);
static_assert(!ray::detail::is_generator_v<int>);

}  // namespace header_check_generator
