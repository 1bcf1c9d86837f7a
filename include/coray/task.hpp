#pragma once
/// Remote tasks: ray::task<f>.remote(args...) runs f in a worker process and returns an
/// object_ref to its result at once. Arguments are checked against f's parameters at
/// compile time; object_ref arguments are dependencies (f runs once they are ready and
/// receives their values). f may be a coroutine (returning ray::async<R>) that awaits
/// nested calls; the worker runs other tasks meanwhile.
///
///   int add(int a, int b) { return a + b; }
///   ray::object_ref<int> r = ray::task<add>.remote(1, 2);

#include <coray/async.hpp>
#include <coray/codec.hpp>
#include <coray/detail/runtime/make_call.hpp>
#include <coray/detail/runtime/process.hpp>
#include <coray/detail/runtime/retry_matcher.hpp>
#include <coray/detail/runtime/signature.hpp>
#include <coray/object_ref.hpp>
#include <coray/object_store.hpp>
#include <coray/sync_wait.hpp>
#include <cstddef>
#include <cstdint>
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

/// Per-call options of a task, as Ray's `f.options(...)`.
struct task_options {
  /// Re-runs after the worker running the task dies (and after a retryable exception).
  /// The final error says how many attempts were made.
  int max_retries = 3;
  /// Whether an exception thrown by the task is retried too.
  retry_policy retry_exceptions = false;
};

/// The remote form of the free function F: `ray::task<f>.remote(args...)`.
template <auto F>
struct remote_function {
  using traits = detail::function_traits<decltype(F)>;
  static_assert(traits::is_function && !traits::is_member,
                "ray::task<f>: f must be a free function or a static member function (call member "
                "functions on an actor: actor.call<&T::method>(...))");
  using params = typename traits::params;
  using result_type = detail::call_result_t<typename traits::return_type>;
  static_assert(std::is_void_v<result_type> || is_encodable_v<result_type>,
                "ray::task<f>: f's return type cannot be sent between processes; give it a "
                "`template <class Archive> void serialize(Archive&)` member");
  static_assert(detail::parameters_storable<params>(),
                "ray::task<f>: a parameter of f cannot be sent between processes (it must be "
                "encodable, a std::span<const T> or a std::string_view)");

  constexpr remote_function() noexcept = default;
  constexpr explicit remote_function(task_options o) noexcept : options_(o) {}

  /// The same function with other options: `ray::task<f>.options({.max_retries = 0}).remote(...)`.
  constexpr remote_function options(task_options o) const noexcept { return remote_function(o); }

  /// Submits the call and returns its result's ref at once. Thread-safe in the driver (any
  /// thread); inside a task, from the thread that runs the task.
  template <class... A>
  object_ref<result_type> remote(A&&... args) const {
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
        return object_ref<result_type>(
            detail::submit_from_any_thread("ray::task<f>.remote", [&](detail::process& p) {
              auto spec = detail::make_call<F>(p, std::forward<A>(args)...);
              spec.max_retries = options_.max_retries;
              spec.retry_matcher = options_.retry_exceptions.matcher;
              return spec;
            }));
      }
    }
    return {};
  }

 private:
  task_options options_{};
};

/// `ray::task<f>`: the handle through which f is called remotely.
template <auto F>
inline constexpr remote_function<F> task{};

CORAY_END_NAMESPACE
