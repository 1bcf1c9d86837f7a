#pragma once
/// Remote tasks: ray::task<f>.remote(args...) runs f in a worker process and returns an
/// object_ref to its result at once. Arguments are checked against f's parameters at
/// compile time; object_ref arguments are dependencies (f runs once they are ready and
/// receives their values). f may be a coroutine (returning ray::async<R>) that awaits
/// nested calls; the worker runs other tasks meanwhile.
///
///   int add(int a, int b) { return a + b; }
///   ray::object_ref<int> r = ray::task<add>.remote(1, 2);

#include <fmt/format.h>

#include <coray/async.hpp>
#include <coray/codec.hpp>
#include <coray/detail/runtime/make_call.hpp>
#include <coray/detail/runtime/process.hpp>
#include <coray/detail/runtime/resource_request.hpp>
#include <coray/detail/runtime/retry_matcher.hpp>
#include <coray/detail/runtime/signature.hpp>
#include <coray/object_ref.hpp>
#include <coray/object_store.hpp>
#include <coray/sync_wait.hpp>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

CORAY_BEGIN_NAMESPACE

/// Which exceptions of a task are retried: none (false, the default), all (true), or those
/// of given types (ray::retry_on<E...>, matching derived types too).
struct retry_policy {
  constexpr retry_policy(bool all = false) noexcept : matcher(all ? 1 : 0) {}
  constexpr retry_policy(std::uint64_t id, std::nullptr_t) noexcept : matcher(id) {}
  std::uint64_t matcher;
};

/// Retry a task when it throws one of E... (or a type derived from one):
/// `ray::task<f>.options({.retry_exceptions = ray::retry_on<std::runtime_error>})`.
template <class... E>
inline const retry_policy retry_on = retry_policy(detail::retry_matcher_id<E...>(), nullptr);

/// Where a task's calls or an actor run among a cluster's nodes (<coray/mpi.hpp>; nodes are
/// named by their MPI rank, as ray::nodes() lists them), as Ray's scheduling_strategy. The
/// default: this machine's processes first, then the other nodes'. Outside a cluster there is
/// one node, 0.
///
///   ray::task<f>.options({.scheduling_strategy = ray::spread}).remote(x);
///   ray::spawn<counter>({.scheduling_strategy = ray::node_affinity(2)});
struct scheduling_strategy {
  enum class kind : std::uint8_t { any, spread, node_affinity, placement_group };
  kind how = kind::any;
  int node = -1;            // node_affinity: the node's rank
  bool soft = false;        // node_affinity: elsewhere if that node is gone or could never run it
  std::uint64_t group = 0;  // placement_group: its id (ray::placement_group::strategy())
  int bundle = -1;          // placement_group: the bundle's index; -1: any of them
};

/// Spreads calls (or actors) over the nodes in turn (Ray's "SPREAD").
inline constexpr scheduling_strategy spread{scheduling_strategy::kind::spread};

/// Runs on node `node` (its rank) only; with `soft`, on another if that one is gone or could
/// never meet the call's resources (Ray's NodeAffinitySchedulingStrategy). Hard affinity to a
/// node the cluster lacks is refused with ray::infeasible_resources.
constexpr scheduling_strategy node_affinity(int node, bool soft = false) noexcept {
  return {scheduling_strategy::kind::node_affinity, node, soft};
}

namespace detail {
inline placement placement_of(const scheduling_strategy& s, const char* who) {
  placement p;
  if (s.how == scheduling_strategy::kind::spread) p.spread = true;
  if (s.how == scheduling_strategy::kind::node_affinity) {
    if (s.node < 0)
      throw invalid_resources(fmt::format(
          "{}: node_affinity({}) names no node (nodes are ranks, 0 or more)", who, s.node));
    p.node = s.node;
    p.soft = s.soft;
  }
  if (s.how == scheduling_strategy::kind::placement_group) {
    if (!s.group || s.bundle < -1)
      throw invalid_resources(fmt::format(
          "{}: a placement group strategy needs a placement group and a bundle index of -1 (any) "
          "or more",
          who));
    p.group = s.group;
    p.bundle = s.bundle;
  }
  return p;
}
}  // namespace detail

/// Per-call options of a task, as Ray's `f.options(...)`.
struct task_options {
  static constexpr int default_max_retries = 3;
  /// Re-runs after the worker running the task dies (and after a retryable exception).
  /// The final error says how many attempts were made.
  int max_retries = default_max_retries;
  /// Whether an exception thrown by the task is retried too.
  retry_policy retry_exceptions = false;
  /// CPUs the task holds while it runs (Ray's default, 1). A call waits until they are free.
  double num_cpus = 1;
  /// GPUs it holds while it runs: a fraction below 1 shares one GPU with other fractions, an
  /// amount of 1 or more must be whole. It runs with CUDA_VISIBLE_DEVICES set to its GPUs'
  /// ids (ray::get_gpu_ids()).
  double num_gpus = 0;
  /// Custom resources it holds while it runs, by the names the runtime was given.
  std::map<std::string, double> resources = {};
  /// Which node it runs on, in a cluster.
  ray::scheduling_strategy scheduling_strategy = {};
};

