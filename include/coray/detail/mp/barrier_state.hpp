#pragma once
/// ray::barrier's state in the segment, and how a party waits on it.
///
/// A short robust lock (`guard`) covers the count and the generation. Each waiting party
/// takes a slot: a robust mutex it holds while it waits, and a futex word where whoever ends
/// the generation writes the outcome (passed or broken) and wakes it. A party's death is
/// read off its slot: a waiting slot whose mutex another process can take has lost its
/// holder (the kernel releases a dead thread's robust mutexes), which breaks the barrier.
/// Each waiter looks at the others' slots between its sleeps. The party that completes a
/// generation takes no slot; a slot is reused once its party has read its outcome and let go
/// of its mutex, so a late reader never sees a later generation's outcome.

#include <atomic>
#include <coray/detail/mp/shared_wait.hpp>
#include <coray/detail/shm/robust_mutex.hpp>
#include <cstddef>
#include <cstdint>
#include <new>
#include <thread>

CORAY_BEGIN_NAMESPACE
namespace detail {

struct barrier_slot {
  enum : std::uint32_t { unused = 0, waiting = 1, passed = 2, broke = 3 };
  robust_mutex held;  // locked by the party in this slot from its arrival until it leaves
  std::atomic<std::uint32_t> status{unused};
  std::uint32_t generation = 0;
};

struct barrier_state {
  static constexpr const char* name = "ray::barrier";
  static constexpr std::uint32_t no_slot = ~0u;
  /// Waiters of one generation and, at most as many, of the last one not yet gone.
  static std::uint32_t slots_for(std::uint32_t parties) { return 2 * parties; }
  static std::size_t bytes(std::uint32_t parties) {
    return sizeof(barrier_state) + slots_for(parties) * sizeof(barrier_slot);
  }
  static bool fits(std::size_t n) {
    return n >= sizeof(barrier_state) && (n - sizeof(barrier_state)) % sizeof(barrier_slot) == 0;
  }
  explicit barrier_state(std::uint32_t n) : parties(n), nslots(slots_for(n)) {
    for (std::uint32_t i = 0; i < nslots; ++i) new (slots() + i) barrier_slot{};
  }

  robust_mutex guard;
  std::uint32_t guard_deaths = 0;  // the guard's owner_deaths() when last taken
  const std::uint32_t parties;
  const std::uint32_t nslots;
  std::uint32_t generation = 0;
  std::uint32_t arrived = 0;  // waiting parties of this generation
  bool broken = false;

  barrier_slot* slots() noexcept { return std::launder(reinterpret_cast<barrier_slot*>(this + 1)); }

  /// The guard, held for a scope. A process that died holding it may have left the state
  /// half updated: the barrier breaks.
  struct locked {
    explicit locked(barrier_state& b) : s(b) {
      s.guard.lock();
      if (s.guard.owner_deaths() != s.guard_deaths) {
        s.guard_deaths = s.guard.owner_deaths();
        s.break_generation();
      }
    }
    ~locked() { s.guard.unlock(); }
    locked(const locked&) = delete;
    locked& operator=(const locked&) = delete;
    barrier_state& s;
  };

  /// Under the guard: ends this generation, telling its waiters `outcome`.
  void finish(std::uint32_t outcome) noexcept {
    for (std::uint32_t i = 0; i < nslots; ++i) {
      barrier_slot& sl = slots()[i];
      if (sl.status.load(std::memory_order_relaxed) == barrier_slot::waiting &&
          sl.generation == generation) {
        sl.status.store(outcome, std::memory_order_release);
        futex_wake_all(&sl.status);
      }
    }
    ++generation;
    arrived = 0;
  }
  void break_generation() noexcept {
    broken = true;
    finish(barrier_slot::broke);
  }
  /// Under the guard: a waiting party of this generation has died.
  bool party_died(std::uint32_t mine) {
    for (std::uint32_t i = 0; i < nslots; ++i) {
      barrier_slot& sl = slots()[i];
      if (i == mine || sl.status.load(std::memory_order_relaxed) != barrier_slot::waiting ||
          sl.generation != generation)
        continue;
      if (sl.held.try_lock()) {  // its holder is gone: the kernel released it
        sl.held.unlock();
        return true;
      }
    }
    return false;
  }

  /// Arrives and waits for the generation to pass; returns the arrival index.
  std::uint32_t wait(clock::time_point deadline) {
    if (parties == 0) throw usage_error("coray: a default-constructed ray::barrier has no parties");
    std::uint32_t mine = no_slot, index = 0;
    bool last = false;
    auto arrive = [&] {
      locked g(*this);
      if (broken) throw broken_barrier("coray: the ray::barrier is broken");
      if (arrived + 1 == parties) {
        if (party_died(no_slot)) {  // no round passes with a dead party
          break_generation();
          throw broken_barrier("coray: a ray::barrier party died while it waited");
        }
        index = arrived;
        last = true;
        finish(barrier_slot::passed);
        return true;
      }
      for (std::uint32_t i = 0; i < nslots && mine == no_slot; ++i) {
        barrier_slot& sl = slots()[i];
        if (sl.status.load(std::memory_order_relaxed) != barrier_slot::waiting &&
            sl.held.try_lock())
          mine = i;
      }
      if (mine == no_slot) return false;  // the last generation's waiters have not all gone
      barrier_slot& sl = slots()[mine];
      sl.generation = generation;
      sl.status.store(barrier_slot::waiting, std::memory_order_relaxed);
      index = arrived++;
      return true;
    };
    auto pause = [](clock::time_point until) {
      std::this_thread::sleep_until(until);
      return false;
    };
    if (!wait_serving(arrive, pause, deadline, true)) {
      locked g(*this);
      break_generation();
      throw broken_barrier("coray: a ray::barrier wait timed out, which breaks the barrier");
    }
    if (last) return index;

    barrier_slot& sl = slots()[mine];
    auto gone = [&] { return sl.status.load(std::memory_order_acquire) != barrier_slot::waiting; };
    auto sleep = [&](clock::time_point until) {
      futex_wait_until(sl.status, barrier_slot::waiting, until);
      if (gone()) return true;
      locked g(*this);
      if (!gone() && party_died(mine)) break_generation();
      return gone();
    };
    bool timed_out = false;
    try {
      if (!wait_serving(gone, sleep, deadline, true)) {
        locked g(*this);
        timed_out = !gone();
        if (timed_out) break_generation();  // as Python's: a timeout breaks the barrier
      }
    } catch (...) {
      {
        locked g(*this);
        if (!gone()) break_generation();
      }
      sl.held.unlock();
      throw;
    }
    const std::uint32_t outcome = sl.status.load(std::memory_order_acquire);
    sl.held.unlock();
    if (timed_out)
      throw broken_barrier("coray: a ray::barrier wait timed out, which breaks the barrier");
    if (outcome != barrier_slot::passed)
      throw broken_barrier("coray: the ray::barrier broke while this party waited");
    return index;
  }
};

}  // namespace detail
CORAY_END_NAMESPACE
