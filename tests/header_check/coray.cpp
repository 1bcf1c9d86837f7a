// coray.hpp alone: the whole API, as the quick start uses it.
#include <coray/coray.hpp>

namespace header_check_coray {

int add(int a, int b) { return a + b; }

ray::async<int> amain() { co_return co_await ray::get(ray::task<add>.remote(1, 2)); }

int uses(int argc, char** argv) {
  ray::runtime rt(argc, argv, {.num_workers = 2});
  return rt.run(amain());
}

}  // namespace header_check_coray
