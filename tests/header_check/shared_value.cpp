// shared_value.hpp alone: a value in shared memory, read and updated in place.
#include <coray/shared_value.hpp>

namespace header_check_shared_value {

int uses() {
  ray::shared_value<int> hits(0);
  hits.fetch_add(1);
  hits.store(hits.load() + 1);
  return hits.load();
}

}  // namespace header_check_shared_value
