#pragma once
/// Synchronisation between the runtime's processes, kept in its shared memory -- Python's
/// multiprocessing.RLock, Semaphore, BoundedSemaphore, Event, Condition and Barrier:
/// ray::recursive_mutex, ray::semaphore, ray::bounded_semaphore, ray::event,
/// ray::condition_variable (with ray::mutex, mutex.hpp) and ray::barrier.
///
///   void worker_part(ray::barrier ready, ray::event go, ray::semaphore slots) {
///     ready.wait();                          // every party arrived
///     go.wait();                             // the driver said so
///     std::lock_guard one(slots);            // at most N at once in here
///   }
///
/// Each is a handle, as ray::mutex is: copy it, pass it to tasks and actors, create it in any
/// process; the state lives while a handle exists in any process. Every wait has a timed
/// form; one on a runtime loop's thread keeps serving the runtime.
///
/// A process's death: recursive_mutex is robust as ray::mutex is (the next locker gets it and
/// owner_died() says so). A barrier whose waiting party died breaks: every waiter ends with
/// ray::broken_barrier. A condition wait whose lock's holder died (the notifier, killed while
/// it updated the state) ends with ray::peer_died, holding the lock. Semaphores and events have
/// no holder: a waiter's death leaves them working, and units a dead process took are not
/// given back (as with POSIX and Python semaphores).

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <coray/detail/mp/barrier_state.hpp>
#include <coray/detail/mp/shared_wait.hpp>
#include <coray/detail/shm/robust_mutex.hpp>
#include <coray/mutex.hpp>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <mutex>

CORAY_BEGIN_NAMESPACE

namespace detail {
struct recursive_mutex_state {
  static constexpr const char* name = "ray::recursive_mutex";
  static std::size_t bytes(std::uint32_t) { return sizeof(recursive_mutex_state); }
  static bool fits(std::size_t n) { return n == sizeof(recursive_mutex_state); }
  explicit recursive_mutex_state(std::uint32_t) {}
  robust_recursive_mutex lock;
  std::uint32_t deaths_seen = 0;  // the lock's owner_deaths() at the last first acquisition
  std::uint32_t depth = 0;        // the holder's acquisitions
  bool owner_died = false;
};
struct semaphore_state {
  static constexpr const char* name = "ray::semaphore";
  static std::size_t bytes(std::uint32_t) { return sizeof(semaphore_state); }
  static bool fits(std::size_t n) { return n == sizeof(semaphore_state); }
  explicit semaphore_state(std::uint32_t initial) : word(initial), initial(initial) {}
  std::atomic<std::uint32_t> word;  // the count, and sleepers_bit
  std::uint32_t initial;
};
struct event_state {
  static constexpr const char* name = "ray::event";
  static std::size_t bytes(std::uint32_t) { return sizeof(event_state); }
  static bool fits(std::size_t n) { return n == sizeof(event_state); }
  explicit event_state(std::uint32_t) {}
  std::atomic<std::uint32_t> word{0};  // 1 when set, and sleepers_bit
};
struct condition_state {
  static constexpr const char* name = "ray::condition_variable";
  static std::size_t bytes(std::uint32_t) { return sizeof(condition_state); }
  static bool fits(std::size_t n) { return n == sizeof(condition_state); }
  explicit condition_state(std::uint32_t) {}
  std::atomic<std::uint32_t> seq{0};      // bumped by each notify; waiters sleep on it
  std::atomic<std::uint32_t> waiters{0};  // a waiter that died stays counted: one wake more
};
}  // namespace detail

/// multiprocessing.RLock: a ray::mutex that the thread holding it may lock again; it is free
/// once unlocked as many times as locked. Robust as ray::mutex is.
class recursive_mutex : public detail::shared_handle<detail::recursive_mutex_state> {
 public:
  recursive_mutex() noexcept : shared_handle(0) {}

