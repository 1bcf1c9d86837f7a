// shared_memory.hpp alone: raw shared bytes, and an array with its lock.
#include <coray/shared_memory.hpp>
#include <cstddef>
#include <mutex>

namespace header_check_shared_memory {

double uses() {
  ray::shared_buffer bytes(64);
  bytes.bytes()[0] = std::byte{1};
  bytes.as<int>()[1] = 2;
  ray::shared_array<double> xs{1.0, 2.0, 3.0};
  std::lock_guard hold(xs.get_lock());
  double sum = 0;
  for (double x : xs.span()) sum += x;
  ray::shared_array<int> counts(4, false);
  return sum + counts[0] + static_cast<double>(bytes.size());
}

}  // namespace header_check_shared_memory
