// synchronize.hpp alone: the synchronisation primitives, with the std lock types and timed
// waits.
#include <chrono>
#include <coray/synchronize.hpp>
#include <mutex>

namespace header_check_synchronize {

bool uses() {
  using std::chrono::milliseconds;
  ray::recursive_mutex rlock;
  {
    std::lock_guard outer(rlock);
    std::lock_guard inner(rlock);
  }
  ray::semaphore slots(2);
  { std::lock_guard one(slots); }
  if (slots.try_acquire_for(milliseconds(1))) slots.release();
  ray::bounded_semaphore bounded(1);
  bounded.acquire();
  bounded.release();
  ray::event go;
  go.set();
  go.wait();
  ray::mutex m;
  ray::condition_variable cv;
  std::unique_lock hold(m);
  cv.notify_all();
  const bool woke = cv.wait_for(hold, milliseconds(1), [&] { return go.is_set(); });
  ray::barrier meet(1);
  return woke && meet.wait_for(milliseconds(1)) == 0 && !rlock.owner_died();
}

}  // namespace header_check_synchronize
