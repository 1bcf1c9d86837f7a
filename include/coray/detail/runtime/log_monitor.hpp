#pragma once
/// The log monitor (Ray's log_monitor), run inside the supervisor: each worker's and actor's
/// stdout and stderr are pipes that the supervisor reads in its loop. Whole lines reach the
/// supervisor's own stdout and stderr (the driver's, inherited) prefixed with the process,
/// `(name pid=1234) line`; identical lines from several processes are folded as Ray folds
/// them (line_folder); with a log directory, each process's output is also written, as it
/// came, to `worker-<pid>.out` and `worker-<pid>.err` there. None of it touches the driver's
/// loop or a call's path. Supervisor only, single-threaded.

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <coray/detail/runtime/output_options.hpp>
#include <coray/detail/runtime/process.hpp>
#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// Ray's log deduplication, for one stream (stdout or stderr): a line is printed at once the
/// first time; the same line (compared without its words that hold digits, as Ray does) from
/// other processes within the next 5 seconds is held back and counted, and when the window
/// closes (or at the end) the latest of them is printed once with `[repeated Nx across
/// cluster]`. Repeats from the one process that printed it first are printed as they come, as
/// are lines with no words left to compare. Nothing here reads a clock: times are given.
class line_folder {
 public:
  using clock = std::chrono::steady_clock;
  static constexpr clock::duration window = std::chrono::seconds(5);

  /// A line (without its newline) from process `source`, shown under `prefix`: appends to
  /// `out` what is to be printed now.
  void feed(int source, std::string_view prefix, std::string_view line, clock::time_point now,
            std::string& out) {
    std::string key = canonical(line);
    if (key.empty()) return print(prefix, line, {}, out);
    auto it = recent_.find(key);
    if (it == recent_.end()) {
      recent_.emplace(std::move(key), pattern{now, 0, {}, {}, {source}});
      next_ = std::min(next_, now + window);
      return print(prefix, line, {}, out);
    }
    pattern& p = it->second;
    if (std::find(p.sources.begin(), p.sources.end(), source) == p.sources.end())
      p.sources.push_back(source);
    if (p.sources.size() == 1) return print(prefix, line, {}, out);
    ++p.count;
    p.prefix.assign(prefix);
    p.line.assign(line);
  }
  /// Closes the windows that have passed: prints their folded lines.
  void expire(clock::time_point now, std::string& out) {
    if (now < next_) return;
    next_ = clock::time_point::max();
    for (auto it = recent_.begin(); it != recent_.end();) {
      pattern& p = it->second;
      if (now - p.since < window) {
        next_ = std::min(next_, p.since + window);
        ++it;
        continue;
      }
      if (p.count > 1) {
        // Folding was fruitful: keep folding this line, in a new window.
        print_folded(p, out);
        p.since = now;
        p.count = 0;
        next_ = std::min(next_, now + window);
        ++it;
        continue;
      }
      if (p.count == 1) print(p.prefix, p.line, {}, out);
      it = recent_.erase(it);
    }
  }
  /// The end: prints every line still held back.
  void flush(std::string& out) {
    for (auto& [key, p] : recent_) {
      if (p.count > 1) print_folded(p, out);
      if (p.count == 1) print(p.prefix, p.line, {}, out);
    }
    recent_.clear();
    next_ = clock::time_point::max();
  }
  /// When expire has something to do; max() when nothing is held.
  clock::time_point next_expiry() const noexcept { return next_; }

  /// The line as compared: its words that hold no digit, one space apart.
  static std::string canonical(std::string_view line) {
    std::string key;
    std::size_t i = 0;
    while (i < line.size()) {
      while (i < line.size() && is_space(line[i])) ++i;
      const std::size_t b = i;
      bool digit = false;
      for (; i < line.size() && !is_space(line[i]); ++i) digit |= line[i] >= '0' && line[i] <= '9';
      if (i == b || digit) continue;
      if (!key.empty()) key += ' ';
      key.append(line.substr(b, i - b));
    }
    return key;
  }

 private:
  struct pattern {
    clock::time_point since;   // the window's start
    std::uint64_t count;       // lines held back in this window
    std::string prefix, line;  // the latest held back, and its process
    std::vector<int> sources;
  };
  static bool is_space(char c) noexcept {
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
  }
  static void print(std::string_view prefix, std::string_view line, std::string_view tail,
                    std::string& out) {
    out.append(prefix).append(line).append(tail).push_back('\n');
  }
  static void print_folded(const pattern& p, std::string& out) {
    print(p.prefix, p.line, " [repeated " + std::to_string(p.count) + "x across cluster]", out);
  }

  std::unordered_map<std::string, pattern> recent_;
  clock::time_point next_ = clock::time_point::max();
};

