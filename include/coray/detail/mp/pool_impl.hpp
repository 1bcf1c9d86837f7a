#pragma once
/// The non-template members of ray::pool: included by pool.hpp in header-only mode (inline),
/// and compiled once by src/coray.cpp into coray::coray_compiled in compiled mode
/// (CORAY_COMPILED_LIB), so that a translation unit including coray.hpp does not instantiate
/// the pool's process actor, its calls and its bookkeeping.

#include <algorithm>
#include <coray/pool.hpp>
#include <cstdio>
#include <exception>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE

CORAY_API pool::pool(std::uint32_t processes)
    : pool(processes, [](detail::driver& d) {
        return d.make_actor_handle(
            ray::spawn<detail::pool_process>(detail::multiprocessing_options()).id());
      }) {}

CORAY_API pool::pool(std::uint32_t processes, spawn_fn spawn)
    : d_(detail::require_driver("ray::pool")),
      spawn_(std::move(spawn)),
      disp_(d_, 2,
            [this](std::size_t i, detail::dispatcher::replace_reason why) {
              return replace(i, why);
            }),
      callback_task_(callback_loop(this)) {
  const std::uint32_t n = processes ? processes : d_.num_workers();
  for (std::uint32_t i = 0; i < n; ++i) {
    ready_.emplace_back();
    start(disp_.add(spawn_(d_)));
  }
}

CORAY_API void pool::join() {
  // A callback may submit more work, whose own callbacks come after it: wait for both.
  d_.run_until([this] { return disp_.idle() && callbacks_.empty(); });
  if (!closed_) return;
  std::vector<std::uint64_t> ids;
  for (std::size_t i = 0; i < disp_.members(); ++i)
    if (disp_.is_live(i)) ids.push_back(disp_.remove(i).get()->id);
  d_.run_until([&] {
    for (std::uint64_t id : ids) {
      auto st = d_.actor_status(id);
      if (st && !st->ended) return false;
    }
    return true;
  });
}

CORAY_API void pool::terminate() {
  closed_ = true;
  disp_.fail_waiting(
      std::make_exception_ptr(actor_died("coray: ray::pool::terminate() ended the pool")));
  for (std::size_t i = 0; i < disp_.members(); ++i)
    if (disp_.is_live(i)) d_.kill_actor(disp_.member(i).get()->id);
}

CORAY_API std::vector<process_info> pool::processes() {
  disp_.settle();  // processes whose calls ended are replaced if they are to be
  for (const auto& r : ready_)
    if (r) detail::block_until_settled(*r);
  std::vector<process_info> out;
  for (std::size_t i = 0; i < disp_.members(); ++i) {
    process_info info;
    info.kind = process_kind::actor;
    if (disp_.is_live(i)) {
      if (auto st = d_.actor_status(disp_.member(i).get()->id)) {
        info.pid = st->pid;
        info.alive = st->pid != 0 && !st->ended;
        if (st->ended) info.exitcode = detail::exitcode_of(st->wait_status);
      }
    }
    out.push_back(info);
  }
  return out;
}

CORAY_API void pool::callback_due(void* ctx, detail::object_state&) {
  auto* rec = static_cast<pending_callback*>(ctx);
  pool& self = *rec->owner;
  rec->settled = true;
  self.due_.push_back(rec->self);
  if (!self.callbacks_scheduled_ && !self.running_callbacks_) {
    self.callbacks_scheduled_ = true;
    self.d_.schedule(self.callback_task_.h);
  }
}

CORAY_API void pool::run_due_callbacks() {
  running_callbacks_ = true;
  while (!due_.empty()) {
    auto it = due_.front();
    due_.pop_front();
    try {
      it->run(*it->state);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "coray: a ray::pool callback threw: %s\n", e.what());
    } catch (...) {
      std::fprintf(stderr, "coray: a ray::pool callback threw\n");
    }
    callbacks_.erase(it);
  }
  running_callbacks_ = false;
}

CORAY_API void pool::forget_callbacks() noexcept {
  for (auto& rec : callbacks_) {
    if (rec.settled || !rec.state) continue;
    auto& ws = rec.state->waiters;
    ws.erase(std::remove_if(ws.begin(), ws.end(),
                            [&](const detail::waiter& w) { return w.ctx == &rec; }),
             ws.end());
  }
  due_.clear();
  callbacks_.clear();
}

CORAY_API void pool::start(std::size_t member) {
  auto spec = detail::make_call<&detail::pool_process::pid>(d_);
  spec.target_actor = disp_.member(member).get()->id;
  ready_[member] = d_.submit(std::move(spec));
}

CORAY_API detail::actor_ptr pool::replace(std::size_t member,
                                          detail::dispatcher::replace_reason why) {
  const auto& r = ready_[member];
  if ((closed_ && why == detail::dispatcher::replace_reason::died) || !r ||
      r->st != detail::object_state::status::ready)
    return {};  // its initializer failed
  ready_[member] = {};
  auto h = spawn_(d_);
  auto spec = detail::make_call<&detail::pool_process::pid>(d_);
  spec.target_actor = h.get()->id;
  ready_[member] = d_.submit(std::move(spec));
  return h;
}

CORAY_API pool::~pool() {
  if (disp_.runtime_alive() && d_.is_loop_thread()) {
    try {
      close();
      join();
    } catch (...) {
    }
    forget_callbacks();
    // The callback coroutine must not stay queued on the loop once the pool is gone.
    if (callbacks_scheduled_) d_.run_until([this] { return !callbacks_scheduled_; });
  }
  callback_task_.destroy();
}

CORAY_END_NAMESPACE
