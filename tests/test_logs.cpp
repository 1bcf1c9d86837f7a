// Worker output (issue 14): what workers and actors write to stdout and stderr reaches the
// driver's, whole lines prefixed with the process, identical lines from several processes
// folded as Ray folds them; log_to_driver = false keeps it off; log_directory keeps it in files.
#include <doctest/doctest.h>
#include <unistd.h>

#include <chrono>
#include <coray/coray.hpp>
#include <coray/detail/runtime/log_monitor.hpp>
#include <coray/state.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

/// Sends this process's stdout and stderr to files while it lives; the runtime built inside
/// its life (and so its supervisor) inherits them.
class captured_output {
 public:
  captured_output() {
    std::fflush(nullptr);
    saved_out_ = dup(STDOUT_FILENO);
    saved_err_ = dup(STDERR_FILENO);
    dup2(fileno(out_), STDOUT_FILENO);
    dup2(fileno(err_), STDERR_FILENO);
  }
  captured_output(const captured_output&) = delete;
  captured_output& operator=(const captured_output&) = delete;
  ~captured_output() {
    restore();
    std::fclose(out_);
    std::fclose(err_);
  }
  /// Puts stdout and stderr back and returns what was written meanwhile.
  void restore() {
    if (saved_out_ < 0) return;
    std::fflush(nullptr);
    dup2(saved_out_, STDOUT_FILENO);
    dup2(saved_err_, STDERR_FILENO);
    close(saved_out_);
    close(saved_err_);
    saved_out_ = saved_err_ = -1;
    out = read_all(out_);
    err = read_all(err_);
  }
  std::string out, err;

 private:
  static std::string read_all(std::FILE* f) {
    std::rewind(f);
    std::string s;
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
    return s;
  }
  std::FILE* out_ = std::tmpfile();
  std::FILE* err_ = std::tmpfile();
  int saved_out_ = -1, saved_err_ = -1;
};

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}
std::size_t count_of(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
  return n;
}

int say_hello(int i) {
  std::printf("hello %d\n", i);
  return getpid();
}
int complain() {
  std::fprintf(stderr, "something went wrong\n");
  return getpid();
}
int print_in_pieces(int i) {
  for (int k = 0; k < 20; ++k) {
    std::printf("piece-%d-a ", i);
    std::fflush(stdout);
    std::printf("piece-%d-b\n", i);
  }
  return getpid();
}
int leave_unfinished() {
  const char text[] = "an unfinished line";
  (void)!write(STDOUT_FILENO, text, sizeof text - 1);
  std::_Exit(9);
}
// Prints once per process: each worker says the same line once.
int greet_once() {
  static bool said = false;
  if (!said) std::printf("the same line from every worker\n");
  said = true;
  return getpid();
}

void process_target(int n) { std::printf("target got %d\n", n); }

struct chatty_counter {
  int n = 0;
  chatty_counter() { std::printf("counter built\n"); }
  int incr() {
    std::printf("counter at %d\n", ++n);
    return getpid();
  }
};

}  // namespace

TEST_CASE("a task's stdout lines reach the driver prefixed with the function and its pid") {
  captured_output cap;
  int pid = 0;
  {
    ray::runtime rt({.num_workers = 2});
    pid = ray::get(ray::task<say_hello>.remote(7));
  }
  cap.restore();
  CHECK(cap.out.find("(say_hello pid=" + std::to_string(pid) + ") hello 7\n") != std::string::npos);
}

TEST_CASE("a task's stderr lines reach the driver's stderr, not its stdout") {
  captured_output cap;
  int pid = 0;
  {
    ray::runtime rt({.num_workers = 1});
    pid = ray::get(ray::task<complain>.remote());
  }
  cap.restore();
  CHECK(cap.err.find("(complain pid=" + std::to_string(pid) + ") something went wrong\n") !=
        std::string::npos);
  CHECK(cap.out.find("something went wrong") == std::string::npos);
}

