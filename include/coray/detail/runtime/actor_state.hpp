#pragma once
/// A process's handle on an actor: counted locally, and each local handle counts once at the
/// driver, which ends the actor when no handle is left in any process.

#include <atomic>
#include <coray/version.hpp>
#include <cstdint>
#include <utility>

CORAY_BEGIN_NAMESPACE
namespace detail {

struct actor_state {
  std::atomic<std::uint32_t> handles{1};
  std::uint64_t id = 0;
  std::uint32_t epoch = 0;
};

void release_actor_state(actor_state* s) noexcept;  // defined with the process (process.hpp)

class actor_ptr {
 public:
  actor_ptr() noexcept = default;
  static actor_ptr adopt(actor_state* s) noexcept {
    actor_ptr p;
    p.s_ = s;
    return p;
  }
  actor_ptr(const actor_ptr& o) noexcept : s_(o.s_) {
    if (s_) s_->handles.fetch_add(1, std::memory_order_relaxed);
  }
  actor_ptr(actor_ptr&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  actor_ptr& operator=(actor_ptr o) noexcept {
    std::swap(s_, o.s_);
    return *this;
  }
  ~actor_ptr() {
    if (s_ && s_->handles.fetch_sub(1, std::memory_order_acq_rel) == 1) release_actor_state(s_);
  }
  actor_state* get() const noexcept { return s_; }
  explicit operator bool() const noexcept { return s_ != nullptr; }

 private:
  actor_state* s_ = nullptr;
};

}  // namespace detail
CORAY_END_NAMESPACE
