#pragma once
/// The exceptions coray throws. All derive from ray::error and are thrown where the user
/// gets or awaits the result they concern.

#include <coray/version.hpp>
#include <cstddef>
#include <stdexcept>
#include <string>

CORAY_BEGIN_NAMESPACE

/// Base of every coray exception.
struct error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// A task (or actor method) threw: carries the remote exception's type name and what().
struct task_error : error {
  task_error(std::string type_name, std::string message, std::string function)
      : error(function + " raised " + type_name + ": " + message),
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

/// The worker process running a task died (signal or exit) before it replied.
struct worker_crashed : error {
  using error::error;
};

/// The actor's process died; pending and later calls fail with this.
struct actor_died : error {
  using error::error;
};

/// A value did not fit in the object store.
struct object_store_full : error {
  object_store_full(std::size_t requested, std::size_t free_bytes, std::size_t capacity)
      : error("object store full: requested " + std::to_string(requested) + " bytes, " +
              std::to_string(free_bytes) + " free of " + std::to_string(capacity)),
        requested_(requested),
        free_(free_bytes),
        capacity_(capacity) {}
  std::size_t requested() const noexcept { return requested_; }
  std::size_t free_bytes() const noexcept { return free_; }
  std::size_t capacity() const noexcept { return capacity_; }

 private:
  std::size_t requested_, free_, capacity_;
};

/// A get or wait with a timeout ran out of time.
struct get_timeout : error {
  using error::error;
};

/// Bytes that do not decode as the expected type (truncated, corrupted or foreign).
struct codec_error : error {
  using error::error;
};

/// The result's task was cancelled.
struct cancelled : error {
  using error::error;
};

/// The runtime is not running, or was used from the wrong process or thread.
struct runtime_error : error {
  using error::error;
};

CORAY_END_NAMESPACE
