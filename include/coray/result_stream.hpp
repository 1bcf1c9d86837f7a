#pragma once
/// ray::result_stream<R>: results that arrive one by one -- what pool::imap,
/// pool::imap_unordered and actor_pool::map return (multiprocessing's IMapIterator). Iterate
/// it (blocking, serving the runtime meanwhile) or co_await next_async() in a coroutine.
///
///   for (int r : p.imap_unordered<square>(xs)) use(r);     // as each result arrives
///   while (auto r = co_await stream.next_async()) use(*r);
///
/// A call that failed throws its error where its result would have come; iterating on goes
/// past it. Single pass; movable, not copyable. Loop thread only.

#include <algorithm>
#include <coray/async.hpp>
#include <coray/codec.hpp>
#include <coray/detail/runtime/process.hpp>
#include <coray/object_store.hpp>
#include <coray/sync_wait.hpp>
#include <coroutine>
#include <cstddef>
#include <deque>
#include <iterator>
#include <memory>
#include <optional>
#include <vector>

CORAY_BEGIN_NAMESPACE

template <class R>
class result_stream {
 public:
  /// Runtime internals: `units` settle with either one R each or, if `chunked`, a
  /// std::vector<R> each; `ordered` yields them in the order given, else as they settle.
  result_stream(std::vector<detail::state_ptr> units, bool ordered, bool chunked)
      : s_(std::make_unique<state>(std::move(units), ordered, chunked)) {}
  result_stream(result_stream&&) noexcept = default;
  result_stream& operator=(result_stream&&) noexcept = default;
  ~result_stream() = default;

  /// The next result, waiting for it (serving the runtime); nullopt after the last one.
  std::optional<R> next() {
    state& s = *s_;
    if (!s.available()) detail::process::require().run_until([&] { return s.available(); });
    return s.take();
  }

  /// The same, in a coroutine: `while (auto r = co_await stream.next_async())`.
  async<std::optional<R>> next_async() {
    state& s = *s_;
    while (!s.available()) co_await arrival{s};
    co_return s.take();
  }

  /// True once every result has been returned.
  bool done() const noexcept { return s_->exhausted(); }

  class iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = R;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(result_stream* s) : s_(s) { ++*this; }
    R& operator*() noexcept { return *v_; }
    R* operator->() noexcept { return &*v_; }
    iterator& operator++() {
      v_ = s_->next();
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& i, std::default_sentinel_t) noexcept { return !i.v_; }

   private:
    result_stream* s_ = nullptr;
    std::optional<R> v_;
  };
  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() const noexcept { return {}; }

 private:
  struct state;
  struct unit_watch {
    state* s;
    std::size_t index;
  };

  struct state {
    std::vector<detail::state_ptr> units;
    std::vector<unit_watch> watches;  // waiter contexts, one per unit
    bool ordered, chunked;
    std::deque<std::size_t> settled;  // unordered: indices in the order they settled
    std::size_t next_unit = 0;        // ordered: the next to take; unordered: how many taken
    std::vector<R> buffer;            // decoded results of the unit being returned
    std::size_t buffer_at = 0;
    std::coroutine_handle<> waiting;

    state(std::vector<detail::state_ptr> u, bool o, bool c)
        : units(std::move(u)), ordered(o), chunked(c) {
      watches.reserve(units.size());
      for (std::size_t i = 0; i < units.size(); ++i) watches.push_back({this, i});
      for (std::size_t i = 0; i < units.size(); ++i) {
        if (units[i]->settled()) {
          if (!ordered) settled.push_back(i);
        } else {
          units[i]->waiters.push_back({&state::on_settled, &watches[i]});
        }
      }
    }
    state(const state&) = delete;
    ~state() {
      // Units still running must not call back into a stream that is gone.
      for (std::size_t i = 0; i < units.size(); ++i) {
        if (!units[i] || units[i]->settled()) continue;
        auto& ws = units[i]->waiters;
        ws.erase(std::remove_if(ws.begin(), ws.end(),
                                [&](const detail::waiter& w) { return w.ctx == &watches[i]; }),
                 ws.end());
      }
    }

    static void on_settled(void* ctx, detail::object_state&) {
      auto* w = static_cast<unit_watch*>(ctx);
      if (!w->s->ordered) w->s->settled.push_back(w->index);
      if (auto h = std::exchange(w->s->waiting, {}))
        detail::resume_waiter(h.address(), *w->s->units[w->index]);
    }

    bool exhausted() const noexcept {
      return buffer_at == buffer.size() && next_unit == units.size();
    }
    /// A result (or an error, or the end) can be returned without waiting.
    bool available() const noexcept {
      if (buffer_at < buffer.size() || next_unit == units.size()) return true;
      return ordered ? units[next_unit]->settled() : !settled.empty();
    }
    /// Precondition: available().
    std::optional<R> take() {
      while (buffer_at == buffer.size()) {
        if (next_unit == units.size()) return std::nullopt;
        std::size_t i = next_unit;
        if (!ordered) {
          i = settled.front();
          settled.pop_front();
        }
        ++next_unit;
        buffer.clear();
        buffer_at = 0;
        detail::state_ptr unit = std::move(units[i]);
        unit->rethrow_if_failed();
        if (chunked)
          buffer = decode<std::vector<R>>(unit->value_bytes());
        else
          buffer.push_back(decode<R>(unit->value_bytes()));
      }
      return std::move(buffer[buffer_at++]);
    }
  };

  /// Suspends a coroutine until the next unit settles.
  struct arrival {
    state& s;
    bool await_ready() const noexcept { return s.available(); }
    void await_suspend(std::coroutine_handle<> h) {
      s.waiting = h;
      detail::process::current()->coroutine_suspended(+1);
    }
    void await_resume() const noexcept {}
  };

  std::unique_ptr<state> s_;
};

CORAY_END_NAMESPACE
