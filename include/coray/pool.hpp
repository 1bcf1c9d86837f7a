#pragma once
/// ray::pool: multiprocessing.Pool for coray -- worker processes of its own that map a
/// function over a range in chunks, or run single calls, with an optional initializer run
/// once in each process. The function is named at compile time, as with ray::task.
///
///   int square(int x) { return x * x; }
///   void load_model(std::string path);                 // once per pool process
///
///   ray::pool p(4, ray::initializer<load_model>, "model.bin");
///   std::vector<int> ys = p.map<square>(xs);           // in order, chunked automatically
///   for (int y : p.imap_unordered<square>(xs)) ...     // as chunks finish
///   ray::object_ref<int> r = p.apply_async<square>(7);
///   std::vector<int> zs = p.starmap<add>(pairs);       // add(a, b) for each (a, b)
///   std::vector<int> ws = p.map<[](int x) { return x * 10; }>(xs);  // a captureless lambda
///   p.apply_async<square>(7, ray::callback([](int r) { ... }),
///                         ray::error_callback([](std::exception_ptr e) { ... }));
///   ray::pool q(4, ray::maxtasksperchild(100));      // each process replaced after 100 tasks
///
/// The function is a free function, a static member function or a lambda that captures
/// nothing (what it captured would not reach the pool's processes).
///
/// Callbacks run in the driver, on the loop's thread, once the call's result has arrived: as
/// Python runs them in the pool's result-handler thread, but here whenever the driver's loop
/// runs (during a blocking get, wait, map, join or serve_until, or while rt.run awaits). One
/// callback runs at a time; one that throws is reported on stderr. join() waits for them.
///
/// Chunks go to whichever process is free (each process has at most two sent to it at a
/// time), so uneven work balances. By default a map is cut into about four chunks per
/// process, as multiprocessing does, so a million tiny items cost a handful of messages,
/// not a million. Raw items (numbers, plain structs) are read by the pool processes in
/// place, in shared memory.
///
/// The pool is driver-only, used from the loop's thread. A process that dies fails the calls
/// it was running (actor_died) and is replaced, with its initializer run again; if the
/// initializer itself fails, the pool's calls fail with actor_died carrying its error.
/// Destroying the pool waits for the work submitted to it (close() and join()).

#include <fmt/format.h>

#include <algorithm>
#include <coray/actor.hpp>
#include <coray/detail/mp/dispatcher.hpp>
#include <coray/detail/mp/pool_process.hpp>
#include <coray/object_store.hpp>
#include <coray/processes.hpp>
#include <coray/result_stream.hpp>
#include <coray/sync_wait.hpp>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <list>
#include <optional>
#include <ranges>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE

/// Names a pool's initializer: `ray::pool p(n, ray::initializer<f>, args...)`.
template <auto F>
struct initializer_t {};
template <auto F>
inline constexpr initializer_t<F> initializer{};

/// multiprocessing's maxtasksperchild: `ray::pool p(n, ray::maxtasksperchild(k))` replaces
/// each process with a fresh one (its initializer run again) after it ran k tasks, a task
/// being one apply or one chunk of a map.
struct maxtasksperchild_t {
  std::uint32_t tasks = 0;
};
constexpr maxtasksperchild_t maxtasksperchild(std::uint32_t tasks) noexcept { return {tasks}; }

/// Run in the driver with a pool call's result once it has arrived (apply_async,
/// map_async, starmap_async): `ray::callback([](int r) { ... })`.
template <class Fn>
struct callback_t {
  Fn fn;
};
template <class Fn>
callback_t<std::decay_t<Fn>> callback(Fn&& fn) {
  return {std::forward<Fn>(fn)};
}
/// Run in the driver with a pool call's error (a std::exception_ptr) if it failed.
template <class Fn>
struct error_callback_t {
  Fn fn;
};
template <class Fn>
error_callback_t<std::decay_t<Fn>> error_callback(Fn&& fn) {
  return {std::forward<Fn>(fn)};
}

