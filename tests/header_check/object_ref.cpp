// object_ref.hpp alone: refs are values that compare by the object they name.
#include <coray/object_ref.hpp>

namespace header_check_object_ref {

bool uses(const ray::object_ref<int>& a) {
  ray::object_ref<int> b = a;
  return a == b && (!a.valid() || a.is_ready());
}

}  // namespace header_check_object_ref
