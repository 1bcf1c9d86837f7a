#pragma once
/// Spreads calls over a set of actors -- at most `depth` sent to each and not yet finished,
/// the rest waiting here in the order they came -- so that a free actor always takes the
/// next call, and settles each call's own result state when it ends. ray::pool and
/// ray::actor_pool are built on it. Driver only, on the loop's thread.
///
/// A call is sent from user code (enqueue) or, when one ends, from a coroutine the loop
/// resumes: never from inside the driver's own callbacks, so the driver is not re-entered
/// while it settles results.

#include <coray/detail/runtime/driver.hpp>
#include <coroutine>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <list>
#include <span>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// Settles `to` as `from` settled (same value, or the same error). Driver only.
inline void forward_outcome(driver& d, object_state& from, object_state& to) {
  if (to.settled()) return;
  if (from.st == object_state::status::failed) {
    to.set_error(from.error());
  } else if (from.block) {
    d.seg.add_ref(from.block);  // `to` holds a reference of its own
    to.set_block(from.block);
  } else {
    to.set_inline(from.value_bytes());
  }
}

inline bool is_actor_died(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const actor_died&) {
    return true;
  } catch (...) {
    return false;
  }
}

/// A coroutine that the loop resumes (process::schedule) to do work outside the driver's
/// callbacks; its owner destroys it.
struct loop_task {
  struct promise_type {
    loop_task get_return_object() noexcept {
      return {std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_always final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };
  std::coroutine_handle<promise_type> h;
  void destroy() noexcept {
    if (h) h.destroy();
    h = {};
  }
};

class dispatcher {
 public:
  /// Why a member is replaced: its process died, or it ran its share of calls (retired).
  enum class replace_reason { died, retired };
  /// What to do when a member's process died or retired: return a replacement actor's
  /// handle, or an empty one to drop the member. Runs on the loop, outside any callback.
  using replace_fn = std::function<actor_ptr(std::size_t member, replace_reason)>;

  dispatcher(driver& d, std::uint32_t depth, replace_fn replace = {})
      : d_(d),
        epoch_(d.epoch),
        depth_(depth),
        replace_(std::move(replace)),
        pump_(pump_loop(this)) {}
  dispatcher(const dispatcher&) = delete;
  dispatcher& operator=(const dispatcher&) = delete;

  /// Precondition: idle(), or the runtime is gone (then nothing can call back).
  ~dispatcher() {
    if (runtime_alive()) {
      if (pump_scheduled_) d_.run_until([this] { return !pump_scheduled_; });
      for (auto& w : queue_) discard(w);
    }
    pump_.destroy();
  }

  /// Each member takes at most `n` calls (0: no limit), then is retired once they have
  /// ended: its handle is dropped, so its process ends, and a replacement takes its place
  /// (multiprocessing's maxtasksperchild).
  void set_calls_per_member(std::uint32_t n) noexcept { calls_per_member_ = n; }

  /// Adds an actor; returns its member index (stable).
  std::size_t add(actor_ptr a) {
    members_.push_back({std::move(a)});
    pump();
    return members_.size() - 1;
  }

  /// Queues a call; its target_actor is chosen when it is sent. Returns the state that
  /// settles with its outcome.
  state_ptr enqueue(task_spec spec) {
    waiting w{std::move(spec), make_state()};
    state_ptr result = w.result;
    hold(held_actors(w.spec.held), +1);
    queue_.push_back(std::move(w));
    pump();
    return result;
  }

  /// Fails every call not yet sent with `e`.
  void fail_waiting(const std::exception_ptr& e) {
    while (!queue_.empty()) {
      waiting w = std::move(queue_.front());
      queue_.pop_front();
      discard(w);
      w.result->set_error(e);
    }
  }

  /// Runs the loop until every call has ended.
  void drain() {
    d_.run_until([this] { return idle(); });
  }
  bool idle() const noexcept { return queue_.empty() && running_.empty(); }
  /// Runs the loop until what ended calls left to do (send more, replace members) is done.
  void settle() {
    if (pump_scheduled_) d_.run_until([this] { return !pump_scheduled_; });
  }
  /// The runtime this dispatcher belongs to is still the process's (not ended or replaced),
  /// and this is its loop thread.
  bool runtime_alive() const noexcept {
    process* p = process::here();
    return p && p->epoch == epoch_;
  }

  std::size_t members() const noexcept { return members_.size(); }
  const actor_ptr& member(std::size_t i) const noexcept { return members_[i].handle; }
  /// A member that takes calls and has none now.
  bool is_idle(std::size_t i) const noexcept {
    return members_[i].handle && !members_[i].dead && members_[i].running == 0;
  }
  bool is_live(std::size_t i) const noexcept { return static_cast<bool>(members_[i].handle); }
  /// Takes the member out of the set; calls it runs finish. Returns its handle.
  actor_ptr remove(std::size_t i) {
    actor_ptr h = std::move(members_[i].handle);
    members_[i].handle = actor_ptr();
    members_[i].removed = true;
    return h;
  }

