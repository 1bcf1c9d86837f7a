// The mailbox ring and the doorbell, exercised by real processes over shared memory.
#include <doctest/doctest.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <coray/detail/shm/mailbox.hpp>
#include <cstring>
#include <vector>

namespace {

using ray::detail::doorbell;
using ray::detail::mailbox;

struct shared_area {
  explicit shared_area(std::size_t bytes) : size(bytes) {
    mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    REQUIRE(mem != MAP_FAILED);
  }
  ~shared_area() { munmap(mem, size); }
  void* mem;
  std::size_t size;
};

struct record {
  std::uint32_t producer;
  std::uint32_t seq;
};

}  // namespace

TEST_CASE("a full mailbox refuses a claim and takes it again once the consumer pops") {
  shared_area area(mailbox::bytes_for(4));
  mailbox* mb = mailbox::create(area.mem, 4);
  for (int i = 0; i < 4; ++i) {
    auto c = mb->try_claim();
    REQUIRE(c);
    mb->commit(c);
  }
  CHECK_FALSE(mb->try_claim());
  REQUIRE(mb->peek() != nullptr);
  mb->pop();
  CHECK(static_cast<bool>(mb->try_claim()));
}

TEST_CASE("a producer sees room exactly where a claim of that many slots would succeed") {
  shared_area area(mailbox::bytes_for(4));
  mailbox* mb = mailbox::create(area.mem, 4);
  CHECK(mb->has_room(4));
  auto c = mb->try_claim(3);
  REQUIRE(c);
  mb->commit(c);
  CHECK(mb->has_room(1));
  CHECK_FALSE(mb->has_room(2));
  CHECK_FALSE(mb->try_claim(2));
  REQUIRE(mb->peek() != nullptr);
  mb->pop(3);  // the consumer frees the message: all of it is room again
  CHECK(mb->has_room(4));
  CHECK(static_cast<bool>(mb->try_claim(2)));
}

TEST_CASE("messages from many producer processes all arrive, each producer's in its order") {
  constexpr int producers = 4;
  constexpr std::uint32_t per_producer = 50'000;
  shared_area area(mailbox::bytes_for(256));
  mailbox* mb = mailbox::create(area.mem, 256);  // small, so producers often find it full

  std::vector<pid_t> pids;
  for (int p = 0; p < producers; ++p) {
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      for (std::uint32_t i = 0; i < per_producer; ++i) {
        mailbox::claim c;
        while (!(c = mb->try_claim())) ray::detail::cpu_relax();
        record r{static_cast<std::uint32_t>(p), i};
        std::memcpy(c.slot->payload, &r, sizeof r);
        c.slot->size = sizeof r;
        mb->commit(c);
      }
      _exit(0);
    }
    pids.push_back(pid);
  }

  std::vector<std::uint32_t> next(producers, 0);
  std::uint64_t received = 0, out_of_order = 0;
  while (received < producers * std::uint64_t{per_producer}) {
    auto* s = mb->peek();
    if (!s) {
      ray::detail::cpu_relax();
      continue;
    }
    record r;
    std::memcpy(&r, s->payload, sizeof r);
    mb->pop();
    if (r.producer >= producers || r.seq != next[r.producer])
      ++out_of_order;
    else
      ++next[r.producer];
    ++received;
  }
  for (pid_t pid : pids) {
    int st = 0;
    waitpid(pid, &st, 0);
    CHECK(WIFEXITED(st));
  }
  CHECK(out_of_order == 0);
  for (int p = 0; p < producers; ++p) CHECK(next[static_cast<std::size_t>(p)] == per_producer);
  CHECK(mb->peek() == nullptr);
}

TEST_CASE(
    "a sleeping receiver is woken by a sender's ring, and a ring before the sleep is not lost") {
  shared_area area(sizeof(doorbell) + sizeof(std::atomic<int>));
  auto* bell = new (area.mem) doorbell{};
  auto* flag = new (static_cast<char*>(area.mem) + sizeof(doorbell)) std::atomic<int>{0};

  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // Wait until the parent announced sleep, then publish and ring.
    while (bell->sleeping.load() == 0) ray::detail::cpu_relax();
    flag->store(1);
    bell->ring();
    _exit(0);
  }
  auto t0 = std::chrono::steady_clock::now();
  while (flag->load() == 0)
    bell->sleep([&] { return flag->load() != 0; }, std::chrono::seconds(10));
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10));  // woken, not timed out
  int st;
  waitpid(pid, &st, 0);

  // Work published before the sleep: sleep() must return without waiting.
  flag->store(2);
  t0 = std::chrono::steady_clock::now();
  bell->sleep([&] { return flag->load() == 2; }, std::chrono::seconds(10));
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));
}
