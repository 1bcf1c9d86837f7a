#include <coray/coray.hpp>
#include <string>
int add(int a, int b) { return a + b; }
int main() {
  ray::runtime rt;
  auto r = ray::task<add>.remote(1, std::string("two"));  // a string for an int parameter
}
