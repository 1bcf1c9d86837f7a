// The dashboard (issue 14, items 5 and 6): each view's JSON shows what the program made, the
// logs follow live, the kill button kills, and the server is secure by default: forged Host,
// missing or wrong token, another origin -> 403; other methods -> 405; traversal -> 404;
// malformed -> 400; 100 clients at once never stall the runtime.
#include <doctest/doctest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <coray/actor.hpp>
#include <coray/dashboard.hpp>
#include <coray/detail/dashboard/log_book.hpp>
#include <coray/detail/dashboard/snapshot.hpp>
#include <coray/metrics.hpp>
#include <coray/object_store.hpp>
#include <coray/processes.hpp>
#include <coray/runtime.hpp>
#include <coray/task.hpp>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace dashboard_test {

int square(int x) { return x * x; }
int say(int i) {
  std::printf("dashboard line %d\n", i);
  std::fflush(stdout);
  return i;
}

/// A ref's value (ray::get hands back an awaitable that converts once).
template <class T>
T value(const ray::object_ref<T>& ref) {
  return ray::get(ref);
}
std::vector<int> values(const std::vector<ray::object_ref<int>>& refs) { return ray::get(refs); }

struct counter {
  int n = 0;
  int incr() { return ++n; }
};

// User metrics recorded in a task and in an actor, into the table the driver's series share.
int served(int k) {
  ray::metrics::counter("app_served_total", "Requests served", {"route"})
      .inc(k, {{"route", "/predict"}});
  ray::metrics::histogram("app_latency_seconds", "Latency", {0.01, 0.1, 1}).observe(0.05);
  return k;
}
struct depth_reporter {
  void report(double d) { ray::metrics::gauge("app_queue_depth", "Queued items").set(d); }
};

/// The value on the line of `text` that starts with `series` followed by a space; -1 if none.
double sample(const std::string& text, const std::string& series) {
  std::size_t at = 0;
  while ((at = text.find(series + " ", at)) != std::string::npos) {
    if (at == 0 || text[at - 1] == '\n') return std::stod(text.substr(at + series.size() + 1));
    at += series.size();
  }
  return -1;
}

struct address {
  std::string host;
  int port = 0;
  std::string token;
};
address parse(const std::string& url) {
  // http://HOST:PORT/?token=TOKEN
  const auto host_at = url.find("://") + 3, colon = url.find(':', host_at),
             slash = url.find('/', colon), token_at = url.find("token=");
  REQUIRE(token_at != std::string::npos);
  return {url.substr(host_at, colon - host_at), std::stoi(url.substr(colon + 1, slash - colon - 1)),
          url.substr(token_at + 6)};
}

httplib::Client client(const address& a) {
  httplib::Client c(a.host, a.port);
  c.set_connection_timeout(5);
  c.set_read_timeout(10);
  return c;
}

/// Runs `f` on another thread while this one (the runtime's) serves the loop: the dashboard
/// reads the runtime on the loop, as any other thread does.
template <class F>
auto off_loop(ray::runtime& rt, F f) -> decltype(f()) {
  std::optional<decltype(f())> out;
  std::exception_ptr error;
  std::atomic<bool> done{false};
  std::thread t([&] {
    try {
      out.emplace(f());
    } catch (...) {
      error = std::current_exception();
    }
    done = true;
  });
  rt.serve_until([&] { return done.load(); });
  t.join();
  if (error) std::rethrow_exception(error);
  return std::move(*out);
}

/// GETs `path` until `ok(json)` holds (or 10 s pass), serving the runtime meanwhile.
template <class Ok>
nlohmann::json poll(ray::runtime& rt, const address& a, const std::string& path, Ok ok) {
  return off_loop(rt, [&] {
    auto c = client(a);
    nlohmann::json j;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    do {
      auto r = c.Get(path.c_str());
      if (r && r->status == 200) {
        j = nlohmann::json::parse(r->body);
        if (ok(j)) return j;  // non-const: a missing key reads as null
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    } while (std::chrono::steady_clock::now() < deadline);
    return j;
  });
}

int status(httplib::Result r) { return r ? r->status : -1; }

/// Sends `raw` as it is and returns the status line's code.
int raw_status(const address& a, const std::string& raw) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(static_cast<std::uint16_t>(a.port));
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) == 0);
  REQUIRE(::write(fd, raw.data(), raw.size()) == static_cast<ssize_t>(raw.size()));
  char buf[256] = {};
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n < 12) return -1;
  return std::atoi(buf + 9);  // "HTTP/1.1 400 ..."
}

