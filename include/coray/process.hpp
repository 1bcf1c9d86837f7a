#pragma once
/// ray::process: one function run in a new process of its own, Python's
/// multiprocessing.Process. The runtime's supervisor starts it by the runtime's start method,
/// or by the one a context chose (ray::get_context("spawn")). Driver only, on the runtime's
/// thread.
///
///   void greet(std::string who, ray::shared_value<int> seen) { seen.store(1); }
///
///   ray::process p(ray::target<greet>, std::string("bob"), seen);
///   p.start();
///   p.join();                    // p.exitcode() == 0; 1 had greet thrown, -9 after p.kill()
///   auto q = ray::get_context("spawn").process(ray::target<greet>, std::string("ann"), seen);

#include <fmt/format.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <coray/detail/mp/child_process.hpp>
#include <coray/detail/mp/shared_wait.hpp>
#include <coray/errors.hpp>
#include <coray/processes.hpp>
#include <coray/runtime.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE

/// Names a process's target: `ray::process p(ray::target<f>, args...)`.
template <auto F>
struct target_t {};
template <auto F>
inline constexpr target_t<F> target{};

class context;

/// A function and its arguments to run in a new process (multiprocessing.Process). Made in
/// the driver; start() starts it, join() waits for it. Moveable, not copyable. Every member
/// but name() and daemon() is for the driver's runtime thread, and throws ray::usage_error
/// elsewhere.
class process {
 public:
  /// No target: a placeholder that cannot be started.
  process() = default;

  /// F(args...) in a new process once started. F is a free or static member function; the
  /// arguments are converted to its parameters' types now and sent at start(): values, refs,
  /// actor handles and the runtime's shared things (shared_value, mutex, queue, a pipe's
  /// connection, event...).
  template <auto F, class... A>
  explicit process(target_t<F>, A&&... args) : s_(std::make_shared<detail::child_state>()) {
    using traits = detail::function_traits<decltype(F)>;
    static_assert(traits::is_function && !traits::is_member,
                  "ray::target<f>: f must be a free function or a static member function");
    if constexpr (traits::is_function && !traits::is_member) {
      static_assert(sizeof...(A) == traits::arity,
                    "ray::process(ray::target<f>, args...): wrong number of arguments for f");
      using body = typename detail::process_body_type<F>::type;
      static_assert(
          std::is_constructible_v<body, std::string,
                                  detail::constructor_arg_t<detail::put_type_t<A>>&&...>,
          "ray::process(ray::target<f>, args...): an argument does not convert to f's parameter");
      s_->spawner = std::make_unique<detail::child_spawner_of<body, detail::put_type_t<A>...>>(
          detail::put_type_t<A>(std::forward<A>(args))...);
    }
    static std::atomic<std::uint32_t> made{0};  // Python counts Process objects per process
    s_->name = fmt::format("Process-{}", ++made);
  }

  /// F(args...) in a new process started as `ctx` says.
  template <auto F, class... A>
  process(const context& ctx, target_t<F> t, A&&... args);

  process(process&&) noexcept = default;
  process& operator=(process&&) noexcept = default;

  /// Starts the process; returns once its pid is known, without waiting for F to begin.
  /// Throws ray::usage_error if it was started before or has no target.
  void start() {
    if (!s_ || (!s_->spawner && !s_->started))
      throw usage_error("ray::process::start: this process has no target");
    if (s_->started)
      throw usage_error(fmt::format(
          "ray::process::start: {} was already started (a process starts once)", s_->name));
    auto& d = detail::require_driver("ray::process::start");
    s_->handle = s_->spawner->spawn(d, s_->start_as, s_->name);
    s_->spawner.reset();
    s_->started = true;
    auto& children = detail::started_children();
    std::erase_if(children, [](const auto& c) { return c->exitcode.has_value(); });  // joined
    children.push_back(s_);
    detail::before_runtime_end() = &detail::end_children;
    // Its pid is the supervisor's to write, and it rings no one: served until it is there.
    while (!s_->pid && !s_->exitcode) {
      const auto next = detail::clock::now() + std::chrono::microseconds(200);
      d.run_until(
          [&] {
            s_->refresh(d);
            return s_->pid || s_->exitcode;
          },
          next);
    }
  }

