// queue.hpp alone: put and get, blocking and in a coroutine; a joinable queue's task_done and
// join.
#include <coray/queue.hpp>

namespace header_check_queue {

ray::async<int> consume(ray::queue<int> q) {
  co_await q.put_async(2);
  co_return co_await q.get_async();
}

int uses() {
  ray::queue<int> q(10);
  q.put(1);
  int v = q.get();
  ray::joinable_queue<int> jobs;
  jobs.put(3);
  v += jobs.get();
  jobs.task_done();
  jobs.join();
  ray::sync_wait(jobs.join_async());
  return v + ray::sync_wait(consume(q)) + static_cast<int>(q.size() + jobs.unfinished());
}

}  // namespace header_check_queue
