// expect: static.assert[^\n]*ray::process\(ray::target<f>, args\.\.\.\): wrong number of arguments
#include <coray/coray.hpp>
void work(int, int) {}
int main() {
  ray::runtime rt;
  ray::process p(ray::target<work>, 1);  // work takes two
  p.start();
}
