#pragma once
/// The exceptions coray throws. All derive from ray::error and are thrown where the user
/// gets or awaits the result they concern.
///
/// CORAY_ERRORS is the one list of them. It declares the errors that carry only a message,
/// numbers every error for the wire (detail::error_kind) and is what detail/runtime/wire.hpp
/// walks to send an error and rebuild it in the receiving process, so every coray error keeps
/// its type across processes. Adding an error is one line there, plus its class above the
/// list if it has fields of its own (then `figures()`: see object_store_full).

#include <fmt/format.h>

#include <coray/version.hpp>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>

CORAY_BEGIN_NAMESPACE

/// Base of every coray exception.
struct error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// A task (or actor method) threw something that is not a coray error: carries the remote
/// exception's type name and what().
struct task_error : error {
  task_error(std::string type_name, std::string message, std::string function)
      : error(fmt::format("{} raised {}: {}", function, type_name, message)),
        type_name_(std::move(type_name)),
        message_(std::move(message)),
        function_(std::move(function)) {}
  /// Demangled type of the exception the callee threw, e.g. "std::out_of_range".
  const std::string& type_name() const noexcept { return type_name_; }
  /// The callee exception's what().
  const std::string& remote_what() const noexcept { return message_; }
  /// Name of the function that threw.
  const std::string& function() const noexcept { return function_; }

 private:
  std::string type_name_, message_, function_;
};

/// A value did not fit in the object store.
struct object_store_full : error {
  object_store_full(std::size_t requested, std::size_t free_bytes, std::size_t capacity)
      : error(fmt::format("object store full: requested {} bytes, {} free of {}", requested,
                          free_bytes, capacity)),
        requested_(requested),
        free_(free_bytes),
        capacity_(capacity) {}
  std::size_t requested() const noexcept { return requested_; }
  std::size_t free_bytes() const noexcept { return free_; }
  std::size_t capacity() const noexcept { return capacity_; }
  /// The numbers that cross processes, in the constructor's order.
  std::tuple<std::size_t, std::size_t, std::size_t> figures() const noexcept {
    return {requested_, free_, capacity_};
  }

 private:
  std::size_t requested_, free_, capacity_;
};

/// Every coray error, one line each: X(name, base, shape). Shape `message` declares
/// `struct name : base` constructed from its what(); `fields` names a class written above.
/// A line's place is the error's number on the wire, so new errors go at the end, and a base
/// comes before the errors derived from it.
// clang-format off
#define CORAY_ERRORS(X)                                                                         \
  X(task_error,        error,         fields)   /* a task threw a foreign exception */          \
  X(worker_crashed,    error,         message)  /* the call's worker died before replying */    \
  X(actor_died,        error,         message)  /* the actor's process died; so do its calls */ \
  X(object_store_full, error,         fields)   /* a value did not fit in the object store */   \
  X(get_timeout,       error,         message)  /* a get or wait with a timeout ran out */      \
  X(codec_error,       error,         message)  /* bytes that do not decode as the type */      \
  X(cancelled,         error,         message)  /* the result's call was cancelled */           \
  X(runtime_error,     error,         message)  /* the runtime could not do its work */         \
  X(queue_full,        error,         message)  /* a put found the queue full: queue.Full */    \
  X(queue_empty,       error,         message)  /* a get found the queue empty: queue.Empty */  \
  X(actor_not_found,   error,         message)  /* get_actor found no such live actor */        \
  X(usage_error,       runtime_error, message)  /* misuse: no runtime, wrong process, empty */  \
  X(internal_error,    error,         message)  /* a broken invariant: a bug in coray */        \
  X(broken_barrier,    error,         message)  /* a barrier broke: abort, timeout, a death */  \
  X(peer_died,         error,         message)  /* a wait's peer died: a condition's locker */ \
  X(key_error,         error,         message)  /* no such key in a dict: KeyError */          \
  X(index_error,       error,         message)  /* a list index out of range: IndexError */ \
  X(infeasible_resources, error,      message)  /* asks more than the runtime has, ever */    \
  X(invalid_resources, usage_error,   message)  /* a negative or NaN amount, a misplaced name */
// clang-format on

#define CORAY_DETAIL_ERROR_CLASS_message(name, base) \
  struct name : base {                               \
    using base::base;                                \
  };
#define CORAY_DETAIL_ERROR_CLASS_fields(name, base)
#define CORAY_DETAIL_ERROR_CLASS(name, base, shape) CORAY_DETAIL_ERROR_CLASS_##shape(name, base)
CORAY_ERRORS(CORAY_DETAIL_ERROR_CLASS)
#undef CORAY_DETAIL_ERROR_CLASS
#undef CORAY_DETAIL_ERROR_CLASS_fields
#undef CORAY_DETAIL_ERROR_CLASS_message

namespace detail {

/// A coray error's number on the wire: its line in CORAY_ERRORS.
enum class error_kind : std::uint8_t {
#define CORAY_DETAIL_ERROR_KIND(name, base, shape) name,
  CORAY_ERRORS(CORAY_DETAIL_ERROR_KIND)
#undef CORAY_DETAIL_ERROR_KIND
};

/// Calls `f(std::type_identity<E>{}, error_kind::E)` for every coray error E, in the list's
/// order (so a base before the errors derived from it).
template <class F>
constexpr void for_each_error(F&& f) {
#define CORAY_DETAIL_ERROR_VISIT(name, base, shape) f(std::type_identity<name>{}, error_kind::name);
  CORAY_ERRORS(CORAY_DETAIL_ERROR_VISIT)
#undef CORAY_DETAIL_ERROR_VISIT
}

}  // namespace detail
CORAY_END_NAMESPACE
