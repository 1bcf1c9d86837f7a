// This machine's own limits, measured in the same run as coray's figures, with no coray
// runtime: what any two processes pay to talk, and how fast memory copies.
//   cache_line_round_trip   two processes (fork) ping-pong one std::atomic<uint64_t> in a
//                           MAP_SHARED|MAP_ANONYMOUS page, each spinning until the value is
//                           the one it expects, then writing the next; ns per round trip,
//                           the median of the means of batches of 1,000 round trips
//   mailbox_round_trip      the same ping-pong through two of coray's mailboxes (the rings of
//                           its transport, detail::mailbox) in shared memory: a 16-byte
//                           message down one and back up the other, each side spinning on
//                           its ring; what one call and its reply cost in transport alone.
//                           ns per round trip, median of batch means as above
//   futex_wake_round_trip   the same ping-pong with no spinning: each side sleeps in
//                           FUTEX_WAIT on a shared 32-bit word and is woken by the other's
//                           FUTEX_WAKE; median round trip in us
//   pipe_round_trip         8 bytes down one pipe and back up another between the two
//                           processes (what a multiprocessing-style peer pays per message);
//                           median round trip in us
//   memcpy_bandwidth        memcpy of 800 MB into memory already touched; median, GB/s
// The two processes are pinned to two different CPUs (the first two this process may use),
// so that a spinning pair runs on two cores at once.
//
// Usage: machine_limits [--quick] [--json FILE]
#include <linux/futex.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <coray/coray.hpp>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_common.hpp"

namespace {

using bench::clk;
using bench::seconds_since;

/// Longest any one measurement may take before the child is presumed lost.
constexpr double give_up_seconds = 120;

[[noreturn]] void fail(const std::string& what) {
  throw std::runtime_error(what + ": " + std::strerror(errno));
}

std::vector<int> usable_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &set)) cpus.push_back(c);
  return cpus;
}

void pin_to(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) fail("sched_setaffinity");
}

/// Memory (one page unless told) shared by this process and the children it forks.
class shared_page {
 public:
  explicit shared_page(std::size_t bytes = 4096) : bytes_(bytes) {
    p_ = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p_ == MAP_FAILED) fail("mmap");
  }
  shared_page(const shared_page&) = delete;
  shared_page& operator=(const shared_page&) = delete;
  ~shared_page() { ::munmap(p_, bytes_); }
  template <class T>
  T* as() const {
    return static_cast<T*>(p_);
  }

 private:
  std::size_t bytes_;
  void* p_;
};

/// Forks a child that runs `child` pinned to the second usable CPU and exits; runs `parent`
/// here pinned to the first; waits for the child and returns parent's result. The child
/// dies with this process.
template <class Child, class Parent>
auto ping_pong(const std::vector<int>& cpus, Child&& child, Parent&& parent) {
  cpu_set_t saved;
  CPU_ZERO(&saved);
  sched_getaffinity(0, sizeof saved, &saved);
  const pid_t me = ::getpid();
  std::fflush(stdout);
  const pid_t pid = ::fork();
  if (pid < 0) fail("fork");
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != me) ::_exit(1);
    try {
      if (cpus.size() >= 2) pin_to(cpus[1]);
      child(pid);
    } catch (...) {
      ::_exit(1);
    }
    ::_exit(0);
  }
  struct reap {
    pid_t pid;
    cpu_set_t saved;
    ~reap() {
      int status = 0;
      if (::waitpid(pid, &status, WNOHANG) == 0) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
      }
      sched_setaffinity(0, sizeof saved, &saved);
    }
  } r{pid, saved};
  if (cpus.size() >= 2) pin_to(cpus[0]);
  auto result = parent(pid);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return result;
}

void check_alive(pid_t child, clk::time_point start) {
  int status = 0;
  if (child > 0 && ::waitpid(child, &status, WNOHANG) == child)
    throw std::runtime_error("the ping-pong child died");
  if (seconds_since(start) > give_up_seconds) throw std::runtime_error("a ping-pong took too long");
}

/// Round trips are timed in batches of this many; a measurement's figure is the median of
/// the batches' means.
constexpr long batch = 1000;

/// Runs `round_trip` `warmup` times untimed, then `round_trips` times in batches; returns
/// the median of the batches' mean round trips, in ns.
template <class RoundTrip>
double batch_means_ns(long warmup, long round_trips, RoundTrip&& round_trip) {
  for (long i = 0; i < warmup; ++i) round_trip();
  std::vector<double> means;
  for (long b = 0; b < round_trips / batch; ++b) {
    auto t0 = clk::now();
    for (long i = 0; i < batch; ++i) round_trip();
    means.push_back(seconds_since(t0) / batch * 1e9);
  }
  return bench::median(means);
}

// ---- cache line ----------------------------------------------------------------------------