ray::runtime_options with_dashboard(std::uint32_t workers = 2) {
  return {.num_workers = workers,
          .log_to_driver = false,
          .include_dashboard = true,
          .dashboard_port = 0};
}

}  // namespace dashboard_test

using namespace dashboard_test;

TEST_CASE("the dashboard prints a URL with a token and serves its page and configuration") {
  ray::runtime rt(with_dashboard());
  const std::string url = rt.dashboard_url();
  CHECK(url.starts_with("http://127.0.0.1:"));
  const address a = parse(url);
  CHECK(a.token.size() == 32);
  auto c = client(a);
  auto page = c.Get("/");
  REQUIRE(page);
  CHECK(page->status == 200);
  CHECK(page->get_header_value("Content-Type").starts_with("text/html"));
  CHECK(page->body.find("coray dashboard") != std::string::npos);
  CHECK(page->body.find("<script src") == std::string::npos);  // self-contained: no CDN
  CHECK(page->body.find("<link") == std::string::npos);
  auto config = c.Get("/api/config");
  REQUIRE(config);
  const auto j = nlohmann::json::parse(config->body);
  CHECK(j.at("num_workers") == 2);
  CHECK(j.at("dashboard_host") == "127.0.0.1");
  CHECK(j.at("log_to_driver") == false);
}

TEST_CASE("the views list the program's processes, actors, calls and objects") {
  ray::runtime rt(with_dashboard());
  const address a = parse(rt.dashboard_url());
  auto ctr = ray::spawn<counter>(ray::actor_options{.name = "tally"});
  CHECK(value(ctr.call<&counter::incr>()) == 1);
  CHECK(value(ctr.call<&counter::incr>()) == 2);
  std::vector<ray::object_ref<int>> refs;
  for (int i = 0; i < 3; ++i) refs.push_back(ray::task<square>.remote(i));
  CHECK(values(refs) == std::vector<int>{0, 1, 4});
  auto big = ray::put(std::vector<double>(1 << 18, 2.0));  // 2 MiB: in the store

  auto actors = poll(rt, a, "/api/actors", [](nlohmann::json& j) {
    return !j["actors"].empty() && j["actors"][0]["calls_done"] == 3;  // its construction too
  });
  REQUIRE(actors["actors"].size() == 1);
  const auto& actor = actors["actors"][0];
  CHECK(actor["class_name"] == "dashboard_test::counter");
  CHECK(actor["name"] == "tally");
  CHECK(actor["state"] == "ALIVE");
  CHECK(actor["pid"] == ray::actor_process(ctr).pid);

  auto tasks = poll(rt, a, "/api/tasks", [](nlohmann::json& j) {
    return j["summary"].contains("dashboard_test::square");
  });
  CHECK(tasks["summary"]["dashboard_test::square"]["FINISHED"] == 3);
  CHECK(tasks["total"] == 6);  // and the actor's construction and its two calls

  auto objects = poll(rt, a, "/api/objects", [](nlohmann::json& j) {
    for (auto& o : j["objects"])
      if (o["size"].get<std::size_t>() >= (2u << 20) && o["location"] == "STORE") return true;
    return false;
  });
  CHECK(objects["store"]["used"].get<std::size_t>() >= (2u << 20));

  auto nodes = poll(rt, a, "/api/nodes", [](nlohmann::json& j) {
    return j["processes"].size() == 4;  // the driver, two task workers, the actor
  });
  REQUIRE(nodes["processes"].size() == 4);
  CHECK(nodes["processes"][0]["role"] == "driver");
  CHECK(nodes["processes"][0]["pid"] == static_cast<int>(getpid()));
  CHECK(nodes["processes"][0]["rss_bytes"].get<std::uint64_t>() > 0);
  const auto pids = rt.worker_pids();
  CHECK(nodes["processes"][1]["pid"] == pids[0]);
  CHECK(nodes["processes"][3]["role"] == "actor");
  CHECK(nodes["processes"][3]["name"] == "counter");
  CHECK(nodes["node"]["resources_total"]["CPU"].get<double>() > 0);
  (void)big;
}