namespace detail {
template <class T>
struct is_callback_tag : std::false_type {};
template <class Fn>
struct is_callback_tag<callback_t<Fn>> : std::true_type {};
template <class Fn>
struct is_callback_tag<error_callback_t<Fn>> : std::true_type {};
template <class T>
inline constexpr bool is_callback_tag_v = is_callback_tag<std::remove_cvref_t<T>>::value;
template <class T>
inline constexpr bool is_result_callback_v = false;
template <class Fn>
inline constexpr bool is_result_callback_v<callback_t<Fn>> = true;

/// How many of `A...` come before the first callback.
template <class... A>
constexpr std::size_t leading_arguments() {
  constexpr bool tags[] = {is_callback_tag_v<A>..., true};
  std::size_t i = 0;
  while (!tags[i]) ++i;
  return i;
}
}  // namespace detail

class pool {
 public:
  /// A pool of `processes` processes (0: the runtime's number of task workers).
  CORAY_API explicit pool(std::uint32_t processes = 0);

  /// A pool whose processes each run Init(initargs...) once, before any work.
  template <auto Init, class... A>
  pool(std::uint32_t processes, initializer_t<Init>, A&&... initargs)
      : pool(processes, spawner<Init>(std::forward<A>(initargs)...)) {}

  /// A pool whose processes are each replaced after `limit.tasks` tasks.
  pool(std::uint32_t processes, maxtasksperchild_t limit) : pool(processes) {
    disp_.set_calls_per_member(limit.tasks);
  }
  template <auto Init, class... A>
  pool(std::uint32_t processes, maxtasksperchild_t limit, initializer_t<Init> init, A&&... initargs)
      : pool(processes, init, std::forward<A>(initargs)...) {
    disp_.set_calls_per_member(limit.tasks);
  }

  pool(const pool&) = delete;
  pool& operator=(const pool&) = delete;

  /// close() and join(): waits for the submitted work, then for the processes to end.
  CORAY_API ~pool();

  /// F over every item, results in the items' order. Blocks (serving the runtime) until all
  /// are done; throws the first failed chunk's error. `chunksize` 0: automatic.
  template <auto F, std::ranges::input_range Range>
  std::vector<detail::map_result_t<F>> map(Range&& items, std::size_t chunksize = 0) {
    std::size_t n = 0;
    return collect<detail::map_result_t<F>>(submit_map<F>(std::forward<Range>(items), chunksize, n),
                                            n);
  }

  /// map() without waiting: the ref settles with every result, in order, or the first error.
  /// Optional callbacks after the items (and chunk size): ray::callback(fn) gets the results'
  /// vector, ray::error_callback(fn) the error.
  template <auto F, std::ranges::input_range Range, class... Callbacks>
  object_ref<std::vector<detail::map_result_t<F>>> map_async(Range&& items, std::size_t chunksize,
                                                             Callbacks&&... callbacks) {
    using R = std::vector<detail::map_result_t<F>>;
    check_callbacks<R, Callbacks...>();
    std::size_t n = 0;
    auto units = submit_map<F>(std::forward<Range>(items), chunksize, n);
    auto ref = gather_units<detail::map_result_t<F>>(std::move(units), n);
    watch<R>(ref.state(), std::forward<Callbacks>(callbacks)...);
    return ref;
  }
  template <auto F, std::ranges::input_range Range, class... Callbacks>
  requires(detail::is_callback_tag_v<Callbacks>&&...)
      object_ref<std::vector<detail::map_result_t<F>>> map_async(Range&& items,
                                                                 Callbacks&&... callbacks) {
    return map_async<F>(std::forward<Range>(items), 0, std::forward<Callbacks>(callbacks)...);
  }

  /// F(args...) for each item of `items`, a range of tuples (std::tuple, std::pair,
  /// std::array, ...) each holding the arguments of one call; results in the items' order.
  /// Blocks as map() does. Items whose arguments are all raw travel packed, read in place.
  template <auto F, std::ranges::input_range Range>
  std::vector<detail::map_result_t<F>> starmap(Range&& items, std::size_t chunksize = 0) {
    std::size_t n = 0;
    return collect<detail::map_result_t<F>>(
        submit_star<F>(std::forward<Range>(items), chunksize, n), n);
  }

