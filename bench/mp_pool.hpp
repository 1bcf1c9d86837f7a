// The multiprocessing-style peer: what Python's multiprocessing.Pool.map does, in C++.
//
// mp_pool forks `n` processes once. map() cuts the items into chunks, serialises each chunk
// (coray's codec stands in for pickle), writes it down a pipe to an idle process, which
// deserialises it, applies the function, serialises the results and writes them back up its
// own pipe. Arguments and state travel by value every time; nothing is shared. That is the
// design seed 004 compares Ray against, built as well as C++ allows (no pickling of code,
// binary encoding, one round trip per chunk, the processes reused across calls).
//
// Fork it before any runtime or thread exists in the process (it forks the caller).
#pragma once

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <coray/codec.hpp>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench_common.hpp"

namespace bench {

namespace mp_detail {

inline void send(int fd, const std::vector<std::byte>& bytes) {
  const std::uint64_t n = bytes.size();
  write_all(fd, &n, sizeof n);
  write_all(fd, bytes.data(), bytes.size());
}

inline bool receive(int fd, std::vector<std::byte>& bytes) {
  std::uint64_t n = 0;
  if (!read_all(fd, &n, sizeof n)) return false;
  bytes.resize(n);
  if (!read_all(fd, bytes.data(), n)) throw std::runtime_error("mp_pool: short message");
  return true;
}

}  // namespace mp_detail

/// A pool of forked processes applying `Fn(const Arg&) -> Result` to items sent by value.
template <class Arg, class Result>
class mp_pool {
 public:
  template <class Fn>
  mp_pool(unsigned processes, Fn fn) {
    for (unsigned i = 0; i < processes; ++i) {
      int down[2], up[2];
      if (::pipe(down) != 0 || ::pipe(up) != 0) throw std::runtime_error("mp_pool: pipe");
      pid_t pid = ::fork();
      if (pid < 0) throw std::runtime_error("mp_pool: fork");
      if (pid == 0) {
        ::close(down[1]);
        ::close(up[0]);
        for (const auto& w : workers_) {  // the earlier processes' pipes are not ours
          ::close(w.to);
          ::close(w.from);
        }
        serve(down[0], up[1], fn);
      }
      ::close(down[0]);
      ::close(up[1]);
      workers_.push_back({pid, down[1], up[0]});
    }
  }

  mp_pool(const mp_pool&) = delete;
  mp_pool& operator=(const mp_pool&) = delete;

  ~mp_pool() {
    for (auto& w : workers_) ::close(w.to);  // end of file: the process exits
    for (auto& w : workers_) {
      ::close(w.from);
      int status = 0;
      ::waitpid(w.pid, &status, 0);
    }
  }

  unsigned size() const { return static_cast<unsigned>(workers_.size()); }

  /// Python's Pool.map: results in the order of items. chunksize 0 picks Python's default,
  /// ceil(len / (4 * processes)).
  std::vector<Result> map(const std::vector<Arg>& items, std::size_t chunksize = 0) {
    const std::size_t n = items.size();
    if (chunksize == 0) chunksize = std::max<std::size_t>(1, (n + 4 * size() - 1) / (4 * size()));
    const std::size_t chunks = (n + chunksize - 1) / chunksize;
    std::vector<Result> out(n);
    std::vector<std::size_t> running(workers_.size(), SIZE_MAX);  // chunk index per process
    std::size_t next = 0, done = 0;
    auto dispatch = [&](std::size_t w) {
      const std::size_t lo = next * chunksize, hi = std::min(n, lo + chunksize);
      // Serialised straight from the caller's items (encodes as a std::vector<Arg> would).
      mp_detail::send(workers_[w].to,
                      ray::encode(std::span<const Arg>(items.data() + lo, hi - lo)));
      running[w] = next++;
    };
    for (std::size_t w = 0; w < workers_.size() && next < chunks; ++w) dispatch(w);
    std::vector<pollfd> fds(workers_.size());
    std::vector<std::byte> bytes;
    while (done < chunks) {
      for (std::size_t w = 0; w < workers_.size(); ++w)
        fds[w] = {running[w] == SIZE_MAX ? -1 : workers_[w].from, POLLIN, 0};
      if (::poll(fds.data(), fds.size(), -1) < 0) {
        if (errno == EINTR) continue;
        throw std::runtime_error("mp_pool: poll");
      }
      for (std::size_t w = 0; w < workers_.size(); ++w) {
        if (fds[w].fd < 0 || fds[w].revents == 0) continue;
        if (!mp_detail::receive(workers_[w].from, bytes))
          throw std::runtime_error("mp_pool: a process died");
        auto results = ray::decode<std::vector<Result>>(bytes);
        const std::size_t lo = running[w] * chunksize;
        for (std::size_t k = 0; k < results.size(); ++k) out[lo + k] = std::move(results[k]);
        ++done;
        running[w] = SIZE_MAX;
        if (next < chunks) dispatch(w);
      }
    }
    return out;
  }

 private:
  struct process {
    pid_t pid;
    int to;
    int from;
  };

  template <class Fn>
  [[noreturn]] static void serve(int in, int out, Fn& fn) {
    std::vector<std::byte> bytes;
    try {
      while (mp_detail::receive(in, bytes)) {
        auto chunk = ray::decode<std::vector<Arg>>(bytes);
        std::vector<Result> results;
        results.reserve(chunk.size());
        for (const auto& a : chunk) results.push_back(fn(a));
        mp_detail::send(out, ray::encode(results));
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "mp_pool process: %s\n", e.what());
      ::_exit(1);
    }
    ::_exit(0);
  }

  std::vector<process> workers_;
};

}  // namespace bench