/// Writes all of `data` to `fd`, waiting out a full non-blocking descriptor; drops it if
/// the descriptor is gone (closed, a reader that left). Never raises SIGPIPE's default
/// action: the supervisor ignores SIGPIPE.
inline void write_fully(int fd, std::string_view data) noexcept {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n > 0) {
      data.remove_prefix(static_cast<std::size_t>(n));
    } else if (n < 0 && errno == EAGAIN) {
      pollfd p{fd, POLLOUT, 0};
      ::poll(&p, 1, 100);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      return;
    }
  }
}

class log_monitor {
 public:
  using clock = line_folder::clock;
  /// A line longer than this is cut into pieces of it: one process cannot make the
  /// supervisor hold unbounded memory.
  static constexpr std::size_t max_line = 64 * 1024;
  /// The tail of each process's stdout and of its stderr kept in memory (the state API's
  /// get_log, the dashboard), and how many ended processes keep theirs, oldest dropped.
  static constexpr std::size_t tail_bytes = 16 * 1024;
  static constexpr std::size_t ended_kept = 64;

  /// The last tail_bytes of what process `pid` wrote to stdout and to stderr; empty if it is
  /// unknown (never started here, or ended long ago).
  struct tail {
    std::string out, err;
  };
  const tail* tail_of(int pid) const {
    auto it = tails_.find(pid);
    return it == tails_.end() ? nullptr : &it->second;
  }

  /// `hdr`: the segment's control header, where each slot's process publishes its name.
  log_monitor(output_options opts, shared_header* hdr) : opts_(std::move(opts)), hdr_(hdr) {}
  log_monitor(const log_monitor&) = delete;
  log_monitor& operator=(const log_monitor&) = delete;
  ~log_monitor() {
    for (auto& s : streams_) close_stream(s);
  }

  /// A new process's stdout and stderr: the read ends stay here, the write ends are dup'ed
  /// onto the child's 1 and 2. All four close on exec.
  struct pipes {
    int out[2] = {-1, -1};
    int err[2] = {-1, -1};
  };
  /// Makes the pipes for a process about to start; false (errno set) if it cannot, and then
  /// the process starts with the supervisor's own stdout and stderr.
  static bool make_pipes(pipes& p) noexcept {
    if (pipe2(p.out, O_CLOEXEC) != 0) return false;
    if (pipe2(p.err, O_CLOEXEC) == 0) return true;
    const int e = errno;
    ::close(p.out[0]);
    ::close(p.out[1]);
    p = {};
    errno = e;
    return false;
  }
  /// In a forked child: its output goes to the pipes; no other stream of the monitor's stays
  /// open in it.
  void become_child_output(const pipes& p) noexcept {
    if (p.out[1] >= 0) ::dup2(p.out[1], STDOUT_FILENO);
    if (p.err[1] >= 0) ::dup2(p.err[1], STDERR_FILENO);
    for (int fd : {p.out[0], p.out[1], p.err[0], p.err[1]})
      if (fd > STDERR_FILENO) ::close(fd);
    for (auto& s : streams_) {
      ::close(s.fd);
      if (s.file >= 0) ::close(s.file);
    }
  }
  /// After the process started (`pid` > 0) or failed to: the write ends close here and the
  /// read ends are watched until their end of file.
  void watch(const pipes& p, int pid, std::uint32_t slot) {
    for (int fd : {p.out[1], p.err[1]})
      if (fd >= 0) ::close(fd);
    if (p.out[0] < 0) return;
    if (pid <= 0) {
      ::close(p.out[0]);
      ::close(p.err[0]);
      return;
    }
    add_stream(p.out[0], pid, slot, false);
    add_stream(p.err[0], pid, slot, true);
    tails_[pid];
  }

