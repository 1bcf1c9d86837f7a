#include <coray/coray.hpp>
void bump(int& x) { ++x; }
int main() {
  ray::runtime rt;
  int x = 0;
  auto r = ray::task<bump>.remote(x);  // the callee runs in another process
}