  void lock() { acquire_until(detail::clock::time_point::max()); }
  bool try_lock() {
    if (!state().lock.try_lock()) return false;
    acquired();
    return true;
  }
  template <class Rep, class Period>
  bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout) {
    return acquire_until(detail::deadline_in(timeout));
  }
  template <class Clock, class Duration>
  bool try_lock_until(const std::chrono::time_point<Clock, Duration>& deadline) {
    return acquire_until(detail::deadline_at(deadline));
  }
  /// Precondition: this thread holds the lock.
  void unlock() {
    --state().depth;
    state().lock.unlock();
  }
  /// While holding the lock: true if its first acquisition took it over from a process that
  /// died holding it.
  bool owner_died() const { return state().owner_died; }

 private:
  void acquired() {
    auto& st = state();
    const std::uint32_t deaths = st.lock.owner_deaths();
    if (deaths != st.deaths_seen) {  // recovered from a dead holder: its depth went with it
      st.deaths_seen = deaths;
      st.depth = 1;
      st.owner_died = true;
    } else if (++st.depth == 1) {
      st.owner_died = false;
    }
  }
  bool acquire_until(detail::clock::time_point deadline) {
    return detail::wait_serving([&] { return try_lock(); },
                                [&](detail::clock::time_point until) {
                                  if (!state().lock.try_lock_until(until)) return false;
                                  acquired();
                                  return true;
                                },
                                deadline);
  }
};

namespace detail {
/// ray::semaphore and ray::bounded_semaphore.
template <bool Bounded>
class basic_semaphore : public shared_handle<semaphore_state> {
 public:
  /// The largest count a semaphore holds.
  static constexpr std::uint32_t max_value = ~sleepers_bit;

  /// A semaphore of count 1, Python's default.
  basic_semaphore() noexcept : shared_handle(1) {}
  /// A semaphore of count `value`. Throws usage_error above max_value.
  explicit basic_semaphore(std::uint32_t value) : shared_handle(checked(value)) {}

  /// Takes a unit, waiting for one.
  void acquire() { acquire_until(clock::time_point::max()); }
  /// Takes a unit if there is one; never waits.
  bool try_acquire() noexcept {
    auto& w = state().word;
    std::uint32_t v = w.load(std::memory_order_relaxed);
    while ((v & ~sleepers_bit) != 0)
      if (w.compare_exchange_weak(v, v - 1, std::memory_order_acquire, std::memory_order_relaxed))
        return true;
    return false;
  }
  template <class Rep, class Period>
  bool try_acquire_for(const std::chrono::duration<Rep, Period>& timeout) {
    return acquire_until(deadline_in(timeout));
  }
  template <class Clock, class Duration>
  bool try_acquire_until(const std::chrono::time_point<Clock, Duration>& deadline) {
    return acquire_until(deadline_at(deadline));
  }
  /// Gives back `n` units. A bounded semaphore throws usage_error (Python's ValueError) if
  /// that would raise its count above the initial value, and changes nothing.
  void release(std::uint32_t n = 1) {
    auto& st = state();
    std::uint32_t v = st.word.load(std::memory_order_relaxed);
    for (;;) {
      const std::uint32_t count = v & ~sleepers_bit;
      const std::uint32_t limit = Bounded ? st.initial : max_value;
      if (n > limit - count)
        throw usage_error(Bounded ? "coray: ray::bounded_semaphore released too many times"
                                  : "coray: ray::semaphore released past its largest count");
      if (st.word.compare_exchange_weak(v, count + n, std::memory_order_release,
                                        std::memory_order_relaxed))
        break;
    }
    if ((v & sleepers_bit) != 0) futex_wake_all(&st.word);
  }
  /// The count now (Python's get_value; it may change at once).
  std::uint32_t value() const noexcept {
    return state().word.load(std::memory_order_relaxed) & ~sleepers_bit;
  }

  /// acquire and release under the names std::lock_guard and std::unique_lock use: a guard
  /// holds one unit for its scope (Python's `with semaphore:`).
  void lock() { acquire(); }
  bool try_lock() noexcept { return try_acquire(); }
  template <class Rep, class Period>
  bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout) {
    return try_acquire_for(timeout);
  }
  template <class Clock, class Duration>
  bool try_lock_until(const std::chrono::time_point<Clock, Duration>& deadline) {
    return try_acquire_until(deadline);
  }
  void unlock() { release(); }

 private:
  static std::uint32_t checked(std::uint32_t value) {
    if (value > max_value) throw usage_error("coray: a semaphore's count is at most 2^31 - 1");
    return value;
  }
  bool acquire_until(clock::time_point deadline) {
    return wait_serving([&] { return try_acquire(); },
                        [&](clock::time_point until) {
                          sleep_on(
                              state().word, [](std::uint32_t c) { return c != 0; }, until);
                          return false;
                        },
                        deadline);
  }
};
}  // namespace detail

