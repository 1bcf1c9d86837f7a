#pragma once
/// ray::actor_pool<T>: Ray's ActorPool -- spreads method calls over a fixed set of actors,
/// one call per actor at a time, the rest waiting until an actor is free.
///
///   struct doubler { int twice(int v) { return 2 * v; } };
///   std::vector<ray::actor<doubler>> actors{ray::spawn<doubler>(), ray::spawn<doubler>()};
///   ray::actor_pool<doubler> pool(actors);
///   for (int r : pool.map<&doubler::twice>(std::vector{1, 2, 3, 4})) ...   // 2 4 6 8
///   pool.submit<&doubler::twice>(5);
///   int ten = pool.get_next<int>();
///
/// An actor takes the next waiting call as soon as its current one finishes (Ray frees it
/// only when its result is fetched). map and map_unordered return their own result streams,
/// independent of submit/get_next. Driver only, from the loop's thread. Destroying the pool
/// waits for the calls it sent; the actors live on while other handles to them exist.

#include <fmt/format.h>

#include <chrono>
#include <coray/actor.hpp>
#include <coray/detail/mp/dispatcher.hpp>
#include <coray/result_stream.hpp>
#include <coray/sync_wait.hpp>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <ranges>
#include <string>
#include <string_view>
#include <vector>

CORAY_BEGIN_NAMESPACE

template <class T>
class actor_pool {
  template <auto Method>
  using method_result_t =
      detail::call_result_t<typename detail::function_traits<decltype(Method)>::return_type>;

 public:
  /// Throws ray::runtime_error if `actors` is empty: its calls would wait for ever.
  explicit actor_pool(std::vector<actor<T>> actors)
      : s_(std::make_unique<state>(detail::require_driver("ray::actor_pool"))) {
    if (actors.empty())
      throw ray::runtime_error("ray::actor_pool: no actors; a pool needs one to run its calls");
    for (auto& a : actors) push(std::move(a));
  }
  actor_pool(actor_pool&&) noexcept = default;
  actor_pool& operator=(actor_pool&&) noexcept = default;

  /// Waits for the calls the pool sent (the actors' results still arrive where they belong).
  ~actor_pool() {
    if (!s_ || !s_->disp.runtime_alive() || !s_->d.is_loop_thread()) return;
    try {
      s_->disp.drain();
    } catch (...) {
    }
  }

  /// Calls `Method` with `args` on the next free actor; its result is taken with get_next()
  /// or get_next_unordered().
  template <auto Method, class... A>
  void submit(A&&... args) {
    using R = method_result_t<Method>;
    state& s = *s_;
    auto result = s.disp.enqueue(make_call<Method>(std::forward<A>(args)...));
    const std::uint64_t index = s.next_index++;
    auto [it, inserted] =
        s.submitted.emplace(index, entry{std::move(result), detail::type_name_v<R>, {&s, index}});
    if (it->second.result->settled())
      s.settled.push_back(index);
    else
      it->second.result->waiters.push_back({&state::on_settled, &it->second.watch});
  }

  /// Whether results of submit() remain to be taken.
  bool has_next() const noexcept { return !s_->submitted.empty(); }
  /// Whether an actor is free now.
  bool has_free() const noexcept {
    for (std::size_t i = 0; i < s_->disp.members(); ++i)
      if (s_->disp.is_idle(i)) return true;
    return false;
  }

  /// The next result of submit(), in submission order; waits (serving the runtime) at most
  /// `timeout`, then throws get_timeout and leaves it in place. R is the method's result type.
  template <class R>
  R get_next(std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
    state& s = *s_;
    if (s.submitted.empty()) throw usage_error("ray::actor_pool::get_next: no pending results");
    auto it = s.submitted.begin();
    wait(timeout, [&] { return it->second.result->settled(); });
    return take<R>(it);
  }

  /// Any finished result of submit(), the first to finish first.
  template <class R>
  R get_next_unordered(std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
    state& s = *s_;
    if (s.submitted.empty())
      throw usage_error("ray::actor_pool::get_next_unordered: no pending results");
    auto first_settled = [&] {
      while (!s.settled.empty() && !s.submitted.count(s.settled.front())) s.settled.pop_front();
      return !s.settled.empty();
    };
    wait(timeout, first_settled);
    return take<R>(s.submitted.find(s.settled.front()));
  }

