#pragma once
/// A progress bar for long waits in terminal programs (what Ray users write with tqdm and
/// ray.wait): done/total, the rate and the time left, redrawn on one line of stderr when
/// stderr is a terminal, and nothing at all when it is not (a log file, a pipe, CI).
///
///   std::vector<double> losses = ray::get_with_progress(refs, {.description = "training"});
///   for (int r : ray::with_progress(pool.imap<square>(xs), xs.size())) use(r);
///
///   training:  42%|########            | 42/100 [00:03<00:04, 12.31 it/s]

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <coray/object_store.hpp>
#include <coray/result_stream.hpp>
#include <cstddef>
#include <cstdio>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE

struct progress_options {
  /// Shown before the bar.
  std::string description = {};
  /// Where the bar is drawn; drawn only when it is a terminal.
  int fd = STDERR_FILENO;
  /// The bar is redrawn at most this often (and when the count reaches the total).
  std::chrono::milliseconds redraw = std::chrono::milliseconds(100);
};

/// Counts work done out of a total and draws it, tqdm's way. One thread; not copyable.
class progress_bar {
 public:
  using clock = std::chrono::steady_clock;

  explicit progress_bar(std::size_t total, progress_options opts = {})
      : total_(total), opts_(std::move(opts)), shown_(isatty(opts_.fd) == 1) {
    draw(true);
  }
  progress_bar(const progress_bar&) = delete;
  progress_bar& operator=(const progress_bar&) = delete;
  /// Draws the last state and ends the line (when shown).
  ~progress_bar() {
    if (!shown_) return;
    draw(true);
    write_out("\n");
  }

  /// `n` more are done (never past the total). Draws if the redraw interval has passed.
  void update(std::size_t n = 1) {
    done_ = std::min(total_, done_ + n);
    draw(done_ == total_);
  }
  std::size_t done() const noexcept { return done_; }
  std::size_t total() const noexcept { return total_; }
  /// Whether the bar is drawn (its descriptor is a terminal).
  bool shown() const noexcept { return shown_; }

  /// The line as drawn after `elapsed`: description, percentage, bar, count, elapsed and
  /// estimated time left, rate. Pure: no clock, no output.
  std::string line(std::chrono::duration<double> elapsed) const {
    const double secs = std::max(0.0, elapsed.count());
    const double rate = secs > 0 ? static_cast<double>(done_) / secs : 0.0;
    const double fraction = total_ ? static_cast<double>(done_) / static_cast<double>(total_) : 1;
    constexpr std::size_t width = 20;
    const auto filled = static_cast<std::size_t>(fraction * width);
    std::string s = opts_.description.empty() ? std::string() : opts_.description + ": ";
    s += fmt::format("{:3d}%|{}{}| {}/{} [{}<{}, {:.2f} it/s]", static_cast<int>(fraction * 100),
                     std::string(filled, '#'), std::string(width - filled, ' '), done_, total_,
                     clock_text(secs),
                     rate > 0 ? clock_text(static_cast<double>(total_ - done_) / rate) : "?", rate);
    return s;
  }

 private:
  /// "mm:ss", or "h:mm:ss" from an hour.
  static std::string clock_text(double secs) {
    const auto s = static_cast<long long>(std::llround(secs));
    if (s >= 3600) return fmt::format("{}:{:02d}:{:02d}", s / 3600, s / 60 % 60, s % 60);
    return fmt::format("{:02d}:{:02d}", s / 60, s % 60);
  }
  void draw(bool now) {
    if (!shown_) return;
    const auto t = clock::now();
    if (!now && t - drawn_ < opts_.redraw) return;
    drawn_ = t;
    write_out("\r" + line(t - start_) + "\x1b[K");
  }
  void write_out(const std::string& s) const noexcept {
    std::string_view left(s);
    while (!left.empty()) {
      const ssize_t n = ::write(opts_.fd, left.data(), left.size());
      if (n <= 0) return;  // a terminal that went away: the bar is not worth an error
      left.remove_prefix(static_cast<std::size_t>(n));
    }
  }

  std::size_t total_;
  std::size_t done_ = 0;
  progress_options opts_;
  bool shown_;
  clock::time_point start_ = clock::now();
  clock::time_point drawn_ = start_;
};

/// ray::get(refs) with a progress bar that advances as each ref becomes ready (ray::wait
/// with the redraw interval as its timeout). Returns the values in the order of `refs`, or
/// throws the first error as ray::get does. Where the bar is not shown, it is ray::get.
template <class T>
requires(!std::is_void_v<T>) std::vector<T> get_with_progress(std::vector<object_ref<T>> refs,
                                                              progress_options opts = {}) {
  const auto redraw = opts.redraw;
  {
    progress_bar bar(refs.size(), std::move(opts));
    std::vector<object_ref<T>> pending = refs;
    while (bar.shown() && !pending.empty()) {
      const wait_options until{.num_returns = pending.size(),
                               .timeout = std::chrono::nanoseconds(redraw)};
      wait_result<T> w = ray::wait(std::move(pending), until);
      bar.update(w.ready.size());
      pending = std::move(w.pending);
    }
  }
  return ray::get(std::move(refs));
}

/// Iterates a result stream (pool::imap and the like) with a progress bar of `total`
/// results: `for (int r : ray::with_progress(pool.imap<f>(xs), xs.size()))`. Loop thread
/// only, as the stream is.
template <class R>
class progress_stream {
 public:
  progress_stream(result_stream<R> stream, std::size_t total, progress_options opts = {})
      : stream_(std::move(stream)), bar_(total, std::move(opts)) {}

  /// The next result (waiting for it), the bar advanced; nullopt after the last.
  std::optional<R> next() {
    std::optional<R> r = stream_.next();
    if (r) bar_.update();
    return r;
  }
  const progress_bar& bar() const noexcept { return bar_; }

  class iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = R;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(progress_stream* s) : s_(s) { ++*this; }
    R& operator*() { return *current_; }
    iterator& operator++() {
      current_ = s_->next();
      if (!current_) s_ = nullptr;
      return *this;
    }
    void operator++(int) { ++*this; }
    bool operator==(const iterator& o) const noexcept { return s_ == o.s_; }

   private:
    progress_stream* s_ = nullptr;
    std::optional<R> current_;
  };
  iterator begin() { return iterator(this); }
  iterator end() { return iterator(); }

 private:
  result_stream<R> stream_;
  progress_bar bar_;
};

template <class R>
progress_stream<R> with_progress(result_stream<R> stream, std::size_t total,
                                 progress_options opts = {}) {
  return progress_stream<R>(std::move(stream), total, std::move(opts));
}

CORAY_END_NAMESPACE
