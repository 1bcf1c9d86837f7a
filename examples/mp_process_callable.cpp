// Seed 003: a Process whose target maps a callable object over a list; the object is
// pickled into the new process.
//
//   class Test:
//       def __init__(self): self.x = 1; print("init")
//       def __call__(self, x): return x + self.x
//       def __getstate__(self): print("get state"); return self.__dict__
//       def __setstate__(self, state): print("set state"); self.__dict__ = state
//   def custom_map(func, data): return [func(item) for item in data]
//   process1 = mp.Process(target=custom_map, args=(test, [1, 2, 3]))
//   process1.start(); process1.join()
//   print(process1.exitcode)                       # 0
//
// coray's codec plays pickle's part, under either start method: Test's serialize() runs
// when the object is written ("get state", in the driver at start(): twice, as the codec
// sizes the encoding, then writes it) and read ("set state", in the new process).
#include <unistd.h>

#include <coray/coray.hpp>
#include <cstdio>
#include <vector>

struct Test {
  int x = 1;
  Test() = default;
  explicit Test(int start) : x(start) { std::printf("init\n"); }
  int operator()(int item) const { return item + x; }
  template <class Archive>
  void serialize(Archive& ar) {
    std::printf("%s state (pid %d)\n", Archive::is_loading ? "set" : "get", getpid());
    ar(x);
  }
};

void custom_map(Test func, std::vector<int> data) {
  std::vector<int> results;
  for (int item : data) results.push_back(func(item));
  std::printf("[pid %d] results:", getpid());
  for (int r : results) std::printf(" %d", r);
  std::printf("\n");
}

int main(int argc, char** argv) {
  ray::runtime rt(argc, argv, {.num_workers = 1});
  Test test(1);
  std::printf("----------\n%d\n--------------------\n", test(1));
  ray::process process1(ray::target<custom_map>, test, std::vector<int>{1, 2, 3});
  std::printf("------------------------------\n");
  std::fflush(stdout);
  process1.start();
  std::printf("----------------------------------------\n");
  std::fflush(stdout);
  process1.join();
  const int result = process1.exitcode().value_or(-1);
  std::printf("%d\n", result);
  return result;
}
