// The packaged headers build a program whose task runs in a worker process.
#include <coray/coray.hpp>
#include <cstdio>

int square(int x) { return x * x; }

int main(int argc, char** argv) {
  ray::runtime rt(argc, argv, {.num_workers = 1});
  int nine = ray::get(ray::task<square>.remote(3));
  std::printf("coray %d.%d.%d: square(3) = %d\n", CORAY_VERSION_MAJOR, CORAY_VERSION_MINOR,
              CORAY_VERSION_PATCH, nine);
  return nine == 9 ? 0 : 1;
}