  /// starmap() without waiting, with optional callbacks as map_async takes them.
  template <auto F, std::ranges::input_range Range, class... Callbacks>
  object_ref<std::vector<detail::map_result_t<F>>> starmap_async(Range&& items,
                                                                 std::size_t chunksize,
                                                                 Callbacks&&... callbacks) {
    using R = std::vector<detail::map_result_t<F>>;
    check_callbacks<R, Callbacks...>();
    std::size_t n = 0;
    auto units = submit_star<F>(std::forward<Range>(items), chunksize, n);
    auto ref = gather_units<detail::map_result_t<F>>(std::move(units), n);
    watch<R>(ref.state(), std::forward<Callbacks>(callbacks)...);
    return ref;
  }
  template <auto F, std::ranges::input_range Range, class... Callbacks>
  requires(detail::is_callback_tag_v<Callbacks>&&...)
      object_ref<std::vector<detail::map_result_t<F>>> starmap_async(Range&& items,
                                                                     Callbacks&&... callbacks) {
    return starmap_async<F>(std::forward<Range>(items), 0, std::forward<Callbacks>(callbacks)...);
  }

  /// F over every item; results come in the items' order as they are ready.
  template <auto F, std::ranges::input_range Range>
  result_stream<detail::map_result_t<F>> imap(Range&& items, std::size_t chunksize = 0) {
    std::size_t n = 0;
    return result_stream<detail::map_result_t<F>>(
        submit_map<F>(std::forward<Range>(items), chunksize, n), true, true);
  }

  /// F over every item; results come as chunks finish, in no particular order.
  template <auto F, std::ranges::input_range Range>
  result_stream<detail::map_result_t<F>> imap_unordered(Range&& items, std::size_t chunksize = 0) {
    std::size_t n = 0;
    return result_stream<detail::map_result_t<F>>(
        submit_map<F>(std::forward<Range>(items), chunksize, n), false, true);
  }

  /// F(args...) in a pool process; the ref settles with its result (F may be a coroutine).
  /// After the arguments, optionally ray::callback(fn) (run with the result) and
  /// ray::error_callback(fn) (run with the error), in the driver.
  template <auto F, class... A>
  auto apply_async(A&&... args) {
    static_assert(valid_callee<F>(),
                  "ray::pool::apply<f>: f must be a free function, a static member function or a "
                  "captureless lambda");
    constexpr std::size_t k = detail::leading_arguments<A...>();
    auto all = std::forward_as_tuple(std::forward<A>(args)...);
    return [&]<std::size_t... I, std::size_t... J>(std::index_sequence<I...>,
                                                   std::index_sequence<J...>) {
      using result_type = detail::call_result_t<typename detail::callee_traits_t<F>::return_type>;
      check_callbacks<result_type, std::tuple_element_t<k + J, std::tuple<A...>>...>();
      auto ref = submit_apply<F>(std::get<I>(std::move(all))...);
      watch<result_type>(ref.state(), std::get<k + J>(std::move(all))...);
      return ref;
    }
    (std::make_index_sequence<k>{}, std::make_index_sequence<sizeof...(A) - k>{});
  }

  /// F(args...) in a pool process, waiting for its result.
  template <auto F, class... A>
  auto apply(A&&... args) {
    return ray::get(apply_async<F>(std::forward<A>(args)...)).get();
  }

  /// No more work may be submitted; what was submitted still runs.
  void close() noexcept { closed_ = true; }

  /// Waits (serving the runtime) until the work submitted so far has finished and its
  /// callbacks have run. After close() or terminate(), also until the pool's processes have
  /// ended.
  CORAY_API void join();

  /// Ends the processes now: running calls fail with actor_died, queued ones too.
  CORAY_API void terminate();

  /// How many processes the pool has.
  std::size_t size() const noexcept { return disp_.members(); }

  /// The pool's processes: pid, liveness and, once ended, exit code. Waits (serving the
  /// runtime) until each has started and run its initializer, or failed to, and until a
  /// process that ran its maxtasksperchild tasks has been replaced.
  CORAY_API std::vector<process_info> processes();

 private:
  using spawn_fn = std::function<detail::actor_ptr(detail::driver&)>;

