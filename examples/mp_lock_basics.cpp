// Seed 003: cpu_count, current_process and the ways to acquire a Lock.
//
//   num_cores = cpu_count()
//   process = current_process()       # <_MainProcess name='MainProcess' parent=None started>
//   lock = Lock()
//   lock.acquire()
//   lock.acquire(block=False)         # False: already held
//   lock.acquire(timeout=10)          # False after 10 s
//   lock.release()
//
// ray::cpu_count() counts the cores this process may use (its affinity and cgroup quota),
// where Python's counts the machine's. ray::mutex is multiprocessing.Lock: it lives in shared
// memory, so any process holding a handle locks the same lock. The seed's 10 s timeout is
// 10 ms.
#include <chrono>
#include <coray/coray.hpp>
#include <cstdio>

int main(int argc, char** argv) {
  ray::runtime rt(argc, argv, {.num_workers = 1});
  const unsigned num_cores = ray::cpu_count();
  std::printf("%u\n", num_cores);

  const ray::process_info process = ray::current_process();
  std::printf("<_MainProcess name='%s' parent=%s started>\n", process.name.c_str(),
              ray::parent_process() ? "yes" : "None");

  ray::mutex lock;
  lock.lock();
  const bool without_blocking = lock.try_lock();
  const bool with_timeout = lock.try_lock_for(std::chrono::milliseconds(10));
  std::printf("acquire(block=False): %s\nacquire(timeout=...): %s\n",
              without_blocking ? "True" : "False", with_timeout ? "True" : "False");
  lock.unlock();
  return num_cores >= 1 && !without_blocking && !with_timeout ? 0 : 1;
}
