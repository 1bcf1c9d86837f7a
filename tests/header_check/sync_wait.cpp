// sync_wait.hpp alone: running a ray::async to completion from plain code.
#include <coray/sync_wait.hpp>

namespace header_check_sync_wait {

ray::async<int> one() { co_return 1; }
ray::async<> nothing() { co_return; }

int uses() {
  ray::sync_wait(nothing());
  return ray::sync_wait(one());
}

}  // namespace header_check_sync_wait