  /// F is a function or a captureless lambda (static_asserts say which it is not).
  template <auto F>
  static consteval bool valid_callee() {
    using traits = detail::callee_traits_t<F>;
    static_assert(!traits::captures,
                  "ray::pool: f is a lambda that captures variables, which a pool process cannot "
                  "see: pass them as arguments (apply, starmap) or make f capture nothing");
    return traits::is_function && !traits::is_member;  // a capture is reported above
  }

  template <auto F, class... A>
  auto submit_apply(A&&... args) {
    using traits = detail::callee_traits_t<F>;
    using params = typename traits::params;
    using result_type = detail::call_result_t<typename traits::return_type>;
    static_assert(sizeof...(A) == traits::arity,
                  "ray::pool::apply<f>(...): wrong number of arguments for f");
    if constexpr (sizeof...(A) == traits::arity) {
      constexpr bool fits =
          detail::arguments_fit<params, A...>(std::make_index_sequence<sizeof...(A)>{});
      static_assert(fits,
                    "ray::pool::apply<f>(...): an argument does not match f's parameter: pass the "
                    "parameter's "
                    "type, a value convertible to it, or an object_ref of it");
      if constexpr (fits) {
        require_open("ray::pool::apply");
        auto spec = detail::make_pool_call<detail::pool_run<F>::method, F, detail::apply_tag>(
            d_, std::forward<A>(args)...);
        return object_ref<result_type>(disp_.enqueue(std::move(spec)));
      } else {
        return object_ref<result_type>{};
      }
    } else {
      return object_ref<result_type>{};
    }
  }

  /// Waits for the chunks in order and joins their results.
  template <class R>
  static std::vector<R> collect(std::vector<detail::state_ptr> units, std::size_t n) {
    std::vector<R> out;
    out.reserve(n);
    for (auto& u : units) {
      detail::block_until_settled(*u);
      u->rethrow_if_failed();
      detail::append_chunk(out, u->value_bytes());
    }
    return out;
  }

  /// A ref that settles with the chunks' results joined, once all have settled.
  template <class R>
  object_ref<std::vector<R>> gather_units(std::vector<detail::state_ptr> units, std::size_t n) {
    auto result = detail::make_state();
    gathers_.emplace_back(*this, std::move(units), result, n, &gather::template assemble<R>);
    gathers_.back().self = std::prev(gathers_.end());
    gathers_.back().start();
    return object_ref<std::vector<R>>(std::move(result));
  }

  // ---- callbacks ----

  template <class R, class... Callbacks>
  static consteval void check_callbacks() {
    static_assert((detail::is_callback_tag_v<Callbacks> && ...),
                  "ray::pool: after the arguments, only ray::callback(fn) and "
                  "ray::error_callback(fn) may follow");
    static_assert(
        (0 + ... + (detail::is_result_callback_v<std::remove_cvref_t<Callbacks>> ? 1 : 0)) <= 1 &&
            (0 + ... + (detail::is_result_callback_v<std::remove_cvref_t<Callbacks>> ? 0 : 1)) <= 1,
        "ray::pool: at most one ray::callback and one ray::error_callback per call");
    static_assert((callback_fits<R, std::remove_cvref_t<Callbacks>>() && ...),
                  "ray::pool: ray::callback(fn) must take the call's result (by value or const "
                  "reference; nothing for a void f), and ray::error_callback(fn) a "
                  "std::exception_ptr");
  }
  template <class R, class C>
  static consteval bool callback_fits() {
    if constexpr (!detail::is_callback_tag<C>::value) {
      return true;
    } else if constexpr (detail::is_result_callback_v<C>) {
      if constexpr (std::is_void_v<R>)
        return std::is_invocable_v<decltype(C::fn)&>;
      else
        return std::is_invocable_v<decltype(C::fn)&, R&&>;
    } else {
      return std::is_invocable_v<decltype(C::fn)&, std::exception_ptr>;
    }
  }

  /// A result whose callbacks are to run once it settles.
  struct pending_callback {
    pool* owner;
    detail::state_ptr state;
    std::function<void(detail::object_state&)> run;
    std::list<pending_callback>::iterator self;
    bool settled = false;
  };

