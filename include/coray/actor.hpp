#pragma once
/// Actors: a stateful object in a process of its own whose methods are called remotely.
/// ray::spawn<T>(args...) returns a ray::actor<T> at once and constructs T in the new process;
/// actor.call<&T::method>(args...) returns an object_ref to the method's result. Calls from
/// one caller run in the order they were made. The actor lives while a handle to it exists
/// in any process (or until ray::kill), and always ends with the driver.
///
///   struct counter {
///     explicit counter(int start) : n(start) {}
///     int incr(int by) { return n += by; }
///     int n;
///   };
///   ray::actor<counter> c = ray::spawn<counter>(10);
///   int v = ray::get(c.call<&counter::incr>(5));   // 15

#include <fmt/format.h>

#include <algorithm>
#include <coray/detail/runtime/actor_constructor.hpp>
#include <coray/detail/runtime/actor_state.hpp>
#include <coray/detail/runtime/driver.hpp>
#include <coray/detail/runtime/identity.hpp>
#include <coray/detail/runtime/make_call.hpp>
#include <coray/detail/runtime/signature.hpp>
#include <coray/sync_wait.hpp>
#include <coray/task.hpp>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE

struct actor_options {
  /// Registers the actor under this name for ray::get_actor (empty: anonymous).
  std::string name = {};
  /// How many calls may run at once. Calls to coroutine methods (ray::async) overlap on the
  /// actor's loop thread while they await (Ray's async actors); above 1, plain methods run
  /// on up to this many threads of the actor's process at once (Ray's threaded actors), so
  /// the class does its own locking. A method running on such a thread may not use the
  /// runtime (calls, puts, gets throw ray::usage_error): make it a coroutine for that.
  std::uint32_t max_concurrency = 1;
  /// false: plain methods run one at a time on the loop thread, between coroutine methods,
  /// whatever max_concurrency says (for a class that is not thread-safe).
  bool threaded = true;
  /// Named groups of calls with limits of their own (Ray's concurrency groups), such as
  /// {{"io", 2}, {"compute", 4}}: a call runs in the group it names (actor.options), else
  /// the one its method declares (ray::concurrency_group), else the default group, whose
  /// limit is max_concurrency. Each group starts its calls in order, up to its limit, and
  /// never waits behind another group's. With groups, plain methods run on threads (unless
  /// threaded is false). spawn throws usage_error for an unnamed group or a limit of 0.
  std::map<std::string, std::uint32_t> concurrency_groups = {};
  /// How many times the actor is rebuilt (its constructor run again with the same
  /// arguments, in a new process) after its process dies. 0: never; -1: always.
  int max_restarts = 0;
  /// How many times a call that was running when the actor died is run again on the
  /// rebuilt actor (else it fails with actor_died).
  int max_task_retries = 0;
  /// Resources the actor holds for as long as it lives, from before its constructor runs
  /// (Ray's rule: an actor given none waits for 1 free CPU to be placed and holds nothing
  /// after).
  /// Given any of these, it holds num_cpus (0 when unset), num_gpus and resources; its
  /// construction waits until they are free, and it runs with CUDA_VISIBLE_DEVICES set to
  /// its GPUs' ids for life (ray::get_gpu_ids()). spawn throws ray::invalid_resources for a
  /// negative or NaN amount and ray::infeasible_resources for more than the runtime has.
  std::optional<double> num_cpus = std::nullopt;
  double num_gpus = 0;
  std::map<std::string, double> resources = {};
  /// Which node its process runs on, in a cluster. Chosen once, at spawn: a restart rebuilds
  /// it on the same node.
  ray::scheduling_strategy scheduling_strategy = {};
};

/// The concurrency group `Method`'s calls run in when the call names none (Ray's
/// `@ray.method(concurrency_group=...)`); empty, or a group the actor was not spawned with:
/// the actor's default group. Declare it by specialising, next to the class:
///
///   template <> inline constexpr std::string_view ray::concurrency_group<&io_actor::read> = "io";
template <auto Method>
inline constexpr std::string_view concurrency_group{};

