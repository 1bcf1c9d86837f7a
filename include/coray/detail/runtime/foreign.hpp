#pragma once
/// The API's path from threads other than the runtime's loop thread (in the driver): what
/// such a thread may build itself (a call's encoded arguments, a put's bytes, a result's
/// state) it builds; what touches the loop's state (the scheduler, the allocator, waiters on
/// objects) it hands to the loop as a job and, where it needs an answer, waits for.

#include <coray/async.hpp>
#include <coray/detail/runtime/process.hpp>
#include <coroutine>
#include <cstddef>
#include <span>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// True on a thread other than the loop's while the driver's runtime runs: blocking calls
/// then wait for the loop instead of running it. (Without a runtime, or in a worker, they
/// keep their loop-thread form, which reads settled values and refuses the rest.)
inline bool needs_handoff() noexcept {
  return !process::here() && runtime_gate::instance().accepts_calls();
}

/// A thread other than the loop's inside the runtime: while it lives, the runtime is not
/// destroyed (its end waits, failing this thread's jobs meanwhile). Throws ray::usage_error
/// saying why the runtime cannot be used from here (none, a worker process, a threaded
/// actor's method thread, ended).
class foreign_entry {
 public:
  explicit foreign_entry(const char* what) : p_(runtime_gate::instance().try_enter()) {
    if (!p_ || !p_->as_driver()) {
      if (p_) runtime_gate::instance().leave();
      throw usage_error(runtime_gate::instance().refusal(what));
    }
  }
  foreign_entry(const foreign_entry&) = delete;
  foreign_entry& operator=(const foreign_entry&) = delete;
  ~foreign_entry() { runtime_gate::instance().leave(); }
  process& get() const noexcept { return *p_; }

 private:
  process* p_;
};

/// Runs `f(process&)` on the loop and returns its result: at once on the loop thread, else
/// as a job this thread waits for. For what must happen in order with the loop's own work
/// (spawn, kill, cancel, lookups).
template <class F>
auto on_loop(const char* what, F&& f) -> decltype(f(std::declval<process&>())) {
  if (process* p = process::here()) return f(*p);
  foreign_entry e(what);
  return e.get().call_on_loop(f);
}

/// A ref read from a value: the process's handle for its id, made on the loop (a driver's
/// other thread waits for it there).
inline state_ptr decode_ref(std::uint64_t id) {
  if (!id) return {};
  return on_loop("coray: decoding an object_ref",
                 [id](process& p) -> state_ptr { return p.ref_from_id(id); });
}

/// Submits the call `make(p)` builds (a task_spec, its arguments encoded on this thread;
/// large ones in blocks the loop allocates) and returns its result's state: directly on the
/// loop thread, else as a job, without waiting for it.
template <class Make>
state_ptr submit_from_any_thread(const char* what, Make&& make) {
  if (process* p = process::here()) return p->submit(make(*p));
  foreign_entry e(what);
  process& p = e.get();
  struct submission {
    task_spec spec;
    state_ptr result;
    static void run(void* ctx, process& p, bool live) noexcept {
      auto* s = static_cast<submission*>(ctx);
      try {
        if (!live)
          throw ray::runtime_error("coray: the runtime ended before the call was submitted");
        p.submit_into(std::move(s->spec), s->result);
      } catch (...) {
        for (object_block* b : s->spec.blocks) p.release_block(b);
        s->spec.blocks.clear();
        if (!s->result->settled()) s->result->set_error(std::current_exception());
      }
      delete s;
    }
  };
  auto* s = new submission{make(p), make_state(p)};
  state_ptr result = s->result;
  try {
    p.post({&submission::run, s});
  } catch (...) {
    delete s;
    throw;
  }
  return result;
}

/// Blocks a thread other than the loop's until `needed` of `states` have settled, or
/// `deadline`: the loop registers the wait on the states and completes it once. Settled
/// values stay where they are (pinned, a spilled one brought back) until this is destroyed,
/// so the thread may read them. The caller holds the states (refs) and a foreign_entry.
/// Throws ray::runtime_error if the runtime ends first, or the error of bringing a spilled
/// value back.
class foreign_wait {
 public:
  foreign_wait(process& p, std::span<object_state* const> states, std::size_t needed,
               clock::time_point deadline, bool pin)
      : p_(p), states_(states), needed_(needed), deadline_(deadline), pin_(pin) {
    p.post({&start, this});
    done_.wait();
    if (ended_) throw ray::runtime_error("coray: the runtime ended while this thread waited");
    if (error_) std::rethrow_exception(error_);
  }
  foreign_wait(const foreign_wait&) = delete;
  foreign_wait& operator=(const foreign_wait&) = delete;
  ~foreign_wait() {
    if (pinned_.empty()) return;
    auto* held = new std::vector<state_ptr>(std::move(pinned_));
    try {
      p_.post({[](void* ctx, process&, bool) noexcept {
                 auto* v = static_cast<std::vector<state_ptr>*>(ctx);
                 for (auto& s : *v) --s->pins;
                 delete v;
               },
               held});
    } catch (...) {
      delete held;  // pins stay taken: the values stay in memory (never spilled)
    }
  }