namespace detail {

/// What a task's calls carry of its options, resolved once.
struct task_call_options {
  int max_retries = task_options::default_max_retries;
  std::uint64_t retry_matcher = 0;
  std::shared_ptr<const resource_request> resources;  // null: the default, {CPU: 1}

  /// Throws invalid_resources for a negative or NaN amount.
  static task_call_options from(const task_options& o) {
    task_call_options c{o.max_retries, o.retry_exceptions.matcher, nullptr};
    auto r = resource_request::from(o.num_cpus, o.num_gpus, o.resources, "ray::task<f>.options");
    r.where = placement_of(o.scheduling_strategy, "ray::task<f>.options");
    if (!r.is_default_task()) c.resources = std::make_shared<const resource_request>(std::move(r));
    return c;
  }
};

/// What ray::task<f> and its configured forms share: the checks on f and the call itself.
template <auto F>
struct remote_function_base {
  using traits = detail::function_traits<decltype(F)>;
  static_assert(traits::is_function && !traits::is_member,
                "ray::task<f>: f must be a free function or a static member function (call member "
                "functions on an actor: actor.call<&T::method>(...))");
  using params = typename traits::params;
  using result_type = detail::call_result_t<typename traits::return_type>;
  /// What .remote returns: a ref to the result, or one per result (ray::returns).
  using refs_type = detail::call_refs_t<typename traits::return_type>;
  static_assert(std::is_void_v<result_type> || is_encodable_v<result_type>,
                "ray::task<f>: f's return type cannot be sent between processes; give it a "
                "`template <class Archive> void serialize(Archive&)` member");
  static_assert(detail::parameters_storable<params>(),
                "ray::task<f>: a parameter of f cannot be sent between processes (it must be "
                "encodable, a std::span<const T> or a std::string_view)");

 protected:
  template <class... A>
  static refs_type submit(int max_retries, std::uint64_t retry_matcher,
                          const std::shared_ptr<const resource_request>* resources, A&&... args) {
    static_assert(sizeof...(A) == traits::arity,
                  "ray::task<f>.remote(...): wrong number of arguments for f");
    if constexpr (sizeof...(A) == traits::arity) {
      constexpr bool fits =
          detail::arguments_fit<params, A...>(std::make_index_sequence<sizeof...(A)>{});
      static_assert(
          fits,
          "ray::task<f>.remote(...): an argument does not match f's parameter: pass the "
          "parameter's type, a value convertible to it, or an object_ref of it (non-const "
          "reference parameters are not allowed)");
      if constexpr (fits) {
        return detail::submit_for<typename traits::return_type>(
            "ray::task<f>.remote", [&](detail::process& p) {
              auto spec = detail::make_call<F>(p, std::forward<A>(args)...);
              spec.max_retries = max_retries;
              spec.retry_matcher = retry_matcher;
              if (resources) spec.resources = *resources;
              return spec;
            });
      }
    }
    return {};
  }
};

}  // namespace detail

/// A task with options other than the default: `ray::task<f>.options({...})`.
template <auto F>
class remote_function_with_options : detail::remote_function_base<F> {
  using base = detail::remote_function_base<F>;

 public:
  using result_type = typename base::result_type;
  using refs_type = typename base::refs_type;
  /// Throws invalid_resources for a negative or NaN amount.
  explicit remote_function_with_options(const task_options& o)
      : options_(detail::task_call_options::from(o)) {}

  /// The same function with other options.
  remote_function_with_options options(const task_options& o) const {
    return remote_function_with_options(o);
  }

  /// Submits the call and returns its result's ref at once; ray::task<f>.remote's contract.
  /// A call whose resources the runtime could never provide fails at once with
  /// ray::infeasible_resources (its ref throws it).
  template <class... A>
  refs_type remote(A&&... args) const {
    return base::submit(options_.max_retries, options_.retry_matcher,
                        options_.resources ? &options_.resources : nullptr,
                        std::forward<A>(args)...);
  }

 private:
  detail::task_call_options options_;
};

/// The remote form of the free function F: `ray::task<f>.remote(args...)`.
template <auto F>
struct remote_function : detail::remote_function_base<F> {
  using result_type = typename detail::remote_function_base<F>::result_type;
  using refs_type = typename detail::remote_function_base<F>::refs_type;

  constexpr remote_function() noexcept = default;

  /// The same function with other options:
  /// `ray::task<f>.options({.max_retries = 0, .num_gpus = 0.5}).remote(...)`. Throws
  /// invalid_resources for a negative or NaN amount.
  remote_function_with_options<F> options(const task_options& o) const {
    return remote_function_with_options<F>(o);
  }

  /// Submits the call and returns its result's ref at once. Thread-safe in the driver (any
  /// thread); inside a task, from the thread that runs the task.
  template <class... A>
  refs_type remote(A&&... args) const {
    return this->submit(task_options::default_max_retries, 0, nullptr, std::forward<A>(args)...);
  }
};

/// `ray::task<f>`: the handle through which f is called remotely.
template <auto F>
inline constexpr remote_function<F> task{};

CORAY_END_NAMESPACE