/// Options of one actor call (Ray's `actor.method.options(...)`).
struct call_options {
  /// The group the call runs in, one of the actor's concurrency_groups; empty: the one its
  /// method declares, else the default group. A name the actor lacks fails the call with
  /// usage_error.
  std::string_view concurrency_group = {};
};

namespace detail {
/// Registers the group `Method` declares, so that the actor's process finds it by id.
template <auto Method>
inline const bool method_group_registered =
    register_method_group(entity_id<Method>, group_hash(ray::concurrency_group<Method>));
}  // namespace detail

template <class T>
class actor_call;

/// A handle to an actor of type T: a value, copyable, and passable to tasks and to other
/// actors' methods, where it reaches the same actor.
template <class T>
class actor {
 public:
  actor() noexcept = default;
  explicit actor(detail::actor_ptr p) noexcept : p_(std::move(p)) {}

  /// Calls `Method` (a member function of T) in the actor's process; returns the result's
  /// ref at once. Arguments are checked against the method's parameters at compile time.
  /// Thread-safe in the driver; calls made by one thread run in the order it made them.
  template <auto Method, class... A>
  auto call(A&&... args) const {
    return call_in_group<Method>(0, std::forward<A>(args)...);
  }

  /// This actor with options for the calls made through it:
  /// `a.options({.concurrency_group = "io"}).call<&T::read>(path)`.
  actor_call<T> options(call_options o) const { return actor_call<T>(*this, o); }

  /// The actor's id, unique within the runtime; 0 for an empty handle.
  std::uint64_t id() const noexcept { return p_ ? p_.get()->id : 0; }
  bool valid() const noexcept { return static_cast<bool>(p_); }
  /// The actor's process id (0 while it starts or after it ended). Driver only.
  int pid() const { return detail::require_driver("actor<T>.pid()").actor_pid(id()); }

  friend bool operator==(const actor& a, const actor& b) noexcept { return a.id() == b.id(); }

  /// Handles are values: inside call arguments, put objects and results, alone or inside
  /// containers and structs. The id is sent, what holds the value (the call, the object)
  /// keeps the actor alive while it lives, and the process that reads it makes a handle of
  /// its own.
  template <class Archive>
  void serialize(Archive& ar) {
    std::uint64_t id = this->id();
    ar(id);
    if constexpr (Archive::is_loading) {
      p_ = detail::process::require().make_actor_handle(id);
    } else if constexpr (Archive::is_sizing) {
      if (id) detail::collect_actor_handle(id);
    }
  }

 private:
  friend class actor_call<T>;

  /// call<Method>, in concurrency group `group` (its group_hash; 0: the method's own).
  template <auto Method, class... A>
  auto call_in_group(std::uint32_t group, A&&... args) const {
    using traits = detail::function_traits<decltype(Method)>;
    static_assert(
        traits::is_member,
        "actor<T>.call<&T::method>(...): the template argument must be a member function of T");
    if constexpr (traits::is_member) {
      static_assert(std::is_base_of_v<typename traits::class_type, T>,
                    "actor<T>.call<&T::method>(...): the method belongs to another class than T");
      using params = typename traits::params;
      using result_type = detail::call_result_t<typename traits::return_type>;
      static_assert(std::is_void_v<result_type> || is_encodable_v<result_type>,
                    "actor<T>.call<&T::method>(...): the method's return type cannot be sent "
                    "between processes");
      static_assert(sizeof...(A) == traits::arity,
                    "actor<T>.call<&T::method>(...): wrong number of arguments for the method");
      if constexpr (sizeof...(A) == traits::arity) {
        constexpr bool fits =
            detail::arguments_fit<params, A...>(std::make_index_sequence<sizeof...(A)>{});
        static_assert(fits,
                      "actor<T>.call<&T::method>(...): an argument does not match the method's "
                      "parameter: pass the "
                      "parameter's type, a value convertible to it, or an object_ref of it");
        if constexpr (fits) {
          if (!p_) throw usage_error("actor<T>.call: the actor handle is empty");
          if constexpr (!ray::concurrency_group<Method>.empty())
            (void)detail::method_group_registered<Method>;
          return detail::submit_for<typename traits::return_type>(
              "actor<T>.call", [&](detail::process& p) {
                auto spec = detail::make_call<Method>(p, std::forward<A>(args)...);
                spec.target_actor = p_.get()->id;
                spec.group = group;
                return spec;
              });
        } else {
          return detail::call_refs_t<typename traits::return_type>{};
        }
      } else {
        return detail::call_refs_t<typename traits::return_type>{};
      }
    }
  }

