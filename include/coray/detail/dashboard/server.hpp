#pragma once
/// The dashboard's server: cpp-httplib on a pool of its own threads, and one collector thread
/// that reads the runtime on the driver's loop (a job there, as other threads' calls are) and
/// publishes the JSON the HTTP threads serve. Reached from ray::runtime only through
/// dashboard_start_hook (runtime.hpp), which <coray/dashboard.hpp> or coray's compiled
/// library sets.
///
/// Secure by default (design.md, "The dashboard"): it binds 127.0.0.1; a request whose Host is
/// not the bound address (or localhost) at its port is refused (DNS rebinding); reads are GET,
/// the two actions (kill an actor, cancel a call) POST with the run's random token and, when
/// the browser sends one, an Origin of the page itself; any other method is 405; bound to
/// another address, every request needs the token. Nothing a client sends names a file or
/// runs code: the paths are a fixed table.

#include <httplib.h>
#include <sys/random.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <coray/detail/dashboard/log_book.hpp>
#include <coray/detail/dashboard/page.hpp>
#include <coray/detail/dashboard/snapshot.hpp>
#include <coray/detail/runtime/foreign.hpp>
#include <coray/errors.hpp>
#include <coray/runtime.hpp>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail::dashboard {

inline bool is_loopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

/// 128 random bits, in hex: the run's token.
inline std::string random_token() {
  unsigned char bytes[16];
  std::size_t got = 0;
  while (got < sizeof bytes) {
    const ssize_t n = getrandom(bytes + got, sizeof bytes - got, 0);
    if (n < 0)
      throw ray::runtime_error("coray: the dashboard could not make a token: getrandom failed");
    got += static_cast<std::size_t>(n);
  }
  std::string hex;
  for (unsigned char b : bytes) {
    constexpr char digits[] = "0123456789abcdef";
    hex += digits[b >> 4];
    hex += digits[b & 15];
  }
  return hex;
}

