#include <coray/coray.hpp>
int add(int a, int b) { return a + b; }
int main() {
  ray::runtime rt;
  auto r = ray::task<add>.remote(1);  // add takes two
}