TEST_CASE("an actor's output is prefixed with its class, from its constructor on") {
  captured_output cap;
  int pid = 0;
  {
    ray::runtime rt({.num_workers = 1});
    auto c = ray::spawn<chatty_counter>();
    ray::get(c.call<&chatty_counter::incr>());
    pid = ray::get(c.call<&chatty_counter::incr>());
  }
  cap.restore();
  const std::string prefix = "(chatty_counter pid=" + std::to_string(pid) + ") ";
  CHECK(cap.out.find(prefix + "counter built\n") != std::string::npos);
  CHECK(cap.out.find(prefix + "counter at 1\n") != std::string::npos);
  CHECK(cap.out.find(prefix + "counter at 2\n") != std::string::npos);
}

TEST_CASE("a ray::process's output is prefixed with its target function") {
  captured_output cap;
  int pid = 0;
  {
    ray::runtime rt({.num_workers = 1});
    ray::process p(ray::target<process_target>, 8);
    p.start();
    p.join();
    pid = p.pid();
  }
  cap.restore();
  CHECK(cap.out.find("(process_target pid=" + std::to_string(pid) + ") target got 8\n") !=
        std::string::npos);
}

TEST_CASE("lines from many workers arrive whole, never mixed mid-line") {
  captured_output cap;
  {
    ray::runtime rt({.num_workers = 3});
    std::vector<ray::object_ref<int>> refs;
    for (int i = 0; i < 12; ++i) refs.push_back(ray::task<print_in_pieces>.remote(i));
    const std::vector<int> done = ray::get(refs);
    CHECK(done.size() == 12);
  }
  cap.restore();
  std::size_t pieces = 0;
  for (const auto& l : lines_of(cap.out)) {
    if (l.find("piece-") == std::string::npos) continue;
    ++pieces;
    const auto close = l.find(") ");
    REQUIRE(close != std::string::npos);
    CHECK(l.starts_with("(print_in_pieces pid="));
    int i = -1, j = -2;
    CHECK(std::sscanf(l.c_str() + close + 2, "piece-%d-a piece-%d-b", &i, &j) == 2);
    CHECK(i == j);
  }
  CHECK(pieces == 12 * 20);
}

TEST_CASE("a line left unfinished by a worker that died is printed, with its prefix") {
  captured_output cap;
  {
    ray::runtime rt({.num_workers = 1});
    CHECK_THROWS_AS(ray::get(ray::task<leave_unfinished>.remote()), ray::worker_crashed);
  }
  cap.restore();
  const auto lines = lines_of(cap.out);
  bool found = false;
  for (const auto& l : lines)
    found |= l.starts_with("(leave_unfinished pid=") && l.ends_with(") an unfinished line");
  CHECK(found);
}

TEST_CASE("the same line from several workers is printed once, then folded with its count") {
  captured_output cap;
  std::set<int> pids;
  {
    ray::runtime rt({.num_workers = 3});
    // Enough calls that every worker runs one: each prints the line once.
    for (int round = 0; round < 50 && pids.size() < 3; ++round) {
      std::vector<ray::object_ref<int>> refs;
      for (int i = 0; i < 30; ++i) refs.push_back(ray::task<greet_once>.remote());
      const std::vector<int> got = ray::get(refs);
      pids.insert(got.begin(), got.end());
    }
  }
  cap.restore();
  REQUIRE(pids.size() == 3);
  // The first is printed at once; the other two were held back, and printed at the end as
  // one line (the runtime ended within the 5 s window).
  CHECK(count_of(cap.out, "the same line from every worker") == 2);
  CHECK(count_of(cap.out, "the same line from every worker [repeated 2x across cluster]\n") == 1);
}

TEST_CASE("log_to_driver = false shows none of the workers' output") {
  captured_output cap;
  {
    ray::runtime rt({.num_workers = 1, .log_to_driver = false});
    ray::get(ray::task<say_hello>.remote(1));
    ray::get(ray::task<complain>.remote());
  }
  cap.restore();
  CHECK(cap.out.find("hello 1") == std::string::npos);
  CHECK(cap.err.find("something went wrong") == std::string::npos);
}