  template <class R, class... Callbacks>
  void watch(const detail::state_ptr& state, Callbacks&&... cbs) {
    if constexpr (sizeof...(Callbacks) > 0) {
      auto on_value = [&] {
        if constexpr ((detail::is_result_callback_v<std::remove_cvref_t<Callbacks>> || ...))
          return std::move(pick_callback<true>(cbs...).fn);
        else
          return nullptr;
      }();
      auto on_error = [&] {
        if constexpr ((!detail::is_result_callback_v<std::remove_cvref_t<Callbacks>> || ...))
          return std::move(pick_callback<false>(cbs...).fn);
        else
          return nullptr;
      }();
      auto run = [on_value = std::move(on_value),
                  on_error = std::move(on_error)](detail::object_state& st) mutable {
        std::exception_ptr error;
        std::optional<std::conditional_t<std::is_void_v<R>, bool, R>> value;
        try {
          st.rethrow_if_failed();
          if constexpr (std::is_void_v<R>)
            value.emplace(true);
          else
            value.emplace(decode<R>(st.value_bytes()));
        } catch (...) {
          error = std::current_exception();
        }
        if (value) {
          if constexpr (!std::is_same_v<decltype(on_value), std::nullptr_t>) {
            if constexpr (std::is_void_v<R>)
              on_value();
            else
              on_value(std::move(*value));
          }
        } else if constexpr (!std::is_same_v<decltype(on_error), std::nullptr_t>) {
          on_error(error);
        }
      };
      callbacks_.push_back({this, state, std::move(run), {}});
      auto& rec = callbacks_.back();
      rec.self = std::prev(callbacks_.end());
      if (state->settled())
        callback_due(&rec, *state);
      else
        state->waiters.push_back({&pool::callback_due, &rec});
    }
  }
  template <bool Value, class C, class... Rest>
  static auto& pick_callback(C& c, Rest&... rest) {
    if constexpr (detail::is_result_callback_v<std::remove_cvref_t<C>> == Value)
      return c;
    else
      return pick_callback<Value>(rest...);
  }

  /// A watched result settled (in a driver callback): its callbacks run later, on the loop.
  CORAY_API static void callback_due(void* ctx, detail::object_state&);
  static detail::loop_task callback_loop(pool* self) {
    for (;;) {
      co_await std::suspend_always{};
      self->callbacks_scheduled_ = false;
      self->run_due_callbacks();
    }
  }
  /// Runs the due callbacks one at a time, in the order their results settled. A callback
  /// may block (its loop runs more): results settling meanwhile are run by this same loop.
  CORAY_API void run_due_callbacks();
  /// The pool goes: no result may call back into it.
  CORAY_API void forget_callbacks() noexcept;

  CORAY_API pool(std::uint32_t processes, spawn_fn spawn);

  template <auto Init, class... A>
  static spawn_fn spawner(A&&... initargs) {
    using traits = detail::function_traits<decltype(Init)>;
    static_assert(traits::is_function && !traits::is_member,
                  "ray::initializer<f>: f must be a free function or a static member function");
    using process_type = typename detail::initialized_process_type<Init>::type;
    static_assert(sizeof...(A) == traits::arity,
                  "ray::pool(n, ray::initializer<f>, initargs...): wrong number of initargs for f");
    static_assert(std::is_constructible_v<process_type,
                                          detail::constructor_arg_t<detail::put_type_t<A>>&&...>,
                  "ray::pool(n, ray::initializer<f>, initargs...): an initarg does not convert to "
                  "f's parameter");
    return [args = std::make_tuple(detail::put_type_t<A>(std::forward<A>(initargs))...)](
               detail::driver& d) {
      return std::apply(
          [&](const auto&... a) {
            return d.make_actor_handle(
                ray::spawn<process_type>(detail::multiprocessing_options(), a...).id());
          },
          args);
    };
  }

  /// Asks the new process at `member` to answer once built: then it is known to have
  /// initialised, and may be replaced should it die.
  CORAY_API void start(std::size_t member);