  detail::actor_ptr p_;
};

/// An actor handle with options for its calls (actor<T>::options).
template <class T>
class actor_call {
 public:
  actor_call(actor<T> a, call_options o)
      : a_(std::move(a)), group_(detail::group_hash(o.concurrency_group)) {}
  /// As actor<T>::call, with the options.
  template <auto Method, class... A>
  auto call(A&&... args) const {
    return a_.template call_in_group<Method>(group_, std::forward<A>(args)...);
  }

 private:
  actor<T> a_;
  std::uint32_t group_;
};

namespace detail {

/// Options for the actors behind coray's multiprocessing objects (a ray::process, a pool's
/// processes, a queue, a manager): as Python's, they start at once and hold no CPU, rather
/// than wait for a free CPU to be placed as an actor given no resources does. What the
/// caller asked for explicitly stands.
/// Their classes are not thread-safe: plain methods stay on the loop thread.
inline actor_options multiprocessing_options(actor_options o = {}) {
  if (!o.num_cpus && o.num_gpus == 0 && o.resources.empty()) o.num_cpus = 0;
  o.threaded = false;
  return o;
}

/// An actor's concurrency groups as they travel; throws usage_error for a group without a
/// name, with a limit of 0, or whose name's hash another's has.
inline std::vector<std::pair<std::string, std::uint32_t>> checked_groups(
    const std::map<std::string, std::uint32_t>& wanted) {
  std::vector<std::pair<std::string, std::uint32_t>> groups;
  std::vector<std::uint32_t> hashes;
  for (const auto& [group, limit] : wanted) {
    const std::uint32_t h = group_hash(group);
    if (group.empty() || limit == 0 || std::find(hashes.begin(), hashes.end(), h) != hashes.end())
      throw usage_error(fmt::format(
          "ray::spawn: concurrency group '{}' with limit {}: a group needs a name of its own and a "
          "limit of at least 1",
          group, limit));
    hashes.push_back(h);
    groups.emplace_back(group, std::min(limit, max_concurrency_limit));
  }
  return groups;
}

/// ray::spawn, its process started as `start_as` says (0: by the runtime's start method,
/// else 1 + a start_method_id).
template <class T, class... A>
actor<T> spawn_as(actor_options opts, std::uint32_t start_as, A&&... args) {
  using ctor = detail::actor_constructor<T, detail::constructor_arg_t<A>...>;
  static_assert(std::is_constructible_v<T, detail::constructor_arg_t<A>&&...>,
                "ray::spawn<T>(args...): T has no constructor taking these arguments");
  static_assert(((detail::is_actor_v<A> || is_encodable_v<detail::constructor_arg_t<A>>)&&...),
                "ray::spawn<T>(args...): a constructor argument cannot be sent between processes");
  if constexpr (std::is_constructible_v<T, detail::constructor_arg_t<A>&&...>) {
    (void)ctor::registered;
    // Built on the calling thread (the arguments encoded there); started on the loop.
    auto request = [&](detail::process& p) {
      detail::require_usable_ref_arguments(args...);
      const auto groups = detail::checked_groups(opts.concurrency_groups);
      detail::actor_spawn_request req;
      // Checked before any argument takes a block.
      if (opts.num_cpus || opts.num_gpus != 0 || !opts.resources.empty())
        req.resources =
            std::make_shared<const detail::resource_request>(detail::resource_request::from(
                opts.num_cpus.value_or(0), opts.num_gpus, opts.resources, "ray::spawn"));
      req.constructor.fn_id = detail::entity_id<&ctor::marker>;
      req.constructor.name = detail::type_name_v<T>;
      (detail::add_argument<detail::constructor_arg_t<A>>(req.constructor, p,
                                                          std::forward<A>(args)),
       ...);
      req.type_id = detail::actor_type_id<T>;
      req.type_name = std::string(detail::type_name_v<T>);
      req.name = std::move(opts.name);
      req.max_concurrency = std::min(opts.max_concurrency, detail::max_concurrency_limit) |
                            (opts.threaded ? 0 : detail::plain_methods_on_loop);
      if (!groups.empty()) {
        // One more constructor argument, which the actor's process takes off (worker.hpp).
        detail::add_argument<decltype(groups)>(req.constructor, p, std::move(groups));
        req.max_concurrency |= detail::has_concurrency_groups;
      }
      req.max_restarts =
          opts.max_restarts < 0 ? std::numeric_limits<int>::max() : opts.max_restarts;
      req.max_task_retries =
          opts.max_task_retries < 0 ? std::numeric_limits<int>::max() : opts.max_task_retries;
      req.start_as = start_as;
      req.where = detail::placement_of(opts.scheduling_strategy, "ray::spawn");
      return req;
    };
    auto start = [](detail::process& p, detail::actor_spawn_request&& req) {
      return actor<T>(p.make_actor_handle(p.spawn_actor(std::move(req))));
    };
    if (!detail::needs_handoff()) {
      auto& p = detail::process::require("ray::spawn");
      return start(p, request(p));
    }
    detail::foreign_entry e("ray::spawn");
    auto req = request(e.get());
    return e.get().call_on_loop([&](detail::process& p) { return start(p, std::move(req)); });
  } else {
    return {};
  }
}

}  // namespace detail