double cache_line_round_trip_ns(const std::vector<int>& cpus, long round_trips) {
  shared_page page;
  auto* a = page.as<std::atomic<std::uint64_t>>();
  new (a) std::atomic<std::uint64_t>(0);
  const long warmup = 10 * batch;
  const long total = warmup + round_trips;
  // Each side spins on the value it waits for; every 2^16 spins the parent checks that the
  // child is still there, the child that the parent is.
  auto child = [&](pid_t) {
    const pid_t parent = ::getppid();
    for (long k = 0; k < total; ++k) {
      const auto want = static_cast<std::uint64_t>(2 * k + 1);
      for (std::uint32_t spins = 0; a->load(std::memory_order_acquire) != want;)
        if ((++spins & 0xffffff) == 0 && ::getppid() != parent) ::_exit(1);
      a->store(want + 1, std::memory_order_release);
    }
  };
  auto parent = [&](pid_t pid) {
    const auto start = clk::now();
    long k = 0;
    return batch_means_ns(warmup, round_trips, [&] {
      const auto sent = static_cast<std::uint64_t>(2 * k++ + 1);
      a->store(sent, std::memory_order_release);
      for (std::uint32_t spins = 0; a->load(std::memory_order_acquire) != sent + 1;)
        if ((++spins & 0xffff) == 0) check_alive(pid, start);
    });
  };
  return ping_pong(cpus, child, parent);
}

// ---- mailbox -------------------------------------------------------------------------------

double mailbox_round_trip_ns(const std::vector<int>& cpus, long round_trips) {
  using ray::detail::mailbox;
  constexpr std::size_t slots = 1024;  // a runtime mailbox's size
  shared_page area(2 * mailbox::bytes_for(slots));
  mailbox* down = mailbox::create(area.as<std::byte>(), slots);
  mailbox* up = mailbox::create(area.as<std::byte>() + mailbox::bytes_for(slots), slots);
  const long warmup = 10 * batch;
  const long total = warmup + round_trips;
  struct message {
    std::uint64_t id, value;
  };
  auto send = [](mailbox* mb, const message& m) {
    mailbox::claim c;
    while (!(c = mb->try_claim())) ray::detail::cpu_relax();
    mb->write(c, reinterpret_cast<const std::byte*>(&m), sizeof m);
    c.slot->kind = 1;
    c.slot->size = sizeof m;
    mb->commit(c);
  };
  // Returns the next message, spinning for it; `alive` is asked every 2^16 empty looks.
  auto receive = [](mailbox* mb, auto&& alive) {
    ray::detail::mailbox_slot* s = nullptr;
    for (std::uint32_t spins = 0; (s = mb->peek()) == nullptr;)
      if ((++spins & 0xffff) == 0) alive();
    message m;
    mb->read(reinterpret_cast<std::byte*>(&m), s->size);
    mb->pop();
    return m;
  };
  auto child = [&](pid_t) {
    const pid_t parent = ::getppid();
    for (long k = 0; k < total; ++k) {
      message m = receive(down, [&] {
        if (::getppid() != parent) ::_exit(1);
      });
      ++m.value;
      send(up, m);
    }
  };
  auto parent = [&](pid_t pid) {
    const auto start = clk::now();
    std::uint64_t k = 0;
    return batch_means_ns(warmup, round_trips, [&] {
      send(down, {k, k});
      const message m = receive(up, [&] { check_alive(pid, start); });
      if (m.value != ++k) throw std::runtime_error("a reply was lost");
    });
  };
  return ping_pong(cpus, child, parent);
}

// ---- futex ---------------------------------------------------------------------------------

long futex(std::uint32_t* word, int op, std::uint32_t value, const timespec* timeout) {
  return ::syscall(SYS_futex, word, op, value, timeout, nullptr, 0);
}

/// Sleeps in FUTEX_WAIT until *word == want; `on_timeout` runs each second spent waiting.
template <class F>
void futex_wait_for(std::uint32_t* word, std::uint32_t want, F&& on_timeout) {
  std::atomic_ref<std::uint32_t> w(*word);
  const timespec second{1, 0};
  for (std::uint32_t v; (v = w.load(std::memory_order_acquire)) != want;)
    if (futex(word, FUTEX_WAIT, v, &second) != 0 && errno == ETIMEDOUT) on_timeout();
}

void futex_set(std::uint32_t* word, std::uint32_t value) {
  std::atomic_ref<std::uint32_t>(*word).store(value, std::memory_order_release);
  futex(word, FUTEX_WAKE, 1, nullptr);
}

