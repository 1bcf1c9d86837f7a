// runtime.hpp alone: starting coray, running a coroutine on it, ray::init and sync_wait.
#include <coray/runtime.hpp>

namespace header_check_runtime {

ray::async<int> amain() { co_return 0; }

int uses(int argc, char** argv) {
  ray::runtime rt(argc, argv, {.num_workers = 2, .start_method = ray::start_method::spawn});
  return rt.run(amain()) + ray::sync_wait(amain()) + static_cast<int>(rt.num_workers());
}

void init_and_shutdown() {
  ray::enter_worker_if_spawned();
  ray::init({.num_workers = 1});
  ray::shutdown();
}

}  // namespace header_check_runtime
