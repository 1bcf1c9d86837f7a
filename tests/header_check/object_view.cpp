// object_view.hpp alone: get_view and put_buffer.
#include <coray/object_view.hpp>
#include <vector>

namespace header_check_object_view {

double uses(const ray::object_ref<std::vector<double>>& img) {
  ray::object_view<std::vector<double>> view = ray::get_view(img);
  auto buf = ray::put_buffer<double>(3);
  buf[0] = view.size() ? view[0] : 0.0;
  ray::object_ref<std::vector<double>> built = std::move(buf).seal();
  return static_cast<double>(view.size()) + static_cast<double>(built.valid());
}

}  // namespace header_check_object_view
