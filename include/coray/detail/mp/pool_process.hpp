#pragma once
/// A process of a ray::pool: an actor that runs chunks of a map and single calls of the
/// pool's functions, after its initializer ran once in its constructor.

#include <unistd.h>

#include <array>
#include <bit>
#include <coray/detail/codec/codec_traits.hpp>
#include <coray/task.hpp>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// What the pool calls: a free or static member function, or the closure object of a
/// captureless, non-generic lambda (`p.map<[](int x) { return x * 10; }>(xs)`), described as
/// function_traits describes a function.
template <class M>
struct operator_traits : function_traits<void> {};
template <class C, class R, class... A>
struct operator_traits<R (C::*)(A...) const> : function_traits<R (*)(A...)> {};
template <class C, class R, class... A>
struct operator_traits<R (C::*)(A...) const noexcept> : function_traits<R (*)(A...)> {};

template <class T, class = void>
struct callee_traits : function_traits<T> {
  static constexpr bool is_lambda = false;
  static constexpr bool captures = false;
};
template <class T>
struct callee_traits<T, std::enable_if_t<std::is_class_v<T>, std::void_t<decltype(&T::operator())>>>
    : operator_traits<decltype(&T::operator())> {
  static constexpr bool is_lambda = true;
  static constexpr bool captures = !std::is_empty_v<T>;
};
template <auto F>
using callee_traits_t = callee_traits<std::remove_cv_t<decltype(F)>>;

/// F is something a pool can run: a function, or a lambda that captures nothing.
template <auto F>
inline constexpr bool is_pool_callee_v =
    callee_traits_t<F>::is_function && !callee_traits_t<F>::is_member &&
    !callee_traits_t<F>::captures;

/// F's name, for errors, and the id its calls carry. A lambda has no name the compiler prints
/// uniquely (gcc spells every `[](int)` lambda of a function alike), so its id hashes its
/// type's mangled name, which numbers the lambdas of a scope; every process of the program
/// runs the same binary and computes the same id.
template <auto F>
struct callee_identity {
  using T = std::remove_cv_t<decltype(F)>;
  static std::string_view name() noexcept {
    if constexpr (callee_traits<T>::is_lambda)
      return type_name_v<T>;
    else
      return entity_name_v<F>;
  }
  static std::uint64_t id() noexcept {
    if constexpr (callee_traits<T>::is_lambda) {
#if defined(__GXX_RTTI) || defined(__cpp_rtti)
      static const std::uint64_t h = fnv1a(typeid(T).name());
#else
      static const std::uint64_t h = fnv1a(type_name_v<T>);
#endif
      return h;
    } else {
      return entity_id<F>;
    }
  }
};

template <auto F>
using map_param_t = std::tuple_element_t<0, typename callee_traits_t<F>::params>;
/// What a map's items are carried as: F's parameter's owning type.
template <auto F>
using map_item_t = storage_type_t<map_param_t<F>>;
template <auto F>
using map_result_t = call_result_t<typename callee_traits_t<F>::return_type>;
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

/// How starmap carries F's arguments. When each is raw (numbers, plain structs), an item is
/// their bytes one after another, a `row` of `width` bytes, and a chunk is a span of rows read
/// in place; otherwise an item is a std::tuple of their owning types.
template <auto F, class Params = typename callee_traits_t<F>::params>
struct star_args;
template <auto F, class... P>
struct star_args<F, std::tuple<P...>> {
  using tuple = std::tuple<storage_type_t<P>...>;
  template <std::size_t I>
  using arg = std::tuple_element_t<I, tuple>;
  static constexpr bool raw = sizeof...(P) > 0 && (is_raw_copyable_v<storage_type_t<P>> && ...);
  static constexpr std::size_t width = (std::size_t{0} + ... + sizeof(storage_type_t<P>));
  using row = std::array<std::byte, width>;
  using item = std::conditional_t<raw, row, tuple>;
  using chunk = chunk_t<item>;
  template <std::size_t I>
  static constexpr std::size_t offset = [] {
    std::size_t o = 0, i = 0;
    ((i++ < I ? o += sizeof(storage_type_t<P>) : o), ...);
    return o;
  }();

