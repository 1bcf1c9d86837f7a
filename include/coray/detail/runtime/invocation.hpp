#pragma once
/// One call being run in a worker, and `call_host`, the narrow face of the worker that the
/// callee's side (invoker.hpp, actor_constructor.hpp) replies through. Those are templates,
/// compiled in every program that names a task or an actor; they see this interface, never
/// the worker class, so the worker's own code (worker.hpp) is compiled only where a process
/// is started: once, in coray::coray_compiled, in compiled mode.

#include <coray/detail/runtime/object_state.hpp>
#include <coray/detail/runtime/registry.hpp>
#include <coray/detail/runtime/wire.hpp>
#include <coray/detail/shm/segment.hpp>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <type_traits>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

class threaded_call;

/// What a call running in a worker may ask of it.
class call_host {
 public:
  /// Replies to the driver with a call's value: `size` bytes written by `fill`; large
  /// values go through the store. `held`: the refs and actor handles inside the value
  /// (collected while it was sized), which the result keeps alive.
  template <class Fill>
  void reply_value(std::uint64_t task_id, std::size_t size, Fill&& fill,
                   const object_contents* held = nullptr) {
    using F = std::remove_reference_t<Fill>;
    reply_filled(
        task_id, size, [](void* f, std::byte* out) { (*static_cast<F*>(f))(out); },
        const_cast<void*>(static_cast<const void*>(std::addressof(fill))), held);
  }
  /// Replies with an error; `retryable` when the caller's retry policy matches it.
  void reply_error(std::uint64_t task_id, const wire_error& e, bool retryable = false) {
    reply_failed(task_id, e, retryable);
  }
  /// A streaming generator's next item, its value given as for reply_value. Items travel
  /// in batches; the producer waits here while it is a window ahead of its consumer. False
  /// once the consumer stopped the stream: the generator should end.
  template <class Fill>
  bool stream_item(std::uint64_t task_id, std::size_t size, Fill&& fill,
                   const object_contents* held = nullptr) {
    using F = std::remove_reference_t<Fill>;
    return stream_filled(
        task_id, size, [](void* f, std::byte* out) { (*static_cast<F*>(f))(out); },
        const_cast<void*>(static_cast<const void*>(std::addressof(fill))), held);
  }
  /// Sends what stream `task_id` has not sent yet and forgets it: before the call's reply.
  virtual void stream_end(std::uint64_t task_id) = 0;
  /// Actor construction: the invoker hands over the new object and how to destroy it.
  virtual void set_instance(void* instance, void (*destroy)(void*)) noexcept = 0;
  /// The name this process's output is shown under from now on (an actor's class, before
  /// its constructor runs).
  virtual void name_output(std::string_view name) noexcept = 0;
  /// An actor method call of concurrency group `group` (the invocation's) ended (its reply
  /// is sent); the group's next queued call may start.
  virtual void call_finished(std::uint32_t group) noexcept = 0;
  /// A threaded actor's plain method call, its arguments decoded: runs it on one of the
  /// actor's method threads; the loop thread replies and calls call_finished when it is done.
  virtual void run_on_thread(std::unique_ptr<threaded_call> call) = 0;

 protected:
  ~call_host() = default;
  virtual void reply_filled(std::uint64_t task_id, std::size_t size,
                            void (*fill)(void*, std::byte*), void* context,
                            const object_contents* held) = 0;
  virtual void reply_failed(std::uint64_t task_id, const wire_error& e, bool retryable) = 0;
  virtual bool stream_filled(std::uint64_t task_id, std::size_t size,
                             void (*fill)(void*, std::byte*), void* context,
                             const object_contents* held) = 0;
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
  bool threaded = false;        // a plain method runs on a method thread (a threaded actor)
  std::uint32_t group = 0;      // an actor call's concurrency group, for call_finished

  /// Replies with the exception in flight (call from a catch block).
  void fail() const {
    self.reply_error(task_id, describe_current_exception(name),
                     retry_matches(retry_matcher, std::current_exception()));
  }
};

/// A plain method call of a threaded actor (max_concurrency > 1): its arguments are decoded
/// on the loop thread, the method runs on a method thread (run), and its outcome, kept here
/// as the value or an error, is encoded and sent by the loop thread (reply), where the call
/// and its arguments are destroyed too. So a method thread touches nothing of the runtime's
/// (refs inside the value are published, which only the loop thread may do).
class threaded_call {
 public:
  explicit threaded_call(const invocation& inv) noexcept
      : task_id_(inv.task_id),
        name_(inv.name),
        retry_matcher_(inv.retry_matcher),
        group_(inv.group) {}
  threaded_call(const threaded_call&) = delete;
  threaded_call& operator=(const threaded_call&) = delete;
  virtual ~threaded_call() = default;

  /// A method thread: runs the method, keeping its value or its exception. Never throws.
  void run() noexcept {
    try {
      invoke();
    } catch (...) {
      keep_current_exception();
    }
  }
  std::uint32_t group() const noexcept { return group_; }
  /// The loop thread: replies with the outcome (an error if even that fails, as a large
  /// value with no room in the store).
  void reply(call_host& host) {
    try {
      if (error_) return host.reply_error(task_id_, *error_, retryable_);
      send_value(host, task_id_);
    } catch (...) {
      keep_current_exception();
      host.reply_error(task_id_, *error_, retryable_);
    }
  }

 protected:
  /// Calls the method, keeping its value.
  virtual void invoke() = 0;
  /// Replies with the kept value (the loop thread).
  virtual void send_value(call_host& host, std::uint64_t task_id) = 0;

 private:
  void keep_current_exception() noexcept {
    try {
      error_ = describe_current_exception(name_);
      retryable_ = retry_matches(retry_matcher_, std::current_exception());
    } catch (...) {  // no memory to describe it: an error without words
      error_.emplace();
    }
  }
  std::uint64_t task_id_;
  std::string_view name_;
  std::uint64_t retry_matcher_;
  std::uint32_t group_;
  std::optional<wire_error> error_;
  bool retryable_ = false;
};

}  // namespace detail
CORAY_END_NAMESPACE
