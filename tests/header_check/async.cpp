// async.hpp alone: a coroutine that awaits another. (Running one needs the runtime:
// ray::sync_wait comes with runtime.hpp, task.hpp and the other headers that start work.)
#include <coray/async.hpp>

namespace header_check_async {

ray::async<int> one() { co_return 1; }
ray::async<int> two() { co_return co_await one() + co_await one(); }
ray::async<> nothing() { co_return; }

}  // namespace header_check_async
