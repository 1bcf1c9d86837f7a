// Seed 003: a process's parent and current process, and the parent's active children.
//
//   def task():
//       sleep(1)
//       parent_pro = parent_process(); current_pro = current_process()
//       print(f'parent_process : {parent_pro.name}, {parent_pro.pid} / '
//             f'current_process : {current_pro.name}, {current_pro.pid}')
//   process1 = Process(); process1.name = 'MyProcess'; process1.daemon = True
//   process3 = Process(target=task); process3.start(); process3.join()
//   processes = [Process(target=task) for _ in range(5)]
//   [process.start() for process in processes]
//   childs = active_children()                     # started, not yet joined: all five
//   [process.join() for process in processes]
//
// active_children() lists the runtime's task workers too (the seed's program has none but
// its processes): here the runtime has one, and the five processes are those of kind
// process. The seed's one-second sleep is 100 ms, and each child then waits for `counted`
// before it ends: the seed counts on its five processes still sleeping when it lists them, but
// on a loaded machine starting the last can take longer than the first one's sleep.
#include <chrono>
#include <coray/coray.hpp>
#include <cstdio>
#include <thread>
#include <vector>

void task(ray::event counted) {
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const auto parent_pro = ray::parent_process();
  const ray::process_info current_pro = ray::current_process();
  std::printf("parent_process : %s, %d / current_process : %s, %d\n", parent_pro->name.c_str(),
              parent_pro->pid, current_pro.name.c_str(), current_pro.pid);
  std::fflush(stdout);
  counted.wait();  // a child until the driver has listed it
}

int main(int argc, char** argv) {
  ray::runtime rt(argc, argv, {.num_workers = 1});
  ray::event counted;
  ray::event at_once;
  at_once.set();
  ray::process process1(ray::target<task>, at_once);
  process1.name("MyProcess");
  process1.daemon(true);
  std::printf("process1 : %s, %s, %d\n", process1.name().c_str(),
              process1.daemon() ? "True" : "False", process1.pid());

  const ray::process_info current_processes = ray::current_process();
  std::printf("current_process : %s, %d\n", current_processes.name.c_str(), current_processes.pid);
  std::fflush(stdout);

  ray::process process3(ray::target<task>, at_once);
  process3.start();
  process3.join();

  std::printf("----------\n");
  std::fflush(stdout);
  std::vector<ray::process> processes;
  for (int i = 0; i < 5; ++i) processes.emplace_back(ray::target<task>, counted);
  for (auto& process : processes) process.start();

  std::size_t children = 0;
  for (const ray::process_info& child : ray::active_children())
    if (child.kind == ray::process_kind::process) {
      ++children;
      std::printf("<Process name='%s' pid=%d parent=%d started>\n", child.name.c_str(), child.pid,
                  ray::current_process().pid);
    }
  std::printf("Active Children Count : %zu\n", children);
  std::fflush(stdout);
  counted.set();
  for (auto& process : processes) process.join();
  bool ok = children == processes.size();
  for (auto& process : processes) ok = ok && process.exitcode() == 0;
  return ok ? 0 : 1;
}
