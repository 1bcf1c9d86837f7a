#pragma once
/// A process of a ray::pool: an actor that runs chunks of a map and single calls of the
/// pool's functions, after its initializer ran once in its constructor.

#include <unistd.h>

#include <coray/detail/codec/codec_traits.hpp>
#include <coray/task.hpp>
#include <span>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

template <auto F>
using map_param_t = std::tuple_element_t<0, typename function_traits<decltype(F)>::params>;
/// What a map's items are carried as: F's parameter's owning type.
template <auto F>
using map_item_t = storage_type_t<map_param_t<F>>;
template <auto F>
using map_result_t = call_result_t<typename function_traits<decltype(F)>::return_type>;
/// A chunk of items: raw items are read in place, others decoded.
template <class S>
using chunk_t = std::conditional_t<is_raw_copyable_v<S>, std::span<const S>, std::vector<S>>;

/// F applied to one item of a chunk: moved from when the chunk owns it.
template <auto F, class X>
decltype(auto) call_item(X& x) {
  using P = map_param_t<F>;
  if constexpr (!std::is_const_v<X>)
    return F(std::move(x));
  else if constexpr (std::is_rvalue_reference_v<P>)
    return F(std::remove_cvref_t<P>(x));
  else
    return F(x);
}

struct pool_process {
  /// F over a chunk's items, in order.
  template <auto F, class Chunk>
  std::vector<map_result_t<F>> run_chunk(Chunk items) {
    std::vector<map_result_t<F>> out;
    out.reserve(items.size());
    for (auto& x : items) out.push_back(call_item<F>(x));
    return out;
  }
  /// One call of F (pool::apply); a coroutine F is awaited.
  template <auto F, class... P>
  typename function_traits<decltype(F)>::return_type run(P... args) {
    return F(std::forward<P>(args)...);
  }
  /// Answers once the process is built: its initializer succeeded.
  int pid() const { return getpid(); }
};

/// A pool process whose constructor runs Init(args...) once.
template <auto Init, class... S>
struct initialized_pool_process : pool_process {
  explicit initialized_pool_process(S... args) { Init(std::move(args)...); }
};

template <auto F, class Params = typename function_traits<decltype(F)>::params>
struct pool_run;
template <auto F, class... P>
struct pool_run<F, std::tuple<P...>> {
  static constexpr auto method = &pool_process::template run<F, P...>;
};

template <class Chunk>
struct map_chunk_tag {};
struct apply_tag {};

/// The id a pool method running F is called by. Compilers print a pointer to a member
/// function template without its template arguments, so entity_id<&pool_process::run_chunk<F,
/// C>> is the same for every F; this id is F's own, mixed with what the method does with it.
/// Errors read as coming from F.
template <auto Method, auto F, class Tag>
struct pool_callee {
  static constexpr std::uint64_t id = [] {
    std::uint64_t h = entity_id<F>;
    for (char c : type_name<Tag>()) {
      h ^= static_cast<unsigned char>(c);
      h *= 1099511628211ULL;
    }
    return h;
  }();
  static inline const bool registered =
      register_function(id, &invoker<Method>::invoke, entity_name<F>());
};

/// The message of a pool method's call: make_call, under the pool_callee id.
template <auto Method, auto F, class Tag, class... A>
task_spec make_pool_call(process& p, A&&... args) {
  task_spec spec = make_call<Method>(p, std::forward<A>(args)...);
  (void)pool_callee<Method, F, Tag>::registered;
  spec.fn_id = pool_callee<Method, F, Tag>::id;
  spec.name = entity_name<F>();
  return spec;
}

template <auto Init, class Params = typename function_traits<decltype(Init)>::params>
struct initialized_process_type;
template <auto Init, class... P>
struct initialized_process_type<Init, std::tuple<P...>> {
  using type = initialized_pool_process<Init, storage_type_t<P>...>;
};

/// Appends a chunk's encoded std::vector<R> to `out`: one copy for raw R.
template <class R>
void append_chunk(std::vector<R>& out, std::span<const std::byte> bytes) {
  if constexpr (is_raw_copyable_v<R>) {
    reader in(bytes);
    auto [p, n] = in.take_raw_run<std::vector<R>, R>();
    if (in.remaining() != 0) throw codec_error("coray: trailing bytes after a map chunk's results");
    if (reinterpret_cast<std::uintptr_t>(p) % alignof(R) == 0) {
      const R* first = reinterpret_cast<const R*>(p);
      out.insert(out.end(), first, first + n);
    } else {
      const std::size_t at = out.size();
      out.resize(at + n);
      if (n) std::memcpy(out.data() + at, p, n * sizeof(R));
    }
  } else {
    auto v = decode<std::vector<R>>(bytes);
    out.insert(out.end(), std::make_move_iterator(v.begin()), std::make_move_iterator(v.end()));
  }
}

}  // namespace detail
CORAY_END_NAMESPACE