/// multiprocessing.Semaphore: a count of units; acquire takes one, waiting while there is
/// none, and release gives one back (any process may release).
using semaphore = detail::basic_semaphore<false>;
/// multiprocessing.BoundedSemaphore: a semaphore whose count never exceeds its initial value.
using bounded_semaphore = detail::basic_semaphore<true>;

/// multiprocessing.Event: a flag that waiters wait to see set.
class event : public detail::shared_handle<detail::event_state> {
 public:
  /// A new event, clear.
  event() noexcept : shared_handle(0) {}

  /// Sets the flag and wakes every waiter.
  void set() {
    auto& w = state().word;
    if ((w.exchange(1, std::memory_order_acq_rel) & detail::sleepers_bit) != 0)
      detail::futex_wake_all(&w);
  }
  /// Clears the flag: later waits wait again.
  void clear() { state().word.fetch_and(~1u, std::memory_order_relaxed); }
  bool is_set() const noexcept { return (state().word.load(std::memory_order_acquire) & 1) != 0; }

  /// Waits until the flag is set.
  void wait() { wait_until_(detail::clock::time_point::max()); }
  /// Waits at most `timeout`; returns whether the flag is set (Python's wait(timeout)).
  template <class Rep, class Period>
  bool wait_for(const std::chrono::duration<Rep, Period>& timeout) {
    return wait_until_(detail::deadline_in(timeout));
  }
  template <class Clock, class Duration>
  bool wait_until(const std::chrono::time_point<Clock, Duration>& deadline) {
    return wait_until_(detail::deadline_at(deadline));
  }

 private:
  bool wait_until_(detail::clock::time_point deadline) {
    return detail::wait_serving([&] { return is_set(); },
                                [&](detail::clock::time_point until) {
                                  detail::sleep_on(
                                      state().word, [](std::uint32_t f) { return f != 0; }, until);
                                  return false;
                                },
                                deadline);
  }
};

/// multiprocessing.Condition: waits for a change of state that a ray::mutex protects, used
/// with std::unique_lock<ray::mutex> as std::condition_variable is with std::mutex.
///
/// A wait may end without a notify (a spurious wake-up, as std and Python allow): use the
/// forms with a predicate. notify_one wakes one sleeper at once; others that see the notify
/// before they sleep again wake too. If a process dies holding the lock while others wait
/// (a notifier killed mid-update), each wait ends with ray::peer_died, holding the lock, and
/// the lock's owner_died() tells its taker. A notifier that dies without holding the lock
/// cannot be told from a slow one: use a timed wait where that matters.
class condition_variable : public detail::shared_handle<detail::condition_state> {
 public:
  condition_variable() noexcept : shared_handle(0) {}

  void wait(std::unique_lock<mutex>& lock) { wait_until_(lock, detail::clock::time_point::max()); }
  template <class Predicate>
  void wait(std::unique_lock<mutex>& lock, Predicate pred) {
    while (!pred()) wait(lock);
  }
  template <class Rep, class Period>
  std::cv_status wait_for(std::unique_lock<mutex>& lock,
                          const std::chrono::duration<Rep, Period>& timeout) {
    return wait_until_(lock, detail::deadline_in(timeout));
  }
  template <class Rep, class Period, class Predicate>
  bool wait_for(std::unique_lock<mutex>& lock, const std::chrono::duration<Rep, Period>& timeout,
                Predicate pred) {
    return wait_pred(lock, detail::deadline_in(timeout), pred);
  }
  template <class Clock, class Duration>
  std::cv_status wait_until(std::unique_lock<mutex>& lock,
                            const std::chrono::time_point<Clock, Duration>& deadline) {
    return wait_until_(lock, detail::deadline_at(deadline));
  }
  template <class Clock, class Duration, class Predicate>
  bool wait_until(std::unique_lock<mutex>& lock,
                  const std::chrono::time_point<Clock, Duration>& deadline, Predicate pred) {
    return wait_pred(lock, detail::deadline_at(deadline), pred);
  }

  void notify_one() { notify(1); }
  void notify_all() { notify(std::numeric_limits<int>::max()); }

 private:
  void notify(int n) {
    auto& st = state();
    st.seq.fetch_add(1, std::memory_order_seq_cst);
    if (st.waiters.load(std::memory_order_seq_cst) != 0) detail::futex_wake(&st.seq, n);
  }
  template <class Predicate>
  bool wait_pred(std::unique_lock<mutex>& lock, detail::clock::time_point deadline,
                 Predicate& pred) {
    while (!pred())
      if (wait_until_(lock, deadline) == std::cv_status::timeout) return pred();
    return true;
  }
  std::cv_status wait_until_(std::unique_lock<mutex>& lock, detail::clock::time_point deadline);
};