  /// Waits for the process to end. Throws ray::usage_error if it was never started.
  void join() { (void)join_until(detail::clock::time_point::max()); }
  /// Waits at most `timeout` for the process to end; true if it has (then exitcode() is
  /// set). Python's join(timeout) returns None either way: check is_alive() or the result.
  template <class Rep, class Period>
  bool join(std::chrono::duration<Rep, Period> timeout) {
    return join_until(detail::deadline_in(timeout));
  }

  /// Started and not yet seen ended.
  bool is_alive() {
    if (!s_ || !s_->started) return false;
    return !refreshed().exitcode;
  }
  /// Empty while it runs (or before start); its exit code once it ended: 0 after F
  /// returned, 1 after F threw, -N if signal N ended it.
  std::optional<int> exitcode() {
    if (!s_ || !s_->started) return std::nullopt;
    return refreshed().exitcode;
  }
  /// Its process id; 0 before start().
  int pid() const noexcept { return s_ ? s_->pid : 0; }

  /// "Process-N" unless given another before start().
  const std::string& name() const {
    static const std::string none;
    return s_ ? s_->name : none;
  }
  void name(std::string n) {
    if (s_ && !s_->started) s_->name = std::move(n);
  }
  /// A daemon process is killed when the runtime ends; a non-daemon one (the default) is
  /// joined by the runtime's destructor, as Python joins non-daemon children at exit.
  bool daemon() const noexcept { return s_ && s_->daemon; }
  void daemon(bool d) {
    if (s_ && s_->started)
      throw usage_error("ray::process::daemon: set it before start(), as in Python");
    if (s_) s_->daemon = d;
  }

  /// Sends SIGTERM (the process ends with exitcode -15); nothing if it already ended.
  void terminate() { send_signal(SIGTERM, "terminate"); }
  /// Sends SIGKILL (exitcode -9); nothing if it already ended.
  void kill() { send_signal(SIGKILL, "kill"); }

 private:
  friend class context;

  /// Its state, with what the driver learnt: a death is taken in by serving the loop once,
  /// so that `while (p.is_alive())` ends.
  detail::child_state& refreshed() {
    if (s_->exitcode) return *s_;
    detail::driver& d = detail::require_driver("ray::process");
    d.serve_once();
    s_->refresh(d);
    return *s_;
  }
  void require_started(const char* what) const {
    if (!s_ || !s_->started)
      throw usage_error(fmt::format("ray::process::{}: {} was never started", what,
                                    s_ ? s_->name : std::string("a process without a target")));
  }
  bool join_until(detail::clock::time_point deadline) {
    require_started("join");
    return detail::join_child(detail::require_driver("ray::process::join"), *s_, deadline);
  }
  void send_signal(int sig, const char* what) {
    require_started(what);
    if (!refreshed().exitcode && s_->pid > 0) ::kill(s_->pid, sig);
  }

  std::shared_ptr<detail::child_state> s_;
};

/// A start method chosen for the processes made through it (multiprocessing's context).
class context {
 public:
  /// The start method of the runtime (CORAY_START_METHOD or runtime_options::start_method).
  context() = default;
  explicit context(ray::start_method m) : method_(m) {}

  /// nullopt: the runtime's.
  std::optional<ray::start_method> start_method() const noexcept { return method_; }

  /// ray::process(target, args...), started by this context's method.
  template <auto F, class... A>
  ray::process process(target_t<F> t, A&&... args) const {
    return ray::process(*this, t, std::forward<A>(args)...);
  }

 private:
  friend class ray::process;
  std::uint32_t start_as() const noexcept {
    if (!method_) return 0;
    return 1 + static_cast<std::uint32_t>(*method_ == ray::start_method::spawn
                                              ? detail::start_method_id::spawn
                                              : detail::start_method_id::fork);
  }
  std::optional<ray::start_method> method_;
};

template <auto F, class... A>
process::process(const context& ctx, target_t<F> t, A&&... args)
    : process(t, std::forward<A>(args)...) {
  s_->start_as = ctx.start_as();
}

/// The context of start method `method`: "fork" or "spawn" (Python also has "forkserver",
/// which coray's supervisor already is for fork); empty, the runtime's. Throws
/// ray::usage_error for another name.
inline context get_context(std::string_view method = {}) {
  if (method.empty()) return context();
  if (method == "fork") return context(start_method::fork);
  if (method == "spawn") return context(start_method::spawn);
  throw usage_error(
      fmt::format("ray::get_context: no start method is named '{}' (fork or spawn)", method));
}

CORAY_END_NAMESPACE