TEST_CASE("the logs show what workers print, all together and per process, following live") {
  ray::runtime rt(with_dashboard(1));
  const address a = parse(rt.dashboard_url());
  CHECK(value(ray::task<say>.remote(1)) == 1);
  const int pid = rt.worker_pids()[0];
  auto all = poll(rt, a, "/api/logs", [](nlohmann::json& j) {
    return j["text"].get<std::string>().find("dashboard line 1") != std::string::npos;
  });
  const std::string text = all["text"];
  CHECK(text.find("(say pid=" + std::to_string(pid) + ") dashboard line 1\n") != std::string::npos);
  const auto next = all["next"].get<std::uint64_t>();

  CHECK(value(ray::task<say>.remote(2)) == 2);
  auto later = poll(rt, a, "/api/logs?since=" + std::to_string(next), [](nlohmann::json& j) {
    return j["text"].get<std::string>().find("dashboard line 2") != std::string::npos;
  });
  CHECK(later["start"] == next);
  CHECK(later["text"].get<std::string>().find("dashboard line 1") == std::string::npos);

  auto one = poll(rt, a, "/api/logs/" + std::to_string(pid), [](nlohmann::json& j) {
    return j["text"].get<std::string>().find("dashboard line 2") != std::string::npos;
  });
  CHECK(one["text"] == "dashboard line 1\ndashboard line 2\n");
  CHECK(status(client(a).Get("/api/logs/999999999")) == 404);
}

TEST_CASE("the kill button kills the actor: its next call fails with actor_died") {
  ray::runtime rt(with_dashboard(1));
  const address a = parse(rt.dashboard_url());
  auto ctr = ray::spawn<counter>();
  CHECK(value(ctr.call<&counter::incr>()) == 1);
  auto actors = poll(rt, a, "/api/actors", [](nlohmann::json& j) {
    return !j["actors"].empty() && j["actors"][0]["state"] == "ALIVE";
  });
  const auto id = actors["actors"][0]["id"].get<std::uint64_t>();
  const std::string kill = "/api/actors/" + std::to_string(id) + "/kill";
  const int got = off_loop(rt, [&] {
    auto c = client(a);
    return status(
        c.Post(kill.c_str(), httplib::Headers{{"X-Coray-Token", a.token}}, "", "text/plain"));
  });
  CHECK(got == 200);
  CHECK_THROWS_AS((void)value(ctr.call<&counter::incr>()), ray::actor_died);
  poll(rt, a, "/api/actors", [](nlohmann::json& j) { return j["actors"][0]["state"] == "DEAD"; });
  CHECK(status(client(a).Post("/api/actors/999999/kill",
                              httplib::Headers{{"X-Coray-Token", a.token}}, "", "text/plain")) ==
        404);
}

TEST_CASE("security: a forged Host is refused, localhost and the bound address are served") {
  ray::runtime rt(with_dashboard(1));
  const address a = parse(rt.dashboard_url());
  auto c = client(a);
  CHECK(status(c.Get("/api/config")) == 200);  // Host: 127.0.0.1:port
  const std::string port = std::to_string(a.port);
  CHECK(status(c.Get("/api/config", {{"Host", "localhost:" + port}})) == 200);
  CHECK(status(c.Get("/api/config", {{"Host", "evil.example:" + port}})) == 403);
  CHECK(status(c.Get("/api/config", {{"Host", "127.0.0.1:1"}})) == 403);
  CHECK(raw_status(a, "GET /api/config HTTP/1.0\r\n\r\n") == 403);  // no Host at all
}

