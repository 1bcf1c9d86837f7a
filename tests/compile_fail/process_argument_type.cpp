// expect: static.assert[^\n]*ray::process\(ray::target<f>, args\.\.\.\): an argument does not
// convert
#include <coray/coray.hpp>
#include <string>
void work(int) {}
int main() {
  ray::runtime rt;
  ray::process p(ray::target<work>, std::string("one"));  // a string is no int
  p.start();
}