/// Equal strings, in a time that does not depend on where they differ.
inline bool same_secret(const std::string& a, const std::string& b) noexcept {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

/// What a request asks of the dashboard, from its path alone.
struct route {
  enum kind { none, read, action } what = none;
};
inline bool is_number(std::string_view s, std::size_t max_digits) noexcept {
  return !s.empty() && s.size() <= max_digits &&
         s.find_first_not_of("0123456789") == std::string_view::npos;
}
/// The fixed table of paths: the page, the reads, /api/logs/<pid>, and the two actions
/// /api/actors/<id>/kill and /api/tasks/<id>/cancel. Anything else is none.
inline route route_of(std::string_view path) {
  static const std::set<std::string, std::less<>> reads = {"/",
                                                           "/api/nodes",
                                                           "/api/processes",
                                                           "/api/actors",
                                                           "/api/tasks",
                                                           "/api/objects",
                                                           "/api/config",
                                                           "/api/logs",
                                                           "/api/timeline",
                                                           "/api/timeline/trace",
                                                           "/metrics"};
  if (reads.find(path) != reads.end()) return {route::read};
  constexpr std::string_view logs = "/api/logs/";
  if (path.starts_with(logs) && is_number(path.substr(logs.size()), 9)) return {route::read};
  for (std::string_view on : {std::string_view("/api/actors/"), std::string_view("/api/tasks/")}) {
    if (!path.starts_with(on)) continue;
    const std::string_view rest = path.substr(on.size());
    const std::size_t slash = rest.find('/');
    if (slash == std::string_view::npos || !is_number(rest.substr(0, slash), 19)) continue;
    if (rest.substr(slash) == "/kill" || rest.substr(slash) == "/cancel") return {route::action};
  }
  return {};
}

class server final : public dashboard_service {
 public:
  explicit server(const runtime_options& opts)
      : host_(opts.dashboard_host),
        loopback_(is_loopback(host_)),
        token_(random_token()),
        maker_(config_json(opts)) {
    server_.new_task_queue = [] { return new httplib::ThreadPool(threads); };
    server_.set_keep_alive_max_count(16);
    server_.set_keep_alive_timeout(2);
    server_.set_read_timeout(5, 0);
    server_.set_write_timeout(5, 0);
    server_.set_payload_max_length(4096);
    server_.set_default_headers({{"X-Content-Type-Options", "nosniff"},
                                 {"X-Frame-Options", "DENY"},
                                 {"Referrer-Policy", "no-referrer"},
                                 {"Cache-Control", "no-store"},
                                 {"Content-Security-Policy",
                                  "default-src 'none'; script-src 'unsafe-inline'; "
                                  "style-src 'unsafe-inline'; connect-src 'self'; "
                                  "form-action 'none'; frame-ancestors 'none'"}});
    add_routes();
    port_ = bind(opts.dashboard_port);
    // The first snapshot now, on the loop thread (this constructor runs in ray::runtime's):
    // a page opened at once has something to show.
    collect();
    collector_ = std::thread([this] { collector_loop(); });
    http_ = std::thread([this] {
      server_.listen_after_bind();
      listen_ended_ = true;
    });
    // httplib's stop() does nothing before the listening thread says it runs: wait for that,
    // so that a runtime ended at once still stops it.
    while (!server_.is_running() && !listen_ended_)
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    std::fprintf(stderr, "coray: View the dashboard at %s\n", url().c_str());
  }
  ~server() override {
    server_.stop();
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    wake_.notify_all();
    acted_.notify_all();
    if (http_.joinable()) http_.join();
    if (collector_.joinable()) collector_.join();
  }
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  std::string url() const override {
    const std::string h = host_.find(':') != std::string::npos ? "[" + host_ + "]" : host_;
    return "http://" + h + ":" + std::to_string(port_) + "/?token=" + token_;
  }

  static constexpr int threads = 8;
  /// How often a refresh may read the runtime: requests within it get the last snapshot.
  static constexpr auto fresh_for = std::chrono::milliseconds(250);
  /// How long an action's request waits for the loop to take it before answering 202.
  static constexpr auto action_wait = std::chrono::seconds(2);

 private:
  struct action {
    bool kill;  // else cancel
    std::uint64_t id;
    bool done = false;
  };

  static nlohmann::json config_json(const runtime_options& o) {
    return {
        {"num_workers", o.num_workers},
        {"start_method",
         o.start_method ? (*o.start_method == start_method::spawn ? "spawn" : "fork") : "default"},
        {"inline_threshold", o.inline_threshold},
        {"spin_us", o.spin.count()},
        {"max_tasks_in_flight_per_worker", o.max_tasks_in_flight_per_worker},
        {"max_actors", o.max_actors},
        {"spill_directory", o.spill_directory},
        {"log_to_driver", o.log_to_driver},
        {"log_directory", o.log_directory},
        {"task_history", o.task_history},
        {"record_timeline", o.record_timeline},
        {"dashboard_host", o.dashboard_host},
        {"dashboard_port", o.dashboard_port}};
  }

  /// Binds `wanted`, or the next free port of the 100 after it (any port for 0).
  int bind(std::uint16_t wanted) {
    if (wanted == 0) {
      const int got = server_.bind_to_any_port(host_);
      if (got > 0) return got;
    } else {
      for (int port = wanted; port < wanted + 100 && port < 65536; ++port) {
        if (server_.bind_to_port(host_, port)) {
          if (port != wanted)
            std::fprintf(stderr, "coray: dashboard port %d is in use; using %d\n", wanted, port);
          return port;
        }
      }
    }
    throw ray::runtime_error("coray: the dashboard could not listen on " + host_ + " port " +
                             std::to_string(wanted) + " nor any of the next 100");
  }

  // ---- the collector: the only thread that reads the runtime ------------------------------

  void collector_loop() {
    std::unique_lock lock(mu_);
    for (;;) {
      wake_.wait(lock, [&] { return stopping_ || refresh_wanted_ || !actions_.empty(); });
      if (stopping_) return;
      lock.unlock();
      const bool ok = collect();
      lock.lock();
      if (!ok) return;  // the runtime is ending
    }
  }

  /// One job on the loop: the actions asked for, then the records (and the output when the
  /// logs were looked at lately). False when the runtime is ending.
  bool collect() {
    std::vector<std::shared_ptr<action>> todo;
    bool want_logs = false;
    {
      std::lock_guard lock(mu_);
      todo.assign(actions_.begin(), actions_.end());
      actions_.clear();
      refresh_wanted_ = false;
      want_logs = std::chrono::steady_clock::now() - logs_asked_ < std::chrono::seconds(10);
    }
    const std::set<int> log_pids = want_logs ? log_pids_ : std::set<int>{};
    std::optional<loop_view> view;
    try {
      view = ray::detail::on_loop("the dashboard", [&](process& p) {
        driver& d = *p.as_driver();
        for (const auto& a : todo) {
          try {
            if (a->kill)
              d.kill_actor(a->id);
            else
              d.cancel_call(a->id, false);
          } catch (...) {  // gone meanwhile: nothing to do
          }
        }
        return read_on_loop(d, log_pids);
      });
    } catch (...) {
      std::lock_guard lock(mu_);
      for (auto& a : todo) a->done = true;
      acted_.notify_all();
      return false;
    }
    const auto names = output_names(*view);
    for (const auto& o : view->logs) {
      auto n = names.find(o.pid);
      logs_.absorb(o.pid, n == names.end() ? std::string() : n->second, o.out, o.err);
    }
    auto made = std::make_shared<const published>(maker_.make(*view));
    std::lock_guard lock(mu_);
    log_pids_ = output_pids(*view);  // a process that ended keeps what was read of it
    published_ = std::move(made);
    made_at_ = std::chrono::steady_clock::now();
    for (auto& a : todo) a->done = true;
    acted_.notify_all();
    return true;
  }

  /// The last snapshot; asks the collector for a newer one when it is older than fresh_for.
  std::shared_ptr<const published> snapshot() {
    std::lock_guard lock(mu_);
    if (std::chrono::steady_clock::now() - made_at_ > fresh_for) {
      refresh_wanted_ = true;
      wake_.notify_one();
    }
    return published_;
  }

  // ---- HTTP ----------------------------------------------------------------------------

  std::vector<std::string> allowed_hosts() const {
    const std::string p = ":" + std::to_string(port_);
    std::vector<std::string> hosts = {host_ + p, "[" + host_ + "]" + p};
    if (loopback_) {
      hosts.push_back("localhost" + p);
      hosts.push_back("127.0.0.1" + p);
      hosts.push_back("[::1]" + p);
    }
    return hosts;
  }
  bool host_allowed(const httplib::Request& req) const {
    if (!loopback_) return true;  // every request carries the token instead
    const std::string host = req.get_header_value("Host");
    for (const auto& h : allowed_hosts())
      if (host == h) return true;
    return false;
  }
  bool token_given(const httplib::Request& req) const {
    if (req.has_header("X-Coray-Token"))
      return same_secret(req.get_header_value("X-Coray-Token"), token_);
    return req.has_param("token") && same_secret(req.get_param_value("token"), token_);
  }
  /// A browser's request from another page says so in Origin: only the page itself may act.
  bool same_origin(const httplib::Request& req) const {
    if (!req.has_header("Origin")) return true;  // not a browser's cross-origin request
    const std::string origin = req.get_header_value("Origin");
    if (!loopback_) return origin == "http://" + req.get_header_value("Host");
    for (const auto& h : allowed_hosts())
      if (origin == "http://" + h) return true;
    return false;
  }

  static void refuse(httplib::Response& res, int status, const std::string& why) {
    res.status = status;
    res.set_content(nlohmann::json{{"error", why}}.dump(), "application/json");
  }

  /// Every request passes here first: the Host, the method, the token.
  httplib::Server::HandlerResponse screen(const httplib::Request& req, httplib::Response& res) {
    using handled = httplib::Server::HandlerResponse;
    if (!host_allowed(req)) {
      refuse(res, 403, "the Host header does not name this dashboard");
      return handled::Handled;
    }
    if (!loopback_ && !token_given(req)) {
      refuse(res, 403, "this dashboard listens beyond loopback: every request needs the token");
      return handled::Handled;
    }
    const route r = route_of(req.path);
    if (req.method != "GET" && req.method != "POST") {
      res.set_header("Allow", r.what == route::action ? "POST" : "GET");
      refuse(res, 405, "only GET (to read) and POST (to act) are served");
      return handled::Handled;
    }
    if (r.what == route::none) {
      refuse(res, 404, "no such page");
      return handled::Handled;
    }
    if ((r.what == route::read) != (req.method == "GET")) {
      res.set_header("Allow", r.what == route::action ? "POST" : "GET");
      refuse(res, 405, r.what == route::action ? "actions are POST" : "reads are GET");
      return handled::Handled;
    }
    if (r.what == route::action && !token_given(req)) {
      refuse(res, 403, "an action needs the run's token (X-Coray-Token or ?token=)");
      return handled::Handled;
    }
    if (r.what == route::action && !same_origin(req)) {
      refuse(res, 403, "an action must come from the dashboard's own page");
      return handled::Handled;
    }
    return handled::Unhandled;
  }

  static std::uint64_t since_of(const httplib::Request& req) {
    if (!req.has_param("since")) return 0;
    const std::string s = req.get_param_value("since");
    if (s.empty() || s.size() > 19 || s.find_first_not_of("0123456789") != std::string::npos)
      return 0;
    return std::stoull(s);
  }

  void add_routes() {
    server_.set_pre_routing_handler(
        [this](const httplib::Request& req, httplib::Response& res) { return screen(req, res); });
    server_.set_exception_handler(
        [](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
          refuse(res, 500, "the dashboard failed to answer");
        });
    server_.Get("/", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(page_html, "text/html; charset=utf-8");
    });
    auto serve = [this](std::string published::*field) {
      return [this, field](const httplib::Request&, httplib::Response& res) {
        auto p = snapshot();
        res.set_content(p ? (*p).*field : std::string("{}"), "application/json");
      };
    };
    server_.Get("/api/nodes", serve(&published::nodes));
    server_.Get("/api/processes", serve(&published::nodes));
    server_.Get("/api/actors", serve(&published::actors));
    server_.Get("/api/tasks", serve(&published::tasks));
    server_.Get("/api/objects", serve(&published::objects));
    server_.Get("/api/config", serve(&published::config));
    server_.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      auto p = snapshot();
      res.set_content(p ? p->metrics : std::string(), "text/plain; version=0.0.4");
    });
    // The timeline: its last seconds for the view (?seconds=, 1 to 60, default 10), and all
    // of it as Chrome's trace events, a download (what ray::timeline writes).
    server_.Get("/api/timeline", [this](const httplib::Request& req, httplib::Response& res) {
      auto p = snapshot();
      if (!p || !p->records_timeline)
        return res.set_content(R"({"recording":false})", "application/json");
      double seconds = 10;
      if (req.has_param("seconds")) {
        const std::string s = req.get_param_value("seconds");
        if (is_number(s, 2)) seconds = std::clamp(std::stod(s), 1.0, 60.0);
      }
      const auto now = std::chrono::steady_clock::now().time_since_epoch();
      res.set_content(
          recent_timeline(p->timeline,
                          std::chrono::duration_cast<std::chrono::nanoseconds>(now).count(),
                          seconds),
          "application/json");
    });
    server_.Get("/api/timeline/trace", [this](const httplib::Request&, httplib::Response& res) {
      auto p = snapshot();
      if (!p || !p->records_timeline)
        return refuse(res, 404, "the runtime records no timeline (record_timeline)");
      res.set_header("Content-Disposition", R"(attachment; filename="coray-timeline.json")");
      res.set_content(timeline_trace(p->timeline, static_cast<int>(::getpid())),
                      "application/json");
    });
    server_.Get("/api/logs", [this](const httplib::Request& req, httplib::Response& res) {
      asked_for_logs();
      res.set_content(logs_.all(since_of(req)).dump(), "application/json");
    });
    server_.Get(R"(/api/logs/([0-9]+))",
                [this](const httplib::Request& req, httplib::Response& res) {
                  asked_for_logs();
                  nlohmann::json j = logs_.of(std::stoi(req.matches[1].str()), since_of(req));
                  if (j.is_null()) return refuse(res, 404, "no output kept for that process");
                  res.set_content(j.dump(), "application/json");
                });
    server_.Post(R"(/api/(actors|tasks)/([0-9]+)/(kill|cancel))",
                 [this](const httplib::Request& req, httplib::Response& res) {
                   act(req.matches[1] == "actors", req.matches[3] == "kill",
                       std::stoull(req.matches[2].str()), res);
                 });
  }

  void asked_for_logs() {
    std::lock_guard lock(mu_);
    const bool first = std::chrono::steady_clock::now() - logs_asked_ > std::chrono::seconds(10);
    logs_asked_ = std::chrono::steady_clock::now();
    if (first || std::chrono::steady_clock::now() - made_at_ > fresh_for) {
      refresh_wanted_ = true;
      wake_.notify_one();
    }
  }

  /// Kill an actor or cancel a call the last snapshot listed; waits up to action_wait for the
  /// collector to hand it to the loop (200), else answers 202 (it will be).
  void act(bool on_actor, bool kill, std::uint64_t id, httplib::Response& res) {
    if (on_actor != kill) return refuse(res, 404, "actors are killed, tasks cancelled");
    auto p = snapshot();
    if (!p || !(kill ? p->actor_ids.count(id) : p->live_task_ids.count(id)))
      return refuse(res, 404, kill ? "no such actor" : "no such call in flight");
    auto a = std::make_shared<action>(action{kill, id});
    std::unique_lock lock(mu_);
    actions_.push_back(a);
    wake_.notify_one();
    const bool done =
        acted_.wait_for(lock, action_wait, [&] { return a->done || stopping_; }) && a->done;
    res.status = done ? 200 : 202;
    res.set_content(nlohmann::json{{kill ? "killed" : "cancelled", id}, {"done", done}}.dump(),
                    "application/json");
  }

  std::string host_;
  bool loopback_;
  std::string token_;
  int port_ = 0;
  httplib::Server server_;
  snapshot_maker maker_;  // the collector's
  log_book logs_;
  std::set<int> log_pids_;  // the collector's: whose output the next read takes

  std::mutex mu_;
  std::condition_variable wake_, acted_;
  bool stopping_ = false, refresh_wanted_ = false;
  std::deque<std::shared_ptr<action>> actions_;
  std::shared_ptr<const published> published_;
  std::chrono::steady_clock::time_point made_at_{}, logs_asked_{};
  std::atomic<bool> listen_ended_{false};
  std::thread collector_, http_;
};

/// dashboard_start_hook's function.
inline std::unique_ptr<dashboard_service> start(const runtime_options& opts) {
  return std::make_unique<server>(opts);
}

/// Sets the hook; true, so that it can initialise a variable.
inline bool install() noexcept {
  dashboard_start_hook() = &start;
  return true;
}

}  // namespace detail::dashboard
CORAY_END_NAMESPACE
