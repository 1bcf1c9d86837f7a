#include <coray/coray.hpp>
#include <string>
int add(int a, int b) { return a + b; }
int main() {
  ray::runtime rt;
  ray::object_ref<std::string> s = ray::put(std::string("x"));
  auto r = ray::task<add>.remote(1, s);  // a ref to a string for an int parameter
}
