// Nested tasks: a task that is a coroutine awaits the tasks it starts. While it waits, its
// worker runs other tasks, so even a recursion far deeper than the pool does not deadlock.
#include <coray/coray.hpp>
#include <cstdio>

ray::async<long> fib(int n) {
  if (n < 2) co_return n;
  auto a = ray::task<fib>.remote(n - 1);
  auto b = ray::task<fib>.remote(n - 2);
  co_return co_await ray::get(a) + co_await ray::get(b);
}

int main(int argc, char** argv) {
  ray::runtime rt(argc, argv, {.num_workers = 2});
  long f = ray::get(ray::task<fib>.remote(15));
  std::printf("fib(15) = %ld, computed by %u workers with one task per call\n", f,
              rt.num_workers());
  return f == 610 ? 0 : 1;
}