  /// A member's process died or retired: start another, unless its initializer failed (no
  /// restart loop) or, for a death, the pool is closed. A retired process is replaced even
  /// then, as Python's pool keeps its size while closed work remains.
  CORAY_API detail::actor_ptr replace(std::size_t member, detail::dispatcher::replace_reason why);

  void require_open(const char* what) const {
    if (closed_) throw usage_error(fmt::format("{}: the pool is closed", what));
    if (!disp_.runtime_alive())
      throw usage_error(fmt::format("{}: the pool's runtime has ended", what));
  }

  std::size_t chunk_size(std::size_t n, std::size_t requested) const {
    if (requested) return requested;
    const std::size_t parts = 4 * std::max<std::size_t>(1, disp_.members());
    return std::max<std::size_t>(1, (n + parts - 1) / parts);
  }

  /// Cuts the items into chunks and queues one call per chunk; `n` gets the item count.
  template <auto F, class Range>
  std::vector<detail::state_ptr> submit_map(Range&& items, std::size_t chunksize, std::size_t& n) {
    using traits = detail::callee_traits_t<F>;
    static_assert(valid_callee<F>(),
                  "ray::pool::map<f>: f must be a free function, a static member function or a "
                  "captureless lambda");
    static_assert(traits::arity == 1, "ray::pool::map<f>: f must take one parameter (an item)");
    using P = detail::map_param_t<F>;
    using S = detail::map_item_t<F>;
    using R = detail::map_result_t<F>;
    static_assert(!detail::is_mutable_ref_v<P>,
                  "ray::pool::map<f>: f's parameter must not be a non-const reference");
    static_assert(!detail::is_async<typename traits::return_type>::value,
                  "ray::pool::map<f>: f must not be a coroutine (use apply_async)");
    static_assert(!std::is_void_v<R> && is_encodable_v<R>,
                  "ray::pool::map<f>: f must return a value that can be sent between processes");
    static_assert(is_encodable_v<S>,
                  "ray::pool::map<f>: f's parameter cannot be sent between processes");
    static_assert(std::is_convertible_v<std::ranges::range_reference_t<Range>, S>,
                  "ray::pool::map<f>(items): an item does not convert to f's parameter");
    using chunk = detail::chunk_t<S>;
    constexpr auto method = &detail::pool_process::template run_chunk<F, chunk>;
    require_open("ray::pool::map");

    std::vector<detail::state_ptr> units;
    auto send = [&](auto&& c) {
      units.push_back(disp_.enqueue(detail::make_pool_call<method, F, detail::map_chunk_tag<chunk>>(
          d_, std::forward<decltype(c)>(c))));
    };
    using V = std::remove_cv_t<std::ranges::range_value_t<Range>>;
    if constexpr (std::ranges::contiguous_range<Range> && std::ranges::sized_range<Range> &&
                  std::is_same_v<V, S> && detail::is_raw_copyable_v<S>) {
      // In place: each chunk is copied once, into its message or block.
      std::span<const S> all(std::ranges::data(items), std::ranges::size(items));
      n = all.size();
      const std::size_t cs = chunk_size(n, chunksize);
      for (std::size_t i = 0; i < n; i += cs) send(all.subspan(i, std::min(cs, n - i)));
    } else {
      std::vector<S> all;
      if constexpr (std::ranges::sized_range<Range>) all.reserve(std::ranges::size(items));
      for (auto&& x : items) all.push_back(static_cast<S>(std::forward<decltype(x)>(x)));
      n = all.size();
      const std::size_t cs = chunk_size(n, chunksize);
      for (std::size_t i = 0; i < n; i += cs) {
        const std::size_t len = std::min(cs, n - i);
        if constexpr (detail::is_raw_copyable_v<S>) {
          send(std::span<const S>(all.data() + i, len));
        } else {
          send(std::vector<S>(
              std::make_move_iterator(all.begin() + static_cast<std::ptrdiff_t>(i)),
              std::make_move_iterator(all.begin() + static_cast<std::ptrdiff_t>(i + len))));
        }
      }
    }
    return units;
  }

