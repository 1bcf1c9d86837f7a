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
#include <functional>
#include <list>
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

class pool {
 public:
  /// A pool of `processes` processes (0: the runtime's number of task workers).
  explicit pool(std::uint32_t processes = 0)
      : pool(processes, [](detail::driver& d) {
          return d.make_actor_handle(ray::spawn<detail::pool_process>().id());
        }) {}

  /// A pool whose processes each run Init(initargs...) once, before any work.
  template <auto Init, class... A>
  pool(std::uint32_t processes, initializer_t<Init>, A&&... initargs)
      : pool(processes, spawner<Init>(std::forward<A>(initargs)...)) {}

  pool(const pool&) = delete;
  pool& operator=(const pool&) = delete;

  /// close() and join(): waits for the submitted work, then for the processes to end.
  ~pool() {
    if (!disp_.runtime_alive() || !d_.is_loop_thread()) return;  // the runtime is gone
    try {
      close();
      join();
    } catch (...) {
    }
  }

  /// F over every item, results in the items' order. Blocks (serving the runtime) until all
  /// are done; throws the first failed chunk's error. `chunksize` 0: automatic.
  template <auto F, std::ranges::input_range Range>
  std::vector<detail::map_result_t<F>> map(Range&& items, std::size_t chunksize = 0) {
    using R = detail::map_result_t<F>;
    std::size_t n = 0;
    auto units = submit_map<F>(std::forward<Range>(items), chunksize, n);
    std::vector<R> out;
    out.reserve(n);
    for (auto& u : units) {
      detail::block_until_settled(*u);
      u->rethrow_if_failed();
      detail::append_chunk(out, u->value_bytes());
    }
    return out;
  }

  /// map() without waiting: the ref settles with every result, in order, or the first error.
  template <auto F, std::ranges::input_range Range>
  object_ref<std::vector<detail::map_result_t<F>>> map_async(Range&& items,
                                                             std::size_t chunksize = 0) {
    std::size_t n = 0;
    auto units = submit_map<F>(std::forward<Range>(items), chunksize, n);
    auto result = detail::make_state();
    gathers_.emplace_back(*this, std::move(units), result, n,
                          &gather::template assemble<detail::map_result_t<F>>);
    gathers_.back().self = std::prev(gathers_.end());
    gathers_.back().start();
    return object_ref<std::vector<detail::map_result_t<F>>>(std::move(result));
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
  template <auto F, class... A>
  auto apply_async(A&&... args) {
    using traits = detail::function_traits<decltype(F)>;
    static_assert(traits::is_function && !traits::is_member,
                  "ray::pool::apply<f>: f must be a free function or a static member function");
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

  /// F(args...) in a pool process, waiting for its result.
  template <auto F, class... A>
  auto apply(A&&... args) {
    return ray::get(apply_async<F>(std::forward<A>(args)...)).get();
  }

  /// No more work may be submitted; what was submitted still runs.
  void close() noexcept { closed_ = true; }

  /// Waits (serving the runtime) until the work submitted so far has finished. After close()
  /// or terminate(), also until the pool's processes have ended.
  void join() {
    disp_.drain();
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

  /// Ends the processes now: running calls fail with actor_died, queued ones too.
  void terminate() {
    closed_ = true;
    disp_.fail_waiting(
        std::make_exception_ptr(actor_died("coray: ray::pool::terminate() ended the pool")));
    for (std::size_t i = 0; i < disp_.members(); ++i)
      if (disp_.is_live(i)) d_.kill_actor(disp_.member(i).get()->id);
  }

  /// How many processes the pool has.
  std::size_t size() const noexcept { return disp_.members(); }

  /// The pool's processes: pid, liveness and, once ended, exit code. Waits (serving the
  /// runtime) until each has started and run its initializer, or failed to.
  std::vector<process_info> processes() const {
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

 private:
  using spawn_fn = std::function<detail::actor_ptr(detail::driver&)>;

  pool(std::uint32_t processes, spawn_fn spawn)
      : d_(detail::require_driver("ray::pool")),
        spawn_(std::move(spawn)),
        disp_(d_, 2, [this](std::size_t i) { return replace(i); }) {
    const std::uint32_t n = processes ? processes : d_.num_workers();
    for (std::uint32_t i = 0; i < n; ++i) {
      ready_.emplace_back();
      start(disp_.add(spawn_(d_)));
    }
  }

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
            return d.make_actor_handle(ray::spawn<process_type>(a...).id());
          },
          args);
    };
  }

  /// Asks the new process at `member` to answer once built: then it is known to have
  /// initialised, and may be replaced should it die.
  void start(std::size_t member) {
    auto spec = detail::make_call<&detail::pool_process::pid>(d_);
    spec.target_actor = disp_.member(member).get()->id;
    ready_[member] = d_.submit(std::move(spec));
  }

  detail::actor_ptr replace(std::size_t member) {
    const auto& r = ready_[member];
    if (closed_ || !r || r->st != detail::object_state::status::ready)
      return {};  // its initializer failed
    ready_[member] = {};
    auto h = spawn_(d_);
    auto spec = detail::make_call<&detail::pool_process::pid>(d_);
    spec.target_actor = h.get()->id;
    ready_[member] = d_.submit(std::move(spec));
    return h;
  }

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
    using traits = detail::function_traits<decltype(F)>;
    static_assert(traits::is_function && !traits::is_member,
                  "ray::pool::map<f>: f must be a free function or a static member function");
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
  bool closed_ = false;
  detail::dispatcher disp_;
};

CORAY_END_NAMESPACE
