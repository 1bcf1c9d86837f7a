#pragma once
/// The threads of a threaded actor (max_concurrency > 1), which run its plain methods, as
/// Ray's threaded actors do. The loop thread hands over calls whose arguments it decoded; a
/// method thread takes them in that order, runs one at a time, and hands each back to the
/// loop as a job (`done`), which replies. Threads start as calls need them, never more than
/// the actor's max_concurrency, and live as long as the process.

#include <condition_variable>
#include <coray/detail/runtime/handoff.hpp>
#include <coray/detail/runtime/invocation.hpp>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

class method_threads {
 public:
  /// `post(call)` hands a finished call back to the loop thread; it is called on the method
  /// thread and must not throw.
  using post_fn = void (*)(void* owner, threaded_call* call) noexcept;
  method_threads(void* owner, post_fn post) noexcept : owner_(owner), post_(post) {}
  method_threads(const method_threads&) = delete;
  method_threads& operator=(const method_threads&) = delete;
  ~method_threads() {
    {
      const std::lock_guard lock(m_);
      stop_ = true;
    }
    ready_.notify_all();
    for (auto& t : threads_) t.join();
    for (threaded_call* c : queue_) delete c;
  }

  /// Loop thread: queues `c` for a method thread. A thread is started when the calls handed
  /// over and not yet done outnumber the threads, up to `limit`: as the loop starts at most
  /// `limit` calls at once, every call then has a thread free to take it. Locks a mutex;
  /// allocates when the queue grows or a thread starts.
  void run(std::unique_ptr<threaded_call> c, std::uint32_t limit) {
    {
      const std::lock_guard lock(m_);
      if (unfinished_ + 1 > threads_.size() && threads_.size() < limit)
        threads_.emplace_back([this] { serve(); });  // throws: nothing was queued
      queue_.push_back(c.get());
      c.release();
      ++unfinished_;
    }
    ready_.notify_one();
  }

 private:
  void serve() noexcept {
    on_method_thread() = true;
    std::unique_lock lock(m_);
    for (;;) {
      ready_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      threaded_call* c = queue_.front();
      queue_.pop_front();
      lock.unlock();
      c->run();
      lock.lock();
      --unfinished_;
      lock.unlock();
      post_(owner_, c);
      lock.lock();
    }
  }

  void* owner_;
  post_fn post_;
  std::mutex m_;
  std::condition_variable ready_;
  std::deque<threaded_call*> queue_;  // handed over, not yet taken
  std::size_t unfinished_ = 0;        // handed over, not yet done
  std::vector<std::thread> threads_;
  bool stop_ = false;
};

}  // namespace detail
CORAY_END_NAMESPACE