  /// The argument lists of a starmap's items, checked against F's parameters.
  template <auto F, class V>
  static consteval bool star_items_fit() {
    using traits = detail::callee_traits_t<F>;
    if constexpr (!requires { std::tuple_size<V>::value; }) {
      static_assert(
          requires { std::tuple_size<V>::value; },
          "ray::pool::starmap<f>(tuples): each item must be a tuple of f's arguments "
          "(std::tuple, std::pair, std::array)");
      return false;
    } else if constexpr (std::tuple_size_v<V> != traits::arity) {
      static_assert(
          std::tuple_size_v<V> == traits::arity,
          "ray::pool::starmap<f>(tuples): a tuple's size is not f's number of parameters");
      return false;
    } else {
      constexpr bool fits = []<std::size_t... I>(std::index_sequence<I...>) {
        return (std::is_convertible_v<const std::tuple_element_t<I, V>&,
                                      typename detail::star_args<F>::template arg<I>> &&
                ...);
      }
      (std::make_index_sequence<traits::arity>{});
      static_assert(fits,
                    "ray::pool::starmap<f>(tuples): a tuple's element does not convert to f's "
                    "parameter in its position");
      return fits;
    }
  }

  /// Cuts the argument lists into chunks and queues one call per chunk.
  template <auto F, class Range>
  std::vector<detail::state_ptr> submit_star(Range&& items, std::size_t chunksize, std::size_t& n) {
    using traits = detail::callee_traits_t<F>;
    static_assert(valid_callee<F>(),
                  "ray::pool::starmap<f>: f must be a free function, a static member function or "
                  "a captureless lambda");
    using R = detail::map_result_t<F>;
    static_assert(!detail::is_async<typename traits::return_type>::value,
                  "ray::pool::starmap<f>: f must not be a coroutine (use apply_async)");
    static_assert(
        !std::is_void_v<R> && is_encodable_v<R>,
        "ray::pool::starmap<f>: f must return a value that can be sent between processes");
    using V = std::remove_cvref_t<std::ranges::range_reference_t<Range>>;
    constexpr bool fits = star_items_fit<F, V>();
    std::vector<detail::state_ptr> units;
    if constexpr (fits) {
      using args = detail::star_args<F>;
      static_assert(
          []<class... P>(std::type_identity<std::tuple<P...>>) {
            return (!detail::is_mutable_ref_v<P> && ...);
          }(std::type_identity<typename traits::params>{}),
          "ray::pool::starmap<f>: f's parameters must not be non-const references");
      static_assert(is_encodable_v<typename args::tuple>,
                    "ray::pool::starmap<f>: a parameter of f cannot be sent between processes");
      using chunk = typename args::chunk;
      constexpr auto method = &detail::pool_process::template run_star_chunk<F, chunk>;
      require_open("ray::pool::starmap");
      auto send = [&](auto&& c) {
        units.push_back(
            disp_.enqueue(detail::make_pool_call<method, F, detail::star_chunk_tag<chunk>>(
                d_, std::forward<decltype(c)>(c))));
      };
      using Item = std::remove_cv_t<std::ranges::range_value_t<Range>>;
      if constexpr (args::template may_lie_as_rows<Item> && std::ranges::contiguous_range<Range> &&
                    std::ranges::sized_range<Range>) {
        n = std::ranges::size(items);
        if (n > 0 && args::lies_as_rows(*std::ranges::data(items))) {
          // Items that lie as rows (a std::pair or std::array of the parameters' types, a
          // std::tuple whose library keeps its elements in order): each chunk is copied once,
          // as it lies, into its message or block, as map copies raw items.
          const auto* all = reinterpret_cast<const std::byte*>(std::ranges::data(items));
          const std::size_t cs = chunk_size(n, chunksize);
          for (std::size_t i = 0; i < n; i += cs) {
            const std::size_t len = std::min(cs, n - i);
            auto fill = [from = all + i * args::width, len](std::byte* out) {
              std::memcpy(out, from, len * args::width);
            };
            send(detail::raw_rows_argument<typename args::row, decltype(fill)>{len, fill});
          }
          return units;
        }
      }
      if constexpr (args::raw && std::ranges::sized_range<Range>) {
        // Packed: each item's arguments become one row of bytes, written straight into the
        // call's message or block (one pass over the items, as map's one copy of them).
        n = std::ranges::size(items);
        const std::size_t cs = chunk_size(n, chunksize);
        auto it = std::ranges::begin(items);
        for (std::size_t i = 0; i < n; i += cs) {
          const std::size_t len = std::min(cs, n - i);
          auto fill = [&it, len](std::byte* out) {
            // Locals: stores through `out` may alias `it` and the closure, not these.
            auto at = it;
            const std::size_t rows = len;
            for (std::size_t j = 0; j < rows; ++j, ++at) args::pack(out + j * args::width, *at);
            it = at;
          };
          send(detail::raw_rows_argument<typename args::row, decltype(fill)>{len, fill});
        }
      } else if constexpr (args::raw) {
        std::vector<typename args::row> rows;
        for (auto&& t : items) args::pack(rows.emplace_back().data(), t);
        n = rows.size();
        const std::size_t cs = chunk_size(n, chunksize);
        std::span<const typename args::row> all(rows);
        for (std::size_t i = 0; i < n; i += cs) send(all.subspan(i, std::min(cs, n - i)));
      } else {
        std::vector<typename args::tuple> all;
        if constexpr (std::ranges::sized_range<Range>) all.reserve(std::ranges::size(items));
        for (auto&& t : items) {
          [&]<std::size_t... I>(std::index_sequence<I...>) {
            using std::get;
            all.emplace_back(static_cast<typename args::template arg<I>>(
                get<I>(std::forward<decltype(t)>(t)))...);
          }
          (std::make_index_sequence<traits::arity>{});
        }
        n = all.size();
        const std::size_t cs = chunk_size(n, chunksize);
        for (std::size_t i = 0; i < n; i += cs) {
          const std::size_t len = std::min(cs, n - i);
          send(std::vector<typename args::tuple>(
              std::make_move_iterator(all.begin() + static_cast<std::ptrdiff_t>(i)),
              std::make_move_iterator(all.begin() + static_cast<std::ptrdiff_t>(i + len))));
        }
      }
    }
    return units;
  }

