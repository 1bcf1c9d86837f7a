// ray::pipe: two connected ends that any two processes of the runtime send values through,
// duplex or one-way; a waiter whose other end's process died ends with ray::peer_died.
#include <doctest/doctest.h>

#include <chrono>
#include <coray/coray.hpp>
#include <cstddef>
#include <string>
#include <thread>
#include <vector>

#include "serve_until.hpp"

using namespace std::chrono_literals;

namespace {

/// Replies to each value with twice it, `n` times.
int echo_twice(ray::connection<int> c, int n) {
  for (int i = 0; i < n; ++i) c.send(2 * c.recv());
  return n;
}

std::size_t send_big(ray::connection<std::vector<int>> c, int n) {
  std::vector<int> xs(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) xs[static_cast<std::size_t>(i)] = i;
  c.send(xs);
  return xs.size();
}

struct peer {
  /// Uses the end without sending, which makes this process its owner.
  bool own(ray::connection<int> c) { return c.poll(); }
  void send_values(ray::connection<int> c, std::vector<int> xs) {
    for (int x : xs) c.send(x);
  }
  int receive(ray::connection<int> c, ray::shared_value<int> waiting) {
    waiting.fetch_add(1);
    return c.recv();
  }
  void send_one(ray::connection<int> c, int x, ray::shared_value<int> waiting) {
    waiting.fetch_add(1);
    c.send(x);
  }
  int relay(ray::connection<int> from, ray::connection<int> to, int n) {
    for (int i = 0; i < n; ++i) to.send(from.recv() + 1);
    return n;
  }
  long sum_big(ray::connection<std::vector<long>> c) {
    long sum = 0;
    for (long x : c.recv()) sum += x;
    return sum;
  }
};

}  // namespace

TEST_CASE("values sent on one end of a pipe arrive at the other, in order, both ways") {
  ray::runtime rt({.num_workers = 1});
  auto [here, there] = ray::pipe<int>();
  CHECK(here.readable());
  CHECK(here.writable());
  auto done = ray::task<echo_twice>.remote(there, 100);
  for (int i = 0; i < 100; ++i) {
    here.send(i);
    REQUIRE(here.recv() == 2 * i);
  }
  CHECK(ray::get(done).get() == 100);

  for (int i = 0; i < 50; ++i) here.send(i);  // queued, then read in order, in one process
  for (int i = 0; i < 50; ++i) REQUIRE(there.recv() == i);
  auto [a, b] = ray::pipe<std::string>();
  a.send("");
  a.send(std::string(300, 'x'));  // wraps around the end of a small buffer
  CHECK(b.recv().empty());
  CHECK(b.recv() == std::string(300, 'x'));
}

TEST_CASE("two actors talk through pipes handed to both, the driver at the ends") {
  ray::runtime rt({.num_workers = 1});
  auto [in_r, in_w] = ray::pipe<int>(false);
  auto [out_r, out_w] = ray::pipe<int>(false);
  auto x = ray::spawn<peer>();
  auto y = ray::spawn<peer>();
  auto [mid_a, mid_b] = ray::pipe<int>();
  auto rx = x.call<&peer::relay>(in_r, mid_a, 200);
  auto ry = y.call<&peer::relay>(mid_b, out_w, 200);
  for (int i = 0; i < 200; ++i) in_w.send(i);
  for (int i = 0; i < 200; ++i) REQUIRE(out_r.recv() == i + 2);
  CHECK(ray::get(rx).get() == 200);
  CHECK(ray::get(ry).get() == 200);
}

TEST_CASE("an end works from a thread of the driver other than the runtime's own") {
  ray::runtime rt({.num_workers = 1});
  auto [a, b] = ray::pipe<int>();
  auto done = ray::task<echo_twice>.remote(b, 20);
  int sum = 0;
  std::thread t([&, a = a] {  // its own handle, made and dropped on this thread
    auto end = a;
    for (int i = 0; i < 20; ++i) {
      end.send(i);
      sum += end.recv();
    }
  });
  CHECK(ray::get(done).get() == 20);  // the runtime's thread serves meanwhile
  t.join();
  CHECK(sum == 2 * 190);
}

TEST_CASE("a one-way pipe's first end only receives and its second only sends") {
  ray::runtime rt({.num_workers = 1});
  auto [r, w] = ray::pipe<int>(false);
  CHECK(r.readable());
  CHECK_FALSE(r.writable());
  CHECK(w.writable());
  CHECK_FALSE(w.readable());
  w.send(5);
  CHECK(r.recv() == 5);
  CHECK_THROWS_AS(r.send(1), ray::usage_error);
  CHECK_THROWS_AS(w.recv(), ray::usage_error);
  CHECK_THROWS_AS(w.poll(), ray::usage_error);
  ray::connection<int> empty;
  CHECK_FALSE(empty);
  CHECK_THROWS_AS(empty.send(1), ray::usage_error);
}

