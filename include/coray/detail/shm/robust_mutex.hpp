#pragma once
/// A process-shared mutex that survives its holder's death: the next locker gets the lock
/// (EOWNERDEAD is made consistent) instead of hanging forever. Used as the object store
/// allocator's lock, whose holder can be SIGKILLed at any instant.

#include <errno.h>
#include <pthread.h>
#include <time.h>

#include <atomic>
#include <chrono>
#include <coray/detail/sanitizers.hpp>
#include <coray/errors.hpp>
#include <cstdint>

// Under ThreadSanitizer unlock() stays a frame of its own, so that tests/tsan.supp, which
// names it, matches wherever it is called (see there).
#if CORAY_DETAIL_TSAN
#define CORAY_DETAIL_TSAN_NOINLINE [[gnu::noinline]]
#else
#define CORAY_DETAIL_TSAN_NOINLINE
#endif

CORAY_BEGIN_NAMESPACE
namespace detail {

class robust_mutex {
 public:
  robust_mutex() { init(false); }
  ~robust_mutex() { pthread_mutex_destroy(&m_); }
  robust_mutex(const robust_mutex&) = delete;
  robust_mutex& operator=(const robust_mutex&) = delete;

  /// Blocks. If the previous holder died holding it, takes it over and counts the event.
  void lock() { recover(pthread_mutex_lock(&m_)); }
  bool try_lock() {
    int rc = pthread_mutex_trylock(&m_);
    if (rc == EBUSY) return false;
    recover(rc);
    return true;
  }
  template <class TimePoint>
  bool timed_lock(const TimePoint&) {
    lock();
    return true;
  }
  /// Waits for the lock until `deadline` (the steady clock); false if it did not come.
  bool try_lock_until(std::chrono::steady_clock::time_point deadline) {
    const auto since = deadline.time_since_epoch();
    const auto secs = std::chrono::duration_cast<std::chrono::seconds>(since);
    const auto nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(since - secs);
    timespec ts{static_cast<time_t>(secs.count()), static_cast<long>(nanos.count())};
    int rc = pthread_mutex_clocklock(&m_, CLOCK_MONOTONIC, &ts);
    if (rc == ETIMEDOUT) return false;
    recover(rc);
    return true;
  }
  CORAY_DETAIL_TSAN_NOINLINE void unlock() { pthread_mutex_unlock(&m_); }
  /// How many times a holder died with the lock held.
  std::uint32_t owner_deaths() const noexcept { return deaths_.load(std::memory_order_relaxed); }

 protected:
  explicit robust_mutex(bool recursive) { init(recursive); }

 private:
  void init(bool recursive) {
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    if (recursive) pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&m_, &a);
    pthread_mutexattr_destroy(&a);
  }
  void recover(int rc) {
    if (rc == EOWNERDEAD) {
      pthread_mutex_consistent(&m_);
      deaths_.fetch_add(1, std::memory_order_relaxed);
    } else if (rc != 0) {
      throw ray::runtime_error("coray: process-shared mutex failed (error " + std::to_string(rc) +
                               ")");
    }
  }
  pthread_mutex_t m_;
  std::atomic<std::uint32_t> deaths_{0};
};

class robust_recursive_mutex : public robust_mutex {
 public:
  robust_recursive_mutex() : robust_mutex(true) {}
};

/// Mutex family for Boost.Interprocess memory algorithms.
struct robust_mutex_family {
  using mutex_type = robust_mutex;
  using recursive_mutex_type = robust_recursive_mutex;
};

}  // namespace detail
CORAY_END_NAMESPACE
