// returns.hpp alone: a function's several results as one value.
#include <coray/returns.hpp>
#include <string>

namespace header_check_returns {

ray::returns<int, std::string> split(int x) { return {x / 2, std::to_string(x)}; }

static_assert(ray::returns<int, std::string>::size == 2);
static_assert(ray::detail::is_returns_v<ray::returns<int>>);
static_assert(!ray::detail::is_returns_v<int>);

}  // namespace header_check_returns