TEST_CASE("poll says whether a recv would wait, now or within a timeout") {
  ray::runtime rt({.num_workers = 1});
  auto [a, b] = ray::pipe<int>();
  CHECK_FALSE(a.poll());
  CHECK_FALSE(a.poll(2ms));
  auto p = ray::spawn<peer>();
  auto sent = p.call<&peer::send_values>(b, std::vector<int>{9});
  CHECK(a.poll(30s));  // the actor's send ends the wait
  CHECK(a.poll());
  CHECK(a.recv() == 9);
  CHECK_FALSE(a.poll());
  ray::get(sent).get();
}

TEST_CASE("a value longer than the pipe's buffer streams through it, either way") {
  ray::runtime rt({.num_workers = 1});
  auto [a, b] = ray::pipe<std::vector<int>>(true, 256);
  auto n = ray::task<send_big>.remote(b, 100'000);  // 400 KB through 256 bytes
  std::vector<int> got = a.recv();
  CHECK(ray::get(n).get() == 100'000);
  REQUIRE(got.size() == 100'000);
  bool in_order = true;
  for (std::size_t i = 0; i < got.size(); ++i) in_order &= got[i] == static_cast<int>(i);
  CHECK(in_order);

  auto [c, d] = ray::pipe<std::vector<long>>(true, 1024);
  auto p = ray::spawn<peer>();
  auto sum = p.call<&peer::sum_big>(d);
  std::vector<long> xs(50'000, 3);
  c.send(xs);  // returns once the actor has taken all but the last buffer-full
  CHECK(ray::get(sum).get() == 150'000);
}

TEST_CASE("a recv waiting on a pipe whose other end's owner is SIGKILLed ends with peer_died") {
  ray::runtime rt({.num_workers = 1});
  auto [a, b] = ray::pipe<int>();
  auto doomed = ray::spawn<peer>();
  auto survivor = ray::spawn<peer>();
  ray::shared_value<int> waiting(0);
  CHECK_FALSE(ray::get(doomed.call<&peer::own>(b)).get());  // the doomed process owns b now
  auto lost = survivor.call<&peer::receive>(a, waiting);
  CHECK(serve_until([&] { return waiting.load() == 1; }, 10s));
  ray::kill(doomed);
  CHECK_THROWS_AS(ray::get(lost).get(), ray::peer_died);  // the waiter saw it die

  // What the dead process sent before it died is received first.
  auto [c, d] = ray::pipe<int>();
  auto doomed2 = ray::spawn<peer>();
  ray::get(doomed2.call<&peer::send_values>(d, std::vector<int>{1, 2})).get();
  ray::kill(doomed2);
  CHECK(c.recv() == 1);
  CHECK(c.recv() == 2);
  CHECK(c.poll(30s));  // once the death is seen, a recv would not wait: it throws
  CHECK_THROWS_WITH_AS(c.recv(), doctest::Contains("gone"), ray::peer_died);

  // Another process taking up the end makes the pipe work again.
  auto heir = ray::spawn<peer>();
  ray::get(heir.call<&peer::send_values>(d, std::vector<int>{3})).get();
  CHECK(c.recv() == 3);
}

TEST_CASE("a send waiting for room ends with peer_died when the receiver's owner is SIGKILLed") {
  ray::runtime rt({.num_workers = 1});
  auto [a, b] = ray::pipe<int>(true, 64);  // two values fill it
  auto doomed = ray::spawn<peer>();
  auto sender = ray::spawn<peer>();
  ray::shared_value<int> waiting(0);
  ray::get(doomed.call<&peer::own>(b)).get();
  a.send(1);
  a.send(2);
  auto blocked = sender.call<&peer::send_one>(a, 3, waiting);
  CHECK(serve_until([&] { return waiting.load() == 1; }, 10s));
  ray::kill(doomed);
  CHECK_THROWS_AS(ray::get(blocked).get(), ray::peer_died);
}

TEST_CASE("close() ends the other end's waits with peer_died") {
  ray::runtime rt({.num_workers = 1});
  auto [a, b] = ray::pipe<int>();
  auto p = ray::spawn<peer>();
  ray::shared_value<int> waiting(0);
  auto lost = p.call<&peer::receive>(a, waiting);
  CHECK(serve_until([&] { return waiting.load() == 1; }, 10s));
  b.close();
  CHECK_FALSE(b);
  CHECK_THROWS_AS(b.send(1), ray::usage_error);
  CHECK_THROWS_AS(ray::get(lost).get(), ray::peer_died);
}

TEST_CASE("a pipe's memory returns to the object store once its last end goes") {
  ray::runtime rt({.num_workers = 1});
  const std::size_t before = rt.object_store_free_bytes();
  {
    auto [a, b] = ray::pipe<int>();
    auto n = ray::task<echo_twice>.remote(b, 1);
    a.send(21);
    CHECK(a.recv() == 42);
    ray::get(n).get();
    CHECK(rt.object_store_free_bytes() < before);
  }
  CHECK(serve_until([&] { return rt.object_store_free_bytes() == before; }, 5s));
}