 private:
  struct member_state {
    actor_ptr handle;  // empty: removed, or dead and not replaced
    std::uint32_t running = 0;
    std::uint32_t sent = 0;  // calls sent to this actor, for calls_per_member_
    bool retiring = false;   // took its share of calls: replaced once they have ended
    bool dead = false;       // its process died; replaced once its calls have failed
    bool removed = false;    // taken out by remove(): it may come back through add()
  };
  struct waiting {
    task_spec spec;
    state_ptr result;
  };
  struct running_call {
    dispatcher* self;
    std::size_t member;
    state_ptr result;
    std::list<running_call>::iterator at;
  };

  static loop_task pump_loop(dispatcher* self) {
    for (;;) {
      co_await std::suspend_always{};
      self->pump_scheduled_ = false;
      self->pump();
    }
  }
  void schedule_pump() {
    if (pump_scheduled_) return;
    pump_scheduled_ = true;
    d_.schedule(pump_.h);
  }

  /// While a call waits here, the actors and shared blocks its arguments name stay alive
  /// (counted as a sent call counts them).
  void hold(std::span<const std::uint64_t> ids, int delta) noexcept {
    for (std::uint64_t id : ids) d_.actor_handle(id, delta);
  }
  void discard(waiting& w) noexcept {
    hold(held_actors(w.spec.held), -1);
    for (object_block* b : w.spec.blocks) d_.release_block(b);
    w.spec.blocks.clear();
  }

  std::size_t pick() const noexcept {
    std::size_t best = members_.size();
    std::uint32_t best_load = depth_;
    for (std::size_t i = 0; i < members_.size(); ++i) {
      const member_state& m = members_[i];
      if (!m.handle || m.dead || m.retiring || m.running >= best_load) continue;
      best = i;
      best_load = m.running;
      if (best_load == 0) break;
    }
    return best;
  }

  void pump() {
    if (pumping_) return;
    pumping_ = true;
    replace_dead();
    while (!queue_.empty()) {
      const std::size_t i = pick();
      if (i == members_.size()) break;
      waiting w = std::move(queue_.front());
      queue_.pop_front();
      send(i, w);
    }
    if (!queue_.empty() && all_died())
      fail_waiting(std::make_exception_ptr(actor_died(
          last_death_.empty() ? "coray: no actor is left to run the call" : last_death_)));
    pumping_ = false;
  }

  void replace_dead() {
    for (std::size_t i = 0; i < members_.size(); ++i) {
      member_state& m = members_[i];
      if (!(m.dead || (m.retiring && m.handle)) || m.running) continue;
      const auto reason = m.dead ? replace_reason::died : replace_reason::retired;
      m.dead = false;
      m.retiring = false;
      m.sent = 0;
      m.handle = actor_ptr();  // a retired actor's process ends: no handle is left
      if (replace_) {
        try {
          m.handle = replace_(i, reason);
        } catch (...) {
        }
      }
    }
  }
  /// Every member died and none was replaced: no call can ever run.
  bool all_died() const noexcept {
    for (const member_state& m : members_)
      if ((m.handle && !m.dead) || m.removed) return false;
    return !members_.empty();
  }

  void send(std::size_t i, waiting& w) {
    member_state& m = members_[i];
    const auto actors = held_actors(w.spec.held);
    const std::vector<std::uint64_t> held(actors.begin(), actors.end());
    w.spec.target_actor = m.handle.get()->id;
    state_ptr source;
    try {
      source = d_.submit(std::move(w.spec));
    } catch (...) {
      hold(held, -1);
      w.result->set_error(std::current_exception());
      return;
    }
    hold(held, -1);  // the call holds them now
    ++m.running;
    if (calls_per_member_ && ++m.sent >= calls_per_member_) m.retiring = true;
    running_.push_back({this, i, w.result, {}});
    auto at = std::prev(running_.end());
    at->at = at;
    if (source->settled())
      ended(&*at, *source);
    else
      source->waiters.push_back({&dispatcher::ended, &*at});
  }

  /// A call ended (in a driver callback): settle its result and let the pump send more.
  static void ended(void* ctx, object_state& source) {
    auto* c = static_cast<running_call*>(ctx);
    dispatcher& self = *c->self;
    member_state& m = self.members_[c->member];
    if (m.running) --m.running;
    if (source.st == object_state::status::failed && is_actor_died(source.error())) {
      m.dead = true;
      try {
        std::rethrow_exception(source.error());
      } catch (const std::exception& e) {
        self.last_death_ = e.what();
      }
    }
    state_ptr result = std::move(c->result);
    self.running_.erase(c->at);
    forward_outcome(self.d_, source, *result);
    self.schedule_pump();
  }

  driver& d_;
  std::uint32_t epoch_;
  std::uint32_t depth_;
  std::uint32_t calls_per_member_ = 0;
  replace_fn replace_;
  std::vector<member_state> members_;
  std::deque<waiting> queue_;
  std::list<running_call> running_;
  std::string last_death_;
  bool pumping_ = false;
  bool pump_scheduled_ = false;
  loop_task pump_;
};

}  // namespace detail
CORAY_END_NAMESPACE
