// The program the browser test (test_dashboard_browser.py) drives the dashboard of: two named
// actors, a few tasks, an object in the store and one inline, and workers that print. It
// prints the dashboard's URL, then "tour: ready", and serves the runtime while it reads
// commands on stdin, one a line:
//   say <word>   a task prints "tour says <word>" (the logs view must show it live)
//   check        calls the actor "tally" and prints "tour: tally died: actor_died" when the
//                call fails so (the kill button was pressed), "tour: tally alive: <n>" else
//   quit (or the end of stdin)   ends; the exit status is 0 when the last check saw actor_died
#include <coray/coray.hpp>
#include <coray/dashboard.hpp>
#include <cstdio>
#include <deque>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace tour {

int square(int x) { return x * x; }
int say(std::string word) {
  std::printf("tour says %s\n", word.c_str());
  std::fflush(stdout);
  return static_cast<int>(word.size());
}

struct counter {
  int n = 0;
  int incr() { return ++n; }
};
struct greeter {
  std::string hello(std::string who) { return "hello " + who; }
};

/// Lines of stdin, read on a thread of their own while the runtime's thread serves the loop.
/// The thread ends after "quit" (or the end of stdin, which reads as "quit"): the program
/// ends only after taking it, so joining never waits.
class commands {
 public:
  commands()
      : reader_([this] {
          std::string line;
          while (std::getline(std::cin, line) && line != "quit") push(line);
          push("quit");
        }) {}
  ~commands() { reader_.join(); }
  commands(const commands&) = delete;
  commands& operator=(const commands&) = delete;
  bool ready() {
    std::lock_guard lock(mu_);
    return !lines_.empty();
  }
  std::string pop() {
    std::lock_guard lock(mu_);
    std::string line = lines_.front();
    lines_.pop_front();
    return line;
  }

 private:
  void push(std::string line) {
    std::lock_guard lock(mu_);
    lines_.push_back(std::move(line));
  }
  std::mutex mu_;
  std::deque<std::string> lines_;
  std::thread reader_;
};

}  // namespace tour

int main(int argc, char** argv) {
  ray::runtime rt(
      argc, argv,
      {.num_workers = 2, .record_timeline = true, .include_dashboard = true, .dashboard_port = 0});
  auto tally = ray::spawn<tour::counter>(ray::actor_options{.name = "tally"});
  auto greeter = ray::spawn<tour::greeter>(ray::actor_options{.name = "greeter"});
  int n = 0;
  for (int i = 0; i < 3; ++i) n = ray::get(tally.call<&tour::counter::incr>());
  const std::string greeting =
      ray::get(greeter.call<&tour::greeter::hello>(std::string("browser")));
  std::vector<ray::object_ref<int>> squares;
  for (int i = 0; i < 5; ++i) squares.push_back(ray::task<tour::square>.remote(i));
  const std::vector<int> got = ray::get(squares);
  (void)ray::get(ray::task<tour::say>.remote(std::string("hello")));
  auto big = ray::put(std::vector<double>(1 << 18, 2.0));  // 2 MiB: in the store
  auto small = ray::put(42);
  if (n != 3 || greeting != "hello browser" || got != std::vector<int>{0, 1, 4, 9, 16}) {
    std::printf("tour: the program's own calls went wrong\n");
    return 1;
  }
  std::printf("tour: url %s\n", rt.dashboard_url().c_str());
  std::printf("tour: ready\n");
  std::fflush(stdout);

  tour::commands in;
  bool died = false;
  for (;;) {
    rt.serve_until([&] { return in.ready(); });
    const std::string line = in.pop();
    if (line == "quit") break;
    if (line.rfind("say ", 0) == 0) {
      (void)ray::get(ray::task<tour::say>.remote(line.substr(4)));
    } else if (line == "check") {
      try {
        const int now = ray::get(tally.call<&tour::counter::incr>());
        std::printf("tour: tally alive: %d\n", now);
        died = false;
      } catch (const ray::actor_died&) {
        std::printf("tour: tally died: actor_died\n");
        died = true;
      }
    } else {
      std::printf("tour: unknown command: %s\n", line.c_str());
    }
    std::fflush(stdout);
  }
  (void)big;
  (void)small;
  return died ? 0 : 1;
}
