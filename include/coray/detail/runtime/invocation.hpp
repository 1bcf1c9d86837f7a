#pragma once
/// One call being run in a worker, and `call_host`, the narrow face of the worker that the
/// callee's side (invoker.hpp, actor_constructor.hpp) replies through. Those are templates,
/// compiled in every program that names a task or an actor; they see this interface, never
/// the worker class, so the worker's own code (worker.hpp) is compiled only where a process
/// is started: once, in coray::coray_compiled, in compiled mode.

#include <coray/detail/runtime/registry.hpp>
#include <coray/detail/runtime/wire.hpp>
#include <coray/detail/shm/segment.hpp>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <span>
#include <string_view>
#include <type_traits>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// What a call running in a worker may ask of it.
class call_host {
 public:
  /// Replies to the driver with a call's value: `size` bytes written by `fill`; large
  /// values go through the store.
  template <class Fill>
  void reply_value(std::uint64_t task_id, std::size_t size, Fill&& fill) {
    using F = std::remove_reference_t<Fill>;
    reply_filled(
        task_id, size, [](void* f, std::byte* out) { (*static_cast<F*>(f))(out); },
        const_cast<void*>(static_cast<const void*>(std::addressof(fill))));
  }
  /// Replies with an error; `retryable` when the caller's retry policy matches it.
  void reply_error(std::uint64_t task_id, const wire_error& e, bool retryable = false) {
    reply_failed(task_id, e, retryable);
  }
  /// Actor construction: the invoker hands over the new object and how to destroy it.
  virtual void set_instance(void* instance, void (*destroy)(void*)) noexcept = 0;
  /// The name this process's output is shown under from now on (an actor's class, before
  /// its constructor runs).
  virtual void name_output(std::string_view name) noexcept = 0;
  /// An actor method call ended (its reply is sent); the next queued call may start.
  virtual void call_finished() noexcept = 0;

 protected:
  ~call_host() = default;
  virtual void reply_filled(std::uint64_t task_id, std::size_t size,
                            void (*fill)(void*, std::byte*), void* context) = 0;
  virtual void reply_failed(std::uint64_t task_id, const wire_error& e, bool retryable) = 0;
};

/// One call being run in this worker: what the invoker needs to decode the arguments and to
/// reply.
struct invocation {
  call_host& self;
  segment& seg;  // where arguments in blocks live
  std::uint64_t task_id;
  std::span<const std::byte> args;  // arg_entry records, 16-byte aligned
  std::uint32_t nargs;
  std::string_view name;
  void* instance;               // the actor's object, for method calls
  std::uint64_t retry_matcher;  // which exceptions the caller retries

  /// Replies with the exception in flight (call from a catch block).
  void fail() const {
    self.reply_error(task_id, describe_current_exception(name),
                     retry_matches(retry_matcher, std::current_exception()));
  }
};

}  // namespace detail
CORAY_END_NAMESPACE
