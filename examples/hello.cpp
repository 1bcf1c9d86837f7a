// Seed 000's first program: a remote function, called and gotten.
//
//   @ray.remote
//   def function(): return True
//   ray.get(function.remote())
#include <unistd.h>

#include <coray/coray.hpp>
#include <cstdio>

int hello(int from) {
  std::printf("hello from worker pid %d (asked by pid %d)\n", getpid(), from);
  return 1;
}

int main(int argc, char** argv) {
  ray::runtime rt(argc, argv);
  int ok = ray::get(ray::task<hello>.remote(getpid()));
  return ok == 1 ? 0 : 1;
}
