#pragma once
/// The actor behind a ray::queue<T>: a std::deque<T> whose blocking put and get are coroutine
/// methods, so a call that must wait (queue full, or empty) suspends and the actor goes on
/// serving others -- the put that makes room for it, the get that frees a slot. It also
/// counts the items put and not yet marked done, for ray::joinable_queue's task_done and join.

#include <chrono>
#include <coray/async.hpp>
#include <coray/detail/runtime/process.hpp>
#include <coroutine>
#include <cstdint>
#include <deque>
#include <list>
#include <optional>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

template <class T>
class queue_actor {
 public:
  /// Calls that may wait at once (each blocked put or get holds one).
  static constexpr std::uint32_t max_waiting_calls = 1u << 20;

  explicit queue_actor(std::uint64_t maxsize) : maxsize_(maxsize) {}

  /// Puts `item`, waiting at most `timeout_ns` for room (< 0: as long as it takes; 0: not at
  /// all). False if there was no room in time.
  async<bool> put(T item, std::int64_t timeout_ns) {
    if (!full()) {
      push(std::move(item));
      co_return true;
    }
    if (timeout_ns == 0) co_return false;
    waiter w;
    w.item = std::move(item);
    co_await wait_in{putters_, w, timeout_ns};
    co_return w.done;
  }

  /// Takes the oldest item, waiting at most `timeout_ns` for one; nullopt if none came.
  async<std::optional<T>> get(std::int64_t timeout_ns) {
    if (!items_.empty()) co_return pop();
    if (timeout_ns == 0) co_return std::nullopt;
    waiter w;
    co_await wait_in{getters_, w, timeout_ns};
    if (!w.done) co_return std::nullopt;
    co_return std::move(w.item);
  }

  /// Puts all of `items` if there is room for all; else none and false.
  bool put_batch(std::vector<T> items) {
    if (maxsize_ && items_.size() + items.size() > maxsize_) return false;
    for (auto& x : items) push(std::move(x));
    return true;
  }

  /// Takes `n` items if there are that many; else none and nullopt.
  std::optional<std::vector<T>> get_batch(std::uint64_t n) {
    if (items_.size() < n) return std::nullopt;
    std::vector<T> out;
    out.reserve(static_cast<std::size_t>(n));
    for (std::uint64_t i = 0; i < n; ++i) out.push_back(pop());
    return out;
  }

  std::uint64_t size() const noexcept { return items_.size(); }

  /// One item put earlier is done; false (and no change) if none is left undone.
  bool task_done() {
    if (unfinished_ == 0) return false;
    if (--unfinished_ == 0)
      while (!joiners_.empty()) {
        waiter& j = *joiners_.front();
        j.done = true;
        wake(j);
      }
    return true;
  }
  /// Waits until every item put has been marked done.
  async<void> join() {
    if (unfinished_ == 0) co_return;
    waiter w;
    co_await wait_in{joiners_, w, -1};
  }
  std::uint64_t unfinished() const noexcept { return unfinished_; }

 private:
  struct waiter {
    std::coroutine_handle<> h;
    std::optional<T> item;  // a putter's item, or what a getter received
    bool done = false;      // the put went in, or the get got an item
    std::uint64_t timer = 0;
    typename std::list<waiter*>::iterator at;
    std::list<waiter*>* in = nullptr;
  };

  /// Suspends the calling method in `list` until served or `timeout_ns` passes.
  struct wait_in {
    std::list<waiter*>& list;
    waiter& w;
    std::int64_t timeout_ns;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) {
      process& p = *process::current();
      w.h = h;
      w.in = &list;
      w.at = list.insert(list.end(), &w);
      if (timeout_ns > 0)
        w.timer = p.add_timer(deadline_after(std::chrono::nanoseconds(timeout_ns)),
                              &queue_actor::timed_out, &w);
      p.coroutine_suspended(+1);
    }
    void await_resume() const noexcept {}
  };

  static void wake(waiter& w) {
    process& p = *process::current();
    w.in->erase(w.at);
    if (w.timer) p.cancel_timer(w.timer);
    p.coroutine_suspended(-1);
    p.schedule(w.h);
  }
  static void timed_out(void* ctx) {
    auto& w = *static_cast<waiter*>(ctx);
    w.timer = 0;
    wake(w);
  }

  bool full() const noexcept { return maxsize_ && items_.size() >= maxsize_; }

  /// A new item goes to the oldest waiting getter, else to the back of the queue.
  void push(T&& item) {
    ++unfinished_;
    if (!getters_.empty()) {
      waiter& g = *getters_.front();
      g.item = std::move(item);
      g.done = true;
      wake(g);
    } else {
      items_.push_back(std::move(item));
    }
  }
  /// The oldest item; the oldest waiting putter's item takes the room it leaves.
  T pop() {
    T item = std::move(items_.front());
    items_.pop_front();
    if (!putters_.empty()) {
      waiter& w = *putters_.front();
      items_.push_back(std::move(*w.item));
      ++unfinished_;
      w.done = true;
      wake(w);
    }
    return item;
  }

  std::uint64_t maxsize_;
  std::deque<T> items_;
  std::list<waiter*> getters_, putters_, joiners_;
  std::uint64_t unfinished_ = 0;  // items put and not yet marked done
};

}  // namespace detail
CORAY_END_NAMESPACE