  /// `Method` over every value, results in the values' order as they are ready.
  template <auto Method, std::ranges::input_range Range>
  result_stream<method_result_t<Method>> map(Range&& values) {
    return result_stream<method_result_t<Method>>(enqueue_all<Method>(std::forward<Range>(values)),
                                                  true, false);
  }
  /// `Method` over every value, results as they finish.
  template <auto Method, std::ranges::input_range Range>
  result_stream<method_result_t<Method>> map_unordered(Range&& values) {
    return result_stream<method_result_t<Method>>(enqueue_all<Method>(std::forward<Range>(values)),
                                                  false, false);
  }

  /// Takes a free actor out of the pool; nullopt if none is free.
  std::optional<actor<T>> pop_idle() {
    for (std::size_t i = 0; i < s_->disp.members(); ++i)
      if (s_->disp.is_idle(i)) return actor<T>(s_->disp.remove(i));
    return std::nullopt;
  }
  /// Adds an actor to the pool; it takes waiting calls at once.
  void push(actor<T> a) {
    if (!a.valid()) throw usage_error("ray::actor_pool: an empty actor handle");
    s_->disp.add(s_->d.make_actor_handle(a.id()));
  }

 private:
  template <auto Method, class... A>
  detail::task_spec make_call(A&&... args) {
    using traits = detail::function_traits<decltype(Method)>;
    static_assert(
        traits::is_member,
        "ray::actor_pool<T>: the template argument must be a member function of T (&T::method)");
    if constexpr (traits::is_member) {
      static_assert(std::is_base_of_v<typename traits::class_type, T>,
                    "ray::actor_pool<T>: the method belongs to another class than T");
      using R = method_result_t<Method>;
      static_assert(
          std::is_void_v<R> || is_encodable_v<R>,
          "ray::actor_pool<T>: the method's return type cannot be sent between processes");
      static_assert(sizeof...(A) == traits::arity,
                    "ray::actor_pool<T>: wrong number of arguments for the method");
      if constexpr (sizeof...(A) == traits::arity) {
        constexpr bool fits = detail::arguments_fit<typename traits::params, A...>(
            std::make_index_sequence<sizeof...(A)>{});
        static_assert(fits,
                      "ray::actor_pool<T>: an argument does not match the method's parameter");
        if constexpr (fits) {
          if (!s_->disp.runtime_alive())
            throw usage_error("ray::actor_pool: its runtime has ended");
          return detail::make_call<Method>(s_->d, std::forward<A>(args)...);
        }
      }
    }
    return {};
  }

  template <auto Method, class Range>
  std::vector<detail::state_ptr> enqueue_all(Range&& values) {
    std::vector<detail::state_ptr> units;
    for (auto&& v : values)
      units.push_back(s_->disp.enqueue(make_call<Method>(std::forward<decltype(v)>(v))));
    return units;
  }

  struct state;
  struct settle_watch {
    state* s;
    std::uint64_t index;
  };
  struct entry {
    detail::state_ptr result;
    std::string_view type;  // the method's result type, checked by get_next<R>
    settle_watch watch;
  };

  struct state {
    explicit state(detail::driver& driver) : d(driver), disp(driver, 1) {}
    ~state() {
      for (auto& kv : submitted) {
        entry& e = kv.second;
        if (e.result->settled()) continue;
        auto& ws = e.result->waiters;
        std::erase_if(ws, [&](const detail::waiter& w) { return w.ctx == &e.watch; });
      }
    }
    static void on_settled(void* ctx, detail::object_state&) {
      auto* w = static_cast<settle_watch*>(ctx);
      w->s->settled.push_back(w->index);
    }
    detail::driver& d;
    std::map<std::uint64_t, entry> submitted;  // results of submit() not yet taken, by order
    std::deque<std::uint64_t> settled;         // indices in the order they settled
    std::uint64_t next_index = 0;
    detail::dispatcher disp;
  };

  template <class Done>
  void wait(std::optional<std::chrono::nanoseconds> timeout, Done&& done) {
    auto deadline = timeout ? detail::deadline_after(*timeout) : detail::clock::time_point::max();
    if (!done() && !detail::process::require().run_until(done, deadline))
      throw get_timeout("ray::actor_pool: no result within the timeout");
  }

  template <class R>
  R take(typename std::map<std::uint64_t, entry>::iterator it) {
    if (it->second.type != detail::type_name_v<R>)
      throw usage_error(fmt::format("ray::actor_pool::get_next<{}>: the next result is a {}",
                                    detail::type_name_v<R>, it->second.type));
    detail::state_ptr result = std::move(it->second.result);
    s_->submitted.erase(it);
    return detail::read_value<R>(*result);
  }

  std::unique_ptr<state> s_;
};

CORAY_END_NAMESPACE