TEST_CASE("security: an action needs POST, the run's token and the page's own origin") {
  ray::runtime rt(with_dashboard(1));
  const address a = parse(rt.dashboard_url());
  auto ctr = ray::spawn<counter>();
  CHECK(value(ctr.call<&counter::incr>()) == 1);
  auto actors = poll(rt, a, "/api/actors", [](nlohmann::json& j) { return !j["actors"].empty(); });
  const std::string kill =
      "/api/actors/" + std::to_string(actors["actors"][0]["id"].get<std::uint64_t>()) + "/kill";
  auto c = client(a);
  CHECK(status(c.Post(kill.c_str(), "", "text/plain")) == 403);  // no token
  CHECK(status(c.Post(kill.c_str(), {{"X-Coray-Token", "0123"}}, "", "text/plain")) == 403);
  CHECK(status(c.Post((kill + "?token=" + std::string(32, '0')).c_str(), "", "text/plain")) == 403);
  CHECK(status(c.Post(kill.c_str(), {{"X-Coray-Token", a.token}, {"Origin", "http://evil.example"}},
                      "", "text/plain")) == 403);
  CHECK(status(c.Get(kill.c_str(), {{"X-Coray-Token", a.token}})) == 405);  // an action is POST
  CHECK(status(c.Post("/api/config", {{"X-Coray-Token", a.token}}, "", "text/plain")) == 405);
  CHECK(status(c.Delete(kill.c_str(), {{"X-Coray-Token", a.token}})) == 405);
  CHECK(status(c.Put(kill.c_str(), {{"X-Coray-Token", a.token}}, "", "text/plain")) == 405);
  CHECK(status(c.Patch("/api/actors", "", "text/plain")) == 405);
  CHECK(status(c.Options("/api/actors")) == 405);
  CHECK(status(c.Delete("/api/actors")) == 405);
  CHECK(value(ctr.call<&counter::incr>()) == 2);  // none of them killed it
  // The page's own origin with the token may.
  const int got = off_loop(rt, [&] {
    auto own = client(a);
    return status(own.Post(
        kill.c_str(),
        {{"X-Coray-Token", a.token}, {"Origin", "http://127.0.0.1:" + std::to_string(a.port)}}, "",
        "text/plain"));
  });
  CHECK(got == 200);
  CHECK_THROWS_AS((void)value(ctr.call<&counter::incr>()), ray::actor_died);
}

TEST_CASE("security: unknown paths and traversal are 404, a malformed request 400") {
  ray::runtime rt(with_dashboard(1));
  const address a = parse(rt.dashboard_url());
  auto c = client(a);
  CHECK(status(c.Get("/nope")) == 404);
  CHECK(status(c.Get("/api/logs/../../etc/passwd")) == 404);
  CHECK(raw_status(a, "GET /../etc/passwd HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(a.port) +
                          "\r\n\r\n") == 404);
  CHECK(raw_status(a, "GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: 127.0.0.1:" +
                          std::to_string(a.port) + "\r\n\r\n") == 404);
  CHECK(raw_status(a, "GET /api/logs/%2e%2e%2f%2e%2e%2fetc%2fpasswd HTTP/1.1\r\nHost: 127.0.0.1:" +
                          std::to_string(a.port) + "\r\n\r\n") == 404);
  CHECK(raw_status(a, "THIS IS NOT HTTP\r\n\r\n") == 400);
  CHECK(raw_status(a, "GET\r\n\r\n") == 400);
}

TEST_CASE("security: bound beyond loopback, every request needs the token") {
  ray::runtime_options opts = with_dashboard(1);
  opts.dashboard_host = "0.0.0.0";
  ray::runtime rt(opts);
  address a = parse(rt.dashboard_url());
  CHECK(a.host == "0.0.0.0");
  a.host = "127.0.0.1";
  auto c = client(a);
  CHECK(status(c.Get("/api/config")) == 403);
  CHECK(status(c.Get("/")) == 403);
  CHECK(status(c.Get(("/api/config?token=" + a.token).c_str())) == 200);
  CHECK(status(c.Get("/api/config", {{"X-Coray-Token", a.token}})) == 200);
}

TEST_CASE("a dashboard port in use moves to the next free one, which the URL names") {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in at{};
  at.sin_family = AF_INET;
  at.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&at), sizeof at) == 0);
  REQUIRE(::listen(fd, 1) == 0);
  socklen_t len = sizeof at;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&at), &len) == 0);
  const int taken = ntohs(at.sin_port);
  if (taken < 65000) {
    ray::runtime_options opts = with_dashboard(1);
    opts.dashboard_port = static_cast<std::uint16_t>(taken);
    ray::runtime rt(opts);
    const address a = parse(rt.dashboard_url());
    CHECK(a.port > taken);
    CHECK(status(client(a).Get("/api/config")) == 200);
  }
  ::close(fd);
}

TEST_CASE("CORAY_DASHBOARD=1 turns the dashboard on, and without its code a runtime refuses it") {
  {
    setenv("CORAY_DASHBOARD", "1", 1);
    ray::runtime rt({.num_workers = 1, .dashboard_port = 0});
    unsetenv("CORAY_DASHBOARD");
    CHECK(rt.dashboard_url().starts_with("http://127.0.0.1:"));
  }
  {
    ray::runtime rt({.num_workers = 1});
    CHECK(rt.dashboard_url().empty());
  }
  auto saved = ray::detail::dashboard_start_hook();
  ray::detail::dashboard_start_hook() = nullptr;
  CHECK_THROWS_WITH_AS(ray::runtime(with_dashboard(1)), doctest::Contains("coray/dashboard.hpp"),
                       ray::usage_error);
  ray::detail::dashboard_start_hook() = saved;
}