/// Starts an actor: constructs T(args...) in a new process. Returns at once; calls queue
/// behind the construction. If the constructor throws, calls fail with actor_died.
template <class T, class... A>
actor<T> spawn(actor_options opts, A&&... args) {
  return detail::spawn_as<T>(std::move(opts), 0, std::forward<A>(args)...);
}

template <class T, class... A>
actor<T> spawn(A&&... args) {
  return spawn<T>(actor_options{}, std::forward<A>(args)...);
}

/// The live actor named `name`, from any process. Throws actor_not_found if there is none,
/// or if it is not a T.
template <class T>
actor<T> get_actor(std::string_view name) {
  return detail::on_loop("ray::get_actor", [&](detail::process& p) {
    auto info = p.lookup_actor(name);
    if (!info.id)
      throw actor_not_found(fmt::format("ray::get_actor: no live actor is named '{}'", name));
    if (info.type_id != detail::actor_type_id<T>)
      throw actor_not_found(fmt::format("ray::get_actor: the actor named '{}' is not a {}", name,
                                        detail::type_name_v<T>));
    return actor<T>(p.make_actor_handle(info.id));
  });
}

/// Ends the actor now (SIGKILL). Its pending and later calls fail with actor_died.
/// Thread-safe in the driver.
template <class T>
void kill(const actor<T>& a) {
  if (a.valid()) detail::on_loop("ray::kill", [&](detail::process& p) { p.kill_actor(a.id()); });
}

/// Ends the calling actor gracefully, as Ray's `ray.actor.exit_actor()`: the method calling
/// it completes and replies, calls queued behind it fail with actor_died saying the actor
/// exited, its destructor runs, and it is not restarted whatever its max_restarts. Inside an
/// actor's method only (ray::usage_error elsewhere), on the thread running its calls.
inline void exit_actor() {
  if (detail::this_process().kind != process_kind::actor)
    throw usage_error("ray::exit_actor: called outside an actor's method");
  detail::process::require("ray::exit_actor").exit_actor();
}

CORAY_END_NAMESPACE
