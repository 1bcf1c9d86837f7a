// expect: static.assert[^\n]*ray::pool::starmap<f>\(tuples\): a tuple's element does not convert
#include <coray/coray.hpp>
#include <string>
#include <tuple>
#include <vector>
int add(int a, int b) { return a + b; }
int main() {
  ray::runtime rt;
  ray::pool p(2);
  std::vector<std::tuple<int, std::string>> items{{1, "two"}};  // a string for an int parameter
  auto r = p.starmap<add>(items);
}
