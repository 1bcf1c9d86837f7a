#pragma once
/// ray::queue<T>: a FIFO queue that every process of the runtime can use -- the driver, tasks
/// and actors -- with Ray's Queue semantics: put() waits while the queue is full, get() while
/// it is empty; with a timeout they throw ray::queue_full / ray::queue_empty instead.
///
///   void produce(ray::queue<int> q, int n) { for (int i = 0; i < n; ++i) q.put(i); }
///
///   ray::queue<int> q(100);                        // at most 100 items; 0: unbounded
///   ray::task<produce>.remote(q, 1000);
///   int first = q.get();                           // blocking, serving the runtime
///   int next = co_await q.get_async();             // in a coroutine
///   int maybe = q.get(std::chrono::milliseconds(10));   // or ray::queue_empty
///
/// Like Ray's, the queue is an actor holding a std::deque<T>; a put or get that must wait
/// suspends inside the actor, which meanwhile serves the calls that unblock it. Each
/// operation costs one actor call; put_nowait_batch / get_nowait_batch move many items in
/// one. A handle is a value: pass it to tasks and actors (alone or inside containers). The
/// queue's process starts at the handle's first use; create queues in the driver. It ends
/// when its last handle in any process goes.

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <coray/actor.hpp>
#include <coray/detail/mp/queue_actor.hpp>
#include <coray/errors.hpp>
#include <coray/object_store.hpp>
#include <coray/sync_wait.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE

template <class T>
class queue {
  using actor_type = detail::queue_actor<T>;

 public:
  using timeout_type = std::optional<std::chrono::nanoseconds>;

  /// An unbounded queue.
  queue() noexcept = default;
  /// A queue of at most `maxsize` items (0: unbounded, as in Python).
  explicit queue(std::size_t maxsize) : maxsize_(maxsize) {}
  /// Copies are handles to the same queue.
  queue(const queue& o) : actor_((o.start(), o.actor_)), maxsize_(o.maxsize_) {}
  queue(queue&&) noexcept = default;
  queue& operator=(const queue& o) {
    o.start();
    actor_ = o.actor_;
    maxsize_ = o.maxsize_;
    return *this;
  }
  queue& operator=(queue&&) noexcept = default;

  /// Appends `item`, waiting while the queue is full; after `timeout`, throws queue_full.
  void put(T item, timeout_type timeout = std::nullopt) {
    if (!ray::get(put_call(std::move(item), wait_ns(timeout))).get()) throw full_error();
  }
  /// Appends `item` if there is room now; else throws queue_full.
  void put_nowait(T item) { put(std::move(item), std::chrono::nanoseconds(0)); }
  /// put() in a coroutine: `co_await q.put_async(item)`. The put is sent at once.
  async<void> put_async(T item, timeout_type timeout = std::nullopt) {
    return await_put(put_call(std::move(item), wait_ns(timeout)));
  }

  /// Takes the oldest item, waiting while the queue is empty; after `timeout`, throws
  /// queue_empty.
  T get(timeout_type timeout = std::nullopt) {
    std::optional<T> v = ray::get(get_call(wait_ns(timeout))).get();
    if (!v) throw empty_error();
    return std::move(*v);
  }
  /// Takes the oldest item if there is one now; else throws queue_empty.
  T get_nowait() { return get(std::chrono::nanoseconds(0)); }
  /// get() in a coroutine: `T v = co_await q.get_async()`. The get is sent at once.
  async<T> get_async(timeout_type timeout = std::nullopt) {
    return await_get(get_call(wait_ns(timeout)));
  }

  /// Appends every item if there is room for all now; else none, and throws queue_full.
  void put_nowait_batch(std::vector<T> items) {
    if (!ray::get(handle().template call<&actor_type::put_batch>(std::move(items))).get())
      throw full_error();
  }
  /// Takes `n` items if there are that many now; else none, and throws queue_empty.
  std::vector<T> get_nowait_batch(std::size_t n) {
    std::optional<std::vector<T>> v =
        ray::get(handle().template call<&actor_type::get_batch>(std::uint64_t{n})).get();
    if (!v) throw empty_error();
    return std::move(*v);
  }