double futex_round_trip_us(const std::vector<int>& cpus, long round_trips) {
  shared_page page;
  auto* word = page.as<std::uint32_t>();
  *word = 0;
  const long warmup = 1000;
  const long total = warmup + round_trips;
  auto child = [&](pid_t) {
    const pid_t parent = ::getppid();
    for (long k = 0; k < total; ++k) {
      futex_wait_for(word, static_cast<std::uint32_t>(2 * k + 1), [&] {
        if (::getppid() != parent) ::_exit(1);
      });
      futex_set(word, static_cast<std::uint32_t>(2 * k + 2));
    }
  };
  auto parent = [&](pid_t pid) {
    const auto start = clk::now();
    std::vector<double> us;
    us.reserve(static_cast<std::size_t>(round_trips));
    for (long k = 0; k < total; ++k) {
      auto t0 = clk::now();
      futex_set(word, static_cast<std::uint32_t>(2 * k + 1));
      futex_wait_for(word, static_cast<std::uint32_t>(2 * k + 2), [&] { check_alive(pid, start); });
      if (k >= warmup) us.push_back(seconds_since(t0) * 1e6);
    }
    return bench::median(us);
  };
  return ping_pong(cpus, child, parent);
}

// ---- pipes ---------------------------------------------------------------------------------

double pipe_round_trip_us(const std::vector<int>& cpus, long round_trips) {
  int down[2], up[2];
  if (::pipe(down) != 0) fail("pipe");
  if (::pipe(up) != 0) fail("pipe");
  const long warmup = 1000;
  const long total = warmup + round_trips;
  auto child = [&](pid_t) {
    ::close(down[1]);
    ::close(up[0]);
    try {
      for (long k = 0; k < total; ++k) {
        std::uint64_t m = 0;
        if (!bench::read_all(down[0], &m, sizeof m)) throw std::runtime_error("pipe closed");
        ++m;
        bench::write_all(up[1], &m, sizeof m);
      }
    } catch (...) {
      ::_exit(1);
    }
  };
  auto parent = [&](pid_t) {
    ::close(down[0]);
    ::close(up[1]);
    std::vector<double> us;
    us.reserve(static_cast<std::size_t>(round_trips));
    for (long k = 0; k < total; ++k) {
      auto t0 = clk::now();
      auto m = static_cast<std::uint64_t>(k);
      bench::write_all(down[1], &m, sizeof m);
      if (!bench::read_all(up[0], &m, sizeof m)) throw std::runtime_error("pipe closed");
      if (m != static_cast<std::uint64_t>(k + 1))
        throw std::runtime_error("pipe ping-pong out of step");
      if (k >= warmup) us.push_back(seconds_since(t0) * 1e6);
    }
    ::close(down[1]);
    ::close(up[0]);
    return bench::median(us);
  };
  return ping_pong(cpus, child, parent);
}

// ---- memcpy --------------------------------------------------------------------------------

double memcpy_gb_per_s(int reps) {
  const std::size_t n = 800'000'000;
  std::unique_ptr<char[]> src(new char[n]), dst(new char[n]);
  std::memset(src.get(), 1, n);
  std::memset(dst.get(), 0, n);
  std::vector<double> gbs;
  for (int i = 0; i < reps; ++i) {
    auto t0 = clk::now();
    std::memcpy(dst.get(), src.get(), n);
    bench::keep(dst);
    gbs.push_back(static_cast<double>(n) / 1e9 / seconds_since(t0));
  }
  return bench::median(gbs);
}

}  // namespace

int main(int argc, char** argv) {
  ray::enter_worker_if_spawned();
  const bench::options o = bench::parse_options(argc, argv);
  const std::vector<int> cpus = usable_cpus();
  const std::string where =
      cpus.size() >= 2 ? "CPUs " + std::to_string(cpus[0]) + " and " + std::to_string(cpus[1])
                       : std::string("one CPU only: both processes share it");

  {
    const long n = o.quick ? 200'000 : 1'000'000;
    bench::report("cache_line_round_trip", cache_line_round_trip_ns(cpus, n), "ns", false,
                  "spinning on a shared atomic; median of " + std::to_string(n / 1000) +
                      " batch means of 1000 round trips; " + where);
  }
  {
    const long n = o.quick ? 200'000 : 1'000'000;
    bench::report("mailbox_round_trip", mailbox_round_trip_ns(cpus, n), "ns", false,
                  "16 bytes each way through two coray mailboxes, spinning; median of " +
                      std::to_string(n / 1000) + " batch means of 1000 round trips; " + where);
  }
  {
    const long n = o.quick ? 20'000 : 100'000;
    bench::report(
        "futex_wake_round_trip", futex_round_trip_us(cpus, n), "us", false,
        "FUTEX_WAIT/FUTEX_WAKE, no spinning; median of " + std::to_string(n) + "; " + where);
  }
  {
    const long n = o.quick ? 20'000 : 100'000;
    bench::report(
        "pipe_round_trip", pipe_round_trip_us(cpus, n), "us", false,
        "8 bytes each way through two pipes; median of " + std::to_string(n) + "; " + where);
  }
  bench::report("memcpy_bandwidth", memcpy_gb_per_s(o.reps), "GB/s", true,
                "memcpy of 800 MB into touched memory; median of " + std::to_string(o.reps));

  bench::write_json(o);
  return 0;
}