  /// The descriptors to poll, appended to `fds`, in the order on_ready takes them.
  void add_pollfds(std::vector<pollfd>& fds) const {
    for (const auto& s : streams_) fds.push_back({s.fd, POLLIN, 0});
  }
  /// After poll: `ready` are the entries add_pollfds appended, with their revents.
  void on_ready(std::span<const pollfd> ready) {
    for (std::size_t i = 0; i < ready.size() && i < streams_.size(); ++i)
      if (ready[i].revents) read_stream(streams_[i]);
    collect();
    tick(clock::now());
  }
  /// Milliseconds until a folded line is due (poll's timeout), -1 when none is.
  int poll_timeout(clock::time_point now) const noexcept {
    const auto next = std::min(out_.folder.next_expiry(), err_.folder.next_expiry());
    if (next == clock::time_point::max()) return -1;
    if (next <= now) return 0;
    return static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(next - now).count());
  }
  /// Prints the folded lines that are due.
  void tick(clock::time_point now) {
    for (sink* k : {&out_, &err_}) {
      k->folder.expire(now, k->text);
      emit(*k);
    }
  }
  /// Reads what process `pid` left in its pipes (it has ended: all it wrote is there), so
  /// its last lines come before its death is reported.
  void drain_process(int pid) {
    for (auto& s : streams_)
      if (s.pid == pid) read_stream(s);
    collect();
  }
  /// The end (every process reaped): reads what is left, prints partial lines and held-back
  /// lines, and closes every stream.
  void finish() {
    for (auto& s : streams_) {
      read_stream(s);
      end_stream(s);
    }
    collect();
    for (sink* k : {&out_, &err_}) {
      k->folder.flush(k->text);
      emit(*k);
    }
  }

 private:
  struct stream {
    int fd;
    int file;  // log file, or -1
    int pid;
    std::uint32_t slot;
    bool is_err;
    bool ended = false;
    std::string name;     // the process's name when last read
    std::string partial;  // a line not yet ended
  };
  struct sink {
    int fd;
    line_folder folder;
    std::string text;  // lines to write, in one write
  };

  void add_stream(int fd, int pid, std::uint32_t slot, bool is_err) {
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    int file = -1;
    if (!opts_.directory.empty()) {
      const std::string path =
          opts_.directory + "/worker-" + std::to_string(pid) + (is_err ? ".err" : ".out");
      file = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    }
    streams_.push_back({fd, file, pid, slot, is_err, false, {}, {}});
  }

  /// Reads until the pipe is empty or ended; whole lines go to their sink.
  void read_stream(stream& s) {
    if (s.ended) return;
    char buf[16384];
    for (;;) {
      const ssize_t n = ::read(s.fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        if (n == 0 || errno != EAGAIN) end_stream(s);
        return;
      }
      // The name the process has now, while it is still the slot's process (a later one in
      // the slot has its own name).
      const worker_shared& w = hdr_->worker(s.slot);
      if (w.pid.load(std::memory_order_acquire) == s.pid) s.name = w.output_name.get();
      const std::string_view got(buf, static_cast<std::size_t>(n));
      if (s.file >= 0) write_fully(s.file, got);
      keep_tail(s, got);
      take_lines(s, got);
    }
  }
  void take_lines(stream& s, std::string_view got) {
    while (!got.empty()) {
      const std::size_t nl = got.find('\n');
      const std::size_t room = max_line - s.partial.size();
      if (nl == std::string_view::npos && got.size() < room) {
        s.partial.append(got);
        return;
      }
      const std::size_t take = std::min(nl == std::string_view::npos ? room : nl, room);
      s.partial.append(got.substr(0, take));
      got.remove_prefix(std::min(got.size(), take + (take == nl ? 1 : 0)));
      line(s, s.partial);
      s.partial.clear();
    }
  }
  void line(const stream& s, std::string_view text) {
    if (!opts_.to_driver) return;
    sink& k = s.is_err ? err_ : out_;
    const std::string prefix = s.name.empty()
                                   ? "(pid=" + std::to_string(s.pid) + ") "
                                   : "(" + s.name + " pid=" + std::to_string(s.pid) + ") ";
    k.folder.feed(s.pid, prefix, text, clock::now(), k.text);
  }
  void keep_tail(const stream& s, std::string_view got) {
    std::string& t = s.is_err ? tails_[s.pid].err : tails_[s.pid].out;
    if (got.size() >= tail_bytes) got.remove_prefix(got.size() - tail_bytes);
    const std::size_t keep = std::min(t.size(), tail_bytes - got.size());
    t.erase(0, t.size() - keep);
    t.append(got);
  }
  /// End of file (or a broken pipe): a partial line is printed as a line. The process's tail
  /// stays, among the last ended_kept ended processes'.
  void end_stream(stream& s) {
    if (s.ended) return;
    s.ended = true;
    if (s.is_err) {
      ended_.push_back(s.pid);
      if (ended_.size() > ended_kept) {
        tails_.erase(ended_.front());
        ended_.pop_front();
      }
    }
    if (!s.partial.empty()) {
      line(s, s.partial);
      s.partial.clear();
    }
  }
  /// Closes the ended streams and writes what is to be printed.
  void collect() {
    for (auto& s : streams_)
      if (s.ended) close_stream(s);
    streams_.erase(
        std::remove_if(streams_.begin(), streams_.end(), [](const stream& s) { return s.fd < 0; }),
        streams_.end());
    emit(out_);
    emit(err_);
  }
  static void close_stream(stream& s) noexcept {
    if (s.fd >= 0) ::close(s.fd);
    if (s.file >= 0) ::close(s.file);
    s.fd = s.file = -1;
  }
  static void emit(sink& k) {
    if (k.text.empty()) return;
    write_fully(k.fd, k.text);
    k.text.clear();
  }

  output_options opts_;
  shared_header* hdr_;
  std::unordered_map<int, tail> tails_;
  std::deque<int> ended_;  // processes whose stderr ended, oldest first
  std::vector<stream> streams_;
  sink out_{STDOUT_FILENO, {}, {}};
  sink err_{STDERR_FILENO, {}, {}};
};

}  // namespace detail
CORAY_END_NAMESPACE