  /// Items in the queue now (Ray's qsize()).
  std::size_t size() const { return ray::get(handle().template call<&actor_type::size>()).get(); }
  bool empty() const { return size() == 0; }
  bool full() const { return maxsize_ != 0 && size() >= maxsize_; }
  /// The bound given at construction; 0 for an unbounded queue.
  std::size_t maxsize() const noexcept { return maxsize_; }

  /// Ends the queue's process now (Ray's shutdown(force=True)); waiting calls fail with
  /// actor_died.
  void shutdown() {
    if (actor_.valid()) ray::kill(actor_);
  }

  /// Handles travel as call arguments: the receiving process reaches the same queue.
  template <class Archive>
  void serialize(Archive& ar) {
    if constexpr (!Archive::is_loading) start();
    std::uint64_t maxsize = maxsize_;
    ar(actor_, maxsize);
    maxsize_ = static_cast<std::size_t>(maxsize);
  }

 protected:
  const actor<actor_type>& handle() const {
    start();
    return actor_;
  }

 private:
  void start() const {
    if (actor_.valid()) return;
    actor_ = ray::spawn<actor_type>(
        detail::multiprocessing_options({.max_concurrency = actor_type::max_waiting_calls}),
        std::uint64_t{maxsize_});
  }
  static std::int64_t wait_ns(timeout_type timeout) {
    return timeout ? std::max<std::int64_t>(0, timeout->count()) : -1;
  }

  object_ref<bool> put_call(T&& item, std::int64_t ns) {
    return handle().template call<&actor_type::put>(std::move(item), ns);
  }
  object_ref<std::optional<T>> get_call(std::int64_t ns) {
    return handle().template call<&actor_type::get>(ns);
  }

  queue_full full_error() const {
    return queue_full(fmt::format("ray::queue: full (maxsize {})", maxsize_));
  }
  static queue_empty empty_error() { return queue_empty("ray::queue: empty"); }

  static async<void> await_put(object_ref<bool> r) {
    const bool put = co_await ray::get(r);  // (g++ 12 mishandles co_await inside `if (!...)`)
    if (!put) throw queue_full("ray::queue: full");
  }
  static async<T> await_get(object_ref<std::optional<T>> r) {
    std::optional<T> v = co_await ray::get(r);
    if (!v) throw empty_error();
    co_return std::move(*v);
  }

  mutable actor<actor_type> actor_;
  std::size_t maxsize_ = 0;
};

/// multiprocessing.JoinableQueue: a ray::queue that also counts the items put and not yet
/// marked done. A consumer calls task_done() once per item it has finished with; join()
/// waits until every item put so far is done.
///
///   void worker(ray::joinable_queue<int> q) {
///     for (;;) { int job = q.get(); run(job); q.task_done(); }
///   }
///   for (int j : jobs) q.put(j);
///   q.join();                                  // every job has been run
template <class T>
class joinable_queue : public queue<T> {
  using actor_type = detail::queue_actor<T>;

 public:
  using queue<T>::queue;

  /// Marks one item taken from the queue as done. Throws usage_error (Python's ValueError)
  /// if called more times than items were put.
  void task_done() {
    if (!ray::get(this->handle().template call<&actor_type::task_done>()).get())
      throw usage_error("coray: ray::joinable_queue::task_done() called more times than items put");
  }
  /// Waits until every item put has been marked done (at once if none is pending). On a
  /// runtime loop's thread it serves the runtime meanwhile, as a blocking ray::get does.
  void join() { ray::get(this->handle().template call<&actor_type::join>()).get(); }
  /// join() in a coroutine: `co_await q.join_async()`.
  async<void> join_async() { return await_join(this->handle().template call<&actor_type::join>()); }
  /// Items put and not yet marked done (one actor call; it may change at once).
  std::size_t unfinished() const {
    return ray::get(this->handle().template call<&actor_type::unfinished>()).get();
  }

 private:
  static async<void> await_join(object_ref<void> r) { co_await ray::get(r); }
};

CORAY_END_NAMESPACE