inline std::cv_status condition_variable::wait_until_(std::unique_lock<mutex>& lock,
                                                      detail::clock::time_point deadline) {
  if (!lock.owns_lock())
    throw usage_error("coray: ray::condition_variable::wait needs the lock held");
  mutex& m = *lock.mutex();
  auto& st = state();
  const std::uint32_t seq = st.seq.load(std::memory_order_acquire);
  const std::uint32_t deaths = m.s().lock.owner_deaths();
  // Counted before the lock is let go, so a notify made under the lock after this sees it;
  // a notify between the unlock and the sleep changes seq, which the futex then refuses.
  st.waiters.fetch_add(1, std::memory_order_seq_cst);
  m.unlock();
  bool died = false, holding = false;
  auto notified = [&] { return st.seq.load(std::memory_order_acquire) != seq; };
  auto sleep = [&](detail::clock::time_point until) {
    detail::futex_wait_until(st.seq, seq, until);
    if (notified()) return true;
    // The lock's holder died if a locker recovered the lock since the wait began, or if the
    // lock is free to take because its holder's death freed it.
    if (!holding && m.try_lock()) {
      holding = true;
      if (m.s().lock.owner_deaths() == deaths) {
        holding = false;
        m.unlock();
      }
    }
    died = m.s().lock.owner_deaths() != deaths;
    return died;
  };
  bool woke = false;
  try {
    woke = detail::wait_serving(notified, sleep, deadline, true);
  } catch (...) {  // from what the wait served: the lock is held again, as on every exit
    st.waiters.fetch_sub(1, std::memory_order_relaxed);
    if (!holding) m.lock();
    throw;
  }
  st.waiters.fetch_sub(1, std::memory_order_relaxed);
  if (!holding) m.lock();
  if (died) throw peer_died("coray: a process died holding a ray::condition_variable's lock");
  return woke ? std::cv_status::no_timeout : std::cv_status::timeout;
}

/// multiprocessing.Barrier: `parties` waiters meet; each wait returns once all have arrived,
/// then the barrier serves the next round.
///
/// The barrier breaks, and every wait on it (pending or later, until reset()) throws
/// ray::broken_barrier, when abort() is called, when a timed wait runs out (as Python's
/// does), or when a waiting party's process dies.
class barrier : public detail::shared_handle<detail::barrier_state> {
 public:
  /// An empty handle, what decoding fills; waiting on it is a usage_error.
  barrier() noexcept : shared_handle(0) {}
  /// A barrier for `parties` waiters (at least 1). Throws usage_error otherwise.
  explicit barrier(std::uint32_t parties) : shared_handle(checked(parties)) {}

  /// Waits for every party; returns this arrival's index, 0 to parties() - 1 (Python's).
  std::uint32_t wait() { return state().wait(detail::clock::time_point::max()); }
  /// As wait(), at most `timeout`; a timeout breaks the barrier and throws broken_barrier.
  template <class Rep, class Period>
  std::uint32_t wait_for(const std::chrono::duration<Rep, Period>& timeout) {
    return state().wait(detail::deadline_in(timeout));
  }
  template <class Clock, class Duration>
  std::uint32_t wait_until(const std::chrono::time_point<Clock, Duration>& deadline) {
    return state().wait(detail::deadline_at(deadline));
  }
  /// Breaks the barrier: its waiters, and later waits, throw broken_barrier.
  void abort() {
    detail::barrier_state::locked g(state());
    state().break_generation();
  }
  /// Back to empty and unbroken; parties waiting now throw broken_barrier.
  void reset() {
    detail::barrier_state::locked g(state());
    if (state().arrived != 0) state().finish(detail::barrier_slot::broke);
    state().broken = false;
  }
  bool broken() const {
    detail::barrier_state::locked g(state());
    return state().broken;
  }
  /// How many parties wait now.
  std::uint32_t n_waiting() const {
    detail::barrier_state::locked g(state());
    return state().broken ? 0 : state().arrived;
  }
  std::uint32_t parties() const { return state().parties; }

 private:
  static std::uint32_t checked(std::uint32_t parties) {
    if (parties == 0 || parties > (1u << 20))
      throw usage_error("coray: a ray::barrier has 1 to 2^20 parties");
    return parties;
  }
};

CORAY_END_NAMESPACE