TEST_CASE("log_directory keeps each process's output in worker-<pid>.out and .err") {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("coray-logs-" + std::to_string(getpid())) / "nested";
  std::filesystem::remove_all(dir.parent_path());
  int hello_pid = 0, complain_pid = 0;
  {
    ray::runtime rt({.num_workers = 1, .log_to_driver = false, .log_directory = dir.string()});
    hello_pid = ray::get(ray::task<say_hello>.remote(3));
    complain_pid = ray::get(ray::task<complain>.remote());
  }
  auto read = [](const std::filesystem::path& p) {
    std::ifstream in(p);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  CHECK(read(dir / ("worker-" + std::to_string(hello_pid) + ".out")).find("hello 3\n") !=
        std::string::npos);
  CHECK(read(dir / ("worker-" + std::to_string(complain_pid) + ".err")) ==
        "something went wrong\n");
  std::filesystem::remove_all(dir.parent_path());
}

TEST_CASE("each process's recent output is kept in memory, shown or not") {
  int hello_pid = 0, complain_pid = 0;
  ray::runtime rt({.num_workers = 1, .log_to_driver = false});
  hello_pid = ray::get(ray::task<say_hello>.remote(5));
  complain_pid = ray::get(ray::task<complain>.remote());
  CHECK(ray::state::get_log(hello_pid).out.find("hello 5\n") != std::string::npos);
  CHECK(ray::state::get_log(complain_pid).err.ends_with("something went wrong\n"));
  const ray::state::process_log unknown = ray::state::get_log(1);
  CHECK(unknown.out.empty());
  CHECK(unknown.err.empty());
  // Bounded: a process that wrote more keeps the last 16 KiB.
  ray::get(ray::task<print_in_pieces>.remote(0));
  for (int i = 0; i < 40; ++i) ray::get(ray::task<print_in_pieces>.remote(i));
  const std::string out = ray::state::get_log(rt.worker_pids()[0]).out;
  CHECK(out.size() == 16 * 1024);
  CHECK(out.ends_with("piece-39-a piece-39-b\n"));
}

TEST_CASE("a log_directory that cannot be made is refused with usage_error") {
  const auto file =
      std::filesystem::temp_directory_path() / ("coray-not-a-dir-" + std::to_string(getpid()));
  { std::ofstream(file) << "x"; }
  CHECK_THROWS_AS(ray::runtime({.num_workers = 1, .log_directory = file.string()}),
                  ray::usage_error);
  std::filesystem::remove(file);
}

TEST_CASE("folding: repeats from other processes are counted, numbers aside, for 5 seconds") {
  using ray::detail::line_folder;
  line_folder f;
  std::string out;
  const auto t0 = line_folder::clock::time_point{} + std::chrono::hours(1);
  f.feed(1, "(f pid=1) ", "step 1 done", t0, out);
  f.feed(2, "(f pid=2) ", "step 2 done", t0, out);
  f.feed(3, "(f pid=3) ", "step 3 done", t0, out);
  CHECK(out == "(f pid=1) step 1 done\n");
  f.expire(t0 + std::chrono::seconds(4), out);
  CHECK(out == "(f pid=1) step 1 done\n");
  out.clear();
  f.expire(t0 + std::chrono::seconds(5), out);
  CHECK(out == "(f pid=3) step 3 done [repeated 2x across cluster]\n");
  // One more in the next window is printed as itself when that window closes.
  out.clear();
  f.feed(4, "(f pid=4) ", "step 4 done", t0 + std::chrono::seconds(6), out);
  CHECK(out.empty());
  f.flush(out);
  CHECK(out == "(f pid=4) step 4 done\n");
}

TEST_CASE("folding: one process repeating itself, and lines of numbers only, print as they come") {
  using ray::detail::line_folder;
  line_folder f;
  std::string out;
  const auto t0 = line_folder::clock::time_point{} + std::chrono::hours(1);
  f.feed(1, "(g pid=1) ", "tick", t0, out);
  f.feed(1, "(g pid=1) ", "tick", t0, out);
  f.feed(2, "(g pid=2) ", "42", t0, out);
  f.feed(3, "(g pid=3) ", "42", t0, out);
  CHECK(out == "(g pid=1) tick\n(g pid=1) tick\n(g pid=2) 42\n(g pid=3) 42\n");
  CHECK(line_folder::canonical("  epoch 3 loss=0.25\tok ") == "epoch ok");
}
