// Seed 003: a shared counter incremented by two processes -- multiprocessing.Value and Lock.
//
//   def increment(shared_value):
//       shared_value.value += 1                    # read, add, write: not atomic
//   shared_value = mp.Value('i', 0)
//   process1 = mp.Process(target=increment, args=(shared_value,))
//   ...
//   with lock: ...                                 # the Lock section
//
// Without a lock, two processes that read-add-write can lose updates ("the result can be 1 or
// 2"). With a ray::mutex the result is exact; fetch_add needs no lock at all.
#include <coray/coray.hpp>
#include <cstdio>
#include <mutex>
#include <tuple>

/// Both processes start counting together, so their increments overlap.
void start_together(ray::shared_value<int> arrived) {
  arrived.fetch_add(1);
  while (arrived.load() < 2) {
  }
}

void increment(ray::shared_value<int> counter, ray::shared_value<int> arrived, int times) {
  start_together(arrived);
  for (int i = 0; i < times; ++i) counter.store(counter.load() + 1);  // racy on purpose
}

void increment_locked(ray::shared_value<int> counter, ray::mutex lock, int times) {
  for (int i = 0; i < times; ++i) {
    std::lock_guard hold(lock);
    counter.store(counter.load() + 1);
  }
}

void increment_atomic(ray::shared_value<int> counter, int times) {
  for (int i = 0; i < times; ++i) counter.fetch_add(1);
}

/// The seed's two processes, each running F(counter, args..., times); returns the count
/// expected.
template <auto F, class... A>
int run_twice(const char* what, ray::shared_value<int> counter, A... args) {
  ray::process process1(ray::target<F>, counter, args...);
  ray::process process2(ray::target<F>, counter, args...);
  process1.start();
  process2.start();
  process1.join();
  process2.join();
  const int times = std::get<sizeof...(A) - 1>(std::tuple<A...>(args...));
  const int expected = process1.exitcode() == 0 && process2.exitcode() == 0 ? 2 * times : -1;
  std::printf("%-26s final shared value: %d (of %d)\n", what, counter.load(), expected);
  return expected;
}

int main(int argc, char** argv) {
  ray::runtime rt(argc, argv, {.num_workers = 1});  // the processes are ray::process, not workers
  const int times = 1'000'000;

  // The seed's program, one increment each: 2, or 1 if the two overlapped.
  run_twice<increment>("one increment each:", ray::shared_value<int>(0), ray::shared_value<int>(0),
                       1);

  // Many increments make lost updates likely (how many depends on the scheduling).
  run_twice<increment>("without a lock:", ray::shared_value<int>(0), ray::shared_value<int>(0),
                       times);

  ray::shared_value<int> locked(0);
  ray::mutex lock;
  const int expected = run_twice<increment_locked>("with a ray::mutex:", locked, lock, times);

  ray::shared_value<int> atomic(0);
  run_twice<increment_atomic>("with fetch_add:", atomic, times);

  return locked.load() == expected && atomic.load() == expected ? 0 : 1;
}
