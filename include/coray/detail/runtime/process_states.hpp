#pragma once
/// What a process does with the states of its objects and actors: making them, releasing the
/// last handle (on the loop thread, or handed to it from another thread), bringing a spilled
/// one back, and the one check of refs before use (usable_state). Included by process.hpp,
/// after the process it needs.

#include <fmt/format.h>

#include <coray/detail/runtime/process.hpp>
#include <coray/errors.hpp>
#include <cstdint>
#include <span>

CORAY_BEGIN_NAMESPACE
namespace detail {

inline void restore_state(object_state& s) {
  if (process* p = process::current(); p && s.epoch == p->epoch) p->restore(s);
}

/// The last handle of `s` went on the loop thread (or `s` belongs to no live runtime).
inline void release_on_loop(object_state* s) noexcept {
  process* p = process::current();
  bool live = p && s->epoch == p->epoch;
  if (live) p->state_released(*s);
  if (live && s->contained()) [[unlikely]]
    for (std::uint64_t a : s->contained()->actors) p->actor_handle(a, -1);
  if (live && s->block) p->release_block(s->block);
  delete s;
}
inline void release_actor_on_loop(actor_state* s) noexcept {
  process* p = process::current();
  if (p && s->epoch == p->epoch) p->actor_handle(s->id, -1);
  delete s;
}

/// Hands the release of `s` (an object or actor state of the live runtime) to its loop; a
/// state of an ended runtime is simply deleted. Any thread but the loop's.
template <class State, void (*Release)(State*) noexcept>
void release_from_another_thread(State* s) noexcept {
  auto& gate = runtime_gate::instance();
  if (process* p = gate.try_enter()) {
    bool handed = false;
    if (s->epoch == p->epoch) {
      try {
        p->post({[](void* ctx, process&, bool) noexcept { Release(static_cast<State*>(ctx)); }, s});
        handed = true;
      } catch (...) {  // the queue could not grow: keep the state (a leak, not a corruption)
        gate.leave();
        return;
      }
    }
    gate.leave();
    if (handed) return;
  }
  delete s;
}

// Out of line and cold: it keeps ~state_ptr small enough to inline everywhere a handle is
// moved or dropped (a ray::wait of n refs drops n moved-from handles).
[[gnu::noinline, gnu::cold]] inline void release_state(object_state* s) noexcept {
  if (process::on_this_thread())
    release_on_loop(s);
  else
    release_from_another_thread<object_state, &release_on_loop>(s);
}

[[gnu::noinline, gnu::cold]] inline void release_actor_state(actor_state* s) noexcept {
  if (process::on_this_thread())
    release_actor_on_loop(s);
  else
    release_from_another_thread<actor_state, &release_actor_on_loop>(s);
}

/// The epoch of the runtime running in this process, 0 when none. Any thread.
inline std::uint32_t live_epoch() noexcept { return runtime_gate::instance().live_epoch(); }

/// Whether a ref's state may be used: the ref is not empty and belongs to the runtime running
/// in this process (`live`, from live_epoch(), read once for a batch of refs), not to one that
/// has ended (its block lay in a segment that is gone; its call will never answer). Every
/// check of refs before use is this one, and refuse_state says why it failed.
inline bool usable_state(const object_state* s, std::uint32_t live) noexcept {
  return s && s->epoch == live;
}
/// Throws the ray::usage_error for a state usable_state refused; `what` names the API.
/// Out of line and cold: it keeps the fast paths that check refs small.
[[noreturn, gnu::noinline, gnu::cold]] inline void refuse_state(const object_state* s,
                                                                const char* what) {
  if (!s) throw usage_error(fmt::format("{}: an object_ref is empty", what));
  throw usage_error(fmt::format("{}: the object_ref belongs to a runtime that has ended", what));
}
/// True if every state of `states` is usable (as usable_state says).
inline bool all_usable(std::span<object_state* const> states) noexcept {
  const std::uint32_t live = live_epoch();
  for (const object_state* s : states)
    if (!usable_state(s, live)) return false;
  return true;
}

/// Throws ray::usage_error unless `s` is usable (usable_state). Any thread.
inline void require_usable_ref(const state_ptr& s, const char* what) {
  if (!usable_state(s.get(), live_epoch())) [[unlikely]]
    refuse_state(s.get(), what);
}

/// require_usable_ref for each ref of a range, reading the live epoch once.
template <class Refs>
void require_usable_refs(const Refs& refs, const char* what) {
  const std::uint32_t live = live_epoch();
  for (const auto& r : refs)
    if (!usable_state(r.state().get(), live)) [[unlikely]]
      refuse_state(r.state().get(), what);
}

/// A new pending state of `p`'s runtime (from any thread that may use `p`).
inline state_ptr make_state(const process& p) {
  auto s = state_ptr::adopt(new object_state);
  s->epoch = p.epoch;
  return s;
}
/// A new pending state of this thread's runtime (loop thread, or none).
inline state_ptr make_state() {
  auto s = state_ptr::adopt(new object_state);
  if (process::on_this_thread())
    if (process* p = process::current()) s->epoch = p->epoch;
  return s;
}

}  // namespace detail
CORAY_END_NAMESPACE
