// codec.hpp alone: a struct and a std type through encode / decode.
#include <coray/codec.hpp>
#include <map>
#include <string>
#include <vector>

namespace header_check_codec {

struct point {
  double x, y;
  std::string label;
};
static_assert(ray::is_encodable_v<point> && ray::is_decodable_v<point>);

std::size_t uses() {
  const std::vector<std::byte> bytes = ray::encode(point{1, 2, "p"});
  const point p = ray::decode<point>(bytes);
  std::vector<std::byte> out(ray::encoded_size(std::map<int, std::string>{{1, "a"}}));
  ray::encode_to(out, std::map<int, std::string>{{1, "a"}});
  return p.label.size() + ray::decode<std::map<int, std::string>>(out).size();
}

}  // namespace header_check_codec