TEST_CASE("a hundred clients at once are served or refused while the runtime's calls complete") {
  ray::runtime rt(with_dashboard(2));
  const address a = parse(rt.dashboard_url());
  std::atomic<int> served{0}, refused{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < 100; ++i)
    clients.emplace_back([&] {
      auto c = client(a);
      const int s = status(c.Get("/api/tasks"));
      (s == 200 ? served : refused)++;
    });
  std::vector<ray::object_ref<int>> refs;
  for (int i = 0; i < 200; ++i) refs.push_back(ray::task<square>.remote(i));
  const std::vector<int> got = values(refs);
  CHECK(got[199] == 199 * 199);
  for (auto& t : clients) t.join();
  CHECK(served + refused == 100);
  CHECK(served > 0);
  CHECK(value(ray::task<square>.remote(7)) == 49);  // and it goes on
}

TEST_CASE("what is new in a process's output is what follows its overlap with the last read") {
  using ray::detail::dashboard::appended;
  CHECK(appended("", "a\n") == "a\n");
  CHECK(appended("a\n", "a\nb\n") == "b\n");
  CHECK(appended("a\nb\n", "a\nb\n").empty());
  std::string before;
  for (int i = 0; i < 200; ++i) before += "line " + std::to_string(i) + "\n";
  // The supervisor's window dropped its front and took two lines more.
  CHECK(appended(before, before.substr(700) + "line 200\nline 201\n") == "line 200\nline 201\n");
  CHECK(appended("x\n", "y\n") == "y\n");  // no overlap: all of it is new

  ray::detail::dashboard::bounded_text text(8);
  text.append("0123456789");  // keeps "23456789"
  CHECK(text.end() == 10);
  CHECK(text.since(0)["text"] == "23456789");
  CHECK(text.since(0)["start"] == 2);
  CHECK(text.since(7)["text"] == "789");
  CHECK(text.since(10)["text"] == "");
  CHECK(text.since(99)["next"] == 10);
}

