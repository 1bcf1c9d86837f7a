// ray::progress_bar, get_with_progress and with_progress (issue 14): counts done out of a
// total with its rate and time left, drawn on a terminal and silent anywhere else.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <coray/coray.hpp>
#include <cstdio>
#include <string>
#include <vector>

namespace {

int squared(int x) { return x * x; }

std::vector<int> iota(int n) {
  std::vector<int> xs;
  for (int i = 0; i < n; ++i) xs.push_back(i);
  return xs;
}

/// A pseudo-terminal: `terminal` is a descriptor that isatty; what is drawn on it is read
/// back from the other end.
struct pseudo_terminal {
  pseudo_terminal() {
    master = posix_openpt(O_RDWR | O_NOCTTY);
    REQUIRE(master >= 0);
    REQUIRE(grantpt(master) == 0);
    REQUIRE(unlockpt(master) == 0);
    terminal = open(ptsname(master), O_RDWR | O_NOCTTY);
    REQUIRE(terminal >= 0);
  }
  ~pseudo_terminal() {
    close(terminal);
    close(master);
  }
  std::string drawn() const {
    fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
    std::string s;
    char buf[4096];
    ssize_t n;
    while ((n = read(master, buf, sizeof buf)) > 0) s.append(buf, static_cast<std::size_t>(n));
    return s;
  }
  int master = -1, terminal = -1;
};

}  // namespace

TEST_CASE("a progress bar counts done out of total, never past it, with rate and time left") {
  std::FILE* file = std::tmpfile();
  ray::progress_bar bar(100, {.description = "steps", .fd = fileno(file)});
  CHECK(bar.done() == 0);
  CHECK(bar.total() == 100);
  bar.update(40);
  bar.update(2);
  CHECK(bar.done() == 42);
  // 42 in 3.5 s: 12 a second, 58 left take 4.8 s.
  CHECK(bar.line(std::chrono::milliseconds(3500)) ==
        "steps:  42%|########            | 42/100 [00:04<00:05, 12.00 it/s]");
  CHECK(bar.line(std::chrono::seconds(0)) ==
        "steps:  42%|########            | 42/100 [00:00<?, 0.00 it/s]");
  bar.update(1000);
  CHECK(bar.done() == 100);
  CHECK(bar.line(std::chrono::hours(2)) ==
        "steps: 100%|####################| 100/100 [2:00:00<00:00, 0.01 it/s]");
  std::fclose(file);
}

TEST_CASE("a progress bar writes nothing where its output is not a terminal") {
  std::FILE* file = std::tmpfile();
  {
    ray::progress_bar bar(10, {.fd = fileno(file)});
    CHECK_FALSE(bar.shown());
    for (int i = 0; i < 10; ++i) bar.update();
  }
  std::fseek(file, 0, SEEK_END);
  CHECK(std::ftell(file) == 0);
  std::fclose(file);
}

TEST_CASE("on a terminal the bar is drawn on one line and ends it when done") {
  pseudo_terminal pty;
  {
    ray::progress_bar bar(4, {.description = "work", .fd = pty.terminal});
    CHECK(bar.shown());
    for (int i = 0; i < 4; ++i) bar.update();
  }
  const std::string drawn = pty.drawn();
  CHECK(drawn.starts_with("\rwork:   0%|"));
  CHECK(drawn.find("\rwork: 100%|####################| 4/4 [") != std::string::npos);
  CHECK(drawn.ends_with("\n"));
  CHECK(drawn.find('\n') == drawn.size() - 1);  // one line, ended once
}

TEST_CASE("get_with_progress returns the values in order, drawing where it is a terminal") {
  ray::runtime rt({.num_workers = 2});
  pseudo_terminal pty;
  std::vector<ray::object_ref<int>> refs;
  for (int x : iota(20)) refs.push_back(ray::task<squared>.remote(x));
  const std::vector<int> got = ray::get_with_progress(refs, {.fd = pty.terminal});
  for (int i = 0; i < 20; ++i) CHECK(got[static_cast<std::size_t>(i)] == i * i);
  CHECK(pty.drawn().find(" 20/20 [") != std::string::npos);
}

TEST_CASE("get_with_progress on stderr that is not a terminal is silent and still gets") {
  ray::runtime rt({.num_workers = 2});
  std::FILE* file = std::tmpfile();
  std::vector<ray::object_ref<int>> refs;
  for (int x : iota(10)) refs.push_back(ray::task<squared>.remote(x));
  const std::vector<int> got = ray::get_with_progress(refs, {.fd = fileno(file)});
  CHECK(got.size() == 10);
  CHECK(got.back() == 81);
  std::fseek(file, 0, SEEK_END);
  CHECK(std::ftell(file) == 0);
  std::fclose(file);
}

TEST_CASE("with_progress over a pool's imap yields every result in order and counts them") {
  ray::runtime rt({.num_workers = 1});
  ray::pool p(2);
  pseudo_terminal pty;
  const auto xs = iota(30);
  auto stream = ray::with_progress(p.imap<squared>(xs, 4), xs.size(), {.fd = pty.terminal});
  std::vector<int> got;
  for (int y : stream) got.push_back(y);
  REQUIRE(got.size() == 30);
  CHECK(got[7] == 49);
  CHECK(stream.bar().done() == 30);
  CHECK(pty.drawn().find(" 30/30 [") != std::string::npos);
}
