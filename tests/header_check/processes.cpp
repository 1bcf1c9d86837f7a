// processes.hpp alone: the runtime's task workers and actors as processes.
#include <coray/processes.hpp>

namespace header_check_processes {

struct idle {};

int uses() {
  int pids = 0;
  for (const ray::process_info& w : ray::workers()) pids += w.pid;
  ray::process_info a = ray::actor_process(ray::spawn<idle>());
  const int me = ray::current_process().pid + static_cast<int>(ray::cpu_count());
  const int parent = ray::parent_process() ? ray::parent_process()->pid : 0;
  return pids + a.pid + static_cast<int>(ray::active_children().size()) + me + parent;
}

}  // namespace header_check_processes