  /// A map_async in progress: settles its result once every chunk has.
  struct gather {
    gather(pool& p, std::vector<detail::state_ptr> u, detail::state_ptr r, std::size_t n,
           void (*a)(gather&))
        : owner(p), units(std::move(u)), result(std::move(r)), items(n), assemble_fn(a) {}
    pool& owner;
    std::vector<detail::state_ptr> units;
    detail::state_ptr result;
    std::size_t items;
    void (*assemble_fn)(gather&);
    std::size_t pending = 0;
    std::list<gather>::iterator self;

    void start() {
      for (auto& u : units)
        if (!u->settled()) {
          ++pending;
          u->waiters.push_back({&gather::on_settled, this});
        }
      if (pending == 0) finish();
    }
    static void on_settled(void* ctx, detail::object_state&) {
      auto* g = static_cast<gather*>(ctx);
      if (--g->pending == 0) g->finish();
    }
    void finish() {
      assemble_fn(*this);
      owner.gathers_.erase(self);  // destroys *this
    }
    template <class R>
    static void assemble(gather& g) {
      try {
        std::vector<R> all;
        all.reserve(g.items);
        for (auto& u : g.units) {
          u->rethrow_if_failed();
          detail::append_chunk(all, u->value_bytes());
        }
        detail::store_value(g.owner.d_, *g.result, all);
        g.result->settle(detail::object_state::status::ready);
      } catch (...) {
        g.result->set_error(std::current_exception());
      }
    }
  };

  detail::driver& d_;
  spawn_fn spawn_;
  std::vector<detail::state_ptr> ready_;  // per process: its answer once built
  std::list<gather> gathers_;
  std::list<pending_callback> callbacks_;  // watched results whose callbacks have not run
  std::deque<std::list<pending_callback>::iterator> due_;  // settled, callbacks to run
  bool callbacks_scheduled_ = false;
  bool running_callbacks_ = false;
  bool closed_ = false;
  detail::dispatcher disp_;
  detail::loop_task callback_task_;
};

CORAY_END_NAMESPACE

#ifndef CORAY_COMPILED_LIB
#include <coray/detail/mp/pool_impl.hpp>
#endif
