#pragma once
/// Who this process is in the runtime, for ray::current_process() and
/// ray::get_runtime_context(): the driver, a task worker, an actor or a ray::process, with its
/// slot and name, an actor's id, and the call running now. Set as a process becomes one
/// (become_worker, an actor's construction, a ray::process's start) and as calls start and
/// end; read by its own loop thread.

#include <coray/version.hpp>
#include <cstdint>
#include <string>

CORAY_BEGIN_NAMESPACE

/// What a process of the runtime is.
enum class process_kind : std::uint8_t { task_worker, actor, driver, process };

namespace detail {

struct process_identity {
  process_kind kind = process_kind::driver;
  std::uint32_t slot = 0;
  std::string name;            // a ray::process's; empty for the others, named after their kind
  std::uint64_t actor_id = 0;  // an actor's, from its construction
  std::uint32_t restarts = 0;  // how many times the actor was built again before this one
  std::uint64_t task_id = 0;   // the call whose body runs now; 0 between calls
};

inline process_identity& this_process() noexcept {
  static process_identity id;
  return id;
}

}  // namespace detail
CORAY_END_NAMESPACE