TEST_CASE("/metrics serves the runtime's metrics and the user's from every process") {
  ray::runtime rt(with_dashboard());
  const address a = parse(rt.dashboard_url());
  ray::metrics::counter requests("app_served_total", "Requests served", {"route"});
  requests.inc(2, {{"route", "/predict"}});
  CHECK(value(ray::task<served>.remote(3)) == 3);
  auto d = ray::spawn<depth_reporter>();
  ray::get(d.call<&depth_reporter::report>(7.5)).get();
  CHECK(values({ray::task<square>.remote(2), ray::task<square>.remote(3)}).size() == 2);

  const std::string text = off_loop(rt, [&] {
    auto c = client(a);
    std::string body;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    do {  // until a snapshot taken after the calls above
      auto r = c.Get("/metrics");
      if (r && r->status == 200) {
        CHECK(r->get_header_value("Content-Type").starts_with("text/plain"));
        body = r->body;
        if (sample(body, "app_queue_depth") == 7.5) break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    } while (std::chrono::steady_clock::now() < deadline);
    return body;
  });
  CHECK(text.find("# TYPE app_served_total counter") != std::string::npos);
  CHECK(sample(text, "app_served_total{route=\"/predict\"}") == 5);
  CHECK(sample(text, "app_queue_depth") == 7.5);
  CHECK(sample(text, "app_latency_seconds_bucket{le=\"0.01\"}") == 0);
  CHECK(sample(text, "app_latency_seconds_bucket{le=\"0.1\"}") == 1);
  CHECK(sample(text, "app_latency_seconds_bucket{le=\"+Inf\"}") == 1);
  CHECK(sample(text, "app_latency_seconds_count") == 1);
  CHECK(sample(text, "coray_tasks{function=\"dashboard_test::square\",state=\"FINISHED\"}") == 2);
  CHECK(sample(text, "coray_actors{state=\"ALIVE\"}") >= 1);
  CHECK(sample(text, "coray_object_store_capacity_bytes") > 0);
  CHECK(text.find("coray_process_resident_memory_bytes{pid=\"" + std::to_string(getpid()) +
                  "\",role=\"driver\"}") != std::string::npos);
  // A metric is refused where its use is wrong, with the reason.
  CHECK_THROWS_AS(ray::metrics::counter("9 bad name"), ray::usage_error);
  CHECK_THROWS_AS(requests.inc(1), ray::usage_error);  // its tag is missing
  CHECK_THROWS_AS(requests.inc(-1, {{"route", "/"}}), ray::usage_error);
  CHECK_THROWS_AS(ray::metrics::gauge("app_served_total").set(1), ray::usage_error);
}

TEST_CASE("the timeline view shows the last seconds' calls, and the whole is a download") {
  ray::runtime_options o = with_dashboard();
  o.record_timeline = true;
  ray::runtime rt(o);
  const address a = parse(rt.dashboard_url());
  std::vector<ray::object_ref<int>> refs;
  for (int i = 0; i < 4; ++i) refs.push_back(ray::task<square>.remote(i));
  CHECK(values(refs) == std::vector<int>{0, 1, 4, 9});

  auto recent = poll(rt, a, "/api/timeline?seconds=30", [](nlohmann::json& j) {
    int squares = 0;
    for (auto& t : j["tracks"])
      for (auto& s : t["slices"]) squares += s["name"] == "dashboard_test::square" ? 1 : 0;
    return squares == 4;
  });
  CHECK(recent["recording"] == true);
  CHECK(recent["window_s"] == 30);
  REQUIRE(!recent["tracks"].empty());
  for (auto& t : recent["tracks"]) {
    CHECK(t["kind"] == "worker");
    for (auto& s : t["slices"]) {
      CHECK(s["start_us"].get<double>() <= s["end_us"].get<double>());
      CHECK(s["end_us"].get<double>() <= 0);  // before now
      CHECK(s["start_us"].get<double>() >= -30e6);
    }
  }

  off_loop(rt, [&] {
    auto c = client(a);
    auto r = c.Get("/api/timeline/trace");
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->get_header_value("Content-Disposition").find("attachment") != std::string::npos);
    const auto trace = nlohmann::json::parse(r->body);
    int slices = 0;
    for (auto& e : trace["traceEvents"])
      slices += e["ph"] == "X" && e["name"] == "dashboard_test::square" ? 1 : 0;
    CHECK(slices == 4);
    return 0;
  });
}

TEST_CASE("without recording, the timeline view says so and there is nothing to download") {
  ray::runtime rt(with_dashboard());
  const address a = parse(rt.dashboard_url());
  off_loop(rt, [&] {
    auto c = client(a);
    auto r = c.Get("/api/timeline");
    REQUIRE(r);
    CHECK(nlohmann::json::parse(r->body)["recording"] == false);
    CHECK(status(c.Get("/api/timeline/trace")) == 404);
    return 0;
  });
}

TEST_CASE("another node's processes show the CPU and memory their node reported, or none") {
  // The machine view of a cluster's records (as ray::state gives them on rank 0): a worker on
  // node 1 that its node reported, and one it has not yet.
  ray::detail::dashboard::snapshot_maker maker(nlohmann::json::object());
  ray::detail::dashboard::loop_view v;
  ray::state::worker_info reported, silent;
  reported.pid = 4242;
  reported.alive = true;
  reported.node = 1;
  reported.cpu_seconds = 2.5;
  reported.rss_bytes = std::uint64_t{3} << 20;
  silent.pid = 4343;
  silent.alive = true;
  silent.node = 2;
  v.workers = {reported, silent};
  auto processes = nlohmann::json::parse(maker.make(v).nodes)["processes"];
  REQUIRE(processes.size() == 3);  // the driver, then the two workers
  CHECK(processes[1]["node"] == 1);
  CHECK(processes[1]["rss_bytes"] == std::uint64_t{3} << 20);
  CHECK(processes[1]["cpu_percent"].is_number());
  CHECK(processes[2]["node"] == 2);
  CHECK(processes[2]["rss_bytes"].is_null());
  CHECK(processes[2]["cpu_percent"].is_null());
  // /metrics names the node of another node's process (its pid is that node's).
  CHECK(maker.make(v).metrics.find("coray_process_resident_memory_bytes{pid=\"4242\",role=\"task_"
                                   "worker\",node=\"1\"} 3145728") != std::string::npos);
}
