// What every coray benchmark program shares: its options (--quick, --json FILE), timing
// helpers (medians, percentiles), and the metric table it prints and writes as JSON.
//
// JSON written by --json FILE (scripts/bench.py merges the programs' files):
//   {"metrics": {"<snake_case_name>": {"value": x, "unit": "...", "higher_is_better": true,
//                                      "note": "..."}}}
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bench {

using clk = std::chrono::steady_clock;

inline double seconds_since(clk::time_point t0) {
  return std::chrono::duration<double>(clk::now() - t0).count();
}

inline double median(std::vector<double> v) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/// The p-th percentile (0..100) by nearest rank.
inline double percentile(std::vector<double> v, double p) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
  return v[std::clamp<std::size_t>(rank, 1, v.size()) - 1];
}

/// Wall-clock seconds of each of `reps` calls of f.
template <class F>
std::vector<double> times(int reps, F&& f) {
  std::vector<double> t;
  t.reserve(static_cast<std::size_t>(reps));
  for (int i = 0; i < reps; ++i) {
    auto t0 = clk::now();
    f();
    t.push_back(seconds_since(t0));
  }
  return t;
}

/// Runs `body` repeatedly for about `secs`; returns operations per second (body returns ops).
template <class F>
double rate(double secs, F&& body) {
  long ops = 0;
  auto t0 = clk::now();
  while (seconds_since(t0) < secs) ops += body();
  return static_cast<double>(ops) / seconds_since(t0);
}

/// The median over `reps` runs of rate(secs, body).
template <class F>
double median_rate(int reps, double secs, F&& body) {
  std::vector<double> r;
  for (int i = 0; i < reps; ++i) r.push_back(rate(secs, body));
  return median(r);
}

struct options {
  bool quick = false;
  std::string json;
  /// Repetitions for each figure; medians are reported.
  int reps = 5;
  /// --rows PREFIX: only the sections whose rows start with PREFIX (in programs that check
  /// wants()), to measure one figure without the rest.
  std::string rows;
  bool wants(std::string_view row) const { return rows.empty() || row.starts_with(rows); }
};

/// Parses --quick, --json FILE and --rows PREFIX; leaves other arguments (coray's own) alone.
inline options parse_options(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--quick")
      o.quick = true;
    else if (a == "--json" && i + 1 < argc)
      o.json = argv[++i];
    else if (a == "--rows" && i + 1 < argc)
      o.rows = argv[++i];
  }
  o.reps = o.quick ? 3 : 7;
  return o;
}

struct metric {
  double value = 0;
  std::string unit;
  bool higher_is_better = true;
  std::string note;
};

inline std::map<std::string, metric>& metrics() {
  static std::map<std::string, metric> m;
  return m;
}

/// Records a figure under a snake_case name and prints it as one line.
inline void report(const std::string& name, double value, const std::string& unit,
                   bool higher_is_better, const std::string& note = {}) {
  metrics()[name] = {value, unit, higher_is_better, note};
  std::printf("%-48s %16.4g %-8s %s\n", name.c_str(), value, unit.c_str(), note.c_str());
  std::fflush(stdout);
}

inline std::string json_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) continue;
    out += c;
  }
  return out;
}

/// Writes the recorded metrics to o.json, if it was given.
inline void write_json(const options& o) {
  if (o.json.empty()) return;
  std::ofstream f(o.json);
  if (!f) throw std::runtime_error("cannot write " + o.json);
  f << "{\n  \"metrics\": {\n";
  std::size_t i = 0;
  for (const auto& [name, m] : metrics()) {
    char value[64];
    std::snprintf(value, sizeof value, "%.6g", std::isfinite(m.value) ? m.value : 0.0);
    f << "    \"" << json_escape(name) << "\": {\"value\": " << value << ", \"unit\": \""
      << json_escape(m.unit)
      << "\", \"higher_is_better\": " << (m.higher_is_better ? "true" : "false") << ", \"note\": \""
      << json_escape(m.note) << "\"}" << (++i < metrics().size() ? ",\n" : "\n");
  }
  f << "  }\n}\n";
}

/// Writes all of `data` to a pipe or file descriptor; throws if it closes.
inline void write_all(int fd, const void* data, std::size_t n) {
  const auto* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) throw std::runtime_error(std::string("write: ") + std::strerror(errno));
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

/// Reads exactly `n` bytes; false on a clean end of file before the first byte, throws if the
/// descriptor closes mid-way.
inline bool read_all(int fd, void* data, std::size_t n) {
  auto* p = static_cast<char*>(data);
  const std::size_t total = n;
  while (n > 0) {
    ssize_t r = ::read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r == 0 && n == total) return false;
    if (r <= 0) throw std::runtime_error("read: closed mid-message");
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

/// Keeps the optimiser from dropping a result.
template <class T>
inline void keep(const T& value) {
  asm volatile("" : : "g"(&value) : "memory");
}

}  // namespace bench