  /// Whether items of type V (a std::tuple, std::pair or std::array of exactly the
  /// parameters' owning types, no padding) may lie in memory as rows; lies_as_rows(v) then
  /// checks the elements' order, which the standard leaves to the library for std::tuple.
  template <class V>
  static consteval bool rows_fit() {
    constexpr codec_kind k = std_kind<V>::value;
    if constexpr (!raw ||
                  (k != codec_kind::tuple && k != codec_kind::pair && k != codec_kind::array)) {
      return false;
    } else if constexpr (std::tuple_size_v<V> != sizeof...(P) || sizeof(V) != width) {
      return false;
    } else {
      return []<std::size_t... I>(std::index_sequence<I...>) {
        return (std::is_same_v<std::remove_cv_t<std::tuple_element_t<I, V>>, arg<I>> && ...);
      }
      (std::index_sequence_for<P...>{});
    }
  }
  template <class V>
  static constexpr bool may_lie_as_rows = rows_fit<V>();
  /// Whether item `v`'s bytes are a row: each element at its row offset. An item's bytes
  /// copied as they lie are then what pack() writes, so a run of items is copied at once.
  template <class V>
  static bool lies_as_rows(const V& v) noexcept {
    if constexpr (!may_lie_as_rows<V>) {
      return false;
    } else {
      const auto at = [&](const auto& e) {
        return reinterpret_cast<std::uintptr_t>(std::addressof(e)) -
               reinterpret_cast<std::uintptr_t>(std::addressof(v));
      };
      return [&]<std::size_t... I>(std::index_sequence<I...>) {
        return ((at(std::get<I>(v)) == offset<I>)&&...);
      }
      (std::index_sequence_for<P...>{});
    }
  }

  /// Writes tuple-like `t`'s elements, each converted to its parameter's type, into `out`.
  template <class T>
  static void pack(std::byte* out, T&& t) {
    [&]<std::size_t... I>(std::index_sequence<I...>) {
      using std::get;
      (
          (void)[&] {
            const arg<I> v = static_cast<arg<I>>(get<I>(std::forward<T>(t)));
            std::memcpy(out + offset<I>, &v, sizeof(v));
          }(),
          ...);
    }
    (std::index_sequence_for<P...>{});
  }
  template <std::size_t I>
  static arg<I> unpack(const row& r) {
    std::array<std::byte, sizeof(arg<I>)> b;
    std::memcpy(b.data(), r.data() + offset<I>, sizeof(arg<I>));
    return std::bit_cast<arg<I>>(b);
  }
  /// F applied to one item's arguments.
  static decltype(auto) call(const row& r) {
    return [&]<std::size_t... I>(std::index_sequence<I...>)->decltype(auto) {
      return F(unpack<I>(r)...);
    }
    (std::index_sequence_for<P...>{});
  }
  static decltype(auto) call(tuple& t) {
    return [&]<std::size_t... I>(std::index_sequence<I...>)->decltype(auto) {
      return F(std::move(std::get<I>(t))...);
    }
    (std::index_sequence_for<P...>{});
  }
};

struct pool_process {
  /// F over a chunk's items, in order.
  template <auto F, class Chunk>
  std::vector<map_result_t<F>> run_chunk(Chunk items) {
    std::vector<map_result_t<F>> out;
    out.reserve(items.size());
    for (auto& x : items) out.push_back(call_item<F>(x));
    return out;
  }
  /// F over a chunk of starmap items (argument lists), in order.
  template <auto F, class Chunk>
  std::vector<map_result_t<F>> run_star_chunk(Chunk items) {
    std::vector<map_result_t<F>> out;
    out.reserve(items.size());
    for (auto& x : items) out.push_back(star_args<F>::call(x));
    return out;
  }
  /// One call of F (pool::apply); a coroutine F is awaited.
  template <auto F, class... P>
  typename callee_traits_t<F>::return_type run(P... args) {
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

template <auto F, class Params = typename callee_traits_t<F>::params>
struct pool_run;
template <auto F, class... P>
struct pool_run<F, std::tuple<P...>> {
  static constexpr auto method = &pool_process::template run<F, P...>;
};

template <class Chunk>
struct map_chunk_tag {};
template <class Chunk>
struct star_chunk_tag {};
struct apply_tag {};

/// The id a pool method running F is called by. Compilers print a pointer to a member
/// function template without its template arguments, so entity_id<&pool_process::run_chunk<F,
/// C>> is the same for every F; this id is F's own, mixed with what the method does with it.
/// Errors read as coming from F.
template <auto Method, auto F, class Tag>
struct pool_callee {
  static std::uint64_t id() noexcept {
    static const std::uint64_t h = [] {
      std::uint64_t x = callee_identity<F>::id();
      for (char c : type_name_v<Tag>) {
        x ^= static_cast<unsigned char>(c);
        x *= 1099511628211ULL;
      }
      return x;
    }();
    return h;
  }
  static inline const bool registered =
      register_function(id(), &invoker<Method>::invoke, callee_identity<F>::name());
};

/// The message of a pool method's call: make_call, under the pool_callee id.
template <auto Method, auto F, class Tag, class... A>
task_spec make_pool_call(process& p, A&&... args) {
  task_spec spec = make_call<Method>(p, std::forward<A>(args)...);
  (void)pool_callee<Method, F, Tag>::registered;
  spec.fn_id = pool_callee<Method, F, Tag>::id();
  spec.name = callee_identity<F>::name();
  return spec;
}

template <auto Init, class Params = typename callee_traits_t<Init>::params>
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