 private:
  // The loop's side. Heap-allocated and counted: a waiter registered on a state that is
  // settling as the wait completes (its waiters already taken) still calls it afterwards.
  struct op final : foreign_pending {
    foreign_wait* w;  // nullptr once completed: the waiting thread may be gone
    std::vector<object_state*> watching;
    std::size_t remaining = 0;
    std::uint64_t timer = 0;
    int refs = 1;
    void drop() noexcept {
      if (--refs == 0) delete this;
    }
    // `live` false: the runtime ends (close_handoff has taken this off its list).
    void complete(process& p, bool live) noexcept {
      if (!w) return;
      if (live) p.remove_pending(*this);
      if (timer) {
        p.cancel_timer(timer);
        timer = 0;
        --refs;
      }
      for (object_state* s : watching) {
        if (s->settled()) continue;  // its waiters are running, ours among them
        auto& ws = s->waiters;
        for (auto it = ws.begin(); it != ws.end();)
          if (it->ctx == this) {
            it = ws.erase(it);
            --refs;
          } else {
            ++it;
          }
      }
      foreign_wait* waiting = std::exchange(w, nullptr);
      waiting->finish(live);
      drop();
    }
    void ended(process& p) noexcept override { complete(p, false); }
    static void on_settled(void* ctx, object_state&) noexcept {
      auto* o = static_cast<op*>(ctx);
      if (o->w && --o->remaining == 0) o->complete(*process::current(), true);
      o->drop();
    }
    static void on_timeout(void* ctx) {
      auto* o = static_cast<op*>(ctx);
      o->timer = 0;
      // The timer's reference goes first: while the wait is not complete its own reference
      // keeps `o`, and complete() drops that last (one release, which GCC 12 can follow).
      --o->refs;
      if (o->w)
        o->complete(*process::current(), true);
      else if (o->refs == 0)
        delete o;
    }
  };

  static void start(void* ctx, process& p, bool live) noexcept {
    auto* w = static_cast<foreign_wait*>(ctx);
    if (!live) return w->finish(false);
    std::size_t settled = 0;
    for (object_state* s : w->states_) settled += s->settled();
    const bool bounded = w->deadline_ != clock::time_point::max();
    if (settled >= w->needed_ || (bounded && w->deadline_ <= clock::now())) return w->finish(true);
    auto* o = new op;
    o->w = w;
    o->remaining = w->needed_ - settled;
    for (object_state* s : w->states_)
      if (!s->settled()) {
        s->waiters.push_back({&op::on_settled, o});
        o->watching.push_back(s);
        ++o->refs;
      }
    if (bounded) {
      o->timer = p.add_timer(w->deadline_, &op::on_timeout, o);
      ++o->refs;
    }
    p.add_pending(*o);
  }

  // Loop thread, once: pins what the reader will read, then wakes it.
  void finish(bool live) noexcept {
    ended_ = !live;
    if (live && pin_) {
      try {
        for (object_state* s : states_)
          if (s->st.load(std::memory_order_acquire) == object_state::status::ready && s->block) {
            (void)s->value_bytes();  // brings a spilled value back
            ++s->pins;
            pinned_.push_back(state_ptr::share(s));
          }
      } catch (...) {
        error_ = std::current_exception();
        for (auto& s : pinned_) --s->pins;  // the reader will not read: nothing stays pinned
        pinned_.clear();
      }
    }
    done_.signal();
  }

  process& p_;
  std::span<object_state* const> states_;
  std::size_t needed_;
  clock::time_point deadline_;  // time_point::max(): none
  bool pin_;
  bool ended_ = false;
  std::exception_ptr error_;
  std::vector<state_ptr> pinned_;
  completion done_;
};

/// Runs the coroutine `h` on the loop for a thread other than the loop's, which blocks until
/// it finishes. Throws ray::runtime_error if the runtime ends first (the coroutine is then
/// left suspended).
template <class Promise>
void run_coroutine_from_another_thread(process& p, std::coroutine_handle<Promise> h) {
  struct run final : foreign_pending {
    std::coroutine_handle<Promise> h;
    completion done;
    bool ended_early = false;
    void ended(process&) noexcept override {
      ended_early = true;
      done.signal();  // the frame below is left suspended, never resumed
    }
    struct resume_then_return {
      std::coroutine_handle<Promise> h;
      bool await_ready() noexcept { return h.done(); }
      std::coroutine_handle<> await_suspend(std::coroutine_handle<> c) noexcept {
        h.promise().continuation_ = c;
        return h;
      }
      void await_resume() noexcept {}
    };
    struct to_ready_queue {  // the coroutine runs from the loop's turn, not inside a job
      process* p;
      bool await_ready() noexcept { return false; }
      void await_suspend(std::coroutine_handle<> c) { p->schedule(c); }
      void await_resume() noexcept {}
    };
    static detached drive(run* r, process* p) {
      co_await to_ready_queue{p};
      co_await resume_then_return{r->h};
      p->remove_pending(*r);
      r->done.signal();
    }
    static void start(void* ctx, process& p, bool live) noexcept {
      auto* r = static_cast<run*>(ctx);
      if (!live) return r->ended(p);
      p.add_pending(*r);
      drive(r, &p);
    }
  } r;
  r.h = h;
  p.post({&run::start, &r});
  r.done.wait();
  if (r.ended_early) throw ray::runtime_error("coray: the runtime ended while this thread waited");
}

}  // namespace detail
CORAY_END_NAMESPACE
