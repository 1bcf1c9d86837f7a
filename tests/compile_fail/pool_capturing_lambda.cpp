// expect: static.assert[^\n]*ray::pool: f is a lambda that captures|explicitly-specified argument
#include <coray/coray.hpp>
#include <vector>
int main() {
  ray::runtime rt;
  ray::pool p(2);
  constexpr int factor = 10;
  // What a lambda captures stays in the driver: a pool process would not see it. g++ takes
  // the lambda as a template argument and coray's static_assert says so; clang refuses a
  // capturing lambda as a template argument itself.
  auto r = p.map<[factor](int x) { return x * factor; }>(std::vector<int>{1, 2});
}
