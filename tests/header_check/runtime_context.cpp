// runtime_context.hpp alone: who and where the calling code runs.
#include <coray/runtime_context.hpp>

namespace header_check_runtime_context {

bool uses() {
  ray::runtime_context c = ray::get_runtime_context();
  return c.is_driver && !ray::was_current_actor_restarted();
}

}  // namespace header_check_runtime_context
