// mutex.hpp alone: the lock with the std lock types, and its robustness query.
#include <chrono>
#include <coray/mutex.hpp>
#include <mutex>

namespace header_check_mutex {

bool uses() {
  ray::mutex lock;
  { std::lock_guard hold(lock); }
  if (lock.try_lock_for(std::chrono::milliseconds(1))) lock.unlock();
  std::unique_lock hold(lock);
  return lock.owner_died();
}

}  // namespace header_check_mutex
