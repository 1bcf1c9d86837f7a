/// coray 0.1.0, single-header edition.
/// generated — do not edit: made by scripts/amalgamate.py from include/coray/;
/// change the headers there and run the script again.
/// SPDX-License-Identifier: MIT
#pragma once

// Header-only: compiled mode (CORAY_COMPILED_LIB) builds from include/ and links
// coray::coray_compiled.
#ifdef CORAY_COMPILED_LIB
#error "single_include/coray.hpp is header-only: compiled mode uses include/ and coray::coray_compiled"
#endif

// begin <coray/coray.hpp>
/// coray: Ray's model -- remote tasks, stateful actors, an immutable shared-memory object
/// store, co_await-able object refs -- for C++20, with worker processes that cost microseconds.

// begin <coray/actor.hpp>
/// Actors: a stateful object in a process of its own whose methods are called remotely.
/// ray::spawn<T>(args...) returns a ray::actor<T> at once and constructs T in the new process;
/// actor.call<&T::method>(args...) returns an object_ref to the method's result. Calls from
/// one caller run in the order they were made. The actor lives while a handle to it exists
/// in any process (or until ray::kill), and always ends with the driver.
///
///   struct counter {
///     explicit counter(int start) : n(start) {}
///     int incr(int by) { return n += by; }
///     int n;
///   };
///   ray::actor<counter> c = ray::spawn<counter>(10);
///   int v = ray::get(c.call<&counter::incr>(5));   // 15

#include <fmt/format.h>

#include <algorithm>
// begin <coray/detail/runtime/actor_constructor.hpp>
/// How an actor is built in its process: actor_constructor<T, S...> decodes the constructor's
/// arguments (of types S..., see constructor_arg_t), makes the T and replies; it registers
/// itself like a function's invoker. actor_type_id<T> is what ray::get_actor checks.

// begin <coray/codec.hpp>
/// The binary codec for task arguments, results and objects in shared memory.
///
/// Wire format (native little-endian, no type tags: both sides know the type):
/// - bool: one byte, 0 or 1. Other arithmetic types, std::byte, enums: their native bytes.
/// - string, vector, span, string_view, deque, list, (multi)set, (multi)map, unordered_*:
///   u64 element count, then the elements (maps: key then value).
/// - Contiguous runs of raw-copyable elements (vector, span, string, string_view, std::array)
///   are written with one memcpy, preceded by zero padding that puts the first element at an
///   offset from the start of the whole buffer that is a multiple of min(alignof(T), 16).
///   That is what lets decode return span / string_view views into a 16-byte aligned buffer.
/// - std::array<T, N>: no count. pair, tuple, aggregates (Boost.PFR), serialize(): their parts
///   in order. optional: u8 tag 0/1, then the value. variant: u32 index, then the alternative.
///   monostate: nothing. chrono::duration: its count().
///
/// Decoding checks every length against the bytes left before using or allocating for it and
/// throws ray::codec_error on any malformed input, including trailing bytes.

#include <cassert>
// begin <coray/detail/codec/archive.hpp>
/// The codec's archives: size_counter and writer (output), reader (input), and the alignment
/// and error helpers they share; coray/codec.hpp describes the format. An archive's operator()
/// is what a user type's serialize(Archive&) calls: it goes to encode_value (encode.hpp) or
/// decode_value (decode.hpp), so the three are used together, through coray/codec.hpp.

#include <bit>
#include <cassert>
// begin <coray/detail/codec/codec_traits.hpp>
/// Compile-time classification of the types the codec accepts (see coray/codec.hpp), and the
/// traits task.remote uses to match an argument's type against a parameter's type.

#include <array>
#include <boost/pfr/core.hpp>
#include <boost/pfr/tuple_size.hpp>
#include <chrono>
// begin <coray/version.hpp>
/// coray's version and the versioned inline namespace that keeps two versions' symbols apart.

#define CORAY_VERSION_MAJOR 0
#define CORAY_VERSION_MINOR 1
#define CORAY_VERSION_PATCH 0
#define CORAY_VERSION \
  (CORAY_VERSION_MAJOR * 10000 + CORAY_VERSION_MINOR * 100 + CORAY_VERSION_PATCH)

/// Opens `namespace ray { inline namespace v0 {`: every public name lives there.
#define CORAY_BEGIN_NAMESPACE \
  namespace ray {             \
  inline namespace v0 {
#define CORAY_END_NAMESPACE \
  }                         \
  }

/// How coray declares its non-template functions: inline in header-only mode (the default);
/// with CORAY_COMPILED_LIB defined, plain declarations, defined once in the
/// coray::coray_compiled library (src/coray.cpp).
#ifdef CORAY_COMPILED_LIB
#define CORAY_API
#else
#define CORAY_API inline
#endif
// end <coray/version.hpp>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

// The archives; declared here so a user type's serialize(Archive&) can be detected before
// archive.hpp defines them (a template serialize needs no complete archive to be found).
class size_counter;
class writer;
class reader;

/// How the codec treats a (cv-unqualified, non-reference) type; `none` = unsupported.
enum class codec_kind : unsigned char {
  none,
  serialize_member,  // has serialize(Archive&): wins over every other kind
  boolean,
  arithmetic,
  enumeration,  // only enums with a fixed underlying type (see has_fixed_underlying)
  byte,
  string,       // std::basic_string
  string_view,  // std::basic_string_view: encodes like string, decodes as a view
  c_string,     // const char*: encode only, as std::string
  char_array,   // char[N]: encode only, as std::string up to the first NUL
  vector,
  span,  // encodes like vector; span<const raw T> decodes as a view
  array,
  pair,
  tuple,
  optional,
  variant,
  monostate,
  map,       // unique keys
  multimap,  // equal keys allowed, order kept
  set,       // unique keys
  multiset,  // equal keys allowed, order kept
  sequence,  // std::deque, std::list
  duration,
  aggregate,  // reflected field by field with Boost.PFR
};

template <class T>
struct std_kind : std::integral_constant<codec_kind, codec_kind::none> {};
template <class C, class A>
struct std_kind<std::basic_string<C, std::char_traits<C>, A>>
    : std::integral_constant<codec_kind, codec_kind::string> {};
template <class C>
struct std_kind<std::basic_string_view<C, std::char_traits<C>>>
    : std::integral_constant<codec_kind, codec_kind::string_view> {};
template <class T, class A>
struct std_kind<std::vector<T, A>> : std::integral_constant<codec_kind, codec_kind::vector> {};
template <class T, std::size_t E>
struct std_kind<std::span<T, E>> : std::integral_constant<codec_kind, codec_kind::span> {};
template <class T, std::size_t N>
struct std_kind<std::array<T, N>> : std::integral_constant<codec_kind, codec_kind::array> {};
template <class A, class B>
struct std_kind<std::pair<A, B>> : std::integral_constant<codec_kind, codec_kind::pair> {};
template <class... Ts>
struct std_kind<std::tuple<Ts...>> : std::integral_constant<codec_kind, codec_kind::tuple> {};
template <class T>
struct std_kind<std::optional<T>> : std::integral_constant<codec_kind, codec_kind::optional> {};
template <class... Ts>
struct std_kind<std::variant<Ts...>> : std::integral_constant<codec_kind, codec_kind::variant> {};
template <>
struct std_kind<std::monostate> : std::integral_constant<codec_kind, codec_kind::monostate> {};
template <class K, class V, class C, class A>
struct std_kind<std::map<K, V, C, A>> : std::integral_constant<codec_kind, codec_kind::map> {};
template <class K, class V, class H, class E, class A>
struct std_kind<std::unordered_map<K, V, H, E, A>>
    : std::integral_constant<codec_kind, codec_kind::map> {};
template <class K, class V, class C, class A>
struct std_kind<std::multimap<K, V, C, A>>
    : std::integral_constant<codec_kind, codec_kind::multimap> {};
template <class K, class V, class H, class E, class A>
struct std_kind<std::unordered_multimap<K, V, H, E, A>>
    : std::integral_constant<codec_kind, codec_kind::multimap> {};
template <class K, class C, class A>
struct std_kind<std::set<K, C, A>> : std::integral_constant<codec_kind, codec_kind::set> {};
template <class K, class H, class E, class A>
struct std_kind<std::unordered_set<K, H, E, A>>
    : std::integral_constant<codec_kind, codec_kind::set> {};
template <class K, class C, class A>
struct std_kind<std::multiset<K, C, A>> : std::integral_constant<codec_kind, codec_kind::multiset> {
};
template <class K, class H, class E, class A>
struct std_kind<std::unordered_multiset<K, H, E, A>>
    : std::integral_constant<codec_kind, codec_kind::multiset> {};
template <class T, class A>
struct std_kind<std::deque<T, A>> : std::integral_constant<codec_kind, codec_kind::sequence> {};
template <class T, class A>
struct std_kind<std::list<T, A>> : std::integral_constant<codec_kind, codec_kind::sequence> {};
template <class R, class P>
struct std_kind<std::chrono::duration<R, P>>
    : std::integral_constant<codec_kind, codec_kind::duration> {};

template <class T>
concept has_serialize_member = requires(T& t, size_counter& s, writer& w, reader& r) {
  t.serialize(s);
  t.serialize(w);
  t.serialize(r);
};

// Only enums with a fixed underlying type accept every value of it; for the others loading an
// out-of-range value is undefined, so decoding garbage could not be made safe.
template <class T>
concept has_fixed_underlying = std::is_enum_v<T> && requires {
  T{std::underlying_type_t<T>{}};
};

// Converts only to a base class of T, so `T{probe}` compiles only when T's first aggregate
// element is a base: PFR hard-errors on such types, this lets them be rejected quietly.
template <class T>
struct base_probe {
  template <class U>
  requires(std::is_base_of_v<std::remove_cv_t<U>, T> && !std::is_same_v<std::remove_cv_t<U>, T>)
  operator U&() const;
};

// Aggregates PFR can reflect and decoding can fill: default constructible (rules out reference
// members), move assignable (rules out reference and const members), no bases, no unions.
template <class T>
concept pfr_aggregate =
    std::is_class_v<T> && std::is_aggregate_v<T> && !std::is_union_v<T> &&
    std::is_default_constructible_v<T> && std::is_move_assignable_v<T> && !requires {
  T{base_probe<T>{}};
};

template <class T>
consteval codec_kind kind_of() {
  if constexpr (has_serialize_member<T>)
    return codec_kind::serialize_member;
  else if constexpr (std::is_same_v<T, bool>)
    return codec_kind::boolean;
  else if constexpr (std::is_arithmetic_v<T>)
    return codec_kind::arithmetic;
  else if constexpr (std::is_same_v<T, std::byte>)
    return codec_kind::byte;
  else if constexpr (std::is_enum_v<T>)
    return has_fixed_underlying<T> ? codec_kind::enumeration : codec_kind::none;
  else if constexpr (std::is_same_v<T, const char*>)
    return codec_kind::c_string;
  else if constexpr (std::is_array_v<T>)
    return std::is_same_v<std::remove_extent_t<T>, char> && std::rank_v<T> == 1 &&
                   std::extent_v<T> > 0
               ? codec_kind::char_array
               : codec_kind::none;
  else if constexpr (std_kind<T>::value != codec_kind::none)
    return std_kind<T>::value;
  else if constexpr (pfr_aggregate<T>)
    return codec_kind::aggregate;
  else
    return codec_kind::none;
}

/// Kind of T, ignoring cv and references.
template <class T>
inline constexpr codec_kind kind_v = kind_of<std::remove_cvref_t<T>>();

template <class T, std::size_t... I, class F>
consteval bool all_fields(std::index_sequence<I...>, [[maybe_unused]] F f) {
  return (f(std::type_identity<boost::pfr::tuple_element_t<I, T>>{}) && ...);
}
/// f(type_identity<Field>) is true for every field of the PFR aggregate T.
template <class T, class F>
consteval bool all_fields_of(F f) {
  return all_fields<T>(std::make_index_sequence<boost::pfr::tuple_size_v<T>>{}, f);
}
template <class T, std::size_t... I, class F>
consteval std::size_t sum_fields(std::index_sequence<I...>, [[maybe_unused]] F f) {
  return (std::size_t{0} + ... + f(std::type_identity<boost::pfr::tuple_element_t<I, T>>{}));
}
template <class T, class F>
consteval std::size_t sum_fields_of(F f) {
  return sum_fields<T>(std::make_index_sequence<boost::pfr::tuple_size_v<T>>{}, f);
}

template <class T>
consteval bool raw_copyable();

/// Raw-copyable: every byte pattern of sizeof(T) is a valid T and T has no padding, so
/// contiguous runs of T are written and read with one memcpy. Enums with a fixed underlying
/// type count as raw (any underlying value is a valid enum value).
template <class T>
inline constexpr bool is_raw_copyable_v = raw_copyable<std::remove_cv_t<T>>();

template <class T>
consteval bool raw_copyable() {
  constexpr codec_kind k = kind_of<T>();
  if constexpr (k == codec_kind::arithmetic || k == codec_kind::enumeration ||
                k == codec_kind::byte) {
    return true;
  } else if constexpr (k == codec_kind::array) {
    return is_raw_copyable_v<typename T::value_type>;
  } else if constexpr (k == codec_kind::duration) {
    return is_raw_copyable_v<typename T::rep> && sizeof(T) == sizeof(typename T::rep) &&
           std::is_trivially_copyable_v<T>;
  } else if constexpr (k == codec_kind::aggregate) {
    if constexpr (!std::is_trivially_copyable_v<T>) {
      return false;
    } else {
      constexpr bool fields_raw =
          all_fields_of<T>([]<class F>(std::type_identity<F>) { return is_raw_copyable_v<F>; });
      if constexpr (!fields_raw)
        return false;
      else
        return sizeof(T) ==
               sum_fields_of<T>([]<class F>(std::type_identity<F>) { return sizeof(F); });
    }
  } else {
    return false;
  }
}

template <class T>
consteval bool encodable();
template <class T>
consteval bool decodable();

template <class... Ts>
consteval bool all_encodable() {
  return (encodable<std::remove_cvref_t<Ts>>() && ...);  // refs: forward_as_tuple(args...)
}

template <class Q>
consteval bool encodable() {
  using T = std::remove_cv_t<Q>;
  constexpr codec_kind k = kind_of<T>();
  if constexpr (k == codec_kind::none) {
    return false;
  } else if constexpr (k == codec_kind::vector || k == codec_kind::span || k == codec_kind::array ||
                       k == codec_kind::optional || k == codec_kind::set ||
                       k == codec_kind::multiset || k == codec_kind::sequence) {
    return all_encodable<typename T::value_type>();
  } else if constexpr (k == codec_kind::map || k == codec_kind::multimap) {
    return all_encodable<typename T::key_type, typename T::mapped_type>();
  } else if constexpr (k == codec_kind::pair) {
    return all_encodable<typename T::first_type, typename T::second_type>();
  } else if constexpr (k == codec_kind::tuple || k == codec_kind::variant) {
    return []<template <class...> class L, class... Ts>(std::type_identity<L<Ts...>>) {
      return all_encodable<Ts...>();
    }(std::type_identity<T>{});
  } else if constexpr (k == codec_kind::duration) {
    return all_encodable<typename T::rep>();
  } else if constexpr (k == codec_kind::aggregate) {
    return all_fields_of<T>([]<class F>(std::type_identity<F>) { return encodable<F>(); });
  } else {
    return true;
  }
}

template <class... Ts>
consteval bool all_decodable() {
  return (decodable<Ts>() && ...);
}

// Decoding fills default-constructed objects in place, so every decoded part must be
// default constructible and non-const.
template <class T>
consteval bool decodable() {
  constexpr codec_kind k = kind_of<std::remove_cv_t<T>>();
  if constexpr (std::is_const_v<T> || std::is_volatile_v<T>) {
    return false;
  } else if constexpr (!std::is_default_constructible_v<T> || !encodable<T>()) {
    return false;
  } else if constexpr (k == codec_kind::c_string || k == codec_kind::char_array) {
    return false;  // nothing to own the characters
  } else if constexpr (k == codec_kind::span) {
    // Views into the input: only read-only spans of raw elements.
    return T::extent == std::dynamic_extent && std::is_const_v<typename T::element_type> &&
           is_raw_copyable_v<typename T::element_type>;
  } else if constexpr (k == codec_kind::vector || k == codec_kind::array ||
                       k == codec_kind::optional || k == codec_kind::sequence) {
    return all_decodable<typename T::value_type>();
  } else if constexpr (k == codec_kind::set || k == codec_kind::multiset) {
    return all_decodable<typename T::key_type>();
  } else if constexpr (k == codec_kind::map || k == codec_kind::multimap) {
    return all_decodable<typename T::key_type, typename T::mapped_type>();
  } else if constexpr (k == codec_kind::pair) {
    return all_decodable<typename T::first_type, typename T::second_type>();
  } else if constexpr (k == codec_kind::tuple || k == codec_kind::variant) {
    return []<template <class...> class L, class... Ts>(std::type_identity<L<Ts...>>) {
      return all_decodable<Ts...>();
    }(std::type_identity<T>{});
  } else if constexpr (k == codec_kind::duration) {
    return all_decodable<typename T::rep>();
  } else if constexpr (k == codec_kind::aggregate) {
    return all_fields_of<T>([]<class F>(std::type_identity<F>) { return decodable<F>(); });
  } else {
    return true;
  }
}

/// Fewest bytes any value of T encodes to (padding not counted). Decoding rejects a count of N
/// elements when N * this exceeds the bytes left. serialize() types count 0: unknown.
template <class T>
consteval std::size_t min_encoded_size() {
  constexpr codec_kind k = kind_of<std::remove_cv_t<T>>();
  if constexpr (k == codec_kind::boolean) {
    return 1;
  } else if constexpr (k == codec_kind::arithmetic || k == codec_kind::enumeration ||
                       k == codec_kind::byte) {
    return sizeof(T);
  } else if constexpr (k == codec_kind::array) {
    return std::tuple_size_v<T> * min_encoded_size<typename T::value_type>();
  } else if constexpr (k == codec_kind::pair) {
    return min_encoded_size<typename T::first_type>() + min_encoded_size<typename T::second_type>();
  } else if constexpr (k == codec_kind::tuple) {
    return []<class... Ts>(std::type_identity<std::tuple<Ts...>>) {
      return (std::size_t{0} + ... + min_encoded_size<Ts>());
    }(std::type_identity<std::remove_cv_t<T>>{});
  } else if constexpr (k == codec_kind::optional) {
    return 1;
  } else if constexpr (k == codec_kind::variant) {
    return 4;
  } else if constexpr (k == codec_kind::duration) {
    return min_encoded_size<typename T::rep>();
  } else if constexpr (k == codec_kind::aggregate) {
    return sum_fields_of<std::remove_cv_t<T>>(
        []<class F>(std::type_identity<F>) { return min_encoded_size<F>(); });
  } else if constexpr (k == codec_kind::monostate || k == codec_kind::serialize_member) {
    return 0;
  } else {
    return 8;  // every counted container starts with its u64 count
  }
}
template <class T>
inline constexpr std::size_t min_encoded_size_v = min_encoded_size<T>();

template <class T>
consteval bool has_serialize_part();
template <class... Ts>
consteval bool any_serialize_part() {
  return (has_serialize_part<std::remove_cvref_t<Ts>>() || ...);
}
/// Whether some part of a T is a type with its own serialize(): only such a part (an
/// object_ref, an actor handle, a shared block, a user's type) can hold a ref or a handle,
/// so a value of a T without one is sized and written without collecting them.
template <class Q>
consteval bool has_serialize_part() {
  using T = std::remove_cv_t<Q>;
  constexpr codec_kind k = kind_of<T>();
  if constexpr (k == codec_kind::serialize_member) {
    return true;
  } else if constexpr (k == codec_kind::vector || k == codec_kind::span || k == codec_kind::array ||
                       k == codec_kind::optional || k == codec_kind::set ||
                       k == codec_kind::multiset || k == codec_kind::sequence) {
    return any_serialize_part<typename T::value_type>();
  } else if constexpr (k == codec_kind::map || k == codec_kind::multimap) {
    return any_serialize_part<typename T::key_type, typename T::mapped_type>();
  } else if constexpr (k == codec_kind::pair) {
    return any_serialize_part<typename T::first_type, typename T::second_type>();
  } else if constexpr (k == codec_kind::tuple || k == codec_kind::variant) {
    return []<template <class...> class L, class... Ts>(std::type_identity<L<Ts...>>) {
      return any_serialize_part<Ts...>();
    }(std::type_identity<T>{});
  } else if constexpr (k == codec_kind::aggregate) {
    return !all_fields_of<T>(
        []<class F>(std::type_identity<F>) { return !has_serialize_part<F>(); });
  } else {
    return false;
  }
}
template <class T>
inline constexpr bool has_serialize_part_v = has_serialize_part<std::remove_cvref_t<T>>();

inline constexpr std::size_t not_fixed = static_cast<std::size_t>(-1);

template <class... S>
consteval std::size_t sum_fixed(S... sizes) {
  return ((sizes != not_fixed) && ...) ? (std::size_t{0} + ... + sizes) : not_fixed;
}

/// Size every value of T encodes to wherever it sits, or not_fixed; lets encoded_size skip
/// walking containers of such elements.
template <class T>
consteval std::size_t fixed_encoded_size();
template <class T, std::size_t... I>
consteval std::size_t fixed_fields_size(std::index_sequence<I...>) {
  return sum_fixed(fixed_encoded_size<boost::pfr::tuple_element_t<I, T>>()...);
}

template <class T>
consteval std::size_t fixed_encoded_size() {
  constexpr codec_kind k = kind_of<std::remove_cv_t<T>>();
  if constexpr (k == codec_kind::boolean) {
    return 1;
  } else if constexpr (k == codec_kind::arithmetic || k == codec_kind::enumeration ||
                       k == codec_kind::byte) {
    return sizeof(T);
  } else if constexpr (k == codec_kind::monostate) {
    return 0;
  } else if constexpr (k == codec_kind::array) {
    using E = typename T::value_type;
    // A raw array is padded to its alignment, so its size depends on where it starts.
    if constexpr (is_raw_copyable_v<E>)
      return alignof(E) == 1 ? sizeof(T) : not_fixed;
    else if constexpr (fixed_encoded_size<E>() == not_fixed)
      return not_fixed;
    else
      return std::tuple_size_v<T> * fixed_encoded_size<E>();
  } else if constexpr (k == codec_kind::pair) {
    return sum_fixed(fixed_encoded_size<typename T::first_type>(),
                     fixed_encoded_size<typename T::second_type>());
  } else if constexpr (k == codec_kind::tuple) {
    return []<class... Ts>(std::type_identity<std::tuple<Ts...>>) {
      return sum_fixed(fixed_encoded_size<Ts>()...);
    }(std::type_identity<std::remove_cv_t<T>>{});
  } else if constexpr (k == codec_kind::duration) {
    return fixed_encoded_size<typename T::rep>();
  } else if constexpr (k == codec_kind::aggregate) {
    using U = std::remove_cv_t<T>;
    return fixed_fields_size<U>(std::make_index_sequence<boost::pfr::tuple_size_v<U>>{});
  } else {
    return not_fixed;
  }
}
template <class T>
inline constexpr std::size_t fixed_encoded_size_v = fixed_encoded_size<T>();

template <class T>
inline constexpr bool is_encodable = encodable<std::remove_cvref_t<T>>();
template <class T>
inline constexpr bool is_decodable = !std::is_reference_v<T> && decodable<std::remove_cv_t<T>>();

template <class P>
struct storage_type {
  using type = P;
};
template <class T, std::size_t E>
struct storage_type<std::span<T, E>> {
  using type = std::vector<std::remove_cv_t<T>>;
};
template <class C, class Tr>
struct storage_type<std::basic_string_view<C, Tr>> {
  using type = std::basic_string<C, Tr>;
};

/// The owning type a parameter of type Param is encoded as and decoded from:
/// span<const T> -> vector<T>, string_view -> string, const T& -> T.
template <class Param>
using storage_type_t = typename storage_type<std::remove_cvref_t<Param>>::type;

template <class S, class A>
consteval bool same_wire_sequence() {
  constexpr codec_kind sk = kind_of<S>(), ak = kind_of<A>();
  if constexpr (sk == codec_kind::vector) {
    // vector<T> and span<T>/span<const T> write the same count + elements.
    if constexpr (ak == codec_kind::vector || ak == codec_kind::span)
      return std::is_same_v<typename S::value_type, std::remove_cv_t<typename A::value_type>>;
    else
      return false;
  } else if constexpr (sk == codec_kind::string) {
    using C = typename S::value_type;
    if constexpr (ak == codec_kind::string || ak == codec_kind::string_view)
      return std::is_same_v<C, typename A::value_type>;
    else
      return std::is_same_v<C, char> &&
             (ak == codec_kind::c_string || ak == codec_kind::char_array);
  } else {
    return false;
  }
}

/// True when `encode(arg)` (Arg's own encoding) decodes correctly as Param: the same type
/// after removing cv/ref, or the view/owner pairs span<const T> | vector<T> with
/// vector<T> | span<T> | span<const T>, and string_view | string with string | string_view |
/// const char* | char[N]. std::array<T, N> is deliberately not wire compatible with span<const
/// T>: arrays carry no count, so callers convert them (std::span is constructible from them).
template <class Param, class Arg>
inline constexpr bool wire_compatible_v =
    is_encodable<Arg> && (std::is_same_v<std::remove_cvref_t<Param>, std::remove_cvref_t<Arg>> ||
                          same_wire_sequence<storage_type_t<Param>, std::remove_cvref_t<Arg>>());

/// Readable name of T for error messages, e.g. "std::vector<int>".
template <class T>
constexpr std::string_view type_name() {
#if defined(__clang__) || defined(__GNUC__)
  // clang: "... [T = int]"; gcc: "... [with T = int; std::string_view = ...]"
  std::string_view p = __PRETTY_FUNCTION__;
  const std::size_t b = p.find("T = ") + 4;
  std::size_t e = p.find("; ", b);
  if (e == std::string_view::npos) e = p.rfind(']');
  return p.substr(b, e - b);
#else
  return "value";
#endif
}

/// type_name<T>(), worked out once at compile time: code that names a type holds only the
/// string, not a function searching __PRETTY_FUNCTION__ for each type.
template <class T>
inline constexpr std::string_view type_name_v = type_name<T>();

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/codec/codec_traits.hpp>
// begin <coray/errors.hpp>
/// The exceptions coray throws. All derive from ray::error and are thrown where the user
/// gets or awaits the result they concern.
///
/// CORAY_ERRORS is the one list of them. It declares the errors that carry only a message,
/// numbers every error for the wire (detail::error_kind) and is what detail/runtime/wire.hpp
/// walks to send an error and rebuild it in the receiving process, so every coray error keeps
/// its type across processes. Adding an error is one line there, plus its class above the
/// list if it has fields of its own (then `figures()`: see object_store_full).

#include <fmt/format.h>

// #include <coray/version.hpp>: inlined above
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>

CORAY_BEGIN_NAMESPACE

/// Base of every coray exception.
struct error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// A task (or actor method) threw something that is not a coray error: carries the remote
/// exception's type name and what().
struct task_error : error {
  task_error(std::string type_name, std::string message, std::string function)
      : error(fmt::format("{} raised {}: {}", function, type_name, message)),
        type_name_(std::move(type_name)),
        message_(std::move(message)),
        function_(std::move(function)) {}
  /// Demangled type of the exception the callee threw, e.g. "std::out_of_range".
  const std::string& type_name() const noexcept { return type_name_; }
  /// The callee exception's what().
  const std::string& remote_what() const noexcept { return message_; }
  /// Name of the function that threw.
  const std::string& function() const noexcept { return function_; }

 private:
  std::string type_name_, message_, function_;
};

/// A value did not fit in the object store.
struct object_store_full : error {
  object_store_full(std::size_t requested, std::size_t free_bytes, std::size_t capacity)
      : error(fmt::format("object store full: requested {} bytes, {} free of {}", requested,
                          free_bytes, capacity)),
        requested_(requested),
        free_(free_bytes),
        capacity_(capacity) {}
  std::size_t requested() const noexcept { return requested_; }
  std::size_t free_bytes() const noexcept { return free_; }
  std::size_t capacity() const noexcept { return capacity_; }
  /// The numbers that cross processes, in the constructor's order.
  std::tuple<std::size_t, std::size_t, std::size_t> figures() const noexcept {
    return {requested_, free_, capacity_};
  }

 private:
  std::size_t requested_, free_, capacity_;
};

/// Every coray error, one line each: X(name, base, shape). Shape `message` declares
/// `struct name : base` constructed from its what(); `fields` names a class written above.
/// A line's place is the error's number on the wire, so new errors go at the end, and a base
/// comes before the errors derived from it.
// clang-format off
#define CORAY_ERRORS(X)                                                                         \
  X(task_error,        error,         fields)   /* a task threw a foreign exception */          \
  X(worker_crashed,    error,         message)  /* the call's worker died before replying */    \
  X(actor_died,        error,         message)  /* the actor's process died; so do its calls */ \
  X(object_store_full, error,         fields)   /* a value did not fit in the object store */   \
  X(get_timeout,       error,         message)  /* a get or wait with a timeout ran out */      \
  X(codec_error,       error,         message)  /* bytes that do not decode as the type */      \
  X(cancelled,         error,         message)  /* the result's call was cancelled */           \
  X(runtime_error,     error,         message)  /* the runtime could not do its work */         \
  X(queue_full,        error,         message)  /* a put found the queue full: queue.Full */    \
  X(queue_empty,       error,         message)  /* a get found the queue empty: queue.Empty */  \
  X(actor_not_found,   error,         message)  /* get_actor found no such live actor */        \
  X(usage_error,       runtime_error, message)  /* misuse: no runtime, wrong process, empty */  \
  X(internal_error,    error,         message)  /* a broken invariant: a bug in coray */        \
  X(broken_barrier,    error,         message)  /* a barrier broke: abort, timeout, a death */  \
  X(peer_died,         error,         message)  /* a wait's peer died: a condition's locker */ \
  X(key_error,         error,         message)  /* no such key in a dict: KeyError */          \
  X(index_error,       error,         message)  /* a list index out of range: IndexError */ \
  X(infeasible_resources, error,      message)  /* asks more than the runtime has, ever */    \
  X(invalid_resources, usage_error,   message)  /* a negative or NaN amount, a misplaced name */
// clang-format on

#define CORAY_DETAIL_ERROR_CLASS_message(name, base) \
  struct name : base {                               \
    using base::base;                                \
  };
#define CORAY_DETAIL_ERROR_CLASS_fields(name, base)
#define CORAY_DETAIL_ERROR_CLASS(name, base, shape) CORAY_DETAIL_ERROR_CLASS_##shape(name, base)
CORAY_ERRORS(CORAY_DETAIL_ERROR_CLASS)
#undef CORAY_DETAIL_ERROR_CLASS
#undef CORAY_DETAIL_ERROR_CLASS_fields
#undef CORAY_DETAIL_ERROR_CLASS_message

namespace detail {

/// A coray error's number on the wire: its line in CORAY_ERRORS.
enum class error_kind : std::uint8_t {
#define CORAY_DETAIL_ERROR_KIND(name, base, shape) name,
  CORAY_ERRORS(CORAY_DETAIL_ERROR_KIND)
#undef CORAY_DETAIL_ERROR_KIND
};

/// Calls `f(std::type_identity<E>{}, error_kind::E)` for every coray error E, in the list's
/// order (so a base before the errors derived from it).
template <class F>
constexpr void for_each_error(F&& f) {
#define CORAY_DETAIL_ERROR_VISIT(name, base, shape) f(std::type_identity<name>{}, error_kind::name);
  CORAY_ERRORS(CORAY_DETAIL_ERROR_VISIT)
#undef CORAY_DETAIL_ERROR_VISIT
}

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/errors.hpp>
// #include <coray/version.hpp>: inlined above
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <utility>

static_assert(std::endian::native == std::endian::little,
              "coray's codec writes native little-endian data");

CORAY_BEGIN_NAMESPACE
namespace detail {

/// Padding never exceeds this, so every view decoded from a buffer aligned to it is aligned.
inline constexpr std::size_t max_wire_align = 16;
template <class T>
inline constexpr std::size_t wire_align_v = alignof(T) < max_wire_align ? alignof(T)
                                                                        : max_wire_align;

/// Elements that may encode to no bytes (monostate, empty structs, serialize() types) escape
/// the bytes-left bound on counts; such a count may exceed the bytes left by at most this.
inline constexpr std::uint64_t max_extra_empty_elements = std::uint64_t{1} << 20;

constexpr std::size_t padding_for(std::size_t offset, std::size_t align) noexcept {
  return (align - offset % align) % align;
}

/// A type's name tidied for messages: "std::string" rather than libstdc++'s spelling.
inline std::string tidy_type_name(std::string_view name) {
  std::string s(name);
  const auto replace_all = [&s](std::string_view from, std::string_view to) {
    for (auto i = s.find(from); i != std::string::npos; i = s.find(from, i + to.size()))
      s.replace(i, from.size(), to);
  };
  replace_all("__cxx11::", "");
  replace_all("std::basic_string<char>", "std::string");
  replace_all("std::basic_string_view<char>", "std::string_view");
  return s;
}

/// T's name as messages show it. The work is tidy_type_name's, compiled once, not per type.
template <class T>
std::string display_name() {
  return tidy_type_name(type_name_v<T>);
}

[[noreturn, gnu::cold, gnu::noinline]] inline void throw_codec_error(const std::string& what) {
  throw codec_error("codec: " + what);
}

template <class Out, class T>
void encode_value(Out& out, const T& value);
template <class T>
void decode_value(reader& in, T& value);

/// How deep a value's user types (serialize() types, aggregates) may nest: 1,000 levels, as
/// Python's pickle allows by default. Only a recursive type nests at run time, as deep as
/// its value goes; beyond this the codec throws codec_error rather than overflow the stack
/// of whichever process encodes or decodes it (a sanitizer's frames included).
inline constexpr std::uint32_t max_codec_depth = 1'000;

/// The error of a value nested deeper than max_codec_depth: one cold function for all types,
/// given the type's name, so a type's coding carries one call for it.
[[noreturn, gnu::cold, gnu::noinline]] inline void throw_too_deep(std::string_view type) {
  throw_codec_error(tidy_type_name(type) + " nests deeper than " + std::to_string(max_codec_depth) +
                    " levels of user types");
}

/// One level of a user type in an archive, for as long as its fields are coded.
template <class T, class Archive>
class nesting {
 public:
  explicit nesting(Archive& a) : a_(a) {
    if (a_.depth == max_codec_depth) [[unlikely]]
      throw_too_deep(type_name_v<T>);
    ++a_.depth;
  }
  nesting(const nesting&) = delete;
  nesting& operator=(const nesting&) = delete;
  ~nesting() { --a_.depth; }

 private:
  Archive& a_;
};

/// Output archive that only counts the bytes writer would write (padding included).
class size_counter {
 public:
  static constexpr bool is_loading = false;
  static constexpr bool is_sizing = true;
  std::uint32_t depth = 0;  // user types entered and not left (see nesting)

  template <class... Ts>
  void operator()(const Ts&... values) {
    (encode_value(*this, values), ...);
  }
  std::size_t size() const noexcept { return size_; }
  std::size_t offset() const noexcept { return size_; }
  void put(const void*, std::size_t n) noexcept { size_ += n; }
  void pad(std::size_t align) noexcept { size_ += padding_for(size_, align); }

 private:
  std::size_t size_ = 0;
};

/// Output archive writing into a buffer sized by size_counter; it does not check bounds
/// beyond asserts, the exact size is the caller's precondition.
class writer {
 public:
  static constexpr bool is_loading = false;
  static constexpr bool is_sizing = false;
  std::uint32_t depth = 0;  // user types entered and not left (see nesting)

  explicit writer(std::span<std::byte> out) noexcept
      : begin_(out.data()), pos_(out.data()), end_(out.data() + out.size()) {}

  template <class... Ts>
  void operator()(const Ts&... values) {
    (encode_value(*this, values), ...);
  }
  std::size_t offset() const noexcept { return static_cast<std::size_t>(pos_ - begin_); }
  std::size_t remaining() const noexcept { return static_cast<std::size_t>(end_ - pos_); }
  /// encode_to's precondition, that out holds encoded_size() bytes: asserted, and otherwise
  /// told to the optimiser, which then sees no write past the end (g++ 12 warned of one
  /// where it could not tell an encoded size from zero).
  void fits(std::size_t n) const noexcept {
    assert(n <= remaining() && "encode_to: buffer smaller than encoded_size()");
    if (n > remaining()) __builtin_unreachable();
  }
  void put(const void* data, std::size_t n) noexcept {
    fits(n);
    if (n != 0) std::memcpy(pos_, data, n);  // data may be null when n == 0
    pos_ += n;
  }
  void pad(std::size_t align) noexcept {
    const std::size_t n = padding_for(offset(), align);
    fits(n);
    if (n != 0) std::memset(pos_, 0, n);
    pos_ += n;
  }

 private:
  std::byte* begin_;
  std::byte* pos_;
  std::byte* end_;
};

/// Input archive: every read is bounds checked and throws codec_error when the input is short.
/// Offsets count from the start of the buffer it was given, which must be where encoding began.
class reader {
 public:
  static constexpr bool is_loading = true;
  std::uint32_t depth = 0;  // user types entered and not left (see nesting)

  explicit reader(std::span<const std::byte> in) noexcept
      : begin_(in.data()), pos_(in.data()), end_(in.data() + in.size()) {}

  template <class... Ts>
  void operator()(Ts&... values) {
    (decode_value(*this, values), ...);
  }
  std::size_t offset() const noexcept { return static_cast<std::size_t>(pos_ - begin_); }
  std::size_t remaining() const noexcept { return static_cast<std::size_t>(end_ - pos_); }

  /// The next n bytes, consumed; T and what only name them in the error.
  template <class T>
  const std::byte* take(std::size_t n, const char* what) {
    if (n > remaining()) [[unlikely]]
      fail_truncated<T>(what, n);
    const std::byte* p = pos_;
    pos_ += n;
    return p;
  }
  template <class T, class V>
  V take_scalar(const char* what) {
    V v;
    std::memcpy(&v, take<T>(sizeof(V), what), sizeof(V));
    return v;
  }
  template <class T>
  void skip_padding(std::size_t align) {
    take<T>(padding_for(offset(), align), "alignment padding");
  }
  /// Reads a u64 element count and rejects it unless count * MinElement bytes are left.
  template <class T, std::size_t MinElement>
  std::size_t take_count() {
    const auto n = take_scalar<T, std::uint64_t>("count");
    const std::size_t left = remaining();
    bool fits;
    if constexpr (MinElement != 0)
      fits = n <= left / MinElement;  // no overflow, unlike n * MinElement
    else
      fits = n <= left + max_extra_empty_elements;
    if (!fits) [[unlikely]]
      fail_count<T>(n, MinElement);
    return static_cast<std::size_t>(n);
  }
  /// Count, padding and bytes of a contiguous run of raw E; returns its first byte.
  template <class T, class E>
  std::pair<const std::byte*, std::size_t> take_raw_run() {
    const std::size_t n = take_count<T, sizeof(E)>();
    skip_padding<T>(wire_align_v<E>);
    return {take<T>(n * sizeof(E), "elements"), n};
  }

  template <class T>
  [[noreturn]] void fail_truncated(const char* what, std::size_t need) const {
    fail_truncated(type_name_v<T>, what, need);
  }
  template <class T>
  [[noreturn]] void fail_count(std::uint64_t n, std::size_t min_element) const {
    fail_count(type_name_v<T>, n, min_element);
  }
  template <class T>
  [[noreturn]] void fail(const std::string& what) const {
    fail(type_name_v<T>, what);
  }
  // What the templates above call: one cold function each for every type.
  [[noreturn, gnu::cold, gnu::noinline]] void fail_truncated(std::string_view type,
                                                             const char* what,
                                                             std::size_t need) const {
    throw_codec_error("truncated input reading " + tidy_type_name(type) + " " + what + " (need " +
                      std::to_string(need) + " bytes, " + std::to_string(remaining()) + " left)");
  }
  [[noreturn, gnu::cold, gnu::noinline]] void fail_count(std::string_view type, std::uint64_t n,
                                                         std::size_t min_element) const {
    throw_codec_error(tidy_type_name(type) + " count " + std::to_string(n) +
                      " exceeds the input (" + std::to_string(remaining()) +
                      " bytes left, at least " + std::to_string(min_element) + " per element)");
  }
  [[noreturn, gnu::cold, gnu::noinline]] void fail(std::string_view type,
                                                   const std::string& what) const {
    throw_codec_error("invalid " + tidy_type_name(type) + ": " + what + " at offset " +
                      std::to_string(offset()));
  }

 private:
  const std::byte* begin_;
  const std::byte* pos_;
  const std::byte* end_;
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/codec/archive.hpp>
// #include <coray/detail/codec/codec_traits.hpp>: inlined above
// begin <coray/detail/codec/decode.hpp>
/// decode_value: reads any decodable value from a reader, checking every length and tag
/// (see coray/codec.hpp for the format); malformed input throws codec_error.

#include <algorithm>
// #include <coray/detail/codec/archive.hpp>: inlined above
// #include <coray/detail/codec/codec_traits.hpp>: inlined above
// #include <coray/version.hpp>: inlined above
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>

CORAY_BEGIN_NAMESPACE
namespace detail {

template <class T, class E>
void decode_raw_vector(reader& in, T& v) {
  const auto [p, n] = in.take_raw_run<T, E>();
  if (reinterpret_cast<std::uintptr_t>(p) % alignof(E) == 0) {
    v.assign(reinterpret_cast<const E*>(p), reinterpret_cast<const E*>(p) + n);  // one copy
  } else {
    v.resize(n);
    if (n != 0) std::memcpy(v.data(), p, n * sizeof(E));
  }
}

template <class T, class E>
std::span<const E> decode_view(reader& in) {
  const auto [p, n] = in.take_raw_run<T, E>();
  if (reinterpret_cast<std::uintptr_t>(p) % alignof(E) != 0) [[unlikely]]
    in.fail<T>("elements misaligned for a view (decode views from a 16-byte aligned buffer)");
  return {reinterpret_cast<const E*>(p), n};
}

// Maps and sets: unique-key containers reject duplicates so a value never silently shrinks.
template <class T, bool Unique, class Insert>
void decode_associative(reader& in, T& c, std::size_t n, Insert insert) {
  c.clear();
  if constexpr (requires { c.reserve(n); }) c.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t before = c.size();
    insert();
    if (Unique && c.size() == before) [[unlikely]]
      in.fail<T>("duplicate key");
  }
}

// Default-constructs alternative `index` in v, then decodes into it.
template <class T, std::size_t... I>
void decode_alternative(reader& in, T& v, std::size_t index, std::index_sequence<I...>) {
  (void)((index == I && (decode_value(in, v.template emplace<I>()), true)) || ...);
}

template <class T>
void decode_value(reader& in, T& v) {
  constexpr codec_kind k = kind_v<T>;
  static_assert(k != codec_kind::none && !std::is_const_v<T>,
                "coray codec: type is not decodable (see is_decodable_v)");
  if constexpr (k == codec_kind::serialize_member) {
    nesting<T, reader> level(in);
    v.serialize(in);
  } else if constexpr (k == codec_kind::boolean) {
    const auto b = in.take_scalar<T, unsigned char>("value");
    if (b > 1) [[unlikely]]
      in.fail<T>("byte " + std::to_string(b) + " is not 0 or 1");
    v = b != 0;
  } else if constexpr (k == codec_kind::arithmetic || k == codec_kind::enumeration ||
                       k == codec_kind::byte) {
    std::memcpy(&v, in.take<T>(sizeof(T), "value"), sizeof(T));
  } else if constexpr (k == codec_kind::string) {
    using C = typename T::value_type;
    const auto [p, n] = in.take_raw_run<T, C>();
    if constexpr (std::is_same_v<C, char>) {
      v.assign(reinterpret_cast<const char*>(p), n);
    } else {
      v.resize(n);
      if (n != 0) std::memcpy(v.data(), p, n * sizeof(C));
    }
  } else if constexpr (k == codec_kind::string_view) {
    using C = typename T::value_type;
    const std::span<const C> s = decode_view<T, C>(in);
    v = T(s.data(), s.size());
  } else if constexpr (k == codec_kind::span) {
    v = decode_view<T, std::remove_cv_t<typename T::element_type>>(in);
  } else if constexpr (k == codec_kind::vector) {
    using E = typename T::value_type;
    if constexpr (is_raw_copyable_v<E>) {
      decode_raw_vector<T, E>(in, v);
    } else if constexpr (std::is_same_v<E, bool>) {
      const std::size_t n = in.take_count<T, 1>();
      const std::byte* p = in.take<T>(n, "elements");
      v.assign(n, false);
      for (std::size_t i = 0; i < n; ++i) {
        const auto b = static_cast<unsigned char>(p[i]);
        if (b > 1) [[unlikely]]
          in.fail<T>("element byte " + std::to_string(b) + " is not 0 or 1");
        v[i] = b != 0;
      }
    } else {
      const std::size_t n = in.take_count<T, min_encoded_size_v<E>>();
      v.clear();
      v.reserve(std::min(n, in.remaining()));  // empty elements may be more than bytes left
      for (std::size_t i = 0; i < n; ++i) decode_value(in, v.emplace_back());
    }
  } else if constexpr (k == codec_kind::sequence) {
    const std::size_t n = in.take_count<T, min_encoded_size_v<typename T::value_type>>();
    v.clear();
    for (std::size_t i = 0; i < n; ++i) decode_value(in, v.emplace_back());
  } else if constexpr (k == codec_kind::array) {
    if constexpr (is_raw_copyable_v<typename T::value_type>) {
      in.skip_padding<T>(wire_align_v<typename T::value_type>);
      std::memcpy(v.data(), in.take<T>(sizeof(T), "elements"), sizeof(T));
    } else {
      for (auto& e : v) decode_value(in, e);
    }
  } else if constexpr (k == codec_kind::pair) {
    decode_value(in, v.first);
    decode_value(in, v.second);
  } else if constexpr (k == codec_kind::tuple) {
    std::apply([&in](auto&... e) { (decode_value(in, e), ...); }, v);
  } else if constexpr (k == codec_kind::optional) {
    const auto tag = in.take_scalar<T, unsigned char>("tag");
    if (tag == 0) {
      v.reset();
    } else if (tag == 1) {
      decode_value(in, v.emplace());
    } else [[unlikely]] {
      in.fail<T>("tag " + std::to_string(tag) + " is not 0 or 1");
    }
  } else if constexpr (k == codec_kind::variant) {
    constexpr std::size_t size = std::variant_size_v<T>;
    const auto index = in.take_scalar<T, std::uint32_t>("index");
    if (index >= size) [[unlikely]]
      in.fail<T>("index " + std::to_string(index) + " out of range (" + std::to_string(size) +
                 " alternatives)");
    decode_alternative(in, v, index, std::make_index_sequence<size>{});
  } else if constexpr (k == codec_kind::monostate) {
  } else if constexpr (k == codec_kind::map || k == codec_kind::multimap) {
    using K = typename T::key_type;
    using M = typename T::mapped_type;
    const std::size_t n = in.take_count<T, min_encoded_size_v<K> + min_encoded_size_v<M>>();
    decode_associative<T, k == codec_kind::map>(in, v, n, [&] {
      K key{};
      M mapped{};
      decode_value(in, key);
      decode_value(in, mapped);
      v.emplace_hint(v.end(), std::move(key), std::move(mapped));  // keeps multimap order
    });
  } else if constexpr (k == codec_kind::set || k == codec_kind::multiset) {
    using K = typename T::key_type;
    const std::size_t n = in.take_count<T, min_encoded_size_v<K>>();
    decode_associative<T, k == codec_kind::set>(in, v, n, [&] {
      K key{};
      decode_value(in, key);
      v.emplace_hint(v.end(), std::move(key));
    });
  } else if constexpr (k == codec_kind::duration) {
    typename T::rep count{};
    decode_value(in, count);
    v = T(count);
  } else if constexpr (k == codec_kind::aggregate) {
    nesting<T, reader> level(in);
    boost::pfr::for_each_field(v, [&in](auto& field) { decode_value(in, field); });
  }
}

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/codec/decode.hpp>
// begin <coray/detail/codec/encode.hpp>
/// encode_value: writes any encodable value into an output archive (size_counter or writer)
/// in the format described in coray/codec.hpp.

// #include <coray/detail/codec/archive.hpp>: inlined above
// #include <coray/detail/codec/codec_traits.hpp>: inlined above
// #include <coray/version.hpp>: inlined above
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <variant>

CORAY_BEGIN_NAMESPACE
namespace detail {

// Count then elements; contiguous raw runs as one padded memcpy.
template <class E, bool Contiguous, class Out, class Range>
void encode_elements(Out& out, const Range& range, std::size_t n) {
  const std::uint64_t count = n;
  out.put(&count, sizeof count);
  if constexpr (Contiguous && is_raw_copyable_v<E>) {
    out.pad(wire_align_v<E>);
    out.put(std::data(range), n * sizeof(E));
  } else if constexpr (std::is_same_v<Out, size_counter> && fixed_encoded_size_v<E> != not_fixed) {
    out.put(nullptr, n * fixed_encoded_size_v<E>);
  } else {
    for (const auto& e : range) encode_value(out, e);
  }
}

template <class Out, class T>
void encode_value(Out& out, const T& v) {
  constexpr codec_kind k = kind_v<T>;
  static_assert(k != codec_kind::none, "coray codec: type is not encodable (see is_encodable_v)");
  if constexpr (k == codec_kind::serialize_member) {
    nesting<T, Out> level(out);
    const_cast<T&>(v).serialize(out);  // serialize() is one non-const member for all archives
  } else if constexpr (k == codec_kind::boolean) {
    const unsigned char b = v ? 1 : 0;
    out.put(&b, 1);
  } else if constexpr (k == codec_kind::arithmetic || k == codec_kind::enumeration ||
                       k == codec_kind::byte) {
    out.put(&v, sizeof(T));
  } else if constexpr (k == codec_kind::string || k == codec_kind::string_view) {
    encode_elements<typename T::value_type, true>(out, v, v.size());
  } else if constexpr (k == codec_kind::c_string) {
    const std::string_view s = v != nullptr ? std::string_view(v) : std::string_view();
    encode_elements<char, true>(out, s, s.size());
  } else if constexpr (k == codec_kind::char_array) {
    // A string literal or char buffer: the characters up to the first NUL.
    const void* nul = std::memchr(v, 0, std::extent_v<T>);
    const std::string_view s(v, nul != nullptr
                                    ? static_cast<std::size_t>(static_cast<const char*>(nul) - v)
                                    : std::extent_v<T>);
    encode_elements<char, true>(out, s, s.size());
  } else if constexpr (k == codec_kind::vector) {
    using E = typename T::value_type;
    encode_elements<E, !std::is_same_v<E, bool>>(out, v, v.size());
  } else if constexpr (k == codec_kind::span) {
    encode_elements<std::remove_cv_t<typename T::element_type>, true>(out, v, v.size());
  } else if constexpr (k == codec_kind::array) {
    if constexpr (is_raw_copyable_v<typename T::value_type>) {
      out.pad(wire_align_v<typename T::value_type>);
      out.put(v.data(), sizeof(T));
    } else {
      for (const auto& e : v) encode_value(out, e);
    }
  } else if constexpr (k == codec_kind::pair) {
    encode_value(out, v.first);
    encode_value(out, v.second);
  } else if constexpr (k == codec_kind::tuple) {
    std::apply([&out](const auto&... e) { (encode_value(out, e), ...); }, v);
  } else if constexpr (k == codec_kind::optional) {
    const unsigned char tag = v.has_value() ? 1 : 0;
    out.put(&tag, 1);
    if (v) encode_value(out, *v);
  } else if constexpr (k == codec_kind::variant) {
    // A valueless variant writes index 0xffffffff, which decodes as codec_error.
    const auto index = static_cast<std::uint32_t>(v.index());
    out.put(&index, sizeof index);
    if (!v.valueless_by_exception())
      std::visit([&out](const auto& alt) { encode_value(out, alt); }, v);
  } else if constexpr (k == codec_kind::monostate) {
  } else if constexpr (k == codec_kind::map || k == codec_kind::multimap || k == codec_kind::set ||
                       k == codec_kind::multiset || k == codec_kind::sequence) {
    encode_elements<typename T::value_type, false>(out, v, v.size());
  } else if constexpr (k == codec_kind::duration) {
    const typename T::rep count = v.count();
    encode_value(out, count);
  } else if constexpr (k == codec_kind::aggregate) {
    nesting<T, Out> level(out);
    boost::pfr::for_each_field(v, [&out](const auto& field) { encode_value(out, field); });
  }
}

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/codec/encode.hpp>
// #include <coray/errors.hpp>: inlined above
// #include <coray/version.hpp>: inlined above
#include <cstddef>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

CORAY_BEGIN_NAMESPACE

/// True for every type encode / encoded_size accept (cv and references ignored); false, never
/// a hard error, for the rest, e.g. pointers other than const char*, std::unique_ptr,
/// structs with reference members, enums without a fixed underlying type.
template <class T>
inline constexpr bool is_encodable_v = detail::is_encodable<T>;

/// True for every T decode<T> accepts: encodable, default constructible all the way down,
/// and not const char* / char[N] (encode-only). span<const T> (raw T) and string_view decode
/// as views into the input.
template <class T>
inline constexpr bool is_decodable_v = detail::is_decodable<T>;

/// Exact number of bytes encode_to writes for value.
template <class T>
std::size_t encoded_size(const T& value) {
  static_assert(is_encodable_v<T>, "ray::encoded_size: T is not encodable (see is_encodable_v)");
  detail::size_counter counter;
  detail::encode_value(counter, value);
  return counter.size();
}

/// Writes value into out, which must be exactly encoded_size(value) bytes; never allocates.
/// Views decoded later are aligned only if out.data() is 16-byte aligned.
template <class T>
void encode_to(std::span<std::byte> out, const T& value) {
  static_assert(is_encodable_v<T>, "ray::encode_to: T is not encodable (see is_encodable_v)");
  // The writer asserts each write fits; what is left over means out was too long. (Not a
  // second sizing pass: sizing collects the refs inside the value, once, for its holder.)
  detail::writer w(out);
  detail::encode_value(w, value);
  assert(w.remaining() == 0 && "encode_to: out.size() != encoded_size(value)");
}

/// value's encoding in a fresh buffer (operator new's alignment, 16 bytes on common targets).
template <class T>
std::vector<std::byte> encode(const T& value) {
  std::vector<std::byte> out(encoded_size(value));
  encode_to(std::span<std::byte>(out), value);
  return out;
}

namespace detail {
/// decode's error for input longer than its value. Out of line and cold, and one function
/// for every type: a decode of a small value stays a few instructions.
[[noreturn, gnu::noinline, gnu::cold]] inline void throw_trailing_bytes(std::string_view type,
                                                                        std::size_t remaining,
                                                                        std::size_t size) {
  throw_codec_error(std::to_string(remaining) + " trailing bytes after " + tidy_type_name(type) +
                    " (input " + std::to_string(size) + " bytes)");
}
}  // namespace detail

/// Decodes a T that must span all of bytes. Throws codec_error on malformed, truncated or
/// trailing input. span / string_view parts point into bytes, which must then be 16-byte
/// aligned (a misaligned element throws codec_error) and outlive them.
template <class T>
T decode(std::span<const std::byte> bytes) {
  static_assert(!std::is_reference_v<T>, "ray::decode: T must not be a reference");
  static_assert(is_decodable_v<T>, "ray::decode: T is not decodable (see is_decodable_v)");
  std::remove_cv_t<T> value{};
  detail::reader in(bytes);
  detail::decode_value(in, value);
  if (in.remaining() != 0) [[unlikely]]
    detail::throw_trailing_bytes(detail::type_name_v<T>, in.remaining(), bytes.size());
  return value;
}

CORAY_END_NAMESPACE
// end <coray/codec.hpp>
// #include <coray/detail/codec/codec_traits.hpp>: inlined above
// begin <coray/detail/runtime/invocation.hpp>
/// One call being run in a worker, and `call_host`, the narrow face of the worker that the
/// callee's side (invoker.hpp, actor_constructor.hpp) replies through. Those are templates,
/// compiled in every program that names a task or an actor; they see this interface, never
/// the worker class, so the worker's own code (worker.hpp) is compiled only where a process
/// is started: once, in coray::coray_compiled, in compiled mode.

// begin <coray/detail/runtime/object_state.hpp>
/// A process's view of one object: pending, ready (bytes inline, or a block in the store
/// holding one reference) or failed. object_ref<T> handles count it; awaiting coroutines,
/// dependent tasks and wait operations register as waiters.

#include <atomic>
// begin <coray/detail/runtime/recycled.hpp>
/// Allocation for the objects every call makes and drops (its task_record in the driver, its
/// result's object_state in every process, the bytes of its arguments): a class deriving
/// from recycled<T, Keep>, or a vector given small_buffer_allocator<T, Small, Keep>,
/// keeps the objects a thread frees and hands them out again before asking malloc, so a
/// steady stream of calls allocates nothing once warm.
///
/// How many: while a thread is busy, up to recycle_busy_limit (65,536) of each kind, so that a
/// tide of calls larger than the idle bound is recycled whole: with only 4,096 kept, two
/// actors each keeping 10,000 nested tasks in flight (multi_client_tasks_async) ran at 0.70x
/// of a driver that used malloc for everything, malloc's free lists fragmented by objects
/// half recycled and half not; with the tide kept, 1.05x. When the thread goes idle (its loop
/// is about to sleep, at most once a second: process::run_until; or the driver's memory
/// check finds it idle: memory_return.hpp), trim_recycled() gives back all but `Keep` of
/// each kind, so an idle process holds little.
/// The busy bound caps what one thread can gather from objects another thread allocated. A
/// thread's lists are given back when it ends.
///
/// When no freed object is kept, a new one is carved from a chunk of memory of its kind
/// (slab_chunk, below), not taken from malloc: no header per object, no search of malloc's
/// bins, and a tide's memory faulted in 2 MiB at a time.
///
/// Under AddressSanitizer it passes straight to operator new and delete, so a use after free
/// is still caught.

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
// begin <coray/detail/sanitizers.hpp>
/// Which sanitizer this translation unit is built under, for g++ (__SANITIZE_ADDRESS__,
/// __SANITIZE_THREAD__) and clang (__has_feature): CORAY_DETAIL_ASAN and CORAY_DETAIL_TSAN,
/// each 1 or 0.

#if defined(__SANITIZE_ADDRESS__)
#define CORAY_DETAIL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CORAY_DETAIL_ASAN 1
#endif
#endif
#ifndef CORAY_DETAIL_ASAN
#define CORAY_DETAIL_ASAN 0
#endif

#if defined(__SANITIZE_THREAD__)
#define CORAY_DETAIL_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CORAY_DETAIL_TSAN 1
#endif
#endif
#ifndef CORAY_DETAIL_TSAN
#define CORAY_DETAIL_TSAN 0
#endif
// end <coray/detail/sanitizers.hpp>
// #include <coray/version.hpp>: inlined above
#include <cstddef>
#include <cstdint>
#include <new>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// A chunk of address space new objects of one kind are carved from, in order, by the thread
/// that mapped it. A thread's first chunk of a kind is 64 KiB and each next one twice the last,
/// up to 2 MiB; chunks of 2 MiB ask the kernel for transparent huge pages (madvise), so a tide
/// of a million queued calls faults its records in a 2 MiB page at a time, not 4 KiB: the
/// faults, with malloc's search for room, were a third of the driver's time queuing them. Every
/// chunk starts at a multiple of 2 MiB, so an object finds its chunk by masking its address.
///
/// An object comes back to its chunk (from any thread) when the list of the thread freeing it
/// is full, or trimmed, or the thread ends. A chunk is unmapped once all it handed out came back
/// and its thread carves from it no more: `live` starts at `open`, each object back takes one,
/// and the carving thread, moving on, takes `open` less what it carved, so exactly one of them
/// sees it reach zero. Objects kept on a thread's list keep their chunk mapped.
struct slab_chunk {
  static constexpr std::size_t span = std::size_t{2} << 20;  // alignment and largest length
  static constexpr std::size_t first = std::size_t{64} << 10;
  static constexpr std::uint64_t open = std::uint64_t{1} << 62;

  std::atomic<std::uint64_t> live{open};
  std::size_t length;

  static slab_chunk* of(void* p) noexcept {
    return reinterpret_cast<slab_chunk*>(reinterpret_cast<std::uintptr_t>(p) & ~(span - 1));
  }
  /// A new chunk of `length` bytes (at most span) at a multiple of span. Throws bad_alloc.
  static slab_chunk* map(std::size_t length) {
    void* m = ::mmap(nullptr, 2 * span, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) throw std::bad_alloc();
    const auto base = reinterpret_cast<std::uintptr_t>(m);
    const std::uintptr_t at = (base + span - 1) & ~(span - 1);
    if (at > base) ::munmap(m, at - base);
    ::munmap(reinterpret_cast<void*>(at + length), base + 2 * span - (at + length));
    if (length == span) ::madvise(reinterpret_cast<void*>(at), span, MADV_HUGEPAGE);
    auto* c = ::new (reinterpret_cast<void*>(at)) slab_chunk;
    c->length = length;
    return c;
  }
  /// An object of this chunk came back. Any thread.
  static void give_back(void* p) noexcept { slab_chunk::of(p)->drop(1); }
  /// Its thread carves from it no more, having handed out `carved` objects.
  void seal(std::uint64_t carved) noexcept { drop(open - carved); }

 private:
  void drop(std::uint64_t n) noexcept {
    if (live.fetch_sub(n, std::memory_order_acq_rel) == n) {
      const std::size_t len = length;
      this->~slab_chunk();
      ::munmap(this, len);
    }
  }
};

/// A thread's carving of objects of `Size` bytes (a multiple of `Align`) from its chunks.
template <std::size_t Size, std::size_t Align>
class slab_carver {
  static_assert(Size % Align == 0 && Size * 16 <= slab_chunk::first, "small objects only");

 public:
  slab_carver() noexcept = default;
  slab_carver(const slab_carver&) = delete;
  slab_carver& operator=(const slab_carver&) = delete;
  ~slab_carver() { retire(); }

  void* carve() {
    if (static_cast<std::size_t>(end_ - next_) < Size) [[unlikely]]
      refill();
    void* p = next_;
    next_ += Size;
    ++carved_;
    return p;
  }

 private:
  [[gnu::noinline]] void refill() {
    const std::size_t length =
        last_ ? std::min(last_ * 2, slab_chunk::span) : std::max(slab_chunk::first, 2 * Size + 64);
    slab_chunk* c = slab_chunk::map(length);  // throws bad_alloc, nothing changed
    retire();
    chunk_ = c;
    last_ = length;
    auto* base = reinterpret_cast<std::byte*>(c);
    next_ = base + ((sizeof(slab_chunk) + Align - 1) & ~(Align - 1));
    end_ = base + length;
  }
  void retire() noexcept {
    if (chunk_) chunk_->seal(carved_);
    chunk_ = nullptr;
    next_ = end_ = nullptr;
    carved_ = 0;
  }

  slab_chunk* chunk_ = nullptr;
  std::byte* next_ = nullptr;
  std::byte* end_ = nullptr;
  std::uint64_t carved_ = 0;
  std::size_t last_ = 0;
};

/// Whether freed objects are kept for reuse (not under AddressSanitizer).
inline constexpr bool recycling = !CORAY_DETAIL_ASAN;

/// The most freed objects of one kind a thread keeps while busy (see above).
inline constexpr std::size_t recycle_busy_limit = std::size_t{1} << 16;

/// One kind's list on its thread's chain of lists that have kept something.
struct recycle_list_link {
  std::size_t (*trim)() noexcept;
  recycle_list_link* next;
};
inline thread_local recycle_list_link* recycle_lists = nullptr;

/// Gives back to malloc what this thread's lists keep beyond each one's `Keep`; returns how
/// many objects went back. Cheap when nothing is over: a look at a few counts.
inline std::size_t trim_recycled() noexcept {
  std::size_t n = 0;
  for (recycle_list_link* l = recycle_lists; l != nullptr; l = l->next) n += l->trim();
  return n;
}

template <class T, std::size_t Keep>
struct recycled {
  static_assert(Keep <= recycle_busy_limit);
  static void* operator new(std::size_t n) {
    if constexpr (recycling) {
      kept& k = freed;
      if (k.head != nullptr && n == sizeof(T)) {
        void* p = k.head;
        k.head = *static_cast<void**>(p);
        --k.count;
        return p;
      }
      if (n == sizeof(T)) return carver().carve();
    }
    return ::operator new(n);
  }
  static void operator delete(void* p, std::size_t n) noexcept {
    static_assert(sizeof(T) >= sizeof(void*), "the list is threaded through freed objects");
    if constexpr (recycling) {
      kept& k = freed;
      if (k.count < recycle_busy_limit && n == sizeof(T) && !k.gone) {
        if (!k.armed) arm();
        *static_cast<void**>(p) = k.head;
        k.head = p;
        ++k.count;
        return;
      }
      if (n == sizeof(T)) return slab_chunk::give_back(p);
    }
    ::operator delete(p);  // unsized: clang enables sized deallocation only when asked
  }
  /// How many freed objects this thread keeps now.
  static std::size_t kept_here() noexcept { return freed.count; }

 private:
  /// The freed objects, a list threaded through their first bytes. Trivially destructible,
  /// so every use is a plain thread-local access; the reaper gives the objects back when the
  /// thread ends, after which deletes go straight to operator delete.
  struct kept {
    void* head = nullptr;
    std::size_t count = 0;
    bool armed = false;
    bool gone = false;
  };
  struct reaper {
    ~reaper() {
      free_down_to(0);
      freed.gone = true;
    }
  };
  [[gnu::noinline, gnu::cold]] static void arm() noexcept {
    static thread_local reaper r;
    (void)r;
    freed.armed = true;
    link.next = recycle_lists;
    recycle_lists = &link;
  }
  /// Frees all but Keep of this thread's kept objects (trim_recycled).
  static std::size_t trim() noexcept { return free_down_to(Keep); }
  /// Frees kept objects, newest first, until `keep` are left; returns how many it freed.
  static std::size_t free_down_to(std::size_t keep) noexcept {
    kept& k = freed;
    std::size_t n = 0;
    for (; k.count > keep; ++n) {
      void* p = k.head;
      k.head = *static_cast<void**>(p);
      --k.count;
      slab_chunk::give_back(p);  // only objects of sizeof(T) are kept
    }
    return n;
  }
  static inline thread_local recycle_list_link link{&trim, nullptr};
  static inline thread_local kept freed;
  /// This thread's carving of new objects (a function's, as T is incomplete here).
  static auto& carver() noexcept {
    static_assert(alignof(T) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__, "carved at its own alignment");
    static thread_local slab_carver<sizeof(T), alignof(T)> c;
    return c;
  }
};

/// Small buffers for a vector that most often holds a few bytes (a call's encoded
/// arguments): an allocation of up to `Small` bytes takes a whole `Small`-byte buffer from a
/// bounded per-thread list, as recycled<T, Keep> does; a larger one goes to operator new.
/// The vector gives back the capacity it asked for, so each buffer returns to its own kind.
template <class T, std::size_t Small, std::size_t Keep>
struct small_buffer_allocator {
  using value_type = T;
  template <class U>
  struct rebind {
    using other = small_buffer_allocator<U, Small, Keep>;
  };
  small_buffer_allocator() noexcept = default;
  template <class U>
  small_buffer_allocator(const small_buffer_allocator<U, Small, Keep>&) noexcept {}

  T* allocate(std::size_t n) {
    if (n <= Small / sizeof(T)) return static_cast<T*>(buffer::operator new(sizeof(buffer)));
    if (n > std::size_t(-1) / sizeof(T)) throw std::bad_array_new_length();
    return static_cast<T*>(::operator new(n * sizeof(T)));
  }
  void deallocate(T* p, std::size_t n) noexcept {
    if (n <= Small / sizeof(T))
      buffer::operator delete(p, sizeof(buffer));
    else
      ::operator delete(p);
  }
  template <class U>
  bool operator==(const small_buffer_allocator<U, Small, Keep>&) const noexcept {
    return true;
  }

 private:
  struct buffer : recycled<buffer, Keep> {
    alignas(std::max_align_t) unsigned char bytes[Small];
  };
  static_assert(alignof(T) <= alignof(std::max_align_t) && Small >= sizeof(T));
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/recycled.hpp>
// begin <coray/detail/shm/segment.hpp>
/// The runtime's one shared segment: an anonymous memory file (memfd) mapped by the driver,
/// its supervisor and every worker, with a Boost.Interprocess allocator inside. Nothing is
/// named in /dev/shm: the memory goes away with the last process that maps it.

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
// #include <coray/errors.hpp>: inlined above
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// An object in the store: a header, then the encoded bytes (16-byte aligned).
struct alignas(16) object_block {
  std::atomic<std::uint32_t> refs;
  std::uint32_t reserved;
  std::uint64_t size;
  std::byte* data() noexcept { return reinterpret_cast<std::byte*>(this + 1); }
};
static_assert(sizeof(object_block) == 16);

class segment {
 public:
  static constexpr std::uint64_t magic = 0x636f7261792d7631ULL;  // "coray-v1"
  static constexpr std::size_t root_bytes = 4096;

  struct root {
    std::uint64_t magic;
    std::uint64_t size;
    std::uint64_t header_offset;  // of the runtime's shared_header
  };

  segment() = default;
  segment(const segment&) = delete;
  segment& operator=(const segment&) = delete;
  ~segment() { close(); }

  /// Driver: makes a new anonymous segment of `bytes` (sparse: pages cost memory only once
  /// touched). The fd is close-on-exec, as it is in every process: a program that a task or
  /// the supervisor runs must not hold the segment.
  CORAY_API void create(std::size_t bytes);

  /// Spawned worker: maps the segment inherited as `fd`, and makes `fd` close-on-exec again
  /// (posix_spawn had to clear that to pass it on).
  CORAY_API void attach(int fd);

  /// Takes over another segment object's mapping (a forked worker, from its parent's copy).
  CORAY_API void adopt(segment& o);

  void close() noexcept {
    if (has_alloc_) {
      // The allocator lives in the shared memory; dropping our view must not run its
      // destructor logic on memory other processes still use.
      has_alloc_ = false;
    }
    if (base_) munmap(base_, size_);
    base_ = nullptr;
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  int fd() const noexcept { return fd_; }
  std::byte* base() const noexcept { return base_; }
  std::size_t size() const noexcept { return size_; }
  root& header_root() const noexcept { return *reinterpret_cast<root*>(base_); }

  std::uint64_t offset_of(const void* p) const noexcept {
    return static_cast<std::uint64_t>(static_cast<const std::byte*>(p) - base_);
  }
  template <class T = std::byte>
  T* at(std::uint64_t off) const noexcept {
    return reinterpret_cast<T*>(base_ + off);
  }

  /// Allocates `bytes` in the segment (16-byte aligned). Thread- and process-safe.
  /// Throws object_store_full with the sizes when it does not fit.
  CORAY_API void* allocate(std::size_t bytes);
  /// Like allocate(), aligned to `alignment` (a power of two): for cache-line aligned
  /// control structures.
  CORAY_API void* allocate_aligned(std::size_t bytes, std::size_t alignment);
  CORAY_API void deallocate(void* p) noexcept;

  /// Allocations of `large_bytes` or more made by this process so far.
  static constexpr std::size_t large_bytes = std::size_t{1} << 20;
  std::uint64_t large_allocations() const noexcept {
    return large_allocations_.load(std::memory_order_relaxed);
  }
  /// Gives the memory of the free ranges of `min_chunk` bytes or more back to the operating
  /// system: their whole pages are punched out of the memory file (they read as zeros and
  /// cost nothing until written again). Each range is held allocated while it is punched, so
  /// no allocation can be inside it, less its last `min_chunk / 2` bytes, left free (not
  /// punched) for allocations other processes make meanwhile. Returns the bytes punched
  /// (pages never touched included).
  CORAY_API std::size_t return_free_pages(std::size_t min_chunk) noexcept;
  CORAY_API std::size_t free_bytes() const noexcept;
  CORAY_API std::size_t capacity() const noexcept;

  /// A new object block with one reference, for `size` bytes of payload.
  object_block* new_object(std::size_t size) {
    auto* b = static_cast<object_block*>(allocate(sizeof(object_block) + size));
    b->refs.store(1, std::memory_order_relaxed);
    b->reserved = 0;
    b->size = size;
    return b;
  }
  void add_ref(object_block* b) noexcept { b->refs.fetch_add(1, std::memory_order_relaxed); }
  void release(object_block* b) noexcept {
    if (b->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) deallocate(b);
  }

 private:
  friend struct segment_allocator;
  void map(std::size_t bytes) {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
    if (p == MAP_FAILED) throw_errno("mmap");
    base_ = static_cast<std::byte*>(p);
    size_ = bytes;
  }
  [[noreturn]] static void throw_errno(const char* what) {
    throw ray::runtime_error(std::string("coray: ") + what + " failed: " + std::strerror(errno));
  }

  int fd_ = -1;
  std::byte* base_ = nullptr;
  std::size_t size_ = 0;
  /// The Boost.Interprocess allocator's handle (segment_impl.hpp), made in place: a pointer
  /// to its manager inside the segment.
  alignas(16) unsigned char alloc_[16];
  bool has_alloc_ = false;
  std::atomic<std::uint64_t> large_allocations_{0};
};

}  // namespace detail
CORAY_END_NAMESPACE

// begin <coray/detail/shm/segment_impl.hpp>
/// segment's allocating members: Boost.Interprocess's rbtree_best_fit allocator, kept inside
/// the segment. Included by segment.hpp in header-only mode (inline), and compiled once by
/// src/coray.cpp into coray::coray_compiled in compiled mode (CORAY_COMPILED_LIB), so that a
/// translation unit including coray.hpp does not parse Boost.Interprocess.

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <boost/interprocess/indexes/null_index.hpp>
#include <boost/interprocess/managed_external_buffer.hpp>
#include <boost/interprocess/mem_algo/rbtree_best_fit.hpp>
// begin <coray/detail/shm/robust_mutex.hpp>
/// A process-shared mutex that survives its holder's death: the next locker gets the lock
/// (EOWNERDEAD is made consistent) instead of hanging forever. Used as the object store
/// allocator's lock, whose holder can be SIGKILLed at any instant.

#include <errno.h>
#include <pthread.h>
#include <time.h>

#include <atomic>
#include <chrono>
// #include <coray/detail/sanitizers.hpp>: inlined above
// #include <coray/errors.hpp>: inlined above
#include <cstdint>

// Under ThreadSanitizer unlock() stays a frame of its own, so that tests/tsan.supp, which
// names it, matches wherever it is called (see there).
#if CORAY_DETAIL_TSAN
#define CORAY_DETAIL_TSAN_NOINLINE [[gnu::noinline]]
#else
#define CORAY_DETAIL_TSAN_NOINLINE
#endif

CORAY_BEGIN_NAMESPACE
namespace detail {

class robust_mutex {
 public:
  robust_mutex() { init(false); }
  ~robust_mutex() { pthread_mutex_destroy(&m_); }
  robust_mutex(const robust_mutex&) = delete;
  robust_mutex& operator=(const robust_mutex&) = delete;

  /// Blocks. If the previous holder died holding it, takes it over and counts the event.
  void lock() { recover(pthread_mutex_lock(&m_)); }
  bool try_lock() {
    int rc = pthread_mutex_trylock(&m_);
    if (rc == EBUSY) return false;
    recover(rc);
    return true;
  }
  template <class TimePoint>
  bool timed_lock(const TimePoint&) {
    lock();
    return true;
  }
  /// Waits for the lock until `deadline` (the steady clock); false if it did not come.
  bool try_lock_until(std::chrono::steady_clock::time_point deadline) {
    const auto since = deadline.time_since_epoch();
    const auto secs = std::chrono::duration_cast<std::chrono::seconds>(since);
    const auto nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(since - secs);
    timespec ts{static_cast<time_t>(secs.count()), static_cast<long>(nanos.count())};
    int rc = pthread_mutex_clocklock(&m_, CLOCK_MONOTONIC, &ts);
    if (rc == ETIMEDOUT) return false;
    recover(rc);
    return true;
  }
  CORAY_DETAIL_TSAN_NOINLINE void unlock() { pthread_mutex_unlock(&m_); }
  /// How many times a holder died with the lock held.
  std::uint32_t owner_deaths() const noexcept { return deaths_.load(std::memory_order_relaxed); }

 protected:
  explicit robust_mutex(bool recursive) { init(recursive); }

 private:
  void init(bool recursive) {
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    if (recursive) pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&m_, &a);
    pthread_mutexattr_destroy(&a);
  }
  void recover(int rc) {
    if (rc == EOWNERDEAD) {
      pthread_mutex_consistent(&m_);
      deaths_.fetch_add(1, std::memory_order_relaxed);
    } else if (rc != 0) {
      throw ray::runtime_error("coray: process-shared mutex failed (error " + std::to_string(rc) +
                               ")");
    }
  }
  pthread_mutex_t m_;
  std::atomic<std::uint32_t> deaths_{0};
};

class robust_recursive_mutex : public robust_mutex {
 public:
  robust_recursive_mutex() : robust_mutex(true) {}
};

/// Mutex family for Boost.Interprocess memory algorithms.
struct robust_mutex_family {
  using mutex_type = robust_mutex;
  using recursive_mutex_type = robust_recursive_mutex;
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/shm/robust_mutex.hpp>
// #include <coray/detail/shm/segment.hpp>: inlined above
// #include <coray/errors.hpp>: inlined above
#include <cstring>
#include <new>

CORAY_BEGIN_NAMESPACE
namespace detail {

namespace bip = boost::interprocess;

/// Several processes allocate, so the allocator takes a lock; a robust one, because any of
/// them may be killed while holding it.
using shared_allocator =
    bip::basic_managed_external_buffer<char, bip::rbtree_best_fit<robust_mutex_family>,
                                       bip::null_index>;

/// The allocator handle a segment keeps in place.
struct segment_allocator {
  static_assert(sizeof(shared_allocator) <= sizeof(segment::alloc_) &&
                    alignof(shared_allocator) <= alignof(segment),
                "coray: segment::alloc_ must hold a shared_allocator");
  static shared_allocator& of(segment& s) noexcept {
    return *std::launder(reinterpret_cast<shared_allocator*>(&s.alloc_));
  }
};

CORAY_API void segment::create(std::size_t bytes) {
  fd_ = memfd_create("coray", MFD_CLOEXEC);
  if (fd_ < 0) throw_errno("memfd_create");
  if (ftruncate(fd_, static_cast<off_t>(bytes)) != 0) throw_errno("ftruncate");
  map(bytes);
  new (&alloc_) shared_allocator(bip::create_only, base_ + root_bytes, bytes - root_bytes);
  has_alloc_ = true;
  auto* r = reinterpret_cast<root*>(base_);
  r->magic = magic;
  r->size = bytes;
  r->header_offset = 0;
}

CORAY_API void segment::attach(int fd) {
  fd_ = fd;
  if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) throw_errno("fcntl on inherited segment");
  off_t len = lseek(fd, 0, SEEK_END);
  if (len <= 0) throw_errno("lseek on inherited segment");
  map(static_cast<std::size_t>(len));
  auto* r = reinterpret_cast<root*>(base_);
  if (r->magic != magic) throw ray::runtime_error("coray: inherited fd is not a coray segment");
  new (&alloc_) shared_allocator(bip::open_only, base_ + root_bytes, size_ - root_bytes);
  has_alloc_ = true;
}

CORAY_API void segment::adopt(segment& o) {
  fd_ = std::exchange(o.fd_, -1);
  base_ = std::exchange(o.base_, nullptr);
  size_ = std::exchange(o.size_, 0);
  o.has_alloc_ = false;
  new (&alloc_) shared_allocator(bip::open_only, base_ + root_bytes, size_ - root_bytes);
  has_alloc_ = true;
}

CORAY_API void* segment::allocate(std::size_t bytes) {
  shared_allocator& a = segment_allocator::of(*this);
  void* p = a.allocate(bytes, std::nothrow);
  if (!p) throw object_store_full(bytes, a.get_free_memory(), a.get_size());
  if (bytes >= large_bytes) large_allocations_.fetch_add(1, std::memory_order_relaxed);
  return p;
}

CORAY_API void* segment::allocate_aligned(std::size_t bytes, std::size_t alignment) {
  shared_allocator& a = segment_allocator::of(*this);
  void* p = a.allocate_aligned(bytes, alignment, std::nothrow);
  if (!p) throw object_store_full(bytes, a.get_free_memory(), a.get_size());
  if (bytes >= large_bytes) large_allocations_.fetch_add(1, std::memory_order_relaxed);
  return p;
}

CORAY_API std::size_t segment::return_free_pages(std::size_t min_chunk) noexcept {
  shared_allocator& a = segment_allocator::of(*this);
  const auto page = static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
  const std::size_t reserve = min_chunk / 2;
  std::size_t punched = 0;
  void* held = nullptr;  // the ranges taken so far, chained through their first word
  for (;;) {
    std::size_t got = a.get_size();  // the largest free range there is
    char* p = nullptr;
    p = a.allocation_command<char>(bip::allocate_new | bip::nothrow_allocation, min_chunk + reserve,
                                   got, p);
    if (!p) break;
    std::size_t kept = got - reserve;
    char* same = p;
    if (a.allocation_command<char>(bip::shrink_in_place | bip::nothrow_allocation, kept, kept,
                                   same))
      got = kept;
    std::memcpy(p, &held, sizeof held);
    held = p;
    const std::uint64_t begin = (offset_of(p) + sizeof held + page - 1) / page * page;
    const std::uint64_t end = (offset_of(p) + got) / page * page;
    if (end > begin && fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                 static_cast<off_t>(begin), static_cast<off_t>(end - begin)) == 0)
      punched += end - begin;
  }
  while (held) {
    void* next;
    std::memcpy(&next, held, sizeof next);
    deallocate(held);
    held = next;
  }
  return punched;
}

CORAY_API std::size_t segment::free_bytes() const noexcept {
  return segment_allocator::of(const_cast<segment&>(*this)).get_free_memory();
}

CORAY_API void segment::deallocate(void* p) noexcept { segment_allocator::of(*this).deallocate(p); }

CORAY_API std::size_t segment::capacity() const noexcept {
  return segment_allocator::of(const_cast<segment&>(*this)).get_size();
}

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/shm/segment_impl.hpp>
// end <coray/detail/shm/segment.hpp>
// #include <coray/errors.hpp>: inlined above
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <span>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

struct object_state;
class state_ptr;
struct object_contents;
/// What a call or an object holds besides bytes (object_contents), or null: most values hold
/// nothing, and a null pointer costs them one word.
using held_contents = std::unique_ptr<object_contents>;

/// Something to notify when an object settles. `fn(ctx, state)` runs on the loop thread.
struct waiter {
  void (*fn)(void* ctx, object_state& s);
  void* ctx;
};

void release_state(object_state* s) noexcept;  // defined with the process (process.hpp)

/// Brings a spilled object back into the store (the driver's; defined with the process).
void restore_state(object_state& s);

/// An object's encoded value kept in the process rather than in the store: up to 32 bytes in
/// place (most results: an int, a double, a short string), more on the heap; 16-byte aligned
/// either way, as the codec reads raw values in place.
class inline_value {
 public:
  inline_value() noexcept = default;
  inline_value(const inline_value&) = delete;
  inline_value& operator=(const inline_value&) = delete;
  ~inline_value() { release(); }

  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  std::byte* data() noexcept { return size_ <= in_place ? here_ : heap_; }
  const std::byte* data() const noexcept { return size_ <= in_place ? here_ : heap_; }
  /// Room for `n` bytes, their contents unspecified (what was there is not kept).
  void resize(std::size_t n) {
    release();
    if (n > in_place)
      heap_ = static_cast<std::byte*>(::operator new (n, std::align_val_t{alignment}));
    size_ = n;
  }
  void assign(std::span<const std::byte> b) {
    resize(b.size());
    if (!b.empty()) std::memcpy(data(), b.data(), b.size());
  }

 private:
  static constexpr std::size_t in_place = 32, alignment = 16;
  void release() noexcept {
    if (size_ > in_place) ::operator delete (heap_, std::align_val_t{alignment});
    size_ = 0;
  }
  std::size_t size_ = 0;
  union {
    alignas(alignment) std::byte here_[in_place];
    std::byte* heap_;
  };
};

struct object_state : recycled<object_state, 4096> {
  enum class status : std::uint8_t { pending, ready, failed };

  // What a get of a value in place reads (a handle taken and dropped, the runtime checked,
  // the status and the value) is the first 64 bytes: a get of many refs touches a line or
  // two of each state, not three.
  std::atomic<std::uint32_t> handles{1};
  /// Written on the loop thread (or by the thread building a put, before it is shared);
  /// read anywhere: a thread that sees it settled sees the value, or error, set before.
  std::atomic<status> st{status::pending};
  /// Its id is in the driver's directory of objects refs may name (driver only).
  bool published = false;
  std::uint32_t epoch = 0;        // the runtime that made it; its block dies with that runtime
  std::uint32_t pins = 0;         // readers of the block in place (views, calls in flight)
  inline_value bytes;             // the value, when not in the store (offsets 16 to 64)
  object_block* block = nullptr;  // value in the store; this state holds one reference
  std::uint64_t id = 0;           // nonzero for results the driver tracks by id, and refs by id
  std::vector<waiter> waiters;

  bool settled() const noexcept { return st.load(std::memory_order_acquire) != status::pending; }
  /// A failed object's error (null otherwise).
  const std::exception_ptr& error() const noexcept { return rare_ ? rare_->error : no_error(); }
  /// The objects and actors whose refs and handles are inside this one's value, kept alive
  /// as long as it is; null for most values.
  object_contents* contained() const noexcept { return rare_ ? rare_->contained.get() : nullptr; }
  /// This object holds `c` (null: nothing) from now on, for as long as it lives.
  void set_contained(held_contents c) {
    if (c || rare_) more().contained = std::move(c);
  }
  bool spilled() const noexcept { return rare_ && rare_->spill_offset >= 0; }
  /// Where the value lies in the spill file, and how long it is; -1 and 0 if not spilled.
  std::int64_t spill_offset() const noexcept { return rare_ ? rare_->spill_offset : -1; }
  std::uint64_t spill_size() const noexcept { return rare_ ? rare_->spill_size : 0; }
  void set_spilled(std::int64_t offset, std::uint64_t size) {
    more().spill_offset = offset;
    more().spill_size = size;
  }
  void clear_spilled() noexcept {
    if (rare_) rare_->spill_offset = -1;
  }
  /// The encoded value, wherever it lies (a spilled one is brought back first). Precondition:
  /// ready. Throws object_store_full if a spilled value does not fit back.
  [[gnu::always_inline]] std::span<const std::byte> value_bytes() const {
    // A value in place is never in the store nor spilled: read it without their fields.
    if (!bytes.empty()) return {bytes.data(), bytes.size()};
    if (spilled()) [[unlikely]]
      restore_state(const_cast<object_state&>(*this));
    if (block) return {block->data(), static_cast<std::size_t>(block->size)};
    return {bytes.data(), bytes.size()};
  }
  void rethrow_if_failed() const {
    if (st.load(std::memory_order_acquire) == status::failed) [[unlikely]]
      std::rethrow_exception(error());
  }
  /// Settles the object and notifies every waiter once. Loop thread.
  void settle(status s) {
    st.store(s, std::memory_order_release);
    auto ws = std::move(waiters);
    waiters.clear();
    for (auto& w : ws) w.fn(w.ctx, *this);
  }
  void set_inline(std::span<const std::byte> b) {
    bytes.assign(b);
    settle(status::ready);
  }
  void set_block(object_block* b) {
    block = b;
    settle(status::ready);
  }
  void set_error(std::exception_ptr e) {
    more().error = std::move(e);
    settle(status::failed);
  }

 private:
  /// What few objects need: an error, a spilled value's place, refs and handles inside the
  /// value. Apart, so that the state of a pending or small result is 112 bytes, not 144.
  struct rare {
    std::exception_ptr error;
    std::int64_t spill_offset = -1;
    std::uint64_t spill_size = 0;
    held_contents contained;
  };
  rare& more() {
    if (!rare_) rare_ = std::make_unique<rare>();
    return *rare_;
  }
  static const std::exception_ptr& no_error() noexcept {
    static const std::exception_ptr none;
    return none;
  }
  std::unique_ptr<rare> rare_;
};

/// An intrusive owning pointer to an object_state (one handle).
class state_ptr {
 public:
  state_ptr() noexcept = default;
  /// Adopts a handle already counted (a fresh state starts with one).
  static state_ptr adopt(object_state* s) noexcept {
    state_ptr p;
    p.s_ = s;
    return p;
  }
  static state_ptr share(object_state* s) noexcept {
    if (s) s->handles.fetch_add(1, std::memory_order_relaxed);
    return adopt(s);
  }
  state_ptr(const state_ptr& o) noexcept : s_(o.s_) {
    if (s_) s_->handles.fetch_add(1, std::memory_order_relaxed);
  }
  state_ptr(state_ptr&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  state_ptr& operator=(state_ptr o) noexcept {
    std::swap(s_, o.s_);
    return *this;
  }
  ~state_ptr() {
    if (s_ && s_->handles.fetch_sub(1, std::memory_order_acq_rel) == 1) release_state(s_);
  }
  object_state* get() const noexcept { return s_; }
  object_state* operator->() const noexcept { return s_; }
  object_state& operator*() const noexcept { return *s_; }
  explicit operator bool() const noexcept { return s_ != nullptr; }

 private:
  object_state* s_ = nullptr;
};

/// Where the refs met while sizing a value are collected (see object_ref<T>::serialize): the
/// put object, call or result that will hold the value keeps them alive, and they are
/// published (made known to the driver by id) before the value is written.
inline std::vector<state_ptr>*& ref_collector() noexcept {
  thread_local std::vector<state_ptr>* c = nullptr;
  return c;
}
/// Called by object_ref<T>::serialize while a value is sized.
inline void collect_ref(const state_ptr& s) {
  if (!ref_collector())
    throw usage_error(
        "coray: an object_ref is encoded only inside a put object, a call argument or a result");
  ref_collector()->push_back(s);
}
/// What a value holds besides bytes: the refs inside it (their objects) and the actor
/// handles (their ids, each counted once at the driver while the value lives).
struct object_contents {
  std::vector<state_ptr> refs;
  std::vector<std::uint64_t> actors;
  bool empty() const noexcept { return refs.empty() && actors.empty(); }
};
inline object_contents& contents_of(held_contents& c) {
  if (!c) c = std::make_unique<object_contents>();
  return *c;
}
/// The actor ids and the refs `c` holds; empty when it holds none (null).
inline std::span<const std::uint64_t> held_actors(const object_contents* c) noexcept {
  return c ? std::span<const std::uint64_t>(c->actors) : std::span<const std::uint64_t>();
}
inline std::span<const state_ptr> held_refs(const object_contents* c) noexcept {
  return c ? std::span<const state_ptr>(c->refs) : std::span<const state_ptr>();
}
inline std::span<const std::uint64_t> held_actors(const held_contents& c) noexcept {
  return held_actors(c.get());
}
inline std::span<const state_ptr> held_refs(const held_contents& c) noexcept {
  return held_refs(c.get());
}

/// Where actor handles met while sizing a value are collected (see actor<T>::serialize), and
/// shared blocks while writing call arguments (collect_pinned_block, tagged).
inline std::vector<std::uint64_t>*& actor_collector() noexcept {
  thread_local std::vector<std::uint64_t>* c = nullptr;
  return c;
}

/// Collects into `into` the refs and actor handles met while sizing values, for its lifetime.
class collecting_refs {
 public:
  explicit collecting_refs(object_contents& into) noexcept
      : saved_refs_(std::exchange(ref_collector(), &into.refs)),
        saved_actors_(std::exchange(actor_collector(), &into.actors)) {}
  ~collecting_refs() {
    ref_collector() = saved_refs_;
    actor_collector() = saved_actors_;
  }
  collecting_refs(const collecting_refs&) = delete;
  collecting_refs& operator=(const collecting_refs&) = delete;

 private:
  std::vector<state_ptr>* saved_refs_;
  std::vector<std::uint64_t>* saved_actors_;
};

/// The ref an id read from a value names, a handle of this process (object_ref<T>::serialize;
/// defined with the process's other threads' entry, foreign.hpp).
inline state_ptr decode_ref(std::uint64_t id);

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/object_state.hpp>
// begin <coray/detail/runtime/registry.hpp>
/// Stable ids for remote functions. A callee is found by a hash of its name, not its address,
/// so a spawned worker (different ASLR base) and, later, another machine resolve the same one.

// #include <coray/version.hpp>: inlined above
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string_view>
#include <unordered_map>

CORAY_BEGIN_NAMESPACE
namespace detail {

constexpr std::uint64_t fnv1a(std::string_view s) noexcept {
  std::uint64_t h = 14695981039346656037ULL;
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ULL;
  }
  return h;
}

/// The name of the entity F, as the compiler spells it ("add", "ns::fib", "&counter::incr").
template <auto F>
constexpr std::string_view entity_name() noexcept {
  std::string_view p = __PRETTY_FUNCTION__;
#if defined(__clang__)
  auto b = p.find("F = ") + 4;
  auto e = p.rfind(']');
#else
  auto b = p.find("F = ") + 4;
  auto e = p.find(';', b);
  if (e == std::string_view::npos) e = p.rfind(']');
#endif
  std::string_view n = p.substr(b, e - b);
  if (!n.empty() && n.front() == '&') n.remove_prefix(1);
  return n;
}

/// entity_name<F>(), worked out once at compile time (a call site evaluates the function at
/// run time, two searches of a long string per call).
template <auto F>
inline constexpr std::string_view entity_name_v = entity_name<F>();

template <auto F>
inline constexpr std::uint64_t entity_id = fnv1a(entity_name_v<F>);

struct invocation;
using invoker_fn = void (*)(invocation&);

struct registered_function {
  invoker_fn invoke;
  std::string_view name;
};

/// id -> callee, filled during static initialisation in every process of the program.
inline std::unordered_map<std::uint64_t, registered_function>& function_table() {
  static std::unordered_map<std::uint64_t, registered_function> table;
  return table;
}

inline bool register_function(std::uint64_t id, invoker_fn fn, std::string_view name) {
  auto [it, inserted] = function_table().try_emplace(id, registered_function{fn, name});
  if (!inserted && it->second.name != name) {
    std::fprintf(stderr, "coray: function id collision between %.*s and %.*s\n",
                 static_cast<int>(name.size()), name.data(),
                 static_cast<int>(it->second.name.size()), it->second.name.data());
    std::abort();
  }
  return true;
}

inline const registered_function* find_function(std::uint64_t id) {
  auto& t = function_table();
  auto it = t.find(id);
  return it == t.end() ? nullptr : &it->second;
}

/// A concurrency group's name as calls carry it: 32 bits of its hash, never 0 (0: none
/// named, the method's own group or the actor's default one).
constexpr std::uint32_t group_hash(std::string_view name) noexcept {
  if (name.empty()) return 0;
  const std::uint64_t h = fnv1a(name);
  const auto folded = static_cast<std::uint32_t>(h ^ (h >> 32));
  return folded ? folded : 1;
}

/// The concurrency groups methods declare (ray::concurrency_group<&T::m>), by the method's
/// id: the group's group_hash. Filled during static initialisation, like function_table.
inline std::unordered_map<std::uint64_t, std::uint32_t>& method_group_table() {
  static std::unordered_map<std::uint64_t, std::uint32_t> table;
  return table;
}
inline bool register_method_group(std::uint64_t fn_id, std::uint32_t group) {
  method_group_table().emplace(fn_id, group);
  return true;
}
/// The group method `fn_id` declares; 0 for none (the actor's default group).
inline std::uint32_t declared_group(std::uint64_t fn_id) {
  auto& t = method_group_table();
  auto it = t.find(fn_id);
  return it == t.end() ? 0 : it->second;
}

/// Retry matchers (ray::retry_on<E...>): whether an exception in flight is to be retried.
/// Registered like functions, so a worker finds the caller's choice by id.
using retry_matcher_fn = bool (*)(std::exception_ptr);
inline std::unordered_map<std::uint64_t, retry_matcher_fn>& retry_matcher_table() {
  static std::unordered_map<std::uint64_t, retry_matcher_fn> table;
  return table;
}
inline bool register_retry_matcher(std::uint64_t id, retry_matcher_fn fn) {
  retry_matcher_table().emplace(id, fn);
  return true;
}
/// Whether the exception `e` is to be retried under matcher `id` (0: never, 1: always).
inline bool retry_matches(std::uint64_t id, std::exception_ptr e) {
  if (id <= 1) return id == 1;
  auto it = retry_matcher_table().find(id);
  return it != retry_matcher_table().end() && it->second(std::move(e));
}

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/registry.hpp>
// begin <coray/detail/runtime/wire.hpp>
/// The messages processes exchange through their mailboxes, and how values, errors and task
/// arguments are laid out in them. Every field is fixed-width; every offset is into the
/// shared segment.

#include <cxxabi.h>
#include <fmt/format.h>

// #include <coray/codec.hpp>: inlined above
// begin <coray/detail/shm/futex.hpp>
/// Cross-process waking: a doorbell a process sleeps on after spinning, rung by senders only
/// when someone sleeps.

#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <climits>
// #include <coray/version.hpp>: inlined above
#include <cstdint>

CORAY_BEGIN_NAMESPACE
namespace detail {

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

/// Sleeps while `*word == expected`, at most `timeout` (negative: forever). Shared futex:
/// works across processes mapping the same memory.
inline void futex_wait(std::atomic<std::uint32_t>* word, std::uint32_t expected,
                       std::chrono::nanoseconds timeout) noexcept {
  timespec ts{};
  timespec* tsp = nullptr;
  if (timeout.count() >= 0) {
    ts.tv_sec = static_cast<time_t>(timeout.count() / 1'000'000'000);
    ts.tv_nsec = static_cast<long>(timeout.count() % 1'000'000'000);
    tsp = &ts;
  }
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAIT, expected, tsp, nullptr, 0);
}

/// Wakes at most `n` sleepers on `word`.
inline void futex_wake(std::atomic<std::uint32_t>* word, int n) noexcept {
  syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAKE, n, nullptr, nullptr, 0);
}

inline void futex_wake_all(std::atomic<std::uint32_t>* word) noexcept { futex_wake(word, INT_MAX); }

/// One per receiving process, in shared memory. The receiver spins on its queues, then
/// announces it sleeps and sleeps; a sender that published work rings only if the receiver
/// announced sleep. The seq_cst fences on both sides (Dekker) mean one of the two always sees
/// the other: no lost wake-up. Any process may ring; only the owner sleeps.
struct alignas(64) doorbell {
  std::atomic<std::uint32_t> seq{0};
  std::atomic<std::uint32_t> sleeping{0};

  /// Called by a sender after publishing work. Cheap when the receiver is awake.
  void ring() noexcept {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (sleeping.load(std::memory_order_relaxed) != 0) ring_always();
  }
  /// Wakes the receiver whether or not it announced sleep (supervisor reports, shutdown).
  void ring_always() noexcept {
    seq.fetch_add(1, std::memory_order_seq_cst);
    futex_wake_all(&seq);
  }
  /// Owner only: sleeps until rung or `timeout`, unless `has_work()` turns true after the
  /// announcement.
  template <class HasWork>
  void sleep(HasWork&& has_work, std::chrono::nanoseconds timeout) noexcept {
    std::uint32_t s = seq.load(std::memory_order_acquire);
    sleeping.store(1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (!has_work()) futex_wait(&seq, s, timeout);
    sleeping.store(0, std::memory_order_relaxed);
  }
};

/// The spin-then-sleep policy of every receive loop. Spinning beats a futex round trip
/// (~20-40 us on VMs) by two orders of magnitude, but with more processes than cores a pure
/// spinner steals the core the sender needs, so past a short pure spin we yield.
///
/// A blocked wait (a call's body waiting in get, wait, ... for calls it made) whose yield
/// gave its core away (the yield took over 20 us: other processes had work for it) sleeps
/// after the pure spin instead, in the thread's blocked waits of the next 200 ms. A task
/// blocked on its children holds a core the children need, and a process that sleeps is
/// woken onto a core ahead of processes that kept running, where one that yields waits its
/// turn behind them. A loop waiting for its next call yields as before: there the runtime's
/// own processes take turns on the cores, and sleeping cost about 30% of async task calls.
struct backoff {
  backoff() = default;
  /// `blocked_wait`: the loop of a call's body blocked in a wait (see above).
  explicit backoff(bool blocked_wait) noexcept : blocked_wait_(blocked_wait) {}

  /// Pauses per idle round, between two looks for work. A pause takes 30-40 ns on recent
  /// Intel cores (about 140 cycles) and a few on Zen: the fewer per round, the sooner a
  /// message that arrives mid-round is seen (16 a round left about 250 ns on every receive).
  static constexpr int pauses_per_round = 2;
  /// The pure spin: idle rounds that only pause, for up to this long (or 256 rounds), before
  /// rounds yield the core. Bounded by time, since a round's look for work costs what the
  /// loop's poll costs. Short, for a caller and callee sharing a core: on one CPU a sync
  /// task took 13-16 us with 256 pauses of pure spin, 18-23 us with 8 us of it (more looks
  /// for work in it), 10-12 us with 3 us; on two cores a round trip is well under 3 us.
  static constexpr std::chrono::nanoseconds pure_spin{3'000};
  static constexpr int pure_spin_rounds = 256;
  /// During the pure spin the clock is read every this many rounds.
  static constexpr int rounds_per_read = 16;
  /// A yield that took longer than this gave the core to another process.
  static constexpr std::chrono::nanoseconds gave_core{20'000};
  /// For this long after a blocked wait's yield gave its core away, the thread's blocked
  /// waits sleep after the pure spin. Beside three CPU-bound programs on two cores, a tree of
  /// 21,891 tasks each blocking in get on its children (fib 20) took 31-40 s under
  /// ThreadSanitizer yielding, 3.5-5.3 s sleeping; 20 ms of this helped half as much as 200.
  static constexpr std::chrono::milliseconds contended_for{200};

  /// Work was found: the next idle round starts a new spin window.
  void reset() noexcept {
    idle_rounds_ = 0;
    read_in_ = 0;
    spinning_ = true;
  }
  /// The time as of this idle round: read on a stretch's first round, every 16th round of
  /// the pure spin and every round after it, at most once a round; otherwise the last
  /// reading (at most 16 rounds, about a microsecond, old). A loop's timers take this
  /// reading, so a loop with a timer set reads the clock no more often than one without.
  std::chrono::steady_clock::time_point round_time() noexcept {
    if (read_in_ != idle_rounds_ + 1 && (!spinning_ || idle_rounds_ % rounds_per_read == 0)) {
      now_ = std::chrono::steady_clock::now();
      if (idle_rounds_ == 0) idle_since_ = now_;
      read_in_ = idle_rounds_ + 1;
    }
    return now_;
  }
  /// Ends an idle round. Returns true when the caller should now sleep on its doorbell:
  /// after `spin_window` of idle rounds, or, in a blocked wait while cores are short (see
  /// contended_for), after the pure spin. Never reads the clock on a busy loop's turn.
  bool pause(std::chrono::microseconds spin_window) noexcept {
    round_time();
    ++idle_rounds_;
    if (spinning_) {
      if (idle_rounds_ <= pure_spin_rounds && now_ - idle_since_ < pure_spin) {
        for (int i = 0; i < pauses_per_round; ++i) cpu_relax();
        return false;
      }
      spinning_ = false;
    }
    if (now_ - idle_since_ < spin_window && (!blocked_wait_ || now_ >= contended_until())) {
      sched_yield();
      if (blocked_wait_) {
        const auto t = std::chrono::steady_clock::now();
        if (t - now_ > gave_core) contended_until() = t + contended_for;
      }
      return false;
    }
    return true;
  }

 private:
  /// Until when this thread's blocked waits sleep after the pure spin.
  static std::chrono::steady_clock::time_point& contended_until() noexcept {
    thread_local std::chrono::steady_clock::time_point until{};
    return until;
  }
  bool blocked_wait_ = false;
  int idle_rounds_ = 0;
  int read_in_ = 0;  // 1 + the round whose time now_ is; 0: none of this stretch
  bool spinning_ = true;
  std::chrono::steady_clock::time_point idle_since_{}, now_{};
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/shm/futex.hpp>
// begin <coray/detail/shm/mailbox.hpp>
/// A bounded lock-free ring of fixed-size message slots in shared memory (Vyukov's bounded
/// MPMC queue with one consumer): sequence-numbered slots, offsets only, no pointers, so it
/// works at any mapping address. A message longer than one slot's payload occupies several
/// consecutive slots, claimed together; one longer than half the ring travels in a block of
/// the segment whose offset the slot carries.

#include <atomic>
// #include <coray/detail/shm/futex.hpp>: inlined above
// #include <coray/version.hpp>: inlined above
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// One message slot: 256 bytes, so that most calls and replies fit in one.
struct alignas(64) mailbox_slot {
  static constexpr std::size_t payload_bytes = 240;
  std::atomic<std::uint64_t> seq;
  std::uint32_t kind;  // message kind (first slot of a message); high bit: payload is a block
  std::uint32_t size;  // payload bytes of the whole message
  alignas(16) std::byte payload[payload_bytes];
};
static_assert(sizeof(mailbox_slot) == 256);

class mailbox {
 public:
  /// Bytes to reserve in the segment for a mailbox of `capacity` slots (a power of two).
  static constexpr std::size_t bytes_for(std::size_t capacity) {
    return sizeof(mailbox) + capacity * sizeof(mailbox_slot);
  }
  /// Slots a message of `bytes` occupies.
  static constexpr std::size_t slots_for(std::size_t bytes) noexcept {
    return bytes <= mailbox_slot::payload_bytes
               ? 1
               : (bytes + mailbox_slot::payload_bytes - 1) / mailbox_slot::payload_bytes;
  }
  /// Constructs a mailbox in `memory` (bytes_for(capacity) bytes, 64-byte aligned).
  static mailbox* create(void* memory, std::size_t capacity) {
    auto* m = new (memory) mailbox(capacity);
    for (std::size_t i = 0; i < capacity; ++i) {
      new (&m->slots()[i]) mailbox_slot{};
      m->slots()[i].seq.store(i, std::memory_order_relaxed);
    }
    return m;
  }

  /// The longest message that travels in slots; longer ones go in a block.
  std::size_t max_message_bytes() const noexcept {
    return capacity_ / 2 * mailbox_slot::payload_bytes;
  }

  struct claim {
    mailbox_slot* slot = nullptr;  // the first
    std::uint64_t pos = 0;
    std::size_t count = 0;
    explicit operator bool() const noexcept { return slot != nullptr; }
  };

  /// Claims `n` consecutive slots for writing; an empty claim when they are not free. Any
  /// number of producers, any process. A claim must be published with commit(): until then
  /// the consumer waits at it.
  claim try_claim(std::size_t n = 1) noexcept {
    std::uint64_t pos = head_.load(std::memory_order_relaxed);
    for (;;) {
      // The consumer frees slots in order, so the last of the n being free means all are.
      mailbox_slot& last = at(pos + n - 1);
      std::uint64_t seq = last.seq.load(std::memory_order_acquire);
      auto dif = static_cast<std::int64_t>(seq - (pos + n - 1));
      if (dif == 0) {
        if (head_.compare_exchange_weak(pos, pos + n, std::memory_order_relaxed))
          return {&at(pos), pos, n};
      } else if (dif < 0) {
        return {};
      } else {
        pos = head_.load(std::memory_order_relaxed);
      }
    }
  }
  /// Whether `n` slots are free now (a producer's look, claiming nothing).
  bool has_room(std::size_t n = 1) noexcept {
    const std::uint64_t pos = head_.load(std::memory_order_relaxed);
    return at(pos + n - 1).seq.load(std::memory_order_acquire) == pos + n - 1;
  }
  /// Writes a claimed message's payload across its slots.
  void write(const claim& c, const std::byte* src, std::size_t size) noexcept {
    for (std::size_t i = 0; size; ++i) {
      std::size_t n = size < mailbox_slot::payload_bytes ? size : mailbox_slot::payload_bytes;
      std::memcpy(at(c.pos + i).payload, src, n);
      src += n;
      size -= n;
    }
  }
  /// Publishes a claim, last slot first: once the consumer sees the first, it sees them all.
  void commit(const claim& c) noexcept {
    for (std::size_t i = c.count; i-- > 0;)
      at(c.pos + i).seq.store(c.pos + i + 1, std::memory_order_release);
  }

  /// The first slot of the next message, or nullptr when none is published. Single consumer.
  mailbox_slot* peek() noexcept {
    mailbox_slot& s = at(tail_);
    return s.seq.load(std::memory_order_acquire) == tail_ + 1 ? &s : nullptr;
  }
  /// Copies the payload of the message at peek() (size bytes over its slots) to `dst`.
  void read(std::byte* dst, std::size_t size) noexcept {
    for (std::size_t i = 0; size; ++i) {
      std::size_t n = size < mailbox_slot::payload_bytes ? size : mailbox_slot::payload_bytes;
      std::memcpy(dst, at(tail_ + i).payload, n);
      dst += n;
      size -= n;
    }
  }
  /// Frees the `n` slots of the message returned by peek(). Single consumer.
  void pop(std::size_t n = 1) noexcept {
    for (std::size_t i = 0; i < n; ++i)
      at(tail_ + i).seq.store(tail_ + i + capacity_, std::memory_order_release);
    tail_ += n;
  }
  bool empty() noexcept { return peek() == nullptr; }
  std::size_t capacity() const noexcept { return capacity_; }

 private:
  explicit mailbox(std::size_t capacity) : capacity_(capacity), mask_(capacity - 1) {}

  mailbox_slot* slots() noexcept {
    return reinterpret_cast<mailbox_slot*>(reinterpret_cast<std::byte*>(this) + sizeof(mailbox));
  }
  mailbox_slot& at(std::uint64_t pos) noexcept { return slots()[pos & mask_]; }

  alignas(64) std::atomic<std::uint64_t> head_{0};
  alignas(64) std::uint64_t tail_ = 0;
  alignas(64) std::uint64_t capacity_;
  std::uint64_t mask_;
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/shm/mailbox.hpp>
// #include <coray/detail/shm/segment.hpp>: inlined above
// #include <coray/errors.hpp>: inlined above
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// A process slot's life, in its worker_shared::state: dead once its process ended.
enum class slot_state : std::uint32_t { empty = 0, starting = 1, running = 2, dead = 3 };

enum class msg_kind : std::uint32_t {
  nop = 0,
  // driver -> worker
  run_task = 1,      // task_header, arg entries
  object_ready = 2,  // result_header: a nested call's result
  shutdown = 3,
  construct = 4,    // task_header (reserved: max_concurrency), arg entries: build the actor
  actor_found = 5,  // u64 request, u64 actor id, u64 type id (0: no such actor)
  block_granted =
      6,  // u64 request, u64 block offset (0: store full), u64 requested, free, capacity
  actor_spawned = 7,  // u64 request, u64 actor id; 0: refused, the wire_error follows
  stream_credit = 8,  // u64 call id, u64 limit: a stream's producer may make items up to the
                      // index `limit`; 0: the consumer stopped it (stream_state.hpp)
  stream_ready = 9,   // u64 call id, u64 count, count u64 ids: the next items of a stream
                      // this worker consumes; each value follows as object_ready
  // worker -> driver
  task_done = 16,        // result_header
  submit = 17,           // task_header, arg entries (a nested call)
  release = 18,          // u64 id: the worker dropped its last handle to a nested result
  actor_hold = 19,       // u64 actor id: a handle to the actor was made in the worker
  actor_release = 20,    // u64 actor id: a handle went
  actor_kill = 21,       // u64 actor id
  actor_lookup = 22,     // u64 request, then the name's bytes
  block_request = 23,    // u64 request, u64 size: a new object block for this process
  block_release = 24,    // u64 block offset: this process drops one reference
  ref_hold = 25,         // u64 id: a ref read from a value; the driver sends its object_ready
  export_object = 26,    // result_header: an object of this process that a ref in a value names
  actor_exit = 27,       // this actor ends after the call it just replied to (ray::exit_actor)
  actor_spawn = 28,      // u64 request, u64 n, n bytes of encoded fields, padding to 16, the
                         // constructor's call as in submit (ray::spawn in a worker)
  stream_items = 29,     // stream_batch_header, item records: a streaming generator's items
  stream_consumed = 30,  // u64 call id, u64 limit: as stream_credit, from a consuming worker
};
inline constexpr std::uint32_t in_block_flag = 0x80000000u;

struct result_header {
  enum status_t : std::uint32_t {
    value_inline = 0,
    value_block = 1,
    error = 2,
    retryable_error = 3
  };
  std::uint64_t id;
  std::uint32_t status;
  std::uint32_t len;    // inline value or error bytes that follow
  std::uint64_t block;  // offset of the object block for value_block
  /// Worker to driver: after the value, the ids (u64) of the `refs` refs and then of the
  /// `actors` actor handles inside it, which the object keeps alive.
  std::uint32_t refs;
  std::uint32_t actors;
};
static_assert(sizeof(result_header) == 32);

// ---- errors on the wire ---------------------------------------------------------------

inline std::string demangle(const char* name) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> d(abi::__cxa_demangle(name, nullptr, nullptr, &status),
                                           std::free);
  return status == 0 && d ? std::string(d.get()) : std::string(name);
}

/// An exception as it crosses processes. `kind` is its line in CORAY_ERRORS (errors.hpp);
/// anything that is not a coray error travels as task_error, whose own fields are the text
/// fields here. `figures` are the error's numbers (its figures(), e.g. object_store_full's
/// requested, free and capacity), so they arrive as they left.
struct wire_error {
  std::uint8_t kind = 0;
  std::string type_name;  // the thrown object's demangled type
  std::string what;
  std::string function;  // the function that threw
  std::vector<std::uint64_t> figures;
};

/// A coray error class with numbers of its own: figures() gives them as a tuple that its
/// constructor takes back.
template <class E>
concept error_with_figures = requires(const E& e) {
  std::make_from_tuple<E>(e.figures());
};

/// Writes what the error E adds to its kind and message.
template <class E>
void write_error_fields(const E& e, wire_error& w) {
  if constexpr (std::is_same_v<E, task_error>) {
    w.type_name = e.type_name();
    w.what = e.remote_what();
    w.function = e.function();
  } else if constexpr (error_with_figures<E>) {
    w.figures.clear();
    std::apply([&w](auto... f) { (w.figures.push_back(static_cast<std::uint64_t>(f)), ...); },
               e.figures());
  }
}

/// The error E that `w` describes (its kind is E's).
template <class E>
std::exception_ptr rebuild_error(const wire_error& w) {
  if constexpr (std::is_same_v<E, task_error>) {
    return std::make_exception_ptr(task_error(w.type_name, w.what, w.function));
  } else if constexpr (error_with_figures<E>) {
    using figures_t = decltype(std::declval<const E&>().figures());
    constexpr std::size_t n = std::tuple_size_v<figures_t>;
    if (w.figures.size() != n)
      return std::make_exception_ptr(internal_error(fmt::format(
          "coray: a {} arrived with {} figures instead of {}", w.type_name, w.figures.size(), n)));
    figures_t f;
    std::size_t i = 0;
    std::apply(
        [&](auto&... x) { ((x = static_cast<std::decay_t<decltype(x)>>(w.figures[i++])), ...); },
        f);
    return std::make_exception_ptr(std::make_from_tuple<E>(std::move(f)));
  } else {
    return std::make_exception_ptr(E(w.what));
  }
}

/// Describes the exception in flight (call from a catch block). A coray error keeps its kind
/// (the most derived one it is an instance of), so a worker crash deep in a chain of nested
/// calls still reads as worker_crashed at the top; anything else becomes task_error. The text
/// is capped (32 KiB): an error travels inside one message.
inline wire_error describe_current_exception(std::string_view function) {
  wire_error w;
  w.kind = static_cast<std::uint8_t>(error_kind::task_error);
  w.function = function;
  const std::type_info* t = abi::__cxa_current_exception_type();
  try {
    throw;
  } catch (const error& x) {
    w.type_name = t ? demangle(t->name()) : "ray::error";
    w.what = x.what();
    // Bases come first in the list, so the last match is the most derived.
    for_each_error([&]<class E>(std::type_identity<E>, error_kind kind) {
      if (const E* e = dynamic_cast<const E*>(&x)) {
        w.kind = static_cast<std::uint8_t>(kind);
        write_error_fields(*e, w);
      }
    });
  } catch (const std::exception& x) {
    w.type_name = t ? demangle(t->name()) : "std::exception";
    w.what = x.what();
  } catch (...) {
    w.type_name = t ? demangle(t->name()) : "unknown";
    w.what = "(not a std::exception)";
  }
  if (w.what.size() > 32 * 1024) w.what.resize(32 * 1024);
  return w;
}

/// describe_current_exception for an exception held rather than in flight.
inline wire_error describe_exception(const std::exception_ptr& e, std::string_view function) {
  try {
    std::rethrow_exception(e);
  } catch (...) {
    return describe_current_exception(function);
  }
}

/// The exception `w` describes, of the coray error type its kind names.
inline std::exception_ptr to_exception(const wire_error& w) {
  std::exception_ptr e;
  for_each_error([&]<class E>(std::type_identity<E>, error_kind kind) {
    if (w.kind == static_cast<std::uint8_t>(kind)) e = rebuild_error<E>(w);
  });
  if (!e)
    e = std::make_exception_ptr(internal_error(fmt::format(
        "coray: an error of unknown kind {} arrived ({}: {})", w.kind, w.type_name, w.what)));
  return e;
}

// ---- sending and receiving ---------------------------------------------------------------

/// Sends a message of `size` bytes that `fill(std::byte*)` writes, in one slot or in
/// consecutive slots. Returns false when the mailbox has no room now. Rings the receiver's
/// doorbell if it sleeps. Precondition: size <= mb.max_message_bytes().
template <class Fill>
bool try_send(mailbox& mb, doorbell& bell, msg_kind kind, std::size_t size, Fill&& fill) {
  const std::size_t n = mailbox::slots_for(size);
  auto c = mb.try_claim(n);
  if (!c) return false;
  if (n == 1) {
    fill(c.slot->payload);
  } else {
    thread_local std::vector<std::byte> staging;
    staging.resize(size);
    fill(staging.data());
    mb.write(c, staging.data(), size);
  }
  c.slot->kind = static_cast<std::uint32_t>(kind);
  c.slot->size = static_cast<std::uint32_t>(size);
  mb.commit(c);
  bell.ring();
  return true;
}

/// Sends a message whose payload is the block `b` (for messages longer than the ring takes).
/// The receiver hands the block back to its owner when done.
inline bool try_send_block(segment& seg, mailbox& mb, doorbell& bell, msg_kind kind,
                           object_block* b) {
  std::uint64_t desc[2] = {seg.offset_of(b), b->size};
  auto c = mb.try_claim(1);
  if (!c) return false;
  std::memcpy(c.slot->payload, desc, sizeof desc);
  c.slot->kind = static_cast<std::uint32_t>(kind) | in_block_flag;
  c.slot->size = sizeof desc;
  mb.commit(c);
  bell.ring();
  return true;
}

/// A received message: its kind and contiguous payload.
struct message_view {
  msg_kind kind;
  std::span<const std::byte> payload;
  object_block* block = nullptr;  // the block the payload lies in, if any
  std::size_t slots = 1;          // to pop
};

/// The next message, if one is published. A one-slot payload is viewed in place (valid until
/// pop); a multi-slot payload is gathered into `buffer`.
inline bool peek_message(segment& seg, mailbox& mb, std::vector<std::byte>& buffer,
                         message_view& m) {
  mailbox_slot* s = mb.peek();
  if (!s) return false;
  m.kind = static_cast<msg_kind>(s->kind & ~in_block_flag);
  m.block = nullptr;
  if (s->kind & in_block_flag) {
    std::uint64_t desc[2];
    std::memcpy(desc, s->payload, sizeof desc);
    m.block = seg.at<object_block>(desc[0]);
    m.payload = {m.block->data(), static_cast<std::size_t>(desc[1])};
    m.slots = 1;
    return true;
  }
  m.slots = mailbox::slots_for(s->size);
  if (m.slots == 1) {
    m.payload = {s->payload, s->size};
  } else {
    buffer.resize(s->size);
    mb.read(buffer.data(), s->size);
    m.payload = {buffer.data(), buffer.size()};
  }
  return true;
}

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/wire.hpp>
// #include <coray/detail/shm/segment.hpp>: inlined above
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <type_traits>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

class threaded_call;

/// What a call running in a worker may ask of it.
class call_host {
 public:
  /// Replies to the driver with a call's value: `size` bytes written by `fill`; large
  /// values go through the store. `held`: the refs and actor handles inside the value
  /// (collected while it was sized), which the result keeps alive.
  template <class Fill>
  void reply_value(std::uint64_t task_id, std::size_t size, Fill&& fill,
                   const object_contents* held = nullptr) {
    using F = std::remove_reference_t<Fill>;
    reply_filled(
        task_id, size, [](void* f, std::byte* out) { (*static_cast<F*>(f))(out); },
        const_cast<void*>(static_cast<const void*>(std::addressof(fill))), held);
  }
  /// Replies with an error; `retryable` when the caller's retry policy matches it.
  void reply_error(std::uint64_t task_id, const wire_error& e, bool retryable = false) {
    reply_failed(task_id, e, retryable);
  }
  /// A streaming generator's next item, its value given as for reply_value. Items travel
  /// in batches; the producer waits here while it is a window ahead of its consumer. False
  /// once the consumer stopped the stream: the generator should end.
  template <class Fill>
  bool stream_item(std::uint64_t task_id, std::size_t size, Fill&& fill,
                   const object_contents* held = nullptr) {
    using F = std::remove_reference_t<Fill>;
    return stream_filled(
        task_id, size, [](void* f, std::byte* out) { (*static_cast<F*>(f))(out); },
        const_cast<void*>(static_cast<const void*>(std::addressof(fill))), held);
  }
  /// Sends what stream `task_id` has not sent yet and forgets it: before the call's reply.
  virtual void stream_end(std::uint64_t task_id) = 0;
  /// Actor construction: the invoker hands over the new object and how to destroy it.
  virtual void set_instance(void* instance, void (*destroy)(void*)) noexcept = 0;
  /// The name this process's output is shown under from now on (an actor's class, before
  /// its constructor runs).
  virtual void name_output(std::string_view name) noexcept = 0;
  /// An actor method call of concurrency group `group` (the invocation's) ended (its reply
  /// is sent); the group's next queued call may start.
  virtual void call_finished(std::uint32_t group) noexcept = 0;
  /// A threaded actor's plain method call, its arguments decoded: runs it on one of the
  /// actor's method threads; the loop thread replies and calls call_finished when it is done.
  virtual void run_on_thread(std::unique_ptr<threaded_call> call) = 0;

 protected:
  ~call_host() = default;
  virtual void reply_filled(std::uint64_t task_id, std::size_t size,
                            void (*fill)(void*, std::byte*), void* context,
                            const object_contents* held) = 0;
  virtual void reply_failed(std::uint64_t task_id, const wire_error& e, bool retryable) = 0;
  virtual bool stream_filled(std::uint64_t task_id, std::size_t size,
                             void (*fill)(void*, std::byte*), void* context,
                             const object_contents* held) = 0;
};

/// One call being run in this worker: what the invoker needs to decode the arguments and to
/// reply.
struct invocation {
  call_host& self;
  segment& seg;  // where arguments in blocks live
  std::uint64_t task_id;
  std::span<const std::byte> args;  // arg_entry records, 16-byte aligned
  std::uint32_t nargs;
  std::string_view name;
  void* instance;               // the actor's object, for method calls
  std::uint64_t retry_matcher;  // which exceptions the caller retries
  bool threaded = false;        // a plain method runs on a method thread (a threaded actor)
  std::uint32_t group = 0;      // an actor call's concurrency group, for call_finished

  /// Replies with the exception in flight (call from a catch block).
  void fail() const {
    self.reply_error(task_id, describe_current_exception(name),
                     retry_matches(retry_matcher, std::current_exception()));
  }
};

/// A plain method call of a threaded actor (max_concurrency > 1): its arguments are decoded
/// on the loop thread, the method runs on a method thread (run), and its outcome, kept here
/// as the value or an error, is encoded and sent by the loop thread (reply), where the call
/// and its arguments are destroyed too. So a method thread touches nothing of the runtime's
/// (refs inside the value are published, which only the loop thread may do).
class threaded_call {
 public:
  explicit threaded_call(const invocation& inv) noexcept
      : task_id_(inv.task_id),
        name_(inv.name),
        retry_matcher_(inv.retry_matcher),
        group_(inv.group) {}
  threaded_call(const threaded_call&) = delete;
  threaded_call& operator=(const threaded_call&) = delete;
  virtual ~threaded_call() = default;

  /// A method thread: runs the method, keeping its value or its exception. Never throws.
  void run() noexcept {
    try {
      invoke();
    } catch (...) {
      keep_current_exception();
    }
  }
  std::uint32_t group() const noexcept { return group_; }
  /// The loop thread: replies with the outcome (an error if even that fails, as a large
  /// value with no room in the store).
  void reply(call_host& host) {
    try {
      if (error_) return host.reply_error(task_id_, *error_, retryable_);
      send_value(host, task_id_);
    } catch (...) {
      keep_current_exception();
      host.reply_error(task_id_, *error_, retryable_);
    }
  }

 protected:
  /// Calls the method, keeping its value.
  virtual void invoke() = 0;
  /// Replies with the kept value (the loop thread).
  virtual void send_value(call_host& host, std::uint64_t task_id) = 0;

 private:
  void keep_current_exception() noexcept {
    try {
      error_ = describe_current_exception(name_);
      retryable_ = retry_matches(retry_matcher_, std::current_exception());
    } catch (...) {  // no memory to describe it: an error without words
      error_.emplace();
    }
  }
  std::uint64_t task_id_;
  std::string_view name_;
  std::uint64_t retry_matcher_;
  std::uint32_t group_;
  std::optional<wire_error> error_;
  bool retryable_ = false;
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/invocation.hpp>
// begin <coray/detail/runtime/invoker.hpp>
/// The worker's side of a call: reads the argument records of a call message, decodes each
/// argument for its parameter, runs the function (or actor method) and replies with its
/// value or exception. invoker<F> registers itself under F's id.

#include <algorithm>
// begin <coray/async.hpp>
/// ray::async<T>: the coroutine type of coray. Lazy (starts when awaited or run), single
/// awaiter, move-only, resumes its awaiter by symmetric transfer. User coroutines in the
/// driver run on the runtime loop's thread only, so they need no locks.
///
///   ray::async<int> twice(ray::object_ref<int> r) { co_return 2 * co_await ray::get(r); }

// #include <coray/version.hpp>: inlined above
#include <coroutine>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

CORAY_BEGIN_NAMESPACE

template <class T = void>
class async;

namespace detail {

struct async_promise_base {
  std::coroutine_handle<> continuation_;
  std::exception_ptr error_;

  std::suspend_always initial_suspend() noexcept { return {}; }
  struct final_awaiter {
    bool await_ready() noexcept { return false; }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) noexcept {
      auto c = h.promise().continuation_;
      return c ? c : std::noop_coroutine();
    }
    void await_resume() noexcept {}
  };
  final_awaiter final_suspend() noexcept { return {}; }
  void unhandled_exception() noexcept { error_ = std::current_exception(); }
  void rethrow_if_failed() const {
    if (error_) std::rethrow_exception(error_);
  }
};

template <class T>
struct async_promise : async_promise_base {
  std::optional<T> value_;
  async<T> get_return_object() noexcept;
  template <class U>
  void return_value(U&& v) {
    value_.emplace(std::forward<U>(v));
  }
  T take() {
    rethrow_if_failed();
    return std::move(*value_);
  }
};

template <>
struct async_promise<void> : async_promise_base {
  async<void> get_return_object() noexcept;
  void return_void() noexcept {}
  void take() { rethrow_if_failed(); }
};

template <class T>
struct is_async : std::false_type {};
template <class T>
struct is_async<async<T>> : std::true_type {
  using value_type = T;
};

}  // namespace detail

template <class T>
class [[nodiscard]] async {
 public:
  using promise_type = detail::async_promise<T>;
  using value_type = T;

  async() noexcept = default;
  explicit async(std::coroutine_handle<promise_type> h) noexcept : h_(h) {}
  async(async&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  async& operator=(async&& o) noexcept {
    if (this != &o) {
      reset();
      h_ = std::exchange(o.h_, {});
    }
    return *this;
  }
  ~async() { reset(); }

  /// Awaiting starts the coroutine and resumes the awaiter with its result (or exception).
  auto operator co_await() && noexcept {
    struct awaiter {
      std::coroutine_handle<promise_type> h;
      bool await_ready() noexcept { return !h || h.done(); }
      std::coroutine_handle<> await_suspend(std::coroutine_handle<> c) noexcept {
        h.promise().continuation_ = c;
        return h;
      }
      T await_resume() { return h.promise().take(); }
    };
    return awaiter{h_};
  }

  /// Runtime internals: the handle, to start and poll it from an event loop.
  std::coroutine_handle<promise_type> handle() const noexcept { return h_; }
  bool done() const noexcept { return !h_ || h_.done(); }
  /// The result of a finished coroutine; rethrows its exception.
  T take() { return h_.promise().take(); }

 private:
  void reset() noexcept {
    if (h_) h_.destroy();
    h_ = {};
  }
  std::coroutine_handle<promise_type> h_;
};

namespace detail {
template <class T>
async<T> async_promise<T>::get_return_object() noexcept {
  return async<T>{std::coroutine_handle<async_promise<T>>::from_promise(*this)};
}
inline async<void> async_promise<void>::get_return_object() noexcept {
  return async<void>{std::coroutine_handle<async_promise<void>>::from_promise(*this)};
}

/// A coroutine that starts at once and frees itself when it ends: the runtime uses it to run
/// a task body that is a coroutine and send its reply when it finishes.
struct detached {
  struct promise_type {
    detached get_return_object() noexcept { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };
};
}  // namespace detail

CORAY_END_NAMESPACE
// end <coray/async.hpp>
// #include <coray/codec.hpp>: inlined above
// begin <coray/detail/runtime/call_message.hpp>
/// The call format: how a call's arguments are laid out, from the moment `task<f>.remote`
/// encodes them to the moment the callee's invoker reads them. This file is its only writer
/// (`task_spec`'s add_*, `write_call_args`) and its only reader (`call_reader`,
/// `read_submission`); the driver and the workers both rewrite dependencies through
/// `write_call_args`.
///
/// A call is a `task_header` followed by `nargs` 16-byte `arg_entry` records, each followed
/// by its inline bytes padded to 16. In the process that made the call an entry may name a
/// dependency (an `object_ref` argument); before the call reaches its callee every
/// dependency is replaced by the value it stands for.

#include <algorithm>
// #include <coray/detail/runtime/object_state.hpp>: inlined above
// #include <coray/detail/runtime/recycled.hpp>: inlined above
// begin <coray/detail/runtime/resource_request.hpp>
/// What a call or an actor needs of the runtime's resources (resource_request) and which GPUs
/// an acquisition took (resource_grant): what calls carry, apart from the ledger that grants
/// them (resource_ledger.hpp), which only the orchestrator uses.

#include <cmath>
// #include <coray/errors.hpp>: inlined above
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// An amount of a resource, in 1/10,000 of a unit.
using resource_amount = std::int64_t;
inline constexpr resource_amount resource_unit = 10000;

/// `x` units as a resource_amount (rounded to the granularity); -1 for a negative, NaN or
/// too large amount, which the caller refuses.
inline resource_amount to_resource_amount(double x) noexcept {
  if (!(x >= 0) || x > 1e12) return -1;
  return static_cast<resource_amount>(std::llround(x * static_cast<double>(resource_unit)));
}
inline double from_resource_amount(resource_amount a) noexcept {
  return static_cast<double>(a) / static_cast<double>(resource_unit);
}

/// Where a call or an actor may run among a cluster's nodes (ray::scheduling_strategy): any
/// (this machine's processes first), spread over the nodes, on one node (`soft`: unless it
/// is gone or could never meet the requirement), or in a placement group's bundle (its
/// resources come from what the bundle reserved). Outside a cluster the one node is 0.
struct placement {
  std::int32_t node = -1;  // node_affinity's node; -1: none
  bool soft = false;
  bool spread = false;
  std::uint64_t group = 0;   // a placement group's id; 0: none
  std::int32_t bundle = -1;  // its bundle's index; -1: any of them

  bool operator==(const placement&) const = default;
  bool is_default() const noexcept { return node < 0 && !spread && group == 0; }
};

/// What a call or an actor needs: CPU, GPU and custom resources by name, and for a call where
/// it runs. The default is a task's ({CPU: 1}, anywhere), which the orchestrator schedules
/// without asking the ledger at all.
struct resource_request {
  resource_amount cpu = resource_unit;
  resource_amount gpu = 0;
  std::map<std::string, resource_amount> custom;  // only nonzero amounts
  placement where;                                // a call's; an actor's is its spawn's

  bool operator==(const resource_request&) const = default;
  bool is_default_task() const noexcept {
    return cpu == resource_unit && gpu == 0 && custom.empty() && where.is_default();
  }

  /// From user-facing amounts; throws invalid_resources for a negative or NaN amount.
  CORAY_API static resource_request from(double cpus, double gpus,
                                         const std::map<std::string, double>& res, const char* who);

  /// "{CPU: 2, GPU: 0.5, disk: 1}": for messages.
  CORAY_API std::string describe() const;
};

/// The resources of a cluster's node other than the driver's machine (resource_ledger's
/// terms).
struct node_resources {
  resource_amount num_cpus = 0;
  resource_amount num_gpus = 0;
  std::vector<std::string> gpu_ids = {};
  std::map<std::string, resource_amount> custom_resources = {};
};

/// How a placement group's bundles are spread over the nodes (Ray's strategies).
enum class bundle_strategy : std::uint32_t { pack, spread, strict_pack, strict_spread };

/// The GPUs an acquisition took: each GPU's index among the runtime's and the amount taken
/// of it. A fraction below one takes part of one GPU; a whole number takes whole GPUs.
struct resource_grant {
  std::vector<std::pair<std::uint32_t, resource_amount>> gpus;

  /// The GPUs as a bit mask of indices (the runtime has at most 32 GPUs).
  std::uint32_t gpu_mask() const noexcept {
    std::uint32_t m = 0;
    for (const auto& g : gpus) m |= std::uint32_t{1} << g.first;
    return m;
  }
};

}  // namespace detail
CORAY_END_NAMESPACE

// begin <coray/detail/runtime/resource_request_impl.hpp>
/// resource_request's members that check and describe a requirement: included by
/// resource_request.hpp in header-only mode (inline), and compiled once by src/coray.cpp into
/// coray::coray_compiled in compiled mode (CORAY_COMPILED_LIB).

#include <fmt/format.h>

// #include <coray/detail/runtime/resource_request.hpp>: inlined above
// #include <coray/errors.hpp>: inlined above
#include <map>
#include <string>
#include <string_view>

CORAY_BEGIN_NAMESPACE
namespace detail {

CORAY_API resource_request resource_request::from(double cpus, double gpus,
                                                  const std::map<std::string, double>& res,
                                                  const char* who) {
  resource_request r;
  auto amount = [&](std::string_view name, double x) {
    const resource_amount a = to_resource_amount(x);
    if (a < 0)
      throw invalid_resources(
          fmt::format("{}: {} = {} is not a valid amount (it must be a finite number, "
                      "0 or more)",
                      who, name, x));
    return a;
  };
  r.cpu = amount("num_cpus", cpus);
  r.gpu = amount("num_gpus", gpus);
  for (const auto& [name, x] : res) {
    if (name == "CPU" || name == "GPU")
      throw invalid_resources(fmt::format("{}: give {} as num_{}, not as a custom resource", who,
                                          name, name == "CPU" ? "cpus" : "gpus"));
    const resource_amount a = amount(fmt::format("resources[\"{}\"]", name), x);
    if (a) r.custom.emplace(name, a);
  }
  return r;
}

CORAY_API std::string resource_request::describe() const {
  std::string s = fmt::format("{{CPU: {}", from_resource_amount(cpu));
  if (gpu) s += fmt::format(", GPU: {}", from_resource_amount(gpu));
  for (const auto& [name, a] : custom) s += fmt::format(", {}: {}", name, from_resource_amount(a));
  s += "}";
  if (where.node >= 0) s += fmt::format(" on node {}{}", where.node, where.soft ? " (soft)" : "");
  if (where.spread) s += " spread";
  if (where.group)
    s += where.bundle < 0
             ? fmt::format(" in placement group {}", where.group)
             : fmt::format(" in bundle {} of placement group {}", where.bundle, where.group);
  return s;
}

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/resource_request_impl.hpp>
// end <coray/detail/runtime/resource_request.hpp>
// begin <coray/detail/runtime/stream_state.hpp>
/// A streaming generator's items where they are consumed (design.md, "Streaming
/// generators"): the refs its consumer has not taken yet, in order, and how far its producer
/// may run ahead. In the driver the orchestrator fills it from the producer's batches; in a
/// worker that made the call, the worker fills it from the driver's stream_ready messages.
/// It ends when the call's own result settles; ray::object_ref_generator takes from it. Loop
/// thread only.

// #include <coray/detail/runtime/object_state.hpp>: inlined above
#include <cstdint>
#include <deque>
#include <exception>
#include <utility>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// Items a producer may make beyond those its consumer took: past that, it waits.
inline constexpr std::uint64_t stream_window = 1024;
/// In a submission's task_header::returns: the call is a streaming generator's.
inline constexpr std::uint32_t returns_stream = ~std::uint32_t{0};

/// The head of a stream_items message (worker to driver): `count` item records follow, each
/// a result_header, its inline value, the ids of the refs and actor handles inside it, and
/// padding to 8 bytes.
struct stream_batch_header {
  std::uint64_t id;     // the call
  std::uint64_t first;  // the index of the first item in the batch, from 0 in each attempt
  std::uint64_t limit;  // the producer's limit: it makes items up to this index
  std::uint32_t count;
  std::uint32_t reserved;
};
static_assert(sizeof(stream_batch_header) == 32);

struct stream_state {
  std::uint64_t id = 0;         // the call's, once admitted
  std::deque<state_ptr> items;  // delivered, not taken yet; the first is item `base`
  std::uint64_t base = 0;       // items taken by the consumer
  std::uint64_t delivered = 0;  // items received (an attempt's repeats of them are dropped)
  std::uint64_t credited = stream_window;  // the limit last given to the producer
  bool ended = false;
  std::exception_ptr error;  // why it ended early, if it did
  state_ptr wake;            // what the consumer waits on while no item is there
  state_ptr call;            // in a worker: the call's own result, whose settling ends it
  int forward_to = -1;       // in the driver: the slot of the worker consuming it, if any

  /// An item arrived, or the end: the consumer waiting for one goes on.
  void wake_consumer() {
    if (wake) std::exchange(wake, {})->set_inline({});
  }
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/stream_state.hpp>
// #include <coray/detail/shm/segment.hpp>: inlined above
// #include <coray/errors.hpp>: inlined above
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

inline constexpr std::size_t pad16(std::size_t n) noexcept { return (n + 15) & ~std::size_t{15}; }

struct task_header {
  std::uint64_t task_id;
  std::uint64_t fn_id;
  std::uint32_t nargs;
  /// submit: actor ids after the args; construct: max_concurrency and the flags below;
  /// run_task: an actor call's concurrency group (its group_hash; 0: its method's).
  std::uint32_t extra;
  std::uint64_t target;      // submit: the actor to call, 0 for any task worker; construct: its id
  std::int32_t max_retries;  // submit: retries after a crash or a retryable exception;
                             // construct: how many times the actor was built before
  /// run_task, construct: the GPUs the call runs with, a mask of indices; submit: an actor
  /// call's concurrency group, as run_task's `extra`.
  std::uint32_t gpus;
  std::uint64_t retry_matcher;  // which exceptions are retried: 0 none, 1 all, else a matcher id
  std::uint32_t refs;           // submit: ids of the refs inside the arguments, after the actor ids
  std::uint32_t returns;        // submit: results the caller awaits by the ids after task_id
                                // (ray::returns); returns_stream: a streaming generator's call
};
static_assert(sizeof(task_header) == 56);

/// In a construct message's `extra`, beside the actor's max_concurrency: its plain methods
/// run on its loop thread, one at a time, however many calls may run at once
/// (actor_options::threaded false); without it they run on method threads.
inline constexpr std::uint32_t plain_methods_on_loop = std::uint32_t{1} << 31;
/// In a construct message's `extra`: the actor has concurrency groups, sent as one more
/// argument after the constructor's (a std::vector<std::pair<std::string, std::uint32_t>>).
inline constexpr std::uint32_t has_concurrency_groups = std::uint32_t{1} << 30;
/// The largest max_concurrency, below the flags.
inline constexpr std::uint32_t max_concurrency_limit = has_concurrency_groups - 1;
/// In a submission's `extra`, beside its count of actor ids: the call asks for resources
/// other than a task's default ({CPU: 1}), written last (write_resource_request). A default
/// call carries nothing more.
inline constexpr std::uint32_t carries_resources = std::uint32_t{1} << 31;

/// One task argument; inline bytes follow the entry, padded to 16.
struct arg_entry {
  /// dependency_list: a std::vector<T> argument given as refs, assembled from the values of
  /// `len` dependencies (indices ref.. in the driver; a worker's submission lists their ids
  /// after the entry).
  enum tag_t : std::uint8_t {
    inline_value = 0,
    block_value = 1,
    dependency = 2,
    dependency_list = 3
  };
  std::uint8_t tag = inline_value;
  std::uint8_t owned = 0;  // block_value: the sender's reference passes to the call (else borrowed)
  std::uint8_t pad = 0;    // dependency_list: zero bytes between the count and the elements
  std::uint8_t reserved = 0;
  std::uint32_t len = 0;
  std::uint64_t ref = 0;  // block offset, or dependency index (driver) / object id (worker submit)
};
static_assert(sizeof(arg_entry) == 16);

/// Bytes an entry's payload occupies after it in a call.
inline std::size_t entry_payload(const arg_entry& e) noexcept {
  if (e.tag == arg_entry::inline_value) return pad16(e.len);
  if (e.tag == arg_entry::dependency_list && e.owned) return pad16(e.len * sizeof(std::uint64_t));
  return 0;
}

/// Walks argument records. Bounds are checked: a worker reads what another process wrote.
class call_reader {
 public:
  struct entry {
    arg_entry e;
    const std::byte* payload;  // entry_payload(e) bytes
  };
  call_reader(std::span<const std::byte> args) noexcept
      : p_(args.data()), end_(args.data() + args.size()) {}

  /// The next record; throws codec_error if the bytes end first.
  entry next() {
    if (static_cast<std::size_t>(end_ - p_) < sizeof(arg_entry))
      throw codec_error("coray: call has fewer arguments than its function");
    entry out;
    std::memcpy(&out.e, p_, sizeof out.e);
    p_ += sizeof out.e;
    out.payload = p_;
    const std::size_t n = entry_payload(out.e);
    const std::size_t need = out.e.tag == arg_entry::inline_value ? out.e.len : n;
    if (static_cast<std::size_t>(end_ - p_) < need)
      throw codec_error("coray: malformed call arguments");
    p_ += std::min<std::size_t>(n, static_cast<std::size_t>(end_ - p_));
    return out;
  }

  /// The bytes of the next argument as its callee reads them: inline, or its store block.
  std::span<const std::byte> next_value(segment& seg) {
    entry x = next();
    if (x.e.tag == arg_entry::block_value) {
      auto* b = seg.at<object_block>(x.e.ref);
      return {b->data(), static_cast<std::size_t>(b->size)};
    }
    if (x.e.tag != arg_entry::inline_value) throw codec_error("coray: malformed call arguments");
    return {x.payload, x.e.len};
  }

 private:
  const std::byte* p_;
  const std::byte* end_;
};

/// Calls f(entry, payload) for each of `nargs` records of arguments written by this process.
template <class F>
void for_each_entry(std::span<const std::byte> args, std::uint32_t nargs, F&& f) {
  const std::byte* p = args.data();
  for (std::uint32_t i = 0; i < nargs; ++i) {
    arg_entry e;
    std::memcpy(&e, p, sizeof e);
    f(e, p + sizeof e);
    p += sizeof e + entry_payload(e);
  }
}

/// A call's list of actor handles (kept alive while it travels) may also name mutable shared
/// blocks (ray::shared_value, ray::mutex): the block's offset, tagged with this bit.
inline constexpr std::uint64_t pinned_block_tag = std::uint64_t{1} << 63;

/// A call's argument records. Most calls carry one or a few small arguments (an int's record
/// is 32 bytes): the first 32 bytes are in place, in the task_spec and then in the driver's
/// task_record, so a call of one small argument allocates nothing for it; up to 64 come from a
/// per-thread list of buffers (small_buffer_allocator) instead of malloc, which took about 280
/// of the driver's instructions per call (malloc on submit, free on finish); more, from
/// operator new. Bytes that resize adds are zero, as a vector's would be (the padding of an
/// inline argument travels in the message).
class call_bytes {
 public:
  call_bytes() noexcept {}  // NOLINT: the union's member is chosen by cap_
  call_bytes(call_bytes&& o) noexcept : size_(o.size_), cap_(o.cap_) {
    if (o.cap_ > in_place) {
      heap_ = o.heap_;
      o.cap_ = in_place;
      o.size_ = 0;
    } else {
      std::memcpy(here_, o.here_, in_place);
    }
  }
  call_bytes& operator=(call_bytes&& o) noexcept {
    if (this != &o) {
      release();
      ::new (static_cast<void*>(this)) call_bytes(std::move(o));
    }
    return *this;
  }
  call_bytes(const call_bytes&) = delete;  // copy_bytes copies
  call_bytes& operator=(const call_bytes&) = delete;
  ~call_bytes() { release(); }

  std::byte* data() noexcept { return cap_ > in_place ? heap_ : here_; }
  const std::byte* data() const noexcept { return cap_ > in_place ? heap_ : here_; }
  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }
  operator std::span<const std::byte>() const noexcept {  // NOLINT: implicit, as a vector's
    return {data(), size_};
  }
  /// Grows (new bytes zero) or shrinks to `n` bytes, keeping the first ones.
  void resize(std::size_t n) {
    if (n > cap_) grow(n);
    if (n > size_) std::memset(data() + size_, 0, n - size_);
    size_ = static_cast<std::uint32_t>(n);
  }

 private:
  static constexpr std::uint32_t in_place = 32, pooled = 64;
  using pool = small_buffer_allocator<std::byte, pooled, 4096>;

  void grow(std::size_t n) {
    if (n > std::uint32_t(-1)) throw std::length_error("coray: a call's arguments exceed 4 GiB");
    const std::size_t cap = n <= pooled ? pooled : std::max<std::size_t>(n, std::size_t{cap_} * 2);
    std::byte* p = pool().allocate(cap);
    std::memcpy(p, data(), size_);
    release_heap();
    heap_ = p;
    cap_ = static_cast<std::uint32_t>(cap);
  }
  void release_heap() noexcept {
    if (cap_ > in_place) pool().deallocate(heap_, cap_);
  }
  void release() noexcept {
    release_heap();
    cap_ = in_place;
    size_ = 0;
  }

  std::uint32_t size_ = 0;
  std::uint32_t cap_ = in_place;
  union {
    std::byte here_[in_place];
    std::byte* heap_;
  };
};
/// `to` becomes a copy of `from`.
inline void copy_bytes(call_bytes& to, const call_bytes& from) {
  to.resize(from.size());
  if (!from.empty()) std::memcpy(to.data(), from.data(), from.size());
}

/// A remote call as built by task<f>.remote(): the callee, its encoded arguments, the objects
/// it depends on and the store blocks its large arguments occupy. The add_* members are the
/// only writers of argument records.
struct task_spec {
  std::uint64_t fn_id = 0;
  std::string_view name;
  call_bytes args;  // arg_entry records
  std::uint32_t nargs = 0;
  std::vector<state_ptr> deps;        // arg_entry::dependency refers to these by index
  std::vector<object_block*> blocks;  // owned; released when the task ends
  std::uint64_t target_actor = 0;     // the actor to call; 0 for any task worker
  int max_retries = 0;                // re-runs after a crash or a retryable exception
  std::uint64_t retry_matcher = 0;    // 0: exceptions are final; 1: all retried; else a matcher
  held_contents held;  // refs and actor handles inside the arguments: kept alive until it ends
  std::shared_ptr<const resource_request> resources;  // a task's requirement; null: {CPU: 1}
  std::uint32_t group = 0;  // an actor call's concurrency group (group_hash); 0: its method's
  /// A call of a function returning ray::returns: the caller's refs, one per result, which
  /// take their values when the call's own result (a ref to each) settles; null otherwise.
  std::unique_ptr<std::vector<state_ptr>> returns;
  /// A call of a streaming generator: where its items go (the driver's); null otherwise.
  std::shared_ptr<stream_state> stream;

  /// Appends an inline argument of `size` bytes written by `fill`.
  template <class Fill>
  void add_inline(std::size_t size, Fill&& fill) {
    std::size_t at = args.size();
    args.resize(at + sizeof(arg_entry) + pad16(size));
    arg_entry e{.tag = arg_entry::inline_value, .len = static_cast<std::uint32_t>(size)};
    std::memcpy(args.data() + at, &e, sizeof e);
    fill(args.data() + at + sizeof(arg_entry));
    ++nargs;
  }
  /// Appends a block made for this call; the call owns its reference.
  void add_block(segment& seg, object_block* b) {
    blocks.push_back(b);
    add_entry({.tag = arg_entry::block_value, .owned = 1, .ref = seg.offset_of(b)});
  }
  /// Appends a std::vector<T> argument given as refs: each element is a dependency, and
  /// `pad` zero bytes separate the count from the elements in the vector's encoding.
  void add_dependency_list(const std::vector<state_ptr>& refs, std::uint8_t pad) {
    add_entry({.tag = arg_entry::dependency_list,
               .pad = pad,
               .len = static_cast<std::uint32_t>(refs.size()),
               .ref = deps.size()});
    deps.insert(deps.end(), refs.begin(), refs.end());
  }
  void add_dependency(state_ptr s) {
    add_entry({.tag = arg_entry::dependency, .ref = deps.size()});
    deps.push_back(std::move(s));
  }

 private:
  void add_entry(const arg_entry& e) {
    std::size_t at = args.size();
    args.resize(at + sizeof e);
    std::memcpy(args.data() + at, &e, sizeof e);
    ++nargs;
  }
};

/// What ray::spawn asks besides the constructor's call; a worker's spawn sends it encoded.
struct actor_spawn_fields {
  std::uint64_t type_id = 0;
  std::string type_name;
  std::string name;
  std::uint32_t max_concurrency = 1;  // | plain_methods_on_loop
  int max_restarts = 0;
  int max_task_retries = 0;
  /// How its process is started: 0 by the runtime's start method, else 1 + a start_method_id
  /// (a ray::process of a context that chose one).
  std::uint32_t start_as = 0;
  placement where;  // which node, in a cluster
};
/// What ray::spawn asks of the driver.
struct actor_spawn_request : actor_spawn_fields {
  task_spec constructor;  // fn_id: the constructor invoker; args: the constructor's
  /// What it holds for life; null: nothing (it needs 1 CPU to be placed, as Ray's actors).
  std::shared_ptr<const resource_request> resources;
};

/// The encoded size of the vector a dependency list stands for: count, padding, elements.
inline std::size_t dependency_list_bytes(const arg_entry& e, const std::vector<state_ptr>& deps) {
  std::size_t n = sizeof(std::uint64_t) + e.pad;
  for (std::uint32_t i = 0; i < e.len; ++i) n += deps[e.ref + i]->value_bytes().size();
  return n;
}

/// Writes that vector's encoding from the elements' values (all ready) at `out`.
inline void write_dependency_list(std::byte* out, const arg_entry& e,
                                  const std::vector<state_ptr>& deps) {
  const std::uint64_t count = e.len;
  std::memcpy(out, &count, sizeof count);
  out += sizeof count;
  std::memset(out, 0, e.pad);
  out += e.pad;
  for (std::uint32_t i = 0; i < e.len; ++i) {
    auto bytes = deps[e.ref + i]->value_bytes();
    if (!bytes.empty()) std::memcpy(out, bytes.data(), bytes.size());
    out += bytes.size();
  }
}

/// The arguments of a call with each dependency rewritten for the next hop: a settled one
/// becomes its value (inline bytes, or its store block, borrowed: the receiver takes a
/// reference of its own), a pending one its object id (only a worker's submission to the
/// driver has those; the driver sends a call once every dependency is ready). A list whose
/// elements are all settled is assembled into the vector's encoding; else it travels as ids
/// (`owned` marks that form).
class call_args_rewriter {
 public:
  call_args_rewriter(std::span<const std::byte> args, std::uint32_t nargs,
                     const std::vector<state_ptr>& deps)
      : args_(args), nargs_(nargs), deps_(deps) {}

  /// Bytes write() produces.
  std::size_t size() const {
    std::size_t size = 0;
    for_each_entry(args_, nargs_, [&](const arg_entry& e, const std::byte*) {
      size += sizeof(arg_entry);
      if (e.tag == arg_entry::inline_value) size += pad16(e.len);
      if (e.tag == arg_entry::dependency) {
        auto& d = *deps_[e.ref];
        if (d.settled() && !d.block) size += pad16(d.bytes.size());
      }
      if (e.tag == arg_entry::dependency_list) {
        if (list_ready(e)) {
          size += pad16(dependency_list_bytes(e, deps_));
        } else {
          for (std::uint32_t i = 0; i < e.len; ++i)
            if (!deps_[e.ref + i]->id)
              throw usage_error(
                  "coray: a list of refs mixing values put in a task with pending results cannot "
                  "be passed from a task yet");
          size += pad16(e.len * sizeof(std::uint64_t));
        }
      }
    });
    return size;
  }

  /// Writes the rewritten records at `p` (size() bytes).
  void write(std::byte* p, segment& seg) const {
    for_each_entry(args_, nargs_, [&](const arg_entry& e, const std::byte* data) {
      arg_entry o = e;
      const std::byte* src = data;
      if (e.tag == arg_entry::dependency_list) {
        if (list_ready(e)) {
          o = {.tag = arg_entry::inline_value,
               .len = static_cast<std::uint32_t>(dependency_list_bytes(e, deps_))};
          std::memcpy(p, &o, sizeof o);
          write_dependency_list(p + sizeof o, e, deps_);
          p += sizeof o + pad16(o.len);
        } else {
          o.owned = 1;  // ids follow
          std::memcpy(p, &o, sizeof o);
          p += sizeof o;
          for (std::uint32_t i = 0; i < e.len; ++i) {
            const std::uint64_t id = deps_[e.ref + i]->id;
            std::memcpy(p + i * sizeof id, &id, sizeof id);
          }
          p += pad16(e.len * sizeof(std::uint64_t));
        }
        return;
      }
      if (e.tag == arg_entry::dependency) {
        auto& d = *deps_[e.ref];
        if (!d.settled()) {
          o.ref = d.id;
        } else if (d.block) {
          o = {.tag = arg_entry::block_value, .ref = seg.offset_of(d.block)};
        } else {
          o = {.tag = arg_entry::inline_value, .len = static_cast<std::uint32_t>(d.bytes.size())};
          src = d.bytes.data();
        }
      }
      std::memcpy(p, &o, sizeof o);
      p += sizeof o;
      if (o.tag == arg_entry::inline_value) {
        if (o.len) std::memcpy(p, src, o.len);
        p += pad16(o.len);
      }
    });
  }

 private:
  bool list_ready(const arg_entry& e) const {
    for (std::uint32_t i = 0; i < e.len; ++i)
      if (!deps_[e.ref + i]->settled()) return false;
    return true;
  }
  std::span<const std::byte> args_;
  std::uint32_t nargs_;
  const std::vector<state_ptr>& deps_;
};

/// A resource request as a submission carries it, after everything else: CPU and GPU
/// amounts, each custom resource (its name's length, its name, its amount), then the
/// length of all that, so that a reader finds it from the end.
inline std::size_t resource_request_bytes(const resource_request& r) noexcept {
  std::size_t n = 2 * sizeof(resource_amount) + 4 * sizeof(std::uint32_t) + sizeof(std::uint64_t);
  for (const auto& [name, a] : r.custom) n += sizeof(std::uint32_t) + name.size() + sizeof a;
  return n + sizeof(std::uint32_t);
}
inline void write_resource_request(std::byte* out, const resource_request& r) noexcept {
  std::byte* p = out;
  auto put = [&](const void* v, std::size_t n) {
    if (n) std::memcpy(p, v, n);
    p += n;
  };
  put(&r.cpu, sizeof r.cpu);
  put(&r.gpu, sizeof r.gpu);
  const std::int32_t node = r.where.node;
  const std::uint32_t how = (r.where.soft ? 1u : 0u) | (r.where.spread ? 2u : 0u);
  put(&node, sizeof node);
  put(&how, sizeof how);
  put(&r.where.group, sizeof r.where.group);
  put(&r.where.bundle, sizeof r.where.bundle);
  const auto count = static_cast<std::uint32_t>(r.custom.size());
  put(&count, sizeof count);
  for (const auto& [name, a] : r.custom) {
    const auto len = static_cast<std::uint32_t>(name.size());
    put(&len, sizeof len);
    put(name.data(), name.size());
    put(&a, sizeof a);
  }
  const auto total = static_cast<std::uint32_t>(p - out);
  put(&total, sizeof total);
}
/// Reads the request at the end of `payload` and returns the bytes before it; throws
/// codec_error if it is malformed (lengths out of bounds, an amount below 0).
inline std::span<const std::byte> read_resource_request(std::span<const std::byte> payload,
                                                        resource_request& r) {
  auto malformed = [] { throw codec_error("coray: a malformed resource request"); };
  std::uint32_t total;
  if (payload.size() < sizeof total) malformed();
  std::memcpy(&total, payload.data() + payload.size() - sizeof total, sizeof total);
  if (total > payload.size() - sizeof total) malformed();
  const std::byte* p = payload.data() + payload.size() - sizeof total - total;
  const std::byte* const end = p + total;
  auto get = [&](void* v, std::size_t n) {
    if (static_cast<std::size_t>(end - p) < n) malformed();
    if (n) std::memcpy(v, p, n);
    p += n;
  };
  get(&r.cpu, sizeof r.cpu);
  get(&r.gpu, sizeof r.gpu);
  std::int32_t node;
  std::uint32_t how, count;
  std::uint64_t group;
  std::int32_t bundle;
  get(&node, sizeof node);
  get(&how, sizeof how);
  get(&group, sizeof group);
  get(&bundle, sizeof bundle);
  get(&count, sizeof count);
  if (r.cpu < 0 || r.gpu < 0 || node < -1 || how > 3 || bundle < -1) malformed();
  r.where = {node, (how & 1) != 0, (how & 2) != 0, group, bundle};
  for (std::uint32_t i = 0; i < count; ++i) {
    std::uint32_t len;
    get(&len, sizeof len);
    if (static_cast<std::size_t>(end - p) < len) malformed();
    std::string name(reinterpret_cast<const char*>(p), len);
    p += len;
    resource_amount a;
    get(&a, sizeof a);
    if (a <= 0) malformed();
    r.custom.emplace(std::move(name), a);
  }
  if (p != end) malformed();
  return payload.first(payload.size() - sizeof total - total);
}

/// The message that sends a call: its header, its arguments with dependencies rewritten
/// (call_args_rewriter) and, in a worker's submission, the actor handles it carries and the
/// ids of the refs inside its arguments (h.refs of them), then the resources it asks for
/// when they are not a task's default (`resources`; h.extra says so: carries_resources).
class call_message_writer {
 public:
  call_message_writer(const task_header& h, std::span<const std::byte> args,
                      const std::vector<state_ptr>& deps,
                      std::span<const std::uint64_t> actors = {},
                      std::span<const std::uint64_t> refs = {},
                      const resource_request* resources = nullptr)
      : h_(h),
        args_(args, h.nargs, deps),
        args_size_(args_.size()),
        actors_(actors),
        refs_(refs),
        resources_(resources),
        resources_size_(resources ? resource_request_bytes(*resources) : 0) {}

  std::size_t size() const noexcept {
    return sizeof(task_header) + args_size_ + actors_.size_bytes() + refs_.size_bytes() +
           resources_size_;
  }
  void write(std::byte* out, segment& seg) const {
    std::memcpy(out, &h_, sizeof h_);
    args_.write(out + sizeof h_, seg);
    std::byte* tail = out + sizeof h_ + args_size_;
    if (!actors_.empty()) std::memcpy(tail, actors_.data(), actors_.size_bytes());
    if (!refs_.empty()) std::memcpy(tail + actors_.size_bytes(), refs_.data(), refs_.size_bytes());
    if (resources_) [[unlikely]]
      write_resource_request(tail + actors_.size_bytes() + refs_.size_bytes(), *resources_);
  }

 private:
  task_header h_;
  call_args_rewriter args_;
  std::size_t args_size_;
  std::span<const std::uint64_t> actors_;
  std::span<const std::uint64_t> refs_;
  const resource_request* resources_;
  std::size_t resources_size_;
};

/// A worker's submission read back into the driver's form: the call, with dependencies by id
/// turned into indices into spec.deps and the refs inside its arguments into spec.held
/// (`resolve(id)` and `resolve_ref(id)` give the state, or null for an id the sender does not
/// hold; the second also makes a ref's id known to the driver's directory), blocks
/// collected with `take_block(offset, owned)`, and `known` false when it names an object or
/// a block its sender does not hold (or is malformed).
struct submission {
  task_header header{};
  task_spec spec;
  bool known = true;
};
template <class HoldsBlock, class Resolve, class ResolveRef, class TakeBlock>
submission read_submission(std::span<const std::byte> payload, HoldsBlock&& holds_block,
                           Resolve&& resolve, ResolveRef&& resolve_ref, TakeBlock&& take_block) {
  submission out;
  task_header& h = out.header;
  task_spec& spec = out.spec;
  if (payload.size() < sizeof h) throw codec_error("coray: malformed submission");
  std::memcpy(&h, payload.data(), sizeof h);
  if (h.extra & carries_resources) [[unlikely]] {
    // The call's resource request, last: the rest is read as a default call's.
    resource_request r;
    payload = payload.first(sizeof h + read_resource_request(payload.subspan(sizeof h), r).size());
    h.extra &= ~carries_resources;
    spec.resources = std::make_shared<const resource_request>(std::move(r));
  }
  spec.fn_id = h.fn_id;
  spec.target_actor = h.target;
  spec.max_retries = h.max_retries;
  spec.retry_matcher = h.retry_matcher;
  spec.group = h.gpus;
  const std::size_t actor_bytes = std::size_t{h.extra} * sizeof(std::uint64_t);
  const std::size_t ref_bytes = std::size_t{h.refs} * sizeof(std::uint64_t);
  if (payload.size() < sizeof h + actor_bytes + ref_bytes)
    throw codec_error("coray: malformed submission");
  const std::byte* tail = payload.data() + payload.size() - actor_bytes - ref_bytes;
  if (h.extra || h.refs) [[unlikely]] {
    object_contents& held = contents_of(spec.held);
    held.actors.resize(h.extra);
    if (actor_bytes) std::memcpy(held.actors.data(), tail, actor_bytes);
    for (std::uint32_t k = 0; k < h.refs; ++k) {
      std::uint64_t id;
      std::memcpy(&id, tail + actor_bytes + k * sizeof id, sizeof id);
      state_ptr s = resolve_ref(id);
      if (!s) {
        out.known = false;
        continue;
      }
      held.refs.push_back(std::move(s));
    }
    for (std::uint64_t& a : held.actors)
      if ((a & pinned_block_tag) && !holds_block(a & ~pinned_block_tag)) {
        a = 0;  // a block its sender does not hold: the call is refused
        out.known = false;
      }
  }
  auto dep = [&](std::uint64_t id) {
    state_ptr s = resolve(id);
    if (!s) {
      out.known = false;
      s = state_ptr::adopt(new object_state);  // a placeholder: the caller fails the call
    }
    spec.deps.push_back(std::move(s));
  };
  call_reader reader(
      payload.subspan(sizeof h, payload.size() - sizeof h - actor_bytes - ref_bytes));
  for (std::uint32_t i = 0; i < h.nargs; ++i) {
    auto [e, data] = reader.next();
    if (e.tag == arg_entry::dependency_list) {
      if (!e.owned) throw codec_error("coray: malformed submission");  // lists travel as ids
      const std::uint32_t n = e.len;
      e.owned = 0;
      e.ref = spec.deps.size();
      for (std::uint32_t k = 0; k < n; ++k) {
        std::uint64_t id;
        std::memcpy(&id, data + k * sizeof id, sizeof id);
        dep(id);
      }
    } else if (e.tag == arg_entry::dependency) {
      const std::uint64_t id = e.ref;
      e.ref = spec.deps.size();
      dep(id);
    } else if (e.tag == arg_entry::block_value) {
      spec.blocks.push_back(take_block(e.ref, e.owned != 0));
    }
    const std::size_t at = spec.args.size();
    spec.args.resize(at + sizeof e + entry_payload(e));
    std::memcpy(spec.args.data() + at, &e, sizeof e);
    if (e.tag == arg_entry::inline_value && e.len)
      std::memcpy(spec.args.data() + at + sizeof e, data, e.len);
  }
  spec.nargs = h.nargs;
  return out;
}

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/call_message.hpp>
// #include <coray/detail/runtime/invocation.hpp>: inlined above
// #include <coray/detail/runtime/registry.hpp>: inlined above
// begin <coray/detail/runtime/signature.hpp>
/// What a callee (a task's function or an actor's method) takes and returns, and which
/// arguments may be passed for its parameters: the compile-time checks behind task<f>.remote,
/// actor<T>.call and ray::spawn.

// #include <coray/async.hpp>: inlined above
// #include <coray/codec.hpp>: inlined above
// #include <coray/detail/codec/codec_traits.hpp>: inlined above
// begin <coray/object_ref.hpp>
/// ray::object_ref<T>: a handle to an immutable object -- a put value or a call's result --
/// that may not exist yet. Copyable and cheap; the object lives while any handle does.
/// Pass it to remote calls (they wait for it) or get it (co_await ray::get(ref)).

// begin <coray/detail/runtime/foreign.hpp>
/// The API's path from threads other than the runtime's loop thread (in the driver): what
/// such a thread may build itself (a call's encoded arguments, a put's bytes, a result's
/// state) it builds; what touches the loop's state (the scheduler, the allocator, waiters on
/// objects) it hands to the loop as a job and, where it needs an answer, waits for.

// #include <coray/async.hpp>: inlined above
// begin <coray/detail/runtime/process.hpp>
/// What every coray process shares: the layout of the segment's control header, and the
/// event loop that drives a process (ready coroutines, incoming messages, timers, sleeping).
/// The driver and the workers specialise it.

#include <fmt/format.h>
#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <chrono>
// begin <coray/detail/runtime/actor_state.hpp>
/// A process's handle on an actor: counted locally, and each local handle counts once at the
/// driver, which ends the actor when no handle is left in any process.

#include <atomic>
// #include <coray/version.hpp>: inlined above
#include <cstdint>
#include <utility>

CORAY_BEGIN_NAMESPACE
namespace detail {

struct actor_state {
  std::atomic<std::uint32_t> handles{1};
  std::uint64_t id = 0;
  std::uint32_t epoch = 0;
};

void release_actor_state(actor_state* s) noexcept;  // defined with the process (process.hpp)

class actor_ptr {
 public:
  actor_ptr() noexcept = default;
  static actor_ptr adopt(actor_state* s) noexcept {
    actor_ptr p;
    p.s_ = s;
    return p;
  }
  actor_ptr(const actor_ptr& o) noexcept : s_(o.s_) {
    if (s_) s_->handles.fetch_add(1, std::memory_order_relaxed);
  }
  actor_ptr(actor_ptr&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  actor_ptr& operator=(actor_ptr o) noexcept {
    std::swap(s_, o.s_);
    return *this;
  }
  ~actor_ptr() {
    if (s_ && s_->handles.fetch_sub(1, std::memory_order_acq_rel) == 1) release_actor_state(s_);
  }
  actor_state* get() const noexcept { return s_; }
  explicit operator bool() const noexcept { return s_ != nullptr; }

 private:
  actor_state* s_ = nullptr;
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/actor_state.hpp>
// #include <coray/detail/runtime/call_message.hpp>: inlined above
// begin <coray/detail/runtime/handoff.hpp>
/// How threads other than the loop's reach a process's runtime: they hand small jobs to the
/// loop through a lock-free queue and ring its doorbell; the loop runs the jobs between its
/// other work. A gate, one per OS process, says whether a runtime takes such jobs and keeps
/// it alive while a thread is inside.

#include <concurrentqueue.h>

#include <atomic>
#include <chrono>
// #include <coray/detail/shm/futex.hpp>: inlined above
// #include <coray/errors.hpp>: inlined above
#include <cstddef>
#include <cstdint>
#include <string>

CORAY_BEGIN_NAMESPACE
namespace detail {

class process;

/// Work handed to the loop. `run(ctx, p, live)` runs once, on the loop thread: with `live`
/// true to do the work, or false while the runtime ends, to fail it (waking whoever waits)
/// and free what it holds.
struct loop_job {
  void (*run)(void* ctx, process& p, bool live) noexcept;
  void* ctx;
};

/// The loop's inbox of jobs. Any thread pushes; only the loop drains. Lock-free.
class job_queue {
 public:
  /// Thread-safe. Counts the job before queueing it, so a loop that reads zero has nothing
  /// to take and nothing on its way (the doorbell's Dekker pairs with this seq_cst add).
  /// Allocates a block of the queue now and then; false if that failed.
  bool push(loop_job j) noexcept {
    waiting_.fetch_add(1, std::memory_order_seq_cst);
    if (q_.enqueue(j)) return true;
    waiting_.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
  /// Whether a job may be queued or on its way: one relaxed load, the loop's per-turn cost.
  bool maybe_waiting() const noexcept { return waiting_.load(std::memory_order_relaxed) != 0; }
  /// Loop thread only: takes up to 64 jobs and runs each with `live`; returns how many.
  std::size_t run_some(process& p, bool live) noexcept {
    loop_job batch[64];
    const std::size_t n = q_.try_dequeue_bulk(consumer_, batch, 64);
    if (n == 0) return 0;
    waiting_.fetch_sub(static_cast<std::int64_t>(n), std::memory_order_relaxed);
    for (std::size_t i = 0; i < n; ++i) batch[i].run(batch[i].ctx, p, live);
    return n;
  }

 private:
  moodycamel::ConcurrentQueue<loop_job> q_{0};
  moodycamel::ConsumerToken consumer_{q_};
  std::atomic<std::int64_t> waiting_{0};
};

/// Wakes one thread waiting for the loop. The waker never touches it after signal() has
/// stored, so the waiter may free it as soon as wait() returns.
class completion {
 public:
  void signal() noexcept {
    done_.store(1, std::memory_order_release);
    futex_wake_all(&done_);  // only the address: harmless if the waiter has already gone
  }
  void wait() noexcept {
    while (done_.load(std::memory_order_acquire) == 0)
      futex_wait(&done_, 0, std::chrono::nanoseconds(-1));
  }

 private:
  std::atomic<std::uint32_t> done_{0};
};

/// True on a thread that runs a threaded actor's plain methods (method_threads.hpp): the
/// runtime refuses it, saying why (runtime_gate::refusal).
inline bool& on_method_thread() noexcept {
  thread_local bool yes = false;
  return yes;
}

/// Whether this OS process's runtime takes work from threads other than its loop's. The
/// driver opens it for calls; a worker opens it for releases of refs only (a task's own
/// threads may drop refs, not make calls); ending the runtime closes it, and the runtime is
/// destroyed only after every thread inside has left. Constant-initialised, never destroyed.
class runtime_gate {
 public:
  enum class phase : std::uint8_t { none, calls, releases_only, ended };

  static runtime_gate& instance() noexcept {
    static runtime_gate g;
    return g;
  }

  /// The runtime taking jobs, counted as entered (leave() when done), or nullptr.
  /// Thread-safe; never blocks.
  process* try_enter() noexcept {
    users_.fetch_add(1, std::memory_order_seq_cst);
    process* p = open_.load(std::memory_order_seq_cst);
    if (!p) leave();
    return p;
  }
  void leave() noexcept { users_.fetch_sub(1, std::memory_order_release); }
  phase current_phase() const noexcept { return phase_.load(std::memory_order_acquire); }
  /// A driver's runtime runs and takes calls from any thread.
  bool accepts_calls() const noexcept { return current_phase() == phase::calls; }
  /// The epoch of the runtime open in this process, 0 when none: a ref whose state has
  /// another one belongs to a runtime that has ended. Any thread.
  std::uint32_t live_epoch() const noexcept { return epoch_.load(std::memory_order_acquire); }

  /// The loop thread, once its process (of runtime `epoch`) is built.
  void open(process* p, phase ph, std::uint32_t epoch) noexcept {
    epoch_.store(epoch, std::memory_order_release);
    phase_.store(ph, std::memory_order_release);
    open_.store(p, std::memory_order_seq_cst);
  }
  /// The loop thread: no thread enters from now on. (Threads inside are waited for by the
  /// caller, which keeps failing their jobs meanwhile.)
  void close() noexcept {
    open_.store(nullptr, std::memory_order_seq_cst);
    phase_.store(phase::ended, std::memory_order_release);
    epoch_.store(0, std::memory_order_release);
  }
  bool anyone_inside() const noexcept { return users_.load(std::memory_order_seq_cst) != 0; }

  /// Why a thread other than the loop's cannot use the runtime now, for `what` (an API name).
  std::string refusal(const char* what) const {
    if (on_method_thread())
      return std::string(what) +
             ": this thread runs a plain method of a threaded actor (max_concurrency > 1), "
             "which may not use the runtime (it may drop refs and handles): make the method a "
             "coroutine (ray::async) to make calls, puts or gets from it";
    switch (current_phase()) {
      case phase::none:
        return std::string(what) + ": no runtime is running (construct ray::runtime first)";
      case phase::releases_only:
        return std::string(what) +
               ": in a task or actor process only the thread that runs the task may use the "
               "runtime";
      case phase::ended:
        return std::string(what) + ": the runtime has ended";
      case phase::calls:
        break;
    }
    return std::string(what) +
           ": must be called on the thread that runs the runtime (other threads may submit "
           "tasks and actor calls, spawn, put, get, wait, kill and cancel)";
  }

 private:
  constexpr runtime_gate() noexcept = default;
  std::atomic<process*> open_{nullptr};
  std::atomic<std::uint32_t> users_{0};
  std::atomic<phase> phase_{phase::none};
  std::atomic<std::uint32_t> epoch_{0};
};

/// Something a thread other than the loop's waits for that the loop holds on to (a wait
/// registered on objects, a coroutine being run): ended() fails it if the runtime ends first.
/// Loop thread only.
struct foreign_pending {
  foreign_pending* prev = nullptr;
  foreign_pending* next = nullptr;
  virtual void ended(process& p) noexcept = 0;

 protected:
  ~foreign_pending() = default;
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/handoff.hpp>
// begin <coray/detail/runtime/metric_table.hpp>
/// The user metrics' table (ray::metrics): fixed-size series in the runtime's control header,
/// so that every process of the runtime records into the same ones with atomics, and the
/// dashboard reads them for /metrics without asking anyone.

#include <algorithm>
#include <atomic>
#include <bit>
// #include <coray/errors.hpp>: inlined above
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

CORAY_BEGIN_NAMESPACE
namespace detail {

enum class metric_kind : std::uint32_t { counter = 1, gauge = 2, histogram = 3 };

/// One series: a metric's name with one set of tag values. Claimed once (state 0 -> 1 by
/// compare-and-swap, its key and shape written, then 2), never freed while the runtime lives.
struct metric_series {
  static constexpr std::size_t max_bounds = 12;
  std::atomic<std::uint32_t> state{0};  // 0 free, 1 being claimed, 2 ready
  metric_kind kind = metric_kind::counter;
  char name[48] = {};
  char tags[112] = {};  // `k="v",k2="v2"`, as Prometheus writes labels
  char help[96] = {};
  std::uint32_t bounds = 0;  // histogram: its buckets' upper bounds, ascending
  double bound[max_bounds] = {};
  std::atomic<std::uint64_t> value{
      0};  // bits of a double: a counter's or gauge's, a histogram's sum
  std::atomic<std::uint64_t> count{0};                     // histogram: observations
  std::atomic<std::uint64_t> bucket[max_bounds + 1] = {};  // histogram: per bucket, +Inf last

  void add(double x) noexcept {
    std::uint64_t old = value.load(std::memory_order_relaxed);
    while (!value.compare_exchange_weak(
        old, std::bit_cast<std::uint64_t>(std::bit_cast<double>(old) + x),
        std::memory_order_relaxed)) {
    }
  }
  void set(double x) noexcept {
    value.store(std::bit_cast<std::uint64_t>(x), std::memory_order_relaxed);
  }
  void observe(double x) noexcept {
    std::uint32_t b = 0;
    while (b < bounds && x > bound[b]) ++b;
    bucket[b].fetch_add(1, std::memory_order_relaxed);
    count.fetch_add(1, std::memory_order_relaxed);
    add(x);
  }
  double read() const noexcept {
    return std::bit_cast<double>(value.load(std::memory_order_relaxed));
  }
};

/// What makes a series: its metric's name and shape, and its tags' values.
struct metric_key {
  std::string_view name, tags, help;
  metric_kind kind;
  std::span<const double> bounds;
};

class metric_table {
 public:
  static constexpr std::size_t capacity = 1024;

  /// The series of `k`, claimed if it is new; null when the table is full. Throws
  /// usage_error if the name is already a metric of another kind or other buckets (two
  /// processes claiming one name as two kinds at the same moment are not caught).
  CORAY_API metric_series* find_or_claim(const metric_key& k);

 private:
  static bool same_shape(const metric_series& s, const metric_key& k) noexcept {
    return s.kind == k.kind &&
           (k.kind != metric_kind::histogram ||
            std::equal(k.bounds.begin(), k.bounds.end(), s.bound, s.bound + s.bounds));
  }
  CORAY_API metric_series* find_or_claim_series(const metric_key& k);

 public:
  /// Appends the series in Prometheus' text format, grouped by name.
  CORAY_API void append_prometheus(std::string& out) const;

 private:
  template <std::size_t N>
  static void copy(char (&to)[N], std::string_view from) noexcept {
    const std::size_t n = std::min(from.size(), N - 1);
    std::memcpy(to, from.data(), n);
    to[n] = '\0';
  }

  metric_series series_[capacity];
};

}  // namespace detail
CORAY_END_NAMESPACE

// begin <coray/detail/runtime/metric_table_impl.hpp>
/// metric_table's members that claim a series and write the table out: included by
/// metric_table.hpp in header-only mode (inline), and compiled once by src/coray.cpp into
/// coray::coray_compiled in compiled mode (CORAY_COMPILED_LIB). Recording into a series
/// (metric_series) stays inline.

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
// #include <coray/detail/runtime/metric_table.hpp>: inlined above
// #include <coray/errors.hpp>: inlined above
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

CORAY_BEGIN_NAMESPACE
namespace detail {

CORAY_API metric_series* metric_table::find_or_claim(const metric_key& k) {
  // A name is one metric: each series of it has the same kind and buckets.
  for (const metric_series& s : series_)
    if (s.state.load(std::memory_order_acquire) == 2 && std::string_view(s.name) == k.name &&
        !same_shape(s, k))
      throw usage_error(fmt::format(
          "ray::metrics: '{}' is already a metric of another kind or other boundaries", k.name));
  return find_or_claim_series(k);
}

CORAY_API metric_series* metric_table::find_or_claim_series(const metric_key& k) {
  const std::size_t start =
      std::hash<std::string_view>{}(k.name) ^ (std::hash<std::string_view>{}(k.tags) * 31);
  for (std::size_t probe = 0; probe < capacity; ++probe) {
    metric_series& s = series_[(start + probe) % capacity];
    std::uint32_t st = s.state.load(std::memory_order_acquire);
    if (st == 0) {
      if (s.state.compare_exchange_strong(st, 1, std::memory_order_acquire)) {
        s.kind = k.kind;
        copy(s.name, k.name);
        copy(s.tags, k.tags);
        copy(s.help, k.help);
        s.bounds = static_cast<std::uint32_t>(std::min(k.bounds.size(), metric_series::max_bounds));
        std::copy_n(k.bounds.begin(), s.bounds, s.bound);
        s.state.store(2, std::memory_order_release);
        return &s;
      }
    }
    // Another process is writing its key: a few stores. One killed in between leaves the
    // series half-claimed for good: after a bounded wait it is passed over.
    for (int spins = 0; (st = s.state.load(std::memory_order_acquire)) == 1 && spins < 1 << 20;
         ++spins) {
    }
    if (st != 2) continue;
    if (std::string_view(s.name) == k.name && std::string_view(s.tags) == k.tags) return &s;
  }
  return nullptr;
}

CORAY_API void metric_table::append_prometheus(std::string& out) const {
  std::string_view done[capacity];
  std::size_t n_done = 0;
  for (const metric_series& first : series_) {
    if (first.state.load(std::memory_order_acquire) != 2) continue;
    const std::string_view name(first.name);
    if (std::find(done, done + n_done, name) != done + n_done) continue;
    done[n_done++] = name;
    const char* type = first.kind == metric_kind::counter ? "counter"
                       : first.kind == metric_kind::gauge ? "gauge"
                                                          : "histogram";
    if (first.help[0]) out += fmt::format("# HELP {} {}\n", name, first.help);
    out += fmt::format("# TYPE {} {}\n", name, type);
    for (const metric_series& s : series_) {
      if (s.state.load(std::memory_order_acquire) != 2 || std::string_view(s.name) != name)
        continue;
      const std::string_view tags(s.tags);
      if (s.kind != metric_kind::histogram) {
        out += fmt::format("{}{}{}{} {}\n", name, tags.empty() ? "" : "{", tags,
                           tags.empty() ? "" : "}", s.read());
        continue;
      }
      const std::string sep = tags.empty() ? "" : ",";
      std::uint64_t cumulative = 0;
      for (std::uint32_t b = 0; b <= s.bounds; ++b) {
        cumulative += s.bucket[b].load(std::memory_order_relaxed);
        const std::string le = b < s.bounds ? fmt::format("{}", s.bound[b]) : "+Inf";
        out += fmt::format("{}_bucket{{{}{}le=\"{}\"}} {}\n", name, tags, sep, le, cumulative);
      }
      const std::string braces = tags.empty() ? "" : fmt::format("{{{}}}", tags);
      out += fmt::format("{}_sum{} {}\n{}_count{} {}\n", name, braces, s.read(), name, braces,
                         s.count.load(std::memory_order_relaxed));
    }
  }
}

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/metric_table_impl.hpp>
// end <coray/detail/runtime/metric_table.hpp>
// #include <coray/detail/runtime/object_state.hpp>: inlined above
// begin <coray/detail/runtime/output_name.hpp>
/// The name a process's output is shown under (`(name pid=1234)`): the function a task worker
/// runs, or an actor's class. The process writes it into its slot in the segment when it
/// changes; the supervisor's log monitor reads it as it reads the process's output.

#include <atomic>
// #include <coray/version.hpp>: inlined above
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// The bare name Ray shows: no namespace, no template arguments ("ns::fib" -> "fib",
/// "ray::v0::detail::pool_process<f>" -> "pool_process").
constexpr std::string_view output_short_name(std::string_view name) noexcept {
  name = name.substr(0, name.find('<'));
  const std::size_t colon = name.rfind("::");
  if (colon != std::string_view::npos) name.remove_prefix(colon + 2);
  return name;
}

/// A seqlock over words of atomics: one writer (the process), readers in other processes
/// that retry a torn read. Writing costs a handful of relaxed stores and two fences.
struct output_name_cell {
  static constexpr std::size_t words = 7;
  static constexpr std::size_t capacity = words * sizeof(std::uint64_t) - 1;

  /// The process, on a change of name. Never blocks.
  void set(std::string_view name) noexcept {
    name = output_short_name(name).substr(0, capacity);
    char bytes[words * sizeof(std::uint64_t)] = {};
    if (!name.empty()) std::memcpy(bytes, name.data(), name.size());
    const std::uint32_t s = seq.load(std::memory_order_relaxed);
    seq.store(s + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    for (std::size_t i = 0; i < words; ++i) {
      std::uint64_t w;
      std::memcpy(&w, bytes + i * sizeof w, sizeof w);
      word[i].store(w, std::memory_order_relaxed);
    }
    seq.store(s + 2, std::memory_order_release);
  }
  /// Any process; empty before the process named itself.
  std::string get() const {
    char bytes[words * sizeof(std::uint64_t) + 1] = {};
    for (;;) {
      const std::uint32_t before = seq.load(std::memory_order_acquire);
      for (std::size_t i = 0; i < words; ++i) {
        const std::uint64_t w = word[i].load(std::memory_order_relaxed);
        std::memcpy(bytes + i * sizeof w, &w, sizeof w);
      }
      std::atomic_thread_fence(std::memory_order_acquire);
      if ((before & 1) == 0 && seq.load(std::memory_order_relaxed) == before) break;
    }
    return std::string(bytes);
  }
  /// A new process in the slot starts unnamed.
  void clear() noexcept { set({}); }

  std::atomic<std::uint32_t> seq{0};
  std::atomic<std::uint64_t> word[words] = {};
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/output_name.hpp>
// #include <coray/detail/runtime/recycled.hpp>: inlined above
// #include <coray/detail/runtime/wire.hpp>: inlined above
// #include <coray/detail/shm/futex.hpp>: inlined above
// #include <coray/detail/shm/segment.hpp>: inlined above
#include <coroutine>
#include <cstdint>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

using clock = std::chrono::steady_clock;

/// `now + timeout`, saturated: a timeout too long to have a deadline (nanoseconds::max(),
/// what "no timeout" becomes) gives time_point::max(), which run_until and waits read as
/// "never"; a negative one gives now. Every deadline a user's timeout makes comes from here:
/// `now + timeout` itself overflows (undefined behaviour; in practice a deadline in the past).
inline clock::time_point deadline_after(clock::duration timeout) noexcept {
  const auto now = clock::now();
  if (timeout <= clock::duration::zero()) return now;
  if (timeout >= clock::time_point::max() - now) return clock::time_point::max();
  return now + timeout;
}
/// A user's timeout of any duration type as a deadline, saturated likewise (compared as
/// seconds in floating point, so no conversion overflows first).
template <class Rep, class Period>
clock::time_point deadline_in(const std::chrono::duration<Rep, Period>& timeout) {
  using seconds = std::chrono::duration<double>;
  if (seconds(timeout) >= seconds(clock::duration::max())) return clock::time_point::max();
  if (seconds(timeout) <= seconds::zero()) return clock::now();
  return deadline_after(std::chrono::ceil<clock::duration>(timeout));
}
/// A deadline on any clock (the system clock included) as one on the steady clock.
template <class Clock, class Duration>
clock::time_point deadline_at(const std::chrono::time_point<Clock, Duration>& deadline) {
  if (deadline == std::chrono::time_point<Clock, Duration>::max()) return clock::time_point::max();
  return deadline_in(deadline - Clock::now());
}

/// Per worker, in the segment: its doorbell, its mailboxes, and what the supervisor and
/// the driver need to know about it.
struct alignas(64) worker_shared {
  doorbell bell;  // the worker sleeps here
  std::atomic<std::uint32_t> state{0};
  std::atomic<std::int32_t> pid{0};
  std::atomic<std::int32_t> wait_status{0};
  std::atomic<std::uint32_t> generation{0};
  std::atomic<std::uint32_t> served{0};  // the process reached its loop (not dead at start)
  /// How the supervisor starts this slot's next process: 0 by the runtime's start method,
  /// else 1 + a start_method_id (a ray::process whose context chose one).
  std::atomic<std::uint32_t> start_as{0};
  /// 1 + the slot the driver's orchestrator knows this one as, when it differs from the
  /// slot's own number (a cluster node's slot; rank 0 numbers every node's): the ids the
  /// process gives its calls and objects carry it, so they are unique across the cluster.
  /// 0: its own.
  std::atomic<std::uint32_t> id_slot{0};
  std::uint64_t inbox = 0;   // offset of the mailbox driver -> worker
  std::uint64_t outbox = 0;  // offset of the mailbox worker -> driver
  /// Calls the process has taken from its inbox: written by it at every call, read by the
  /// driver only at its death, so alone in its cache line.
  alignas(64) std::atomic<std::uint64_t> tasks_started{0};
  /// What the driver reads at every dispatch (suspended, blocked_mark) and the process at
  /// every receive (driver_waiting): written rarely, so the line stays shared in both caches.
  /// With tasks_started in it, every sync task paid for the line crossing twice (design.md,
  /// "Where a sync call's time goes").
  alignas(64) std::atomic<std::uint32_t> suspended{0};  // task coroutines awaiting something
  /// Nonzero while a task body here is blocked in a blocking wait: the call_mark of the
  /// innermost such call. The driver then sends this worker only the calls it made itself
  /// with an id from this one up (the blocked call's descendants); see design.md, "Blocking
  /// inside a task".
  std::atomic<std::uint64_t> blocked_mark{0};
  /// Set by the driver when a message to this process found its inbox full and the driver
  /// is going to sleep: the process rings the driver once it has freed slots.
  std::atomic<std::uint32_t> driver_waiting{0};
  /// The name the process's output is shown under (the function it runs, or the actor's
  /// class): written by the process when it changes, read by the supervisor's log monitor.
  alignas(64) output_name_cell output_name;
};

/// The segment's control header, allocated first in the segment.
struct shared_header {
  doorbell driver_bell;  // the driver sleeps here
  alignas(64) std::atomic<std::uint32_t> deaths{0};
  std::int32_t driver_pid = 0;
  std::int32_t supervisor_pid = 0;
  std::uint32_t slots = 0;  // task workers first, then actors
  std::uint32_t spin_us = 0;
  std::uint64_t inline_threshold = 0;
  std::uint64_t mailbox_capacity = 0;
  /// The runtime's GPU ids, comma-separated ("0,1" or CUDA_VISIBLE_DEVICES's values): a
  /// call's GPUs travel as a mask of indices into this list.
  char gpu_ids[512] = {};
  /// The user metrics (ray::metrics), recorded by every process of the runtime.
  metric_table metrics;

  void set_gpu_ids(const std::vector<std::string>& ids) {
    std::string joined;
    for (const auto& id : ids) joined += (joined.empty() ? "" : ",") + id;
    const std::size_t n = std::min(joined.size(), sizeof gpu_ids - 1);
    std::memcpy(gpu_ids, joined.data(), n);
    gpu_ids[n] = '\0';
  }
  /// The ids of the GPUs in `mask`, comma-separated.
  std::string gpu_ids_of(std::uint32_t mask) const {
    std::string out;
    std::string_view all(gpu_ids);
    for (std::uint32_t i = 0; mask && !all.empty(); ++i) {
      const std::size_t end = std::min(all.find(','), all.size());
      if (mask & (std::uint32_t{1} << i)) {
        out += (out.empty() ? "" : ",") + std::string(all.substr(0, end));
        mask &= ~(std::uint32_t{1} << i);
      }
      all.remove_prefix(std::min(end + 1, all.size()));
    }
    return out;
  }

  static std::size_t bytes_for(std::uint32_t slots) {
    return sizeof(shared_header) + slots * sizeof(worker_shared);
  }
  worker_shared& worker(std::uint32_t i) noexcept {
    return reinterpret_cast<worker_shared*>(reinterpret_cast<std::byte*>(this) +
                                            sizeof(shared_header))[i];
  }
};

/// The GPU ids of the task or actor this process runs (ray::get_gpu_ids); empty in the
/// driver and for calls given no GPU. Written by the worker before user code runs.
inline std::vector<std::string>& assigned_gpu_ids() noexcept {
  static std::vector<std::string> ids;
  return ids;
}

/// An actor handle met while sizing a value (actor<T>::serialize): what will hold the value
/// (a put object, a call, a result) counts it at the driver while it lives.
inline void collect_actor_handle(std::uint64_t id) {
  if (!actor_collector())
    throw usage_error(
        "coray: an actor handle is encoded only inside a put object, a call argument or a "
        "result");
  actor_collector()->push_back(id);
}

/// Call arguments may also carry handles to mutable shared blocks (ray::shared_value,
/// ray::mutex): the encoder lists the block's offset, tagged, with the call's actor handles.
/// The driver pins the block while the call lives (so it outlives its sender's handles) and
/// gives the process the call is sent to a reference of its own, which the decoded handle
/// adopts. A worker may pin only blocks it holds.
inline void collect_pinned_block(segment& seg, object_block* b) {
  if (!actor_collector())
    throw usage_error(
        "coray: shared memory handles (shared values, arrays, buffers, locks) travel as call "
        "arguments only, not inside put objects or results");
  actor_collector()->push_back(pinned_block_tag | seg.offset_of(b));
}

class driver;

/// The runtime state of this process (driver or worker). One at a time per process. Its
/// state is the loop thread's: other threads reach it only through jobs (handoff.hpp), which
/// the loop runs.
class process {
 public:
  process() noexcept { on_this_thread() = this; }
  virtual ~process() {
    if (on_this_thread() == this) on_this_thread() = nullptr;
  }
  process(const process&) = delete;
  process& operator=(const process&) = delete;

  /// The process's runtime, or nullptr outside one. Read and written by the loop thread only;
  /// other threads use runtime_gate.
  static process*& current() noexcept {
    static process* p = nullptr;
    return p;
  }
  /// The runtime whose loop this thread runs (the thread that built it), or nullptr: another
  /// thread, or no runtime. Thread-safe: each thread reads its own.
  static process*& on_this_thread() noexcept {
    thread_local process* p = nullptr;
    return p;
  }
  /// The running runtime if this thread runs its loop, else nullptr.
  static process* here() noexcept {
    process* p = on_this_thread();
    return p && p == current() ? p : nullptr;  // current() is read by its own thread only
  }
  /// The runtime, for an API that only the loop thread may use; throws ray::runtime_error
  /// saying why not on any other thread.
  static process& require(const char* what = "coray") {
    if (process* p = here()) return *p;
    throw usage_error(runtime_gate::instance().refusal(what));
  }

  segment seg;
  shared_header* hdr = nullptr;
  std::uint32_t epoch = 0;  // distinguishes this runtime's states from an earlier one's

  /// The driver's interface (driver.hpp) in the driver process, null in a worker.
  virtual driver* as_driver() noexcept { return nullptr; }
  /// Sends a call; returns the state of its result.
  virtual state_ptr submit(task_spec&& spec) = 0;
  /// Sends a call whose result state was made by the thread that built it (a thread other
  /// than the loop's, in the driver); returns `result`.
  virtual state_ptr submit_into(task_spec&& /*spec*/, state_ptr /*result*/) {
    throw ray::runtime_error("coray: only the driver takes calls from other threads");
  }
  /// Makes the objects of `refs` known to the driver by id (each then has a nonzero id),
  /// before a value holding them is written. Loop thread.
  virtual void publish_refs(std::span<const state_ptr> /*refs*/) {
    throw usage_error("coray: refs inside values need a runtime");
  }
  /// The ref an id read from a value names (0: an empty ref). Throws codec_error for an id
  /// the runtime never issued. Loop thread.
  virtual state_ptr ref_from_id(std::uint64_t /*id*/) {
    throw usage_error("coray: refs inside values need a runtime");
  }

  /// A new object block of `size` payload bytes holding one reference for this process.
  /// Only the driver touches the allocator and the reference counts, so that a worker
  /// killed at any instant leaves the store intact: workers ask the driver.
  /// Throws object_store_full.
  virtual object_block* new_block(std::size_t size) = 0;
  /// This process drops one reference to `b`.
  virtual void release_block(object_block* b) noexcept = 0;
  /// A state of this process now holds a block (the driver may spill it under pressure).
  virtual void block_adopted(object_state&) {}
  /// A state of this process lost its last handle and is going away (one with an id is
  /// forgotten by it: a worker tells the driver it no longer awaits or holds that object).
  virtual void state_released(object_state&) noexcept {}
  /// Brings a spilled state's value back into the store (only the driver spills).
  virtual void restore(object_state&) {
    throw ray::runtime_error("coray: a spilled object outside the driver");
  }
  /// A coroutine of this process suspends on (+1) or resumes from (-1) a coray awaitable.
  virtual void coroutine_suspended(int /*delta*/) noexcept {}
  /// A call's body starts (+1) or ends (-1) a blocking wait, which runs the loop inside the
  /// loop. True if the process counts it (and must be told its end): a task worker does, so
  /// that the driver sends it more calls meanwhile (design.md, "Blocking inside a task").
  virtual bool blocking_wait(int /*delta*/) noexcept { return false; }

  /// A local handle to actor `id` was made (+1) or dropped (-1).
  virtual void actor_handle(std::uint64_t id, int delta) noexcept = 0;
  /// Ends actor `id` now (ray::kill).
  virtual void kill_actor(std::uint64_t id) = 0;
  /// This actor ends once the call running now has replied (ray::exit_actor).
  virtual void exit_actor() { throw usage_error("ray::exit_actor: called outside an actor"); }
  struct actor_info {
    std::uint64_t id = 0;  // 0: none
    std::uint64_t type_id = 0;
  };
  /// The live actor registered under `name`.
  virtual actor_info lookup_actor(std::string_view name) = 0;
  /// Creates an actor: a process of its own whose first message builds the object. Returns
  /// its id (the driver's at once, a worker's once the driver has it); calls queue behind the
  /// construction.
  virtual std::uint64_t spawn_actor(actor_spawn_request req) = 0;

  /// ray::cancel of the call `id` (driver only).
  virtual void cancel_call(std::uint64_t /*id*/, bool /*force*/) {}
  /// The driver: lets the producer of stream `id` make items up to index `limit`, or (0)
  /// stops it.
  virtual void stream_credit(std::uint64_t /*id*/, std::uint64_t /*limit*/) {}

  /// A new local handle to actor `id` (counted at the driver).
  actor_ptr make_actor_handle(std::uint64_t id) {
    auto* s = new actor_state;
    s->id = id;
    s->epoch = epoch;
    actor_handle(id, +1);
    return actor_ptr::adopt(s);
  }

  std::size_t inline_threshold() const noexcept { return hdr->inline_threshold; }
  /// True on the thread that runs this process's loop (where blocking calls may serve it).
  bool is_loop_thread() const noexcept { return on_this_thread() == this; }

  // ---- other threads ------------------------------------------------------------------
  // A thread other than the loop's calls these only while it holds an entry of the
  // runtime_gate (foreign_entry), which keeps this object alive.

  /// Hands `j` to the loop and wakes it. Thread-safe, lock-free; throws only if the queue
  /// could not allocate.
  void post(loop_job j) {
    if (!jobs_.push(j)) throw std::bad_alloc();
    bell_->ring();
  }
  /// Runs `f(process&)` on the loop and returns its result (or rethrows its exception) to
  /// this thread, which blocks meanwhile. Throws ray::runtime_error if the runtime ends
  /// first. Not on the loop thread, which would wait for itself.
  template <class F>
  auto call_on_loop(F&& f) -> decltype(f(*this)) {
    using result = decltype(f(*this));
    struct call {
      explicit call(F& fn) noexcept : f(fn) {}
      F& f;
      std::conditional_t<std::is_void_v<result>, bool, std::optional<result>> value{};
      std::exception_ptr error;
      bool ended = false;
      completion done;
      static void run(void* ctx, process& p, bool live) noexcept {
        auto* c = static_cast<call*>(ctx);
        if (!live) {
          c->ended = true;
        } else {
          try {
            if constexpr (std::is_void_v<result>)
              c->f(p);
            else
              c->value.emplace(c->f(p));
          } catch (...) {
            c->error = std::current_exception();
          }
        }
        c->done.signal();
      }
    } c(f);
    post({&call::run, &c});
    c.done.wait();
    if (c.ended) throw ray::runtime_error("coray: the runtime ended before the call was made");
    if (c.error) std::rethrow_exception(c.error);
    if constexpr (!std::is_void_v<result>) return std::move(*c.value);
  }
  /// new_block from any thread: on another thread than the loop's the loop allocates (the
  /// allocator and spilling are the loop's) while this one waits.
  object_block* allocate_block(std::size_t size) {
    if (is_loop_thread()) return new_block(size);
    return call_on_loop([size](process& p) { return p.new_block(size); });
  }

  /// Loop thread: keeps `w` to fail if the runtime ends before `w` is done.
  void add_pending(foreign_pending& w) noexcept {
    w.prev = nullptr;
    w.next = pending_;
    if (pending_) pending_->prev = &w;
    pending_ = &w;
  }
  void remove_pending(foreign_pending& w) noexcept {
    (w.prev ? w.prev->next : pending_) = w.next;
    if (w.next) w.next->prev = w.prev;
    w.prev = w.next = nullptr;
  }

  /// Loop thread, once the process is built: from now on other threads may hand it jobs
  /// (`calls`: the driver's API; `releases_only`: dropped refs and actor handles) and ring
  /// `bell`, the doorbell this process sleeps on.
  void open_handoff(doorbell& bell, runtime_gate::phase what) noexcept {
    bell_ = &bell;
    runtime_gate::instance().open(this, what, epoch);
  }
  /// Loop thread, before the runtime is destroyed: refuses new jobs, fails those queued and
  /// the waits of other threads, and returns once no other thread is inside the runtime.
  void close_handoff() noexcept {
    auto& gate = runtime_gate::instance();
    gate.close();
    for (;;) {
      const bool nobody_inside = !gate.anyone_inside();
      while (pending_) {
        foreign_pending& w = *pending_;
        remove_pending(w);
        w.ended(*this);
      }
      while (jobs_.maybe_waiting()) jobs_.run_some(*this, false);
      if (nobody_inside) return;
      sched_yield();
    }
  }

  /// Serves the loop once without waiting (takes in replies, sends queued work) when called
  /// on the loop thread. A caller whose refs are already ready does not run the loop; this
  /// keeps the workers fed while it carries on (a loop of ray::wait for one of n refs).
  void serve_once() {
    if (is_loop_thread() && !polling_)
      poll_guarded();  // never inside a poll (a task body it started)
  }

  /// Queues a coroutine to resume on the loop.
  void schedule(std::coroutine_handle<> h) { ready_.push_back(h); }

  /// Runs the loop until `done()` or `deadline`; returns done(). A run inside another one
  /// is a call's body blocking (in ray::get, ray::wait, ...): blocking_wait says so.
  template <class Done>
  bool run_until(Done&& done, clock::time_point deadline = clock::time_point::max()) {
    if (done()) return true;
    struct depth_guard {
      process& p;
      bool counted;
      ~depth_guard() {
        --p.loop_depth_;
        if (counted) p.blocking_wait(-1);
      }
    } depth{*this, ++loop_depth_ > 1 && blocking_wait(+1)};
    backoff bo(loop_depth_ > 1);  // a call's body blocked in a wait (see backoff)
    const auto spin = std::chrono::microseconds(hdr->spin_us);
    while (!done()) {
      if (!ready_.empty()) {
        auto h = ready_.front();
        ready_.pop_front();
        const std::uint64_t outer = std::exchange(call_mark, 0);
        h.resume();
        call_mark = outer;
        continue;
      }
      if (jobs_.maybe_waiting() && jobs_.run_some(*this, true) != 0) {
        bo.reset();
        worked_ = true;
        continue;
      }
      if (poll_guarded()) {
        bo.reset();
        worked_ = true;
        continue;
      }
      if (!timers_.empty() || deadline != clock::time_point::max()) {
        const auto now = bo.round_time();  // the backoff's reading (see there)
        if (fire_timers(now)) continue;
        if (now >= deadline) return done();
      }
      if (bo.pause(spin)) {
        // Idle: what a tide of calls left kept goes back (recycled.hpp), at most once a
        // second, as a loop that sleeps between tides (an actor whose next call waits on
        // another's) would otherwise give back and take again every tide. malloc's free
        // memory goes back once a whole such second passed without work after some: a
        // process that works in bursts keeps its pages, an idle one keeps only what it holds.
        if (const auto now = bo.round_time(); now - trimmed_at_ >= std::chrono::seconds(1)) {
          trim_recycled();
          if (heap_used_ && !worked_) {
            ::malloc_trim(0);
            heap_used_ = false;
          }
          heap_used_ = heap_used_ || worked_;
          worked_ = false;
          trimmed_at_ = now;
        }
        auto limit = std::chrono::nanoseconds(std::chrono::seconds(1));
        auto next =
            std::min(deadline, timers_.empty() ? clock::time_point::max() : timers_.begin()->first);
        if (next != clock::time_point::max())
          limit = std::min(
              limit, std::chrono::duration_cast<std::chrono::nanoseconds>(next - clock::now()));
        if (limit.count() > 0) sleep(limit);
        bo.reset();
      }
    }
    return true;
  }

  /// Calls fn(ctx) on the loop at `when`. Returns an id for cancel_timer.
  std::uint64_t add_timer(clock::time_point when, void (*fn)(void*), void* ctx) {
    std::uint64_t id = ++timer_ids_;
    timers_.emplace(when, timer{id, fn, ctx});
    return id;
  }
  void cancel_timer(std::uint64_t id) noexcept {
    for (auto it = timers_.begin(); it != timers_.end(); ++it)
      if (it->second.id == id) {
        timers_.erase(it);
        return;
      }
  }

 protected:
  /// Handles what arrived; true if anything did.
  virtual bool poll() = 0;
  /// Sleeps until a message may have arrived, at most `limit`.
  virtual void sleep(std::chrono::nanoseconds limit) = 0;
  /// For sleep()'s check: another thread handed the loop a job (or is about to).
  bool jobs_waiting() const noexcept { return jobs_.maybe_waiting(); }

  /// Set by a worker while a plain call's body runs (the innermost on the stack): the id its
  /// first nested call gets or got, so that the calls it and its descendants made here are
  /// those with an id from this one up. 0 while the loop resumes a coroutine.
  std::uint64_t call_mark = 0;

 private:
  bool poll_guarded() {
    const bool was = polling_;
    polling_ = true;
    struct reset {
      bool& flag;
      bool was;
      ~reset() { flag = was; }
    } r{polling_, was};
    return poll();
  }
  struct timer {
    std::uint64_t id;
    void (*fn)(void*);
    void* ctx;
  };
  bool fire_timers(clock::time_point now) {
    bool fired = false;
    while (!timers_.empty() && timers_.begin()->first <= now) {
      timer t = timers_.begin()->second;
      timers_.erase(timers_.begin());
      t.fn(t.ctx);
      fired = true;
    }
    return fired;
  }
  job_queue jobs_;  // from other threads
  doorbell* bell_ = nullptr;
  foreign_pending* pending_ = nullptr;  // other threads' waits the loop holds
  std::deque<std::coroutine_handle<>> ready_;
  std::multimap<clock::time_point, timer> timers_;
  std::uint64_t timer_ids_ = 0;
  bool polling_ = false;            // inside poll() on the loop thread
  std::uint32_t loop_depth_ = 0;    // run_until calls on the stack
  clock::time_point trimmed_at_{};  // when an idle loop last trimmed the recycled objects
  bool worked_ = false;             // the loop found work since trimmed_at_
  bool heap_used_ = false;          // ... before it, and malloc was not trimmed since
};

}  // namespace detail
CORAY_END_NAMESPACE

// What a process does with its objects' states (release, restore, make, the checks of
// refs): they need the complete process, and every user of a state_ptr needs them.
// begin <coray/detail/runtime/process_states.hpp>
/// What a process does with the states of its objects and actors: making them, releasing the
/// last handle (on the loop thread, or handed to it from another thread), bringing a spilled
/// one back, and the one check of refs before use (usable_state). Included by process.hpp,
/// after the process it needs.

#include <fmt/format.h>

// #include <coray/detail/runtime/process.hpp>: inlined above
// #include <coray/errors.hpp>: inlined above
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
// end <coray/detail/runtime/process_states.hpp>
// end <coray/detail/runtime/process.hpp>
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
// end <coray/detail/runtime/foreign.hpp>
// #include <coray/detail/runtime/object_state.hpp>: inlined above
// #include <coray/version.hpp>: inlined above
#include <type_traits>
#include <utility>

CORAY_BEGIN_NAMESPACE

template <class T>
class object_ref {
 public:
  using value_type = T;

  object_ref() noexcept = default;
  explicit object_ref(detail::state_ptr s) noexcept : s_(std::move(s)) {}

  /// False for a default-constructed ref.
  bool valid() const noexcept { return static_cast<bool>(s_); }
  /// True once the object exists or its call failed: get() will not wait.
  bool is_ready() const noexcept { return s_ && s_->settled(); }

  friend bool operator==(const object_ref& a, const object_ref& b) noexcept {
    return a.s_.get() == b.s_.get();
  }

  /// Runtime internals.
  const detail::state_ptr& state() const noexcept { return s_; }

  /// A ref travels inside values (put objects, call arguments, results) as its object's id;
  /// whatever holds the value keeps the object alive, and the process that decodes it gets a
  /// handle of its own (design.md, "Refs inside objects").
  template <class Archive>
  void serialize(Archive& ar) {
    std::uint64_t id = 0;
    if constexpr (Archive::is_loading) {
      ar(id);
      s_ = detail::decode_ref(id);
    } else {
      if (s_ && Archive::is_sizing)
        detail::collect_ref(s_);
      else if (s_)
        id = s_->id;  // published while the value was sized
      ar(id);
    }
  }

 private:
  detail::state_ptr s_;
};

namespace detail {
template <class T>
struct is_object_ref : std::false_type {};
template <class T>
struct is_object_ref<object_ref<T>> : std::true_type {
  using value_type = T;
};
template <class T>
inline constexpr bool is_object_ref_v = is_object_ref<std::remove_cvref_t<T>>::value;
}  // namespace detail

CORAY_END_NAMESPACE
// end <coray/object_ref.hpp>
// begin <coray/returns.hpp>
/// ray::returns<Ts...>: a task or actor method with several results, as Ray's `num_returns`.
/// A function returning `ray::returns<A, B>` gives its caller one ref per result, each
/// ready, got, passed on and freed on its own:
///
///   ray::returns<int, std::string> split(int x) { return {x / 2, std::to_string(x)}; }
///   auto [half, text] = ray::task<split>.remote(42);   // object_ref<int>, object_ref<string>
///   int h = ray::get(half);
///
/// In the process that runs the function each result is stored as an object of its own; the
/// call's refs become ready together, when it ends, and all fail with its error if it fails.

// #include <coray/version.hpp>: inlined above
#include <cstddef>
#include <tuple>
#include <type_traits>
#include <utility>

CORAY_BEGIN_NAMESPACE

template <class... Ts>
struct returns {
  static_assert(sizeof...(Ts) >= 1, "ray::returns<Ts...>: name at least one result type");
  static_assert((!std::is_reference_v<Ts> && ...),
                "ray::returns<Ts...>: results are values, not references");
  std::tuple<Ts...> values;

  returns() = default;
  template <class... A>
  requires(sizeof...(A) == sizeof...(Ts) && (std::is_constructible_v<Ts, A&&> && ...))
      returns(A&&... a)
      : values(std::forward<A>(a)...) {}  // NOLINT: as a tuple's, implicit

  static constexpr std::size_t size = sizeof...(Ts);
};

namespace detail {
template <class T>
inline constexpr bool is_returns_v = false;
template <class... Ts>
inline constexpr bool is_returns_v<returns<Ts...>> = true;
}  // namespace detail

CORAY_END_NAMESPACE
// end <coray/returns.hpp>
#include <cstddef>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE

template <class T>
class actor;
template <class T>
class generator;
template <class T>
class object_ref_generator;

namespace detail {

/// What a callee is: its parameters, its return type and how to call it (with the actor's
/// object for a member function).
template <class F>
struct function_traits {
  static constexpr bool is_function = false;
  static constexpr bool is_member = false;
};
template <class R, class... A>
struct function_traits<R (*)(A...)> {
  static constexpr bool is_function = true;
  static constexpr bool is_member = false;
  using return_type = R;
  using params = std::tuple<A...>;
  static constexpr std::size_t arity = sizeof...(A);
  template <auto F, class... X>
  static decltype(auto) call(void*, X&&... x) {
    return F(std::forward<X>(x)...);
  }
};
template <class R, class... A>
struct function_traits<R (*)(A...) noexcept> : function_traits<R (*)(A...)> {};

template <class C, class R, class... A>
struct member_traits {
  static constexpr bool is_function = true;
  static constexpr bool is_member = true;
  using class_type = C;
  using return_type = R;
  using params = std::tuple<A...>;
  static constexpr std::size_t arity = sizeof...(A);
  template <auto F, class... X>
  static decltype(auto) call(void* self, X&&... x) {
    return (static_cast<C*>(self)->*F)(std::forward<X>(x)...);
  }
};
template <class C, class R, class... A>
struct function_traits<R (C::*)(A...)> : member_traits<C, R, A...> {};
template <class C, class R, class... A>
struct function_traits<R (C::*)(A...) const> : member_traits<C, R, A...> {};
template <class C, class R, class... A>
struct function_traits<R (C::*)(A...) noexcept> : member_traits<C, R, A...> {};
template <class C, class R, class... A>
struct function_traits<R (C::*)(A...) const noexcept> : member_traits<C, R, A...> {};

/// The value a call produces: R, or X for a coroutine returning ray::async<X>.
template <class R>
struct call_result {
  using type = R;
};
template <class X>
struct call_result<async<X>> {
  using type = X;
};
/// ray::returns<Ts...>: the process running the call stores each result as an object of its
/// own and replies with a ref to each; the caller gets those refs (make_call.hpp).
template <class... Ts>
struct call_result<returns<Ts...>> {
  using type = std::tuple<object_ref<Ts>...>;
};
template <class... Ts>
struct call_result<async<returns<Ts...>>> {
  using type = std::tuple<object_ref<Ts>...>;
};
/// A streaming generator: the call's own result is its end (its items travel as a stream).
template <class T>
struct call_result<generator<T>> {
  using type = void;
};
template <class R>
using call_result_t = typename call_result<R>::type;

template <class R>
inline constexpr bool returns_several_v = false;
template <class... Ts>
inline constexpr bool returns_several_v<returns<Ts...>> = true;
template <class... Ts>
inline constexpr bool returns_several_v<async<returns<Ts...>>> = true;
/// What the caller of a function returning R gets: a ref to its result, or for ray::returns
/// one ref per result.
template <class R>
struct call_refs {
  using type =
      std::conditional_t<returns_several_v<R>, call_result_t<R>, object_ref<call_result_t<R>>>;
};
/// A streaming generator's caller gets the stream of its items' refs.
template <class T>
struct call_refs<generator<T>> {
  using type = object_ref_generator<T>;
};
template <class R>
using call_refs_t = typename call_refs<R>::type;

template <class T>
struct is_actor : std::false_type {};
template <class T>
struct is_actor<actor<T>> : std::true_type {};
template <class T>
inline constexpr bool is_actor_v = is_actor<std::remove_cvref_t<T>>::value;

/// A std::vector of object_refs: passed for a vector parameter, each element a dependency.
template <class T>
struct is_ref_vector : std::false_type {};
template <class U, class A>
struct is_ref_vector<std::vector<object_ref<U>, A>> : std::true_type {
  using value_type = U;
};
template <class T>
inline constexpr bool is_ref_vector_v = is_ref_vector<std::remove_cvref_t<T>>::value;

template <class P>
inline constexpr bool is_mutable_ref_v =
    std::is_lvalue_reference_v<P> && !std::is_const_v<std::remove_reference_t<P>>;

/// Whether argument A may be passed for parameter P.
template <class P, class A>
constexpr bool argument_fits() {
  using S = storage_type_t<std::remove_cvref_t<P>>;
  if constexpr (is_mutable_ref_v<P>)
    return false;
  else if constexpr (is_actor_v<P> || is_actor_v<A>)
    return std::is_same_v<std::remove_cvref_t<P>, std::remove_cvref_t<A>>;
  else if constexpr (std::is_same_v<S, std::remove_cvref_t<A>>)
    return true;  // the value itself: a ref for an object_ref<T> parameter travels as a ref
  else if constexpr (is_object_ref_v<A>)
    return std::is_same_v<typename is_object_ref<std::remove_cvref_t<A>>::value_type, S>;
  else if constexpr (is_ref_vector_v<A>)
    return std::is_same_v<std::vector<typename is_ref_vector<std::remove_cvref_t<A>>::value_type>,
                          S>;
  else if constexpr (wire_compatible_v<std::remove_cvref_t<P>, std::remove_cvref_t<A>>)
    return true;
  else
    return std::is_convertible_v<A, S>;
}

template <class Params, class... A, std::size_t... I>
constexpr bool arguments_fit(std::index_sequence<I...>) {
  return (argument_fits<std::tuple_element_t<I, Params>, A>() && ...);
}

template <class Params>
constexpr bool parameters_storable() {
  return []<std::size_t... I>(std::index_sequence<I...>) {
    return ((
        is_actor_v<std::tuple_element_t<I, Params>> ||
        is_encodable_v<storage_type_t<std::remove_cvref_t<std::tuple_element_t<I, Params>>>>)&&...);
  }
  (std::make_index_sequence<std::tuple_size_v<Params>>{});
}

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/signature.hpp>
// begin <coray/detail/runtime/stored_value.hpp>
/// How a value goes into an object and comes out: put_type_t (the type a value is stored
/// as), store_value (encoded inline or into a store block) and read_value (decoded, or the
/// object's error rethrown).

// #include <coray/codec.hpp>: inlined above
// #include <coray/detail/codec/codec_traits.hpp>: inlined above
// #include <coray/detail/runtime/object_state.hpp>: inlined above
// #include <coray/detail/runtime/process.hpp>: inlined above
#include <cstddef>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// The type a value is stored as: a span is stored as a vector, a string literal as a string.
template <class T>
using put_type_t = std::conditional_t<std::is_same_v<std::decay_t<T>, const char*> ||
                                          std::is_same_v<std::decay_t<T>, char*>,
                                      std::string, storage_type_t<std::decay_t<T>>>;

/// Room for a value of `size` encoded bytes in `s`, which stays pending: inline bytes below
/// the threshold, else a new block in the store (pending, so never spilled while written).
/// From any thread that may use `p`: the loop allocates the block.
inline std::span<std::byte> reserve_value(process& p, object_state& s, std::size_t size) {
  if (size > p.inline_threshold()) {
    auto adopt = [&s, size](process& lp) {
      s.block = lp.new_block(size);
      lp.block_adopted(s);
    };
    if (p.is_loop_thread())
      adopt(p);
    else
      p.call_on_loop(adopt);
    return {s.block->data(), size};
  }
  s.bytes.resize(size);
  return {s.bytes.data(), size};
}

/// The encoded size of `v`; the refs and actor handles inside it go to `held`, for what
/// will hold the value to keep, and the refs are published.
template <class V>
std::size_t size_with_refs(process& p, const V& v, object_contents& held) {
  std::size_t size;
  {
    const collecting_refs collect(held);
    size = encoded_size(v);
  }
  if (!held.refs.empty()) [[unlikely]] {
    if (p.is_loop_thread())
      p.publish_refs(held.refs);
    else
      p.call_on_loop([&held](process& lp) { lp.publish_refs(held.refs); });
  }
  return size;
}

/// Encodes `v` into `s`: inline below the threshold, else into a new block in the store.
/// The objects and actors whose refs and handles it holds live as long as `s`.
template <class V>
void store_value(process& p, object_state& s, const V& v) {
  if constexpr (!has_serialize_part_v<V>) {
    const std::size_t size = encoded_size(v);  // holds no ref or handle
    encode_to(reserve_value(p, s, size), v);
  } else {
    object_contents held;
    encode_to(reserve_value(p, s, size_with_refs(p, v, held)), v);
    if (!held.empty()) [[unlikely]] {
      if (!held.actors.empty()) {
        auto hold = [&held](process& lp) {
          for (std::uint64_t a : held.actors) lp.actor_handle(a, +1);
        };
        if (p.is_loop_thread())
          hold(p);
        else
          p.call_on_loop(hold);
      }
      s.set_contained(std::make_unique<object_contents>(std::move(held)));
    }
  }
  s.st.store(object_state::status::ready, std::memory_order_release);
}

template <class T>
T read_value(const object_state& s) {
  s.rethrow_if_failed();
  if constexpr (!std::is_void_v<T>) return decode<T>(s.value_bytes());
}

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/stored_value.hpp>
// begin <coray/generator.hpp>
/// Streaming generators, as Ray's `num_returns="streaming"`: a task or actor method that
/// returns `ray::generator<T>` and `co_yield`s each item gives its caller a
/// `ray::object_ref_generator<T>`, a stream of refs it consumes while the items are made:
///
///   ray::generator<int> count_to(int n) {
///     for (int i = 0; i < n; ++i) co_yield i;
///   }
///   auto stream = ray::task<count_to>.remote(5);
///   for (ray::object_ref<int> item : stream) use(ray::get(item));   // blocking
///   while (auto item = co_await stream.next()) use(co_await ray::get(*item));  // coroutine
///
/// Items arrive in order. The producer runs at most `stream_window` (1,024) items ahead of
/// its consumer, then waits. An exception in the generator ends the stream with that error
/// after the items made before it; a crashed worker likewise gives ray::worker_crashed (an
/// actor's death ray::actor_died), or, when the call's retries allow, the generator runs
/// again from the start and the items already delivered are skipped (a generator retried
/// must yield the same items). cancel(), or dropping the stream before its end, stops the
/// producer. Streams are made and consumed in the driver (any of its threads) or in a task
/// or actor (its loop thread). design.md, "Streaming generators".

// #include <coray/detail/runtime/foreign.hpp>: inlined above
// #include <coray/detail/runtime/process.hpp>: inlined above
// begin <coray/detail/runtime/state_awaiter.hpp>
/// Waiting for one object to settle: state_awaiter suspends a coroutine until it does (its
/// waiter resumes it through the loop), block_until_settled runs the loop until it does.

// #include <coray/detail/runtime/foreign.hpp>: inlined above
// #include <coray/detail/runtime/object_state.hpp>: inlined above
// #include <coray/detail/runtime/process.hpp>: inlined above
#include <coroutine>
#include <exception>
#include <optional>
#include <span>
#include <utility>

CORAY_BEGIN_NAMESPACE
namespace detail {

inline void resume_waiter(void* ctx, object_state&) {
  process& p = *process::current();
  p.coroutine_suspended(-1);
  p.schedule(std::coroutine_handle<>::from_address(ctx));
}

/// Runs the loop until `s` settles. Loop thread. Out of line: the callers' fast path (the
/// object is already there) stays small enough to inline.
[[gnu::noinline]] inline void run_until_settled(object_state& s) {
  process::require().run_until([&] { return s.settled(); });
}
/// Blocks the calling (loop) thread until `s` settles, running the loop meanwhile.
inline void block_until_settled(object_state& s) {
  if (!s.settled()) [[unlikely]]
    run_until_settled(s);
}

/// read_when_settled on a thread other than the loop's: waits for the loop to settle
/// `states` and pins their values while `read` runs.
template <class Read>
[[gnu::noinline]] auto read_when_settled_elsewhere(const char* what,
                                                   std::span<object_state* const> states,
                                                   Read& read) {
  foreign_entry e(what);
  foreign_wait w(e.get(), states, states.size(), clock::time_point::max(), true);
  return read();
}

/// Blocks until `states` have all settled, then returns `read()`: on the loop thread running
/// the loop, on another thread waiting for it, with the values pinned while `read` runs.
/// Always inline: the common case, the loop's thread and the objects already there, is a
/// few tests then `read()` (out of line, a get of a ready int cost 93 instructions, not 71).
template <class Read>
[[gnu::always_inline]] inline auto read_when_settled(const char* what,
                                                     std::span<object_state* const> states,
                                                     Read&& read) {
  if (!needs_handoff()) [[likely]] {
    for (object_state* s : states) block_until_settled(*s);
    return read();
  }
  return read_when_settled_elsewhere(what, states, read);
}

/// Whether an awaitable of ray::get or ray::wait has been used: awaited, converted,
/// .get()-ed or moved from. One that never was, the statement `ray::get(ref);`, waits in
/// its destructor (see get_awaitable) unless that destructor runs while an exception
/// unwinds the stack, which it then leaves alone: the error in flight is the one to report.
class use_tracker {
 public:
  use_tracker() noexcept = default;
  use_tracker(use_tracker&& o) noexcept : used_(std::exchange(o.used_, true)) {}
  use_tracker& operator=(use_tracker&&) = delete;
  void mark() noexcept { used_ = true; }
  /// In the owner's destructor: never used, and no exception is being unwound (an awaitable
  /// made and dropped inside a destructor that runs during unwinding does not wait either).
  /// Costs nothing on the used path: the awaitable's constructor reads no exception state.
  bool discarded() const noexcept { return !used_ && std::uncaught_exceptions() == 0; }

 private:
  bool used_ = false;
};

/// The waiting half of an awaitable of one object: suspends until it settles, or blocks
/// in the conversion forms (running the loop on its thread; waiting for it on another).
class state_awaiter {
 public:
  explicit state_awaiter(state_ptr s) : s_(std::move(s)) {}
  state_awaiter(state_awaiter&&) noexcept = default;
  bool await_ready() noexcept {
    used_.mark();
    return s_->settled();
  }
  void await_suspend(std::coroutine_handle<> h) {
    s_->waiters.push_back({&resume_waiter, h.address()});
    process::current()->coroutine_suspended(+1);
  }

 protected:
  ~state_awaiter() = default;
  template <class Read>
  auto read_settled(Read&& read) {
    used_.mark();
    object_state* s = s_.get();
    return read_when_settled("ray::get", {&s, 1}, [&] { return read(*s_); });
  }
  /// For the destructor of an awaitable never used: waits for the object to settle and
  /// raises its error. The used case, every get but the statement, is one test inline.
  void settle_if_discarded() {
    if (used_.discarded()) [[unlikely]]
      settle_discarded();
  }
  state_ptr s_;

 private:
  [[gnu::noinline]] void settle_discarded() {
    object_state* s = s_.get();
    if (!s || !all_usable({&s, 1})) return;
    read_settled([](const object_state& st) { st.rethrow_if_failed(); });
  }

  use_tracker used_;
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/state_awaiter.hpp>
// #include <coray/detail/runtime/stream_state.hpp>: inlined above
// #include <coray/errors.hpp>: inlined above
// #include <coray/object_ref.hpp>: inlined above
#include <coroutine>
#include <cstdint>
#include <exception>
#include <iterator>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

CORAY_BEGIN_NAMESPACE

/// The return type of a generator body: a coroutine that `co_yield`s values of T. Run in
/// the process that runs the call; also usable on its own as an input range.
template <class T>
class generator {
  static_assert(!std::is_reference_v<T>, "ray::generator<T>: items are values");

 public:
  struct promise_type {
    const T* current = nullptr;
    std::exception_ptr error;

    generator get_return_object() noexcept {
      return generator(std::coroutine_handle<promise_type>::from_promise(*this));
    }
    std::suspend_always initial_suspend() noexcept { return {}; }
    std::suspend_always final_suspend() noexcept { return {}; }
    std::suspend_always yield_value(const T& v) noexcept {
      current = std::addressof(v);
      return {};
    }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { error = std::current_exception(); }
    template <class U>
    std::suspend_never await_transform(U&&) = delete;  // a generator body does not co_await
  };

  class iterator {
   public:
    using value_type = T;
    using difference_type = std::ptrdiff_t;
    explicit iterator(std::coroutine_handle<promise_type> h = {}) noexcept : h_(h) {}
    const T& operator*() const noexcept { return *h_.promise().current; }
    iterator& operator++() {
      h_.resume();
      rethrow();
      return *this;
    }
    void operator++(int) { ++*this; }
    bool operator==(std::default_sentinel_t) const noexcept { return !h_ || h_.done(); }
    void rethrow() const {
      if (h_.done() && h_.promise().error) std::rethrow_exception(h_.promise().error);
    }

   private:
    std::coroutine_handle<promise_type> h_;
  };

  generator(generator&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  generator& operator=(generator o) noexcept {
    std::swap(h_, o.h_);
    return *this;
  }
  ~generator() {
    if (h_) h_.destroy();
  }

  /// Runs the body to its first item (or its end). Once only.
  iterator begin() {
    iterator it(h_);
    if (h_) ++it;
    return it;
  }
  std::default_sentinel_t end() const noexcept { return {}; }

 private:
  explicit generator(std::coroutine_handle<promise_type> h) noexcept : h_(h) {}
  std::coroutine_handle<promise_type> h_;
};

/// The caller's side of a streaming generator's call: the refs to its items, in order, as
/// they are made. Move-only (one consumer), used in the process that made the call.
template <class T>
class object_ref_generator {
 public:
  object_ref_generator() noexcept = default;
  explicit object_ref_generator(std::shared_ptr<detail::stream_state> s) noexcept
      : s_(std::move(s)) {}
  object_ref_generator(object_ref_generator&& o) noexcept = default;
  object_ref_generator& operator=(object_ref_generator&& o) noexcept {
    if (this != &o) {
      stop_quietly();
      s_ = std::move(o.s_);
    }
    return *this;
  }
  /// Dropping a stream before its end stops its producer.
  ~object_ref_generator() { stop_quietly(); }

  /// The next item's ref, or nullopt at the stream's end; throws the call's error (after the
  /// items made before it). `co_await s.next()` in a coroutine; `.get()` (or converting to
  /// the optional) blocks.
  class next_awaitable : detail::state_awaiter {
   public:
    next_awaitable(object_ref_generator& g, detail::state_ptr s)
        : detail::state_awaiter(std::move(s)), g_(g) {}
    using detail::state_awaiter::await_ready;
    using detail::state_awaiter::await_suspend;
    std::optional<object_ref<T>> await_resume() { return g_.take(); }
    std::optional<object_ref<T>> get() {
      read_settled([](const detail::object_state&) {});
      return g_.take();
    }
    operator std::optional<object_ref<T>>() { return get(); }  // NOLINT: blocking form

   private:
    object_ref_generator& g_;
  };

  next_awaitable next() { return next_awaitable(*this, awaited()); }

  /// Blocking iteration: `for (ray::object_ref<T> item : stream)`.
  class iterator {
   public:
    using value_type = object_ref<T>;
    using difference_type = std::ptrdiff_t;
    explicit iterator(object_ref_generator* g) : g_(g) { ++*this; }
    const object_ref<T>& operator*() const noexcept { return *item_; }
    iterator& operator++() {
      item_ = g_->next().get();
      return *this;
    }
    void operator++(int) { ++*this; }
    bool operator==(std::default_sentinel_t) const noexcept { return !item_; }

   private:
    object_ref_generator* g_;
    std::optional<object_ref<T>> item_;
  };
  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() const noexcept { return {}; }

  /// Stops the producer: its call is cancelled, and the next item not yet delivered is a
  /// ray::cancelled error. Items delivered before stay.
  void cancel() {
    require();
    detail::on_loop("ray::object_ref_generator::cancel", [&](detail::process& p) {
      if (!s_->ended && s_->id) p.stream_credit(s_->id, 0);
      return 0;
    });
  }
  /// The call's id (ray::cancel takes it too).
  std::uint64_t id() const noexcept { return s_ ? s_->id : 0; }
  bool valid() const noexcept { return static_cast<bool>(s_); }

 private:
  void require() const {
    if (!s_) throw usage_error("ray::object_ref_generator: the stream is empty (moved from)");
  }
  /// What the consumer waits on before it takes the next item: the item, if delivered (in
  /// a worker its value may still be on its way); else a state settled when one arrives or
  /// the stream ends.
  detail::state_ptr awaited() {
    require();
    return detail::on_loop("ray::object_ref_generator::next", [&](detail::process& p) {
      detail::stream_state& s = *s_;
      if (!s.items.empty()) return s.items.front();
      if (!s.wake) {
        s.wake = detail::make_state(p);
        if (s.ended) s.wake->set_inline({});
      }
      return s.wake;
    });
  }
  /// Takes the next item (delivered now, or the stream ended): its ref, or the end.
  std::optional<object_ref<T>> take() {
    return detail::on_loop(
        "ray::object_ref_generator::next", [&](detail::process& p) -> std::optional<object_ref<T>> {
          detail::stream_state& s = *s_;
          if (s.items.empty()) {  // the end, not an item
            if (s.error) std::rethrow_exception(s.error);
            return std::nullopt;
          }
          detail::state_ptr item = std::move(s.items.front());
          s.items.pop_front();
          ++s.base;
          if (!s.ended &&
              s.base + detail::stream_window >= s.credited + detail::stream_window / 2) {
            s.credited = s.base + detail::stream_window;
            p.stream_credit(s.id, s.credited);
          }
          return object_ref<T>(std::move(item));
        });
  }
  void stop_quietly() noexcept {
    if (!s_) return;
    try {
      if (detail::process::here() || detail::runtime_gate::instance().accepts_calls()) cancel();
    } catch (...) {  // the runtime is ending: its calls end with it
    }
    s_.reset();
  }

  std::shared_ptr<detail::stream_state> s_;
};

namespace detail {
template <class T>
inline constexpr bool is_generator_v = false;
template <class T>
inline constexpr bool is_generator_v<generator<T>> = true;
}  // namespace detail

CORAY_END_NAMESPACE
// end <coray/generator.hpp>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// Walks a call's argument records in a worker.
class argument_reader {
 public:
  argument_reader(segment& seg, std::span<const std::byte> args) : seg_(seg), reader_(args) {}
  std::span<const std::byte> next() { return reader_.next_value(seg_); }

 private:
  segment& seg_;
  call_reader reader_;
};

template <class T>
struct is_span_parameter : std::false_type {};
template <class E, std::size_t N>
struct is_span_parameter<std::span<E, N>> : std::true_type {};

/// Holds one decoded argument for the duration of the call: a view into the message or the
/// store for span/string_view parameters, else a decoded value.
template <class P>
class argument {
  using D = std::remove_cvref_t<P>;
  static constexpr bool is_view =
      std::is_same_v<D, std::string_view> || is_span_parameter<D>::value;
  using held = std::conditional_t<is_view, D, storage_type_t<D>>;

 public:
  explicit argument(std::span<const std::byte> bytes) : v_(decode<held>(bytes)) {}
  decltype(auto) pass() {
    if constexpr (std::is_rvalue_reference_v<P> || !std::is_reference_v<P>)
      return held(std::move(v_));
    else
      return static_cast<const held&>(v_);
  }

 private:
  held v_;
};

template <class Params, std::size_t... I>
auto decode_arguments(argument_reader& r, std::index_sequence<I...>) {
  // Braced initialisation evaluates left to right: arguments are read in order.
  return std::tuple<argument<std::tuple_element_t<I, Params>>...>{
      argument<std::tuple_element_t<I, Params>>(r.next())...};
}

/// A ref to `v` stored as an object of this process (exported to the driver with the reply
/// that holds the ref).
template <class T>
object_ref<T> store_here(const T& v) {
  process& p = process::require();
  auto s = make_state(p);
  store_value(p, *s, v);
  return object_ref<T>(std::move(s));
}

/// Sizes `v` and calls `send(size, fill, held)`: `fill(out)` writes its `size` bytes, and
/// `held` lists the refs and actor handles inside it (null for none), which what carries the
/// value keeps alive.
template <class V, class Send>
decltype(auto) send_encoded(const V& v, Send&& send) {
  auto fill_of = [&v](std::size_t size) {
    return [&v, size](std::byte* out) { encode_to(std::span<std::byte>(out, size), v); };
  };
  if constexpr (has_serialize_part_v<V>) {
    object_contents held;
    std::size_t size;
    {
      const collecting_refs collect(held);
      size = encoded_size(v);
    }
    return send(size, fill_of(size), held.empty() ? nullptr : &held);
  } else {
    const std::size_t size = encoded_size(v);  // holds no ref or handle
    return send(size, fill_of(size), nullptr);
  }
}

template <class V>
void reply(call_host& w, std::uint64_t id, const V& v) {
  if constexpr (is_returns_v<V>) {
    // ray::returns: each result an object of its own, and the reply a ref to each.
    reply(w, id,
          std::apply([](const auto&... x) { return std::tuple(store_here(x)...); }, v.values));
  } else {
    send_encoded(v, [&](std::size_t size, auto fill, const object_contents* held) {
      w.reply_value(id, size, fill, held);
    });
  }
}

/// Runs calls of F (a free function, or a member function of an actor) in this process:
/// decodes the arguments, calls, and replies with the value or the exception.
template <auto F>
struct invoker {
  using traits = function_traits<decltype(F)>;
  using params = typename traits::params;
  using R = typename traits::return_type;
  static constexpr auto indices = std::make_index_sequence<traits::arity>{};

  template <class Args>
  static decltype(auto) call(void* self, Args& args) {
    return std::apply(
        [self](auto&... a) -> decltype(auto) {
          return traits::template call<F>(self, a.pass()...);
        },
        args);
  }

  static void invoke(invocation& inv) {
    if constexpr (is_generator_v<R>) {
      run_generator(inv);
      if constexpr (traits::is_member) inv.self.call_finished(inv.group);
    } else if constexpr (is_async<R>::value) {
      // The body outlives this message: keep a copy of its arguments.
      run_coroutine(inv, std::vector<std::byte>(inv.args.begin(), inv.args.end()));
    } else {
      if constexpr (traits::is_member)
        if (inv.threaded) return hand_to_thread(inv);
      try {
        argument_reader reader(inv.seg, inv.args);
        auto args = decode_arguments<params>(reader, indices);
        if constexpr (std::is_void_v<R>) {
          call(inv.instance, args);
          inv.self.reply_value(inv.task_id, 0, [](std::byte*) {});
        } else {
          reply(inv.self, inv.task_id, call(inv.instance, args));
        }
      } catch (...) {
        inv.fail();
      }
      if constexpr (traits::is_member) inv.self.call_finished(inv.group);
    }
  }

  /// A streaming generator (design.md, "Streaming generators"): each item is sent as it is
  /// made; the reply, after the last, ends the stream (with the error, after the items made
  /// before it). On the loop thread, also in a threaded actor.
  static void run_generator(invocation& inv) {
    using item = typename std::remove_cvref_t<R>::iterator::value_type;
    static_assert(is_encodable_v<item>,
                  "ray::generator<T>: T cannot be sent between processes; give it a "
                  "`template <class Archive> void serialize(Archive&)` member");
    try {
      argument_reader reader(inv.seg, inv.args);
      auto args = decode_arguments<params>(reader, indices);
      R g = call(inv.instance, args);
      for (const item& v : g) {
        const bool more =
            send_encoded(v, [&](std::size_t size, auto fill, const object_contents* h) {
              return inv.self.stream_item(inv.task_id, size, fill, h);
            });
        if (!more) break;  // the consumer stopped the stream
      }
      inv.self.stream_end(inv.task_id);
      inv.self.reply_value(inv.task_id, 0, [](std::byte*) {});
    } catch (...) {
      try {
        inv.self.stream_end(inv.task_id);
      } catch (...) {  // the error below is the reply
      }
      inv.fail();
    }
  }

  using decoded_arguments =
      decltype(decode_arguments<params>(std::declval<argument_reader&>(), indices));

  /// A threaded actor's plain method, run on one of its method threads. Its arguments are
  /// decoded on the loop thread (a handle among them is made there), from a copy of their
  /// bytes: views (spans, string_views) outlive the message.
  struct threaded_method final : threaded_call {
    explicit threaded_method(const invocation& inv)
        : threaded_call(inv),
          self(inv.instance),
          bytes(inv.args.begin(), inv.args.end()),
          args(decode(inv.seg, bytes)) {}
    static decoded_arguments decode(segment& seg, std::span<const std::byte> b) {
      argument_reader reader(seg, b);
      return decode_arguments<params>(reader, indices);
    }
    void invoke() override {
      if constexpr (std::is_void_v<R>)
        call(self, args);
      else
        value.emplace(call(self, args));
    }
    void send_value(call_host& host, std::uint64_t task_id) override {
      if constexpr (std::is_void_v<R>)
        host.reply_value(task_id, 0, [](std::byte*) {});
      else
        detail::reply(host, task_id, *value);
    }
    void* self;
    std::vector<std::byte> bytes;
    decoded_arguments args;
    std::optional<std::conditional_t<std::is_void_v<R>, int, std::remove_cvref_t<R>>> value;
  };

  static void hand_to_thread(invocation& inv) {
    try {
      inv.self.run_on_thread(std::make_unique<threaded_method>(inv));
    } catch (...) {
      inv.fail();
      inv.self.call_finished(inv.group);
    }
  }

  static detached run_coroutine(invocation inv, std::vector<std::byte> bytes) {
    call_host& w = inv.self;
    segment& seg = inv.seg;
    const std::uint64_t id = inv.task_id;
    void* self = inv.instance;
    inv.args = bytes;  // the copy outlives the message
    try {
      argument_reader reader(seg, bytes);
      auto args = decode_arguments<params>(reader, indices);
      if constexpr (std::is_void_v<call_result_t<R>>) {
        co_await call(self, args);
        w.reply_value(id, 0, [](std::byte*) {});
      } else {
        auto value = co_await call(self, args);
        reply(w, id, value);
      }
    } catch (...) {
      inv.fail();
    }
    if constexpr (traits::is_member) w.call_finished(inv.group);
  }

  static inline const bool registered = register_function(entity_id<F>, &invoke, entity_name_v<F>);
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/invoker.hpp>
// #include <coray/detail/runtime/registry.hpp>: inlined above
// #include <coray/detail/runtime/signature.hpp>: inlined above
// #include <coray/detail/runtime/stored_value.hpp>: inlined above
// #include <coray/object_ref.hpp>: inlined above
#include <cstddef>
#include <cstdint>
#include <tuple>
#include <type_traits>
#include <utility>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// The actor type's id: a hash of its name. (Not of a function template instance's name:
/// clang prints those without their template arguments.)
template <class T>
inline constexpr std::uint64_t actor_type_id = fnv1a(type_name_v<T>);

/// How a constructor argument travels: refs by their values, literals as strings.
template <class A>
struct constructor_arg {
  using type = put_type_t<A>;
};
template <class A>
requires is_object_ref_v<A>
struct constructor_arg<A> {
  using type = typename is_object_ref<std::remove_cvref_t<A>>::value_type;
};
template <class A>
requires is_actor_v<A>
struct constructor_arg<A> {
  using type = std::remove_cvref_t<A>;
};
template <class A>
using constructor_arg_t = typename constructor_arg<A>::type;

/// Builds T in the actor's process from arguments of types S...
template <class T, class... S>
struct actor_constructor {
  static void construct(S... args, call_host& w, std::uint64_t id) {
    T* obj = new T(std::move(args)...);
    w.set_instance(obj, [](void* p) { delete static_cast<T*>(p); });
    w.reply_value(id, 0, [](std::byte*) {});
  }
  static void invoke(invocation& inv) {
    // Its output is shown under its class, or the name the type gives (ray::process: the
    // target function's).
    if constexpr (requires { T::output_name(); })
      inv.self.name_output(T::output_name());
    else
      inv.self.name_output(type_name_v<T>);
    try {
      argument_reader reader(inv.seg, inv.args);
      auto args = decode_arguments<std::tuple<S...>>(reader, std::index_sequence_for<S...>{});
      std::apply([&](auto&... a) { construct(a.pass()..., inv.self, inv.task_id); }, args);
    } catch (...) {
      inv.self.reply_error(inv.task_id, describe_current_exception(type_name_v<T>));
    }
  }
  static void marker() {}
  static inline const bool registered = register_function(
      entity_id<&actor_constructor::marker>, &invoke, entity_name_v<&actor_constructor::marker>);
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/actor_constructor.hpp>
// #include <coray/detail/runtime/actor_state.hpp>: inlined above
// begin <coray/detail/runtime/driver.hpp>
/// What public code may ask of the driver beyond any process's loop: the narrow interface
/// ray::spawn, the pools and the process introspection reach it through. `process::driver()`
/// gives it in the driver and null in a worker; the implementation is `local_driver`
/// (local_driver.hpp), which runtime.hpp builds.

#include <fmt/format.h>

// #include <coray/detail/runtime/call_message.hpp>: inlined above
// begin <coray/detail/runtime/output_options.hpp>
/// What the supervisor does with its processes' output (runtime_options::log_to_driver and
/// log_directory): the log monitor's settings (log_monitor.hpp), apart so that the driver's
/// interface names them without the monitor.

// #include <coray/version.hpp>: inlined above
#include <string>

CORAY_BEGIN_NAMESPACE
namespace detail {

struct output_options {
  bool to_driver = true;
  std::string directory = {};  // empty: no files
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/output_options.hpp>
// #include <coray/detail/runtime/process.hpp>: inlined above
// begin <coray/detail/runtime/state_records.hpp>
/// What the state API (coray/state.hpp) reports, as the driver's parts describe it: the
/// records of tasks, actors and worker processes, and the bounded history of finished calls
/// that call_lifecycle keeps. The records are values, copied out of the loop's tables.

// #include <coray/version.hpp>: inlined above
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace state {

/// A call's state, as Ray's state API names them.
enum class task_state {
  waiting_for_dependencies,  // Ray's PENDING_ARGS_AVAIL: an object_ref argument is not ready
  queued,                    // ready, waiting for a worker, resources, or its actor's turn
  running,                   // sent to its process
  finished,
  failed,  // ended with an error (its own, a dependency's, a crash, a cancel)
};
enum class actor_state { pending_creation, alive, restarting, dead };
enum class worker_kind { task_worker, actor };
/// Where an object's value lies (`ray memory`'s columns).
enum class object_location {
  pending,       // not computed yet
  inline_value,  // small: kept in the driver's memory, travels inside messages
  store,         // in the shared-memory object store
  spilled,       // written to the spill file (runtime_options::spill_directory)
  failed,        // holds an error
};

constexpr std::string_view to_string(task_state s) noexcept {
  constexpr std::string_view names[] = {"WAITING_FOR_DEPENDENCIES", "QUEUED", "RUNNING", "FINISHED",
                                        "FAILED"};
  return names[static_cast<int>(s)];
}
constexpr std::string_view to_string(actor_state s) noexcept {
  constexpr std::string_view names[] = {"PENDING_CREATION", "ALIVE", "RESTARTING", "DEAD"};
  return names[static_cast<int>(s)];
}
constexpr std::string_view to_string(object_location l) noexcept {
  constexpr std::string_view names[] = {"PENDING", "INLINE", "STORE", "SPILLED", "FAILED"};
  return names[static_cast<int>(l)];
}

struct task_info {
  std::uint64_t id = 0;
  std::string name;  // the function or method, as the registry spells it ("ns::f", "c::incr")
  task_state state = task_state::queued;
  bool actor_call = false;     // a method call (or an actor's construction)
  int pid = 0;                 // of the process it was sent to; 0 if none (yet)
  int attempt = 1;             // 2 and up when it is retried
  std::uint64_t actor_id = 0;  // the actor called; 0 for a task
};

struct actor_info {
  std::uint64_t id = 0;
  std::string class_name;
  std::string name;  // given with actor_options::name; empty if none
  actor_state state = actor_state::pending_creation;
  int pid = 0;  // its current process, or the last one once dead
  int restarts = 0;
  std::string death_cause;  // once dead, why
  int node = 0;             // the cluster node (MPI rank) its process runs on; 0 outside a cluster
};

struct worker_info {
  int pid = 0;  // 0 while it starts
  worker_kind kind = worker_kind::task_worker;
  bool alive = false;
  std::uint32_t calls_in_flight = 0;  // task workers: calls sent and not done
  std::uint64_t actor_id = 0;         // actors: whose process it is
  /// The GPUs it holds now, as CUDA_VISIBLE_DEVICES names them: an actor's for its life, a
  /// task worker's those of the calls it runs; empty for none.
  std::vector<std::string> gpu_ids;
  int node = 0;  // the cluster node (MPI rank) it runs on; 0 outside a cluster (its pid is
                 // that node's)
  /// On another node: its CPU seconds and resident bytes as its node last reported them
  /// (each second); -1 and 0 for this machine's processes (read /proc for those) and before
  /// the first report.
  double cpu_seconds = -1;
  std::uint64_t rss_bytes = 0;
};

/// An object the driver holds: each one with a value in the store or the spill file, and each
/// one a ref inside a value has named (those have an id; an object only its handles name
/// has 0).
struct object_info {
  std::uint64_t id = 0;
  std::size_t size = 0;  // of its encoded value; 0 while pending
  object_location location = object_location::pending;
  std::uint32_t handles = 0;     // object_refs to it in the driver
  std::uint32_t store_refs = 0;  // references to its store block (the driver's and workers')
  std::uint32_t pins = 0;        // readers of its block in place (views, calls in flight)
  std::uint32_t contained = 0;   // refs and actor handles inside its value it keeps alive
};

}  // namespace state

namespace detail {

/// A finished call as the state API's history keeps it.
struct history_entry {
  std::uint64_t id;
  std::string_view name;  // registry names are constants
  int pid;                // of the task worker it ran on; 0 for an actor's call
  std::uint64_t actor;    // the actor it called; 0 for a task
  std::uint16_t attempt;
  bool failed;
};

/// A finished call as the timeline keeps it (runtime_options::record_timeline): the
/// driver's clock (steady, ns) when it was submitted, last sent to its process (0 if it
/// never was) and settled.
struct timeline_entry {
  std::uint64_t id;
  std::string_view name;
  int pid;  // the process it ran in (a task worker's or its actor's); 0 if none
  std::uint64_t actor;
  std::uint16_t attempt;
  bool failed;
  std::int64_t submitted_ns, sent_ns, ended_ns;
  std::uint64_t argument_bytes;  // its message's arguments and store blocks
};

/// The last `capacity` entries recorded, oldest evicted first. Recording is a few stores
/// into a ring allocated once: it is on every call's end. The ring's memory is not written
/// until entries are (a runtime's start does not touch 10,000 entries' pages).
template <class Entry>
class bounded_ring {
  static_assert(std::is_trivially_copyable_v<Entry> && std::is_trivially_destructible_v<Entry>);

 public:
  using entry = Entry;
  explicit bounded_ring(std::size_t capacity = 0)
      : ring_(capacity ? std::allocator<Entry>().allocate(capacity) : nullptr),
        capacity_(capacity) {}
  bounded_ring(const bounded_ring&) = delete;
  bounded_ring& operator=(const bounded_ring&) = delete;
  ~bounded_ring() {
    if (ring_) std::allocator<Entry>().deallocate(ring_, capacity_);
  }

  void record(const Entry& e) noexcept {
    if (!capacity_) return;
    std::construct_at(ring_ + next_, e);
    if (++next_ == capacity_) next_ = 0;
    if (size_ < capacity_) ++size_;
  }
  /// Oldest first.
  template <class F>
  void for_each(F&& f) const {
    std::size_t i = size_ < capacity_ ? 0 : next_;
    for (std::size_t k = 0; k < size_; ++k) {
      f(ring_[i]);
      if (++i == capacity_) i = 0;
    }
  }
  std::size_t size() const noexcept { return size_; }
  std::size_t capacity() const noexcept { return capacity_; }

 private:
  Entry* ring_;  // the first size_ entries (in ring order) are constructed
  std::size_t capacity_;
  std::size_t next_ = 0;  // where the next entry goes
  std::size_t size_ = 0;
};

/// The last calls that ended (runtime_options::task_history).
using task_history = bounded_ring<history_entry>;
/// The last calls that ended, with their times (runtime_options::record_timeline): in
/// tick_clock ticks while in the ring, steady_clock nanoseconds once read out.
using call_timeline = bounded_ring<timeline_entry>;

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/state_records.hpp>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// How the supervisor starts worker processes (ray::start_method, as the driver passes it on).
enum class start_method_id : std::uint32_t { fork = 0, spawn = 1 };

/// What the runtime builds a driver from (ray::runtime_options, resolved).
struct driver_config {
  std::uint32_t num_workers;  // 0: the usable cores
  std::uint32_t max_actors;
  std::size_t object_store_bytes;  // 0: 30% of usable memory
  start_method_id method;
  std::size_t inline_threshold;
  std::uint32_t spin_us;
  std::uint32_t max_tasks_in_flight_per_worker;
  std::vector<std::string> argv;            // empty: /proc/self/cmdline's
  std::string spill_directory;              // empty: no spilling
  std::optional<double> num_cpus;           // unset: CORAY_NUM_CPUS, else the usable cores
  std::optional<double> num_gpus;           // unset: CORAY_NUM_GPUS, else the GPUs detected
  std::map<std::string, double> resources;  // empty: CORAY_RESOURCES's
  std::vector<std::string> gpu_ids;         // filled in by make_local_driver with the above
  output_options output;                    // workers' stdout and stderr
  std::size_t task_history = 10000;         // finished calls the state API keeps
  bool record_timeline = false;             // for ray::timeline
};

class driver : public process {
 public:
  driver* as_driver() noexcept final { return this; }

  virtual std::uint32_t num_workers() const noexcept = 0;
  /// Pids of the task workers, in slot order (0 while one starts).
  virtual std::vector<int> worker_pids() const = 0;
  /// The state API's records (ray::state), copied on the loop thread.
  virtual std::vector<state::task_info> list_tasks() const = 0;
  virtual std::vector<state::actor_info> list_actors() const = 0;
  virtual std::vector<state::worker_info> list_workers() const = 0;
  /// The calls the timeline kept (runtime_options::record_timeline), oldest first.
  virtual std::vector<timeline_entry> timeline() const = 0;
  /// Whether the timeline records.
  virtual bool records_timeline() const noexcept = 0;
  virtual std::vector<state::object_info> list_objects() const = 0;
  /// The tail of process `pid`'s stdout and stderr; nullopt if the supervisor did not answer.
  virtual std::optional<std::pair<std::string, std::string>> process_output(int pid) = 0;
  /// The pid of an actor's process (0 while it starts or after it ended).
  virtual int actor_pid(std::uint64_t id) const = 0;

  /// An actor's process for ray::actor_process: its pid (0 while it starts), whether it
  /// ended and, once it has, its wait status.
  struct actor_process_status {
    int pid = 0;
    bool ended = false;
    int wait_status = 0;
  };
  /// nullopt once the actor is forgotten (it ended and no handle is left).
  virtual std::optional<actor_process_status> actor_status(std::uint64_t id) const = 0;
  /// The runtime's resources by Ray's names (CPU, GPU, custom): all, or those free now; in a
  /// cluster, every node's summed or (`node` 0 or more) one node's.
  virtual std::map<std::string, double> resources(bool available, int node = -1) = 0;
  /// Placement groups (placement_group.hpp): a new one's id and its readiness state; its
  /// removal; each bundle's node once reserved (empty before).
  virtual std::pair<std::uint64_t, state_ptr> create_placement_group(
      std::vector<resource_request> bundles, bundle_strategy strategy) = 0;
  virtual void remove_placement_group(std::uint64_t id) = 0;
  virtual std::vector<int> placement_group_nodes(std::uint64_t id) const = 0;
  /// Objects written to the spill file so far.
  virtual std::uint64_t spilled_objects() const noexcept = 0;
};

/// Process `p`'s driver, for an API that only the driver offers; a clear error elsewhere.
inline driver& require_driver(process& p, const char* what) {
  driver* d = p.as_driver();
  if (!d) throw usage_error(fmt::format("{} is only available in the driver process", what));
  return *d;
}
/// This process's driver, likewise.
inline driver& require_driver(const char* what) { return require_driver(process::require(), what); }

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/driver.hpp>
// begin <coray/detail/runtime/identity.hpp>
/// Who this process is in the runtime, for ray::current_process() and
/// ray::get_runtime_context(): the driver, a task worker, an actor or a ray::process, with its
/// slot and name, an actor's id, and the call running now. Set as a process becomes one
/// (become_worker, an actor's construction, a ray::process's start) and as calls start and
/// end; read by its own loop thread.

// #include <coray/version.hpp>: inlined above
#include <cstdint>
#include <string>

CORAY_BEGIN_NAMESPACE

/// What a process of the runtime is.
enum class process_kind : std::uint8_t { task_worker, actor, driver, process };

namespace detail {

struct process_identity {
  process_kind kind = process_kind::driver;
  std::uint32_t slot = 0;
  std::string name;            // a ray::process's; empty for the others, named after their kind
  std::uint64_t actor_id = 0;  // an actor's, from its construction
  std::uint32_t restarts = 0;  // how many times the actor was built again before this one
  std::uint64_t task_id = 0;   // the call whose body runs now; 0 between calls
};

inline process_identity& this_process() noexcept {
  static process_identity id;
  return id;
}

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/identity.hpp>
// begin <coray/detail/runtime/make_call.hpp>
/// The caller's side of a call: the task_spec message for a call of F, each argument
/// encoded inline or into a store block, or recorded as a dependency (object_ref).

#include <array>
// #include <coray/codec.hpp>: inlined above
// #include <coray/detail/codec/codec_traits.hpp>: inlined above
// #include <coray/detail/runtime/invoker.hpp>: inlined above
// #include <coray/detail/runtime/process.hpp>: inlined above
// #include <coray/detail/runtime/signature.hpp>: inlined above
// #include <coray/detail/runtime/stored_value.hpp>: inlined above
// #include <coray/errors.hpp>: inlined above
// #include <coray/generator.hpp>: inlined above
// #include <coray/object_ref.hpp>: inlined above
#include <cstddef>
#include <cstdint>
#include <span>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

template <class V>
void add_value(task_spec& spec, process& p, const V& v) {
  auto write = [&](std::size_t size) {
    if (size > p.inline_threshold()) {
      object_block* b = p.allocate_block(size);
      encode_to(std::span<std::byte>(b->data(), size), v);
      spec.add_block(p.seg, b);
    } else {
      spec.add_inline(size, [&](std::byte* out) { encode_to(std::span<std::byte>(out, size), v); });
    }
  };
  if constexpr (!has_serialize_part_v<V>) {
    write(encoded_size(v));  // holds no ref, handle or shared block
  } else {
    // Refs and actor handles inside the value: the call keeps their objects and actors alive
    // until it ends; shared blocks inside it are listed as it is written (collect_pinned_block).
    object_contents held;
    const std::size_t size = size_with_refs(p, v, held);
    {
      const collecting_refs collect(held);
      write(size);
    }
    if (!held.empty()) {
      object_contents& into = contents_of(spec.held);
      for (auto& r : held.refs) into.refs.push_back(std::move(r));
      into.actors.insert(into.actors.end(), held.actors.begin(), held.actors.end());
    }
  }
}

/// An argument for a std::span<const Row> or std::vector<Row> parameter (Row raw) whose `n`
/// rows `fill(out)` writes straight into the call's message or block, once, while the call
/// is made: for rows made from other data (pool::starmap packs argument lists), no buffer
/// between that data and the message.
template <class Row, class Fill>
struct raw_rows_argument {
  static_assert(is_raw_copyable_v<Row>);
  using row = Row;
  std::size_t n;
  Fill fill;  // void(std::byte* out): writes n * sizeof(Row) bytes
};
template <class T>
inline constexpr bool is_raw_rows_argument_v = false;
template <class Row, class Fill>
inline constexpr bool is_raw_rows_argument_v<raw_rows_argument<Row, Fill>> = true;

/// Encodes as a vector of n Rows would: the count, padding, then the rows.
template <class Row, class Fill>
void add_raw_rows(task_spec& spec, process& p, raw_rows_argument<Row, Fill>& a) {
  size_counter c;
  const std::uint64_t count = a.n;
  c.put(&count, sizeof count);
  c.pad(wire_align_v<Row>);
  const std::size_t header = c.size();
  const std::size_t size = header + a.n * sizeof(Row);
  auto write = [&](std::byte* out) {
    writer w(std::span<std::byte>(out, header));
    w.put(&count, sizeof count);
    w.pad(wire_align_v<Row>);
    a.fill(out + header);
  };
  if (size > p.inline_threshold()) {
    object_block* b = p.allocate_block(size);
    write(b->data());
    spec.add_block(p.seg, b);
  } else {
    spec.add_inline(size, write);
  }
}

template <class P, class A>
void add_argument(task_spec& spec, process& p, A&& a) {
  using S = storage_type_t<std::remove_cvref_t<P>>;
  if constexpr (is_raw_rows_argument_v<std::remove_cvref_t<A>>) {
    static_assert(std::is_same_v<S, std::vector<typename std::remove_cvref_t<A>::row>>,
                  "coray: raw rows are passed for a span or vector of those rows");
    add_raw_rows(spec, p, a);
  } else if constexpr (std::is_same_v<S, std::remove_cvref_t<A>>) {
    add_value(spec, p, a);  // an object_ref<T> parameter takes the ref, not held back for it
  } else if constexpr (is_object_ref_v<A>) {
    spec.add_dependency(a.state());
  } else if constexpr (is_ref_vector_v<A>) {
    // The elements' encodings, after the count, make the vector's: raw elements start
    // aligned (the argument starts 16-aligned, the count takes 8 bytes).
    using U = typename is_ref_vector<std::remove_cvref_t<A>>::value_type;
    constexpr std::size_t align = is_raw_copyable_v<U> ? wire_align_v<U> : 1;
    constexpr std::size_t pad = (align - sizeof(std::uint64_t) % align) % align;
    std::vector<state_ptr> refs;
    refs.reserve(a.size());
    for (const auto& r : a) refs.push_back(r.state());
    spec.add_dependency_list(refs, static_cast<std::uint8_t>(pad));
  } else if constexpr (wire_compatible_v<std::remove_cvref_t<P>, std::remove_cvref_t<A>>) {
    add_value(spec, p, a);
  } else {
    add_value(spec, p, S(std::forward<A>(a)));
  }
}

/// Refuses an empty ref, or one of an ended runtime, among call arguments: before any
/// argument is encoded, so that no block is allocated for a call that is not made.
template <class... A>
void require_usable_ref_arguments(const A&... args) {
  auto check = [](const auto& a) {
    using V = std::remove_cvref_t<decltype(a)>;
    if constexpr (is_object_ref_v<V>) {
      require_usable_ref(a.state(), "coray: a call argument");
    } else if constexpr (is_ref_vector_v<V>) {
      require_usable_refs(a, "coray: a call argument");
    }
  };
  (void)check;  // a call with no arguments
  (check(args), ...);
}

/// Submits the call `make(p)` builds, as submit_from_any_thread does, and returns what its
/// caller gets: a ref to its result or, for a function returning ray::returns, one per
/// result (made here, pending until the call ends; the call's own result stays the driver's).
template <class R, class Make>
call_refs_t<R> submit_for(const char* what, Make&& make) {
  if constexpr (is_generator_v<R>) {
    // A streaming generator: its items go to a stream the driver fills (generator.hpp).
    auto stream = std::make_shared<stream_state>();
    (void)submit_from_any_thread(what, [&](process& p) {
      task_spec spec = make(p);
      spec.stream = stream;
      return spec;
    });
    return call_refs_t<R>(std::move(stream));
  } else if constexpr (returns_several_v<R>) {
    using refs = call_refs_t<R>;
    std::array<state_ptr, std::tuple_size_v<refs>> outs;
    (void)submit_from_any_thread(what, [&](process& p) {
      task_spec spec = make(p);
      spec.returns = std::make_unique<std::vector<state_ptr>>();
      for (auto& o : outs) spec.returns->push_back(o = make_state(p));
      return spec;
    });
    return [&]<std::size_t... I>(std::index_sequence<I...>) {
      return refs(std::tuple_element_t<I, refs>(std::move(outs[I]))...);
    }
    (std::make_index_sequence<std::tuple_size_v<refs>>{});
  } else {
    return call_refs_t<R>(submit_from_any_thread(what, std::forward<Make>(make)));
  }
}

/// The message of a call of F with `args` (already checked against F's parameters).
template <auto F, class... A>
task_spec make_call(process& p, A&&... args) {
  using params = typename function_traits<decltype(F)>::params;
  (void)invoker<F>::registered;
  require_usable_ref_arguments(args...);
  task_spec spec;
  spec.fn_id = entity_id<F>;
  spec.name = entity_name_v<F>;
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    (add_argument<std::tuple_element_t<I, params>>(spec, p, std::forward<A>(args)), ...);
  }
  (std::make_index_sequence<sizeof...(A)>{});
  return spec;
}

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/make_call.hpp>
// #include <coray/detail/runtime/signature.hpp>: inlined above
// begin <coray/sync_wait.hpp>
/// ray::sync_wait: the blocking form of anything coray lets a coroutine co_await, for code
/// that is not a coroutine. It runs the runtime's loop on the calling thread until the result
/// is there, then returns it or rethrows its error.
///
///   int v = ray::sync_wait(twice(ref));                            // a ray::async<int>
///   auto [ready, pending] = ray::sync_wait(ray::wait(refs));       // a coray awaitable

// #include <coray/async.hpp>: inlined above
// #include <coray/detail/runtime/foreign.hpp>: inlined above
// #include <coray/detail/runtime/process.hpp>: inlined above
#include <type_traits>
#include <utility>

CORAY_BEGIN_NAMESPACE

/// Runs `awaitable` (a ray::async<T>, or what ray::get, ray::get_view and ray::wait return)
/// to completion and returns its result. In the driver, from any thread (a coroutine runs on
/// the runtime's thread while this one waits); inside a task, from the thread that runs it.
template <class Awaitable>
auto sync_wait(Awaitable&& awaitable) {
  using A = std::remove_cvref_t<Awaitable>;
  static_assert(!std::is_lvalue_reference_v<Awaitable>,
                "ray::sync_wait(x): x is awaited once; pass a temporary or std::move(x)");
  if constexpr (detail::is_async<A>::value) {
    A a = std::move(awaitable);
    auto h = a.handle();
    if (detail::needs_handoff()) {  // another thread than the runtime's: it runs there
      detail::foreign_entry e("ray::sync_wait");
      detail::run_coroutine_from_another_thread(e.get(), h);
      return a.take();
    }
    auto& p = detail::process::require("ray::sync_wait");
    p.schedule(h);
    p.run_until([&] { return h.done(); });
    return a.take();
  } else {
    return std::move(awaitable).get();
  }
}

CORAY_END_NAMESPACE
// end <coray/sync_wait.hpp>
// begin <coray/task.hpp>
/// Remote tasks: ray::task<f>.remote(args...) runs f in a worker process and returns an
/// object_ref to its result at once. Arguments are checked against f's parameters at
/// compile time; object_ref arguments are dependencies (f runs once they are ready and
/// receives their values). f may be a coroutine (returning ray::async<R>) that awaits
/// nested calls; the worker runs other tasks meanwhile.
///
///   int add(int a, int b) { return a + b; }
///   ray::object_ref<int> r = ray::task<add>.remote(1, 2);

#include <fmt/format.h>

// #include <coray/async.hpp>: inlined above
// #include <coray/codec.hpp>: inlined above
// #include <coray/detail/runtime/make_call.hpp>: inlined above
// #include <coray/detail/runtime/process.hpp>: inlined above
// #include <coray/detail/runtime/resource_request.hpp>: inlined above
// begin <coray/detail/runtime/retry_matcher.hpp>
/// ray::retry_on<E...>'s matcher: a function telling whether an exception is one of E...,
/// registered by an id made from the types' names, and evaluated in the worker where the
/// exception lives.

// #include <coray/detail/codec/codec_traits.hpp>: inlined above
// #include <coray/detail/runtime/registry.hpp>: inlined above
#include <cstdint>
#include <exception>
#include <string>

CORAY_BEGIN_NAMESPACE
namespace detail {

template <class E, class... Rest>
bool exception_is(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const E&) {
    return true;
  } catch (...) {
    if constexpr (sizeof...(Rest) > 0)
      return exception_is<Rest...>(e);
    else
      return false;
  }
}

/// Registers the matcher of E... and returns its id; ray::retry_on<E...> calls it once, at
/// static initialisation.
template <class... E>
std::uint64_t retry_matcher_id() {
  // Named by its types (a function template instance's printed name lacks them under clang).
  std::string key = "retry_on";
  ((key += ',', key += type_name_v<E>), ...);
  const std::uint64_t id = fnv1a(key) | 2;  // 0 and 1 mean none and all
  register_retry_matcher(id, &exception_is<E...>);
  return id;
}

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/retry_matcher.hpp>
// #include <coray/detail/runtime/signature.hpp>: inlined above
// #include <coray/object_ref.hpp>: inlined above
// begin <coray/object_store.hpp>
/// The object store's user surface: ray::put, ray::get, ray::wait and ray::cancel, each
/// usable with co_await in a coroutine or blocking in plain code; with it, the objects read
/// and built in place (ray::get_view, ray::put_buffer: <coray/object_view.hpp>).
///
///   auto img = ray::put(std::vector<double>(9'000'000, 1.0));   // once, into shared memory
///   std::vector<double> copy = ray::get(img);                   // blocking
///   auto view = co_await ray::get_view(img);                    // in place, no copy
///   auto [ready, pending] = co_await ray::wait(refs, {.num_returns = 1});

#include <fmt/format.h>

#include <chrono>
// #include <coray/codec.hpp>: inlined above
// #include <coray/detail/runtime/foreign.hpp>: inlined above
// #include <coray/detail/runtime/process.hpp>: inlined above
// #include <coray/detail/runtime/state_awaiter.hpp>: inlined above
// #include <coray/detail/runtime/stored_value.hpp>: inlined above
// #include <coray/object_ref.hpp>: inlined above
// begin <coray/object_view.hpp>
/// Objects in place: ray::get_view reads an object where it lies (shared memory or the
/// driver's heap) without copying it, and ray::put_buffer builds an array where it will
/// live, in the object store, to seal into an object.
///
///   auto view = co_await ray::get_view(img);            // a span over the stored doubles
///   auto buf = ray::put_buffer<double>(3000 * 3000);    // filled in place, then
///   ray::object_ref<std::vector<double>> image = std::move(buf).seal();

#include <fmt/format.h>

// #include <coray/codec.hpp>: inlined above
// #include <coray/detail/runtime/foreign.hpp>: inlined above
// #include <coray/detail/runtime/process.hpp>: inlined above
// #include <coray/detail/runtime/state_awaiter.hpp>: inlined above
// #include <coray/detail/runtime/stored_value.hpp>: inlined above
// #include <coray/errors.hpp>: inlined above
// #include <coray/object_ref.hpp>: inlined above
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE

namespace detail {

/// The view ray::get_view gives of an object of type T.
template <class T>
struct view_of {
  static_assert(sizeof(T) == 0,
                "ray::get_view: the object must be a std::vector or std::array of plain numbers or "
                "trivially copyable structs, or a std::string");
};
template <class E, class A>
struct view_of<std::vector<E, A>> {
  using type = std::span<const E>;
};
template <>
struct view_of<std::string> {
  using type = std::string_view;
};

}  // namespace detail

/// A read-only view of an object where it lies (shared memory or the driver's heap): a
/// span for a vector, a string_view for a string. Holds the object alive while it lives.
template <class T>
class object_view {
 public:
  using view_type = typename detail::view_of<T>::type;
  object_view(detail::state_ptr s) : s_(std::move(s)), v_(decode<view_type>(s_->value_bytes())) {
    ++s_->pins;
  }
  object_view(const object_view& o) : s_(o.s_), v_(o.v_) { ++s_->pins; }
  object_view& operator=(const object_view&) = delete;
  ~object_view() { --s_->pins; }
  const view_type& operator*() const noexcept { return v_; }
  const view_type* operator->() const noexcept { return &v_; }
  auto begin() const noexcept { return v_.begin(); }
  auto end() const noexcept { return v_.end(); }
  auto data() const noexcept { return v_.data(); }
  std::size_t size() const noexcept { return v_.size(); }
  decltype(auto) operator[](std::size_t i) const noexcept { return v_[i]; }

 private:
  detail::state_ptr s_;
  view_type v_;
};

template <class T>
class [[nodiscard]] get_view_awaitable : public detail::state_awaiter {
 public:
  using state_awaiter::state_awaiter;
  object_view<T> await_resume() {
    s_->rethrow_if_failed();
    return object_view<T>(s_);
  }
  /// Blocking form, on the runtime's thread only (a view pins the object for that thread).
  operator object_view<T>() && {
    if (detail::needs_handoff()) detail::process::require("ray::get_view");
    detail::block_until_settled(*s_);
    return await_resume();
  }
  object_view<T> get() && { return static_cast<object_view<T>>(std::move(*this)); }
};

/// A view of `ref`'s object in place: getting a 72 MB array costs what getting an int does.
template <class T>
get_view_awaitable<T> get_view(const object_ref<T>& ref) {
  (void)sizeof(typename detail::view_of<T>::type);
  detail::require_usable_ref(ref.state(), "ray::get_view");
  return get_view_awaitable<T>(ref.state());
}

/// An array being built where it will live, in the object store (Plasma's create, then
/// seal): fill it through data() / span() / operator[], then seal() it into an immutable
/// object that tasks read in place. It saves ray::put's copy of an array made only to be put.
/// Move-only; one dropped unsealed gives its memory back.
///
///   auto buf = ray::put_buffer<double>(3000 * 3000);
///   std::fill(buf.begin(), buf.end(), 0.0);
///   ray::object_ref<std::vector<double>> image = std::move(buf).seal();
template <class E>
class object_buffer {
 public:
  object_buffer(object_buffer&& o) noexcept
      : s_(std::move(o.s_)),
        data_(std::exchange(o.data_, nullptr)),
        size_(std::exchange(o.size_, 0)) {}
  object_buffer& operator=(object_buffer&& o) noexcept {
    s_ = std::move(o.s_);  // an unsealed buffer this one held gives its memory back
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
    return *this;
  }

  E* data() noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  std::span<E> span() noexcept { return {data_, size_}; }
  E* begin() noexcept { return data_; }
  E* end() noexcept { return data_ + size_; }
  E& operator[](std::size_t i) noexcept { return data_[i]; }

  /// The finished object; the buffer is empty afterwards.
  object_ref<std::vector<E>> seal() && {
    if (!s_)
      throw usage_error("ray::object_buffer::seal: the buffer was already sealed or moved from");
    s_->st.store(detail::object_state::status::ready, std::memory_order_release);
    data_ = nullptr;
    size_ = 0;
    return object_ref<std::vector<E>>(std::move(s_));
  }

 private:
  template <class T>
  friend object_buffer<T> put_buffer(std::size_t n);
  object_buffer(detail::state_ptr s, E* data, std::size_t n)
      : s_(std::move(s)), data_(data), size_(n) {}
  detail::state_ptr s_;
  E* data_ = nullptr;
  std::size_t size_ = 0;
};

/// A buffer of `n` default-initialised (for numbers: uninitialised) elements in the object
/// store, to fill and seal(). E must be a plain number or trivially copyable struct, as for
/// ray::get_view.
template <class E>
object_buffer<E> put_buffer(std::size_t n) {
  static_assert(
      detail::is_raw_copyable_v<E> && !std::is_same_v<E, bool>,
      "ray::put_buffer<E>: E must be a plain number or a trivially copyable struct of them");
  std::optional<detail::foreign_entry> entry;
  if (detail::needs_handoff()) entry.emplace("ray::put_buffer");
  auto& p = entry ? entry->get() : detail::process::require("ray::put_buffer");
  // The encoding of a std::vector<E>: its count, padding to E's wire alignment, the elements.
  const std::size_t offset =
      sizeof(std::uint64_t) + detail::padding_for(sizeof(std::uint64_t), detail::wire_align_v<E>);
  if (n > (std::numeric_limits<std::size_t>::max() - offset) / sizeof(E))
    throw usage_error(fmt::format("ray::put_buffer: {} elements do not fit in memory", n));
  const std::size_t size = offset + n * sizeof(E);
  auto s = detail::make_state(p);
  std::byte* out = detail::reserve_value(p, *s, size).data();  // pending until sealed
  const std::uint64_t count = n;
  std::memcpy(out, &count, sizeof count);
  std::memset(out + sizeof count, 0, offset - sizeof count);
  return object_buffer<E>(std::move(s), reinterpret_cast<E*>(out + offset), n);
}

CORAY_END_NAMESPACE
// end <coray/object_view.hpp>
// #include <coray/sync_wait.hpp>: inlined above
#include <coroutine>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE

/// What ray::get returns: co_await it in a coroutine, or convert it to T to block. Used as a
/// statement, `ray::get(ref);` blocks until the object is there and throws its error, as
/// Ray's `ray.get(ref)` does: its destructor waits, unless it was awaited or converted (it
/// then waits only once) or is destroyed by an exception's unwinding.
template <class T>
class get_awaitable : public detail::state_awaiter {
 public:
  using state_awaiter::state_awaiter;
  get_awaitable(get_awaitable&&) noexcept = default;
  ~get_awaitable() noexcept(false) { settle_if_discarded(); }
  T await_resume() { return detail::read_value<T>(*s_); }
  /// Blocking form: waits and returns the value or throws its error. Thread-safe in the driver.
  operator T() && {
    return read_settled([](const detail::object_state& s) { return detail::read_value<T>(s); });
  }
  /// Blocking form, explicitly.
  T get() && { return static_cast<T>(std::move(*this)); }
};

template <>
class get_awaitable<void> : public detail::state_awaiter {
 public:
  using state_awaiter::state_awaiter;
  get_awaitable(get_awaitable&&) noexcept = default;
  ~get_awaitable() noexcept(false) { settle_if_discarded(); }
  void await_resume() { s_->rethrow_if_failed(); }
  void get() && {
    read_settled([](const detail::object_state& s) { s.rethrow_if_failed(); });
  }
};

/// The value of `ref`, decoded into a T of this process.
template <class T>
get_awaitable<T> get(const object_ref<T>& ref) {
  detail::require_usable_ref(ref.state(), "ray::get");
  return get_awaitable<T>(ref.state());
}

struct get_options {
  /// Give up after this long with ray::get_timeout; none: wait as long as it takes.
  std::optional<std::chrono::nanoseconds> timeout = std::nullopt;
};

template <class T>
class wait_awaitable;
struct wait_options;

/// What ray::get with a timeout returns: co_await it, or convert it to T to block.
template <class T>
class timed_get_awaitable;

/// What ray::get of several refs returns: the values in the order of the refs. As a
/// statement it waits for them all and throws the first error, as get_awaitable does.
template <class T>
class get_all_awaitable {
 public:
  explicit get_all_awaitable(std::vector<object_ref<T>> refs) : refs_(std::move(refs)) {}
  get_all_awaitable(get_all_awaitable&&) noexcept = default;
  ~get_all_awaitable() noexcept(false) {
    if (!used_.discarded() || refs_.empty()) return;
    auto states = this->states();
    if (!detail::all_usable(states)) return;
    detail::read_when_settled("ray::get", states, [&] {
      for (auto* s : states) s->rethrow_if_failed();
    });
  }
  bool await_ready() noexcept {
    used_.mark();
    for (auto& r : refs_)
      if (!r.is_ready()) ++pending_;
    return pending_ == 0;
  }
  void await_suspend(std::coroutine_handle<> h) {
    h_ = h;
    for (auto& r : refs_)
      if (!r.is_ready()) r.state()->waiters.push_back({&on_settled, this});
    detail::process::current()->coroutine_suspended(+1);
  }
  std::vector<T> await_resume() { return values(); }
  operator std::vector<T>() && {
    used_.mark();
    if (!detail::needs_handoff()) [[likely]] {  // the loop thread: no list of states to make
      for (auto& r : refs_) detail::block_until_settled(*r.state());
      return values();
    }
    return detail::read_when_settled("ray::get", states(), [this] { return values(); });
  }
  std::vector<T> get() && { return static_cast<std::vector<T>>(std::move(*this)); }

 private:
  std::vector<detail::object_state*> states() const {
    std::vector<detail::object_state*> out;
    out.reserve(refs_.size());
    for (auto& r : refs_) out.push_back(r.state().get());
    return out;
  }
  static void on_settled(void* ctx, detail::object_state&) {
    auto* self = static_cast<get_all_awaitable*>(ctx);
    if (--self->pending_ == 0)
      detail::resume_waiter(self->h_.address(), *self->refs_.front().state());
  }
  std::vector<T> values() {
    std::vector<T> out;
    out.reserve(refs_.size());
    for (auto& r : refs_) out.push_back(detail::read_value<T>(*r.state()));
    return out;
  }
  std::vector<object_ref<T>> refs_;
  std::size_t pending_ = 0;
  std::coroutine_handle<> h_;
  detail::use_tracker used_;
};

template <class T>
get_all_awaitable<T> get(std::vector<object_ref<T>> refs) {
  detail::require_usable_refs(refs, "ray::get");
  return get_all_awaitable<T>(std::move(refs));
}

/// Puts `value` in the object store once; tasks that take the ref read it there.
/// Thread-safe in the driver: another thread encodes the value itself.
template <class T>
object_ref<detail::put_type_t<T>> put(const T& value) {
  using stored = detail::put_type_t<T>;
  static_assert(is_encodable_v<stored>,
                "ray::put: this type cannot be stored; give it a `template <class Archive> void "
                "serialize(Archive&)` member or make it an aggregate of storable members");
  auto store = [&](detail::process& p) {
    auto s = detail::make_state(p);
    if constexpr (std::is_same_v<stored, std::decay_t<T>>)
      detail::store_value(p, *s, value);
    else
      detail::store_value(p, *s, stored(value));
    return object_ref<stored>(std::move(s));
  };
  if (!detail::needs_handoff()) return store(detail::process::require("ray::put"));
  detail::foreign_entry e("ray::put");
  return store(e.get());
}

struct wait_options {
  /// Return once this many refs are ready (at most the number of refs).
  std::size_t num_returns = 1;
  /// Give up waiting after this long and return what is ready; none: wait as long as it takes.
  std::optional<std::chrono::nanoseconds> timeout = std::nullopt;
};

template <class T>
struct wait_result {
  std::vector<object_ref<T>> ready;    // at most num_returns, in the order given
  std::vector<object_ref<T>> pending;  // the rest, in the order given
};

/// What ray::wait returns: co_await it, or convert it to wait_result<T> to block. As a
/// statement it blocks until the wait is over, as get_awaitable does.
template <class T>
class wait_awaitable {
 public:
  wait_awaitable(std::vector<object_ref<T>> refs, wait_options o)
      : refs_(std::move(refs)), opts_(o) {
    opts_.num_returns = std::min(opts_.num_returns, refs_.size());
  }
  wait_awaitable(wait_awaitable&& o) noexcept
      : refs_(std::move(o.refs_)),
        opts_(o.opts_),
        op_(std::exchange(o.op_, nullptr)),
        used_(std::move(o.used_)) {}
  ~wait_awaitable() noexcept(false) {
    if (!used_.discarded() || refs_.empty()) return;
    require_usable();
    (void)static_cast<wait_result<T>>(std::move(*this));
  }
  bool await_ready() {
    used_.mark();
    detail::process::require().serve_once();
    return checked_ready_count() >= opts_.num_returns || timed_out_now();
  }
  void await_suspend(std::coroutine_handle<> h) {
    auto& p = detail::process::require();
    op_ = new op{};
    op_->h = h;
    op_->needed = opts_.num_returns - ready_count();
    for (auto& r : refs_)
      if (!r.is_ready()) {
        ++op_->refs;
        r.state()->waiters.push_back({&op::on_settled, op_});
      }
    if (const auto deadline = this->deadline(); deadline != detail::clock::time_point::max()) {
      ++op_->refs;
      op_->timer = p.add_timer(deadline, &op::on_timeout, op_);
    }
    p.coroutine_suspended(+1);
  }
  wait_result<T> await_resume() {
    if (op_) {
      op_->drop();
      op_ = nullptr;
    }
    return split();
  }
  /// Blocking form. Thread-safe in the driver.
  operator wait_result<T>() && {
    used_.mark();
    if (detail::needs_handoff()) {
      detail::foreign_entry e("ray::wait");
      require_usable();
      std::vector<detail::object_state*> states;
      states.reserve(refs_.size());
      for (auto& r : refs_) states.push_back(r.state().get());
      detail::foreign_wait w(e.get(), states, opts_.num_returns, deadline(), false);
      return split();
    }
    auto& p = detail::process::require();
    const auto deadline = this->deadline();
    p.serve_once();
    const std::size_t ready = checked_ready_count();
    if (ready >= opts_.num_returns || timed_out_now()) return split();
    // Counted as refs settle (each settles once), not by looking at every ref on each turn
    // of the loop: waiting for most of 100,000 refs rescanned them all per turn.
    auto* c = new counter{opts_.num_returns - ready};
    for (auto& r : refs_)
      if (!r.is_ready()) {
        ++c->refs;
        r.state()->waiters.push_back({&counter::on_settled, c});
      }
    p.run_until([c] { return c->needed == 0; }, deadline);
    c->drop();
    return split();
  }
  wait_result<T> get() && { return static_cast<wait_result<T>>(std::move(*this)); }

 private:
  // Outlives the wait: refs that settle later still hold it.
  struct op {
    std::coroutine_handle<> h;
    std::size_t needed = 0;
    int refs = 1;
    bool done = false;
    std::uint64_t timer = 0;
    void drop() {
      if (--refs == 0) delete this;
    }
    void complete() {
      done = true;
      auto& p = *detail::process::current();
      if (timer) {
        p.cancel_timer(timer);
        timer = 0;
        --refs;
      }
      p.coroutine_suspended(-1);
      p.schedule(h);
    }
    static void on_settled(void* ctx, detail::object_state&) {
      auto* o = static_cast<op*>(ctx);
      if (!o->done && --o->needed == 0) o->complete();
      o->drop();
    }
    static void on_timeout(void* ctx) {
      auto* o = static_cast<op*>(ctx);
      o->timer = 0;
      if (!o->done) o->complete();
      o->drop();
    }
  };
  /// The blocking form's count of refs still to settle. Outlives the wait: refs that settle
  /// later still hold it.
  struct counter {
    std::size_t needed;
    int refs = 1;
    void drop() {
      if (--refs == 0) delete this;
    }
    static void on_settled(void* ctx, detail::object_state&) {
      auto* c = static_cast<counter*>(ctx);
      if (c->needed) --c->needed;
      c->drop();
    }
  };
  bool timed_out_now() const noexcept { return opts_.timeout && opts_.timeout->count() <= 0; }
  detail::clock::time_point deadline() const noexcept {
    return opts_.timeout ? detail::deadline_after(*opts_.timeout)
                         : detail::clock::time_point::max();
  }
  /// How many refs are ready, counting no further than `enough`.
  std::size_t ready_count(std::size_t enough = SIZE_MAX) const noexcept {
    std::size_t n = 0;
    for (auto& r : refs_)
      if (r.is_ready() && ++n == enough) break;
    return n;
  }
  /// ready_count, also checking the refs (detail::usable_state) in the same pass.
  std::size_t checked_ready_count() const {
    const std::uint32_t live = detail::live_epoch();
    std::size_t n = 0;
    bool usable = true;
    for (auto& r : refs_) {
      const detail::object_state* s = r.state().get();
      usable &= detail::usable_state(s, live);
      n += s && s->settled();
    }
    if (!usable) [[unlikely]]
      require_usable();  // throws, saying why
    return n;
  }
  void require_usable() const { detail::require_usable_refs(refs_, "ray::wait"); }
  // Moves the refs out (the wait is over): no reference counts change. The ready ones are
  // taken out up to num_returns, reading the states only that far; the rest close up in
  // place and become `pending` with the same buffer. A loop of waits for one of n refs costs
  // n pointer moves per wait, neither counted copies nor an allocation.
  wait_result<T> split() {
    wait_result<T> w;
    w.ready.reserve(opts_.num_returns);
    auto it = refs_.begin(), out = it;
    for (; it != refs_.end() && w.ready.size() < opts_.num_returns; ++it) {
      if (it->is_ready()) {
        w.ready.push_back(std::move(*it));
      } else {
        if (out != it) *out = std::move(*it);
        ++out;
      }
    }
    refs_.erase(std::move(it, refs_.end(), out), refs_.end());
    w.pending = std::move(refs_);
    refs_.clear();
    return w;
  }
  template <class>
  friend class timed_get_awaitable;
  std::vector<object_ref<T>> refs_;
  wait_options opts_;
  op* op_ = nullptr;
  detail::use_tracker used_;
};

/// Waits until `num_returns` of `refs` are ready or the timeout passes.
template <class T>
wait_awaitable<T> wait(std::vector<object_ref<T>> refs, wait_options opts = {}) {
  // The refs are checked (empty, or of a runtime that has ended) in the wait's first look at
  // them, which reads each one anyway: a loop of waits on n refs is O(n) per call.
  return wait_awaitable<T>(std::move(refs), opts);
}

template <class T>
class timed_get_awaitable {
 public:
  timed_get_awaitable(const object_ref<T>& ref, std::chrono::nanoseconds timeout)
      : ref_(ref), timeout_(timeout), wait_({ref}, {.num_returns = 1, .timeout = timeout}) {
    wait_.used_.mark();  // used through this one
  }
  timed_get_awaitable(timed_get_awaitable&&) noexcept = default;
  /// As a statement: waits, and throws the object's error or get_timeout.
  ~timed_get_awaitable() noexcept(false) {
    detail::object_state* s = ref_.state().get();
    if (used_.discarded() && s && detail::all_usable({&s, 1}))
      take([](const detail::object_state& st) { st.rethrow_if_failed(); });
  }
  bool await_ready() noexcept {
    used_.mark();
    return wait_.await_ready();
  }
  void await_suspend(std::coroutine_handle<> h) { wait_.await_suspend(h); }
  T await_resume() { return finish(wait_.await_resume()); }
  /// Blocking form. Thread-safe in the driver.
  operator T() && {
    return take([](const detail::object_state& s) { return detail::read_value<T>(s); });
  }
  T get() && {
    return take([](const detail::object_state& s) { return detail::read_value<T>(s); });
  }

 private:
  /// Waits at most the timeout, then returns `read(state)` or throws get_timeout.
  template <class Read>
  auto take(Read&& read) {
    used_.mark();
    if (detail::needs_handoff()) {
      detail::foreign_entry e("ray::get");
      detail::object_state* s = ref_.state().get();
      detail::foreign_wait w(e.get(), {&s, 1}, 1, detail::deadline_after(timeout_), true);
      if (!s->settled()) throw_timeout();
      return read(*s);
    }
    if (static_cast<wait_result<T>>(std::move(wait_)).ready.empty()) throw_timeout();
    return read(*ref_.state());
  }
  T finish(const wait_result<T>& w) {
    if (w.ready.empty()) throw_timeout();
    return detail::read_value<T>(*ref_.state());
  }
  [[noreturn]] void throw_timeout() const {
    throw get_timeout(
        fmt::format("ray::get: the object was not ready within {} ms",
                    std::chrono::duration_cast<std::chrono::milliseconds>(timeout_).count()));
  }
  object_ref<T> ref_;
  std::chrono::nanoseconds timeout_;
  wait_awaitable<T> wait_;
  detail::use_tracker used_;
};

/// The value of `ref`, waiting at most `opts.timeout` (then ray::get_timeout).
template <class T>
timed_get_awaitable<T> get(const object_ref<T>& ref, get_options opts) {
  detail::require_usable_ref(ref.state(), "ray::get");
  return timed_get_awaitable<T>(ref, opts.timeout.value_or(std::chrono::nanoseconds::max()));
}

struct cancel_options {
  /// Also kill the worker running the task (tasks only; actor calls cannot be forced).
  bool force = false;
};

/// Cancels the call whose result `ref` is: a call still waiting is never run; one running
/// runs on (unless `force`), but either way getting `ref` raises ray::cancelled. A call
/// that already finished keeps its result. Driver only; thread-safe there.
template <class T>
void cancel(const object_ref<T>& ref, cancel_options opts = {}) {
  detail::on_loop("ray::cancel", [&](detail::process& p) {
    if (!p.as_driver()) throw usage_error("ray::cancel is only available in the driver process");
    // An empty ref, or one of an ended runtime (its id may name another call now): nothing.
    if (ref.valid() && ref.state()->id && ref.state()->epoch == p.epoch)
      p.cancel_call(ref.state()->id, opts.force);
  });
}

CORAY_END_NAMESPACE
// end <coray/object_store.hpp>
// #include <coray/sync_wait.hpp>: inlined above
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

CORAY_BEGIN_NAMESPACE

/// Which exceptions of a task are retried: none (false, the default), all (true), or those
/// of given types (ray::retry_on<E...>, matching derived types too).
struct retry_policy {
  constexpr retry_policy(bool all = false) noexcept : matcher(all ? 1 : 0) {}
  constexpr retry_policy(std::uint64_t id, std::nullptr_t) noexcept : matcher(id) {}
  std::uint64_t matcher;
};

/// Retry a task when it throws one of E... (or a type derived from one):
/// `ray::task<f>.options({.retry_exceptions = ray::retry_on<std::runtime_error>})`.
template <class... E>
inline const retry_policy retry_on = retry_policy(detail::retry_matcher_id<E...>(), nullptr);

/// Where a task's calls or an actor run among a cluster's nodes (<coray/mpi.hpp>; nodes are
/// named by their MPI rank, as ray::nodes() lists them), as Ray's scheduling_strategy. The
/// default: this machine's processes first, then the other nodes'. Outside a cluster there is
/// one node, 0.
///
///   ray::task<f>.options({.scheduling_strategy = ray::spread}).remote(x);
///   ray::spawn<counter>({.scheduling_strategy = ray::node_affinity(2)});
struct scheduling_strategy {
  enum class kind : std::uint8_t { any, spread, node_affinity, placement_group };
  kind how = kind::any;
  int node = -1;            // node_affinity: the node's rank
  bool soft = false;        // node_affinity: elsewhere if that node is gone or could never run it
  std::uint64_t group = 0;  // placement_group: its id (ray::placement_group::strategy())
  int bundle = -1;          // placement_group: the bundle's index; -1: any of them
};

/// Spreads calls (or actors) over the nodes in turn (Ray's "SPREAD").
inline constexpr scheduling_strategy spread{scheduling_strategy::kind::spread};

/// Runs on node `node` (its rank) only; with `soft`, on another if that one is gone or could
/// never meet the call's resources (Ray's NodeAffinitySchedulingStrategy). Hard affinity to a
/// node the cluster lacks is refused with ray::infeasible_resources.
constexpr scheduling_strategy node_affinity(int node, bool soft = false) noexcept {
  return {scheduling_strategy::kind::node_affinity, node, soft};
}

namespace detail {
inline placement placement_of(const scheduling_strategy& s, const char* who) {
  placement p;
  if (s.how == scheduling_strategy::kind::spread) p.spread = true;
  if (s.how == scheduling_strategy::kind::node_affinity) {
    if (s.node < 0)
      throw invalid_resources(fmt::format(
          "{}: node_affinity({}) names no node (nodes are ranks, 0 or more)", who, s.node));
    p.node = s.node;
    p.soft = s.soft;
  }
  if (s.how == scheduling_strategy::kind::placement_group) {
    if (!s.group || s.bundle < -1)
      throw invalid_resources(fmt::format(
          "{}: a placement group strategy needs a placement group and a bundle index of -1 (any) "
          "or more",
          who));
    p.group = s.group;
    p.bundle = s.bundle;
  }
  return p;
}
}  // namespace detail

/// Per-call options of a task, as Ray's `f.options(...)`.
struct task_options {
  static constexpr int default_max_retries = 3;
  /// Re-runs after the worker running the task dies (and after a retryable exception).
  /// The final error says how many attempts were made.
  int max_retries = default_max_retries;
  /// Whether an exception thrown by the task is retried too.
  retry_policy retry_exceptions = false;
  /// CPUs the task holds while it runs (Ray's default, 1). A call waits until they are free.
  double num_cpus = 1;
  /// GPUs it holds while it runs: a fraction below 1 shares one GPU with other fractions, an
  /// amount of 1 or more must be whole. It runs with CUDA_VISIBLE_DEVICES set to its GPUs'
  /// ids (ray::get_gpu_ids()).
  double num_gpus = 0;
  /// Custom resources it holds while it runs, by the names the runtime was given.
  std::map<std::string, double> resources = {};
  /// Which node it runs on, in a cluster.
  ray::scheduling_strategy scheduling_strategy = {};
};

namespace detail {

/// What a task's calls carry of its options, resolved once.
struct task_call_options {
  int max_retries = task_options::default_max_retries;
  std::uint64_t retry_matcher = 0;
  std::shared_ptr<const resource_request> resources;  // null: the default, {CPU: 1}

  /// Throws invalid_resources for a negative or NaN amount.
  static task_call_options from(const task_options& o) {
    task_call_options c{o.max_retries, o.retry_exceptions.matcher, nullptr};
    auto r = resource_request::from(o.num_cpus, o.num_gpus, o.resources, "ray::task<f>.options");
    r.where = placement_of(o.scheduling_strategy, "ray::task<f>.options");
    if (!r.is_default_task()) c.resources = std::make_shared<const resource_request>(std::move(r));
    return c;
  }
};

/// What ray::task<f> and its configured forms share: the checks on f and the call itself.
template <auto F>
struct remote_function_base {
  using traits = detail::function_traits<decltype(F)>;
  static_assert(traits::is_function && !traits::is_member,
                "ray::task<f>: f must be a free function or a static member function (call member "
                "functions on an actor: actor.call<&T::method>(...))");
  using params = typename traits::params;
  using result_type = detail::call_result_t<typename traits::return_type>;
  /// What .remote returns: a ref to the result, or one per result (ray::returns).
  using refs_type = detail::call_refs_t<typename traits::return_type>;
  static_assert(std::is_void_v<result_type> || is_encodable_v<result_type>,
                "ray::task<f>: f's return type cannot be sent between processes; give it a "
                "`template <class Archive> void serialize(Archive&)` member");
  static_assert(detail::parameters_storable<params>(),
                "ray::task<f>: a parameter of f cannot be sent between processes (it must be "
                "encodable, a std::span<const T> or a std::string_view)");

 protected:
  template <class... A>
  static refs_type submit(int max_retries, std::uint64_t retry_matcher,
                          const std::shared_ptr<const resource_request>* resources, A&&... args) {
    static_assert(sizeof...(A) == traits::arity,
                  "ray::task<f>.remote(...): wrong number of arguments for f");
    if constexpr (sizeof...(A) == traits::arity) {
      constexpr bool fits =
          detail::arguments_fit<params, A...>(std::make_index_sequence<sizeof...(A)>{});
      static_assert(
          fits,
          "ray::task<f>.remote(...): an argument does not match f's parameter: pass the "
          "parameter's type, a value convertible to it, or an object_ref of it (non-const "
          "reference parameters are not allowed)");
      if constexpr (fits) {
        return detail::submit_for<typename traits::return_type>(
            "ray::task<f>.remote", [&](detail::process& p) {
              auto spec = detail::make_call<F>(p, std::forward<A>(args)...);
              spec.max_retries = max_retries;
              spec.retry_matcher = retry_matcher;
              if (resources) spec.resources = *resources;
              return spec;
            });
      }
    }
    return {};
  }
};

}  // namespace detail

/// A task with options other than the default: `ray::task<f>.options({...})`.
template <auto F>
class remote_function_with_options : detail::remote_function_base<F> {
  using base = detail::remote_function_base<F>;

 public:
  using result_type = typename base::result_type;
  using refs_type = typename base::refs_type;
  /// Throws invalid_resources for a negative or NaN amount.
  explicit remote_function_with_options(const task_options& o)
      : options_(detail::task_call_options::from(o)) {}

  /// The same function with other options.
  remote_function_with_options options(const task_options& o) const {
    return remote_function_with_options(o);
  }

  /// Submits the call and returns its result's ref at once; ray::task<f>.remote's contract.
  /// A call whose resources the runtime could never provide fails at once with
  /// ray::infeasible_resources (its ref throws it).
  template <class... A>
  refs_type remote(A&&... args) const {
    return base::submit(options_.max_retries, options_.retry_matcher,
                        options_.resources ? &options_.resources : nullptr,
                        std::forward<A>(args)...);
  }

 private:
  detail::task_call_options options_;
};

/// The remote form of the free function F: `ray::task<f>.remote(args...)`.
template <auto F>
struct remote_function : detail::remote_function_base<F> {
  using result_type = typename detail::remote_function_base<F>::result_type;
  using refs_type = typename detail::remote_function_base<F>::refs_type;

  constexpr remote_function() noexcept = default;

  /// The same function with other options:
  /// `ray::task<f>.options({.max_retries = 0, .num_gpus = 0.5}).remote(...)`. Throws
  /// invalid_resources for a negative or NaN amount.
  remote_function_with_options<F> options(const task_options& o) const {
    return remote_function_with_options<F>(o);
  }

  /// Submits the call and returns its result's ref at once. Thread-safe in the driver (any
  /// thread); inside a task, from the thread that runs the task.
  template <class... A>
  refs_type remote(A&&... args) const {
    return this->submit(task_options::default_max_retries, 0, nullptr, std::forward<A>(args)...);
  }
};

/// `ray::task<f>`: the handle through which f is called remotely.
template <auto F>
inline constexpr remote_function<F> task{};

CORAY_END_NAMESPACE
// end <coray/task.hpp>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE

struct actor_options {
  /// Registers the actor under this name for ray::get_actor (empty: anonymous).
  std::string name = {};
  /// How many calls may run at once. Calls to coroutine methods (ray::async) overlap on the
  /// actor's loop thread while they await (Ray's async actors); above 1, plain methods run
  /// on up to this many threads of the actor's process at once (Ray's threaded actors), so
  /// the class does its own locking. A method running on such a thread may not use the
  /// runtime (calls, puts, gets throw ray::usage_error): make it a coroutine for that.
  std::uint32_t max_concurrency = 1;
  /// false: plain methods run one at a time on the loop thread, between coroutine methods,
  /// whatever max_concurrency says (for a class that is not thread-safe).
  bool threaded = true;
  /// Named groups of calls with limits of their own (Ray's concurrency groups), such as
  /// {{"io", 2}, {"compute", 4}}: a call runs in the group it names (actor.options), else
  /// the one its method declares (ray::concurrency_group), else the default group, whose
  /// limit is max_concurrency. Each group starts its calls in order, up to its limit, and
  /// never waits behind another group's. With groups, plain methods run on threads (unless
  /// threaded is false). spawn throws usage_error for an unnamed group or a limit of 0.
  std::map<std::string, std::uint32_t> concurrency_groups = {};
  /// How many times the actor is rebuilt (its constructor run again with the same
  /// arguments, in a new process) after its process dies. 0: never; -1: always.
  int max_restarts = 0;
  /// How many times a call that was running when the actor died is run again on the
  /// rebuilt actor (else it fails with actor_died).
  int max_task_retries = 0;
  /// Resources the actor holds for as long as it lives, from before its constructor runs
  /// (Ray's rule: an actor given none waits for 1 free CPU to be placed and holds nothing
  /// after).
  /// Given any of these, it holds num_cpus (0 when unset), num_gpus and resources; its
  /// construction waits until they are free, and it runs with CUDA_VISIBLE_DEVICES set to
  /// its GPUs' ids for life (ray::get_gpu_ids()). spawn throws ray::invalid_resources for a
  /// negative or NaN amount and ray::infeasible_resources for more than the runtime has.
  std::optional<double> num_cpus = std::nullopt;
  double num_gpus = 0;
  std::map<std::string, double> resources = {};
  /// Which node its process runs on, in a cluster. Chosen once, at spawn: a restart rebuilds
  /// it on the same node.
  ray::scheduling_strategy scheduling_strategy = {};
};

/// The concurrency group `Method`'s calls run in when the call names none (Ray's
/// `@ray.method(concurrency_group=...)`); empty, or a group the actor was not spawned with:
/// the actor's default group. Declare it by specialising, next to the class:
///
///   template <> inline constexpr std::string_view ray::concurrency_group<&io_actor::read> = "io";
template <auto Method>
inline constexpr std::string_view concurrency_group{};

/// Options of one actor call (Ray's `actor.method.options(...)`).
struct call_options {
  /// The group the call runs in, one of the actor's concurrency_groups; empty: the one its
  /// method declares, else the default group. A name the actor lacks fails the call with
  /// usage_error.
  std::string_view concurrency_group = {};
};

namespace detail {
/// Registers the group `Method` declares, so that the actor's process finds it by id.
template <auto Method>
inline const bool method_group_registered =
    register_method_group(entity_id<Method>, group_hash(ray::concurrency_group<Method>));
}  // namespace detail

template <class T>
class actor_call;

/// A handle to an actor of type T: a value, copyable, and passable to tasks and to other
/// actors' methods, where it reaches the same actor.
template <class T>
class actor {
 public:
  actor() noexcept = default;
  explicit actor(detail::actor_ptr p) noexcept : p_(std::move(p)) {}

  /// Calls `Method` (a member function of T) in the actor's process; returns the result's
  /// ref at once. Arguments are checked against the method's parameters at compile time.
  /// Thread-safe in the driver; calls made by one thread run in the order it made them.
  template <auto Method, class... A>
  auto call(A&&... args) const {
    return call_in_group<Method>(0, std::forward<A>(args)...);
  }

  /// This actor with options for the calls made through it:
  /// `a.options({.concurrency_group = "io"}).call<&T::read>(path)`.
  actor_call<T> options(call_options o) const { return actor_call<T>(*this, o); }

  /// The actor's id, unique within the runtime; 0 for an empty handle.
  std::uint64_t id() const noexcept { return p_ ? p_.get()->id : 0; }
  bool valid() const noexcept { return static_cast<bool>(p_); }
  /// The actor's process id (0 while it starts or after it ended). Driver only.
  int pid() const { return detail::require_driver("actor<T>.pid()").actor_pid(id()); }

  friend bool operator==(const actor& a, const actor& b) noexcept { return a.id() == b.id(); }

  /// Handles are values: inside call arguments, put objects and results, alone or inside
  /// containers and structs. The id is sent, what holds the value (the call, the object)
  /// keeps the actor alive while it lives, and the process that reads it makes a handle of
  /// its own.
  template <class Archive>
  void serialize(Archive& ar) {
    std::uint64_t id = this->id();
    ar(id);
    if constexpr (Archive::is_loading) {
      p_ = detail::process::require().make_actor_handle(id);
    } else if constexpr (Archive::is_sizing) {
      if (id) detail::collect_actor_handle(id);
    }
  }

 private:
  friend class actor_call<T>;

  /// call<Method>, in concurrency group `group` (its group_hash; 0: the method's own).
  template <auto Method, class... A>
  auto call_in_group(std::uint32_t group, A&&... args) const {
    using traits = detail::function_traits<decltype(Method)>;
    static_assert(
        traits::is_member,
        "actor<T>.call<&T::method>(...): the template argument must be a member function of T");
    if constexpr (traits::is_member) {
      static_assert(std::is_base_of_v<typename traits::class_type, T>,
                    "actor<T>.call<&T::method>(...): the method belongs to another class than T");
      using params = typename traits::params;
      using result_type = detail::call_result_t<typename traits::return_type>;
      static_assert(std::is_void_v<result_type> || is_encodable_v<result_type>,
                    "actor<T>.call<&T::method>(...): the method's return type cannot be sent "
                    "between processes");
      static_assert(sizeof...(A) == traits::arity,
                    "actor<T>.call<&T::method>(...): wrong number of arguments for the method");
      if constexpr (sizeof...(A) == traits::arity) {
        constexpr bool fits =
            detail::arguments_fit<params, A...>(std::make_index_sequence<sizeof...(A)>{});
        static_assert(fits,
                      "actor<T>.call<&T::method>(...): an argument does not match the method's "
                      "parameter: pass the "
                      "parameter's type, a value convertible to it, or an object_ref of it");
        if constexpr (fits) {
          if (!p_) throw usage_error("actor<T>.call: the actor handle is empty");
          if constexpr (!ray::concurrency_group<Method>.empty())
            (void)detail::method_group_registered<Method>;
          return detail::submit_for<typename traits::return_type>(
              "actor<T>.call", [&](detail::process& p) {
                auto spec = detail::make_call<Method>(p, std::forward<A>(args)...);
                spec.target_actor = p_.get()->id;
                spec.group = group;
                return spec;
              });
        } else {
          return detail::call_refs_t<typename traits::return_type>{};
        }
      } else {
        return detail::call_refs_t<typename traits::return_type>{};
      }
    }
  }

  detail::actor_ptr p_;
};

/// An actor handle with options for its calls (actor<T>::options).
template <class T>
class actor_call {
 public:
  actor_call(actor<T> a, call_options o)
      : a_(std::move(a)), group_(detail::group_hash(o.concurrency_group)) {}
  /// As actor<T>::call, with the options.
  template <auto Method, class... A>
  auto call(A&&... args) const {
    return a_.template call_in_group<Method>(group_, std::forward<A>(args)...);
  }

 private:
  actor<T> a_;
  std::uint32_t group_;
};

namespace detail {

/// Options for the actors behind coray's multiprocessing objects (a ray::process, a pool's
/// processes, a queue, a manager): as Python's, they start at once and hold no CPU, rather
/// than wait for a free CPU to be placed as an actor given no resources does. What the
/// caller asked for explicitly stands.
/// Their classes are not thread-safe: plain methods stay on the loop thread.
inline actor_options multiprocessing_options(actor_options o = {}) {
  if (!o.num_cpus && o.num_gpus == 0 && o.resources.empty()) o.num_cpus = 0;
  o.threaded = false;
  return o;
}

/// An actor's concurrency groups as they travel; throws usage_error for a group without a
/// name, with a limit of 0, or whose name's hash another's has.
inline std::vector<std::pair<std::string, std::uint32_t>> checked_groups(
    const std::map<std::string, std::uint32_t>& wanted) {
  std::vector<std::pair<std::string, std::uint32_t>> groups;
  std::vector<std::uint32_t> hashes;
  for (const auto& [group, limit] : wanted) {
    const std::uint32_t h = group_hash(group);
    if (group.empty() || limit == 0 || std::find(hashes.begin(), hashes.end(), h) != hashes.end())
      throw usage_error(fmt::format(
          "ray::spawn: concurrency group '{}' with limit {}: a group needs a name of its own and a "
          "limit of at least 1",
          group, limit));
    hashes.push_back(h);
    groups.emplace_back(group, std::min(limit, max_concurrency_limit));
  }
  return groups;
}

/// ray::spawn, its process started as `start_as` says (0: by the runtime's start method,
/// else 1 + a start_method_id).
template <class T, class... A>
actor<T> spawn_as(actor_options opts, std::uint32_t start_as, A&&... args) {
  using ctor = detail::actor_constructor<T, detail::constructor_arg_t<A>...>;
  static_assert(std::is_constructible_v<T, detail::constructor_arg_t<A>&&...>,
                "ray::spawn<T>(args...): T has no constructor taking these arguments");
  static_assert(((detail::is_actor_v<A> || is_encodable_v<detail::constructor_arg_t<A>>)&&...),
                "ray::spawn<T>(args...): a constructor argument cannot be sent between processes");
  if constexpr (std::is_constructible_v<T, detail::constructor_arg_t<A>&&...>) {
    (void)ctor::registered;
    // Built on the calling thread (the arguments encoded there); started on the loop.
    auto request = [&](detail::process& p) {
      detail::require_usable_ref_arguments(args...);
      const auto groups = detail::checked_groups(opts.concurrency_groups);
      detail::actor_spawn_request req;
      // Checked before any argument takes a block.
      if (opts.num_cpus || opts.num_gpus != 0 || !opts.resources.empty())
        req.resources =
            std::make_shared<const detail::resource_request>(detail::resource_request::from(
                opts.num_cpus.value_or(0), opts.num_gpus, opts.resources, "ray::spawn"));
      req.constructor.fn_id = detail::entity_id<&ctor::marker>;
      req.constructor.name = detail::type_name_v<T>;
      (detail::add_argument<detail::constructor_arg_t<A>>(req.constructor, p,
                                                          std::forward<A>(args)),
       ...);
      req.type_id = detail::actor_type_id<T>;
      req.type_name = std::string(detail::type_name_v<T>);
      req.name = std::move(opts.name);
      req.max_concurrency = std::min(opts.max_concurrency, detail::max_concurrency_limit) |
                            (opts.threaded ? 0 : detail::plain_methods_on_loop);
      if (!groups.empty()) {
        // One more constructor argument, which the actor's process takes off (worker.hpp).
        detail::add_argument<decltype(groups)>(req.constructor, p, std::move(groups));
        req.max_concurrency |= detail::has_concurrency_groups;
      }
      req.max_restarts =
          opts.max_restarts < 0 ? std::numeric_limits<int>::max() : opts.max_restarts;
      req.max_task_retries =
          opts.max_task_retries < 0 ? std::numeric_limits<int>::max() : opts.max_task_retries;
      req.start_as = start_as;
      req.where = detail::placement_of(opts.scheduling_strategy, "ray::spawn");
      return req;
    };
    auto start = [](detail::process& p, detail::actor_spawn_request&& req) {
      return actor<T>(p.make_actor_handle(p.spawn_actor(std::move(req))));
    };
    if (!detail::needs_handoff()) {
      auto& p = detail::process::require("ray::spawn");
      return start(p, request(p));
    }
    detail::foreign_entry e("ray::spawn");
    auto req = request(e.get());
    return e.get().call_on_loop([&](detail::process& p) { return start(p, std::move(req)); });
  } else {
    return {};
  }
}

}  // namespace detail

/// Starts an actor: constructs T(args...) in a new process. Returns at once; calls queue
/// behind the construction. If the constructor throws, calls fail with actor_died.
template <class T, class... A>
actor<T> spawn(actor_options opts, A&&... args) {
  return detail::spawn_as<T>(std::move(opts), 0, std::forward<A>(args)...);
}

template <class T, class... A>
actor<T> spawn(A&&... args) {
  return spawn<T>(actor_options{}, std::forward<A>(args)...);
}

/// The live actor named `name`, from any process. Throws actor_not_found if there is none,
/// or if it is not a T.
template <class T>
actor<T> get_actor(std::string_view name) {
  return detail::on_loop("ray::get_actor", [&](detail::process& p) {
    auto info = p.lookup_actor(name);
    if (!info.id)
      throw actor_not_found(fmt::format("ray::get_actor: no live actor is named '{}'", name));
    if (info.type_id != detail::actor_type_id<T>)
      throw actor_not_found(fmt::format("ray::get_actor: the actor named '{}' is not a {}", name,
                                        detail::type_name_v<T>));
    return actor<T>(p.make_actor_handle(info.id));
  });
}

/// Ends the actor now (SIGKILL). Its pending and later calls fail with actor_died.
/// Thread-safe in the driver.
template <class T>
void kill(const actor<T>& a) {
  if (a.valid()) detail::on_loop("ray::kill", [&](detail::process& p) { p.kill_actor(a.id()); });
}

/// Ends the calling actor gracefully, as Ray's `ray.actor.exit_actor()`: the method calling
/// it completes and replies, calls queued behind it fail with actor_died saying the actor
/// exited, its destructor runs, and it is not restarted whatever its max_restarts. Inside an
/// actor's method only (ray::usage_error elsewhere), on the thread running its calls.
inline void exit_actor() {
  if (detail::this_process().kind != process_kind::actor)
    throw usage_error("ray::exit_actor: called outside an actor's method");
  detail::process::require("ray::exit_actor").exit_actor();
}

CORAY_END_NAMESPACE
// end <coray/actor.hpp>
// begin <coray/actor_pool.hpp>
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
// #include <coray/actor.hpp>: inlined above
// begin <coray/detail/mp/dispatcher.hpp>
/// Spreads calls over a set of actors -- at most `depth` sent to each and not yet finished,
/// the rest waiting here in the order they came -- so that a free actor always takes the
/// next call, and settles each call's own result state when it ends. ray::pool and
/// ray::actor_pool are built on it. Driver only, on the loop's thread.
///
/// A call is sent from user code (enqueue) or, when one ends, from a coroutine the loop
/// resumes: never from inside the driver's own callbacks, so the driver is not re-entered
/// while it settles results.

// #include <coray/detail/runtime/driver.hpp>: inlined above
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
// end <coray/detail/mp/dispatcher.hpp>
// begin <coray/result_stream.hpp>
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
// #include <coray/async.hpp>: inlined above
// #include <coray/codec.hpp>: inlined above
// #include <coray/detail/runtime/process.hpp>: inlined above
// #include <coray/object_store.hpp>: inlined above
// #include <coray/sync_wait.hpp>: inlined above
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
// end <coray/result_stream.hpp>
// #include <coray/sync_wait.hpp>: inlined above
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
// end <coray/actor_pool.hpp>
// #include <coray/async.hpp>: inlined above
// #include <coray/codec.hpp>: inlined above
// #include <coray/errors.hpp>: inlined above
// #include <coray/generator.hpp>: inlined above
// begin <coray/manager.hpp>
/// ray::manager: multiprocessing.Manager() for C++. One actor serves shared dicts, lists and
/// namespaces; what the manager hands out are proxies -- values that copy, pass to tasks and
/// actors as arguments (alone or inside containers), and reach the same object from any
/// process of the runtime.
///
///   void count(ray::dict_proxy<std::string, int> words, std::vector<std::string> text) {
///     for (auto& w : text) words.increment(w, 1);      // atomic in the manager
///   }
///
///   ray::manager m;                                     // starts the serving actor
///   auto d = m.dict<std::string, int>();
///   auto l = m.list<double>();
///   auto ns = m.ns();
///   d.set("apple", 1);
///   int a = d.get("apple");                             // or ray::key_error
///   int b = d.get("pear", 0);                           // a default instead
///   l.append(2.5);
///   ns.set("epoch", 3);
///   int epoch = ns.get<int>("epoch");                   // a wrong type: ray::codec_error
///   ray::task<count>.remote(d, text);
///
/// Every operation is one actor call, blocking by default, and runs alone in the manager, so
/// each one is atomic: `increment`, `setdefault`, `pop`, `popitem`, `compare_exchange` and
/// `update` included. A sequence of operations is not (as with Python's proxies): `d.set(k,
/// d.get(k) + 1)` from two processes can lose an update; use `increment`, or a loop on
/// `compare_exchange`, or a ray::mutex around the sequence.
///
/// Keys are equal when their encodings are (ray::encode): right for numbers, strings, and
/// containers of them; not for unordered containers or floating-point NaN and -0.0.
/// The manager's actor lives while the manager or any proxy of it exists in any process (or
/// until shutdown()); the objects live as long as their manager's actor. If its process dies,
/// every later operation fails with ray::actor_died. Create managers in the driver; proxies
/// work everywhere.

#include <fmt/format.h>

// #include <coray/actor.hpp>: inlined above
// #include <coray/async.hpp>: inlined above
// begin <coray/detail/mp/manager_server.hpp>
/// The actor behind a ray::manager: one process serving every dict, list and namespace made
/// through that manager. It knows no user types: keys, values and items arrive as their
/// codec encodings (held in std::string, so they hash and compare as bytes), and the proxies
/// in the callers' processes encode and decode them. Each method runs alone in the actor, so
/// each operation is atomic; a sequence of operations is not.

#include <fmt/format.h>
#include <unistd.h>

// #include <coray/codec.hpp>: inlined above
// #include <coray/errors.hpp>: inlined above
#include <cstdint>
#include <list>
#include <map>
#include <optional>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// An arithmetic type's tag, so that the server can add encoded numbers it has no type for.
enum class number_kind : std::uint8_t { i8, i16, i32, i64, u8, u16, u32, u64, f32, f64 };

template <class T>
constexpr number_kind number_kind_of() {
  static_assert(std::is_arithmetic_v<T> && !std::is_same_v<T, bool> && sizeof(T) <= 8,
                "ray::dict_proxy::increment: the value type must be an integer or floating "
                "point type of at most 8 bytes (not bool)");
  if constexpr (std::is_floating_point_v<T>)
    return sizeof(T) == 4 ? number_kind::f32 : number_kind::f64;
  else if constexpr (std::is_signed_v<T>)
    return sizeof(T) == 1   ? number_kind::i8
           : sizeof(T) == 2 ? number_kind::i16
           : sizeof(T) == 4 ? number_kind::i32
                            : number_kind::i64;
  else
    return sizeof(T) == 1   ? number_kind::u8
           : sizeof(T) == 2 ? number_kind::u16
           : sizeof(T) == 4 ? number_kind::u32
                            : number_kind::u64;
}

/// Bytes as the server holds them: a value's encoding.
using encoded = std::string;

template <class T>
encoded encode_as_string(const T& v) {
  encoded s(encoded_size(v), '\0');
  encode_to(std::as_writable_bytes(std::span<char>(s)), v);
  return s;
}
template <class T>
T decode_from_string(const encoded& s) {
  return decode<T>(std::as_bytes(std::span<const char>(s)));
}

class manager_server {
 public:
  enum class kind : std::uint8_t { dict, list, ns };

  /// The server's process id (for introspection and tests).
  CORAY_API int pid() const;

  /// A new, empty object; its id names it in later calls.
  CORAY_API std::uint64_t create(std::uint8_t k);

  // ---- dict: insertion-ordered, as Python's -----------------------------------------------

  CORAY_API void dict_set(std::uint64_t id, encoded key, encoded value);
  CORAY_API std::optional<encoded> dict_get(std::uint64_t id, const encoded& key);
  /// The value at `key`, first setting it to `value` if absent (Python's setdefault).
  CORAY_API encoded dict_setdefault(std::uint64_t id, encoded key, encoded value);
  /// Removes `key`, returning its value; nullopt if it was absent.
  CORAY_API std::optional<encoded> dict_pop(std::uint64_t id, const encoded& key);
  /// Removes and returns the last item inserted (Python's popitem); nullopt if empty.
  CORAY_API std::optional<std::pair<encoded, encoded>> dict_popitem(std::uint64_t id);
  CORAY_API bool dict_contains(std::uint64_t id, const encoded& key);
  CORAY_API std::uint64_t dict_size(std::uint64_t id);
  CORAY_API std::vector<encoded> dict_keys(std::uint64_t id);
  CORAY_API std::vector<encoded> dict_values(std::uint64_t id);
  CORAY_API std::vector<std::pair<encoded, encoded>> dict_items(std::uint64_t id);
  CORAY_API void dict_clear(std::uint64_t id);
  CORAY_API void dict_update(std::uint64_t id, std::vector<std::pair<encoded, encoded>> items);
  /// Sets `key` to `desired` if its value is `expected` (nullopt: if it is absent).
  CORAY_API bool dict_compare_exchange(std::uint64_t id, encoded key,
                                       std::optional<encoded> expected, encoded desired);
  /// Adds `delta` (a number of kind `k`) to the value at `key` (0 if absent); the new value.
  CORAY_API encoded dict_increment(std::uint64_t id, encoded key, std::uint8_t k, encoded delta);

  // ---- list ------------------------------------------------------------------------------

  CORAY_API void list_append(std::uint64_t id, encoded v);
  CORAY_API void list_extend(std::uint64_t id, std::vector<encoded> vs);
  /// Inserts before index `i` (negative: from the end; clamped, as Python's insert).
  CORAY_API void list_insert(std::uint64_t id, std::int64_t i, encoded v);
  CORAY_API encoded list_get(std::uint64_t id, std::int64_t i);
  CORAY_API void list_set(std::uint64_t id, std::int64_t i, encoded v);
  CORAY_API encoded list_pop(std::uint64_t id, std::int64_t i);
  CORAY_API std::uint64_t list_size(std::uint64_t id);
  CORAY_API std::vector<encoded> list_all(std::uint64_t id);
  CORAY_API void list_clear(std::uint64_t id);

  // ---- namespace: named values, each with its type's name ----------------------------------

  CORAY_API void ns_set(std::uint64_t id, std::string name, std::string type, encoded v);
  /// The type's name and the value of `name`; nullopt if it has none.
  CORAY_API std::optional<std::pair<std::string, encoded>> ns_get(std::uint64_t id,
                                                                  const std::string& name);
  CORAY_API bool ns_contains(std::uint64_t id, const std::string& name);
  CORAY_API bool ns_erase(std::uint64_t id, const std::string& name);
  CORAY_API std::vector<std::string> ns_names(std::uint64_t id);

 private:
  struct dict_state {
    using item_list = std::list<std::pair<encoded, encoded>>;
    item_list items;  // insertion order
    std::unordered_map<encoded, item_list::iterator> index;

    CORAY_API item_list::iterator set(encoded&& key, encoded&& value);
  };

  template <class Map>
  static auto& find(Map& m, std::uint64_t id) {
    auto it = m.find(id);
    if (it == m.end())
      throw usage_error(fmt::format("ray::manager: no object {} in this manager", id));
    return it->second;
  }
  CORAY_API dict_state& dict(std::uint64_t id);
  CORAY_API std::vector<encoded>& list(std::uint64_t id);
  CORAY_API std::map<std::string, std::pair<std::string, encoded>>& ns(std::uint64_t id);

  /// Python's index rules: negative counts from the end; out of range is an index_error.
  CORAY_API static std::size_t position(const std::vector<encoded>& l, std::int64_t i,
                                        const char* op);

  template <class T>
  static encoded add_as(const encoded& a, const encoded& b) {
    const T x = decode_from_string<T>(a), y = decode_from_string<T>(b);
    if constexpr (std::is_integral_v<T>) {  // wraps, as the unsigned sum does, never UB
      using U = std::make_unsigned_t<T>;
      return encode_as_string(static_cast<T>(static_cast<U>(x) + static_cast<U>(y)));
    } else {
      return encode_as_string(static_cast<T>(x + y));
    }
  }
  CORAY_API static encoded add(number_kind k, const encoded& a, const encoded& b);

  std::uint64_t last_id_ = 0;
  std::unordered_map<std::uint64_t, dict_state> dicts_;
  std::unordered_map<std::uint64_t, std::vector<encoded>> lists_;
  std::unordered_map<std::uint64_t, std::map<std::string, std::pair<std::string, encoded>>>
      namespaces_;
};

}  // namespace detail
CORAY_END_NAMESPACE

// begin <coray/detail/mp/manager_server_impl.hpp>
/// The members of manager_server, the actor behind a ray::manager: included by
/// manager_server.hpp in header-only mode (inline), and compiled once by src/coray.cpp into
/// coray::coray_compiled in compiled mode (CORAY_COMPILED_LIB), so that a translation unit
/// including coray.hpp does not instantiate the server's containers.

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
// #include <coray/detail/mp/manager_server.hpp>: inlined above
// #include <coray/errors.hpp>: inlined above
#include <cstdint>
#include <iterator>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

CORAY_API int manager_server::pid() const { return static_cast<int>(::getpid()); }

CORAY_API std::uint64_t manager_server::create(std::uint8_t k) {
  const std::uint64_t id = ++last_id_;
  switch (static_cast<kind>(k)) {
    case kind::dict:
      dicts_.try_emplace(id);
      break;
    case kind::list:
      lists_.try_emplace(id);
      break;
    case kind::ns:
      namespaces_.try_emplace(id);
      break;
    default:
      throw usage_error("ray::manager: unknown object kind");
  }
  return id;
}

CORAY_API void manager_server::dict_set(std::uint64_t id, encoded key, encoded value) {
  dict(id).set(std::move(key), std::move(value));
}

CORAY_API std::optional<encoded> manager_server::dict_get(std::uint64_t id, const encoded& key) {
  auto& d = dict(id);
  auto it = d.index.find(key);
  if (it == d.index.end()) return std::nullopt;
  return it->second->second;
}

CORAY_API encoded manager_server::dict_setdefault(std::uint64_t id, encoded key, encoded value) {
  auto& d = dict(id);
  auto it = d.index.find(key);
  if (it != d.index.end()) return it->second->second;
  return d.set(std::move(key), std::move(value))->second;
}

CORAY_API std::optional<encoded> manager_server::dict_pop(std::uint64_t id, const encoded& key) {
  auto& d = dict(id);
  auto it = d.index.find(key);
  if (it == d.index.end()) return std::nullopt;
  encoded v = std::move(it->second->second);
  d.items.erase(it->second);
  d.index.erase(it);
  return v;
}

CORAY_API std::optional<std::pair<encoded, encoded>> manager_server::dict_popitem(
    std::uint64_t id) {
  auto& d = dict(id);
  if (d.items.empty()) return std::nullopt;
  auto item = std::move(d.items.back());
  d.index.erase(item.first);
  d.items.pop_back();
  return item;
}

CORAY_API bool manager_server::dict_contains(std::uint64_t id, const encoded& key) {
  return dict(id).index.contains(key);
}

CORAY_API std::uint64_t manager_server::dict_size(std::uint64_t id) {
  return dict(id).items.size();
}

CORAY_API std::vector<encoded> manager_server::dict_keys(std::uint64_t id) {
  std::vector<encoded> out;
  for (auto& [k, v] : dict(id).items) out.push_back(k);
  return out;
}

CORAY_API std::vector<encoded> manager_server::dict_values(std::uint64_t id) {
  std::vector<encoded> out;
  for (auto& [k, v] : dict(id).items) out.push_back(v);
  return out;
}

CORAY_API std::vector<std::pair<encoded, encoded>> manager_server::dict_items(std::uint64_t id) {
  auto& items = dict(id).items;
  return {items.begin(), items.end()};
}

CORAY_API void manager_server::dict_clear(std::uint64_t id) {
  auto& d = dict(id);
  d.index.clear();
  d.items.clear();
}

CORAY_API void manager_server::dict_update(std::uint64_t id,
                                           std::vector<std::pair<encoded, encoded>> items) {
  auto& d = dict(id);
  for (auto& [k, v] : items) d.set(std::move(k), std::move(v));
}

CORAY_API bool manager_server::dict_compare_exchange(std::uint64_t id, encoded key,
                                                     std::optional<encoded> expected,
                                                     encoded desired) {
  auto& d = dict(id);
  auto it = d.index.find(key);
  const bool present = it != d.index.end();
  if (present != expected.has_value()) return false;
  if (present && it->second->second != *expected) return false;
  d.set(std::move(key), std::move(desired));
  return true;
}

CORAY_API encoded manager_server::dict_increment(std::uint64_t id, encoded key, std::uint8_t k,
                                                 encoded delta) {
  auto& d = dict(id);
  auto it = d.index.find(key);
  if (it == d.index.end()) return d.set(std::move(key), std::move(delta))->second;
  return it->second->second = add(static_cast<number_kind>(k), it->second->second, delta);
}

CORAY_API void manager_server::list_append(std::uint64_t id, encoded v) {
  list(id).push_back(std::move(v));
}

CORAY_API void manager_server::list_extend(std::uint64_t id, std::vector<encoded> vs) {
  auto& l = list(id);
  for (auto& v : vs) l.push_back(std::move(v));
}

CORAY_API void manager_server::list_insert(std::uint64_t id, std::int64_t i, encoded v) {
  auto& l = list(id);
  const auto n = static_cast<std::int64_t>(l.size());
  if (i < 0) i = std::max<std::int64_t>(0, i + n);
  if (i > n) i = n;
  l.insert(l.begin() + i, std::move(v));
}

CORAY_API encoded manager_server::list_get(std::uint64_t id, std::int64_t i) {
  auto& l = list(id);
  return l[position(l, i, "get")];
}

CORAY_API void manager_server::list_set(std::uint64_t id, std::int64_t i, encoded v) {
  auto& l = list(id);
  l[position(l, i, "set")] = std::move(v);
}

CORAY_API encoded manager_server::list_pop(std::uint64_t id, std::int64_t i) {
  auto& l = list(id);
  if (l.empty()) throw index_error("ray::list_proxy: pop from an empty list");
  const std::size_t at = position(l, i, "pop");
  encoded v = std::move(l[at]);
  l.erase(l.begin() + static_cast<std::ptrdiff_t>(at));
  return v;
}

CORAY_API std::uint64_t manager_server::list_size(std::uint64_t id) { return list(id).size(); }

CORAY_API std::vector<encoded> manager_server::list_all(std::uint64_t id) { return list(id); }

CORAY_API void manager_server::list_clear(std::uint64_t id) { list(id).clear(); }

CORAY_API void manager_server::ns_set(std::uint64_t id, std::string name, std::string type,
                                      encoded v) {
  ns(id).insert_or_assign(std::move(name), std::pair{std::move(type), std::move(v)});
}

CORAY_API std::optional<std::pair<std::string, encoded>> manager_server::ns_get(
    std::uint64_t id, const std::string& name) {
  auto& n = ns(id);
  auto it = n.find(name);
  if (it == n.end()) return std::nullopt;
  return it->second;
}

CORAY_API bool manager_server::ns_contains(std::uint64_t id, const std::string& name) {
  return ns(id).contains(name);
}

CORAY_API bool manager_server::ns_erase(std::uint64_t id, const std::string& name) {
  return ns(id).erase(name) != 0;
}

CORAY_API std::vector<std::string> manager_server::ns_names(std::uint64_t id) {
  std::vector<std::string> out;
  for (auto& [name, v] : ns(id)) out.push_back(name);
  return out;
}

CORAY_API manager_server::dict_state::item_list::iterator manager_server::dict_state::set(
    encoded&& key, encoded&& value) {
  auto it = index.find(key);
  if (it != index.end()) {
    it->second->second = std::move(value);
    return it->second;
  }
  items.emplace_back(key, std::move(value));
  auto at = std::prev(items.end());
  index.emplace(std::move(key), at);
  return at;
}

CORAY_API manager_server::dict_state& manager_server::dict(std::uint64_t id) {
  return find(dicts_, id);
}

CORAY_API std::vector<encoded>& manager_server::list(std::uint64_t id) { return find(lists_, id); }

CORAY_API std::map<std::string, std::pair<std::string, encoded>>& manager_server::ns(
    std::uint64_t id) {
  return find(namespaces_, id);
}

CORAY_API std::size_t manager_server::position(const std::vector<encoded>& l, std::int64_t i,
                                               const char* op) {
  const auto n = static_cast<std::int64_t>(l.size());
  const std::int64_t at = i < 0 ? i + n : i;
  if (at < 0 || at >= n)
    throw index_error(
        fmt::format("ray::list_proxy: {} at index {} out of range (size {})", op, i, n));
  return static_cast<std::size_t>(at);
}

CORAY_API encoded manager_server::add(number_kind k, const encoded& a, const encoded& b) {
  switch (k) {
    case number_kind::i8:
      return add_as<std::int8_t>(a, b);
    case number_kind::i16:
      return add_as<std::int16_t>(a, b);
    case number_kind::i32:
      return add_as<std::int32_t>(a, b);
    case number_kind::i64:
      return add_as<std::int64_t>(a, b);
    case number_kind::u8:
      return add_as<std::uint8_t>(a, b);
    case number_kind::u16:
      return add_as<std::uint16_t>(a, b);
    case number_kind::u32:
      return add_as<std::uint32_t>(a, b);
    case number_kind::u64:
      return add_as<std::uint64_t>(a, b);
    case number_kind::f32:
      return add_as<float>(a, b);
    case number_kind::f64:
      return add_as<double>(a, b);
  }
  throw usage_error("ray::dict_proxy::increment: unknown number kind");
}

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/mp/manager_server_impl.hpp>
// end <coray/detail/mp/manager_server.hpp>
// #include <coray/errors.hpp>: inlined above
// #include <coray/object_store.hpp>: inlined above
// #include <coray/sync_wait.hpp>: inlined above
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE

namespace detail {

/// What every proxy holds: the manager's actor and the object's id there.
class manager_proxy_base {
 public:
  /// True for a proxy made by a manager; false for a default-constructed one.
  bool valid() const noexcept { return server_.valid() && id_ != 0; }

  /// Proxies travel as call arguments: the receiving process reaches the same object.
  template <class Archive>
  void serialize(Archive& ar) {
    ar(server_, id_);
  }

  friend bool operator==(const manager_proxy_base& a, const manager_proxy_base& b) noexcept {
    return a.server_ == b.server_ && a.id_ == b.id_;
  }

 protected:
  manager_proxy_base() noexcept = default;
  manager_proxy_base(actor<manager_server> server, std::uint64_t id) noexcept
      : server_(std::move(server)), id_(id) {}

  /// The method's result ref; the call is sent at once.
  template <auto Method, class... A>
  auto send(const char* what, A&&... args) const {
    if (!valid())
      throw usage_error(fmt::format("{}: the proxy is empty (default-constructed)", what));
    return server_.template call<Method>(id_, std::forward<A>(args)...);
  }
  /// The method's result, waiting for it (serving the runtime meanwhile on a loop thread).
  template <auto Method, class... A>
  auto call(const char* what, A&&... args) const {
    return ray::get(send<Method>(what, std::forward<A>(args)...)).get();
  }

  actor<manager_server> server_;
  std::uint64_t id_ = 0;
};

/// The manager's actor type, as a proxy class template names it: a dependent name, so that
/// a call to the actor from a proxy's member is instantiated (and the method's handler
/// registered) only where that member is used, not in every translation unit that includes
/// this header. The non-template proxy and ray::manager call the actor only from
/// manager_impl.hpp, compiled once in compiled mode.
template <class>
struct manager_server_of {
  using type = manager_server;
};

/// `key` as an error message shows it: strings quoted, as Python's KeyError does.
template <class K>
std::string describe_key(const K& key) {
  if constexpr (std::is_convertible_v<const K&, std::string_view>)
    return fmt::format("'{}'", std::string_view(key));
  else if constexpr (fmt::is_formattable<K>::value)
    return fmt::format("{}", key);
  else
    return fmt::format("(a {})", display_name<K>());
}

}  // namespace detail

/// A dict served by a ray::manager (Python's DictProxy): insertion-ordered, keys of type K,
/// values of type V.
template <class K, class V>
class dict_proxy : public detail::manager_proxy_base {
  using server = typename detail::manager_server_of<K>::type;
  static_assert(is_encodable_v<K> && is_decodable_v<K>,
                "ray::dict_proxy<K, V>: K must be encodable and decodable");
  static_assert(is_encodable_v<V> && is_decodable_v<V>,
                "ray::dict_proxy<K, V>: V must be encodable and decodable");

 public:
  using key_type = K;
  using mapped_type = V;

  /// An empty proxy (to be assigned, or filled by decoding); manager::dict makes real ones.
  dict_proxy() noexcept = default;

  /// d[key] = value.
  void set(const K& key, const V& value) {
    call<&server::dict_set>("ray::dict_proxy::set", enc(key), enc(value));
  }
  /// d[key]; throws ray::key_error naming the key if it is absent.
  V get(const K& key) const {
    auto v = call<&server::dict_get>("ray::dict_proxy::get", enc(key));
    if (!v) throw missing(key);
    return dec<V>(*v);
  }
  /// d.get(key, fallback).
  V get(const K& key, V fallback) const {
    auto v = call<&server::dict_get>("ray::dict_proxy::get", enc(key));
    return v ? dec<V>(*v) : std::move(fallback);
  }
  /// d.get(key) as an optional: empty if the key is absent.
  std::optional<V> find(const K& key) const {
    auto v = call<&server::dict_get>("ray::dict_proxy::find", enc(key));
    if (!v) return std::nullopt;
    return dec<V>(*v);
  }
  /// d.setdefault(key, value): the value at `key`, first set to `value` if absent.
  V setdefault(const K& key, const V& value) {
    return dec<V>(
        call<&server::dict_setdefault>("ray::dict_proxy::setdefault", enc(key), enc(value)));
  }
  /// d.pop(key): removes `key` and returns its value; ray::key_error if absent.
  V pop(const K& key) {
    auto v = call<&server::dict_pop>("ray::dict_proxy::pop", enc(key));
    if (!v) throw missing(key);
    return dec<V>(*v);
  }
  /// d.pop(key, fallback).
  V pop(const K& key, V fallback) {
    auto v = call<&server::dict_pop>("ray::dict_proxy::pop", enc(key));
    return v ? dec<V>(*v) : std::move(fallback);
  }
  /// del d[key], without the error: true if the key was there.
  bool erase(const K& key) {
    return call<&server::dict_pop>("ray::dict_proxy::erase", enc(key)).has_value();
  }
  /// d.popitem(): removes and returns the item inserted last; ray::key_error if empty.
  std::pair<K, V> popitem() {
    auto kv = call<&server::dict_popitem>("ray::dict_proxy::popitem");
    if (!kv) throw key_error("ray::dict_proxy::popitem: the dict is empty");
    return {dec<K>(kv->first), dec<V>(kv->second)};
  }
  /// key in d.
  bool contains(const K& key) const {
    return call<&server::dict_contains>("ray::dict_proxy::contains", enc(key));
  }
  /// len(d).
  std::size_t size() const {
    return static_cast<std::size_t>(call<&server::dict_size>("ray::dict_proxy::size"));
  }
  bool empty() const { return size() == 0; }
  /// list(d.keys()), in insertion order.
  std::vector<K> keys() const {
    return dec_all<K>(call<&server::dict_keys>("ray::dict_proxy::keys"));
  }
  /// list(d.values()), in insertion order.
  std::vector<V> values() const {
    return dec_all<V>(call<&server::dict_values>("ray::dict_proxy::values"));
  }
  /// list(d.items()), in insertion order: a snapshot of the whole dict in one call.
  std::vector<std::pair<K, V>> items() const {
    auto kvs = call<&server::dict_items>("ray::dict_proxy::items");
    std::vector<std::pair<K, V>> out;
    out.reserve(kvs.size());
    for (auto& [k, v] : kvs) out.emplace_back(dec<K>(k), dec<V>(v));
    return out;
  }
  /// d.clear().
  void clear() { call<&server::dict_clear>("ray::dict_proxy::clear"); }
  /// d.update(items): all of them in one call, so no other operation sees half.
  template <class Range>
  void update(const Range& items) {
    std::vector<std::pair<detail::encoded, detail::encoded>> kvs;
    for (const auto& [k, v] : items)
      kvs.emplace_back(enc(static_cast<const K&>(k)), enc(static_cast<const V&>(v)));
    call<&server::dict_update>("ray::dict_proxy::update", std::move(kvs));
  }
  void update(std::initializer_list<std::pair<K, V>> items) {
    update<std::initializer_list<std::pair<K, V>>>(items);
  }
  /// Sets `key` to `desired` if its value now is `expected` (std::nullopt: if it is absent),
  /// atomically; false, and no change, otherwise. Values compare by their encodings. A loop
  /// of find and compare_exchange is an atomic read-modify-write of any kind.
  bool compare_exchange(const K& key, const std::optional<V>& expected, const V& desired) {
    std::optional<detail::encoded> e;
    if (expected) e = enc(*expected);
    return call<&server::dict_compare_exchange>("ray::dict_proxy::compare_exchange", enc(key),
                                                std::move(e), enc(desired));
  }
  /// d[key] = d.get(key, 0) + delta, atomically; returns the new value. V must be an integer
  /// (wrapping on overflow) or floating-point type.
  V increment(const K& key, V delta = V(1)) requires std::is_arithmetic_v<V> {
    return dec<V>(call<&server::dict_increment>(
        "ray::dict_proxy::increment", enc(key),
        static_cast<std::uint8_t>(detail::number_kind_of<V>()), enc(delta)));
  }

  /// set() in a coroutine, or sent now and awaited later: `co_await d.set_async(k, v)`.
  async<void> set_async(const K& key, const V& value) {
    return await_void(send<&server::dict_set>("ray::dict_proxy::set_async", enc(key), enc(value)));
  }
  /// get() in a coroutine: `V v = co_await d.get_async(k)`; ray::key_error if absent.
  async<V> get_async(const K& key) const {
    return await_get(send<&server::dict_get>("ray::dict_proxy::get_async", enc(key)), key);
  }

 private:
  friend class manager;
  dict_proxy(actor<detail::manager_server> s, std::uint64_t id) noexcept
      : manager_proxy_base(std::move(s), id) {}

  static detail::encoded enc(const auto& x) { return detail::encode_as_string(x); }
  template <class T>
  static T dec(const detail::encoded& s) {
    return detail::decode_from_string<T>(s);
  }
  template <class T>
  static std::vector<T> dec_all(const std::vector<detail::encoded>& v) {
    std::vector<T> out;
    out.reserve(v.size());
    for (auto& s : v) out.push_back(dec<T>(s));
    return out;
  }
  static key_error missing(const K& key) {
    return key_error(fmt::format("ray::dict_proxy: no key {}", detail::describe_key(key)));
  }
  static async<void> await_void(object_ref<void> r) { co_await ray::get(r); }
  static async<V> await_get(object_ref<std::optional<detail::encoded>> r, K key) {
    std::optional<detail::encoded> v = co_await ray::get(r);
    if (!v) throw missing(key);
    co_return dec<V>(*v);
  }
};

/// A list served by a ray::manager (Python's ListProxy). Indexes follow Python's rules: a
/// negative one counts from the end; one out of range throws ray::index_error.
template <class T>
class list_proxy : public detail::manager_proxy_base {
  using server = typename detail::manager_server_of<T>::type;
  static_assert(is_encodable_v<T> && is_decodable_v<T>,
                "ray::list_proxy<T>: T must be encodable and decodable");

 public:
  using value_type = T;

  list_proxy() noexcept = default;

  /// l.append(v).
  void append(const T& v) { call<&server::list_append>("ray::list_proxy::append", enc(v)); }
  /// l.extend(items): all of them in one call, so they stay together.
  template <class Range>
  void extend(const Range& items) {
    std::vector<detail::encoded> vs;
    for (const auto& v : items) vs.push_back(enc(static_cast<const T&>(v)));
    call<&server::list_extend>("ray::list_proxy::extend", std::move(vs));
  }
  void extend(std::initializer_list<T> items) { extend<std::initializer_list<T>>(items); }
  /// l.insert(i, v): before index i (clamped to the list, as Python's).
  void insert(std::int64_t i, const T& v) {
    call<&server::list_insert>("ray::list_proxy::insert", i, enc(v));
  }
  /// l[i]; ray::index_error if out of range.
  T get(std::int64_t i) const { return dec(call<&server::list_get>("ray::list_proxy::get", i)); }
  T operator[](std::int64_t i) const { return get(i); }
  /// l[i] = v; ray::index_error if out of range.
  void set(std::int64_t i, const T& v) {
    call<&server::list_set>("ray::list_proxy::set", i, enc(v));
  }
  /// l.pop(i) (the last item by default); ray::index_error if empty or out of range.
  T pop(std::int64_t i = -1) { return dec(call<&server::list_pop>("ray::list_proxy::pop", i)); }
  /// len(l).
  std::size_t size() const {
    return static_cast<std::size_t>(call<&server::list_size>("ray::list_proxy::size"));
  }
  bool empty() const { return size() == 0; }
  /// list(l): a copy of the whole list in one call.
  std::vector<T> snapshot() const {
    auto vs = call<&server::list_all>("ray::list_proxy::snapshot");
    std::vector<T> out;
    out.reserve(vs.size());
    for (auto& s : vs) out.push_back(dec(s));
    return out;
  }
  /// l.clear().
  void clear() { call<&server::list_clear>("ray::list_proxy::clear"); }

  /// append() sent now, awaited later: `co_await l.append_async(v)`.
  async<void> append_async(const T& v) {
    return await_void(send<&server::list_append>("ray::list_proxy::append_async", enc(v)));
  }

 private:
  friend class manager;
  list_proxy(actor<detail::manager_server> s, std::uint64_t id) noexcept
      : manager_proxy_base(std::move(s), id) {}

  static detail::encoded enc(const T& x) { return detail::encode_as_string(x); }
  static T dec(const detail::encoded& s) { return detail::decode_from_string<T>(s); }
  static async<void> await_void(object_ref<void> r) { co_await ray::get(r); }
};

/// A namespace served by a ray::manager (Python's Namespace): named values of any encodable
/// types. Each value keeps its type's name, so get<T> of a value set as another type throws
/// ray::codec_error naming both, and a missing name throws ray::key_error (Python's
/// AttributeError).
class namespace_proxy : public detail::manager_proxy_base {
  using server = detail::manager_server;

 public:
  namespace_proxy() noexcept = default;

  /// ns.name = value.
  template <class T>
  void set(std::string name, const T& value) {
    static_assert(is_encodable_v<T> && is_decodable_v<T>,
                  "ray::namespace_proxy::set: the value must be encodable and decodable");
    set_encoded(std::move(name), std::string(detail::type_name_v<T>),
                detail::encode_as_string(value));
  }
  /// ns.name = "text": a string literal is kept as a std::string.
  void set(std::string name, const char* value) { set<std::string>(std::move(name), value); }
  /// ns.name, as a T: ray::key_error if there is no such name, ray::codec_error if its value
  /// was set as another type.
  template <class T>
  T get(const std::string& name) const {
    auto v = fetch<T>(name);
    if (!v) throw key_error(fmt::format("ray::namespace_proxy: no attribute '{}'", name));
    return std::move(*v);
  }
  /// getattr(ns, name, fallback); a value of another type is still a ray::codec_error.
  template <class T>
  T get(const std::string& name, T fallback) const {
    auto v = fetch<T>(name);
    return v ? std::move(*v) : std::move(fallback);
  }
  /// hasattr(ns, name).
  CORAY_API bool contains(const std::string& name) const;
  /// del ns.name, without the error: true if the name was there.
  CORAY_API bool erase(const std::string& name);
  /// The names set, sorted.
  CORAY_API std::vector<std::string> names() const;

 private:
  friend class manager;
  namespace_proxy(actor<detail::manager_server> s, std::uint64_t id) noexcept
      : manager_proxy_base(std::move(s), id) {}

  template <class T>
  std::optional<T> fetch(const std::string& name) const {
    static_assert(is_decodable_v<T>, "ray::namespace_proxy::get: T must be decodable");
    auto v = fetch_encoded(name);
    if (!v) return std::nullopt;
    if (v->first != detail::type_name_v<T>)
      throw codec_error(fmt::format("ray::namespace_proxy: attribute '{}' holds a {}, not a {}",
                                    name, v->first, detail::display_name<T>()));
    return detail::decode_from_string<T>(v->second);
  }
  /// The server's side of set and get: the value's type name and encoding.
  CORAY_API void set_encoded(std::string name, std::string type, detail::encoded value);
  CORAY_API std::optional<std::pair<std::string, detail::encoded>> fetch_encoded(
      const std::string& name) const;
};

/// multiprocessing.Manager(): starts one actor that serves the dicts, lists and namespaces
/// made through it. Copies are handles to the same manager. Its proxies, not the manager,
/// are what travel to tasks and actors.
class manager {
  using server = detail::manager_server;

 public:
  /// Starts the manager's process (returns at once; calls queue behind its start). Driver
  /// only, as ray::spawn is. `opts` names it for ray::get_actor, or sets restarts (a
  /// restarted manager starts empty).
  CORAY_API explicit manager(actor_options opts = {});

  /// A new, empty dict of K to V (Python's Manager().dict()).
  template <class K, class V>
  dict_proxy<K, V> dict() const {
    return {server_, create(server::kind::dict)};
  }
  /// A new dict holding `items` (later ones win for equal keys).
  template <class K, class V>
  dict_proxy<K, V> dict(std::initializer_list<std::pair<K, V>> items) const {
    auto d = dict<K, V>();
    d.update(items);
    return d;
  }
  /// A new, empty list of T (Python's Manager().list()).
  template <class T>
  list_proxy<T> list() const {
    return {server_, create(server::kind::list)};
  }
  /// A new list holding `items`.
  template <class T>
  list_proxy<T> list(const std::vector<T>& items) const {
    auto l = list<T>();
    if (!items.empty()) l.extend(items);
    return l;
  }
  /// A new, empty namespace (Python's Manager().Namespace()).
  CORAY_API namespace_proxy ns() const;

  /// The manager's process id (one call to it).
  CORAY_API int pid() const;
  /// The serving actor's handle (for ray::actor_process and the like).
  const actor<server>& server_actor() const noexcept { return server_; }
  /// Ends the manager's process now (Python's shutdown()); every later operation on its
  /// proxies fails with ray::actor_died.
  void shutdown() {
    if (server_.valid()) ray::kill(server_);
  }

 private:
  CORAY_API std::uint64_t create(server::kind k) const;

  actor<server> server_;
};

CORAY_END_NAMESPACE

// begin <coray/detail/mp/manager_impl.hpp>
/// The non-template members of ray::manager and ray::namespace_proxy: included by
/// manager.hpp in header-only mode (inline), and compiled once by src/coray.cpp into
/// coray::coray_compiled in compiled mode (CORAY_COMPILED_LIB). Each call to the manager's
/// actor registers that method's handler where it is instantiated; here, that is one
/// translation unit instead of every one that includes coray.hpp.

// #include <coray/manager.hpp>: inlined above
#include <optional>
#include <string>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE

CORAY_API bool namespace_proxy::contains(const std::string& name) const {
  return call<&server::ns_contains>("ray::namespace_proxy::contains", name);
}

CORAY_API bool namespace_proxy::erase(const std::string& name) {
  return call<&server::ns_erase>("ray::namespace_proxy::erase", name);
}

CORAY_API std::vector<std::string> namespace_proxy::names() const {
  return call<&server::ns_names>("ray::namespace_proxy::names");
}

CORAY_API void namespace_proxy::set_encoded(std::string name, std::string type,
                                            detail::encoded value) {
  call<&server::ns_set>("ray::namespace_proxy::set", std::move(name), std::move(type),
                        std::move(value));
}

CORAY_API std::optional<std::pair<std::string, detail::encoded>> namespace_proxy::fetch_encoded(
    const std::string& name) const {
  return call<&server::ns_get>("ray::namespace_proxy::get", name);
}

CORAY_API manager::manager(actor_options opts)
    : server_(ray::spawn<server>(detail::multiprocessing_options(std::move(opts)))) {}

CORAY_API namespace_proxy manager::ns() const { return {server_, create(server::kind::ns)}; }

CORAY_API int manager::pid() const { return ray::get(server_.call<&server::pid>()).get(); }

CORAY_API std::uint64_t manager::create(server::kind k) const {
  if (!server_.valid()) throw usage_error("ray::manager: this manager is empty");
  return ray::get(server_.call<&server::create>(static_cast<std::uint8_t>(k))).get();
}

CORAY_END_NAMESPACE
// end <coray/detail/mp/manager_impl.hpp>
// end <coray/manager.hpp>
// begin <coray/metrics.hpp>
/// User metrics, as Ray's `ray.util.metrics`: a counter, a gauge and a histogram, each with
/// optional tags, recorded from any process of the runtime (the driver, tasks, actors) into
/// one table in shared memory, and served with the runtime's own metrics in Prometheus'
/// text format at the dashboard's /metrics.
///
///   ray::metrics::counter requests("app_requests_total", "Requests served", {"route"});
///   requests.inc(1, {{"route", "/predict"}});
///   ray::metrics::histogram latency("app_latency_seconds", "Latency", {0.01, 0.1, 1});
///   latency.observe(0.042);
///
/// A metric is its name: objects of the same name (in any process) record into the same
/// series, one per set of tag values. Recording is a few atomic operations on shared
/// memory, and a lookup of the tag values in the object the first time they are used.
/// The table holds 1,024 series; names follow Prometheus' rules and are at most 47
/// characters, the tags of one series at most 111 written as `k="v",...`.

// #include <coray/detail/runtime/metric_table.hpp>: inlined above
// #include <coray/errors.hpp>: inlined above
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace metrics {

/// Tag values by tag key.
using tags = std::map<std::string, std::string>;

namespace detail {

/// What the three kinds share: the name, the declared tag keys, and each set of tag values'
/// series (found in the runtime's table once, then kept; per object, any thread).
class metric_base {
 public:
  CORAY_API metric_base(std::string name, std::string description,
                        std::vector<std::string> tag_keys, ray::detail::metric_kind kind,
                        std::vector<double> bounds = {});

 protected:
  /// The series for `t` (every declared key given, no other): found in the runtime's table
  /// the first time, then kept.
  CORAY_API ray::detail::metric_series& series(const tags& t) const;

 private:
  struct shared {
    std::string name, help;
    std::vector<std::string> keys;
    ray::detail::metric_kind kind{};
    std::vector<double> bounds;
    std::mutex mu;
    std::uint32_t epoch = 0;
    std::unordered_map<std::string, ray::detail::metric_series*> found;
  };
  std::shared_ptr<shared> s_;
};

}  // namespace detail

/// A value that only goes up (Ray's Counter).
class counter : detail::metric_base {
 public:
  explicit counter(std::string name, std::string description = {},
                   std::vector<std::string> tag_keys = {})
      : metric_base(std::move(name), std::move(description), std::move(tag_keys),
                    ray::detail::metric_kind::counter) {}
  /// Adds `value` (0 or more; usage_error otherwise).
  void inc(double value = 1.0, const tags& t = {}) const {
    if (!(value >= 0)) throw usage_error("ray::metrics::counter::inc: a counter only goes up");
    series(t).add(value);
  }
};

/// A value set to what it is now (Ray's Gauge).
class gauge : detail::metric_base {
 public:
  explicit gauge(std::string name, std::string description = {},
                 std::vector<std::string> tag_keys = {})
      : metric_base(std::move(name), std::move(description), std::move(tag_keys),
                    ray::detail::metric_kind::gauge) {}
  void set(double value, const tags& t = {}) const { series(t).set(value); }
};

/// Observations counted into buckets by their upper bounds (Ray's Histogram): at most 12
/// bounds, ascending; a last bucket (+Inf) takes the rest.
class histogram : detail::metric_base {
 public:
  histogram(std::string name, std::string description, std::vector<double> boundaries,
            std::vector<std::string> tag_keys = {})
      : metric_base(std::move(name), std::move(description), std::move(tag_keys),
                    ray::detail::metric_kind::histogram, checked(std::move(boundaries))) {}
  void observe(double value, const tags& t = {}) const { series(t).observe(value); }

 private:
  CORAY_API static std::vector<double> checked(std::vector<double> b);
};

}  // namespace metrics
CORAY_END_NAMESPACE

// begin <coray/detail/runtime/metrics_impl.hpp>
/// The non-template members of ray::metrics' counter, gauge and histogram: included by
/// metrics.hpp in header-only mode (inline), and compiled once by src/coray.cpp into
/// coray::coray_compiled in compiled mode (CORAY_COMPILED_LIB).

#include <fmt/format.h>

#include <algorithm>
// #include <coray/detail/runtime/foreign.hpp>: inlined above
// #include <coray/detail/runtime/metric_table.hpp>: inlined above
// #include <coray/detail/runtime/process.hpp>: inlined above
// #include <coray/errors.hpp>: inlined above
// #include <coray/metrics.hpp>: inlined above
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace metrics::detail {

inline bool valid_name(std::string_view n) noexcept {
  if (n.empty() || n.size() > 47) return false;
  for (std::size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
                    (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

CORAY_API metric_base::metric_base(std::string name, std::string description,
                                   std::vector<std::string> tag_keys, ray::detail::metric_kind kind,
                                   std::vector<double> bounds)
    : s_(std::make_shared<shared>()) {
  if (!valid_name(name))
    throw usage_error(fmt::format(
        "ray::metrics: '{}' is not a metric name (letters, digits, '_' and ':', not starting "
        "with a digit, at most 47 characters)",
        name));
  for (const auto& k : tag_keys)
    if (!valid_name(k)) throw usage_error(fmt::format("ray::metrics: '{}' is not a tag key", k));
  s_->name = std::move(name);
  s_->help = std::move(description);
  s_->keys = std::move(tag_keys);
  s_->kind = kind;
  s_->bounds = std::move(bounds);
}

CORAY_API ray::detail::metric_series& metric_base::series(const tags& t) const {
  std::string labels;
  if (t.size() != s_->keys.size())
    throw usage_error(fmt::format("ray::metrics: '{}' takes the tags {}, given {}", s_->name,
                                  fmt::join(s_->keys, ", "), t.size()));
  for (const auto& k : s_->keys) {
    auto it = t.find(k);
    if (it == t.end())
      throw usage_error(fmt::format("ray::metrics: '{}' needs a value for tag '{}'", s_->name, k));
    if (!labels.empty()) labels += ',';
    labels += k + "=\"";
    for (char c : it->second) {
      if (c == '"' || c == '\\') labels += '\\';
      labels += c == '\n' ? 'n' : c;
      if (c == '\n') labels[labels.size() - 2] = '\\';
    }
    labels += '"';
  }
  // The runtime stays while this records: its loop thread, or an entry of its gate.
  ray::detail::process* p = ray::detail::process::here();
  auto& gate = ray::detail::runtime_gate::instance();
  const bool entered = !p && (p = gate.try_enter()) != nullptr;
  if (!p) throw usage_error("ray::metrics: metrics are recorded while a runtime runs");
  struct leave_gate {
    bool entered;
    ~leave_gate() {
      if (entered) ray::detail::runtime_gate::instance().leave();
    }
  } leave{entered};
  std::lock_guard lock(s_->mu);
  if (p->epoch != s_->epoch) {  // a new runtime: its own table
    s_->found.clear();
    s_->epoch = p->epoch;
  }
  if (auto it = s_->found.find(labels); it != s_->found.end()) return *it->second;
  if (labels.size() > 111)
    throw usage_error(fmt::format(
        "ray::metrics: the tags of '{}' are longer than 111 characters written out", s_->name));
  ray::detail::metric_series* found =
      p->hdr->metrics.find_or_claim({s_->name, labels, s_->help, s_->kind, s_->bounds});
  if (!found)
    throw usage_error(fmt::format("ray::metrics: the runtime's table of {} series is full",
                                  ray::detail::metric_table::capacity));
  s_->found.emplace(std::move(labels), found);
  return *found;
}

}  // namespace metrics::detail

namespace metrics {

CORAY_API std::vector<double> histogram::checked(std::vector<double> b) {
  if (b.empty() || b.size() > ray::detail::metric_series::max_bounds ||
      !std::is_sorted(b.begin(), b.end()) || std::adjacent_find(b.begin(), b.end()) != b.end())
    throw usage_error(
        fmt::format("ray::metrics::histogram: boundaries are 1 to {} distinct values, ascending",
                    ray::detail::metric_series::max_bounds));
  return b;
}

}  // namespace metrics
CORAY_END_NAMESPACE
// end <coray/detail/runtime/metrics_impl.hpp>
// end <coray/metrics.hpp>
// begin <coray/mutex.hpp>
/// ray::mutex: a lock that every process of the runtime can take -- multiprocessing.Lock,
/// robust to its holder's death. Works with std::lock_guard, std::unique_lock and
/// std::scoped_lock.
///
///   void add_one(ray::mutex lock, ray::shared_value<int> total) {
///     std::lock_guard hold(lock);
///     total.store(total.load() + 1);                  // exact under the lock
///   }
///
/// If a process dies holding the lock, the next locker gets it (lock() succeeds, as pthread
/// robust mutexes do) and owner_died() tells it that what the lock protects may be half
/// updated. A handle is a value: copy it, pass it to tasks and actors, create it in any
/// process. The lock lives while a handle to it exists in any process.
///
/// Waiting in lock() or try_lock_for() on a runtime loop's thread keeps serving the runtime
/// (as a blocking ray::get does), so the holder can finish work that needs this process. The
/// lock is not recursive: the thread holding it must not lock it again.

#include <chrono>
// begin <coray/detail/mp/shared_block.hpp>
/// A process's handle on a block of the runtime's segment that holds one mutable shared
/// object (ray::shared_value, ray::mutex): unlike store objects these are written in place,
/// so every process sees the same bytes.
///
/// Lifetime follows the store's rules. Each process holds references of its own to the
/// block, which the driver accounts for (a process that dies lets go of them); handles
/// within one process count locally and hold one reference between them. In a call's
/// arguments a handle travels as the block's offset: the call pins the block until it
/// ends, and the process that runs the call receives a reference of its own with the
/// message, which the decoded handle adopts.

#include <atomic>
// #include <coray/codec.hpp>: inlined above
// #include <coray/detail/runtime/process.hpp>: inlined above
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

CORAY_BEGIN_NAMESPACE
namespace detail {

class shared_block {
 public:
  shared_block() noexcept = default;

  /// A new block with `bytes` of payload, uninitialised. Any process of a runtime; in a worker
  /// it asks the driver. Throws object_store_full.
  static shared_block allocate(std::size_t bytes) {
    process& p = process::require();
    object_block* b = p.new_block(bytes);
    return shared_block(new local{{1}, b, p.epoch});
  }

  shared_block(const shared_block& o) noexcept : l_(o.l_) {
    if (l_) l_->handles.fetch_add(1, std::memory_order_relaxed);
  }
  shared_block(shared_block&& o) noexcept : l_(std::exchange(o.l_, nullptr)) {}
  shared_block& operator=(shared_block o) noexcept {
    std::swap(l_, o.l_);
    return *this;
  }
  ~shared_block() { reset(); }

  explicit operator bool() const noexcept { return l_ != nullptr; }
  std::byte* data() const noexcept { return l_->block->data(); }
  std::size_t size() const noexcept { return static_cast<std::size_t>(l_->block->size); }

  template <class Archive>
  void serialize(Archive& ar) {
    std::uint64_t offset = 0;
    if constexpr (!Archive::is_loading) {
      if (l_) offset = process::require().seg.offset_of(l_->block);
    }
    ar(offset);
    if constexpr (Archive::is_loading) {
      adopt(offset);
    } else if constexpr (std::is_same_v<Archive, writer>) {
      if (l_) collect_pinned_block(process::require().seg, l_->block);
    }
  }

 private:
  struct local {
    std::atomic<std::uint32_t> handles;
    object_block* block;
    std::uint32_t epoch;
  };
  explicit shared_block(local* l) noexcept : l_(l) {}

  /// Takes over the reference that came with the call's message.
  void adopt(std::uint64_t offset) {
    reset();
    if (offset == 0) return;
    process& p = process::require();
    if (offset % alignof(object_block) != 0 || offset < segment::root_bytes ||
        offset > p.seg.size() - sizeof(object_block))
      throw codec_error("coray: a shared value's offset is outside the segment");
    l_ = new local{{1}, p.seg.at<object_block>(offset), p.epoch};
  }

  void reset() noexcept {
    if (!l_ || l_->handles.fetch_sub(1, std::memory_order_acq_rel) != 1) {
      l_ = nullptr;
      return;
    }
    if (process::on_this_thread())
      release_on_loop(l_);
    else  // the last handle went on another thread: the loop drops the reference
      release_from_another_thread<local, &release_on_loop>(l_);
    l_ = nullptr;
  }
  static void release_on_loop(local* l) noexcept {
    process* p = process::current();
    if (p && p->epoch == l->epoch) p->release_block(l->block);
    delete l;
  }

  local* l_ = nullptr;
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/mp/shared_block.hpp>
// begin <coray/detail/mp/shared_wait.hpp>
/// What the synchronisation primitives in the segment share (ray::semaphore, ray::event,
/// ray::condition_variable, ray::barrier, ray::recursive_mutex): a handle type for a state
/// kept in a shared block and the waiting loop.
///
/// A wait on a runtime loop's thread keeps serving the runtime (as ray::mutex and a blocking
/// ray::get do), so the process that would wake the waiter may need this one meanwhile: it
/// serves what has arrived, then sleeps on the primitive's own futex word for at most a
/// 1 ms slice; the word's change wakes it at once. On any other thread it sleeps until its
/// deadline, or in slices where the primitive checks for a dead peer between them.

#include <algorithm>
#include <atomic>
#include <chrono>
// #include <coray/detail/mp/shared_block.hpp>: inlined above
// #include <coray/detail/shm/futex.hpp>: inlined above
// #include <coray/errors.hpp>: inlined above
#include <cstddef>
#include <cstdint>
#include <new>
#include <string>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// How long a waiter sleeps between two rounds of serving its runtime or checking its peers.
inline constexpr std::chrono::milliseconds wait_slice{1};

/// Sleeps while `*word == expected`, until `deadline` at most.
inline void futex_wait_until(std::atomic<std::uint32_t>& word, std::uint32_t expected,
                             clock::time_point deadline) noexcept {
  if (deadline == clock::time_point::max())
    return futex_wait(&word, expected, std::chrono::nanoseconds(-1));
  const auto left = deadline - clock::now();
  if (left > clock::duration::zero())
    futex_wait(&word, expected, std::chrono::duration_cast<std::chrono::nanoseconds>(left));
}

/// Waits until `take()` returns true (it also takes what it waits for: a unit, the lock) or
/// `deadline`; returns whether it took. `sleep(until)` sleeps on the primitive until woken or
/// `until` and may take, returning true if it did. `sliced` bounds every sleep to one slice,
/// for primitives that look for a dead peer in `sleep`.
template <class Take, class Sleep>
bool wait_serving(Take&& take, Sleep&& sleep, clock::time_point deadline, bool sliced = false) {
  if (take()) return true;
  process* p = process::here();
  for (;;) {
    const auto now = clock::now();
    if (now >= deadline) return take();
    if (p != nullptr && p->run_until(take, now)) return true;  // serves what has arrived
    const auto until =
        p != nullptr || sliced ? std::min(deadline, clock::now() + wait_slice) : deadline;
    if (sleep(until) || take()) return true;
  }
}

/// A handle on a `State` kept in a shared block, with shared_value's rules: copies share the
/// state, the block is taken at first use (an operation, a copy, or passing it to a call) so
/// that decoding never allocates one to throw away, and handles travel as call arguments.
/// `State(param)` builds it in `State::bytes(param)` bytes; `State::fits(bytes)` checks a
/// decoded block's size; `State::name` names it in errors.
template <class State>
class shared_handle {
 public:
  shared_handle(const shared_handle& o) : param_(o.param_), block_((o.state(), o.block_)) {}
  shared_handle(shared_handle&&) noexcept = default;
  shared_handle& operator=(const shared_handle& o) {
    o.state();
    param_ = o.param_;
    block_ = o.block_;
    return *this;
  }
  shared_handle& operator=(shared_handle&&) noexcept = default;

  /// Handles travel as call arguments: the receiving process reaches the same state.
  template <class Archive>
  void serialize(Archive& ar) {
    if constexpr (!Archive::is_loading) state();
    ar(block_);
    if constexpr (Archive::is_loading) {
      if (block_ && !State::fits(block_.size()))
        throw codec_error(std::string("coray: a ") + State::name + " handle of another type");
    }
  }

 protected:
  explicit shared_handle(std::uint32_t param) noexcept : param_(param) {}
  ~shared_handle() = default;

  State& state() const {
    if (!block_) {
      block_ = shared_block::allocate(State::bytes(param_));
      new (block_.data()) State(param_);
    }
    return *std::launder(reinterpret_cast<State*>(block_.data()));
  }

 private:
  std::uint32_t param_;
  mutable shared_block block_;
};

/// A futex word whose top bit says that someone may sleep on it: the side that changes the
/// word clears the bit and wakes only if it was set, so an uncontended change is one atomic
/// instruction. A sleeper that died leaves the bit set: it costs the next change one wake.
inline constexpr std::uint32_t sleepers_bit = 1u << 31;

/// Sleeps on `word` until `until`, unless `done(value)` holds for its value first.
template <class Done>
void sleep_on(std::atomic<std::uint32_t>& word, Done&& done, clock::time_point until) noexcept {
  std::uint32_t v = word.load(std::memory_order_acquire);
  if (done(v & ~sleepers_bit)) return;
  if ((v & sleepers_bit) == 0 &&
      !word.compare_exchange_strong(v, v | sleepers_bit, std::memory_order_acq_rel))
    return;  // it changed: the caller looks again
  futex_wait_until(word, v | sleepers_bit, until);
}

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/mp/shared_wait.hpp>
// #include <coray/detail/shm/robust_mutex.hpp>: inlined above
#include <cstdint>
#include <new>

CORAY_BEGIN_NAMESPACE

class condition_variable;

class mutex {
 public:
  /// A new unlocked lock. Its memory is taken at first use (locking, a copy, or passing it to
  /// a call), so that decoding a handle never allocates one to throw away.
  mutex() noexcept = default;
  /// Copies are handles to the same lock.
  mutex(const mutex& o) : block_((o.s(), o.block_)) {}
  mutex(mutex&&) noexcept = default;
  mutex& operator=(const mutex& o) {
    o.s();
    block_ = o.block_;
    return *this;
  }
  mutex& operator=(mutex&&) noexcept = default;

  /// Blocks until this thread holds the lock.
  void lock() { acquire_until(clock::time_point::max()); }
  /// Takes the lock if it is free; never waits.
  bool try_lock() {
    if (!s().lock.try_lock()) return false;
    acquired();
    return true;
  }
  /// Waits at most `timeout` for the lock; false if it did not come.
  template <class Rep, class Period>
  bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout) {
    return acquire_until(detail::deadline_in(timeout));
  }
  template <class Clock, class Duration>
  bool try_lock_until(const std::chrono::time_point<Clock, Duration>& deadline) {
    return acquire_until(detail::deadline_at(deadline));
  }
  /// Precondition: this thread holds the lock.
  void unlock() { s().lock.unlock(); }

  /// While holding the lock: true if this acquisition took it over from a process that died
  /// holding it, so the state the lock protects may be inconsistent.
  bool owner_died() const { return s().owner_died; }

  /// Handles travel as call arguments: the receiving process reaches the same lock.
  template <class Archive>
  void serialize(Archive& ar) {
    if constexpr (!Archive::is_loading) s();
    ar(block_);
    if constexpr (Archive::is_loading) {
      if (block_ && block_.size() != sizeof(state))
        throw codec_error("coray: a ray::mutex handle of another type");
    }
  }

 private:
  friend class condition_variable;  // sees the lock's owner deaths while it waits
  using clock = std::chrono::steady_clock;

  struct state {
    detail::robust_mutex lock;
    std::uint32_t deaths_seen = 0;  // the lock's owner_deaths() at the last acquisition
    bool owner_died = false;
  };

  state& s() const {
    if (!block_) {
      block_ = detail::shared_block::allocate(sizeof(state));
      new (block_.data()) state{};
    }
    return *std::launder(reinterpret_cast<state*>(block_.data()));
  }

  /// Run by each new holder: owner deaths are counted only by the acquisition that
  /// recovered the lock, so a count that moved since the last acquisition was ours.
  void acquired() {
    state& st = s();
    const std::uint32_t deaths = st.lock.owner_deaths();
    st.owner_died = deaths != st.deaths_seen;
    st.deaths_seen = deaths;
  }

  /// Serves the runtime while it waits on a loop's thread, sleeping on the lock itself
  /// between rounds: its release wakes the waiter at once (detail::wait_serving).
  bool acquire_until(clock::time_point deadline) {
    return detail::wait_serving([&] { return try_lock(); },
                                [&](clock::time_point until) {
                                  if (!s().lock.try_lock_until(until)) return false;
                                  acquired();
                                  return true;
                                },
                                deadline);
  }

  mutable detail::shared_block block_;
};

CORAY_END_NAMESPACE
// end <coray/mutex.hpp>
// #include <coray/object_ref.hpp>: inlined above
// #include <coray/object_store.hpp>: inlined above
// #include <coray/object_view.hpp>: inlined above
// begin <coray/pipe.hpp>
/// ray::pipe<T>(): two connected ends, ray::connection<T>, that any two processes of the
/// runtime use to send values to each other -- multiprocessing.Pipe.
///
///   void echo(ray::connection<std::string> c) {
///     for (std::string s = c.recv(); s != "bye"; s = c.recv()) c.send("echo " + s);
///   }
///   auto [here, there] = ray::pipe<std::string>();
///   auto done = ray::task<echo>.remote(there);
///   here.send("hi");
///   std::string reply = here.recv();                  // "echo hi"
///   if (here.poll(std::chrono::milliseconds(5))) ...  // whether a recv would not wait
///
/// A pipe is duplex by default: each end sends to the other. `ray::pipe<T>(false)` makes a
/// one-way pipe, as Python's Pipe(False): the first end only receives, the second only sends.
/// Values travel encoded with coray's codec (any type ray::encode takes, owning its data;
/// refs, actor handles, locks and shared values travel in calls, put objects and results,
/// where the runtime counts them, not through a pipe).
///
/// The ends are handles: copy them, pass them to tasks, actors and processes; the pipe lives
/// while a handle to it exists in any process. Its buffers are a block of the runtime's
/// segment, `buffer_bytes` per direction (64 KiB by default, as a Linux pipe). A value too
/// long for the buffer streams through it: its send returns once the receiver has taken all
/// but the last buffer-full, as an OS pipe's write does. A send waits while the buffer is
/// full; a recv while it is empty; a wait on a runtime loop's thread keeps serving the runtime.
///
/// Peer death. An end is owned by the process that last sent, received or polled on it (at
/// first, the process that made the pipe). A recv or poll with nothing to read, or a send
/// with no room, whose other end's owner has died (killed, crashed, or simply exited) ends
/// with ray::peer_died instead of waiting for ever; what that process sent before it died is
/// received first. close() makes the peer's waits end the same way. A process that dies in
/// the middle of a long value leaves that direction broken: its later uses throw peer_died.
/// As with Python's pipes, two processes using one end at the same time is allowed (whole
/// values never interleave) but which of them receives what is not defined.

#include <chrono>
// #include <coray/codec.hpp>: inlined above
// begin <coray/detail/mp/pipe_state.hpp>
/// ray::pipe's state in the segment: two byte rings (one per direction; a one-way pipe uses
/// one), the owner of each end, and how a waiter on a ring sleeps and learns that its peer
/// died.
///
/// A ring carries frames: a 16-byte header (the payload's length) and the encoded value,
/// padded to 16 bytes, so every header and payload starts 16-byte aligned. `head` counts the
/// bytes written and published, `tail` those read and freed; each grows for ever and is read
/// modulo the capacity. A frame that fits the ring is published at once (one store of head);
/// a longer one streams through it, piece by piece as the reader frees room, as an OS pipe
/// does. A robust lock per side (writers, readers) keeps whole frames apart when several
/// processes use one end; a process that dies holding one in the middle of a frame leaves the
/// ring broken (`broken`): every later use of that direction throws ray::peer_died.
///
/// Owners. An end is owned by the process that last sent, received or polled on it (at first,
/// the process that made the pipe); `owner[e]` holds that process's identity, its pid and the
/// kernel's start time for it, so that a reused pid is not mistaken for it. A waiter on end e
/// that finds no data (or no room) looks, between its sleeps, whether the owner of the other
/// end still runs (/proc/<pid>/stat: present, not a zombie, the same start time); if not, and
/// still nothing came, it throws ray::peer_died. What the dead process sent before it died is
/// still received first. close() marks an end as closed, which reads the same to its peer.

#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
// #include <coray/detail/mp/shared_wait.hpp>: inlined above
// #include <coray/detail/shm/futex.hpp>: inlined above
// #include <coray/detail/shm/robust_mutex.hpp>: inlined above
// #include <coray/errors.hpp>: inlined above
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// A process as an end's owner: pid (22 bits, Linux's largest pid_max) and its start time
/// in clock ticks since boot above them. 0: no one; closed_owner: closed by its owner.
inline constexpr std::uint64_t closed_owner = ~std::uint64_t{0};
inline constexpr int owner_pid_bits = 22;

/// The state letter and start time of process `pid` from /proc; false if there is none.
inline bool read_proc_stat(int pid, char& state, std::uint64_t& start) noexcept {
  char path[48];
  std::snprintf(path, sizeof path, "/proc/%d/stat", pid);
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[1024];
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  const char* p = std::strrchr(buf, ')');  // the command name may hold spaces and parentheses
  if (p == nullptr || p[1] != ' ') return false;
  p += 2;
  state = *p;
  for (int field = 3; field < 22; ++field) {  // starttime is field 22; the state is field 3
    p = std::strchr(p, ' ');
    if (p == nullptr) return false;
    ++p;
  }
  start = std::strtoull(p, nullptr, 10);
  return true;
}

inline std::uint64_t make_owner_id(int pid, std::uint64_t start) noexcept {
  return (start << owner_pid_bits) | static_cast<std::uint64_t>(pid);
}

/// This process as an owner, read once per process (a forked child reads its own).
inline std::uint64_t my_owner_id() noexcept {
  static std::atomic<std::uint64_t> id{0};
  static const bool reset_on_fork = [] {
    pthread_atfork(nullptr, nullptr, [] { id.store(0, std::memory_order_relaxed); });
    return true;
  }();
  (void)reset_on_fork;
  std::uint64_t v = id.load(std::memory_order_relaxed);
  if (v != 0) return v;
  const int pid = static_cast<int>(::getpid());
  char state = 0;
  std::uint64_t start = 0;
  read_proc_stat(pid, state, start);  // without /proc, the pid alone
  v = make_owner_id(pid, start);
  id.store(v, std::memory_order_relaxed);
  return v;
}

/// Whether the owner `id` is gone: it closed its end, or its process no longer runs.
inline bool owner_gone(std::uint64_t id) noexcept {
  if (id == 0) return false;  // no one yet: nothing to tell
  if (id == closed_owner) return true;
  if (id == my_owner_id()) return false;
  const int pid = static_cast<int>(id & ((std::uint64_t{1} << owner_pid_bits) - 1));
  char state = 0;
  std::uint64_t start = 0;
  if (!read_proc_stat(pid, state, start)) return true;
  if (state == 'Z' || state == 'X' || state == 'x') return true;  // killed, not yet reaped
  return make_owner_id(pid, start) != id;                         // its pid was reused
}

/// One direction of a pipe.
struct pipe_ring {
  static constexpr std::size_t header_bytes = 16;
  static std::uint64_t padded(std::uint64_t n) noexcept { return (n + 15) & ~std::uint64_t{15}; }

  // What the writer and the reader each change on every frame lies 64 bytes or more apart
  // from the other's, so that neither side's lock or counter bounces the other's cache line.
  // (Padding, not alignas: a block of the segment is 16-byte aligned.)
  std::uint64_t capacity = 0;            // bytes, a multiple of 16; 0 for an unused direction
  std::uint64_t data_offset = 0;         // of the bytes, from the pipe_state
  std::atomic<std::uint32_t> broken{0};  // a process died in the middle of a frame
  std::byte pad0[64];
  robust_mutex writers;             // held while one frame is written
  std::uint32_t writer_deaths = 0;  // writers.owner_deaths() when last taken
  bool writing = false;             // under writers: a frame is partly written
  std::byte pad1[64];
  std::atomic<std::uint64_t> head{0};
  std::atomic<std::uint32_t> data_word{0};  // bumped when head moves; sleepers_bit
  std::byte pad2[64];
  robust_mutex readers;             // held while one frame is read
  std::uint32_t reader_deaths = 0;  // readers.owner_deaths() when last taken
  bool reading = false;             // under readers: a frame is partly read
  std::byte pad3[64];
  std::atomic<std::uint64_t> tail{0};
  std::atomic<std::uint32_t> room_word{0};  // bumped when tail moves; sleepers_bit
  std::byte pad4[64];

  std::uint64_t available() const noexcept {
    return head.load(std::memory_order_acquire) - tail.load(std::memory_order_relaxed);
  }
  std::uint64_t room() const noexcept {
    return capacity - (head.load(std::memory_order_relaxed) - tail.load(std::memory_order_acquire));
  }

  /// Moves head or tail by `n` and wakes whoever sleeps on the other side's word.
  static void advance(std::atomic<std::uint64_t>& counter, std::atomic<std::uint32_t>& word,
                      std::uint64_t n) noexcept {
    counter.fetch_add(n, std::memory_order_release);  // one side only writes it
    std::atomic_thread_fence(std::memory_order_seq_cst);
    std::uint32_t v = word.load(std::memory_order_relaxed);
    if ((v & sleepers_bit) == 0) return;
    while (!word.compare_exchange_weak(v, (v + 1) & ~sleepers_bit, std::memory_order_acq_rel,
                                       std::memory_order_relaxed)) {
    }
    futex_wake_all(&word);
  }
  void publish(std::uint64_t n) noexcept { advance(head, data_word, n); }
  void free_bytes(std::uint64_t n) noexcept { advance(tail, room_word, n); }
};

/// Sleeps on `word` until `until`, unless `ready()` holds: the sleepers-bit protocol of
/// pipe_ring::advance (set the bit, fence, look again, sleep).
template <class Ready>
void sleep_on_ring(std::atomic<std::uint32_t>& word, Ready& ready, clock::time_point until) {
  std::uint32_t v = word.load(std::memory_order_acquire);
  if (ready()) return;
  if ((v & sleepers_bit) == 0) {
    if (!word.compare_exchange_strong(v, v | sleepers_bit, std::memory_order_acq_rel)) return;
    v |= sleepers_bit;
  }
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (ready()) return;
  futex_wait_until(word, v, until);
}

struct pipe_state {
  static_assert(alignof(pipe_ring) <= 16, "a block of the segment is 16-byte aligned");
  static constexpr std::uint32_t magic_value = 0x70697065;  // "pipe"
  static std::size_t header_size() noexcept { return (sizeof(pipe_state) + 63) & ~std::size_t{63}; }
  static std::size_t bytes(std::uint64_t capacity, bool duplex) noexcept {
    return header_size() + (duplex ? 2 : 1) * capacity;
  }

  pipe_state(std::uint64_t capacity, bool duplex_, std::uint64_t owner_id) : duplex(duplex_) {
    // ring[e] is written through end e. A one-way pipe (Python's Pipe(False)) sends through
    // end 1 only, to end 0.
    std::uint64_t at = header_size();
    for (int e = duplex ? 0 : 1; e < 2; ++e) {
      ring[e].capacity = capacity;
      ring[e].data_offset = at;
      at += capacity;
    }
    owner[0].store(owner_id, std::memory_order_relaxed);
    owner[1].store(owner_id, std::memory_order_relaxed);
  }

  const std::uint32_t magic = magic_value;
  const bool duplex;
  std::uint64_t total_bytes = 0;
  std::atomic<std::uint64_t> owner[2];
  pipe_ring ring[2];

  std::byte* data(const pipe_ring& r) noexcept {
    return reinterpret_cast<std::byte*>(this) + r.data_offset;
  }
  /// Copies `n` bytes into ring `r` at stream position `pos`, wrapping.
  void copy_in(pipe_ring& r, std::uint64_t pos, const std::byte* src, std::uint64_t n) noexcept {
    const std::uint64_t at = pos % r.capacity;
    const std::uint64_t first = std::min(n, r.capacity - at);
    std::memcpy(data(r) + at, src, first);
    if (n > first) std::memcpy(data(r), src + first, n - first);
  }
  void copy_out(pipe_ring& r, std::uint64_t pos, std::byte* dst, std::uint64_t n) noexcept {
    const std::uint64_t at = pos % r.capacity;
    const std::uint64_t first = std::min(n, r.capacity - at);
    std::memcpy(dst, data(r) + at, first);
    if (n > first) std::memcpy(dst + first, data(r), n - first);
  }
};

/// Waits until `ready()` or `deadline`; returns ready(). Serves the runtime meanwhile on a
/// loop thread: for its spin window first (a reply usually comes within it, with no sleep
/// on either side), then in 1 ms slices of sleep on `word`, which the other side's change
/// wakes at once. Between slices it asks `peer_gone()`; if so and still not ready, throws
/// peer_died with `what`.
template <class Ready, class Gone>
bool wait_ring(std::atomic<std::uint32_t>& word, Ready&& ready, Gone&& peer_gone,
               clock::time_point deadline, const char* what) {
  if (ready()) return true;
  process* p = process::here();
  bool first = true;
  for (;;) {
    auto now = clock::now();
    if (now >= deadline) return ready();
    if (p != nullptr) {
      const auto spin = first ? std::chrono::microseconds(p->hdr->spin_us) : clock::duration{};
      if (p->run_until(ready, std::min(deadline, now + spin))) return true;
    } else if (first) {
      backoff bo;
      while (!bo.pause(std::chrono::microseconds(100)))
        if (ready()) return true;
    }
    first = false;
    if (peer_gone()) {
      if (ready()) return true;
      throw peer_died(what);
    }
    now = clock::now();
    if (now >= deadline) return ready();
    sleep_on_ring(word, ready, std::min(deadline, now + wait_slice));
    if (ready()) return true;
  }
}

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/mp/pipe_state.hpp>
// #include <coray/detail/mp/shared_block.hpp>: inlined above
// #include <coray/errors.hpp>: inlined above
#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE

template <class T>
class connection;

/// The default bytes of a pipe's buffer, per direction.
inline constexpr std::size_t pipe_buffer_bytes = 64 * 1024;

template <class T>
std::pair<connection<T>, connection<T>> pipe(bool duplex = true,
                                             std::size_t buffer_bytes = pipe_buffer_bytes);

/// One end of a ray::pipe<T>: multiprocessing.connection.Connection.
template <class T>
class connection {
  static_assert(is_encodable_v<T> && is_decodable_v<T>,
                "ray::connection<T>: T must be encodable and decodable by coray's codec");

 public:
  /// An empty end, what decoding fills; using it is a usage_error.
  connection() noexcept = default;

  /// Sends `value` to the other end; waits while the buffer is full. Throws peer_died if the
  /// other end's owner died (or closed it) while there was no room, usage_error on a
  /// receive-only end.
  void send(const T& value) {
    detail::pipe_state& st = use(true);
    detail::pipe_ring& r = st.ring[end_];
    const std::uint64_t n = ray::encoded_size(value);
    const std::uint64_t frame = detail::pipe_ring::header_bytes + detail::pipe_ring::padded(n);
    lock_side(r.writers, r.writer_deaths, r.writing, r);
    struct unlock {
      detail::pipe_ring& r;
      ~unlock() { r.writers.unlock(); }
    } hold{r};
    if (frame <= r.capacity) {  // published whole, at once
      wait_room(st, r, frame);
      const std::uint64_t pos = r.head.load(std::memory_order_relaxed);
      write_header(st, r, pos, n);
      const std::uint64_t at = (pos + detail::pipe_ring::header_bytes) % r.capacity;
      if (at + n <= r.capacity) {
        ray::encode_to(std::span<std::byte>(st.data(r) + at, n), value);
      } else {
        const std::vector<std::byte> bytes = ray::encode(value);
        st.copy_in(r, pos + detail::pipe_ring::header_bytes, bytes.data(), n);
      }
      r.publish(frame);
      return;
    }
    // Longer than the buffer: streams through it as the reader frees room.
    std::vector<std::byte> bytes = ray::encode(value);
    bytes.resize(detail::pipe_ring::padded(n));
    wait_room(st, r, detail::pipe_ring::header_bytes);
    write_header(st, r, r.head.load(std::memory_order_relaxed), n);
    r.writing = true;
    r.publish(detail::pipe_ring::header_bytes);
    try {
      for (std::uint64_t done = 0; done < bytes.size();) {
        wait_room(st, r, 1);
        const std::uint64_t k = std::min<std::uint64_t>(r.room(), bytes.size() - done);
        st.copy_in(r, r.head.load(std::memory_order_relaxed), bytes.data() + done, k);
        r.publish(k);
        done += k;
      }
    } catch (...) {  // the reader went in the middle of the value: the rest can never follow
      r.broken.store(1, std::memory_order_release);
      r.writing = false;
      throw;
    }
    r.writing = false;
  }

  /// Receives the next value from the other end, waiting for one. Throws peer_died if the
  /// other end's owner died (or closed it) with nothing left to receive, usage_error on a
  /// send-only end, codec_error if the bytes are not a T.
  T recv() {
    detail::pipe_state& st = use(false);
    detail::pipe_ring& r = st.ring[1 - end_];
    lock_side(r.readers, r.reader_deaths, r.reading, r);
    struct unlock {
      detail::pipe_ring& r;
      ~unlock() { r.readers.unlock(); }
    } hold{r};
    wait_data(st, r, detail::pipe_ring::header_bytes, detail::clock::time_point::max());
    const std::uint64_t pos = r.tail.load(std::memory_order_relaxed);
    std::uint64_t n = 0;
    st.copy_out(r, pos, reinterpret_cast<std::byte*>(&n), sizeof n);
    const std::uint64_t padded = detail::pipe_ring::padded(n);
    const std::uint64_t frame = detail::pipe_ring::header_bytes + padded;
    if (frame <= r.capacity) {  // published whole: all here
      const std::uint64_t at = (pos + detail::pipe_ring::header_bytes) % r.capacity;
      struct consume {
        detail::pipe_ring& r;
        std::uint64_t frame;
        ~consume() { r.free_bytes(frame); }  // also when the bytes do not decode
      } done{r, frame};
      if (at + n <= r.capacity)
        return ray::decode<T>(std::span<const std::byte>(st.data(r) + at, n));
      std::vector<std::byte> bytes(n);
      st.copy_out(r, pos + detail::pipe_ring::header_bytes, bytes.data(), n);
      return ray::decode<T>(bytes);
    }
    r.reading = true;
    r.free_bytes(detail::pipe_ring::header_bytes);
    std::vector<std::byte> bytes(padded);
    for (std::uint64_t done = 0; done < padded;) {
      try {
        wait_data(st, r, 1, detail::clock::time_point::max());
      } catch (const peer_died&) {  // the writer died in the middle of the value
        r.broken.store(1, std::memory_order_release);
        r.reading = false;
        throw;
      }
      const std::uint64_t k = std::min<std::uint64_t>(r.available(), padded - done);
      st.copy_out(r, r.tail.load(std::memory_order_relaxed), bytes.data() + done, k);
      r.free_bytes(k);
      done += k;
    }
    r.reading = false;
    bytes.resize(n);
    return ray::decode<T>(bytes);
  }

  /// Whether a recv would not wait now: a value is there, or the other end's owner is gone
  /// (then recv throws peer_died). Python's poll().
  bool poll() { return poll_until(detail::clock::now()); }
  /// As poll(), waiting at most `timeout` for a value.
  template <class Rep, class Period>
  bool poll(const std::chrono::duration<Rep, Period>& timeout) {
    return poll_until(detail::deadline_in(timeout));
  }

  /// Lets go of this handle. If this process owns the end, the other end's waits (and later
  /// ones, with nothing left to receive) end with peer_died, until a process uses the end
  /// again through another handle. Later use of this handle is a usage_error.
  void close() {
    if (!block_) return;
    auto& owner = state().owner[end_];
    std::uint64_t mine = detail::my_owner_id();
    owner.compare_exchange_strong(mine, detail::closed_owner, std::memory_order_acq_rel);
    wake_peer(state());
    block_ = detail::shared_block();
  }

  /// False for an empty or closed handle.
  explicit operator bool() const noexcept { return static_cast<bool>(block_); }
  bool readable() const noexcept { return block_ && (state().duplex || end_ == 0); }
  bool writable() const noexcept { return block_ && (state().duplex || end_ == 1); }

  /// Ends travel as call arguments: the receiving process reaches the same pipe.
  template <class Archive>
  void serialize(Archive& ar) {
    ar(block_, end_);
    if constexpr (Archive::is_loading) {
      if (!block_) return;
      if (end_ > 1 || block_.size() < sizeof(detail::pipe_state) ||
          state().magic != detail::pipe_state::magic_value || state().total_bytes != block_.size())
        throw codec_error("coray: a ray::connection handle of something else");
    }
  }

 private:
  friend std::pair<connection<T>, connection<T>> pipe<T>(bool, std::size_t);
  connection(detail::shared_block b, std::uint8_t end) : block_(std::move(b)), end_(end) {}

  detail::pipe_state& state() const noexcept {
    return *std::launder(reinterpret_cast<detail::pipe_state*>(block_.data()));
  }

  /// The state, for a send (`sending`) or a receive; this process becomes the end's owner.
  detail::pipe_state& use(bool sending) {
    if (!block_) throw usage_error("coray: a ray::connection that is empty or closed");
    detail::pipe_state& st = state();
    if (!st.duplex && (end_ == 1) != sending)
      throw usage_error(sending ? "coray: send on the receiving end of a one-way ray::pipe"
                                : "coray: recv on the sending end of a one-way ray::pipe");
    const std::uint64_t me = detail::my_owner_id();
    if (st.owner[end_].load(std::memory_order_relaxed) != me)
      st.owner[end_].store(me, std::memory_order_relaxed);
    return st;
  }

  bool peer_gone(detail::pipe_state& st) const noexcept {
    return detail::owner_gone(st.owner[1 - end_].load(std::memory_order_relaxed));
  }
  static void check_broken(const detail::pipe_ring& r) {
    if (r.broken.load(std::memory_order_acquire) != 0)
      throw peer_died("coray: a process died in the middle of a value on this ray::pipe");
  }

  /// Takes one side's lock of `r`, waiting (and serving) while another process holds it. A
  /// process that died holding it in the middle of a frame broke the ring.
  static void lock_side(detail::robust_mutex& m, std::uint32_t& deaths_seen, bool& partial,
                        detail::pipe_ring& r) {
    detail::wait_serving([&] { return m.try_lock(); },
                         [&](detail::clock::time_point until) { return m.try_lock_until(until); },
                         detail::clock::time_point::max());
    if (m.owner_deaths() != deaths_seen) {
      deaths_seen = m.owner_deaths();
      if (partial) r.broken.store(1, std::memory_order_release);
      partial = false;
    }
    try {
      check_broken(r);
    } catch (...) {
      m.unlock();
      throw;
    }
  }

  void wait_room(detail::pipe_state& st, detail::pipe_ring& r, std::uint64_t bytes) {
    detail::wait_ring(
        r.room_word, [&] { return r.room() >= bytes; }, [&] { return peer_gone(st); },
        detail::clock::time_point::max(),
        "coray: the other end of a ray::pipe is gone (its process died, or it was closed) "
        "and its buffer is full");
  }
  bool wait_data(detail::pipe_state& st, detail::pipe_ring& r, std::uint64_t bytes,
                 detail::clock::time_point deadline) {
    return detail::wait_ring(
        r.data_word, [&] { return r.available() >= bytes; }, [&] { return peer_gone(st); },
        deadline,
        "coray: the other end of a ray::pipe is gone (its process died, or it was closed) "
        "with nothing left to receive");
  }

  static void write_header(detail::pipe_state& st, detail::pipe_ring& r, std::uint64_t pos,
                           std::uint64_t n) noexcept {
    std::byte header[detail::pipe_ring::header_bytes] = {};
    std::memcpy(header, &n, sizeof n);
    st.copy_in(r, pos, header, sizeof header);
  }

  bool poll_until(detail::clock::time_point deadline) {
    detail::pipe_state& st = use(false);
    detail::pipe_ring& r = st.ring[1 - end_];
    if (r.broken.load(std::memory_order_acquire) != 0) return true;
    try {
      return wait_data(st, r, detail::pipe_ring::header_bytes, deadline) || peer_gone(st);
    } catch (const peer_died&) {
      return true;  // recv would not wait: it throws
    }
  }

  /// Wakes the other end's waiters, so that they look at this end's owner again.
  void wake_peer(detail::pipe_state& st) const noexcept {
    for (auto* w : {&st.ring[end_].data_word, &st.ring[1 - end_].room_word}) {
      w->fetch_add(1, std::memory_order_acq_rel);
      detail::futex_wake_all(w);
    }
  }

  detail::shared_block block_;
  std::uint8_t end_ = 0;
};

/// multiprocessing.Pipe: two connected ends. Duplex by default; with `duplex` false the first
/// end only receives and the second only sends. `buffer_bytes` per direction (rounded up to
/// 16; at least 64). Throws object_store_full.
template <class T>
std::pair<connection<T>, connection<T>> pipe(bool duplex, std::size_t buffer_bytes) {
  const std::uint64_t capacity = detail::pipe_ring::padded(std::max<std::size_t>(buffer_bytes, 64));
  const std::size_t bytes = detail::pipe_state::bytes(capacity, duplex);
  detail::shared_block b = detail::shared_block::allocate(bytes);
  auto* st = new (b.data()) detail::pipe_state(capacity, duplex, detail::my_owner_id());
  st->total_bytes = b.size();
  return {connection<T>(b, 0), connection<T>(b, 1)};
}

CORAY_END_NAMESPACE
// end <coray/pipe.hpp>
// begin <coray/placement_group.hpp>
/// Placement groups, as Ray's: bundles of resources reserved together, on one node or spread
/// over a cluster's nodes, for the tasks and actors placed in them. A group is reserved once
/// every bundle fits at the same time (until then it waits); each bundle then holds what it
/// asked of its node, and a call or actor placed in it takes its resources from the bundle,
/// not from the node's free resources.
///
///   ray::placement_group pg({{{"CPU", 1}, {"GPU", 1}}, {{"CPU", 1}}},
///                           ray::placement_strategy::strict_spread);
///   pg.wait(std::chrono::seconds(10));                // or co_await ray::get(pg.ready())
///   auto a = ray::spawn<trainer>({.num_gpus = 1, .scheduling_strategy = pg.bundle(0)});
///   auto r = ray::task<f>.options({.scheduling_strategy = pg.bundle(1)}).remote(x);
///   ray::remove_placement_group(pg);
///
/// Strategies: pack (all on one node if they fit, else as few as they can), spread (each on
/// another node where it can), strict_pack (all on one node, or the group waits),
/// strict_spread (each on a node of its own, or the group waits). A group no nodes could ever
/// hold is refused at once with ray::infeasible_resources. Driver only (as Ray's
/// placement_group(), called from the driver); handles may travel to tasks, whose calls and
/// spawns use them.

#include <chrono>
// #include <coray/detail/runtime/driver.hpp>: inlined above
// #include <coray/detail/runtime/foreign.hpp>: inlined above
// #include <coray/detail/runtime/resource_request.hpp>: inlined above
// #include <coray/errors.hpp>: inlined above
// #include <coray/object_ref.hpp>: inlined above
// #include <coray/object_store.hpp>: inlined above
// #include <coray/task.hpp>: inlined above
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE

/// How a placement group's bundles go over the nodes.
enum class placement_strategy : std::uint32_t { pack, spread, strict_pack, strict_spread };

class placement_group {
 public:
  placement_group() = default;

  /// Creates the group of `bundles`, each what it holds by Ray's names ({"CPU": 1, "GPU": 1,
  /// "disk": 2}); it is reserved as soon as all of them fit (ready()).
  /// ray::invalid_resources for a bad amount, ray::infeasible_resources for a group the nodes
  /// could never hold.
  explicit placement_group(const std::vector<std::map<std::string, double>>& bundles,
                           placement_strategy strategy = placement_strategy::pack) {
    std::vector<detail::resource_request> requests;
    for (const auto& b : bundles) {
      std::map<std::string, double> custom;
      double cpus = 0, gpus = 0;
      for (const auto& [name, x] : b) {
        if (name == "CPU")
          cpus = x;
        else if (name == "GPU")
          gpus = x;
        else
          custom[name] = x;
      }
      requests.push_back(
          detail::resource_request::from(cpus, gpus, custom, "ray::placement_group"));
    }
    auto made = detail::on_loop("ray::placement_group", [&](detail::process& p) {
      return detail::require_driver(p, "ray::placement_group")
          .create_placement_group(std::move(requests),
                                  static_cast<detail::bundle_strategy>(strategy));
    });
    id_ = made.first;
    size_ = bundles.size();
    ready_ = object_ref<bool>(std::move(made.second));
  }

  std::uint64_t id() const noexcept { return id_; }
  std::size_t bundle_count() const noexcept { return size_; }

  /// A ref that becomes true once every bundle is reserved (fails if the group is removed
  /// first), as Ray's pg.ready().
  const object_ref<bool>& ready() const noexcept { return ready_; }

  /// Waits up to `timeout` for the group to be reserved; true if it is.
  bool wait(std::chrono::milliseconds timeout) const {
    try {
      return ray::get(ready_, {.timeout = timeout});
    } catch (const get_timeout&) {
      return false;
    }
  }

  /// Each bundle's node (its MPI rank; 0 outside a cluster) once reserved; empty before.
  std::vector<int> bundle_nodes() const {
    return detail::on_loop("ray::placement_group::bundle_nodes", [&](detail::process& p) {
      return detail::require_driver(p, "ray::placement_group::bundle_nodes")
          .placement_group_nodes(id_);
    });
  }

  /// Places a call or actor in bundle `index`, or in any of the group's bundles (-1), as
  /// Ray's PlacementGroupSchedulingStrategy.
  scheduling_strategy bundle(int index = -1) const noexcept {
    scheduling_strategy s;
    s.how = scheduling_strategy::kind::placement_group;
    s.group = id_;
    s.bundle = index;
    return s;
  }

  template <class Archive>
  void serialize(Archive& ar) {
    ar(id_, size_);
  }

 private:
  std::uint64_t id_ = 0;
  std::size_t size_ = 0;
  object_ref<bool> ready_;
};

/// Removes the group: its bundles' resources go back to their nodes, the actors placed in it
/// are killed and the calls waiting to run in it fail; calls running in it run to their end.
/// Driver only.
inline void remove_placement_group(const placement_group& pg) {
  detail::on_loop("ray::remove_placement_group", [&](detail::process& p) {
    detail::require_driver(p, "ray::remove_placement_group").remove_placement_group(pg.id());
  });
}

CORAY_END_NAMESPACE
// end <coray/placement_group.hpp>
// begin <coray/pool.hpp>
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
// #include <coray/actor.hpp>: inlined above
// #include <coray/detail/mp/dispatcher.hpp>: inlined above
// begin <coray/detail/mp/pool_process.hpp>
/// A process of a ray::pool: an actor that runs chunks of a map and single calls of the
/// pool's functions, after its initializer ran once in its constructor.

#include <unistd.h>

#include <array>
#include <bit>
// #include <coray/detail/codec/codec_traits.hpp>: inlined above
// #include <coray/task.hpp>: inlined above
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
// end <coray/detail/mp/pool_process.hpp>
// #include <coray/object_store.hpp>: inlined above
// begin <coray/processes.hpp>
/// The runtime's processes as multiprocessing describes them: pids, liveness and exit codes
/// of the task workers, actors and ray::process children (driver only), and, in any process,
/// which one it is (current_process, parent_process) and the cores it may use (cpu_count).
///
///   for (const ray::process_info& w : ray::workers())
///     std::printf("worker %u: pid %d %s\n", w.slot, w.pid, w.alive ? "alive" : "ended");
///   std::size_t n = ray::active_children().size();   // workers, actors, processes running
///   ray::process_info a = ray::actor_process(counter); // a.pid, a.alive, a.exitcode
///   std::string me = ray::current_process().name;      // "MainProcess" in the driver

#include <sys/wait.h>

// #include <coray/actor.hpp>: inlined above
// begin <coray/detail/mp/child_process.hpp>
/// What a ray::process is made of. Its process is an actor's (the supervisor starts it, by
/// fork or spawn, like any other), whose constructor runs the target and exits: the exit
/// code is 0 on return, 1 on an exception (reported on stderr as Python reports one). The
/// driver keeps each started child until it is seen ended, so that the runtime's end joins
/// the non-daemon ones (before_runtime_end, runtime.hpp) even after their ray::process is gone.

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
// #include <coray/actor.hpp>: inlined above
// #include <coray/detail/runtime/identity.hpp>: inlined above
// #include <coray/detail/runtime/wire.hpp>: inlined above
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// -N for a process killed by signal N, its exit code for one that exited.
inline std::optional<int> exitcode_of(int wait_status) {
  if (WIFSIGNALED(wait_status)) return -WTERMSIG(wait_status);
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  return std::nullopt;
}

/// Python's report of a target's exception, on stderr, for the exception in flight.
inline void report_target_exception(const std::string& process_name, std::string_view target) {
  const wire_error w = describe_current_exception(target);
  std::fprintf(stderr,
               "Process %s:\nTraceback (most recent call last):\n  in ray::target<%.*s>\n%s: %s\n",
               process_name.c_str(), static_cast<int>(target.size()), target.data(),
               w.type_name.c_str(), w.what.c_str());
}

/// The actor a ray::process's process builds: its constructor is the process's life.
template <auto F, class... S>
struct process_body {
  /// Its output is shown under the target's name, as a task's is.
  static constexpr std::string_view output_name() noexcept { return entity_name_v<F>; }
  explicit process_body(std::string name, S... args) {
    process_identity& me = this_process();
    me.kind = process_kind::process;
    me.name = std::move(name);
    int code = 0;
    try {
      F(std::move(args)...);
    } catch (...) {
      report_target_exception(me.name, entity_name_v<F>);
      code = 1;
    }
    std::fflush(nullptr);
    _exit(code);
  }
};

template <auto F, class Params = typename function_traits<decltype(F)>::params>
struct process_body_type;
template <auto F, class... P>
struct process_body_type<F, std::tuple<P...>> {
  using type = process_body<F, storage_type_t<P>...>;
};

/// Starts a ray::process's actor with the arguments it was given (once).
struct child_spawner {
  virtual ~child_spawner() = default;
  virtual actor_ptr spawn(driver& d, std::uint32_t start_as, const std::string& name) = 0;
};

template <class Body, class... A>
struct child_spawner_of final : child_spawner {
  explicit child_spawner_of(A... a) : args(std::move(a)...) {}
  actor_ptr spawn(driver& d, std::uint32_t start_as, const std::string& name) override {
    return std::apply(
        [&](A&... a) {
          return d.make_actor_handle(spawn_as<Body>(multiprocessing_options(), start_as,
                                                    std::string(name), std::move(a)...)
                                         .id());
        },
        args);
  }
  std::tuple<A...> args;
};

/// One ray::process, shared by its handle and, once started, the driver's list of children.
struct child_state {
  std::string name;
  bool daemon = false;
  std::uint32_t start_as = 0;  // 0: the runtime's start method, else 1 + a start_method_id
  std::unique_ptr<child_spawner> spawner;  // until started
  bool started = false;
  actor_ptr handle;  // while it runs
  int pid = 0;
  std::optional<int> exitcode;  // once it ended

  /// Takes in what the driver knows of its process. Driver's loop thread.
  void refresh(driver& d) {
    if (!handle || exitcode) return;
    auto st = d.actor_status(handle.get()->id);
    if (st && st->pid) pid = st->pid;
    if (!st || st->ended) {
      exitcode = st ? exitcode_of(st->wait_status) : std::optional<int>(-SIGKILL);
      handle = {};
    }
  }
};

/// The driver's started children not yet seen ended.
inline std::vector<std::shared_ptr<child_state>>& started_children() {
  static std::vector<std::shared_ptr<child_state>> children;
  return children;
}

/// Joins `c` (no deadline: a live process is waited for, as Python's join; a dead one is seen
/// at once). Driver's loop thread.
inline bool join_child(driver& d, child_state& c,
                       clock::time_point deadline = clock::time_point::max()) {
  return d.run_until(
      [&] {
        c.refresh(d);
        return c.exitcode.has_value();
      },
      deadline);
}

/// At the runtime's end, as Python at exit: joins the non-daemon children; the daemon ones
/// the runtime's end then kills (SIGKILL).
inline void end_children() noexcept {
  auto children = std::move(started_children());
  started_children().clear();
  driver* d = nullptr;
  if (process* p = process::here()) d = p->as_driver();
  for (auto& c : children) {
    try {
      if (d && !c->daemon) join_child(*d, *c);
      if (d) c->refresh(*d);
    } catch (...) {
    }
    if (!c->exitcode) c->exitcode = -SIGKILL;
    c->handle = {};
  }
}

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/mp/child_process.hpp>
// #include <coray/detail/runtime/identity.hpp>: inlined above
// begin <coray/detail/runtime/system.hpp>
/// Facts about the machine the runtime sizes itself by: usable cores (affinity and cgroup
/// quota) and memory (physical RAM and cgroup limit).

#include <fmt/format.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
// #include <coray/version.hpp>: inlined above
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// Cores this process may run on: the CPU affinity mask, further capped by a cgroup v2
/// `cpu.max` quota (rounded up). Never less than 1.
/// The GPUs this process may use, by the ids CUDA programs know them by: the values of
/// CUDA_VISIBLE_DEVICES when it is set (empty: none), else one per GPU the NVIDIA driver
/// lists under /proc/driver/nvidia/gpus ("0", "1", ...). None without a driver.
inline std::vector<std::string> detect_gpu_ids() {
  std::vector<std::string> ids;
  if (const char* v = std::getenv("CUDA_VISIBLE_DEVICES")) {
    std::string s(v);
    for (std::size_t at = 0; at <= s.size();) {
      std::size_t end = std::min(s.find(',', at), s.size());
      std::string id = s.substr(at, end - at);
      id.erase(0, id.find_first_not_of(" \t"));
      id.erase(id.find_last_not_of(" \t") + 1);
      if (!id.empty()) ids.push_back(id);
      at = end + 1;
    }
    return ids;
  }
  std::error_code ec;
  std::size_t n = 0;
  for (std::filesystem::directory_iterator it("/proc/driver/nvidia/gpus", ec), end;
       !ec && it != end; it.increment(ec))
    ++n;
  for (std::size_t i = 0; i < n; ++i) ids.push_back(std::to_string(i));
  return ids;
}

inline unsigned usable_cores() {
  unsigned n = 0;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) n = static_cast<unsigned>(CPU_COUNT(&set));
  if (n == 0) n = static_cast<unsigned>(std::max(1L, sysconf(_SC_NPROCESSORS_ONLN)));
  std::ifstream f("/sys/fs/cgroup/cpu.max");
  std::string quota;
  long long period = 0;
  if (f >> quota >> period && quota != "max" && period > 0) {
    long long q = std::stoll(quota);
    if (q > 0)
      n = std::min<unsigned>(n, static_cast<unsigned>(std::max(1LL, (q + period - 1) / period)));
  }
  return std::max(1u, n);
}

/// Physical memory available to this process: RAM, capped by a cgroup v2 `memory.max`.
inline std::uint64_t usable_memory_bytes() {
  std::uint64_t ram = static_cast<std::uint64_t>(sysconf(_SC_PHYS_PAGES)) *
                      static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
  std::ifstream f("/sys/fs/cgroup/memory.max");
  std::string limit;
  if (f >> limit && limit != "max") {
    std::uint64_t l = std::stoull(limit);
    if (l > 0) ram = std::min(ram, l);
  }
  return ram;
}

/// "SIGKILL (Killed)" for a signal number.
inline std::string signal_description(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  const char* desc = sigdescr_np(sig);
  std::string s = abbrev ? fmt::format("SIG{}", abbrev) : fmt::format("signal {}", sig);
  if (desc) s += fmt::format(" ({})", desc);
  return s;
}

/// The wait status the supervisor reports for a process it could not start (fork or
/// posix_spawn refused with `error`): exit code 127, a shell's "cannot run", with the errno in
/// bits a real wait status leaves zero, for describe_exit to say why.
inline int start_failure_status(int error) { return W_EXITCODE(127, 0) | (error << 16); }

/// Words for a wait() status: "was killed by SIGSEGV (Segmentation fault)", "exited with code
/// 3", or "could not be started: Resource temporarily unavailable".
inline std::string describe_exit(int wait_status) {
  if (WIFEXITED(wait_status) && (wait_status >> 16) != 0)
    return fmt::format("could not be started: {}", strerror(wait_status >> 16));
  if (WIFSIGNALED(wait_status))
    return fmt::format("was killed by {}", signal_description(WTERMSIG(wait_status)));
  if (WIFEXITED(wait_status)) return fmt::format("exited with code {}", WEXITSTATUS(wait_status));
  return "stopped";
}

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/system.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

CORAY_BEGIN_NAMESPACE

/// One process of the runtime.
struct process_info {
  process_kind kind = process_kind::task_worker;
  /// Its slot: task workers are 0..num_workers-1, actors come after.
  std::uint32_t slot = 0;
  /// 0 while it starts.
  int pid = 0;
  /// Started and not yet ended (multiprocessing's is_alive()).
  bool alive = false;
  /// Once it ended: its exit code, or -N if signal N killed it (multiprocessing's exitcode).
  std::optional<int> exitcode;
  /// Task workers: how many times the slot's process was replaced after dying.
  std::uint32_t restarts = 0;
  /// multiprocessing's name: "MainProcess" for the driver, a ray::process's own ("Process-N"
  /// unless it was given one), "TaskWorker-<slot>" or "Actor-<slot>" for the others.
  std::string name;
};

namespace detail {

inline process_info slot_info(driver& d, std::uint32_t slot) {
  const worker_shared& w = d.hdr->worker(slot);
  process_info info;
  info.kind = slot < d.num_workers() ? process_kind::task_worker : process_kind::actor;
  info.slot = slot;
  info.pid = w.pid.load(std::memory_order_acquire);
  const auto state = static_cast<slot_state>(w.state.load(std::memory_order_acquire));
  info.alive = info.pid != 0 && (state == slot_state::starting || state == slot_state::running);
  if (state == slot_state::dead)
    info.exitcode = exitcode_of(w.wait_status.load(std::memory_order_relaxed));
  const std::uint32_t generation = w.generation.load(std::memory_order_relaxed);
  if (info.kind == process_kind::task_worker && generation > 1) info.restarts = generation - 1;
  info.name = fmt::format("{}-{}", info.kind == process_kind::actor ? "Actor" : "TaskWorker", slot);
  return info;
}

/// A ray::process's process among the actors': its kind and name say so.
inline void name_children(driver& d, std::vector<process_info>& infos) {
  for (auto& c : started_children()) {
    c->refresh(d);
    for (process_info& info : infos)
      if (c->pid && info.pid == c->pid && info.kind == process_kind::actor) {
        info.kind = process_kind::process;
        info.name = c->name;
      }
  }
}

}  // namespace detail

/// The task workers, in slot order. A worker that died shows alive == false with its exit code
/// until its replacement starts (restarts counts the replacements).
inline std::vector<process_info> workers() {
  auto& d = detail::require_driver("ray::workers()");
  std::vector<process_info> out;
  for (std::uint32_t i = 0; i < d.num_workers(); ++i) out.push_back(detail::slot_info(d, i));
  return out;
}

/// Every process of the runtime now running: task workers, actors and ray::process children
/// (multiprocessing's active_children()). The supervisor, which only starts and reaps them,
/// is not listed.
inline std::vector<process_info> active_children() {
  auto& d = detail::require_driver("ray::active_children()");
  d.serve_once();  // takes in the deaths reported since
  std::vector<process_info> out;
  for (std::uint32_t i = 0; i < d.hdr->slots; ++i) {
    process_info info = detail::slot_info(d, i);
    if (info.alive) out.push_back(info);
  }
  detail::name_children(d, out);
  return out;
}

/// This process: the driver ("MainProcess"), a task worker, an actor or a ray::process, with
/// its pid (multiprocessing's current_process()). In any process, with or without a runtime.
inline process_info current_process() {
  const detail::process_identity& me = detail::this_process();
  process_info info;
  info.kind = me.kind;
  info.slot = me.slot;
  info.pid = getpid();
  info.alive = true;
  switch (me.kind) {
    case process_kind::driver:
      info.name = "MainProcess";
      break;
    case process_kind::process:
      info.name = me.name;
      break;
    case process_kind::task_worker:
      info.name = fmt::format("TaskWorker-{}", me.slot);
      break;
    case process_kind::actor:
      info.name = fmt::format("Actor-{}", me.slot);
      break;
  }
  return info;
}

/// The driver, seen from a worker, an actor or a ray::process (which the supervisor starts,
/// but on the driver's behalf); nullopt in the driver (multiprocessing's parent_process()).
inline std::optional<process_info> parent_process() {
  if (detail::this_process().kind == process_kind::driver) return std::nullopt;
  detail::process* p = detail::process::current();
  if (!p || !p->hdr) return std::nullopt;
  process_info info;
  info.kind = process_kind::driver;
  info.pid = p->hdr->driver_pid;
  info.alive = true;
  info.name = "MainProcess";
  return info;
}

/// The cores this process may use: its CPU affinity, capped by a cgroup quota (what the
/// runtime starts num_workers = 0 workers for). Python's cpu_count() counts every core.
inline unsigned cpu_count() { return detail::usable_cores(); }

/// The process of `a`: its pid, whether it is alive and, once it ended, its exit code.
template <class T>
process_info actor_process(const actor<T>& a) {
  auto& d = detail::require_driver("ray::actor_process()");
  process_info info;
  info.kind = process_kind::actor;
  auto st = d.actor_status(a.id());
  if (!st) return info;
  info.pid = st->pid;
  info.alive = st->pid != 0 && !st->ended;
  if (st->ended) info.exitcode = detail::exitcode_of(st->wait_status);
  for (std::uint32_t i = d.num_workers(); i < d.hdr->slots && info.alive; ++i)
    if (d.hdr->worker(i).pid.load(std::memory_order_relaxed) == info.pid) info.slot = i;
  return info;
}

CORAY_END_NAMESPACE
// end <coray/processes.hpp>
// #include <coray/result_stream.hpp>: inlined above
// #include <coray/sync_wait.hpp>: inlined above
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

// begin <coray/detail/mp/pool_impl.hpp>
/// The non-template members of ray::pool: included by pool.hpp in header-only mode (inline),
/// and compiled once by src/coray.cpp into coray::coray_compiled in compiled mode
/// (CORAY_COMPILED_LIB), so that a translation unit including coray.hpp does not instantiate
/// the pool's process actor, its calls and its bookkeeping.

#include <algorithm>
// #include <coray/pool.hpp>: inlined above
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
// end <coray/detail/mp/pool_impl.hpp>
// end <coray/pool.hpp>
// begin <coray/process.hpp>
/// ray::process: one function run in a new process of its own, Python's
/// multiprocessing.Process. The runtime's supervisor starts it by the runtime's start method,
/// or by the one a context chose (ray::get_context("spawn")). Driver only, on the runtime's
/// thread.
///
///   void greet(std::string who, ray::shared_value<int> seen) { seen.store(1); }
///
///   ray::process p(ray::target<greet>, std::string("bob"), seen);
///   p.start();
///   p.join();                    // p.exitcode() == 0; 1 had greet thrown, -9 after p.kill()
///   auto q = ray::get_context("spawn").process(ray::target<greet>, std::string("ann"), seen);

#include <fmt/format.h>
#include <signal.h>

#include <atomic>
#include <chrono>
// #include <coray/detail/mp/child_process.hpp>: inlined above
// #include <coray/detail/mp/shared_wait.hpp>: inlined above
// #include <coray/errors.hpp>: inlined above
// #include <coray/processes.hpp>: inlined above
// begin <coray/runtime.hpp>
/// ray::runtime: starts coray in this process -- the shared segment, a supervisor and the
/// worker pool -- and stops it all when destroyed. Construct it first thing in main():
/// with the spawn start method, worker processes re-run the program and become workers
/// inside this constructor, which then never returns in them.
///
///   int main(int argc, char** argv) {
///     ray::runtime rt(argc, argv, {.num_workers = 2});
///     return rt.run(amain());
///   }

#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
// #include <coray/async.hpp>: inlined above
// #include <coray/detail/runtime/driver.hpp>: inlined above
// begin <coray/detail/runtime/entry.hpp>
/// The seam between the templates a program instantiates and the runtime's own code: the
/// two ways into the processes' machinery. `ray::runtime` builds the driver here, and every
/// program that may be a spawned worker enters the worker here. Behind these two functions
/// is all the non-template runtime: the orchestrator and its parts, the transport, the
/// supervisor and the worker.
///
/// Header-only (the default), this header includes their definitions (entry_impl.hpp) and
/// they are inline. With CORAY_COMPILED_LIB defined, it only declares them: they are
/// compiled once, in the coray::coray_compiled library (src/coray.cpp), and a program's
/// translation units no longer parse or optimise the machinery behind them.

// #include <coray/detail/runtime/driver.hpp>: inlined above
#include <memory>

CORAY_BEGIN_NAMESPACE
namespace detail {

class cluster_seam;

/// Starts the runtime in this process: the segment, the supervisor and the workers; with
/// `cluster`, the other nodes' workers too (cluster_seam.hpp).
CORAY_API std::unique_ptr<driver> make_local_driver(driver_config cfg,
                                                    cluster_seam* cluster = nullptr);

/// Fills in num_workers (the usable cores when 0), the resources and the store's size, and
/// refuses a store larger than memory: what make_local_driver does first, for a cluster's
/// nodes too.
CORAY_API void resolve_driver_config(driver_config& cfg);

/// Becomes a worker (never returning) if this process was spawned as one; returns at once
/// otherwise.
CORAY_API void enter_spawned_worker();

}  // namespace detail
CORAY_END_NAMESPACE

// begin <coray/detail/runtime/entry_impl.hpp>
/// The definitions behind entry.hpp: included by it in header-only mode, and compiled once
/// by src/coray.cpp into coray::coray_compiled in compiled mode (CORAY_COMPILED_LIB).

#include <fmt/format.h>

#include <cmath>
// #include <coray/detail/runtime/entry.hpp>: inlined above
// begin <coray/detail/runtime/local_driver.hpp>
/// The driver process on one machine: it owns the segment, the transport of mailboxes and
/// supervised processes (`shm_transport`) and the `orchestrator` that makes every decision,
/// and runs them in the event loop it inherits from `process`.
///
///   local_driver --poll/sleep--> shm_transport --events--> orchestrator
///        |                            ^                        |
///        +--submit/spawn/cancel-------|------------------------+
///                                     +--start/send/kill-------+

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
// begin <coray/detail/runtime/cluster_seam.hpp>
/// Where other machines join a driver: rank 0 of an MPI job builds its driver with one
/// (<coray/mpi.hpp>), which adds the task workers of every other node behind the transport
/// the orchestrator schedules onto. Nothing here knows MPI; a program without a cluster
/// never builds one.

// #include <coray/detail/runtime/resource_request.hpp>: inlined above
// begin <coray/detail/runtime/transport.hpp>
/// The seam between the orchestrator and the processes it schedules onto: "start a process
/// in this slot, send it this message, tell me what it sent and when it died". The
/// orchestrator (scheduler.hpp) knows slots, never mailboxes, doorbells or the supervisor;
/// `shm_transport` (one machine: mailboxes in the segment, processes from the supervisor)
/// is one implementation, the unit tests' fake is another, and processes on other machines
/// plug in here without touching scheduling or ownership.
///
/// All of it runs on the driver's loop thread.

#include <atomic>
#include <chrono>
// #include <coray/detail/runtime/wire.hpp>: inlined above
#include <cstdint>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// A non-owning reference to `void(std::byte*)` callable: how a message's writer is passed
/// through a virtual call without allocating.
class fill_ref {
 public:
  template <class F>
  requires(!std::is_same_v<std::remove_cvref_t<F>, fill_ref>) fill_ref(F&& f)
  noexcept  // NOLINT: implicit, like std::function_ref
      : ctx_(const_cast<void*>(static_cast<const void*>(&f))),
        fn_([](void* c, std::byte* out) { (*static_cast<std::remove_reference_t<F>*>(c))(out); }) {}
  void operator()(std::byte* out) const { fn_(ctx_, out); }

 private:
  void* ctx_;
  void (*fn_)(void*, std::byte*);
};

/// A non-owning `bool()` check, for what else should end a transport's sleep (work handed to
/// the loop by another thread).
struct wake_check {
  bool (*fn)(const void*) = nullptr;
  const void* ctx = nullptr;
  bool operator()() const { return fn && fn(ctx); }
};

/// How a process ended, as the transport saw it.
struct process_death {
  int pid = 0;
  int wait_status = 0;
  /// Calls the process had started (taken from its inbox) when it died: the ones sent after
  /// these never ran.
  std::uint64_t calls_started = 0;
  /// Whether it reached its loop: false for one that died starting (a program that exits
  /// before its runtime under spawn, a fork refused under `ulimit -u`).
  bool served = true;
};

/// What a transport tells the orchestrator. Called from inside transport::poll.
class transport_events {
 public:
  /// A message from the process in `slot`; `payload` is valid during the call. `carried` is
  /// the store block a long message came in (its sender's reference passes to the receiver),
  /// or null.
  virtual void on_message(std::uint32_t slot, msg_kind kind, std::span<const std::byte> payload,
                          object_block* carried) = 0;
  /// The process in `slot` died. Every message it sent before dying was delivered first.
  virtual void on_death(std::uint32_t slot, const process_death& how) = 0;
  /// No process can be started any more (the supervisor is gone); `why` says so in words.
  /// The deaths of the processes it took along are reported first.
  virtual void on_lost(const std::string& why) = 0;

 protected:
  ~transport_events() = default;
};

/// What a process publishes for the scheduler, which reads it on every dispatch: its
/// slot_state (dead once it ended), the coroutines it holds suspended (calls that do not
/// occupy it) and its blocked mark. A transport points each slot at where these live (for
/// local processes, the slot's worker_shared in the segment; one for remote processes keeps
/// local copies current), so reading them is a load, not a virtual call.
struct slot_signals {
  const std::atomic<std::uint32_t>* state = nullptr;
  const std::atomic<std::uint32_t>* suspended = nullptr;
  const std::atomic<std::uint64_t>* blocked_mark = nullptr;
};

class transport {
 public:
  virtual ~transport() = default;

  // ---- what processes publish -----------------------------------------------------------
  /// Where the slot's process publishes its signals (a transport built over another reads
  /// them through this).
  const slot_signals& signals(std::uint32_t slot) const noexcept { return signals_[slot]; }
  /// False once the slot's process is known dead (calls must not be sent to it).
  bool alive(std::uint32_t slot) const noexcept {
    return signals_[slot].state->load(std::memory_order_acquire) !=
           static_cast<std::uint32_t>(slot_state::dead);
  }
  /// Coroutines the slot's process holds suspended: calls that do not occupy it.
  std::uint32_t suspended(std::uint32_t slot) const noexcept {
    return signals_[slot].suspended->load(std::memory_order_relaxed);
  }
  struct occupancy {
    std::uint32_t suspended;
    /// 0, or while a task body of the slot's process is blocked in a blocking ray::get, the
    /// first id of the calls it made since (worker_shared::blocked_mark): it then takes only
    /// calls it made itself with ids from there up.
    std::uint64_t blocked_mark;
  };
  /// suspended() and blocked_mark() read together, so that a task entering or leaving a
  /// blocking wait is never seen counted as suspended without its mark (its worker would
  /// look free for any call): a process sets the mark before it counts the call suspended
  /// and clears it after, and the mark is read before and after the count.
  occupancy occupancy_of(std::uint32_t slot) const noexcept {
    const slot_signals& s = signals_[slot];
    const std::uint64_t before = s.blocked_mark->load(std::memory_order_acquire);
    const std::uint32_t n = s.suspended->load(std::memory_order_acquire);
    const std::uint64_t after = s.blocked_mark->load(std::memory_order_acquire);
    return {n, after != 0 ? after : before};
  }

  // ---- where processes run ---------------------------------------------------------------
  /// The machines a transport reaches (a cluster's nodes; one outside a cluster), numbered
  /// from 0, this one; and the node the slot's processes run on.
  virtual std::uint32_t node_count() const { return 1; }
  virtual std::uint32_t node_of(std::uint32_t /*slot*/) const { return 0; }
  /// False once node `n` can run no process (its supervisor is gone).
  virtual bool node_alive(std::uint32_t n) const { return n != 0 || can_start(); }
  /// The nodes other than this one that keep a copy of store block `b` (bit n - 1 for node
  /// n): where a call reading it finds its bytes already. None outside a cluster.
  virtual std::uint64_t copy_holders(const object_block* /*b*/) const { return 0; }
  /// Another node's process in `slot`: its CPU seconds and resident bytes as its node last
  /// reported them (each second); false for this machine's (read /proc) or none yet.
  virtual bool usage_of(std::uint32_t /*slot*/, double& /*cpu_seconds*/,
                        std::uint64_t& /*rss_bytes*/) const {
    return false;
  }

  // ---- processes ----------------------------------------------------------------------
  /// Starts a process in `slot` with empty mailboxes (a first one, or a replacement).
  virtual void start(std::uint32_t slot) = 0;
  /// How the slot's processes are started from now on: 0 by the runtime's start method, else
  /// 1 + a start_method_id. A transport with one way of starting ignores it.
  virtual void start_as(std::uint32_t /*slot*/, std::uint32_t /*how*/) {}
  /// The slot has no process any more and will have none until start(): frees its mailboxes.
  virtual void close(std::uint32_t slot) = 0;
  /// Kills the slot's process (SIGKILL); its death is reported as any other.
  virtual void kill(std::uint32_t slot) = 0;
  /// The slot's process id; 0 while it starts.
  virtual int pid(std::uint32_t slot) const = 0;
  /// False once no process can be started (the supervisor is gone).
  virtual bool can_start() const = 0;
  /// Asks the slots' processes' deaths to be awaited for up to `grace` (at teardown: idle
  /// actors told to shut down run their destructors). Reports nothing.
  virtual void await_exit(std::span<const std::uint32_t> slots,
                          std::chrono::milliseconds grace) = 0;

  // ---- messages -----------------------------------------------------------------------
  /// Largest message send() takes without a carrier block.
  virtual std::size_t max_message_bytes() const = 0;
  /// Sends `size` bytes written by `fill` to the slot's process. False when its inbox has no
  /// room now: the transport remembers to wake the driver when room frees.
  virtual bool send(std::uint32_t slot, msg_kind kind, std::size_t size, fill_ref fill) = 0;
  /// Sends a message whose payload lies in `carrier` (longer than max_message_bytes()). The
  /// sender keeps its reference to the block until the message is no longer needed.
  virtual bool send_carried(std::uint32_t slot, msg_kind kind, object_block* carrier) = 0;

  // ---- the loop -----------------------------------------------------------------------
  /// Delivers what arrived (messages, then deaths) to `to`; true if anything did.
  virtual bool poll(transport_events& to) = 0;
  /// Sleeps until something may have arrived or `also()` holds (checked after announcing
  /// the sleep, so whoever makes it hold and rings the driver's doorbell is never missed), at
  /// most `limit`; reports a lost supervisor.
  virtual void sleep(std::chrono::nanoseconds limit, transport_events& to,
                     wake_check also = {}) = 0;

 protected:
  /// One per slot, each pointing at memory that outlives the transport's use; set by the
  /// implementation's constructor.
  std::vector<slot_signals> signals_;
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/transport.hpp>
#include <cstdint>
#include <memory>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

class segment;
class shm_transport;

class cluster_seam {
 public:
  virtual ~cluster_seam() = default;
  /// Task workers on the other nodes, all of them.
  virtual std::uint32_t remote_workers() const = 0;
  /// Actor slots on the other nodes, all of them.
  virtual std::uint32_t remote_actors() const = 0;
  /// Each other node's resources, node 1 first (the transport's node numbers).
  virtual std::vector<node_resources> remote_resources() const = 0;
  /// The transport the orchestrator uses: this machine's (`local`, whose slots are its
  /// `local_workers` task workers, then `actors` actor slots) with the other nodes' task
  /// workers as slots `local_workers` up to `local_workers + remote_workers()`, then this
  /// machine's actor slots, then the other nodes' (remote_actors()). Called once; the result
  /// owns the link to the other nodes and ends it (and them) when destroyed.
  virtual std::unique_ptr<transport> wrap(shm_transport& local, segment& seg,
                                          std::uint32_t local_workers, std::uint32_t actors) = 0;
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/cluster_seam.hpp>
// #include <coray/detail/runtime/driver.hpp>: inlined above
// begin <coray/detail/runtime/orchestrator.hpp>
/// The orchestrator: the driver's decisions. It admits calls (the driver's own and the
/// nested ones processes submit), holds each back until its object_ref arguments are
/// ready, sends task calls to the least busy worker and actor calls to their actor in the
/// order they were made, settles results, retries and restarts after deaths, and accounts
/// for every store block a process holds. It reaches processes only through a `transport`
/// and keeps its state in parts with one job each (design.md, "The runtime core"): parts
/// return decisions; only the orchestrator acts on them. What happens to a call inside the
/// driver (admission, dependencies, dispatch, its end) is call_lifecycle, which it builds on;
/// here is what comes from outside: new calls, replies, deaths, restarts, kills. The unit
/// tests drive it with a fake transport.
///
/// Driver only, loop thread only.

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
// begin <coray/detail/runtime/call_lifecycle.hpp>
/// A call's life in the driver, from admission to the end: held back until its object_ref
/// arguments are ready, queued, dispatched (call_pump), failed or finished and forgotten;
/// and the handle counts a call changes, which keep actors and pinned blocks alive. The
/// orchestrator builds on it with what happens to calls and processes from outside (new
/// calls, replies, deaths, restarts). It owns the orchestrator's parts (design.md, "The
/// runtime core") and never calls up into the orchestrator.
///
/// Driver only, loop thread only.

#include <fmt/format.h>

#include <algorithm>
// begin <coray/detail/runtime/actor_table.hpp>
/// The orchestrator's table of actors: each actor's slot, name, handle count, restart budget,
/// the copy of its constructor call kept for restarts, and its calls (queued in the order
/// they were made, then sent). It hands out and takes back actor slots. Its answers are
/// decisions (what became of a handle count, which calls a restart sends again); the
/// orchestrator acts on them.

#include <fmt/format.h>

#include <algorithm>
// #include <coray/detail/runtime/driver.hpp>: inlined above
// begin <coray/detail/runtime/task_table.hpp>
/// The orchestrator's table of live calls: one record per call from submission until its
/// outcome is settled and forwarded, and the run queue of task calls ready to go to a
/// worker. It decides nothing about processes; it keeps what the orchestrator needs to.

#include <fmt/format.h>

#include <algorithm>
// #include <coray/detail/runtime/call_message.hpp>: inlined above
// begin <coray/detail/runtime/id_index.hpp>
/// The driver's index of live calls by id: a table of buckets, each the head of a list
/// threaded through the entries themselves (an entry has `id` and `index_next`), so entering
/// a call allocates nothing. An id's bucket is its low 32 bits, the number within its series,
/// plus an offset mixed from its high 32, which name the series (0 for the driver's calls; a
/// worker's nested calls carry its slot and generation there and number from 1 as the driver
/// does), masked to the table's size, a power of two.
///
/// Why not a standard map: call ids are handed out one after another, so the live ones are
/// mostly runs of consecutive ids. Here such a run fills consecutive buckets, one entry
/// each: a tide of a million queued calls walks the table in order, and no operation divides
/// (std::unordered_map finds a bucket with a modulo by a prime, four times per call, and
/// allocates a node per entry). A table with a mixing hash (boost::unordered_flat_map)
/// scatters the run, a cache miss per call; open addressing without one lets the runs of two
/// series that land near each other pile up, a probe per entry of the overlap, where here a
/// bucket holds one entry per series at most. At most one entry per bucket on average.
///
/// Not thread-safe; the driver's loop thread only.

// #include <coray/version.hpp>: inlined above
#include <cstddef>
#include <cstdint>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

template <class T>
class id_index {
 public:
  /// The entry with `id`, or null.
  T* find(std::uint64_t id) const noexcept {
    if (size_ == 0) return nullptr;
    for (T* p = heads_[bucket(id)]; p != nullptr; p = p->index_next)
      if (p->id == id) return p;
    return nullptr;
  }
  /// Enters `entry`, whose id must not be present.
  void insert(T* entry) {
    if (size_ + 1 > heads_.size()) rebuild(heads_.empty() ? min_buckets : heads_.size() * 2);
    T*& head = heads_[bucket(entry->id)];
    entry->index_next = head;
    head = entry;
    ++size_;
  }
  /// Takes the entry with `id` out and returns it, or null if there was none.
  T* erase(std::uint64_t id) noexcept {
    if (size_ == 0) return nullptr;
    for (T** link = &heads_[bucket(id)]; *link != nullptr; link = &(*link)->index_next) {
      T* const found = *link;
      if (found->id != id) continue;
      *link = found->index_next;
      found->index_next = nullptr;
      --size_;
      return found;
    }
    return nullptr;
  }
  std::size_t size() const noexcept { return size_; }
  /// The number of buckets.
  std::size_t capacity() const noexcept { return heads_.size(); }
  /// Each entry, in no order. `f` must not change the index.
  template <class F>
  void for_each(F&& f) const {
    for (T* head : heads_)
      for (T* p = head; p != nullptr;) {
        T* const next = p->index_next;  // read first: `f` may free the entry (clear's owner)
        f(p);
        p = next;
      }
  }
  /// Sizes the table for what it holds now (none: no table at all).
  void shrink_to_fit() {
    std::size_t n = size_ == 0 ? 0 : min_buckets;
    while (n < size_) n *= 2;
    if (n < heads_.size()) rebuild(n);
  }
  /// Forgets every entry (their owner frees them) and keeps the table's size.
  void clear() noexcept {
    for (T*& head : heads_) head = nullptr;
    size_ = 0;
  }

 private:
  static constexpr std::size_t min_buckets = 64;

  std::size_t bucket(std::uint64_t id) const noexcept {
    return static_cast<std::size_t>(id + ((id >> 32) * 0x9E3779B97F4A7C15u >> 29)) & mask_;
  }
  void rebuild(std::size_t n) {
    std::vector<T*> old(n, nullptr);
    old.swap(heads_);
    mask_ = n == 0 ? 0 : n - 1;
    for (T* head : old)
      for (T* p = head; p != nullptr;) {
        T* const next = p->index_next;
        T*& to = heads_[bucket(p->id)];
        p->index_next = to;
        to = p;
        p = next;
      }
  }

  std::vector<T*> heads_;
  std::size_t mask_ = 0;
  std::size_t size_ = 0;
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/id_index.hpp>
// #include <coray/detail/runtime/recycled.hpp>: inlined above
#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// What only some calls carry, kept apart from their task_record so that a queued call of a
/// few small arguments stays small: store blocks of large arguments, a requirement not yet
/// admitted, an actor construction's settings, a sent message's block.
struct task_extras {
  std::vector<object_block*> blocks;  // one reference each, released when the call ends
  std::shared_ptr<const resource_request> resources;  // as submitted, until admitted
  object_block* message = nullptr;                    // the sent message, when it needed a block
  std::uint32_t max_concurrency = 1;                  // construct: the actor's, with its flags
  std::uint32_t restart = 0;  // construct: how many times its actor was built before
};

/// One call the driver tracks: a task call, an actor method call or an actor's construction.
/// Fields are grouped so that the record has no holes: a task call of one int argument, its
/// result's state and its places in the index and the run queue take the driver's memory
/// docs/design.md states ("What a queued call costs").
struct task_record : recycled<task_record, 4096> {
  std::uint64_t id = 0;
  std::uint64_t fn_id = 0;
  std::string_view name;
  call_bytes args;
  std::uint32_t nargs = 0;
  std::uint32_t pending_deps = 0;
  std::vector<state_ptr> deps;
  held_contents held;  // refs and actor handles inside the arguments (kept alive)
  std::unique_ptr<std::vector<state_ptr>> returns;  // ray::returns: the caller's results
  state_ptr result;
  std::uint64_t actor = 0;  // the actor it calls; 0 for a task
  std::uint32_t shape = 0;  // a task's requirement (call_pump's shapes); 0: {CPU: 1}
  std::uint32_t gpus = 0;   // the GPUs it is sent with (a mask of indices)
  std::uint32_t group = 0;  // an actor call's concurrency group; 0: its method's
  int submitter = -1;       // slot of the process that made this nested call, -1 for the driver
  std::uint32_t submitter_generation = 0;
  int worker = -1;                 // the task worker it was sent to
  std::uint64_t dispatch_seq = 0;  // its place among the calls sent to its process
  std::uint64_t retry_matcher = 0;
  int max_retries = 0;
  int attempt = 1;
  bool failed_dep = false;
  bool construct = false;
  bool cancelled = false;
  bool pinned = false;                // its store arguments are pinned (see pin_deps)
  bool lent = false;                  // runs on a blocked worker with its own grant (lend)
  void* owner = nullptr;              // the orchestrator, for dependency callbacks
  task_record* index_next = nullptr;  // the next record in its bucket of the index (id_index)
  // Recording a timeline: when it was submitted and last sent (tick_clock ticks). In the
  // record, not the extras: recording stamps every call.
  std::int64_t submitted_tick = 0;
  std::int64_t sent_tick = 0;
  std::unique_ptr<task_extras> extras;  // null until something in it is set

  /// The extras, made on first use.
  task_extras& more() {
    if (!extras) extras = std::make_unique<task_extras>();
    return *extras;
  }
  /// Its store blocks (large arguments), held until it ends.
  std::span<object_block* const> blocks() const noexcept {
    return extras ? std::span<object_block* const>(extras->blocks)
                  : std::span<object_block* const>();
  }
  object_block* message() const noexcept { return extras ? extras->message : nullptr; }
  std::uint32_t max_concurrency() const noexcept { return extras ? extras->max_concurrency : 1; }
  std::uint32_t restart() const noexcept { return extras ? extras->restart : 0; }

  /// The record of a call as submitted; the spec's blocks and dependencies move in.
  static std::unique_ptr<task_record> from(std::uint64_t id, task_spec&& spec, state_ptr result) {
    auto r = std::make_unique<task_record>();
    r->id = id;
    r->fn_id = spec.fn_id;
    r->name = spec.name;
    r->nargs = spec.nargs;
    r->args = std::move(spec.args);
    r->deps = std::move(spec.deps);
    if (!spec.blocks.empty()) r->more().blocks = std::move(spec.blocks);
    r->actor = spec.target_actor;
    r->held = std::move(spec.held);
    r->returns = std::move(spec.returns);
    r->max_retries = spec.max_retries;
    r->retry_matcher = spec.retry_matcher;
    if (spec.resources) r->more().resources = std::move(spec.resources);
    r->group = spec.group;
    r->result = std::move(result);
    return r;
  }

  /// A label for messages: the function's name, or "a task".
  std::string_view label() const noexcept { return name.empty() ? "a task" : name; }
  /// " (attempt N of M)" when retries are allowed, else nothing. (max_retries may be INT_MAX:
  /// an actor's max_task_retries of -1.)
  std::string attempts_note() const {
    return max_retries > 0
               ? fmt::format(" (attempt {} of {})", attempt, std::int64_t{max_retries} + 1)
               : std::string();
  }
};

/// Live calls by id, the task calls ready to run in the order they became ready, and the
/// calls sent to each task worker.
class task_table {
 public:
  explicit task_table(std::uint32_t workers = 0) : workers_(workers) {}
  task_table(const task_table&) = delete;
  task_table& operator=(const task_table&) = delete;
  ~task_table() { clear(); }

  task_record* insert(std::unique_ptr<task_record> r) {
    task_record* p = r.get();
    records_.insert(p);
    r.release();  // owned by the index until remove or clear
    return p;
  }
  task_record* find(std::uint64_t id) const noexcept { return records_.find(id); }
  bool contains(std::uint64_t id) const noexcept { return records_.find(id) != nullptr; }
  /// Takes the record out; the caller releases what it holds.
  std::unique_ptr<task_record> remove(std::uint64_t id) {
    return std::unique_ptr<task_record>(records_.erase(id));
  }
  std::size_t size() const noexcept { return records_.size(); }
  /// Each live call, in no order (the state API's listing).
  template <class F>
  void for_each(F&& f) const {
    records_.for_each([&](const task_record* r) { f(*r); });
  }
  /// After a tide of calls has gone: gives back the index's table, sized for the peak.
  /// True if there was much to give back.
  bool shrink() {
    if (records_.capacity() < (std::size_t{1} << 16) || records_.size() * 8 > records_.capacity())
      return false;
    records_.shrink_to_fit();
    return true;
  }
  void clear() {
    runnable.clear();
    records_.for_each([](task_record* r) { delete r; });
    records_.clear();
  }

  /// Counts `r`'s dependencies: those failed settle its result with the first error, those
  /// pending get `on_ready(ctx = r)` as a waiter. Returns how many are pending.
  static std::uint32_t watch_dependencies(task_record& r, void (*on_ready)(void*, object_state&)) {
    for (auto& d : r.deps) {
      if (d->st == object_state::status::failed) {
        if (!r.failed_dep) r.result->set_error(d->error());
        r.failed_dep = true;
      } else if (d->st == object_state::status::pending) {
        ++r.pending_deps;
        d->waiters.push_back({on_ready, &r});
      }
    }
    return r.pending_deps;
  }

  /// Task calls ready to be sent to a worker: the nested ones (made by tasks) first, newest
  /// first, then the driver's, oldest first (make_runnable).
  std::deque<task_record*> runnable;
  /// Counts the nested calls made runnable: a search of the queue that found nothing for a
  /// blocked worker need not run again before this moves.
  std::uint64_t nested_queued = 0;

  /// Queues a task whose arguments are ready. A nested call (made by a running task) goes
  /// ahead of the rest: its caller may be blocked waiting for it, and running the newest
  /// such calls first goes depth first through a tree of blocking tasks, so the number
  /// blocked at once stays near the tree's depth rather than its width.
  void make_runnable(task_record* r) {
    if (r->submitter >= 0) {
      runnable.push_front(r);
      ++nested_queued;
    } else {
      runnable.push_back(r);
    }
  }
  /// Queues again, ahead of the others, calls to run again (in their order): the nested
  /// ones first, the driver's after them, so that nested calls stay at the front.
  void requeue(const std::vector<task_record*>& again) {
    auto first_driver = std::find_if(runnable.begin(), runnable.end(),
                                     [](const task_record* r) { return r->submitter < 0; });
    for (task_record* r : again)
      if (r->submitter < 0) first_driver = std::next(runnable.insert(first_driver, r));
    auto front = runnable.begin();
    for (task_record* r : again)
      if (r->submitter >= 0) front = std::next(runnable.insert(front, r));
    ++nested_queued;
  }
  /// The call to send to task worker `slot` next: the queue's first, or, while the worker is
  /// blocked (`mark` nonzero; see worker_shared::blocked_mark), the first call it made
  /// itself with an id from `mark` up (the blocked call's descendants: a worker numbers its
  /// calls in order), searched among the nested calls only; runnable.end() if none.
  std::deque<task_record*>::iterator next_for(std::uint32_t slot, std::uint64_t mark) {
    if (mark == 0) return runnable.begin();
    for (auto it = runnable.begin(); it != runnable.end() && (*it)->submitter >= 0; ++it)
      if ((*it)->submitter == static_cast<int>(slot) && (*it)->id >= mark) return it;
    return runnable.end();
  }

  // ---- task workers -------------------------------------------------------------------

  /// Calls sent to worker `slot` and not done, suspended ones included.
  std::uint32_t in_flight(std::uint32_t slot) const noexcept { return workers_[slot].in_flight; }
  /// Calls sent to worker `slot` and not done, less those it holds suspended (awaiting).
  std::uint32_t load(std::uint32_t slot, std::uint32_t suspended) const noexcept {
    const std::uint32_t n = workers_[slot].in_flight;
    return n > suspended ? n - suspended : 0;
  }
  /// `r` was sent to worker `slot`: it takes the next place among the calls sent there.
  void sent(std::uint32_t slot, task_record& r) {
    worker_calls& w = workers_[slot];
    r.dispatch_seq = w.dispatched++;
    r.worker = static_cast<int>(slot);
    w.order.emplace_back(r.dispatch_seq, r.id);
    ++w.in_flight;
  }
  /// A call sent to worker `slot` ended (or will be sent again).
  void done(std::uint32_t slot) {
    worker_calls& w = workers_[slot];
    if (w.in_flight) --w.in_flight;
    while (!w.order.empty() && !contains(w.order.front().second)) w.order.pop_front();
  }

  /// `r`, sent to worker `slot`, runs again (a retryable exception): back to the run queue.
  void retry(std::uint32_t slot, task_record& r) {
    done(slot);
    make_runnable(&r);
  }

  /// What becomes of the calls sent to a worker that died, the first `calls_started` of
  /// which it had started.
  struct death_plan {
    std::vector<task_record*> again;    // to run (again) on another worker, in their order
    std::vector<task_record*> crashed;  // fail with worker_crashed
  };
  death_plan worker_died(std::uint32_t slot, std::uint64_t calls_started) {
    death_plan plan;
    for (auto& [seq, id] : workers_[slot].order) {
      task_record* r = find(id);
      if (!r || r->worker != static_cast<int>(slot) || r->dispatch_seq != seq)
        continue;  // done, or sent elsewhere since
      const bool started = seq < calls_started;
      if (r->cancelled || (started && r->attempt > r->max_retries)) {
        plan.crashed.push_back(r);
      } else {
        if (started) ++r->attempt;  // it ran and died: retried, Ray's max_retries
        plan.again.push_back(r);
      }
    }
    workers_[slot] = worker_calls{};
    return plan;
  }

 private:
  struct worker_calls {
    std::uint64_t dispatched = 0;                               // calls sent to its current process
    std::uint32_t in_flight = 0;                                // calls sent and not done
    std::deque<std::pair<std::uint64_t, std::uint64_t>> order;  // (dispatch_seq, call id)
  };
  // By id, in buckets threaded through the records, a run of consecutive ids in consecutive
  // buckets (id_index.hpp says why): no allocation and no division per call, and a tide of a
  // million queued calls walks the table in order.
  id_index<task_record> records_;
  std::vector<worker_calls> workers_;
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/task_table.hpp>
#include <cstdint>
#include <deque>
#include <iterator>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

class resource_ledger;

struct actor_entry {
  std::uint64_t id = 0;
  std::uint32_t slot = 0;
  std::uint32_t node = 0;  // the slot's (transport::node_of)
  std::uint64_t type_id = 0;
  std::string type_name;
  std::string name;
  int refs = 0;
  bool dead = false;
  bool killed = false;
  bool closing = false;  // no handle is left: end after the queued calls
  bool shutdown_sent = false;
  std::string cause;
  int pid = 0, wait_status = 0;  // of its process, once it ended
  state_ptr constructed;
  int max_restarts = 0;
  int restarts = 0;
  int max_task_retries = 0;
  std::uint32_t max_concurrency = 1;
  std::uint32_t shape = 0;            // resources it holds for life (call_pump's shapes); 0: none
  bool placed = false;                // it holds them (shape 0: nothing to hold)
  resource_grant grant;               // its GPUs, kept across restarts
  std::uint64_t group = 0;            // the placement group whose bundle lends it its resources
  resource_ledger* ledger = nullptr;  // that bundle's; null: its node's
  // The constructor call, kept to build the actor again (max_restarts).
  std::uint64_t ctor_fn = 0;
  std::string_view ctor_name;
  std::uint32_t ctor_nargs = 0;
  call_bytes ctor_args;
  std::vector<state_ptr> ctor_deps;
  std::vector<state_ptr> ctor_refs;        // refs inside its arguments
  std::vector<object_block*> ctor_blocks;  // one reference each, for rebuilding
  std::deque<task_record*> queue;          // calls not yet sent, in the order they were made
  std::deque<std::uint64_t> sent;          // calls sent and not done
  std::uint64_t dispatched = 0;            // method calls sent to the current process

  bool may_restart() const noexcept {
    return !killed && !closing && cause.empty() && (max_restarts < 0 || restarts < max_restarts);
  }
  /// A new construction call from the kept copy (its blocks get a reference each from
  /// `add_ref`).
  template <class AddRef>
  std::unique_ptr<task_record> constructor_call(std::uint64_t call_id, state_ptr result,
                                                AddRef&& add_ref) const {
    task_spec spec;
    spec.fn_id = ctor_fn;
    spec.name = ctor_name;
    spec.nargs = ctor_nargs;
    copy_bytes(spec.args, ctor_args);
    spec.deps = ctor_deps;
    if (!ctor_refs.empty()) contents_of(spec.held).refs = ctor_refs;
    for (auto* b : ctor_blocks) {
      add_ref(b);
      spec.blocks.push_back(b);
    }
    spec.target_actor = id;
    auto r = task_record::from(call_id, std::move(spec), std::move(result));
    r->construct = true;
    r->more().max_concurrency = max_concurrency;
    r->more().restart = static_cast<std::uint32_t>(restarts);
    return r;
  }
};

class actor_table {
 public:
  /// Slots [first, first + count) are for actors.
  actor_table(std::uint32_t first, std::uint32_t count) : max_actors_(count) {
    for (std::uint32_t i = first + count; i-- > first;) free_slots_.push_back(i);
  }

  std::uint32_t max_actors() const noexcept { return max_actors_; }
  bool has_free_slot() const noexcept { return !free_slots_.empty(); }
  bool name_taken(const std::string& name) const { return names_.count(name) != 0; }

  /// A free slot for which `fits(slot)` holds (the first handed out first), or nullopt.
  template <class Fits>
  std::optional<std::uint32_t> free_slot_where(Fits&& fits) const {
    for (auto it = free_slots_.rbegin(); it != free_slots_.rend(); ++it)
      if (fits(*it)) return *it;
    return std::nullopt;
  }

  /// Registers a new actor in free slot `slot` (from free_slot_where) on node `node`.
  actor_entry& create(actor_spawn_request& req, segment& seg, std::uint32_t slot,
                      std::uint32_t node) {
    const auto it = std::find(free_slots_.rbegin(), free_slots_.rend(), slot);  // mostly the last
    free_slots_.erase(std::next(it).base());
    actor_entry& a = actors_[next_id_];
    a.id = next_id_++;
    a.slot = slot;
    a.node = node;
    a.type_id = req.type_id;
    a.type_name = std::move(req.type_name);
    a.name = std::move(req.name);
    a.max_restarts = req.max_restarts;
    a.max_task_retries = req.max_task_retries;
    a.max_concurrency = req.max_concurrency;
    a.ctor_fn = req.constructor.fn_id;
    a.ctor_name = req.constructor.name;
    a.ctor_nargs = req.constructor.nargs;
    copy_bytes(a.ctor_args, req.constructor.args);
    a.ctor_deps = req.constructor.deps;
    if (req.constructor.held) a.ctor_refs = req.constructor.held->refs;
    for (auto* b : req.constructor.blocks) {
      seg.add_ref(b);
      a.ctor_blocks.push_back(b);
    }
    if (!a.name.empty()) names_[a.name] = a.id;
    return a;
  }

  actor_entry* find(std::uint64_t id) noexcept {
    auto it = actors_.find(id);
    return it == actors_.end() ? nullptr : &it->second;
  }
  const actor_entry* find(std::uint64_t id) const noexcept {
    auto it = actors_.find(id);
    return it == actors_.end() ? nullptr : &it->second;
  }
  /// The live actor registered under `name`, or null.
  const actor_entry* lookup(const std::string& name) const {
    auto it = names_.find(name);
    return it == names_.end() ? nullptr : find(it->second);
  }
  void unname(actor_entry& a) {
    if (!a.name.empty()) names_.erase(a.name);
  }
  /// The actor's process ended for good: its slot is free again.
  void free_slot(std::uint32_t slot) { free_slots_.push_back(slot); }

  /// Undoes create() for a spawn refused before its process started (no room for its
  /// mailboxes): the slot and the name are free again. Returns the blocks create() took a
  /// reference to, to release.
  std::vector<object_block*> refuse(actor_entry& a) {
    free_slot(a.slot);
    unname(a);
    return forget(a.id);
  }

  /// What a change of an actor's handle count calls for.
  enum class handle_outcome { none, close, forget };
  handle_outcome adjust_handles(actor_entry& a, int delta) {
    a.refs += delta;
    if (a.refs > 0) return handle_outcome::none;
    if (a.dead) return forgettable(a) ? handle_outcome::forget : handle_outcome::none;
    if (a.closing) return handle_outcome::none;
    // No handle is left anywhere: the actor ends once its queued calls are done.
    a.closing = true;
    unname(a);
    return handle_outcome::close;
  }
  static bool forgettable(const actor_entry& a) noexcept {
    return a.refs <= 0 && a.dead && a.queue.empty();
  }
  /// Removes an ended actor with no handle left; returns the constructor's blocks to release.
  std::vector<object_block*> forget(std::uint64_t id) {
    auto it = actors_.find(id);
    if (it == actors_.end()) return {};
    auto blocks = std::move(it->second.ctor_blocks);
    actors_.erase(it);
    return blocks;
  }

  /// What becomes of an actor's sent calls when its process dies and it is rebuilt: those it
  /// had not started go again, those it had run again while max_task_retries allows.
  struct restart_plan {
    std::vector<task_record*> again;      // in their order, before the queued calls
    std::vector<task_record*> exhausted;  // fail with actor_died
  };
  restart_plan plan_restart(actor_entry& a, std::uint64_t calls_started, const task_table& tasks) {
    ++a.restarts;
    restart_plan plan;
    for (std::uint64_t id : a.sent) {
      task_record* r = tasks.find(id);
      if (!r || r->construct) continue;  // the construction is made anew
      if (r->dispatch_seq >= calls_started && !r->cancelled) {
        plan.again.push_back(r);  // never started: simply sent again
      } else if (r->attempt <= r->max_retries && !r->cancelled) {
        ++r->attempt;
        plan.again.push_back(r);
      } else {
        plan.exhausted.push_back(r);
      }
    }
    a.sent.clear();
    a.dispatched = 0;
    a.queue.insert(a.queue.begin(), plan.again.begin(), plan.again.end());
    return plan;
  }

  /// The actor's process ended for good: records how and why, frees its slot and its name,
  /// and returns its unfinished calls (sent, then queued), which fail with `a.cause`.
  std::vector<std::uint64_t> end(actor_entry& a, int pid, int wait_status,
                                 const std::string& words) {
    free_slot(a.slot);
    a.dead = true;
    a.pid = pid;
    a.wait_status = wait_status;
    unname(a);
    if (!a.killed) {
      const std::string why = a.cause.empty() ? words : "failed in its constructor: " + a.cause;
      a.cause = fmt::format("coray: actor {} (pid {}) {}", a.type_name, pid, why);
    }
    std::vector<std::uint64_t> ids(a.sent.begin(), a.sent.end());
    a.sent.clear();
    for (task_record* r : a.queue) ids.push_back(r->id);
    a.queue.clear();
    return ids;
  }

  /// The method call `r` runs again (a retryable exception): first in its actor's queue.
  void retry(task_record& r) {
    actor_entry* a = find(r.actor);
    if (!a) return;
    a->sent.erase(std::remove(a->sent.begin(), a->sent.end(), r.id), a->sent.end());
    a->queue.push_front(&r);
  }

  /// Live actors with nothing queued or running: at teardown they end on their own.
  /// Each actor tracked, in no order (the state API's listing).
  template <class F>
  void for_each(F&& f) const {
    for (const auto& entry : actors_) f(entry.second);
  }
  /// The live actors placed in placement group `group`.
  std::vector<std::uint64_t> in_group(std::uint64_t group) const {
    std::vector<std::uint64_t> out;
    for (const auto& [id, a] : actors_)
      if (a.group == group && !a.dead && !a.killed) out.push_back(id);
    return out;
  }
  std::vector<actor_entry*> idle() {
    std::vector<actor_entry*> out;
    for (auto& [id, a] : actors_)
      if (!a.dead && !a.killed && a.queue.empty() && a.sent.empty()) out.push_back(&a);
    return out;
  }

  void clear_queues() {
    for (auto& [id, a] : actors_) a.queue.clear();
  }

 private:
  std::unordered_map<std::uint64_t, actor_entry> actors_;
  std::unordered_map<std::string, std::uint64_t> names_;
  std::vector<std::uint32_t> free_slots_;
  std::uint32_t max_actors_;
  std::uint64_t next_id_ = 1;
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/actor_table.hpp>
// begin <coray/detail/runtime/block_ledger.hpp>
/// The block ledger: which store blocks each process holds references to, and the blocks
/// processes have asked the driver for. A process's references are released on its behalf
/// when it dies, so the store's free bytes return exactly. Driver only, loop thread only.

#include <algorithm>
#include <chrono>
// #include <coray/detail/shm/segment.hpp>: inlined above
#include <cstddef>
#include <cstdint>
#include <deque>
#include <unordered_set>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// Which store blocks each process holds references to. A process's references are
/// released on its behalf when it dies, so the store's free bytes return exactly.
class block_ledger {
 public:
  block_ledger(segment& seg, std::uint32_t slots) : seg_(seg), owned_(slots), requests_(slots) {}

  /// `slot` now holds one reference to the block at `offset`.
  void grant(std::uint32_t slot, std::uint64_t offset) { owned_[slot].insert(offset); }
  bool holds(std::uint32_t slot, std::uint64_t offset) const {
    return owned_[slot].count(offset) != 0;
  }
  /// `slot` gives up one reference it held to `b` (ignored if it held none).
  void drop(std::uint32_t slot, object_block* b) noexcept {
    auto& o = owned_[slot];
    auto it = o.find(seg_.offset_of(b));
    if (it == o.end()) return;  // not its to give
    o.erase(it);
    seg_.release(b);
  }
  /// `slot`'s reference to `b` passes to the driver; false if it held none.
  bool take(std::uint32_t slot, object_block* b) {
    auto& o = owned_[slot];
    auto it = o.find(seg_.offset_of(b));
    if (it == o.end()) return false;
    o.erase(it);
    return true;
  }
  /// The process in `slot` died: everything it held is let go, its requests forgotten.
  void release_all(std::uint32_t slot) noexcept {
    for (std::uint64_t off : owned_[slot]) seg_.release(seg_.at<object_block>(off));
    owned_[slot].clear();
    requests_[slot].clear();
  }

  // ---- block requests -------------------------------------------------------------------

  /// Process `slot` asks for a block of `size` bytes (its request number `request`).
  void request(std::uint32_t slot, std::uint64_t request, std::uint64_t size) {
    requests_[slot].push_back({request, size, clock::now() + std::chrono::seconds(1)});
    if (std::find(waiting_.begin(), waiting_.end(), slot) == waiting_.end())
      waiting_.push_back(slot);
  }
  /// Whether requests wait for an answer.
  bool has_requests() const noexcept { return !waiting_.empty(); }
  /// Answers requests in order with `allocate(size)` (throws object_store_full when it does
  /// not fit) and `reply(slot, message)`. One that does not fit waits (replies on their way
  /// may free or make spillable what it needs) for up to a second, then is refused with the
  /// store's figures. True on progress.
  template <class Allocate, class Reply>
  bool answer(Allocate&& allocate, Reply&& reply) {
    bool progress = false;
    for (std::size_t i = 0; i < waiting_.size();) {
      const std::uint32_t slot = waiting_[i];
      auto& q = requests_[slot];
      while (!q.empty()) {
        auto& g = q.front();
        // request, block offset (0: refused), requested, free bytes, capacity
        std::uint64_t message[5] = {g.request, 0, g.size, 0, seg_.capacity()};
        try {
          message[1] = seg_.offset_of(allocate(static_cast<std::size_t>(g.size)));
          grant(slot, message[1]);
        } catch (const object_store_full&) {
          if (clock::now() < g.deadline) break;
        }
        message[3] = seg_.free_bytes();
        reply(slot, message);
        q.pop_front();
        progress = true;
      }
      if (q.empty()) {
        waiting_[i] = waiting_.back();
        waiting_.pop_back();
      } else {
        ++i;
      }
    }
    return progress;
  }

 private:
  using clock = std::chrono::steady_clock;
  struct block_request {
    std::uint64_t request, size;
    clock::time_point deadline;
  };
  segment& seg_;
  std::vector<std::unordered_multiset<std::uint64_t>> owned_;
  std::vector<std::deque<block_request>> requests_;
  std::vector<std::uint32_t> waiting_;  // slots with requests not yet answered
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/block_ledger.hpp>
// begin <coray/detail/runtime/call_pump.hpp>
/// Moves ready calls to processes: task calls from the run queue to the least busy task
/// worker (at most `max_in_flight` occupying each; a worker blocked in a call takes only
/// that call's descendants), and each actor's calls in the order they
/// were made while its mailbox has room. An actor whose mailbox was full is tried again on
/// the next turn; a closing actor is told to shut down after its last call. Calls found
/// failed (a dependency failed) are handed back for the orchestrator to fail. Driver only,
/// loop thread only.
///
/// Resources (design.md, "Resources"): a task worker holds its calls' requirement as a
/// lease while it has calls; calls of the same requirement share it, so a default task
/// ({CPU: 1}) pays nothing per call. While no call, lease or actor asks for anything else
/// and the runtime has a CPU per worker, dispatch asks nothing of the ledger at all (one
/// branch); otherwise each call looks for a worker leased for its requirement or an idle
/// one whose lease the ledger grants. A worker's CPU counts only while it runs something
/// (not while its calls are blocked or suspended), so a task blocked in a get gives its CPU
/// to its descendants, as Ray's do. A descendant that asks for another requirement than
/// its blocked parent's lease is lent the parent's worker under a grant of its own, so that
/// a parent waiting on it never waits for ever. An actor with resources holds them for
/// life, from before its construction is sent; one without waits for a free CPU to be
/// placed.
///
/// In a cluster each node has a ledger of its own: a worker's lease, a loan and an actor's
/// hold come from the ledger of the node the process runs on (transport::node_of), so a call
/// asking for a GPU goes to a node that has one. A call's placement (resource_request::where)
/// limits the workers it may go to: one node's (node affinity), or each node in turn (spread).
/// A call or actor in a placement group's bundle leases from the bundle's ledger (what the
/// group reserved on that node), on a worker of the bundle's node.

#include <fmt/format.h>

#include <algorithm>
#include <bit>
// #include <coray/detail/runtime/actor_table.hpp>: inlined above
// begin <coray/detail/runtime/call_sender.hpp>
/// Puts a call on the wire: writes its message (dependencies replaced by their values) to
/// the slot's process through the transport, in a store block when it is longer than a
/// mailbox takes, pins its store arguments while it runs and gives the receiving process a
/// reference to each shared block it carries. Driver only, loop thread only.

// #include <coray/detail/runtime/block_ledger.hpp>: inlined above
// begin <coray/detail/runtime/object_spiller.hpp>
/// The driver's allocation of object blocks, with spilling (runtime_options::spill_directory):
/// when the store is full, objects only the driver holds and nothing reads in place go to
/// one unnamed file (O_TMPFILE, so a kill -9 leaves nothing) until the new block fits.
/// Driver only, loop thread only.

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
// #include <coray/detail/runtime/object_state.hpp>: inlined above
// #include <coray/detail/shm/segment.hpp>: inlined above
// #include <coray/errors.hpp>: inlined above
#include <cstring>
#include <deque>
#include <string>
#include <unordered_set>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

class object_spiller {
 public:
  /// `directory` empty: no spilling.
  object_spiller(segment& seg, const std::string& directory) : seg_(seg) {
    if (directory.empty()) return;
    fd_ = ::open(directory.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd_ < 0)
      throw ray::runtime_error(
          fmt::format("coray: cannot spill to {}: {}", directory, std::strerror(errno)));
  }
  object_spiller(const object_spiller&) = delete;
  object_spiller& operator=(const object_spiller&) = delete;
  ~object_spiller() {
    if (fd_ >= 0) ::close(fd_);
  }

  bool enabled() const noexcept { return fd_ >= 0; }
  std::uint64_t spilled_objects() const noexcept { return spilled_objects_; }

  /// A new block of `size` payload bytes; spills what it may to make room. Throws
  /// object_store_full when even that is not enough.
  object_block* allocate(std::size_t size) {
    for (;;) {
      try {
        return seg_.new_object(size);
      } catch (const object_store_full&) {
        if (!spill_one()) throw;
      }
    }
  }

  /// A driver state now holds a block: it may be spilled, and the state API lists it.
  void adopted(object_state& s) { held_.insert(&s); }
  /// A driver state is going away. Most hold no block (inline values): one test each.
  void released(object_state& s) noexcept {
    if (!s.block && !s.spilled()) return;
    held_.erase(&s);
    if (s.spilled()) punch(s);
  }
  /// Each driver state with a value in the store or in the spill file (ray::state's
  /// list_objects). Loop thread.
  template <class F>
  void for_each_held(F&& f) const {
    for (const object_state* s : held_) f(*s);
  }

  /// Brings a spilled object back into the store (into `b`, a block of its size).
  void restore(object_state& s, object_block* b) {
    std::size_t done = 0;
    const std::uint64_t size = s.spill_size();
    while (done < size) {
      ssize_t n =
          ::pread(fd_, b->data() + done, size - done, s.spill_offset() + static_cast<off_t>(done));
      if (n <= 0) {
        seg_.release(b);
        throw ray::runtime_error(std::string("coray: reading a spilled object failed: ") +
                                 std::strerror(errno));
      }
      done += static_cast<std::size_t>(n);
    }
    punch(s);
    s.block = b;
  }

  void clear() noexcept { held_.clear(); }

 private:
  /// Writes one object held by the driver alone, with nothing reading it in place, to the
  /// file and frees its block. False if there is none (or the disk is full).
  bool spill_one() {
    if (!enabled()) return false;
    for (object_state* s : held_) {
      if (!s->block || s->pins || s->block->refs.load(std::memory_order_relaxed) != 1 ||
          s->st != object_state::status::ready)
        continue;
      const std::size_t size = static_cast<std::size_t>(s->block->size);
      const off_t at = static_cast<off_t>(end_);
      std::size_t done = 0;
      while (done < size) {
        ssize_t n =
            ::pwrite(fd_, s->block->data() + done, size - done, at + static_cast<off_t>(done));
        if (n <= 0) return false;  // disk full: the store stays full
        done += static_cast<std::size_t>(n);
      }
      end_ += (size + 4095) & ~std::uint64_t{4095};
      s->set_spilled(at, size);
      seg_.release(s->block);
      s->block = nullptr;
      ++spilled_objects_;
      return true;
    }
    return false;
  }

  /// Frees a spilled copy's disk space.
  void punch(object_state& s) noexcept {
    ::fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, s.spill_offset(),
                static_cast<off_t>(s.spill_size()));
    s.clear_spilled();
  }

  segment& seg_;
  int fd_ = -1;
  std::uint64_t end_ = 0;
  std::uint64_t spilled_objects_ = 0;
  // Driver objects in the store (spillable when nothing reads them) or spilled (skipped).
  std::unordered_set<object_state*> held_;
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/object_spiller.hpp>
// #include <coray/detail/runtime/task_table.hpp>: inlined above
// begin <coray/detail/runtime/tick_clock.hpp>
/// The timeline's clock: the CPU's time-stamp counter where it is invariant (x86-64 with
/// constant, non-stop TSC; AArch64's virtual counter), read in a few nanoseconds, and
/// steady_clock elsewhere. Ticks become steady_clock nanoseconds only when the timeline is
/// read, by the rate measured between the clock's start and that read. Loop thread only.
///
/// The orchestrator does not read it per event: a turn_stamp is read by the first event of
/// a loop turn and taken by the turn's other events, so a turn without events reads nothing
/// and a slice's ends are exact to one loop turn. A call's admission reads it anew, except
/// inside a fast run of admissions, which reads it once per eight (turn_stamp::admit).

#include <algorithm>
#include <chrono>
#include <cstdint>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#include <x86intrin.h>
#endif

// #include <coray/version.hpp>: inlined above

CORAY_BEGIN_NAMESPACE
namespace detail {

class tick_clock {
 public:
  tick_clock() noexcept : counter_(has_invariant_counter()) { start_ = pair_now(); }

  /// Now, in ticks.
  std::int64_t now() const noexcept { return counter_ ? read_counter() : steady_ns(); }

  /// A converter from ticks to steady_clock nanoseconds, by the rate since the start.
  struct to_ns {
    std::int64_t tick0, ns0;
    long double ns_per_tick;
    std::int64_t operator()(std::int64_t tick) const noexcept {
      return ns0 + static_cast<std::int64_t>(static_cast<long double>(tick - tick0) * ns_per_tick);
    }
  };
  to_ns converter() const noexcept {
    if (!counter_) return {0, 0, 1.0L};
    // At least a millisecond between the two pairs, so their few nanoseconds of skew are
    // parts in a million of the rate.
    pair p = pair_now();
    while (p.ns - start_.ns < 1'000'000) p = pair_now();
    return {start_.tick, start_.ns,
            static_cast<long double>(p.ns - start_.ns) /
                static_cast<long double>(p.tick - start_.tick)};
  }

  /// How many ticks make `ns` nanoseconds, by the rate since the start; 0 until 100 us have
  /// passed since it (too short to measure the rate on). Reads steady_clock.
  std::int64_t ticks_in(std::int64_t ns) const noexcept {
    if (!counter_) return ns;
    const std::int64_t elapsed = steady_ns() - start_.ns;
    if (elapsed < 100'000) return 0;
    return std::max<std::int64_t>(
        1, static_cast<std::int64_t>(static_cast<long double>(read_counter() - start_.tick) *
                                     static_cast<long double>(ns) /
                                     static_cast<long double>(elapsed)));
  }

 private:
  struct pair {
    std::int64_t tick, ns;
  };
  /// A tick and the steady clock read together: the tightest of three brackets.
  pair pair_now() const noexcept {
    if (!counter_) {
      const std::int64_t n = steady_ns();
      return {n, n};
    }
    pair best{0, 0};
    std::int64_t width = -1;
    for (int i = 0; i < 3; ++i) {
      const std::int64_t a = read_counter();
      const std::int64_t n = steady_ns();
      const std::int64_t b = read_counter();
      if (width < 0 || b - a < width) {
        width = b - a;
        best = {a + (b - a) / 2, n};
      }
    }
    return best;
  }

  static std::int64_t steady_ns() noexcept {
    return std::chrono::steady_clock::now().time_since_epoch().count();
  }

#if defined(__x86_64__) || defined(_M_X64)
  static std::int64_t read_counter() noexcept { return static_cast<std::int64_t>(__rdtsc()); }
  static bool has_invariant_counter() noexcept {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(0x80000007u, &a, &b, &c, &d)) return false;  // no such leaf
    return (d & (1u << 8)) != 0;  // invariant TSC: constant rate, runs in every C-state
  }
#elif defined(__aarch64__)
  static std::int64_t read_counter() noexcept {
    std::uint64_t v;
    asm volatile("mrs %0, cntvct_el0" : "=r"(v));
    return static_cast<std::int64_t>(v);
  }
  static bool has_invariant_counter() noexcept { return true; }
#else
  static std::int64_t read_counter() noexcept { return steady_ns(); }
  static bool has_invariant_counter() noexcept { return false; }
#endif

  bool counter_;
  pair start_{};
};

/// The stamp of the loop turn: read by its first event, forgotten when the next turn begins.
///
/// And the stamps of admitted calls. A clock read costs about as much as 4% of a call's
/// work in the driver, so a run of admissions with no loop turn between them (a loop
/// submitting calls) reads the clock at the first of each eight: the seven between two
/// readings wait in `pending_` with the earlier reading and are spread evenly between the
/// two when the next is taken (by the eighth admission, the next loop turn, or a call about
/// to leave the table: `settle`). The even spreading is trusted only while two readings
/// eight admissions apart are within `tight_ns` (10 us) of each other: once a pair is
/// further apart (the caller does work between submissions), every admission reads the
/// clock until two successive readings are within an eighth of that again. So a call's
/// submission is exact, or within 10 us in a fast run, or, in the one group where a run
/// slows down, between the two readings around it.
class turn_stamp {
 public:
  static constexpr int group = 8;                   // admissions per reading in a fast run
  static constexpr std::int64_t tight_ns = 10'000;  // how close a group's readings must be

  void next_turn() noexcept {
    settle();
    open_ = false;
    cached_ = 0;
  }
  /// The turn's stamp, read now if no event of the turn has read it.
  std::int64_t now() noexcept { return cached_ ? cached_ : read(); }
  /// A call's admission: its stamp into `slot` (nonzero), now or when the next reading is
  /// taken. `slot` must stay where it is until then (`settle` before it goes). A send made
  /// while admitting takes the last reading, which is not later than this.
  void admit(std::int64_t& slot) noexcept {
    if (waits_next()) {
      slot = opened_;  // for now: not later than the admission
      pending_at_[pending_++] = &slot;
      return;
    }
    const std::int64_t t = clock_.now();
    const std::int64_t since = t - opened_;
    const int waited = pending_;
    spread(t);
    if (!tight_ticks_) tight_ticks_ = clock_.ticks_in(tight_ns);  // 0 until measurable
    // A full group: its readings close enough? Reading every admission: would eight fit?
    open_ =
        tight_ticks_ && opened_ && (waited ? since <= tight_ticks_ : since * group <= tight_ticks_);
    opened_ = cached_ = slot = t;
  }
  /// Gives every waiting admission its stamp (one reading, if any waits).
  void settle() noexcept {
    if (pending_) [[unlikely]]
      read();
  }
  /// Whether the next admission waits for a reading (a fast run's group has room).
  bool waits_next() const noexcept { return open_ && pending_ < group - 1; }
  const tick_clock& clock() const noexcept { return clock_; }

 private:
  /// A reading for the turn, not by an admission: the waiting admissions get their stamps,
  /// and the group ends (the next admission reads).
  std::int64_t read() noexcept {
    cached_ = clock_.now();
    spread(cached_);
    open_ = false;
    return cached_;
  }
  /// The waiting admissions, evenly between the last reading and `t`, in their order.
  void spread(std::int64_t t) noexcept {
    const std::int64_t span = t - opened_;
    for (int i = 0; i < pending_; ++i) *pending_at_[i] = opened_ + span * (i + 1) / (pending_ + 1);
    pending_ = 0;
  }

  tick_clock clock_;
  std::int64_t cached_ = 0;
  std::int64_t opened_ = 0;       // the last reading an admission took
  std::int64_t tight_ticks_ = 0;  // tight_ns in ticks, once measured
  bool open_ = false;             // admissions may wait for the next reading
  int pending_ = 0;
  std::int64_t* pending_at_[group - 1] = {};
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/tick_clock.hpp>
// #include <coray/detail/runtime/transport.hpp>: inlined above

CORAY_BEGIN_NAMESPACE
namespace detail {

class call_sender {
 public:
  call_sender(segment& seg, transport& t, block_ledger& ledger, object_spiller& spiller,
              turn_stamp& stamp)
      : seg_(seg), transport_(t), ledger_(ledger), spiller_(spiller), stamp_(&stamp) {}

  /// Sends `r` to the process in `slot`; false when there is no room now (the caller keeps
  /// the call and tries again later).
  bool send(std::uint32_t slot, task_record& r) {
    if (r.submitted_tick) [[unlikely]]  // recording a timeline: the loop turn's stamp
      r.sent_tick = stamp_->now();
    try {
      for (auto& d : r.deps)
        if (d->spilled()) (void)d->value_bytes();  // back into the store, to be read in place
    } catch (const object_store_full&) {
      return false;  // no room yet: the call waits for a later turn
    }
    // An actor's construction carries its id and how many times it was built before; a method
    // call, its concurrency group.
    const call_message_writer message(
        {r.id, r.fn_id, r.nargs, r.construct ? r.max_concurrency() : r.group,
         r.construct ? r.actor : 0, r.construct ? static_cast<std::int32_t>(r.restart()) : 0,
         r.gpus, r.retry_matcher, 0, 0},
        r.args, r.deps);
    const std::size_t size = message.size();
    const msg_kind kind = r.construct ? msg_kind::construct : msg_kind::run_task;
    auto fill = [&](std::byte* out) { message.write(out, seg_); };
    if (size <= transport_.max_message_bytes()) {
      if (!transport_.send(slot, kind, size, fill)) return false;
    } else {
      // Longer than the ring takes: in a block, freed when the call ends.
      object_block* b = spiller_.allocate(size);
      fill(b->data());
      if (!transport_.send_carried(slot, kind, b)) {
        seg_.release(b);
        return false;
      }
      if (r.message()) seg_.release(r.message());
      r.more().message = b;
    }
    pin_arguments(r);
    grant_pinned_blocks(slot, r);
    return true;
  }

 private:
  /// A call's store arguments are read in place while it runs: they must not be spilled.
  static void pin_arguments(task_record& r) {
    if (r.pinned) return;
    r.pinned = true;
    for (auto& d : r.deps)
      if (d->block) ++d->pins;
  }

  /// The process a call was sent to gets a reference of its own to each shared block the
  /// call pins; the handle it decodes adopts it. At each send, so retries are covered.
  void grant_pinned_blocks(std::uint32_t slot, const task_record& r) {
    for (std::uint64_t id : held_actors(r.held))
      if (id & pinned_block_tag) {
        seg_.add_ref(seg_.at<object_block>(id & ~pinned_block_tag));
        ledger_.grant(slot, id & ~pinned_block_tag);
      }
  }

  segment& seg_;
  transport& transport_;
  block_ledger& ledger_;
  object_spiller& spiller_;
  turn_stamp* stamp_;  // the timeline's stamp of the loop turn (call_lifecycle)
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/call_sender.hpp>
// begin <coray/detail/runtime/placement_groups.hpp>
/// The orchestrator's placement groups (Ray's): bundles of resources reserved together on the
/// nodes by a strategy (pack, spread, strict_pack, strict_spread), then lent to the calls and
/// actors placed in them. A group waits until every bundle can be reserved at once; reserving
/// takes each bundle from its node's ledger, and the bundle keeps a ledger of its own
/// (resource_ledger::bundle) that the calls and actors in it lease from, with the node's GPU
/// indices. Its answers are decisions; the orchestrator acts on them. Driver only, loop thread
/// only.

#include <fmt/format.h>

// #include <coray/detail/runtime/object_state.hpp>: inlined above
// begin <coray/detail/runtime/resource_ledger.hpp>
/// The runtime's resources and who holds them: totals by name (`CPU`, `GPU` and custom
/// ones), what is free, and the GPUs by id with the fraction of each that is free. A
/// requirement (`resource_request`) is checked once when a call or actor is made (refuse:
/// bad or never satisfiable) and then acquired and released as a whole; acquiring GPUs
/// says which ones (`resource_grant`). Amounts are fixed point (1/10,000, Ray's
/// granularity), so fractions add up exactly.
///
/// Knows nothing of processes or messages: the orchestrator decides who holds what (a
/// worker's lease, an actor for life), and a cluster scheduler can keep one per node.
/// Driver only, loop thread only.

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
// #include <coray/detail/runtime/resource_request.hpp>: inlined above
// #include <coray/errors.hpp>: inlined above
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// The runtime's resources: what it has and what is free.
class resource_ledger {
 public:
  /// The most GPUs a runtime may have (their indices travel as a 32-bit mask).
  static constexpr std::size_t max_gpus = 32;

  resource_ledger() = default;
  /// `cpus` and `gpus` as amounts; `gpu_ids` names each GPU (CUDA_VISIBLE_DEVICES's
  /// values), one per started unit of `gpus` (a runtime may have 0.5 of a GPU, as Ray's may).
  resource_ledger(resource_amount cpus, resource_amount gpus, std::vector<std::string> gpu_ids,
                  std::map<std::string, resource_amount> custom)
      : cpu_total_(cpus),
        cpu_free_(cpus),
        gpu_total_(gpus),
        gpu_ids_(std::move(gpu_ids)),
        custom_total_(std::move(custom)),
        custom_free_(custom_total_) {
    for (std::size_t i = 0; i < gpu_ids_.size(); ++i)
      gpu_free_.push_back(std::clamp<resource_amount>(
          gpus - static_cast<resource_amount>(i) * resource_unit, 0, resource_unit));
  }

  /// A placement group's bundle: what `r` took of a node's ledger as grant `g`, lent again
  /// to the calls and actors placed in the bundle. Its GPUs keep the node's indices (and
  /// `node_gpu_ids`), so a grant from it names the node's GPUs.
  static resource_ledger bundle(const resource_request& r, const resource_grant& g,
                                const std::vector<std::string>& node_gpu_ids) {
    resource_ledger l;
    l.cpu_total_ = l.cpu_free_ = r.cpu;
    l.gpu_total_ = r.gpu;
    l.gpu_ids_ = node_gpu_ids;
    l.gpu_free_.assign(node_gpu_ids.size(), 0);
    for (const auto& [i, a] : g.gpus) l.gpu_free_[i] = a;
    l.custom_total_ = l.custom_free_ = r.custom;
    return l;
  }

  const std::vector<std::string>& gpu_ids() const noexcept { return gpu_ids_; }
  resource_amount cpu_total() const noexcept { return cpu_total_; }
  /// CPU the ledger has not handed out (task workers' CPU is not among what it counts).
  resource_amount cpu_free() const noexcept { return cpu_free_; }

  /// Why `r` can never be met by this runtime (an unknown resource, more than it has, a
  /// fraction above one that is not whole), or nullopt if it can.
  std::optional<std::string> refuse(const resource_request& r) const {
    auto more = [&](std::string_view what) {
      return fmt::format("it asks for {} {}, and the runtime has {}", r.describe(), what,
                         describe_totals());
    };
    if (r.cpu > cpu_total_) return more("(more CPU than it has)");
    if (r.gpu > 0 && gpu_total_ == 0) return more("(a GPU, and it has none)");
    if (r.gpu > gpu_total_) return more("(more GPU than it has)");
    if (r.gpu > resource_unit && r.gpu % resource_unit != 0)
      return more("(a fraction of GPUs above 1 must be a whole number)");
    for (const auto& [name, a] : r.custom) {
      auto it = custom_total_.find(name);
      if (it == custom_total_.end())
        return more(fmt::format("(the resource '{}' is unknown to it)", name));
      if (a > it->second) return more(fmt::format("(more '{}' than it has)", name));
    }
    return std::nullopt;
  }

  /// Takes `r` if it is free now, with `cpu_in_use` CPU held besides what the ledger
  /// counts (task workers' CPU, which follows their load); nullopt if not. With `take_cpu`
  /// false the CPU is checked but not taken (the caller counts it). `r` must have passed
  /// refuse().
  std::optional<resource_grant> acquire(const resource_request& r, resource_amount cpu_in_use = 0,
                                        bool take_cpu = true) {
    if (!fits(r, cpu_in_use)) return std::nullopt;
    resource_grant g;
    if (r.gpu > 0 && !pick_gpus(r.gpu, g)) return std::nullopt;
    if (take_cpu) cpu_free_ -= r.cpu;
    for (const auto& [name, a] : r.custom) custom_free_[name] -= a;
    for (const auto& [i, a] : g.gpus) gpu_free_[i] -= a;
    return g;
  }

  /// Whether acquire(r, cpu_in_use) would succeed now (takes nothing).
  bool fits(const resource_request& r, resource_amount cpu_in_use = 0) const {
    if (cpu_free_ - cpu_in_use < r.cpu) return false;
    for (const auto& [name, a] : r.custom) {
      auto it = custom_free_.find(name);
      if (it == custom_free_.end() || it->second < a) return false;
    }
    resource_grant g;
    return r.gpu == 0 || pick_gpus(r.gpu, g);
  }

  /// Gives back what acquire(r, ..., take_cpu) took as `g`.
  void release(const resource_request& r, const resource_grant& g, bool take_cpu = true) {
    if (take_cpu) cpu_free_ += r.cpu;
    for (const auto& [name, a] : r.custom) custom_free_[name] += a;
    for (const auto& [i, a] : g.gpus) gpu_free_[i] += a;
  }

  /// Ray's names and amounts: {"CPU": n, "GPU": n, custom...}. `cpu_in_use` as for acquire.
  std::map<std::string, double> totals() const {
    std::map<std::string, double> m{{"CPU", from_resource_amount(cpu_total_)}};
    if (gpu_total_) m["GPU"] = from_resource_amount(gpu_total_);
    for (const auto& [name, a] : custom_total_) m[name] = from_resource_amount(a);
    return m;
  }
  std::map<std::string, double> available(resource_amount cpu_in_use = 0) const {
    std::map<std::string, double> m{
        {"CPU", from_resource_amount(std::max<resource_amount>(0, cpu_free_ - cpu_in_use))}};
    if (gpu_total_) {
      resource_amount gpu = 0;
      for (resource_amount a : gpu_free_) gpu += a;
      m["GPU"] = from_resource_amount(gpu);
    }
    for (const auto& [name, a] : custom_free_) m[name] = from_resource_amount(a);
    return m;
  }

 private:
  /// Chooses GPUs for `amount`: a fraction goes to the GPU that has least room left that
  /// still fits it (packing fractions together), a whole number to wholly free GPUs.
  bool pick_gpus(resource_amount amount, resource_grant& g) const {
    if (amount < resource_unit) {
      std::optional<std::uint32_t> best;
      for (std::uint32_t i = 0; i < gpu_free_.size(); ++i)
        if (gpu_free_[i] >= amount && (!best || gpu_free_[i] < gpu_free_[*best])) best = i;
      if (!best) return false;
      g.gpus.emplace_back(*best, amount);
      return true;
    }
    resource_amount need = amount / resource_unit;
    for (std::uint32_t i = 0; i < gpu_free_.size() && need > 0; ++i)
      if (gpu_free_[i] == resource_unit) {
        g.gpus.emplace_back(i, resource_unit);
        --need;
      }
    return need == 0;
  }

  std::string describe_totals() const {
    std::string s = fmt::format("{{CPU: {}, GPU: {}", from_resource_amount(cpu_total_),
                                from_resource_amount(gpu_total_));
    for (const auto& [name, a] : custom_total_)
      s += fmt::format(", {}: {}", name, from_resource_amount(a));
    return s + "}";
  }

  resource_amount cpu_total_ = 0, cpu_free_ = 0, gpu_total_ = 0;
  std::vector<std::string> gpu_ids_;
  std::vector<resource_amount> gpu_free_;  // per GPU (the last may have less than a unit)
  std::map<std::string, resource_amount> custom_total_, custom_free_;
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/resource_ledger.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

struct placed_bundle {
  std::uint32_t node = 0;
  resource_grant grant;    // what the bundle took of its node's ledger
  resource_ledger ledger;  // what it lends to the calls and actors in it
};

struct placement_group_entry {
  std::uint64_t id = 0;
  bundle_strategy strategy = bundle_strategy::pack;
  std::vector<resource_request> bundles;
  std::vector<placed_bundle> placed;  // one per bundle once reserved; empty while pending
  bool removed = false;
  state_ptr ready;          // true once reserved; failed if removed before
  std::uint32_t users = 0;  // leases, loans and actors holding a bundle's resources

  bool pending() const noexcept { return !removed && placed.empty(); }

  /// The reserved bundle a call or actor takes: among those `accept`s (and only bundle
  /// `named`, when it is not -1), the first that `fits` now, else the first that `could`
  /// ever hold it, else the first; null when none is accepted.
  template <class Accept, class Fits, class Could>
  placed_bundle* choose(std::int32_t named, Accept&& accept, Fits&& fits, Could&& could) {
    placed_bundle *possible = nullptr, *first = nullptr;
    for (std::size_t b = 0; b < placed.size(); ++b) {
      placed_bundle& pb = placed[b];
      if ((named >= 0 && b != static_cast<std::size_t>(named)) || !accept(pb)) continue;
      if (fits(pb)) return &pb;
      if (!possible && could(pb)) possible = &pb;
      if (!first) first = &pb;
    }
    return possible ? possible : first;
  }
};

class placement_group_table {
 public:
  /// A node's ledger and the CPU its task workers hold besides (call_pump's view).
  using node_view = std::function<std::pair<resource_ledger*, resource_amount>(std::uint32_t)>;

  placement_group_entry& add(bundle_strategy s, std::vector<resource_request> bundles,
                             state_ptr ready) {
    placement_group_entry& g = groups_[next_id_];
    g.id = next_id_++;
    g.strategy = s;
    g.bundles = std::move(bundles);
    g.ready = std::move(ready);
    return g;
  }
  placement_group_entry* find(std::uint64_t id) noexcept {
    auto it = groups_.find(id);
    return it == groups_.end() ? nullptr : &it->second;
  }
  const placement_group_entry* find(std::uint64_t id) const noexcept {
    auto it = groups_.find(id);
    return it == groups_.end() ? nullptr : &it->second;
  }
  bool any_pending() const noexcept { return pending_ != 0; }
  void count_pending(int delta) noexcept { pending_ += delta; }

  /// Why `bundles` under `s` could never be reserved on nodes with these ledgers, or nullopt.
  static std::optional<std::string> why_never(const std::vector<resource_request>& bundles,
                                              bundle_strategy s,
                                              const std::vector<resource_ledger>& nodes) {
    if (bundles.empty()) return "it has no bundle";
    for (std::size_t i = 0; i < bundles.size(); ++i) {
      const resource_request& b = bundles[i];
      if (b.cpu == 0 && b.gpu == 0 && b.custom.empty())
        return fmt::format("bundle {} asks for nothing", i);
      bool somewhere = false;
      for (const auto& l : nodes) somewhere |= !l.refuse(b);
      if (!somewhere)
        return fmt::format("no node could ever hold bundle {}: {}", i, *nodes[0].refuse(b));
    }
    if (s == bundle_strategy::strict_spread && bundles.size() > nodes.size())
      return fmt::format(
          "strict_spread puts each of its {} bundles on a node of its own, and "
          "the runtime has {} node{}",
          bundles.size(), nodes.size(), nodes.size() == 1 ? "" : "s");
    if (s == bundle_strategy::strict_pack) {
      resource_request sum{0, 0, {}, {}};
      for (const auto& b : bundles) {
        sum.cpu += b.cpu;
        sum.gpu += b.gpu;
        for (const auto& [name, a] : b.custom) sum.custom[name] += a;
      }
      bool one = false;
      for (const auto& l : nodes) one |= !l.refuse(sum);
      if (!one)
        return fmt::format(
            "strict_pack puts its bundles ({} in all) on one node, and no node "
            "could ever hold them: {}",
            sum.describe(), *nodes[0].refuse(sum));
    }
    return std::nullopt;
  }

  /// Reserves group `g`'s bundles if they all fit now, by its strategy; true if it did.
  static bool try_place(placement_group_entry& g, std::uint32_t nodes, const node_view& view) {
    const std::size_t n = g.bundles.size();
    std::vector<std::uint32_t> where(n, 0);
    std::vector<std::optional<resource_grant>> grants(n);
    auto undo = [&](std::size_t upto) {
      for (std::size_t i = 0; i < upto; ++i)
        if (grants[i]) view(where[i]).first->release(g.bundles[i], *grants[i]);
    };
    auto take = [&](std::size_t i, std::uint32_t node) {
      auto [ledger, busy] = view(node);
      if (!ledger) return false;
      grants[i] = ledger->acquire(g.bundles[i], busy);
      if (!grants[i]) return false;
      where[i] = node;
      return true;
    };
    auto all_on = [&](std::uint32_t node) {
      for (std::size_t i = 0; i < n; ++i)
        if (!take(i, node)) {
          undo(i);
          std::fill(grants.begin(), grants.end(), std::nullopt);
          return false;
        }
      return true;
    };
    bool done = false;
    if (g.strategy == bundle_strategy::pack || g.strategy == bundle_strategy::strict_pack)
      for (std::uint32_t node = 0; node < nodes && !done; ++node) done = all_on(node);
    if (!done && g.strategy != bundle_strategy::strict_pack) {
      // Bundle by bundle: spread ones each on the next node not used yet where they can (strict:
      // only such), packed ones on the node of the bundle before where they can.
      const bool spread =
          g.strategy == bundle_strategy::spread || g.strategy == bundle_strategy::strict_spread;
      std::vector<bool> used(nodes, false);
      done = true;
      for (std::size_t i = 0; i < n && done; ++i) {
        bool ok = false;
        const std::uint32_t start = i == 0 ? 0 : (spread ? where[i - 1] + 1 : where[i - 1]);
        for (int pass = 0; pass < 2 && !ok; ++pass) {
          if (pass == 1 && g.strategy == bundle_strategy::strict_spread) break;
          for (std::uint32_t k = 0; k < nodes && !ok; ++k) {
            const std::uint32_t node = (start + k) % nodes;
            if (pass == 0 && spread && used[node]) continue;
            ok = take(i, node);
          }
        }
        if (ok) used[where[i]] = true;
        done = ok;
        if (!ok) undo(i);
      }
    }
    if (!done) return false;
    for (std::size_t i = 0; i < n; ++i) {
      const resource_ledger& node = *view(where[i]).first;
      g.placed.push_back({where[i], *grants[i],
                          resource_ledger::bundle(g.bundles[i], *grants[i], node.gpu_ids())});
    }
    return true;
  }

  template <class F>
  void for_each_pending(F&& f) {
    for (auto& [id, g] : groups_)
      if (g.pending()) f(g);
  }

  /// Forgets a removed group once nothing holds its bundles' resources.
  void forget_if_done(placement_group_entry& g) {
    if (g.removed && g.users == 0) groups_.erase(g.id);
  }

 private:
  std::map<std::uint64_t, placement_group_entry> groups_;
  std::uint64_t next_id_ = 1;
  int pending_ = 0;
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/placement_groups.hpp>
// #include <coray/detail/runtime/resource_ledger.hpp>: inlined above
// #include <coray/detail/runtime/task_table.hpp>: inlined above
// #include <coray/detail/runtime/transport.hpp>: inlined above
// #include <coray/errors.hpp>: inlined above
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

class call_pump {
 public:
  call_pump(task_table& tasks, actor_table& actors, transport& t, call_sender& sender,
            std::vector<resource_ledger>& resources, placement_group_table& groups,
            std::uint32_t workers, std::uint32_t max_in_flight)
      : tasks_(tasks),
        actors_(actors),
        transport_(t),
        sender_(sender),
        resources_(resources),
        groups_(groups),
        workers_(workers),
        max_in_flight_(max_in_flight),
        nodes_(static_cast<std::uint32_t>(resources.size())),
        remote_in_flight_(nodes_ > 1 ? remote_factor * max_in_flight : max_in_flight),
        leases_(workers),
        lent_(workers, 0),
        node_(workers),
        node_workers_(resources.size(), 0) {
    for (std::uint32_t i = 0; i < workers; ++i) {
      node_[i] =
          std::min<std::uint32_t>(t.node_of(i), static_cast<std::uint32_t>(resources.size()) - 1);
      ++node_workers_[node_[i]];
    }
    refresh();
  }

  // ---- resources ----------------------------------------------------------------------

  /// The number of a task's requirement (0 for the default, {CPU: 1}), the same for equal ones.
  std::uint32_t shape_of(const resource_request& r) { return r.is_default_task() ? 0 : intern(r); }
  /// The number of a requirement (never 0: an actor's {CPU: 1} is one to hold).
  std::uint32_t intern(const resource_request& r) {
    auto it = std::find(shapes_.begin(), shapes_.end(), r);
    if (it == shapes_.end()) it = shapes_.insert(shapes_.end(), r);
    return static_cast<std::uint32_t>(it - shapes_.begin()) + 1;
  }
  const resource_request& shape(std::uint32_t s) const noexcept {
    static const resource_request task_default;
    return s ? shapes_[s - 1] : task_default;
  }
  /// A task call of another requirement than the default was admitted (+1) or ended (-1).
  void count_shaped(int delta) noexcept {
    shaped_calls_ += delta;
    refresh();
  }
  /// Worker `slot` has no call left: its lease goes back. True if it held one.
  bool release_if_idle(std::uint32_t slot) {
    worker_lease& l = leases_[slot];
    if (!l.held || tasks_.in_flight(slot) != 0) return false;
    lease_ledger(slot).release(shape(l.shape), l.grant, false);
    let_go(shape(l.shape).where.group);
    l = worker_lease{};
    --leases_held_;
    refresh();
    return true;
  }
  /// Releases the leases of every idle worker (their calls ended or were taken back).
  bool release_idle_leases() {
    bool any = false;
    if (leases_held_)
      for (std::uint32_t i = 0; i < workers_; ++i) any |= release_if_idle(i);
    return any;
  }
  /// Call `r`, lent a blocked worker (lend), ended or left that worker: its grant goes back.
  void end_loan(task_record& r) {
    if (!r.lent) return;
    r.lent = false;
    auto it = loans_.find(r.id);
    if (it == loans_.end()) return;
    it->second.ledger->release(shape(r.shape), it->second.grant);
    let_go(shape(r.shape).where.group);
    --lent_[it->second.slot];
    loans_.erase(it);
    refresh();
  }
  /// Actor `a` lets go of what it holds (it ended for good).
  void release_actor(actor_entry& a) {
    if (!a.placed || !a.shape) return;
    actor_ledger(a).release(shape(a.shape), a.grant);
    let_go(a.group);
    a.placed = false;
    refresh();
  }
  /// The runtime's resources, all or those free now: node `node`'s, or every node's summed.
  std::map<std::string, double> resources(bool available, int node = -1) {
    if (available) release_idle_leases();
    std::map<std::string, double> out;
    for (std::uint32_t n = 0; n < resources_.size(); ++n) {
      if (node >= 0 && n != static_cast<std::uint32_t>(node)) continue;
      const auto m =
          available ? resources_[n].available(cpu_in_use(&resources_[n])) : resources_[n].totals();
      for (const auto& [name, x] : m) out[name] += x;
    }
    return out;
  }
  /// Whether node `node` could place an actor holding `s` now (0: one holding nothing, which
  /// needs a CPU free), taking nothing.
  bool actor_fits(std::uint32_t node, std::uint32_t s) const {
    return fits_now(resources_[node], s);
  }
  /// Reserves placement group `g`'s bundles if they all fit now on live nodes; true if so.
  bool place_group(placement_group_entry& g) {
    const bool placed = placement_group_table::try_place(
        g, static_cast<std::uint32_t>(resources_.size()),
        [&](std::uint32_t n) -> std::pair<resource_ledger*, resource_amount> {
          if (!transport_.node_alive(n)) return {nullptr, 0};
          return {&resources_[n], cpu_in_use(&resources_[n])};
        });
    if (placed) refresh();
    return placed;
  }
  /// Gives group `g`'s bundles back to their nodes (it was removed).
  void unplace_group(placement_group_entry& g) {
    for (std::size_t i = 0; i < g.placed.size(); ++i)
      resources_[g.placed[i].node].release(g.bundles[i], g.placed[i].grant);
    refresh();
  }

  /// Sends ready task calls, then the calls of actors whose mailbox was full. True on
  /// progress; calls whose dependency failed are appended to `failed`.
  bool dispatch(std::vector<task_record*>& failed) {
    bool progress = false;
    auto& runnable = tasks_.runnable;
    while (!runnable.empty()) {
      const auto [picked, it] = pick();
      if (picked == unplaceable) {  // bound to a node that is gone: it fails
        failed.push_back(*it);
        runnable.erase(it);
        progress = true;
        continue;
      }
      if (picked < 0) break;
      const auto slot = static_cast<std::uint32_t>(picked);
      task_record* r = *it;
      if (!sender_.send(slot, *r)) {
        end_loan(*r);  // lent for nothing: asked again on the next turn
        break;
      }
      if (r->shape && shape(r->shape).where.spread) spread_next_ = node_[slot] + 1;
      tasks_.sent(slot, *r);
      if (it == runnable.begin())
        runnable.pop_front();
      else
        runnable.erase(it);
      progress = true;
    }
    for (auto it = backlog_.begin(); it != backlog_.end();) {
      actor_entry* a = actors_.find(*it);
      it = backlog_.erase(it);
      if (a) progress |= pump(*a, failed);
    }
    return progress;
  }

  /// Sends the actor's queued calls, in order, while each is ready and its mailbox has room.
  /// True on progress; calls whose dependency failed are taken out into `failed`.
  bool pump(actor_entry& a, std::vector<task_record*>& failed) {
    bool progress = false;
    if (!a.placed && !a.dead && !place(a)) {
      backlog_.insert(a.id);  // tried again each turn until what it holds is free
      return false;
    }
    while (!a.queue.empty() && !a.dead) {
      task_record* r = a.queue.front();
      if (r->pending_deps) break;
      r->gpus = a.grant.gpu_mask();
      if (r->failed_dep) {
        a.queue.pop_front();
        failed.push_back(r);
        progress = true;
        continue;
      }
      if (!sender_.send(a.slot, *r)) {
        backlog_.insert(a.id);
        break;
      }
      if (!r->construct) r->dispatch_seq = a.dispatched++;  // its place among the calls it starts
      a.queue.pop_front();
      a.sent.push_back(r->id);
      progress = true;
    }
    if (a.closing && a.queue.empty() && !a.dead && !a.shutdown_sent) {
      a.shutdown_sent = send_shutdown(a.slot);
      if (!a.shutdown_sent) backlog_.insert(a.id);
    }
    return progress;
  }

  /// Whether dispatch takes the run queue's first call for any worker with room (only default
  /// tasks, a CPU for every worker), resources aside.
  bool unconstrained() const noexcept { return unconstrained_; }

  /// Whether an actor waits for room in its mailbox.
  bool has_backlog() const noexcept { return !backlog_.empty(); }

  /// Tells the slot's process to end once its calls are done; false if its inbox is full.
  bool send_shutdown(std::uint32_t slot) {
    return transport_.send(slot, msg_kind::shutdown, 0, [](std::byte*) {});
  }

 private:
  using queue_place = std::deque<task_record*>::iterator;
  /// A worker on another node may carry this many times max_tasks_in_flight_per_worker.
  static constexpr std::uint32_t remote_factor = 16;
  /// pick()'s answer for a call bound to a node that can run nothing any more.
  static constexpr int unplaceable = -2;
  /// node_for's answers for a call in a placement group: on a node of one of its bundles; or
  /// not yet (the group waits to be reserved).
  static constexpr int in_group = -3;
  static constexpr int group_pending = -4;

  /// The next call to send and its worker (-1 if none): the queue's first call to the task
  /// worker with the fewest calls that occupy it, under the per-worker limit; failing that,
  /// a worker with room that is blocked in a call gets that call's first descendant in the
  /// queue (task_table::next_for). A blocked worker whose search found nothing is not
  /// searched again until its mark or the nested calls queued change. Runs on every
  /// dispatch, mostly to find every worker full: the scan stays inline, the search for a
  /// blocked worker's descendants (and the path under resources) does not.
  [[gnu::always_inline]] std::pair<int, queue_place> pick() {
    if (!unconstrained_) [[unlikely]]
      return pick_with_resources();
    int best = -1;
    std::uint32_t best_load = remote_in_flight_;  // max_in_flight_ outside a cluster
    bool any_blocked = false;
    for (std::uint32_t i = 0; i < workers_; ++i) {
      if (!transport_.alive(i)) continue;
      const auto [suspended, mark] = transport_.occupancy_of(i);
      const std::uint32_t load = tasks_.load(i, suspended);
      if (load >= best_load) continue;
      if (load >= max_in_flight_ && node_[i] == 0) [[unlikely]]
        continue;  // in a cluster: this machine's worker is full
      if (mark != 0) {
        any_blocked = true;
        continue;
      }
      best = static_cast<int>(i);
      best_load = load;
      if (load == 0) break;
    }
    // A worker on another node: one as free on a node keeping the call's argument bytes
    // (this machine, which holds every object, had none free).
    if (nodes_ > 1 && best >= 0 && node_[static_cast<std::uint32_t>(best)] != 0) [[unlikely]]
      best = near_arguments(static_cast<std::uint32_t>(best), best_load);
    if (best >= 0 || !any_blocked) [[likely]]
      return {best, tasks_.runnable.begin()};
    return pick_descendant();
  }

  /// `best` (a worker on another node, carrying `best_load` calls), or a worker carrying no
  /// more on the node that keeps copies of most of the first runnable call's argument bytes
  /// (Ray's rule: other things equal, a task goes where its arguments are).
  [[gnu::noinline]] int near_arguments(std::uint32_t best, std::uint32_t best_load) {
    const task_record& r = *tasks_.runnable.front();
    std::uint64_t bytes[64] = {};  // by holder bit: node n is bit n - 1
    bool any = false;
    auto count = [&](const object_block* b) {
      if (!b) return;
      for (std::uint64_t h = transport_.copy_holders(b); h; h &= h - 1) {
        bytes[std::countr_zero(h)] += b->size;
        any = true;
      }
    };
    for (const object_block* b : r.blocks()) count(b);
    for (const auto& d : r.deps)
      if (d && d->settled()) count(d->block);
    if (!any) return static_cast<int>(best);
    const auto top = static_cast<std::uint32_t>(std::max_element(bytes, bytes + 64) - bytes);
    if (const std::uint32_t mine = node_[best] - 1; mine < 64 && bytes[mine] == bytes[top])
      return static_cast<int>(best);
    for (std::uint32_t i = 0; i < workers_; ++i) {
      if (node_[i] != top + 1 || !transport_.alive(i)) continue;
      const auto [suspended, mark] = transport_.occupancy_of(i);
      if (mark == 0 && tasks_.load(i, suspended) <= best_load) return static_cast<int>(i);
    }
    return static_cast<int>(best);
  }

  /// pick() when every worker with room is blocked: the first such worker with a descendant
  /// of its blocked call queued.
  [[gnu::noinline]] std::pair<int, queue_place> pick_descendant() {
    if (missed_.size() < workers_) missed_.resize(workers_);
    for (std::uint32_t i = 0; i < workers_; ++i) {
      const auto [suspended, mark] = transport_.occupancy_of(i);
      if (mark == 0 || !transport_.alive(i) || tasks_.load(i, suspended) >= max_in_flight_)
        continue;
      const search_miss now{mark, tasks_.nested_queued};
      if (missed_[i] == now) continue;
      auto it = tasks_.next_for(i, mark);
      if (it != tasks_.runnable.end()) return {static_cast<int>(i), it};
      missed_[i] = now;
    }
    return {-1, tasks_.runnable.end()};
  }

  /// pick() when resources constrain it: the first call in the queue that finds a worker
  /// leased for its requirement with room, or an idle worker whose lease is granted (the
  /// least loaded of those), or, on a worker blocked in a call, that call's descendant (run
  /// on its lease when it asks for the default or the lease's requirement, else lent the
  /// worker if its own requirement is granted: lend). A call that finds none waits; calls
  /// behind it may go (Ray's rule: a smaller request is not held behind a larger one). The
  /// call is given its worker's GPUs, or its loan's.
  std::pair<int, queue_place> pick_with_resources() {
    release_idle_leases();
    auto& runnable = tasks_.runnable;
    bool room = false;  // no worker with room: no need to look through the queue
    for (std::uint32_t i = 0; i < workers_ && !room; ++i)
      room = transport_.alive(i) && tasks_.load(i, transport_.suspended(i)) < max_in_flight_;
    if (!room) return {-1, runnable.end()};
    std::vector<std::uint32_t> refused;  // requirements that found no worker in this look
    for (auto it = runnable.begin(); it != runnable.end(); ++it) {
      task_record& r = **it;
      // A blocked parent's descendant is looked at even so: its worker may be lent it.
      if (std::find(refused.begin(), refused.end(), r.shape) != refused.end() && !parent_blocked(r))
        continue;
      const placement& where = shape(r.shape).where;
      const int only = node_for(r.shape);
      if (only == unplaceable) {
        r.result->set_error(where.group
                                ? std::make_exception_ptr(ray::runtime_error(fmt::format(
                                      "coray: {} can never run: its placement group {} was removed",
                                      r.label(), where.group)))
                                : std::make_exception_ptr(worker_crashed(fmt::format(
                                      "coray: {} can never run: it asks for node {}, which is lost",
                                      r.label(), where.node))));
        return {unplaceable, it};
      }
      if (only == group_pending) {  // waits until its group's bundles are reserved
        refused.push_back(r.shape);
        continue;
      }
      // Spread: the scan starts at the next node's first worker, so ties go to it.
      const std::uint32_t from = where.spread ? first_worker_at(spread_next_) : 0;
      lacking_.assign(resources_.size(), 0);
      int leased = -1, idle = -1, parent = -1;
      std::uint32_t leased_load = max_in_flight_;
      for (std::uint32_t k = 0; k < workers_; ++k) {
        const std::uint32_t i = (from + k) % workers_;
        if (!transport_.alive(i) || (only >= 0 && node_[i] != static_cast<std::uint32_t>(only)) ||
            (only == in_group && !group_on(node_[i], r.shape)))
          continue;
        const auto [suspended, mark] = transport_.occupancy_of(i);
        const std::uint32_t load = tasks_.load(i, suspended);
        if (load >= max_in_flight_) continue;
        if (mark != 0) {
          if (r.submitter == static_cast<int>(i) && r.id >= mark) {
            if (r.shape == 0 || r.shape == leases_[i].shape) return chosen(i, it);
            parent = static_cast<int>(i);
          }
          continue;
        }
        if (tasks_.in_flight(i) == 0) {
          if (idle < 0 &&
              ((resources_.size() == 1 && !where.group) || node_can_lease(node_[i], r.shape)))
            idle = static_cast<int>(i);
        } else if (leases_[i].shape == r.shape && load < leased_load && pipelines(r.shape)) {
          leased = static_cast<int>(i);
          leased_load = load;
        }
      }
      if (idle >= 0 && (leased < 0 || leased_load > 0) &&
          lease(static_cast<std::uint32_t>(idle), r.shape))
        return chosen(static_cast<std::uint32_t>(idle), it);
      if (leased >= 0) return chosen(static_cast<std::uint32_t>(leased), it);
      if (parent >= 0 && lend(static_cast<std::uint32_t>(parent), r)) return {parent, it};
      refused.push_back(r.shape);
    }
    return {-1, runnable.end()};
  }
  std::pair<int, queue_place> chosen(std::uint32_t slot, queue_place it) {
    (*it)->gpus = leases_[slot].grant.gpu_mask();
    return {static_cast<int>(slot), it};
  }

  /// Whether calls of requirement `s` may be sent to a worker already running one under the
  /// same lease. Only for CPUs: a worker runs the calls queued in it while a call blocks or
  /// awaits (the CPU follows load), which would run two calls on one lease's GPUs or custom
  /// resources at once. Those go one at a time.
  bool pipelines(std::uint32_t s) const noexcept {
    const resource_request& r = shape(s);
    return r.gpu == 0 && r.custom.empty();
  }
  /// The node a call of requirement `s` must run on: -1 for any, `unplaceable` for a node
  /// that is gone (a hard affinity; a soft one runs anywhere then, as it does when the node
  /// could never meet the requirement) or a placement group removed, `in_group` for the nodes
  /// of its group's bundles, `group_pending` while they are not reserved yet.
  int node_for(std::uint32_t s) const {
    const resource_request& r = shape(s);
    if (r.where.group) {
      const placement_group_entry* g = groups_.find(r.where.group);
      if (!g || g->removed) return unplaceable;
      return g->pending() ? group_pending : in_group;
    }
    if (r.where.node < 0) return -1;
    const auto n = static_cast<std::uint32_t>(r.where.node);
    const bool usable = n < resources_.size() && transport_.node_alive(n);
    if (r.where.soft) return usable && !resources_[n].refuse(r) ? static_cast<int>(n) : -1;
    return usable ? static_cast<int>(n) : unplaceable;
  }
  /// Whether node `n`'s ledger could lease requirement `s` to an idle worker now (in a
  /// cluster, where only some nodes may have it); remembered for the call being placed.
  bool node_can_lease(std::uint32_t n, std::uint32_t s) {
    if (lacking_[n]) return false;
    const resource_ledger* l = ledger_at(n, s);
    const bool fits = l && fits_now(*l, s);
    lacking_[n] = !fits;
    return fits;
  }
  /// The ledger requirement `s` leases from on node `n`: the node's, or for a call in a
  /// placement group a bundle of it on that node (the bundle named, or the first that fits
  /// now, else the first); null if the group has no bundle there.
  resource_ledger* ledger_at(std::uint32_t n, std::uint32_t s) {
    const placement& w = shape(s).where;
    if (!w.group) return &resources_[n];
    placement_group_entry* g = groups_.find(w.group);
    placed_bundle* b = g ? g->choose(
                               w.bundle, [&](const placed_bundle& pb) { return pb.node == n; },
                               [&](const placed_bundle& pb) { return fits_now(pb.ledger, s); },
                               [](const placed_bundle&) { return false; })
                         : nullptr;
    return b ? &b->ledger : nullptr;
  }
  /// Whether the placement group of requirement `s` has a bundle it may use on node `n`.
  bool group_on(std::uint32_t n, std::uint32_t s) {
    const placement& w = shape(s).where;
    placement_group_entry* g = groups_.find(w.group);
    const auto no = [](const placed_bundle&) { return false; };
    return g && g->choose(
                    w.bundle, [&](const placed_bundle& pb) { return pb.node == n; }, no, no);
  }
  /// The ledger worker `slot`'s lease came from.
  resource_ledger& lease_ledger(std::uint32_t slot) {
    return leases_[slot].ledger ? *leases_[slot].ledger : resources_[node_[slot]];
  }
  resource_ledger& actor_ledger(const actor_entry& a) {
    return a.ledger ? *a.ledger : resources_[a.node];
  }
  /// A lease, loan or actor of placement group `id` let go of its bundle's resources.
  void let_go(std::uint64_t id) {
    if (!id) return;
    if (placement_group_entry* g = groups_.find(id)) {
      --g->users;
      groups_.forget_if_done(*g);
    }
  }
  void hold(std::uint64_t id) {
    if (placement_group_entry* g = id ? groups_.find(id) : nullptr) ++g->users;
  }
  /// The first task worker on node `n` (wrapping to node 0 past the last).
  std::uint32_t first_worker_at(std::uint32_t n) const noexcept {
    for (std::uint32_t i = 0; i < workers_; ++i)
      if (node_[i] >= n) return i;
    return 0;
  }
  /// Gives idle worker `slot` a lease for requirement `s`, if its node's ledger has it free.
  bool lease(std::uint32_t slot, std::uint32_t s) {
    resource_ledger* l = ledger_at(node_[slot], s);
    if (!l) return false;
    if (s == 0) return fits_now(*l, 0);
    auto g = l->acquire(shape(s), cpu_in_use(l), false);
    if (!g) return false;
    const std::uint64_t group = shape(s).where.group;
    leases_[slot] = worker_lease{s, std::move(*g), true, group ? l : nullptr};
    hold(group);
    ++leases_held_;
    refresh();
    return true;
  }
  /// Whether `r` was made by a task worker's call that is blocked now (r is its descendant).
  bool parent_blocked(const task_record& r) const noexcept {
    if (r.submitter < 0 || static_cast<std::uint32_t>(r.submitter) >= workers_) return false;
    const std::uint64_t mark =
        transport_.occupancy_of(static_cast<std::uint32_t>(r.submitter)).blocked_mark;
    return mark != 0 && r.id >= mark;
  }
  /// Lends blocked worker `slot` to `r`, a descendant of its blocked call that asks for
  /// another requirement than the worker's lease, if the ledger grants r's requirement now
  /// (its CPU taken too: the worker's lease counts none while only lent calls run there).
  /// The call runs above its blocked ancestor with the grant's GPUs, and the grant goes
  /// back when it ends or leaves the worker (end_loan). Without it, a parent blocked on a
  /// child of another requirement, with every worker so blocked, would wait for ever.
  bool lend(std::uint32_t slot, task_record& r) {
    resource_ledger* l = ledger_at(node_[slot], r.shape);
    if (!l) return false;
    auto g = l->acquire(shape(r.shape), cpu_in_use(l));
    if (!g) return false;
    r.gpus = g->gpu_mask();
    r.lent = true;
    hold(shape(r.shape).where.group);
    loans_.insert_or_assign(r.id, loan{slot, std::move(*g), l});
    ++lent_[slot];
    return true;
  }
  /// Places actor `a`: takes what it holds for life, if free now; one given nothing needs a
  /// CPU free to be placed and holds none after (Ray's rule). False if it must wait.
  bool place(actor_entry& a) {
    resource_ledger& l = actor_ledger(a);
    if (!a.shape) return a.placed = fits_now(l, 0);
    auto g = l.acquire(shape(a.shape), cpu_in_use(&l));
    if (!g) return false;
    hold(a.group);
    a.grant = std::move(*g);
    a.placed = true;
    refresh();
    return true;
  }
  /// Whether ledger `l` could give requirement `s` now, besides the CPU its task workers hold
  /// (0, the default: a CPU free).
  bool fits_now(const resource_ledger& l, std::uint32_t s) const {
    const resource_amount busy = cpu_in_use(&l);
    return s == 0 ? l.cpu_free() - busy >= resource_unit : l.fits(shape(s), busy);
  }
  /// CPU the task workers leased from ledger `l` (a node's, or a bundle's) hold: their
  /// lease's, for each that runs something now besides the calls it was lent (whose CPU the
  /// ledger holds).
  resource_amount cpu_in_use(const resource_ledger* l) const {
    resource_amount n = 0;
    for (std::uint32_t i = 0; i < workers_; ++i) {
      const resource_ledger* from = leases_[i].ledger ? leases_[i].ledger : &resources_[node_[i]];
      if (from == l && transport_.alive(i) && tasks_.load(i, transport_.suspended(i)) > lent_[i])
        n += shape(leases_[i].shape).cpu;
    }
    return n;
  }
  /// Whether dispatch may ignore resources: only default tasks, a CPU for every worker.
  void refresh() noexcept {
    unconstrained_ = shaped_calls_ == 0 && leases_held_ == 0;
    for (std::size_t n = 0; n < resources_.size() && unconstrained_; ++n)
      unconstrained_ =
          resources_[n].cpu_free() >= resource_amount{node_workers_[n]} * resource_unit;
  }

  struct loan {
    std::uint32_t slot = 0;             // the worker lent
    resource_grant grant;               // the call's own resources (its CPU taken)
    resource_ledger* ledger = nullptr;  // where from: its node's, or its bundle's
  };
  struct worker_lease {
    std::uint32_t shape = 0;            // the requirement its calls share
    resource_grant grant;               // its GPUs
    bool held = false;                  // the ledger holds it (not the default requirement)
    resource_ledger* ledger = nullptr;  // a bundle's; null: its node's
  };

  task_table& tasks_;
  actor_table& actors_;
  transport& transport_;
  call_sender& sender_;
  std::vector<resource_ledger>& resources_;  // per node
  placement_group_table& groups_;
  std::uint32_t workers_;
  std::uint32_t max_in_flight_;
  std::uint32_t nodes_;  // the nodes (1 outside a cluster)
  /// The calls a worker on another node may carry: enough to cover the round trip's time.
  std::uint32_t remote_in_flight_;
  std::vector<resource_request> shapes_;           // requirement s is shapes_[s - 1]
  std::vector<worker_lease> leases_;               // per task worker
  std::unordered_map<std::uint64_t, loan> loans_;  // by call id: calls lent a blocked worker
  std::vector<std::uint32_t> lent_;                // per task worker: its lent calls in flight
  std::vector<std::uint32_t> node_;                // per task worker: its node
  std::vector<std::uint32_t> node_workers_;        // per node: its task workers
  std::uint32_t spread_next_ = 0;                  // the node a spread call looks at first
  std::vector<std::uint8_t> lacking_;              // per node: it cannot lease the call placed now
  std::uint32_t leases_held_ = 0;
  std::int64_t shaped_calls_ = 0;  // live task calls with a requirement other than the default
  bool unconstrained_ = true;
  std::unordered_set<std::uint64_t> backlog_;  // actors whose mailbox was full
  struct search_miss {
    std::uint64_t mark = 0, nested_queued = 0;
    bool operator==(const search_miss&) const = default;
  };
  std::vector<search_miss> missed_;  // per worker: the last search of the queue that failed
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/call_pump.hpp>
// #include <coray/detail/runtime/call_sender.hpp>: inlined above
// begin <coray/detail/runtime/object_directory.hpp>
/// The driver's directory of the objects that refs inside values may name: id to state. An
/// object enters it when a ref to it is first written into a value (a put object, a call's
/// arguments, a result) and leaves it when its last handle in the driver goes. It holds no
/// handle itself: what keeps an object alive is whatever holds the value (the object's
/// `contained` refs, a call's `refs`) and the processes that read the ref (reply_router's
/// holds, per process). Driver only, loop thread only.

// #include <coray/detail/runtime/object_state.hpp>: inlined above
#include <cstdint>
#include <unordered_map>

CORAY_BEGIN_NAMESPACE
namespace detail {

class object_directory {
 public:
  /// Lists `s` under its id, giving it `fresh` if it has none.
  void publish(object_state& s, std::uint64_t fresh) {
    if (s.published) return;
    if (!s.id) s.id = fresh;
    by_id_[s.id] = &s;
    s.published = true;
  }
  /// The object listed under `id`, or null.
  state_ptr find(std::uint64_t id) const {
    auto it = by_id_.find(id);
    return it == by_id_.end() ? state_ptr() : state_ptr::share(it->second);
  }
  /// `s` lost its last handle in the driver.
  void forget(object_state& s) noexcept {
    if (!s.published) return;
    if (auto it = by_id_.find(s.id); it != by_id_.end() && it->second == &s) by_id_.erase(it);
  }
  std::size_t size() const noexcept { return by_id_.size(); }
  /// Each listed object (ray::state's list_objects).
  template <class F>
  void for_each(F&& f) const {
    for (const auto& entry : by_id_) f(*entry.second);
  }

 private:
  std::unordered_map<std::uint64_t, object_state*> by_id_;
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/object_directory.hpp>
// #include <coray/detail/runtime/object_spiller.hpp>: inlined above
// #include <coray/detail/runtime/process.hpp>: inlined above
// begin <coray/detail/runtime/reply_router.hpp>
/// What the driver owes each process: the nested results it awaits (by id, for the process
/// generation that asked), and the messages to it that found its inbox full, sent in order
/// once there is room. A process's death or replacement drops what was owed to it.
/// Driver only, loop thread only.

// #include <coray/detail/runtime/block_ledger.hpp>: inlined above
// begin <coray/detail/runtime/result_message.hpp>
/// The result format: how a call's outcome travels, from a worker to the driver (task_done)
/// and from the driver to a process awaiting a nested result (object_ready). A
/// `result_header` followed by the inline value or the encoded error; a value in the store
/// travels as its block's offset. This file is its only writer (`result_writer`) and reader
/// (`settle_from_result`).

// #include <coray/detail/runtime/object_state.hpp>: inlined above
// #include <coray/detail/runtime/wire.hpp>: inlined above
#include <cstring>
#include <span>
#include <string>
#include <string_view>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// Settles `s` from a result message's header and body (an error gets `note` appended).
inline void settle_from_result(object_state& s, const result_header& h,
                               std::span<const std::byte> body, segment& seg,
                               std::string_view note = {}) {
  switch (h.status) {
    case result_header::value_inline:
      s.set_inline(body);
      break;
    case result_header::value_block:
      s.set_block(seg.at<object_block>(h.block));
      break;
    default: {
      wire_error e = decode<wire_error>(body);
      if (!note.empty()) e.what += note;
      s.set_error(to_exception(e));
      break;
    }
  }
}

/// Where a worker's result or export lists the ids of the refs and actor handles inside its
/// value (result_header::refs, ::actors): after the header and the inline value, if any.
inline std::span<const std::byte> ids_after_value(std::span<const std::byte> payload,
                                                  const result_header& h) {
  const std::size_t at = sizeof h + (h.status == result_header::value_inline ? h.len : 0);
  return at <= payload.size() ? payload.subspan(at) : std::span<const std::byte>{};
}

/// The what() of an outcome's exception, for messages that quote it.
inline std::string exception_what(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  } catch (...) {
    return "an unknown exception";
  }
}

/// Writes the result message of a settled state (a spilled value must be back in the store
/// first). A value in a block is lent: the receiver gets a reference of its own.
class result_writer {
 public:
  result_writer(std::uint64_t id, const object_state& s) : id_(id), s_(s) {
    if (s.st == object_state::status::failed) {
      error_ = describe_exception(s.error(), "");
      body_ = encoded_size(error_);
    } else if (!s.block) {
      body_ = s.bytes.size();
    }
  }
  std::size_t size() const noexcept { return sizeof(result_header) + body_; }
  /// True when the message names a block the receiver must be given a reference to.
  bool lends_block() const noexcept { return s_.st != object_state::status::failed && s_.block; }

  void write(std::byte* out, segment& seg) const {
    result_header h{id_, result_header::value_inline, static_cast<std::uint32_t>(body_), 0, 0, 0};
    if (s_.st == object_state::status::failed) {
      h.status = result_header::error;
      encode_to(std::span<std::byte>(out + sizeof h, body_), error_);
    } else if (s_.block) {
      h.status = result_header::value_block;
      h.block = seg.offset_of(s_.block);
    } else if (body_) {
      std::memcpy(out + sizeof h, s_.bytes.data(), body_);
    }
    std::memcpy(out, &h, sizeof h);
  }

 private:
  std::uint64_t id_;
  const object_state& s_;
  wire_error error_;
  std::size_t body_ = 0;
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/result_message.hpp>
// #include <coray/detail/runtime/transport.hpp>: inlined above
#include <cstdint>
#include <deque>
#include <functional>
#include <unordered_map>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

class reply_router {
 public:
  reply_router(segment& seg, transport& t, block_ledger& ledger, std::uint32_t slots)
      : seg_(seg), transport_(t), ledger_(ledger), slots_(slots) {}

  /// A new process takes `slot`: nothing is owed to it yet.
  void new_process(std::uint32_t slot) {
    ++slots_[slot].generation;
    clear(slot);
  }
  /// The slot's process died: what was owed to it is dropped.
  void clear(std::uint32_t slot) {
    slots_[slot].outgoing.clear();
    slots_[slot].held.clear();
  }
  std::uint32_t generation(std::uint32_t slot) const noexcept { return slots_[slot].generation; }

  /// The process in `slot` awaits the result `s` of its nested call `id`.
  void hold(std::uint32_t slot, std::uint64_t id, state_ptr s) {
    slots_[slot].held.emplace(id, std::move(s));
  }
  /// It dropped its last handle to that result.
  void drop(std::uint32_t slot, std::uint64_t id) { slots_[slot].held.erase(id); }
  /// A result it awaits, by id; null if it awaits none by that id.
  state_ptr held(std::uint32_t slot, std::uint64_t id) const {
    auto& h = slots_[slot].held;
    auto it = h.find(id);
    return it == h.end() ? state_ptr() : it->second;
  }

  /// Sends the settled result `s` of nested call `id` to the process of `generation` in
  /// `slot` that made the call, if it is still there and still wants it.
  void forward(std::uint32_t slot, std::uint32_t generation, std::uint64_t id, state_ptr s) {
    slot_record& w = slots_[slot];
    if (w.generation != generation || !w.held.count(id)) return;
    w.outgoing.push_back([this, slot, id, s = std::move(s)] { return send_result(slot, id, *s); });
    flush(slot);
  }

  /// Sends `n` bytes of `data` as a message of kind `k`, after anything queued before it.
  void post(std::uint32_t slot, msg_kind k, const void* data, std::size_t n) {
    std::vector<std::byte> bytes(static_cast<const std::byte*>(data),
                                 static_cast<const std::byte*>(data) + n);
    slots_[slot].outgoing.push_back([this, slot, k, bytes = std::move(bytes)] {
      return transport_.send(slot, k, bytes.size(), [&](std::byte* out) {
        if (!bytes.empty()) std::memcpy(out, bytes.data(), bytes.size());
      });
    });
    flush(slot);
  }

  /// Whether messages wait for room.
  bool has_waiting() const noexcept { return !waiting_.empty(); }
  /// Sends what waited for room; true on progress.
  bool flush() {
    bool progress = false;
    for (std::size_t i = 0; i < waiting_.size();) {
      const std::uint32_t slot = waiting_[i];
      progress |= send_queued(slot);
      if (slots_[slot].outgoing.empty()) {
        slots_[slot].listed = false;
        waiting_[i] = waiting_.back();
        waiting_.pop_back();
      } else {
        ++i;
      }
    }
    return progress;
  }

 private:
  struct slot_record {
    std::uint32_t generation = 0;
    std::unordered_map<std::uint64_t, state_ptr> held;  // nested results it awaits
    std::deque<std::function<bool()>> outgoing;         // messages waiting for room
    bool listed = false;                                // in waiting_
  };

  void flush(std::uint32_t slot) {
    send_queued(slot);
    slot_record& w = slots_[slot];
    if (!w.outgoing.empty() && !w.listed) {
      w.listed = true;
      waiting_.push_back(slot);
    }
  }

  bool send_queued(std::uint32_t slot) {
    auto& outgoing = slots_[slot].outgoing;
    bool progress = false;
    while (!outgoing.empty() && outgoing.front()()) {
      outgoing.pop_front();
      progress = true;
    }
    return progress;
  }

  bool send_result(std::uint32_t slot, std::uint64_t id, object_state& s) {
    try {
      if (s.spilled()) (void)s.value_bytes();
    } catch (const object_store_full&) {
      return false;  // no room yet: sent on a later turn
    }
    const result_writer w(id, s);
    if (!transport_.send(slot, msg_kind::object_ready, w.size(),
                         [&](std::byte* out) { w.write(out, seg_); }))
      return false;
    if (w.lends_block()) {
      seg_.add_ref(s.block);  // the receiving process's handle
      ledger_.grant(slot, seg_.offset_of(s.block));
    }
    return true;
  }

  segment& seg_;
  transport& transport_;
  block_ledger& ledger_;
  std::vector<slot_record> slots_;
  std::vector<std::uint32_t> waiting_;  // slots with messages waiting for room
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/reply_router.hpp>
// #include <coray/detail/runtime/resource_ledger.hpp>: inlined above
// #include <coray/detail/runtime/state_records.hpp>: inlined above
// #include <coray/detail/runtime/task_table.hpp>: inlined above
// #include <coray/detail/runtime/tick_clock.hpp>: inlined above
// #include <coray/detail/runtime/transport.hpp>: inlined above
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

struct orchestrator_config {
  std::uint32_t num_workers = 1;  // slots [0, num_workers) are task workers
  std::uint32_t max_actors = 0;   // then this many actor slots
  std::uint32_t max_tasks_in_flight_per_worker = 4;
  std::uint32_t epoch = 0;  // of the states it makes
  std::string spill_directory = {};
  // The runtime's resources (resource_ledger). num_cpus below 0: one per task worker.
  resource_amount num_cpus = -1;
  resource_amount num_gpus = 0;
  std::vector<std::string> gpu_ids = {};  // one per started unit of num_gpus
  std::map<std::string, resource_amount> custom_resources = {};
  /// In a cluster, the other nodes' (node 1 first), whose processes the transport places
  /// (transport::node_of); each node has a ledger of its own.
  std::vector<node_resources> other_nodes = {};
  std::size_t task_history = 10000;  // finished calls the state API keeps, oldest evicted
  bool record_timeline = false;      // keep calls' times too (as many, or 10,000)
};

class call_lifecycle {
 public:
  call_lifecycle(orchestrator_config cfg, segment& seg, transport& t)
      : cfg_(std::move(cfg)),
        seg_(seg),
        transport_(t),
        tasks_(cfg_.num_workers),
        actors_(cfg_.num_workers, cfg_.max_actors),
        spiller_(seg, cfg_.spill_directory),
        ledger_(seg, cfg_.num_workers + cfg_.max_actors),
        router_(seg, t, ledger_, cfg_.num_workers + cfg_.max_actors),
        sender_(seg, t, ledger_, spiller_, stamp_),
        resources_(ledgers(cfg_)),
        pump_(tasks_, actors_, t, sender_, resources_, groups_, cfg_.num_workers,
              cfg_.max_tasks_in_flight_per_worker),
        history_(cfg_.record_timeline ? 0 : cfg_.task_history),
        timeline_(!cfg_.record_timeline ? 0
                  : cfg_.task_history   ? cfg_.task_history
                                        : 10000) {}
  call_lifecycle(const call_lifecycle&) = delete;
  call_lifecycle& operator=(const call_lifecycle&) = delete;

  const orchestrator_config& config() const noexcept { return cfg_; }

  /// A handle to actor `id` was made (+1) or dropped (-1) somewhere. An id tagged with
  /// pinned_block_tag is a shared block a call pins (see collect_pinned_block).
  void actor_ref(std::uint64_t id, int delta) noexcept {
    if (id & pinned_block_tag) {
      object_block* b = seg_.at<object_block>(id & ~pinned_block_tag);
      if (delta > 0)
        seg_.add_ref(b);
      else
        seg_.release(b);
      return;
    }
    actor_entry* a = actors_.find(id);
    if (!a) return;
    switch (actors_.adjust_handles(*a, delta)) {
      case actor_table::handle_outcome::forget:
        forget_actor(id);
        break;
      case actor_table::handle_outcome::close:
        pump_actor(*a);
        break;
      case actor_table::handle_outcome::none:
        break;
    }
  }

  // ---- blocks ---------------------------------------------------------------------------

  /// A new block for the driver (spilling to make room if enabled); throws object_store_full.
  object_block* allocate(std::size_t size) { return spiller_.allocate(size); }

 protected:
  ~call_lifecycle() = default;

  state_ptr new_state() const {
    auto s = state_ptr::adopt(new object_state);
    s->epoch = cfg_.epoch;
    return s;
  }

  void start_process(std::uint32_t slot) {
    router_.new_process(slot);
    transport_.start(slot);
  }

  /// Enters a call in the table, as one whose dependencies call back here (and, recording
  /// a timeline, as submitted now).
  task_record* insert(std::unique_ptr<task_record> rec) {
    task_record* r = tasks_.insert(std::move(rec));
    r->owner = this;
    if (timeline_.capacity()) [[unlikely]]
      stamp_.admit(r->submitted_tick);
    return r;
  }

  // ---- admission and dependencies -----------------------------------------------------

  void admit(std::unique_ptr<task_record> rec) {
    task_record* r = insert(std::move(rec));
    for (std::uint64_t a : held_actors(r->held)) actor_ref(a, +1);
    if (r->returns) [[unlikely]]
      settle_returns_with(*r);
    task_table::watch_dependencies(*r, &call_lifecycle::on_dependency);
    if (r->extras && r->extras->resources && !r->actor && !admit_requirement(*r)) return;
    if (r->actor) {
      // Actor calls keep their order: they wait in the actor's queue, dependencies or not.
      actor_entry* a = actors_.find(r->actor);
      if (!a || a->dead || a->killed) {
        fail(*r, std::make_exception_ptr(actor_died(!a ? "coray: no such actor" : a->cause)));
        return;
      }
      if (!r->construct) r->max_retries = a->max_task_retries;
      a->queue.push_back(r);
      pump_actor(*a);
    } else if (r->pending_deps == 0) {
      if (r->failed_dep)
        fail(*r, nullptr);  // settled already: its error goes to a nested call's maker
      else
        make_runnable(*r);
    }
  }

  static void on_dependency(void* ctx, object_state& dep) {
    auto* r = static_cast<task_record*>(ctx);
    if (dep.st == object_state::status::failed && !r->failed_dep) {
      r->failed_dep = true;
      r->result->set_error(dep.error());
    }
    if (--r->pending_deps != 0) return;
    auto& o = *static_cast<call_lifecycle*>(r->owner);
    if (r->actor) {
      if (actor_entry* a = o.actors_.find(r->actor)) o.pump_actor(*a);
    } else if (r->failed_dep) {
      o.fail(*r, nullptr);  // settled already: its error goes to a nested call's maker
    } else {
      o.make_runnable(*r);
    }
  }

  /// Why no node could ever meet `r` (a hard affinity: the node named), or nullopt if one can.
  std::optional<std::string> why_never(const resource_request& r) const {
    const auto n = static_cast<std::uint32_t>(resources_.size());
    if (r.where.group) return why_never_in_group(r);
    if (r.where.node >= 0) {
      const auto node = static_cast<std::uint32_t>(r.where.node);
      if (node >= n) {
        if (!r.where.soft)
          return fmt::format("it asks for node {}, and the runtime has {} node{} (0 to {})", node,
                             n, n == 1 ? "" : "s", n - 1);
      } else if (auto why = resources_[node].refuse(r); !why || !r.where.soft) {
        return why;
      }
    }
    std::optional<std::string> first;
    for (const auto& l : resources_) {
      auto why = l.refuse(r);
      if (!why) return std::nullopt;
      if (!first) first = std::move(why);
    }
    if (n > 1)
      *first += fmt::format(" (node 0's; none of the other {} nodes has it either)", n - 1);
    return first;
  }

  /// why_never for a call or actor in a placement group: the group must be there, and the
  /// bundle named (or one of them) hold at least what it asks.
  std::optional<std::string> why_never_in_group(const resource_request& r) const {
    const placement_group_entry* g = groups_.find(r.where.group);
    if (!g || g->removed)
      return fmt::format("it asks for placement group {}, which was removed", r.where.group);
    if (r.where.bundle >= static_cast<std::int32_t>(g->bundles.size()))
      return fmt::format("it asks for bundle {} of placement group {}, which has {}",
                         r.where.bundle, g->id, g->bundles.size());
    for (std::size_t b = 0; b < g->bundles.size(); ++b) {
      if (r.where.bundle >= 0 && b != static_cast<std::size_t>(r.where.bundle)) continue;
      const resource_request& held = g->bundles[b];
      std::vector<std::string> ids(
          static_cast<std::size_t>((held.gpu + resource_unit - 1) / resource_unit));
      if (!resource_ledger(held.cpu, held.gpu, ids, held.custom).refuse(r)) return std::nullopt;
    }
    return fmt::format(
        "it asks for more than {} of placement group {} holds ({})",
        r.where.bundle < 0 ? std::string("any bundle") : fmt::format("bundle {}", r.where.bundle),
        g->id,
        r.where.bundle < 0 ? g->bundles[0].describe()
                           : g->bundles[static_cast<std::size_t>(r.where.bundle)].describe());
  }

  /// Gives a task call its requirement's shape; fails it if the runtime could never meet it.
  bool admit_requirement(task_record& r) {
    const auto requirement = std::move(r.extras->resources);
    if (auto why = why_never(*requirement)) {
      auto e = std::make_exception_ptr(
          infeasible_resources(fmt::format("coray: {} can never run: {}", r.label(), *why)));
      if (r.pending_deps) {  // settled now, dropped once its dependencies settle
        if (!r.failed_dep) r.result->set_error(e);
        r.failed_dep = true;
      } else {
        fail(r, e);
      }
      return false;
    }
    r.shape = pump_.shape_of(*requirement);
    if (r.shape) pump_.count_shaped(+1);
    return true;
  }

  /// Queues a task whose arguments are ready; fails it if no task worker is left.
  void make_runnable(task_record& r) {
    if (!workers_lost_.empty())
      fail(r, std::make_exception_ptr(worker_crashed(workers_lost_)));
    else
      tasks_.make_runnable(&r);
  }

  /// Fails a call that has not been sent and forgets it.
  void fail(task_record& r, std::exception_ptr e) {
    if (!r.result->settled()) r.result->set_error(std::move(e));
    if (r.submitter >= 0) forward(r);
    finish(r.id);
  }

  /// Forgets a call, letting go of what it held.
  void finish(std::uint64_t id) {
    auto r = tasks_.remove(id);
    if (!r) return;
    const int pid = r->worker >= 0 ? transport_.pid(r->worker) : 0;
    const bool failed =
        r->result && r->result->st.load(std::memory_order_relaxed) == object_state::status::failed;
    if (r->submitted_tick) [[unlikely]]  // recording a timeline (insert)
      record_timeline(*r, pid, failed);  // which keeps the history too
    else
      history_.record(
          {r->id, r->name, pid, r->actor, static_cast<std::uint16_t>(r->attempt), failed});
    if (r->shape) {
      pump_.end_loan(*r);
      pump_.count_shaped(-1);
    }
    for (auto* b : r->blocks()) seg_.release(b);
    if (r->message()) seg_.release(r->message());
    if (r->pinned)
      for (auto& d : r->deps)
        if (d->block && d->pins) --d->pins;
    held_contents held = std::move(r->held);
    r.reset();
    for (std::uint64_t a : held_actors(held)) actor_ref(a, -1);
  }

  /// A call of a function returning ray::returns: its own result is a ref to each result,
  /// stored by the process that ran it. Once it settles, each of the caller's results takes
  /// its value (sharing its block), or the call's error.
  void settle_returns_with(task_record& r) {
    struct returns_waiter {
      call_lifecycle* self;
      std::vector<state_ptr> outs;
      static void settled(void* ctx, object_state& all) {
        std::unique_ptr<returns_waiter> w(static_cast<returns_waiter*>(ctx));
        w->self->settle_returns(all, w->outs);
      }
    };
    r.result->waiters.push_back(
        {&returns_waiter::settled, new returns_waiter{this, std::move(*r.returns)}});
    r.returns.reset();
  }
  void settle_returns(object_state& all, std::vector<state_ptr>& outs) {
    auto fail_all = [&](const std::exception_ptr& e) {
      for (auto& o : outs)
        if (!o->settled()) o->set_error(e);
    };
    if (all.st.load(std::memory_order_relaxed) == object_state::status::failed)
      return fail_all(all.error());
    const std::span<const state_ptr> values = held_refs(all.contained());
    if (values.size() != outs.size())
      return fail_all(std::make_exception_ptr(
          internal_error("coray: a call's reply did not hold a ref per ray::returns result")));
    for (std::size_t i = 0; i < outs.size(); ++i) {
      object_state& out = *outs[i];
      object_state& in = *values[i];
      if (out.settled()) continue;
      if (in.st.load(std::memory_order_relaxed) != object_state::status::ready) {
        out.set_error(in.settled() ? in.error()
                                   : std::make_exception_ptr(internal_error(
                                         "coray: a ray::returns result arrived unsettled")));
        continue;
      }
      try {
        if (const object_contents* c = in.contained()) {  // held by this object too
          out.set_contained(std::make_unique<object_contents>(*c));
          for (std::uint64_t a : c->actors) actor_ref(a, +1);
        }
        const auto bytes = in.value_bytes();  // a spilled value is brought back
        if (in.block) {
          seg_.add_ref(in.block);
          out.set_block(in.block);
          spiller_.adopted(out);
        } else {
          out.set_inline(bytes);
        }
      } catch (...) {
        out.set_error(std::current_exception());
      }
    }
  }

  /// The process an actor's calls run in, as the records show it: its current one, or its
  /// last once it is dead.
  int pid_of(const actor_entry& a) const { return a.dead ? a.pid : transport_.pid(a.slot); }

  /// `pid` and `failed` as the task history took them.
  void record_timeline(const task_record& r, int pid, bool failed) noexcept {
    if (r.actor)
      if (const actor_entry* a = actors_.find(r.actor)) pid = pid_of(*a);
    std::uint64_t bytes = r.args.size();
    for (const object_block* b : r.blocks()) bytes += b->size;
    // Ticks until timeline() converts them. An admission waiting for its stamp gets it now,
    // before the call leaves the table; one spread between two readings may be later than
    // the send made while admitting it (that took the earlier reading): it takes the send's.
    stamp_.settle();
    const std::int64_t ended = std::max(stamp_.now(), r.submitted_tick);
    const std::int64_t sent = r.sent_tick ? std::min(r.sent_tick, ended) : 0;
    const std::int64_t submitted = sent ? std::min(r.submitted_tick, sent) : r.submitted_tick;
    timeline_.record({r.id, r.name, pid, r.actor, static_cast<std::uint16_t>(r.attempt), failed,
                      submitted, sent, ended, bytes});
  }

  // ---- dispatch -----------------------------------------------------------------------

  bool dispatch() {
    std::vector<task_record*> failed;
    const bool progress = pump_.dispatch(failed);
    for (task_record* r : failed) fail(*r, r->result->error());
    return progress;
  }
  bool pump_actor(actor_entry& a) {
    std::vector<task_record*> failed;
    const bool progress = pump_.pump(a, failed);
    for (task_record* r : failed) fail(*r, r->result->error());
    return progress;
  }

  bool answer_block_requests() {
    return ledger_.answer([this](std::size_t size) { return allocate(size); },
                          [this](std::uint32_t slot, const std::uint64_t(&message)[5]) {
                            router_.post(slot, msg_kind::block_granted, message, sizeof message);
                          });
  }

  /// Sends a nested call's result to the process that made the call, if it still wants it.
  void forward(task_record& r) {
    router_.forward(static_cast<std::uint32_t>(r.submitter), r.submitter_generation, r.id,
                    r.result);
  }

  void forget_actor(std::uint64_t id) {
    for (auto* b : actors_.forget(id)) seg_.release(b);
  }

  // ---- the state API's records (ray::state): copies, on the loop thread -----------------

 public:
  /// Live calls, then the finished ones kept in the history, oldest first.
  std::vector<state::task_info> list_tasks() const {
    std::vector<state::task_info> out;
    tasks_.for_each([&](const task_record& r) {
      state::task_info t{
          r.id,   std::string(r.name), state::task_state::queued, r.actor != 0, 0, r.attempt,
          r.actor};
      const actor_entry* a = r.actor ? actors_.find(r.actor) : nullptr;
      if (r.pending_deps > 0) {
        t.state = state::task_state::waiting_for_dependencies;
      } else if (r.worker >= 0) {
        t.state = state::task_state::running;
        t.pid = transport_.pid(static_cast<std::uint32_t>(r.worker));
      } else if (a && std::find(a->queue.begin(), a->queue.end(), &r) == a->queue.end()) {
        t.state = state::task_state::running;  // sent to its actor
        t.pid = pid_of(*a);
      }
      out.push_back(std::move(t));
    });
    auto ended = [&](const auto& e) {
      int pid = e.pid;
      if (e.actor)
        if (const actor_entry* a = actors_.find(e.actor)) pid = pid_of(*a);
      out.push_back({e.id, std::string(e.name),
                     e.failed ? state::task_state::failed : state::task_state::finished,
                     e.actor != 0, pid, e.attempt, e.actor});
    };
    if (!cfg_.record_timeline)
      history_.for_each(ended);
    else if (cfg_.task_history)  // the timeline keeps as many calls, and all the history says
      timeline_.for_each(ended);
    return out;
  }
  std::vector<timeline_entry> timeline() const {
    std::vector<timeline_entry> out;
    out.reserve(timeline_.size());
    const tick_clock::to_ns ns = stamp_.clock().converter();
    timeline_.for_each([&](timeline_entry e) {
      e.submitted_ns = ns(e.submitted_ns);
      e.sent_ns = e.sent_ns ? ns(e.sent_ns) : 0;
      e.ended_ns = ns(e.ended_ns);
      out.push_back(e);
    });
    return out;
  }
  bool records_timeline() const noexcept { return timeline_.capacity() != 0; }
  /// Recording a timeline: a loop turn's events (replies, sends) take one stamp, read by
  /// the first of them after the turn begins (here); a call's admission reads it anew, or
  /// once per eight in a fast run of admissions (turn_stamp::admit).
  void stamp_turn() noexcept { stamp_.next_turn(); }
  /// The actors the driver still tracks (a dead one until its last handle goes).
  std::vector<state::actor_info> list_actors() const {
    std::vector<state::actor_info> out;
    actors_.for_each([&](const actor_entry& a) {
      state::actor_info i{a.id, a.type_name, a.name,  state::actor_state::alive,
                          0,    a.restarts,  a.cause, static_cast<int>(a.node)};
      if (a.dead) {
        i.state = state::actor_state::dead;
        i.pid = a.pid;
      } else {
        i.pid = transport_.pid(a.slot);
        if (!a.constructed || !a.constructed->settled())
          i.state = a.restarts > 0 ? state::actor_state::restarting
                                   : state::actor_state::pending_creation;
      }
      out.push_back(std::move(i));
    });
    std::sort(out.begin(), out.end(), [](const auto& x, const auto& y) { return x.id < y.id; });
    return out;
  }
  /// The objects the driver holds with a value in the store or the spill file, and those
  /// refs inside values named (ray::state::list_objects), by id then size.
  std::vector<state::object_info> list_objects(const object_directory& named) const {
    std::vector<state::object_info> out;
    std::unordered_set<const object_state*> seen;
    auto add = [&](const object_state& s) {
      if (!seen.insert(&s).second) return;
      state::object_info i;
      i.id = s.id;
      i.handles = s.handles.load(std::memory_order_relaxed);
      i.pins = s.pins;
      if (const object_contents* c = s.contained())
        i.contained = static_cast<std::uint32_t>(c->refs.size() + c->actors.size());
      const auto st = s.st.load(std::memory_order_acquire);
      if (st == object_state::status::pending) {
        i.location = state::object_location::pending;
      } else if (st == object_state::status::failed) {
        i.location = state::object_location::failed;
      } else if (s.block) {
        i.location = state::object_location::store;
        i.size = static_cast<std::size_t>(s.block->size);
        i.store_refs = s.block->refs.load(std::memory_order_relaxed);
      } else if (s.spilled()) {
        i.location = state::object_location::spilled;
        i.size = static_cast<std::size_t>(s.spill_size());
      } else {
        i.location = state::object_location::inline_value;
        i.size = s.bytes.size();
      }
      out.push_back(i);
    };
    spiller_.for_each_held(add);
    named.for_each(add);
    std::sort(out.begin(), out.end(), [](const auto& x, const auto& y) {
      return x.id != y.id ? x.id < y.id : x.size > y.size;
    });
    return out;
  }
  /// The task workers, in slot order, then the actors' live processes.
  std::vector<state::worker_info> list_workers() const {
    std::vector<state::worker_info> out;
    std::vector<std::uint32_t> held(cfg_.num_workers, 0);  // GPUs of the calls each runs
    tasks_.for_each([&](const task_record& r) {
      if (!r.actor && r.worker >= 0 && static_cast<std::uint32_t>(r.worker) < held.size())
        held[static_cast<std::size_t>(r.worker)] |= r.gpus;
    });
    for (std::uint32_t s = 0; s < cfg_.num_workers; ++s) {
      out.push_back({transport_.pid(s), state::worker_kind::task_worker, transport_.alive(s),
                     tasks_.in_flight(s), 0, gpu_names(held[s], transport_.node_of(s)),
                     static_cast<int>(transport_.node_of(s))});
      transport_.usage_of(s, out.back().cpu_seconds, out.back().rss_bytes);
    }
    for (const auto& a : list_actors())
      if (a.state != state::actor_state::dead && a.pid > 0) {
        const actor_entry* e = actors_.find(a.id);
        out.push_back({a.pid, state::worker_kind::actor, true, 0, a.id,
                       gpu_names(e ? e->grant.gpu_mask() : 0, e ? e->node : 0), a.node});
        if (e) transport_.usage_of(e->slot, out.back().cpu_seconds, out.back().rss_bytes);
      }
    return out;
  }
  /// The names of the GPUs in `mask` (indices into node `node`'s GPU ids).
  std::vector<std::string> gpu_names(std::uint32_t mask, std::uint32_t node = 0) const {
    std::vector<std::string> out;
    const auto& ids = resources_[node < resources_.size() ? node : 0].gpu_ids();
    for (std::size_t i = 0; i < ids.size() && i < 32; ++i)
      if (mask & (std::uint32_t{1} << i)) out.push_back(ids[i]);
    return out;
  }

 protected:
  /// One ledger per node: this machine's, then the other nodes' (orchestrator_config).
  static std::vector<resource_ledger> ledgers(const orchestrator_config& c) {
    std::vector<resource_ledger> out;
    out.emplace_back(c.num_cpus < 0 ? resource_amount{c.num_workers} * resource_unit : c.num_cpus,
                     c.num_gpus, c.gpu_ids, c.custom_resources);
    for (const auto& n : c.other_nodes)
      out.emplace_back(n.num_cpus, n.num_gpus, n.gpu_ids, n.custom_resources);
    return out;
  }

  orchestrator_config cfg_;
  segment& seg_;
  transport& transport_;
  task_table tasks_;
  actor_table actors_;
  object_spiller spiller_;
  block_ledger ledger_;
  reply_router router_;
  call_sender sender_;
  std::vector<resource_ledger> resources_;  // per node
  placement_group_table groups_;
  call_pump pump_;
  std::string workers_lost_;  // why no task worker can run calls any more; empty while one can
  task_history history_;
  call_timeline timeline_;
  turn_stamp stamp_;  // recording a timeline: the loop turn's time (stamp_turn, admit)
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/call_lifecycle.hpp>
// begin <coray/detail/runtime/memory_return.hpp>
/// Giving memory back to the operating system once the driver has been quiet with it for a
/// while, as jemalloc's decay does: pages given back at once would be faulted in again by a
/// program that keeps making big objects or tides of calls, so nothing goes back while that
/// goes on. Checked once a second on the driver's loop (a timer; it does not run while the
/// program is busy outside the runtime, and the check waits for the next turn then).
///
/// - The object store: when no object of a MB or more was made during the last second but
///   some were since the last return, every free range of 16 MB or more is punched out of
///   the segment (segment::return_free_pages).
/// - The driver's heap: when the driver held no call at the last two checks and its call
///   index had grown for a tide of calls, or it kept more freed call objects than its idle
///   bound (recycled.hpp; a loop that goes to sleep gives those back too), the index is
///   shrunk (task_table::shrink), those objects are freed and malloc's free memory is
///   trimmed (malloc_trim).

#include <malloc.h>

#include <chrono>
// #include <coray/detail/runtime/recycled.hpp>: inlined above
// #include <coray/detail/runtime/task_table.hpp>: inlined above
// #include <coray/detail/shm/segment.hpp>: inlined above
#include <cstddef>
#include <cstdint>

CORAY_BEGIN_NAMESPACE
namespace detail {

class memory_return {
 public:
  static constexpr auto period = std::chrono::seconds(1);
  static constexpr std::size_t min_chunk = std::size_t{16} << 20;

  /// Once a period, on the driver's loop.
  void check(segment& seg, task_table& tasks) {
    const std::uint64_t made = seg.large_allocations();
    if (made != made_at_return_ && made == made_at_check_) {
      seg.return_free_pages(min_chunk);
      made_at_return_ = made;
    }
    made_at_check_ = made;

    const bool idle = tasks.size() == 0;
    if (idle && was_idle_) {
      const bool kept_many = trim_recycled() != 0;
      if (tasks.shrink() || kept_many) malloc_trim(0);
    }
    was_idle_ = idle;
  }

 private:
  std::uint64_t made_at_return_ = 0;  // large allocations when the store last gave back
  std::uint64_t made_at_check_ = 0;   // ... at the last check
  bool was_idle_ = false;             // no call was held at the last check
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/memory_return.hpp>
// #include <coray/detail/runtime/object_directory.hpp>: inlined above
// #include <coray/detail/runtime/process.hpp>: inlined above
// #include <coray/detail/runtime/registry.hpp>: inlined above
// #include <coray/detail/runtime/reply_router.hpp>: inlined above
// #include <coray/detail/runtime/system.hpp>: inlined above
// #include <coray/detail/runtime/task_table.hpp>: inlined above
// #include <coray/detail/runtime/transport.hpp>: inlined above
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

class orchestrator final : public call_lifecycle, public transport_events {
 public:
  orchestrator(orchestrator_config cfg, segment& seg, transport& t)
      : call_lifecycle(std::move(cfg), seg, t),
        slot_actor_(cfg_.num_workers + cfg_.max_actors),
        start_failures_(cfg_.num_workers + cfg_.max_actors) {}

  orchestrator(const orchestrator&) = delete;
  orchestrator& operator=(const orchestrator&) = delete;

  /// Starts a process in every task worker slot.
  void start_workers() {
    for (std::uint32_t i = 0; i < cfg_.num_workers; ++i) start_process(i);
  }

  /// Forgets every call and actor (teardown, after the processes are gone).
  void clear() {
    actors_.clear_queues();
    tasks_.clear();
    spiller_.clear();
  }

  object_spiller& spiller() noexcept { return spiller_; }
  const object_spiller& spiller() const noexcept { return spiller_; }
  const task_table& tasks() const noexcept { return tasks_; }
  const actor_table& actors() const noexcept { return actors_; }
  /// The runtime's resources by Ray's names: all (`available` false), or those free now.
  std::map<std::string, double> resources(bool available, int node = -1) {
    return pump_.resources(available, node);
  }
  /// Once a memory_return::period: gives memory back when it has been idle (memory_return).
  void return_memory() { memory_.check(seg_, tasks_); }

  // ---- calls ---------------------------------------------------------------------------

  /// Admits a call; returns its result's state.
  state_ptr submit(task_spec&& spec) {
    state_ptr result = new_state();
    submit_into(std::move(spec), result);
    return result;
  }
  /// Admits a call whose result is `result` (a pending state made by the caller).
  void submit_into(task_spec&& spec, state_ptr result) {
    std::shared_ptr<stream_state> stream = std::move(spec.stream);
    if (stream) [[unlikely]]
      end_stream_with(stream, *result);  // whatever settles the call ends its stream
    if (!transport_.can_start())
      throw worker_crashed("coray: the runtime's supervisor and workers are gone");
    const std::uint64_t id = next_task_id_++;
    result->id = id;  // lets ray::cancel find the call
    if (stream) [[unlikely]] {
      stream->id = id;
      streams_.emplace(id, std::move(stream));
    }
    // Task calls already waiting mean no worker had room at the last try, and only a turn
    // of the loop (a reply, a worker suspending a call) makes some: that turn's service()
    // sends them, this one behind them. Without resources in play a try now would find the
    // same (and runs per call of a burst); with them, this call may fit where they do not.
    const bool behind = !tasks_.runnable.empty();
    admit(task_record::from(id, std::move(spec), std::move(result)));
    if (!behind || !pump_.unconstrained()) dispatch();
  }

  /// Whether an actor's calls wait in the driver behind its full inbox.
  bool actor_calls_waiting() const noexcept { return pump_.has_backlog(); }

  /// ray::cancel: a call not yet sent is removed; one running keeps running (or, with
  /// `force`, its worker is killed), and either way its result becomes `cancelled` now.
  void cancel_call(std::uint64_t id, bool force) {
    task_record* found = tasks_.find(id);
    if (!found || found->result->settled()) return;
    task_record& r = *found;
    r.cancelled = true;
    auto e = std::make_exception_ptr(
        cancelled(fmt::format("coray: {} was cancelled", r.name.empty() ? "the call" : r.name)));
    if (r.pending_deps) {
      r.failed_dep = true;  // settled now, dropped once its dependencies settle
      r.result->set_error(e);
    } else if (erase_one(tasks_.runnable, &r) ||
               (r.actor && actors_.find(r.actor) && erase_one(actors_.find(r.actor)->queue, &r))) {
      fail(r, e);  // not sent: it never runs
    } else {
      r.result->set_error(e);  // sent: the reply, if any, is ignored
      if (force && !r.actor && r.worker >= 0) transport_.kill(static_cast<std::uint32_t>(r.worker));
    }
  }

  /// A streaming generator's consumer: its producer may make items up to index `limit`;
  /// 0 stops it and cancels the call (design.md, "Streaming generators").
  void stream_credit(std::uint64_t id, std::uint64_t limit) {
    task_record* r = tasks_.find(id);
    if (!r) return;
    if (auto it = streams_.find(id); it != streams_.end() && it->second->forward_to >= 0)
      it->second->base = std::max(it->second->base, limit - std::min(limit, stream_window));
    send_credit(*r, limit);
    if (limit == 0) cancel_call(id, false);
  }

  // ---- refs inside values (design.md, "Refs inside objects") -----------------------------

  /// The driver's objects that refs in a value being written name: listed by id.
  void publish_refs(std::span<const state_ptr> refs) {
    for (const auto& r : refs) directory_.publish(*r, next_task_id_++);
  }
  /// The driver's handle for a ref read from a value; codec_error for an id never issued.
  state_ptr ref_from_id(std::uint64_t id) const {
    if (state_ptr s = directory_.find(id)) return s;
    throw codec_error(unknown_ref(id));
  }
  /// A driver state with an id lost its last handle.
  void forget(object_state& s) noexcept { directory_.forget(s); }
  const object_directory& directory() const noexcept { return directory_; }
  std::vector<state::object_info> list_objects() const {
    return call_lifecycle::list_objects(directory_);
  }

  // ---- actors ---------------------------------------------------------------------------

  std::uint64_t spawn_actor(actor_spawn_request req) {
    // A refused spawn keeps nothing: its constructor's argument blocks go back.
    auto refuse = [&](auto error) {
      for (auto* b : std::exchange(req.constructor.blocks, {})) seg_.release(b);
      throw error;
    };
    if (!transport_.can_start()) refuse(worker_crashed("coray: the runtime's supervisor is gone"));
    if (!req.name.empty() && actors_.name_taken(req.name))
      refuse(usage_error(fmt::format("ray::spawn: an actor named '{}' already exists", req.name)));
    resource_request need = req.resources ? *req.resources : resource_request{};
    need.where = req.where;
    if (auto why = why_never(need))
      refuse(infeasible_resources(
          fmt::format("ray::spawn: actor {} can never be placed: {}", req.type_name, *why)));
    if (need.where.group) {
      const placement_group_entry* g = groups_.find(need.where.group);
      if (g && g->pending())
        refuse(usage_error(fmt::format(
            "ray::spawn: placement group {} is not reserved yet: wait for it (its ready() or "
            "wait()) before placing actors in it",
            g->id)));
    }
    if (need.where.node >= 0 && !need.where.soft &&
        !transport_.node_alive(static_cast<std::uint32_t>(need.where.node)))
      refuse(infeasible_resources(fmt::format(
          "ray::spawn: actor {} can never be placed: it asks for node {}, which is lost",
          req.type_name, need.where.node)));
    const std::uint32_t shape = req.resources ? pump_.intern(*req.resources) : 0;
    placed_bundle* bundle = need.where.group ? bundle_for(need) : nullptr;
    if (bundle) need.where = {static_cast<std::int32_t>(bundle->node), false, false, 0, -1};
    const auto slot = actor_slot(need, shape);
    if (!slot)
      refuse(ray::runtime_error(
          fmt::format("ray::spawn: too many live actors{} (runtime_options::max_actors is {}{})",
                      transport_.node_count() > 1 ? " on the nodes that could run it" : "",
                      actors_.max_actors(), transport_.node_count() > 1 ? " in all" : "")));
    actor_entry& a = actors_.create(req, seg_, *slot, transport_.node_of(*slot));
    transport_.start_as(a.slot, req.start_as);  // a slot reused by an actor of the default
    a.shape = shape;
    if (bundle) {
      a.group = req.where.group;
      a.ledger = &bundle->ledger;
    }
    try {
      start_process(a.slot);  // its mailboxes first: the construction is sent at once
    } catch (...) {           // no room for them: refused, the spawn keeps nothing
      for (auto* b : actors_.refuse(a)) seg_.release(b);
      for (auto* b : req.constructor.blocks) seg_.release(b);
      throw;
    }
    slot_actor_[a.slot] = a.id;
    start_failures_[a.slot] = 0;
    req.constructor.target_actor = a.id;
    auto rec = task_record::from(next_task_id_++, std::move(req.constructor), new_state());
    rec->construct = true;
    rec->more().max_concurrency = req.max_concurrency;
    a.constructed = rec->result;
    admit(std::move(rec));
    return a.id;
  }

  /// A free actor slot on a node that can run an actor needing `need` (`shape`: what it holds,
  /// 0 for nothing), chosen by its placement: the node named (a soft affinity: if it can, else
  /// as by default); spread, the nodes in turn; by default, the first node (this machine
  /// first) where what it holds is free now, else the first that could ever hold it.
  /// nullopt if every such node's actor slots are taken.
  std::optional<std::uint32_t> actor_slot(const resource_request& need, std::uint32_t shape) {
    const std::uint32_t nodes = transport_.node_count();
    auto usable = [&](std::uint32_t n) {
      return transport_.node_alive(n) && n < resources_.size() && !resources_[n].refuse(need);
    };
    auto on = [&](std::uint32_t n) {
      return actors_.free_slot_where([&](std::uint32_t s) { return transport_.node_of(s) == n; });
    };
    if (need.where.node >= 0) {
      const auto n = static_cast<std::uint32_t>(need.where.node);
      if (n < nodes && usable(n))
        if (auto s = on(n); s || !need.where.soft) return s;
      if (!need.where.soft) return std::nullopt;
    }
    if (need.where.spread) {
      for (std::uint32_t k = 0; k < nodes; ++k) {
        const std::uint32_t n = (spread_actors_ + k) % nodes;
        if (!usable(n)) continue;
        if (auto s = on(n)) {
          spread_actors_ = n + 1;
          return s;
        }
      }
      return std::nullopt;
    }
    std::optional<std::uint32_t> later;
    for (std::uint32_t n = 0; n < nodes; ++n) {
      if (!usable(n)) continue;
      auto s = on(n);
      if (s && pump_.actor_fits(n, shape)) return s;
      if (!later) later = s;
    }
    return later;
  }

  /// The bundle an actor asking `need` (in a reserved placement group) goes to, and with it
  /// its node: the one named, else the first with room now, else the first that could ever
  /// hold it, else the first.
  placed_bundle* bundle_for(const resource_request& need) {
    placement_group_entry* g = groups_.find(need.where.group);
    if (!g) return nullptr;
    return g->choose(
        need.where.bundle, [](const placed_bundle&) { return true; },
        [&](placed_bundle& pb) { return pb.ledger.fits(need); },
        [&](placed_bundle& pb) { return !pb.ledger.refuse(need); });
  }

  // ---- placement groups ----------------------------------------------------------------

  /// A new placement group of `bundles` (each a requirement) under `strategy`: its id and the
  /// state that becomes `true` once every bundle is reserved. infeasible_resources if the
  /// nodes could never hold it.
  std::pair<std::uint64_t, state_ptr> create_placement_group(std::vector<resource_request> bundles,
                                                             bundle_strategy strategy) {
    if (auto why = placement_group_table::why_never(bundles, strategy, resources_))
      throw infeasible_resources(
          fmt::format("ray::placement_group: it can never be reserved: {}", *why));
    placement_group_entry& g = groups_.add(strategy, std::move(bundles), new_state());
    groups_.count_pending(+1);
    place_groups();
    return {g.id, g.ready};
  }

  /// Removes a placement group: its bundles go back to their nodes, actors placed in it are
  /// killed, calls waiting for it fail (calls running in it run to their end). A group not
  /// reserved yet fails its ready() state.
  void remove_placement_group(std::uint64_t id) {
    placement_group_entry* g = groups_.find(id);
    if (!g || g->removed) return;
    if (g->pending()) {
      groups_.count_pending(-1);
      g->ready->set_error(std::make_exception_ptr(ray::runtime_error(
          fmt::format("coray: placement group {} was removed before it was reserved", id))));
    } else {
      for (std::uint64_t a : actors_.in_group(id)) kill_actor(a);
      pump_.unplace_group(*g);
    }
    g->removed = true;
    groups_.forget_if_done(*g);
  }

  /// The node of each of a placement group's bundles; empty while it waits (or removed).
  std::vector<int> placement_group_nodes(std::uint64_t id) const {
    std::vector<int> out;
    if (const placement_group_entry* g = groups_.find(id); g && !g->removed)
      for (const auto& b : g->placed) out.push_back(static_cast<int>(b.node));
    return out;
  }

  /// Reserves the groups waiting whose bundles fit now; true if one was.
  bool place_groups() {
    bool any = false;
    groups_.for_each_pending([&](placement_group_entry& g) {
      if (!pump_.place_group(g)) return;
      groups_.count_pending(-1);
      const bool yes = true;
      g.ready->set_inline(encode(yes));
      any = true;
    });
    return any;
  }

  /// Calls made from now on, and those not yet sent, fail at once; the process gets SIGKILL
  /// and calls it was running fail when its death is seen.
  void kill_actor(std::uint64_t id) {
    actor_entry* found = actors_.find(id);
    if (!found || found->dead || found->killed) return;
    end_for_good(*found, "was killed by ray::kill");  // names the pid before the kill
    transport_.kill(found->slot);
  }

  /// The actor in `slot` ends of its own accord (ray::exit_actor) after the call it replied
  /// to last: it is not restarted, and calls not yet sent to it fail now.
  void actor_exiting(std::uint32_t slot) {
    actor_entry* a = actors_.find(slot_actor_[slot]);
    if (!a || a->dead || a->killed) return;
    end_for_good(*a, "exited by ray::exit_actor");
  }
  /// Actor `a` ends and is never restarted (`why` says how, after its name and pid); the
  /// calls not yet sent to it fail now, the others when its process is gone.
  void end_for_good(actor_entry& a, std::string_view why) {
    a.killed = true;
    a.cause = fmt::format("coray: actor {} (pid {}) {}", a.type_name, transport_.pid(a.slot), why);
    auto e = std::make_exception_ptr(actor_died(a.cause));
    for (task_record* r : std::exchange(a.queue, {})) fail(*r, e);
  }

  process::actor_info lookup_actor(std::string_view name) const {
    const actor_entry* a = actors_.lookup(std::string(name));
    if (!a) return {};
    return {a->id, a->type_id};
  }

  /// At teardown, idle actors end on their own (running their destructor) before the
  /// supervisor kills what is left; a busy one is not waited for beyond a short grace.
  void stop_idle_actors() noexcept {
    if (!transport_.can_start()) return;
    std::vector<std::uint32_t> stopping;
    for (actor_entry* a : actors_.idle())
      if (a->shutdown_sent || (a->shutdown_sent = pump_.send_shutdown(a->slot)))
        stopping.push_back(a->slot);
    transport_.await_exit(stopping, std::chrono::milliseconds(500));
  }

  // ---- the loop ---------------------------------------------------------------------------

  /// Answers block requests, sends queued replies and dispatches calls; true on progress.
  /// Each step is skipped by one emptiness check when it has nothing to do: this runs on
  /// every turn of the loop.
  bool service() {
    bool progress = ledger_.has_requests() && answer_block_requests();
    if (groups_.any_pending()) [[unlikely]]
      progress |= place_groups();
    if (!delayed_starts_.empty()) progress |= start_due();
    if (router_.has_waiting()) progress |= router_.flush();
    if (!tasks_.runnable.empty() || pump_.has_backlog()) progress |= dispatch();
    return progress;
  }

  // ---- transport_events ---------------------------------------------------------------

  void on_message(std::uint32_t slot, msg_kind kind, std::span<const std::byte> payload,
                  object_block* carried) override {
    std::uint64_t v0 = 0;
    if (payload.size() >= sizeof v0) std::memcpy(&v0, payload.data(), sizeof v0);
    switch (kind) {
      case msg_kind::task_done:
        on_task_done(slot, payload);
        break;
      case msg_kind::submit:
        on_submit(slot, payload);
        break;
      case msg_kind::release:
        router_.drop(slot, v0);
        break;
      case msg_kind::actor_hold:
        count_handle(slot, v0, +1);
        break;
      case msg_kind::actor_release:
        count_handle(slot, v0, -1);
        break;
      case msg_kind::actor_kill:
        kill_actor(v0);
        break;
      case msg_kind::actor_lookup: {
        std::string name(reinterpret_cast<const char*>(payload.data()) + sizeof v0,
                         payload.size() - sizeof v0);
        process::actor_info info = lookup_actor(name);
        std::uint64_t reply[3] = {v0, info.id, info.type_id};
        router_.post(slot, msg_kind::actor_found, reply, sizeof reply);
        break;
      }
      case msg_kind::block_request: {
        std::uint64_t size;
        std::memcpy(&size, payload.data() + sizeof v0, sizeof size);
        ledger_.request(slot, v0, size);
        answer_block_requests();
        break;
      }
      case msg_kind::block_release:
        ledger_.drop(slot, seg_.at<object_block>(v0));
        break;
      case msg_kind::ref_hold:
        on_ref_hold(slot, v0);
        break;
      case msg_kind::export_object:
        on_export(slot, payload);
        break;
      case msg_kind::actor_exit:
        actor_exiting(slot);
        break;
      case msg_kind::actor_spawn:
        on_actor_spawn(slot, payload);
        break;
      case msg_kind::stream_items:
        on_stream_items(slot, payload);
        break;
      case msg_kind::stream_consumed:
        if (payload.size() >= 2 * sizeof v0) {
          std::uint64_t limit;
          std::memcpy(&limit, payload.data() + sizeof v0, sizeof limit);
          if (const task_record* r = tasks_.find(v0); r && r->submitter == static_cast<int>(slot))
            stream_credit(v0, limit);
        }
        break;
      default:
        break;
    }
    if (carried) ledger_.drop(slot, carried);  // a long message's block, requested by its sender
  }

  void on_death(std::uint32_t slot, const process_death& how) override {
    stop_streams_of(slot);
    router_.clear(slot);
    drop_handles(slot);
    ledger_.release_all(slot);  // everything the dead process held is let go on its behalf
    const std::string words = describe_exit(how.wait_status);
    if (slot_actor_[slot]) {
      actor_ended(slot, how, words);
      return;
    }
    const std::uint32_t failures = count_start_failure(slot, how);
    auto plan = tasks_.worker_died(slot, how.calls_started);
    for (task_record* r : plan.crashed)
      fail(*r, std::make_exception_ptr(worker_crashed(
                   fmt::format("coray: worker {} (pid {}) {} while running {}{}", slot, how.pid,
                               words, r->label(), r->attempts_note()))));
    for (task_record* r : plan.again) {
      if (r->message()) seg_.release(std::exchange(r->extras->message, nullptr));
      r->gpus = 0;  // given again by the worker it goes to
      pump_.end_loan(*r);
    }
    tasks_.requeue(plan.again);
    pump_.release_if_idle(slot);  // its lease, if it held one, goes back
    if (failures == 0) {
      start_process(slot);
      return;
    }
    // It died before it served: started again after a pause that doubles each time, and
    // not at all after max_start_failures in a row. With no task worker left, calls fail.
    transport_.close(slot);  // no mailboxes until it starts again
    if (failures < max_start_failures) {
      delayed_starts_.push_back({clock::now() + start_backoff(failures), slot});
      return;
    }
    for (std::uint32_t i = 0; i < cfg_.num_workers; ++i)
      if (transport_.alive(i) || start_failures_[i] < max_start_failures) return;
    workers_lost_ = fmt::format(
        "coray: no task worker could be started: worker {} (pid {}) {}, {} times in a row "
        "before it could serve",
        slot, how.pid, words, failures);
    on_lost(workers_lost_);
  }

  /// Processes that died starting and wait to be started again: the time of the next, or
  /// time_point::max() if none.
  clock::time_point next_start() const noexcept {
    clock::time_point t = clock::time_point::max();
    for (const auto& d : delayed_starts_) t = std::min(t, d.first);
    return t;
  }

  /// A process that failed to start this many times in a row is not started again.
  static constexpr std::uint32_t max_start_failures = 5;

  void on_lost(const std::string& why) override {
    auto& runnable = tasks_.runnable;
    while (!runnable.empty()) {
      task_record* r = runnable.front();
      runnable.pop_front();
      fail(*r, std::make_exception_ptr(worker_crashed(why)));
    }
  }

 private:
  /// Counts a death before the process served (reset by one that served); returns the count.
  std::uint32_t count_start_failure(std::uint32_t slot, const process_death& how) noexcept {
    return how.served ? (start_failures_[slot] = 0) : ++start_failures_[slot];
  }
  /// 10 ms after the first failure to start, doubling, at most 1 s.
  static clock::duration start_backoff(std::uint32_t failures) noexcept {
    return std::chrono::milliseconds(10) * (1 << std::min<std::uint32_t>(failures - 1, 6));
  }
  bool start_due() {
    const auto now = clock::now();
    bool started = false;
    for (std::size_t i = 0; i < delayed_starts_.size();) {
      if (delayed_starts_[i].first > now) {
        ++i;
        continue;
      }
      const std::uint32_t slot = delayed_starts_[i].second;
      delayed_starts_.erase(delayed_starts_.begin() + static_cast<std::ptrdiff_t>(i));
      start_process(slot);
      started = true;
    }
    return started;
  }

  template <class Queue>
  static bool erase_one(Queue& q, task_record* r) {
    auto it = std::find(q.begin(), q.end(), r);
    if (it == q.end()) return false;
    q.erase(it);
    return true;
  }

  // ---- receiving ----------------------------------------------------------------------

  void on_task_done(std::uint32_t slot, std::span<const std::byte> payload) {
    result_header h;
    std::memcpy(&h, payload.data(), sizeof h);
    task_record* found = tasks_.find(h.id);
    if (!found) {
      if (h.status == result_header::value_block)
        ledger_.drop(slot, seg_.at<object_block>(h.block));
      return;
    }
    task_record& r = *found;
    if (h.status == result_header::value_block &&
        !ledger_.take(slot, seg_.at<object_block>(h.block))) {
      h.status = result_header::error;  // a block it does not own: refuse rather than corrupt
      r.result->set_error(std::make_exception_ptr(
          internal_error("coray: a reply named a block its sender does not hold")));
    }
    const bool is_task = r.actor == 0;
    if (h.status == result_header::retryable_error && !r.result->settled() &&
        r.attempt <= r.max_retries) {
      ++r.attempt;  // runs again: a task from the run queue, an actor call first in its queue
      if (is_task) {
        pump_.end_loan(r);  // lent again, or not, when it goes again
        tasks_.retry(slot, r);
      } else {
        actors_.retry(r);
      }
      return;
    }
    if (!r.result->settled()) {
      if (r.attempt > 1)
        settle_from_worker(slot, *r.result, h, payload, r.attempts_note());
      else
        settle_from_worker(slot, *r.result, h, payload);
    }
    if (r.construct && r.result->st == object_state::status::failed) {
      if (actor_entry* a = actors_.find(r.actor)) a->cause = exception_what(r.result->error());
    }
    if (r.submitter >= 0) forward(r);
    finish(h.id);
    if (is_task) {
      tasks_.done(slot);
      pump_.release_if_idle(slot);
    } else if (actor_entry* a = actors_.find(slot_actor_[slot])) {
      auto& sent = a->sent;
      while (!sent.empty() && !tasks_.contains(sent.front())) sent.pop_front();
    }
  }

  // ---- streaming generators (design.md, "Streaming generators") --------------------------

  /// Ends `st` when `result`, its call's own result, settles: by the call's end, its error,
  /// a crash or a cancel. The item the consumer awaits, if any, settles then too.
  void end_stream_with(const std::shared_ptr<stream_state>& st, object_state& result) {
    struct ender {
      orchestrator* self;
      std::shared_ptr<stream_state> st;
    };
    result.waiters.push_back({[](void* ctx, object_state& r) {
                                std::unique_ptr<ender> e(static_cast<ender*>(ctx));
                                stream_state& s = *e->st;
                                s.ended = true;
                                if (r.st == object_state::status::failed) s.error = r.error();
                                s.wake_consumer();
                                if (s.id) e->self->streams_.erase(s.id);
                              },
                              new ender{this, st}});
  }

  /// A batch of a stream's items: each becomes the next ref its consumer takes, here or, for
  /// a stream a worker consumes, there: listed to it by id (stream_ready) and held for it, its
  /// value sent as a nested result's is. Items of a call that ended (cancelled) and an
  /// attempt's repeats of items already delivered (a retry runs the generator again from the
  /// start) are dropped.
  void on_stream_items(std::uint32_t slot, std::span<const std::byte> payload) {
    stream_batch_header b;
    if (payload.size() < sizeof b) return;
    std::memcpy(&b, payload.data(), sizeof b);
    auto found = streams_.find(b.id);
    const task_record* r = tasks_.find(b.id);
    stream_state* st =
        found != streams_.end() && r && !r->result->settled() ? found->second.get() : nullptr;
    std::size_t at = sizeof b;
    std::vector<std::uint64_t> ready;  // for a consuming worker: the call, the count, the ids
    if (st && st->forward_to >= 0) ready = {b.id, 0};
    for (std::uint32_t i = 0; i < b.count; ++i) {
      result_header h;
      if (payload.size() - at < sizeof h) return;  // malformed: the rest is not read
      std::memcpy(&h, payload.data() + at, sizeof h);
      const std::size_t value = h.status == result_header::value_block ? 0 : h.len;
      const std::size_t len = sizeof h + value + (std::size_t{h.refs} + h.actors) * 8;
      if (payload.size() - at < len) return;
      const auto record = payload.subspan(at, len);
      at = std::min(payload.size(), at + ((len + 7) & ~std::size_t{7}));
      object_block* block =
          h.status == result_header::value_block ? seg_.at<object_block>(h.block) : nullptr;
      if (!st || b.first + i != st->delivered) {
        if (block) ledger_.drop(slot, block);
        continue;
      }
      state_ptr item = new_state();
      object_state& s = *item;
      ++st->delivered;
      if (st->forward_to >= 0) {
        directory_.publish(s, next_task_id_++);  // its id, by which the worker holds it
        ready.push_back(s.id);
        router_.hold(static_cast<std::uint32_t>(st->forward_to), s.id, item);
      } else {
        st->items.push_back(std::move(item));
      }
      if (block && !ledger_.take(slot, block)) {
        s.set_error(std::make_exception_ptr(
            internal_error("coray: a stream's item named a block its sender does not hold")));
        continue;
      }
      settle_from_worker(slot, s, h, record);
    }
    if (ready.size() > 2) {
      const auto to = static_cast<std::uint32_t>(st->forward_to);
      ready[1] = ready.size() - 2;
      router_.post(to, msg_kind::stream_ready, ready.data(), ready.size() * sizeof ready[0]);
      for (std::size_t k = 2; k < ready.size(); ++k)
        send_when_settled(to, ready[k], router_.held(to, ready[k]));
    } else if (st && st->forward_to < 0 && !st->items.empty()) {
      st->wake_consumer();
    }
    // The producer's limit may lag (a retry starts again from the default): give it room.
    if (st && b.limit + stream_window / 2 <= st->base + stream_window) {
      st->credited = st->base + stream_window;
      send_credit(*r, st->credited);
    }
  }

  /// The process in `slot` died: the streams it consumed stop (their producers would wait
  /// for its credit for ever).
  void stop_streams_of(std::uint32_t slot) {
    std::vector<std::uint64_t> ids;
    for (const auto& [id, st] : streams_)
      if (st->forward_to == static_cast<int>(slot)) ids.push_back(id);
    for (std::uint64_t id : ids) stream_credit(id, 0);
  }

  /// Tells the process running call `r` (if sent) how far its stream may go.
  void send_credit(const task_record& r, std::uint64_t limit) {
    int slot = r.worker;
    if (r.actor) {
      const actor_entry* a = actors_.find(r.actor);
      slot = a ? static_cast<int>(a->slot) : -1;
    }
    if (slot < 0) return;
    const std::uint64_t msg[2] = {r.id, limit};
    router_.post(static_cast<std::uint32_t>(slot), msg_kind::stream_credit, msg, sizeof msg);
  }

  /// Settles `s` from a worker's record of an outcome (a call's reply, a stream's item: a
  /// result_header, then the inline value or the error, then the ids inside the value), its
  /// block already taken from what the sender holds. The refs and actor handles inside the
  /// value are held for `s` first; if one cannot be (an id never issued), `s` keeps that
  /// error and the block goes.
  void settle_from_worker(std::uint32_t slot, object_state& s, const result_header& h,
                          std::span<const std::byte> record, std::string_view note = {}) {
    const bool value =
        h.status == result_header::value_inline || h.status == result_header::value_block;
    if (value && (h.refs || h.actors)) [[unlikely]] {
      hold_contained(slot, s, ids_after_value(record, h), h);
      if (s.settled()) {
        if (h.status == result_header::value_block) seg_.release(seg_.at<object_block>(h.block));
        return;
      }
    }
    settle_from_result(s, h, record.subspan(sizeof h, h.len), seg_, note);
    if (s.block) spiller_.adopted(s);
  }

  /// A nested call from a worker or actor: its dependencies arrive by value or by the id of
  /// another nested result that process holds.
  void on_submit(std::uint32_t slot, std::span<const std::byte> payload) {
    submission sub;
    try {
      sub = read_call(slot, payload);
    } catch (const codec_error&) {
      sub.known = false;  // malformed: refused below
      if (payload.size() < sizeof sub.header) return;
    }
    if (auto* f = find_function(sub.header.fn_id)) sub.spec.name = f->name;
    auto rec = task_record::from(sub.header.task_id, std::move(sub.spec), new_state());
    rec->submitter = static_cast<int>(slot);
    rec->submitter_generation = router_.generation(slot);
    router_.hold(slot, rec->id, rec->result);
    if (sub.header.returns == returns_stream) [[unlikely]] {
      // A streaming generator's call: its items go to this worker (stream_ready).
      auto st = std::make_shared<stream_state>();
      st->id = rec->id;
      st->forward_to = static_cast<int>(slot);
      end_stream_with(st, *rec->result);
      streams_.emplace(rec->id, std::move(st));
    } else if (sub.header.returns) [[unlikely]] {
      // ray::returns: the caller awaits its results by the ids after the call's own.
      rec->returns = std::make_unique<std::vector<state_ptr>>();
      for (std::uint32_t k = 1; k <= sub.header.returns; ++k) {
        state_ptr s = new_state();
        router_.hold(slot, rec->id + k, s);
        send_when_settled(slot, rec->id + k, s);
        rec->returns->push_back(std::move(s));
      }
    }
    if (!sub.known) {
      task_record* r = insert(std::move(rec));
      for (std::uint64_t a : held_actors(r->held)) actor_ref(a, +1);
      fail(*r, std::make_exception_ptr(internal_error(
                   "coray: a nested call used an object_ref its process does not hold")));
      return;
    }
    admit(std::move(rec));
  }

  /// A call a worker sent (a nested call, an actor's construction), read back: its
  /// dependencies and refs by the ids the process in `slot` holds them by.
  submission read_call(std::uint32_t slot, std::span<const std::byte> payload) {
    return read_submission(
        payload, [&](std::uint64_t offset) { return ledger_.holds(slot, offset); },
        [&](std::uint64_t id) { return router_.held(slot, id); },
        [&](std::uint64_t id) { return held_ref(slot, id); },
        [&](std::uint64_t offset, bool owned) {
          // An argument block the sender made for this call is handed over; one it holds
          // is borrowed, and the call takes a reference of its own.
          object_block* b = seg_.at<object_block>(offset);
          if (!(owned && ledger_.take(slot, b))) seg_.add_ref(b);
          return b;
        });
  }

  /// ray::spawn in a worker: created as the driver's own spawn is, answered with the id or
  /// with why it was refused (the spawn throws that in the worker).
  void on_actor_spawn(std::uint32_t slot, std::span<const std::byte> payload) {
    std::uint64_t head[2] = {0, 0};  // request, length of the encoded fields
    std::uint64_t id = 0;
    std::vector<std::byte> error;
    try {
      if (payload.size() < sizeof head) throw codec_error("coray: a malformed spawn");
      std::memcpy(head, payload.data(), sizeof head);
      const std::size_t at = sizeof head + pad16(head[1]);
      if (head[1] > payload.size() || at > payload.size())
        throw codec_error("coray: a malformed spawn");
      auto [fields, resources] =
          decode<std::pair<actor_spawn_fields, std::optional<resource_request>>>(
              payload.subspan(sizeof head, head[1]));
      submission sub = read_call(slot, payload.subspan(at));
      actor_spawn_request req;
      static_cast<actor_spawn_fields&>(req) = std::move(fields);
      req.constructor = std::move(sub.spec);
      if (auto* f = find_function(req.constructor.fn_id)) req.constructor.name = f->name;
      if (resources) req.resources = std::make_shared<const resource_request>(*resources);
      if (!sub.known) {
        for (auto* b : std::exchange(req.constructor.blocks, {})) seg_.release(b);
        throw codec_error(
            "coray: ray::spawn in a worker named an object_ref its process does not hold");
      }
      id = spawn_actor(std::move(req));
    } catch (...) {
      error = encode(describe_current_exception("ray::spawn"));
    }
    std::vector<std::byte> reply(2 * sizeof(std::uint64_t) + error.size());
    const std::uint64_t ids[2] = {head[0], id};
    std::memcpy(reply.data(), ids, sizeof ids);
    if (!error.empty()) std::memcpy(reply.data() + sizeof ids, error.data(), error.size());
    router_.post(slot, msg_kind::actor_spawned, reply.data(), reply.size());
  }

  /// A process made (+1) or dropped (-1) a handle to actor `id`: counted for the actor, and
  /// for the process, so that what a process holds when it dies is let go for it.
  void count_handle(std::uint32_t slot, std::uint64_t id, int delta) {
    auto it = handles_.try_emplace({slot, id}, 0).first;
    if ((it->second += delta) == 0) handles_.erase(it);
    actor_ref(id, delta);
  }
  void drop_handles(std::uint32_t slot) {
    auto it = handles_.lower_bound({slot, 0});
    while (it != handles_.end() && it->first.first == slot) {
      const std::uint64_t id = it->first.second;
      const std::int64_t n = it->second;
      it = handles_.erase(it);
      if (n > 0) actor_ref(id, -static_cast<int>(n));
    }
  }

  // ---- refs inside values ------------------------------------------------------------

  static std::string unknown_ref(std::uint64_t id) {
    return fmt::format(
        "coray: an object_ref names object {:#x}, which the runtime does not hold (bytes that "
        "were not written by this runtime, or an object already freed)",
        id);
  }

  /// An object the process in `slot` holds under `id` (a result of its nested call, a ref it
  /// read, an object it exported), listed in the directory since a value names it; null if
  /// it holds none by that id.
  state_ptr held_ref(std::uint32_t slot, std::uint64_t id) {
    state_ptr s = router_.held(slot, id);
    if (s) directory_.publish(*s, id);
    return s;
  }

  /// The value `into` is settling with holds the refs and actor handles whose ids start
  /// `ids` (h.refs, then h.actors): it keeps their objects and actors alive. A ref its sender
  /// does not hold fails the object.
  void hold_contained(std::uint32_t slot, object_state& into, std::span<const std::byte> ids,
                      const result_header& h) {
    const std::size_t n = std::size_t{h.refs} + h.actors;
    if (ids.size() < n * sizeof(std::uint64_t)) {
      into.set_error(std::make_exception_ptr(codec_error("coray: a malformed result")));
      return;
    }
    auto id_at = [&](std::size_t k) {
      std::uint64_t id;
      std::memcpy(&id, ids.data() + k * sizeof id, sizeof id);
      return id;
    };
    auto held = std::make_unique<object_contents>();
    held->refs.reserve(h.refs);
    for (std::size_t k = 0; k < h.refs; ++k) {
      state_ptr s = held_ref(slot, id_at(k));
      if (!s) {
        into.set_error(std::make_exception_ptr(codec_error(unknown_ref(id_at(k)))));
        return;
      }
      held->refs.push_back(std::move(s));
    }
    for (std::size_t k = h.refs; k < n; ++k) {
      held->actors.push_back(id_at(k));
      actor_ref(id_at(k), +1);  // released with the object (release_on_loop)
    }
    into.set_contained(std::move(held));
  }

  /// A process read a ref from a value: it holds the object until it lets its state go
  /// (release), and gets the value once there is one.
  void on_ref_hold(std::uint32_t slot, std::uint64_t id) {
    state_ptr s = directory_.find(id);
    if (!s) {
      s = new_state();
      s->set_error(std::make_exception_ptr(codec_error(unknown_ref(id))));
    }
    router_.hold(slot, id, s);
    send_when_settled(slot, id, std::move(s));
  }

  /// Sends `s` to the process in `slot` (which holds it under `id`) once it is settled.
  void send_when_settled(std::uint32_t slot, std::uint64_t id, state_ptr s) {
    const std::uint32_t generation = router_.generation(slot);
    if (s->settled()) {
      router_.forward(slot, generation, id, std::move(s));
      return;
    }
    struct pending_send {
      orchestrator* self;
      std::uint32_t slot, generation;
      std::uint64_t id;
    };
    s->waiters.push_back({[](void* ctx, object_state& st) {
                            std::unique_ptr<pending_send> p(static_cast<pending_send*>(ctx));
                            p->self->router_.forward(p->slot, p->generation, p->id,
                                                     state_ptr::share(&st));
                          },
                          new pending_send{this, slot, generation, id}});
  }

  /// An object a process made (a put) that a ref in one of its values names: the driver
  /// keeps a copy (a reference, for a block) under its id, held for that process.
  void on_export(std::uint32_t slot, std::span<const std::byte> payload) {
    result_header h;
    if (payload.size() < sizeof h) return;
    std::memcpy(&h, payload.data(), sizeof h);
    state_ptr s = new_state();
    if (h.status == result_header::value_block) {
      object_block* b = seg_.at<object_block>(h.block);
      if (!ledger_.holds(slot, h.block)) {
        s->set_error(std::make_exception_ptr(
            internal_error("coray: an exported object named a block its sender does not hold")));
      } else {
        seg_.add_ref(b);  // the driver's copy holds a reference of its own
        hold_contained(slot, *s, ids_after_value(payload, h), h);
        if (!s->settled()) {
          s->set_block(b);
          spiller_.adopted(*s);
        } else {
          seg_.release(b);
        }
      }
    } else {
      if (payload.size() < sizeof h + h.len) return;
      hold_contained(slot, *s, ids_after_value(payload, h), h);
      if (!s->settled()) s->set_inline(payload.subspan(sizeof h, h.len));
    }
    directory_.publish(*s, h.id);
    router_.hold(slot, h.id, std::move(s));
  }

  // ---- actor lifetime and deaths ------------------------------------------------------

  /// An actor's process ended: restarted if it may be; else its unfinished calls fail with
  /// actor_died, and so will later ones, and its slot is free again.
  void actor_ended(std::uint32_t slot, const process_death& how, const std::string& words) {
    actor_entry* a = actors_.find(slot_actor_[slot]);
    const std::uint32_t failures = count_start_failure(slot, how);
    if (a && a->may_restart() && failures < max_start_failures) {
      restart_actor(slot, *a, how, words);
      return;
    }
    slot_actor_[slot] = 0;
    transport_.close(slot);
    if (!a) {
      actors_.free_slot(slot);
      return;
    }
    const std::uint64_t actor_id = a->id;
    pump_.release_actor(*a);
    auto ids = actors_.end(*a, how.pid, how.wait_status, words);
    auto e = std::make_exception_ptr(actor_died(a->cause));
    for (std::uint64_t id : ids)
      if (task_record* r = tasks_.find(id)) fail(*r, e);
    // Failing calls may have dropped handles: look the entry up again.
    if (actor_entry* again = actors_.find(actor_id); again && actor_table::forgettable(*again))
      forget_actor(actor_id);
  }

  /// Builds an actor again after its process died (max_restarts): a new process, its
  /// constructor run again with the same arguments, its in-flight calls retried if their
  /// max_task_retries allow, its queued calls kept in order.
  void restart_actor(std::uint32_t slot, actor_entry& a, const process_death& how,
                     const std::string& words) {
    const std::string cause =
        fmt::format("coray: actor {} (pid {}) {}", a.type_name, how.pid, words);
    auto plan = actors_.plan_restart(a, how.calls_started, tasks_);
    for (task_record* r : plan.exhausted)
      fail(*r, std::make_exception_ptr(actor_died(cause + r->attempts_note())));
    auto rec =
        a.constructor_call(next_task_id_++, new_state(), [&](object_block* b) { seg_.add_ref(b); });
    a.constructed = rec->result;
    task_record* r = insert(std::move(rec));
    a.queue.push_front(r);
    start_process(slot);
    pump_actor(a);
  }

  std::vector<std::uint64_t> slot_actor_;  // the actor living in each slot; 0 for none
  std::uint32_t spread_actors_ = 0;        // the node a spread actor looks at first
  /// Actor handles each process holds, by (slot, actor id): let go when it dies.
  std::map<std::pair<std::uint32_t, std::uint64_t>, std::int64_t> handles_;
  std::vector<std::uint32_t> start_failures_;  // deaths before serving in a row, per slot
  std::vector<std::pair<clock::time_point, std::uint32_t>> delayed_starts_;  // (when, slot)
  std::uint64_t next_task_id_ = 1;
  memory_return memory_;
  object_directory directory_;
  /// Streaming generators' calls that have not ended, by call id.
  std::unordered_map<std::uint64_t, std::shared_ptr<stream_state>> streams_;
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/orchestrator.hpp>
// begin <coray/detail/runtime/shm_transport.hpp>
/// The transport of one machine: each process slot has two mailboxes in the segment (inbox,
/// driver -> process; outbox, process -> driver) and a doorbell; the supervisor starts and
/// reaps the processes and reports deaths through the segment's header.

// #include <coray/detail/runtime/process.hpp>: inlined above
// begin <coray/detail/runtime/supervisor_link.hpp>
/// The driver's side of the supervisor: starting it, and ending it however it was left --
/// running, exited, or stopped (SIGSTOP, a debugger). Driver only, from the runtime's thread.

#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
// begin <coray/detail/runtime/supervisor.hpp>
/// The supervisor: a small process forked from the driver when the runtime starts (before
/// the runtime makes any thread). It starts workers on the driver's request -- by fork(), so
/// a large or multi-threaded driver is never forked, or by posix_spawn() of /proc/self/exe --
/// reaps them, and reports each death to the driver through the segment. It dies with the
/// driver (PR_SET_PDEATHSIG), and its workers die with it, so nothing outlives a kill -9.
/// Whatever the program did to its signals and descriptors, the supervisor and its workers
/// start from a clean state: default signal dispositions, no descriptor but their own.
/// Their stdout and stderr are pipes to the supervisor, which prints their lines prefixed
/// with the process (log_monitor.hpp).

#include <dirent.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
// #include <coray/detail/runtime/driver.hpp>: inlined above
// begin <coray/detail/runtime/log_monitor.hpp>
/// The log monitor (Ray's log_monitor), run inside the supervisor: each worker's and actor's
/// stdout and stderr are pipes that the supervisor reads in its loop. Whole lines reach the
/// supervisor's own stdout and stderr (the driver's, inherited) prefixed with the process,
/// `(name pid=1234) line`; identical lines from several processes are folded as Ray folds
/// them (line_folder); with a log directory, each process's output is also written, as it
/// came, to `worker-<pid>.out` and `worker-<pid>.err` there. None of it touches the driver's
/// loop or a call's path. Supervisor only, single-threaded.

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
// #include <coray/detail/runtime/output_options.hpp>: inlined above
// #include <coray/detail/runtime/process.hpp>: inlined above
#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// Ray's log deduplication, for one stream (stdout or stderr): a line is printed at once the
/// first time; the same line (compared without its words that hold digits, as Ray does) from
/// other processes within the next 5 seconds is held back and counted, and when the window
/// closes (or at the end) the latest of them is printed once with `[repeated Nx across
/// cluster]`. Repeats from the one process that printed it first are printed as they come, as
/// are lines with no words left to compare. Nothing here reads a clock: times are given.
class line_folder {
 public:
  using clock = std::chrono::steady_clock;
  static constexpr clock::duration window = std::chrono::seconds(5);

  /// A line (without its newline) from process `source`, shown under `prefix`: appends to
  /// `out` what is to be printed now.
  void feed(int source, std::string_view prefix, std::string_view line, clock::time_point now,
            std::string& out) {
    std::string key = canonical(line);
    if (key.empty()) return print(prefix, line, {}, out);
    auto it = recent_.find(key);
    if (it == recent_.end()) {
      recent_.emplace(std::move(key), pattern{now, 0, {}, {}, {source}});
      next_ = std::min(next_, now + window);
      return print(prefix, line, {}, out);
    }
    pattern& p = it->second;
    if (std::find(p.sources.begin(), p.sources.end(), source) == p.sources.end())
      p.sources.push_back(source);
    if (p.sources.size() == 1) return print(prefix, line, {}, out);
    ++p.count;
    p.prefix.assign(prefix);
    p.line.assign(line);
  }
  /// Closes the windows that have passed: prints their folded lines.
  void expire(clock::time_point now, std::string& out) {
    if (now < next_) return;
    next_ = clock::time_point::max();
    for (auto it = recent_.begin(); it != recent_.end();) {
      pattern& p = it->second;
      if (now - p.since < window) {
        next_ = std::min(next_, p.since + window);
        ++it;
        continue;
      }
      if (p.count > 1) {
        // Folding was fruitful: keep folding this line, in a new window.
        print_folded(p, out);
        p.since = now;
        p.count = 0;
        next_ = std::min(next_, now + window);
        ++it;
        continue;
      }
      if (p.count == 1) print(p.prefix, p.line, {}, out);
      it = recent_.erase(it);
    }
  }
  /// The end: prints every line still held back.
  void flush(std::string& out) {
    for (auto& [key, p] : recent_) {
      if (p.count > 1) print_folded(p, out);
      if (p.count == 1) print(p.prefix, p.line, {}, out);
    }
    recent_.clear();
    next_ = clock::time_point::max();
  }
  /// When expire has something to do; max() when nothing is held.
  clock::time_point next_expiry() const noexcept { return next_; }

  /// The line as compared: its words that hold no digit, one space apart.
  static std::string canonical(std::string_view line) {
    std::string key;
    std::size_t i = 0;
    while (i < line.size()) {
      while (i < line.size() && is_space(line[i])) ++i;
      const std::size_t b = i;
      bool digit = false;
      for (; i < line.size() && !is_space(line[i]); ++i) digit |= line[i] >= '0' && line[i] <= '9';
      if (i == b || digit) continue;
      if (!key.empty()) key += ' ';
      key.append(line.substr(b, i - b));
    }
    return key;
  }

 private:
  struct pattern {
    clock::time_point since;   // the window's start
    std::uint64_t count;       // lines held back in this window
    std::string prefix, line;  // the latest held back, and its process
    std::vector<int> sources;
  };
  static bool is_space(char c) noexcept {
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
  }
  static void print(std::string_view prefix, std::string_view line, std::string_view tail,
                    std::string& out) {
    out.append(prefix).append(line).append(tail).push_back('\n');
  }
  static void print_folded(const pattern& p, std::string& out) {
    print(p.prefix, p.line, " [repeated " + std::to_string(p.count) + "x across cluster]", out);
  }

  std::unordered_map<std::string, pattern> recent_;
  clock::time_point next_ = clock::time_point::max();
};

/// Writes all of `data` to `fd`, waiting out a full non-blocking descriptor; drops it if
/// the descriptor is gone (closed, a reader that left). Never raises SIGPIPE's default
/// action: the supervisor ignores SIGPIPE.
inline void write_fully(int fd, std::string_view data) noexcept {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n > 0) {
      data.remove_prefix(static_cast<std::size_t>(n));
    } else if (n < 0 && errno == EAGAIN) {
      pollfd p{fd, POLLOUT, 0};
      ::poll(&p, 1, 100);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      return;
    }
  }
}

class log_monitor {
 public:
  using clock = line_folder::clock;
  /// A line longer than this is cut into pieces of it: one process cannot make the
  /// supervisor hold unbounded memory.
  static constexpr std::size_t max_line = 64 * 1024;
  /// The tail of each process's stdout and of its stderr kept in memory (the state API's
  /// get_log, the dashboard), and how many ended processes keep theirs, oldest dropped.
  static constexpr std::size_t tail_bytes = 16 * 1024;
  static constexpr std::size_t ended_kept = 64;

  /// The last tail_bytes of what process `pid` wrote to stdout and to stderr; empty if it is
  /// unknown (never started here, or ended long ago).
  struct tail {
    std::string out, err;
  };
  const tail* tail_of(int pid) const {
    auto it = tails_.find(pid);
    return it == tails_.end() ? nullptr : &it->second;
  }

  /// `hdr`: the segment's control header, where each slot's process publishes its name.
  log_monitor(output_options opts, shared_header* hdr) : opts_(std::move(opts)), hdr_(hdr) {}
  log_monitor(const log_monitor&) = delete;
  log_monitor& operator=(const log_monitor&) = delete;
  ~log_monitor() {
    for (auto& s : streams_) close_stream(s);
  }

  /// A new process's stdout and stderr: the read ends stay here, the write ends are dup'ed
  /// onto the child's 1 and 2. All four close on exec.
  struct pipes {
    int out[2] = {-1, -1};
    int err[2] = {-1, -1};
  };
  /// Makes the pipes for a process about to start; false (errno set) if it cannot, and then
  /// the process starts with the supervisor's own stdout and stderr.
  static bool make_pipes(pipes& p) noexcept {
    if (pipe2(p.out, O_CLOEXEC) != 0) return false;
    if (pipe2(p.err, O_CLOEXEC) == 0) return true;
    const int e = errno;
    ::close(p.out[0]);
    ::close(p.out[1]);
    p = {};
    errno = e;
    return false;
  }
  /// In a forked child: its output goes to the pipes; no other stream of the monitor's stays
  /// open in it.
  void become_child_output(const pipes& p) noexcept {
    if (p.out[1] >= 0) ::dup2(p.out[1], STDOUT_FILENO);
    if (p.err[1] >= 0) ::dup2(p.err[1], STDERR_FILENO);
    for (int fd : {p.out[0], p.out[1], p.err[0], p.err[1]})
      if (fd > STDERR_FILENO) ::close(fd);
    for (auto& s : streams_) {
      ::close(s.fd);
      if (s.file >= 0) ::close(s.file);
    }
  }
  /// After the process started (`pid` > 0) or failed to: the write ends close here and the
  /// read ends are watched until their end of file.
  void watch(const pipes& p, int pid, std::uint32_t slot) {
    for (int fd : {p.out[1], p.err[1]})
      if (fd >= 0) ::close(fd);
    if (p.out[0] < 0) return;
    if (pid <= 0) {
      ::close(p.out[0]);
      ::close(p.err[0]);
      return;
    }
    add_stream(p.out[0], pid, slot, false);
    add_stream(p.err[0], pid, slot, true);
    tails_[pid];
  }

  /// The descriptors to poll, appended to `fds`, in the order on_ready takes them.
  void add_pollfds(std::vector<pollfd>& fds) const {
    for (const auto& s : streams_) fds.push_back({s.fd, POLLIN, 0});
  }
  /// After poll: `ready` are the entries add_pollfds appended, with their revents.
  void on_ready(std::span<const pollfd> ready) {
    for (std::size_t i = 0; i < ready.size() && i < streams_.size(); ++i)
      if (ready[i].revents) read_stream(streams_[i]);
    collect();
    tick(clock::now());
  }
  /// Milliseconds until a folded line is due (poll's timeout), -1 when none is.
  int poll_timeout(clock::time_point now) const noexcept {
    const auto next = std::min(out_.folder.next_expiry(), err_.folder.next_expiry());
    if (next == clock::time_point::max()) return -1;
    if (next <= now) return 0;
    return static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(next - now).count());
  }
  /// Prints the folded lines that are due.
  void tick(clock::time_point now) {
    for (sink* k : {&out_, &err_}) {
      k->folder.expire(now, k->text);
      emit(*k);
    }
  }
  /// Reads what process `pid` left in its pipes (it has ended: all it wrote is there), so
  /// its last lines come before its death is reported.
  void drain_process(int pid) {
    for (auto& s : streams_)
      if (s.pid == pid) read_stream(s);
    collect();
  }
  /// The end (every process reaped): reads what is left, prints partial lines and held-back
  /// lines, and closes every stream.
  void finish() {
    for (auto& s : streams_) {
      read_stream(s);
      end_stream(s);
    }
    collect();
    for (sink* k : {&out_, &err_}) {
      k->folder.flush(k->text);
      emit(*k);
    }
  }

 private:
  struct stream {
    int fd;
    int file;  // log file, or -1
    int pid;
    std::uint32_t slot;
    bool is_err;
    bool ended = false;
    std::string name;     // the process's name when last read
    std::string partial;  // a line not yet ended
  };
  struct sink {
    int fd;
    line_folder folder;
    std::string text;  // lines to write, in one write
  };

  void add_stream(int fd, int pid, std::uint32_t slot, bool is_err) {
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    int file = -1;
    if (!opts_.directory.empty()) {
      const std::string path =
          opts_.directory + "/worker-" + std::to_string(pid) + (is_err ? ".err" : ".out");
      file = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    }
    streams_.push_back({fd, file, pid, slot, is_err, false, {}, {}});
  }

  /// Reads until the pipe is empty or ended; whole lines go to their sink.
  void read_stream(stream& s) {
    if (s.ended) return;
    char buf[16384];
    for (;;) {
      const ssize_t n = ::read(s.fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        if (n == 0 || errno != EAGAIN) end_stream(s);
        return;
      }
      // The name the process has now, while it is still the slot's process (a later one in
      // the slot has its own name).
      const worker_shared& w = hdr_->worker(s.slot);
      if (w.pid.load(std::memory_order_acquire) == s.pid) s.name = w.output_name.get();
      const std::string_view got(buf, static_cast<std::size_t>(n));
      if (s.file >= 0) write_fully(s.file, got);
      keep_tail(s, got);
      take_lines(s, got);
    }
  }
  void take_lines(stream& s, std::string_view got) {
    while (!got.empty()) {
      const std::size_t nl = got.find('\n');
      const std::size_t room = max_line - s.partial.size();
      if (nl == std::string_view::npos && got.size() < room) {
        s.partial.append(got);
        return;
      }
      const std::size_t take = std::min(nl == std::string_view::npos ? room : nl, room);
      s.partial.append(got.substr(0, take));
      got.remove_prefix(std::min(got.size(), take + (take == nl ? 1 : 0)));
      line(s, s.partial);
      s.partial.clear();
    }
  }
  void line(const stream& s, std::string_view text) {
    if (!opts_.to_driver) return;
    sink& k = s.is_err ? err_ : out_;
    const std::string prefix = s.name.empty()
                                   ? "(pid=" + std::to_string(s.pid) + ") "
                                   : "(" + s.name + " pid=" + std::to_string(s.pid) + ") ";
    k.folder.feed(s.pid, prefix, text, clock::now(), k.text);
  }
  void keep_tail(const stream& s, std::string_view got) {
    std::string& t = s.is_err ? tails_[s.pid].err : tails_[s.pid].out;
    if (got.size() >= tail_bytes) got.remove_prefix(got.size() - tail_bytes);
    const std::size_t keep = std::min(t.size(), tail_bytes - got.size());
    t.erase(0, t.size() - keep);
    t.append(got);
  }
  /// End of file (or a broken pipe): a partial line is printed as a line. The process's tail
  /// stays, among the last ended_kept ended processes'.
  void end_stream(stream& s) {
    if (s.ended) return;
    s.ended = true;
    if (s.is_err) {
      ended_.push_back(s.pid);
      if (ended_.size() > ended_kept) {
        tails_.erase(ended_.front());
        ended_.pop_front();
      }
    }
    if (!s.partial.empty()) {
      line(s, s.partial);
      s.partial.clear();
    }
  }
  /// Closes the ended streams and writes what is to be printed.
  void collect() {
    for (auto& s : streams_)
      if (s.ended) close_stream(s);
    streams_.erase(
        std::remove_if(streams_.begin(), streams_.end(), [](const stream& s) { return s.fd < 0; }),
        streams_.end());
    emit(out_);
    emit(err_);
  }
  static void close_stream(stream& s) noexcept {
    if (s.fd >= 0) ::close(s.fd);
    if (s.file >= 0) ::close(s.file);
    s.fd = s.file = -1;
  }
  static void emit(sink& k) {
    if (k.text.empty()) return;
    write_fully(k.fd, k.text);
    k.text.clear();
  }

  output_options opts_;
  shared_header* hdr_;
  std::unordered_map<int, tail> tails_;
  std::deque<int> ended_;  // processes whose stderr ended, oldest first
  std::vector<stream> streams_;
  sink out_{STDOUT_FILENO, {}, {}};
  sink err_{STDERR_FILENO, {}, {}};
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/log_monitor.hpp>
// #include <coray/detail/runtime/system.hpp>: inlined above
// begin <coray/detail/runtime/worker.hpp>
/// A worker process -- a task worker or an actor: takes calls from its inbox, runs them (a
/// coroutine body may await nested calls while the process runs others), and replies
/// through its outbox. Calls made from here go to the driver, which schedules them like any
/// other. An actor first receives `construct`, then starts method calls in arrival order, at
/// most max_concurrency at once: coroutine methods overlap on the loop thread while they
/// await, and a threaded actor's plain methods run on its method threads.

#include <fmt/format.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
// #include <coray/codec.hpp>: inlined above
// #include <coray/detail/runtime/identity.hpp>: inlined above
// #include <coray/detail/runtime/invocation.hpp>: inlined above
// begin <coray/detail/runtime/method_threads.hpp>
/// The threads of a threaded actor (max_concurrency > 1), which run its plain methods, as
/// Ray's threaded actors do. The loop thread hands over calls whose arguments it decoded; a
/// method thread takes them in that order, runs one at a time, and hands each back to the
/// loop as a job (`done`), which replies. Threads start as calls need them, never more than
/// the actor's max_concurrency, and live as long as the process.

#include <condition_variable>
// #include <coray/detail/runtime/handoff.hpp>: inlined above
// #include <coray/detail/runtime/invocation.hpp>: inlined above
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

class method_threads {
 public:
  /// `post(call)` hands a finished call back to the loop thread; it is called on the method
  /// thread and must not throw.
  using post_fn = void (*)(void* owner, threaded_call* call) noexcept;
  method_threads(void* owner, post_fn post) noexcept : owner_(owner), post_(post) {}
  method_threads(const method_threads&) = delete;
  method_threads& operator=(const method_threads&) = delete;
  ~method_threads() {
    {
      const std::lock_guard lock(m_);
      stop_ = true;
    }
    ready_.notify_all();
    for (auto& t : threads_) t.join();
    for (threaded_call* c : queue_) delete c;
  }

  /// Loop thread: queues `c` for a method thread. A thread is started when the calls handed
  /// over and not yet done outnumber the threads, up to `limit`: as the loop starts at most
  /// `limit` calls at once, every call then has a thread free to take it. Locks a mutex;
  /// allocates when the queue grows or a thread starts.
  void run(std::unique_ptr<threaded_call> c, std::uint32_t limit) {
    {
      const std::lock_guard lock(m_);
      if (unfinished_ + 1 > threads_.size() && threads_.size() < limit)
        threads_.emplace_back([this] { serve(); });  // throws: nothing was queued
      queue_.push_back(c.get());
      c.release();
      ++unfinished_;
    }
    ready_.notify_one();
  }

 private:
  void serve() noexcept {
    on_method_thread() = true;
    std::unique_lock lock(m_);
    for (;;) {
      ready_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      threaded_call* c = queue_.front();
      queue_.pop_front();
      lock.unlock();
      c->run();
      lock.lock();
      --unfinished_;
      lock.unlock();
      post_(owner_, c);
      lock.lock();
    }
  }

  void* owner_;
  post_fn post_;
  std::mutex m_;
  std::condition_variable ready_;
  std::deque<threaded_call*> queue_;  // handed over, not yet taken
  std::size_t unfinished_ = 0;        // handed over, not yet done
  std::vector<std::thread> threads_;
  bool stop_ = false;
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/method_threads.hpp>
// #include <coray/detail/runtime/process.hpp>: inlined above
// #include <coray/detail/runtime/registry.hpp>: inlined above
// #include <coray/detail/runtime/result_message.hpp>: inlined above
// #include <coray/detail/runtime/stream_state.hpp>: inlined above
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

class worker final : public process, public call_host {
 public:
  worker(std::uint32_t slot, std::uint32_t epoch_) : slot_(slot) { epoch = epoch_; }

  /// Attaches to the runtime's header and serves until told to stop or the driver goes.
  [[noreturn]] void serve() {
    hdr = seg.at<shared_header>(seg.header_root().header_offset);
    me_ = &hdr->worker(slot_);
    inbox_ = seg.at<mailbox>(me_->inbox);
    outbox_ = seg.at<mailbox>(me_->outbox);
    generation_ = me_->generation.load(std::memory_order_acquire);
    const std::uint32_t id_slot = me_->id_slot.load(std::memory_order_relaxed);
    next_id_ = (std::uint64_t{1} << 63) | (std::uint64_t{id_slot ? id_slot - 1 : slot_} << 48) |
               (std::uint64_t{generation_ & 0xFFFF} << 32);
    me_->pid.store(getpid(), std::memory_order_relaxed);
    me_->served.store(1, std::memory_order_relaxed);
    me_->state.store(static_cast<std::uint32_t>(slot_state::running), std::memory_order_release);
    process::current() = this;
    on_this_thread() = this;  // serve may run on another thread than the constructor's
    open_handoff(me_->bell, runtime_gate::phase::releases_only);
    run_until([this] { return stop_ || (stopping_ && no_calls_left()); });
    if (instance_ && destroy_) destroy_(instance_);  // an actor ends with its destructor
    std::fflush(nullptr);
    _exit(0);
  }

  /// A nested call from a task body: the driver schedules it; the result comes back as
  /// object_ready.
  state_ptr submit(task_spec&& spec) override {
    auto result = make_state();
    result->id = next_id_++;
    if (spec.returns) [[unlikely]]
      for (auto& s : *spec.returns) s->id = next_id_++;  // ray::returns: one per result
    // Dependencies first: a call whose argument already failed is never sent.
    if (const std::exception_ptr* e = failed_dependency(spec)) {
      result->set_error(*e);
      if (spec.returns)
        for (auto& s : *spec.returns) s->set_error(*e);
      if (spec.stream) {  // a stream that ends before its first item, with that error
        spec.stream->ended = true;
        spec.stream->error = *e;
      }
      return result;
    }
    awaited_.emplace(result->id, result.get());
    if (spec.returns)
      for (auto& s : *spec.returns) awaited_.emplace(s->id, s.get());
    if (spec.stream) [[unlikely]]
      consume_stream(spec.stream, result);
    with_call_message(spec, result->id, [&](const call_message_writer& message) {
      send(msg_kind::submit, message.size(), [&](std::byte* out) { message.write(out, seg); });
    });
    return result;
  }

  /// A streaming generator's call made here: its items arrive as stream_ready, its end as
  /// the call's result (design.md, "Streaming generators").
  void consume_stream(const std::shared_ptr<stream_state>& st, const state_ptr& result) {
    st->id = result->id;
    st->call = result;
    consuming_.emplace(st->id, st);
    struct ender {
      worker* self;
      std::shared_ptr<stream_state> st;
    };
    result->waiters.push_back({[](void* ctx, object_state& r) {
                                 std::unique_ptr<ender> e(static_cast<ender*>(ctx));
                                 stream_state& s = *e->st;
                                 s.ended = true;
                                 if (r.st == object_state::status::failed) s.error = r.error();
                                 s.wake_consumer();
                                 e->self->consuming_.erase(s.id);
                               },
                               new ender{this, st}});
  }
  /// The consumer here took items: the producer may go on to `limit` (0: stop it).
  void stream_credit(std::uint64_t id, std::uint64_t limit) override {
    const std::uint64_t msg[2] = {id, limit};
    send(msg_kind::stream_consumed, sizeof msg,
         [&](std::byte* out) { std::memcpy(out, msg, sizeof msg); });
  }

  /// ray::spawn in a task or an actor: the driver creates the actor and answers with its id
  /// (or why it refused), as it would to its own spawn.
  std::uint64_t spawn_actor(actor_spawn_request req) override {
    task_spec& spec = req.constructor;
    if (const std::exception_ptr* e = failed_dependency(spec)) std::rethrow_exception(*e);
    const std::uint64_t request = ++lookups_;
    const std::vector<std::byte> fields =
        encode(std::pair<actor_spawn_fields, std::optional<resource_request>>(
            req, req.resources ? std::optional(*req.resources) : std::nullopt));
    const std::size_t at = 2 * sizeof(std::uint64_t) + pad16(fields.size());
    with_call_message(spec, 0, [&](const call_message_writer& message) {
      send(msg_kind::actor_spawn, at + message.size(), [&](std::byte* out) {
        const std::uint64_t head[2] = {request, fields.size()};
        std::memcpy(out, head, sizeof head);
        std::memcpy(out + sizeof head, fields.data(), fields.size());
        std::memset(out + sizeof head + fields.size(), 0, at - sizeof head - fields.size());
        message.write(out + at, seg);
      });
    });
    internal_wait([&] { return spawned_.count(request) != 0; });
    spawn_answer answer = std::move(spawned_[request]);
    spawned_.erase(request);
    if (!answer.id) std::rethrow_exception(to_exception(answer.error));
    return answer.id;
  }

  void actor_handle(std::uint64_t id, int delta) noexcept override {
    send_u64(delta > 0 ? msg_kind::actor_hold : msg_kind::actor_release, id);
  }
  void kill_actor(std::uint64_t id) override { send_u64(msg_kind::actor_kill, id); }
  actor_info lookup_actor(std::string_view name) override {
    const std::uint64_t request = ++lookups_;
    send(msg_kind::actor_lookup, sizeof request + name.size(), [&](std::byte* out) {
      std::memcpy(out, &request, sizeof request);
      std::memcpy(out + sizeof request, name.data(), name.size());
    });
    internal_wait([&] { return found_.count(request) != 0; });
    actor_info info = found_[request];
    found_.erase(request);
    return info;
  }

  // ---- call_host: what the invoker of a call asks ------------------------------------------
  void set_instance(void* instance, void (*destroy)(void*)) noexcept override {
    instance_ = instance;
    destroy_ = destroy;
  }
  void name_output(std::string_view name) noexcept override {
    output_named_ = name.data();
    me_->output_name.set(name);
  }
  void call_finished(std::uint32_t group) noexcept override {
    if (group < groups_.size() && groups_[group].running) --groups_[group].running;
    if (exiting_ && !stop_) {
      // Its reply is sent: the driver learns why the actor ends before it sees it gone.
      send_u64(msg_kind::actor_exit, 0);
      stop_ = true;
    }
  }
  void exit_actor() override {
    if (!is_actor_) throw usage_error("ray::exit_actor: called outside an actor");
    exiting_ = true;
  }
  void run_on_thread(std::unique_ptr<threaded_call> call) override {
    if (!threads_) threads_ = std::make_unique<method_threads>(this, &post_finished);
    threads_->run(std::move(call), thread_limit_);
  }

  void state_released(object_state& s) noexcept override {
    if (s.id && awaited_.erase(s.id)) send_u64(msg_kind::release, s.id);
  }

  // ---- refs inside values (design.md, "Refs inside objects") -----------------------------
  /// A ref read from a value: this process's state for its id if it has one, else a new one
  /// that the driver settles (object_ready) once asked to (ref_hold); the driver keeps the
  /// object alive until this process lets the state go (release).
  state_ptr ref_from_id(std::uint64_t id) override {
    if (auto it = awaited_.find(id); it != awaited_.end()) return state_ptr::share(it->second);
    state_ptr s = awaited_state(id);
    send_u64(msg_kind::ref_hold, id);
    return s;
  }
  /// A new state for the driver's object `id`, which the driver settles (object_ready) and
  /// this process lets go of (release) when the state goes.
  state_ptr awaited_state(std::uint64_t id) {
    state_ptr s = make_state();
    s->id = id;
    awaited_.emplace(id, s.get());
    return s;
  }
  /// Makes objects of this process that refs name known to the driver: one put here (no id
  /// yet) is sent to it (export_object), the objects its own value holds refs to first; the
  /// driver holds it for this process until the state goes. Results of calls and refs read
  /// from values already have ids the driver knows.
  void publish_refs(std::span<const state_ptr> refs) override {
    for (const auto& r : refs) export_object(*r);
  }

  /// Asks the driver for a block and waits (running the loop) for it.
  object_block* new_block(std::size_t size) override {
    const std::uint64_t request = ++requests_;
    std::uint64_t msg[2] = {request, size};
    send(msg_kind::block_request, sizeof msg,
         [&](std::byte* out) { std::memcpy(out, msg, sizeof msg); });
    internal_wait([&] { return granted_.count(request) != 0; });
    grant g = granted_[request];
    granted_.erase(request);
    if (!g.offset) throw object_store_full(g.requested, g.free_bytes, g.capacity);
    return seg.at<object_block>(g.offset);
  }
  void release_block(object_block* b) noexcept override {
    send_u64(msg_kind::block_release, seg.offset_of(b));
  }

  /// A task blocked in ray::get (or any blocking wait) does not occupy its worker: the
  /// driver may send more calls, which run here, above it on the stack, until it can go on.
  /// Without this, tasks blocked on children they wait for would fill every worker while
  /// the children queue in the driver. Only the blocked call's descendants are sent (the
  /// calls this worker made since the blocked call started: blocked_mark), so
  /// the stack grows with the depth of a tree of tasks, not its width. A blocking wait in a
  /// resumed coroutine (no plain call running) takes any call this worker made. The driver
  /// is woken: it may be waiting for room. Actors keep their one-call-at-a-time order; the
  /// worker's own waits (internal_wait) start nothing.
  bool blocking_wait(int delta) noexcept override {
    if (delta > 0 && (is_actor_ || internal_waits_ != 0)) return false;
    // The mark is set before the call counts as suspended and cleared after it stops
    // counting, so the driver (transport::occupancy_of) never sees it suspended unmarked,
    // which would make this worker look free for any call.
    if (delta > 0) {
      blocked_marks_.push_back(call_mark != 0 ? call_mark : 1);
      me_->blocked_mark.store(blocked_marks_.back(), std::memory_order_release);
      coroutine_suspended(delta);
    } else {
      coroutine_suspended(delta);
      blocked_marks_.pop_back();
      me_->blocked_mark.store(blocked_marks_.empty() ? 0 : blocked_marks_.back(),
                              std::memory_order_release);
    }
    if (delta > 0) hdr->driver_bell.ring();
    return true;
  }

  /// Task coroutines that are suspended; the driver counts them as not occupying the worker.
  void coroutine_suspended(int delta) noexcept override {
    me_->suspended.store(
        static_cast<std::uint32_t>(
            static_cast<int>(me_->suspended.load(std::memory_order_relaxed)) + delta),
        std::memory_order_release);  // after a blocked call's mark (blocking_wait)
  }

 protected:
  void reply_filled(std::uint64_t task_id, std::size_t size, void (*fill)(void*, std::byte*),
                    void* context, const object_contents* held) override {
    const outgoing_value v = prepare_value(task_id, size, fill, context, held);
    send(msg_kind::task_done, v.bytes(), [&](std::byte* out) { v.write(out, fill, context); });
  }
  void reply_failed(std::uint64_t task_id, const wire_error& e, bool retryable) override {
    std::size_t size = encoded_size(e);
    send(msg_kind::task_done, sizeof(result_header) + size, [&](std::byte* out) {
      result_header h{task_id,
                      retryable ? result_header::retryable_error : result_header::error,
                      static_cast<std::uint32_t>(size),
                      0,
                      0,
                      0};
      std::memcpy(out, &h, sizeof h);
      encode_to(std::span<std::byte>(out + sizeof h, size), e);
    });
  }

  bool stream_filled(std::uint64_t task_id, std::size_t size, void (*fill)(void*, std::byte*),
                     void* context, const object_contents* held) override {
    const outgoing_value v = prepare_value(task_id, size, fill, context, held);
    const std::size_t len = (v.bytes() + 7) & ~std::size_t{7};
    std::unique_lock lock(streams_mutex_);
    stream_run& s = streams_[task_id];
    if (s.stopped) {
      lock.unlock();
      if (v.block) release_block(v.block);
      return false;
    }
    if (s.count && s.batch.size() + len > stream_batch_bytes) flush_stream(task_id, s);
    if (s.batch.empty()) s.batch.resize(sizeof(stream_batch_header));
    const std::size_t at = s.batch.size();
    s.batch.resize(at + len);
    v.write(s.batch.data() + at, fill, context);
    ++s.count;
    ++s.made;
    // The first item goes at once (time to first item), full batches at once, and the rest
    // within stream_flush_interval of the first item in its batch (the flusher thread).
    if (s.made == 1 || s.batch.size() >= stream_batch_bytes) {
      flush_stream(task_id, s);
    } else if (s.count == 1) {
      s.started = clock::now();
      wake_flusher();
    }
    // A consumer in this process is below this call on its stack (it waits for an item, and
    // this worker took the generator meanwhile): no credit can come, so it is not waited for.
    const bool at_limit = s.made >= s.limit && !consuming_.count(task_id);
    if (at_limit) flush_stream(task_id, s);
    lock.unlock();
    if (at_limit || !inbox_->empty()) {
      read_inbox();  // a credit or a stop
      if (at_limit) internal_wait([this, &s] { return stream_may_go(s); });
    }
    return !stream_stopped(s);
  }
  void stream_end(std::uint64_t task_id) override {
    const std::lock_guard lock(streams_mutex_);
    auto it = streams_.find(task_id);
    if (it == streams_.end()) return;
    if (it->second.count && !it->second.stopped) flush_stream(task_id, it->second);
    streams_.erase(it);
  }

  bool poll() override {
    if (!internal_waits_ && !deferred_.empty()) {
      // Calls that arrived during an internal wait, in their order.
      std::vector<std::byte> call = std::move(deferred_.front());
      deferred_.pop_front();
      start_task(call);
      spare_call(std::move(call));
      return true;
    }
    message_view m;
    std::vector<std::byte> gathered;
    if (!peek_message(seg, *inbox_, gathered, m)) return start_calls();
    // Take the message out of the ring before handling it: a task body may run the loop
    // again (a blocking get), which must see the next message, not this one. A message in a
    // block stays valid: the driver frees it when the call ends.
    alignas(16) std::byte local[mailbox_slot::payload_bytes];
    if (m.slots == 1 && !m.block) {
      std::memcpy(local, m.payload.data(), m.payload.size());
      m.payload = {local, m.payload.size()};
    }
    inbox_->pop(m.slots);
    // The driver may be asleep waiting for room in this inbox (Dekker with its sleep: slots
    // freed, fence, flag read here; flag set, fence, room read there).
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (me_->driver_waiting.load(std::memory_order_relaxed) != 0) {
      me_->driver_waiting.store(0, std::memory_order_relaxed);
      hdr->driver_bell.ring();
    }
    switch (m.kind) {
      case msg_kind::run_task:
        if (is_actor_) {
          // Held here rather than in the ring, so results of nested calls behind it still arrive.
          if (call_group* g = group_of(m.payload)) g->calls.push_back(copy_of_call(m.payload));
        } else if (internal_waits_ || !deferred_.empty()) {
          deferred_.push_back(copy_of_call(m.payload));
        } else {
          start_task(m.payload);
        }
        break;
      case msg_kind::construct:
        construct(m.payload);
        break;
      case msg_kind::object_ready:
        on_object_ready(m.payload);
        break;
      case msg_kind::actor_spawned: {
        std::uint64_t v[2];
        std::memcpy(v, m.payload.data(), sizeof v);
        spawn_answer& a = spawned_[v[0]];
        a.id = v[1];
        if (!a.id) a.error = decode<wire_error>(m.payload.subspan(sizeof v));
        break;
      }
      case msg_kind::actor_found: {
        std::uint64_t v[3];
        std::memcpy(v, m.payload.data(), sizeof v);
        found_[v[0]] = {v[1], v[2]};
        break;
      }
      case msg_kind::block_granted: {
        std::uint64_t v[5];
        std::memcpy(v, m.payload.data(), sizeof v);
        granted_[v[0]] = {v[1], v[2], v[3], v[4]};
        break;
      }
      case msg_kind::stream_credit: {
        std::uint64_t v[2];
        std::memcpy(v, m.payload.data(), sizeof v);
        const std::lock_guard lock(streams_mutex_);
        if (auto it = streams_.find(v[0]); it != streams_.end()) {
          if (v[1] == 0)
            it->second.stopped = true;
          else
            it->second.limit = std::max(it->second.limit, v[1]);
        }
        break;
      }
      case msg_kind::stream_ready:
        on_stream_ready(m.payload);
        break;
      case msg_kind::shutdown:
        stopping_ = true;
        break;
      default:
        break;
    }
    start_calls();
    return true;
  }

  void sleep(std::chrono::nanoseconds limit) override {
    me_->bell.sleep([this] { return !inbox_->empty() || jobs_waiting(); }, limit);
    if (getppid() != hdr->supervisor_pid) _exit(0);  // supervisor gone: the runtime is over
  }

 private:
  /// Calls of one concurrency group: queued in arrival order, started while fewer than
  /// `limit` run. groups_[0] is the default group (max_concurrency); named ones follow.
  struct call_group {
    std::uint32_t name_hash = 0;  // group_hash of its name; 0: the default group
    std::uint32_t limit = 1;
    std::uint32_t running = 0;
    std::deque<std::vector<std::byte>> calls;
  };

  /// A streaming generator running here: its items not sent yet, how many it made, and how
  /// far its consumer lets it go (design.md, "Streaming generators"). Under streams_mutex_:
  /// the flusher thread sends batches too.
  struct stream_run {
    std::vector<std::byte> batch;  // a stream_batch_header, then the item records
    std::uint32_t count = 0;       // items in the batch
    std::uint64_t made = 0;        // items made: the next one's index
    std::uint64_t limit = stream_window;
    bool stopped = false;
    clock::time_point started{};  // when the batch's first item was added
  };
  static constexpr std::size_t stream_batch_bytes = 8192;
  static constexpr auto stream_flush_interval = std::chrono::microseconds(50);

  /// Sends the batch of `s`. Under streams_mutex_.
  void flush_stream(std::uint64_t task_id, stream_run& s) {
    if (!s.count) return;
    const stream_batch_header head{task_id, s.made - s.count, s.limit, s.count, 0};
    std::memcpy(s.batch.data(), &head, sizeof head);
    send(msg_kind::stream_items, s.batch.size(),
         [&s](std::byte* out) { std::memcpy(out, s.batch.data(), s.batch.size()); });
    s.batch.clear();
    s.count = 0;
  }
  bool stream_may_go(const stream_run& s) {
    const std::lock_guard lock(streams_mutex_);
    return s.made < s.limit || s.stopped;
  }
  bool stream_stopped(const stream_run& s) {
    const std::lock_guard lock(streams_mutex_);
    return s.stopped;
  }
  /// Reads what the driver sent while a generator runs (credits, stops), starting no call.
  void read_inbox() {
    ++internal_waits_;
    try {
      while (!inbox_->empty()) poll();
    } catch (...) {
      --internal_waits_;
      throw;
    }
    --internal_waits_;
  }
  /// Under streams_mutex_: a batch was started; the flusher sends it if the generator does
  /// not within stream_flush_interval (a generator that yields, then works or waits).
  void wake_flusher() {
    if (!flusher_.joinable()) flusher_ = std::thread([this] { flush_late_batches(); });
    flusher_wake_.notify_one();
  }
  /// The flusher thread: for the life of the process, once a generator ran in it.
  void flush_late_batches() {
    std::unique_lock lock(streams_mutex_);
    for (;;) {
      auto due = clock::time_point::max();
      const auto now = clock::now();
      for (auto& [id, s] : streams_) {
        if (!s.count || s.stopped) continue;
        if (now - s.started >= stream_flush_interval)
          flush_stream(id, s);
        else
          due = std::min(due, s.started + stream_flush_interval);
      }
      if (due == clock::time_point::max())
        flusher_wake_.wait(lock);
      else
        flusher_wake_.wait_until(lock, due);
    }
  }

  /// Waits for a reply of the runtime's own (a block, an actor's id), serving the loop but
  /// starting no new task meanwhile: a task started here would nest inside the one waiting,
  /// and each would hold what it was granted while the innermost waits (with blocks: every
  /// queued task's result allocated before any is sent).
  template <class Done>
  void internal_wait(Done&& done) {
    ++internal_waits_;
    try {
      run_until(done);
    } catch (...) {
      --internal_waits_;
      throw;
    }
    --internal_waits_;
  }

  void start_task(std::span<const std::byte> payload) {
    count_taken();
    std::uint32_t gpus;
    std::memcpy(&gpus, payload.data() + offsetof(task_header, gpus), sizeof gpus);
    if (gpus != gpus_) [[unlikely]]
      return start_task_with(payload, gpus);
    run_task(payload);
  }
  /// A call whose GPUs are not those this process runs with now: it runs with its own. Run
  /// above a blocked call (a call lent this worker: design.md, "Resources"), it gives the
  /// blocked call its GPUs back when it returns.
  [[gnu::noinline]] void start_task_with(std::span<const std::byte> payload, std::uint32_t gpus) {
    const std::uint32_t below = gpus_;
    use_gpus(gpus);
    run_task(payload);
    if (!blocked_marks_.empty() && gpus_ != below) use_gpus(below);
  }

  /// Runs a call (of actor call group `group`); false if its function is unknown here (an
  /// error reply is sent).
  bool run_task(std::span<const std::byte> payload, std::uint32_t group = 0) {
    task_header h;
    std::memcpy(&h, payload.data(), sizeof h);
    return run_call(h, payload.subspan(sizeof h), group);
  }
  bool run_call(const task_header& h, std::span<const std::byte> args, std::uint32_t group) {
    const registered_function* fn = find_function(h.fn_id);
    if (!fn) {
      const usage_error e(fmt::format(
          "coray: no function with id {} is registered in the worker (is it the same program?)",
          h.fn_id));
      reply_error(h.task_id, describe_exception(std::make_exception_ptr(e), ""));
      return false;
    }
    // A task worker's output is shown under the function it runs; the name is written only
    // when it changes (names are constants: comparing where they lie is enough).
    if (!is_actor_ && fn->name.data() != output_named_) [[unlikely]]
      name_output(fn->name);
    invocation inv{*this,    seg,       h.task_id,       args,      h.nargs,
                   fn->name, instance_, h.retry_matcher, threaded_, group};
    const std::uint64_t outer = std::exchange(call_mark, next_id_);
    const std::uint64_t outer_task = std::exchange(this_process().task_id, h.task_id);
    fn->invoke(inv);  // replies with the outcome; never throws
    this_process().task_id = outer_task;
    call_mark = outer;
    return true;
  }

  void construct(std::span<const std::byte> payload) {
    task_header h;
    std::memcpy(&h, payload.data(), sizeof h);
    is_actor_ = true;
    this_process().kind = process_kind::actor;
    this_process().actor_id = h.target;
    this_process().restarts = static_cast<std::uint32_t>(std::max(0, h.max_retries));
    const std::uint32_t max_concurrency =
        std::max<std::uint32_t>(1, h.extra & max_concurrency_limit);
    groups_.assign(1, call_group{0, max_concurrency, 0, {}});
    if (h.extra & has_concurrency_groups) {
      // The groups are the last argument, after the constructor's.
      call_reader args(payload.subspan(sizeof h));
      std::span<const std::byte> last;
      for (std::uint32_t i = 0; i < h.nargs; ++i) last = args.next_value(seg);
      for (auto& [name, limit] : decode<std::vector<std::pair<std::string, std::uint32_t>>>(last))
        groups_.push_back(call_group{group_hash(name), std::max<std::uint32_t>(1, limit), 0, {}});
      --h.nargs;  // the constructor's
    }
    // With groups, a blocking plain method must not hold up the others': all run on threads.
    threaded_ =
        (max_concurrency > 1 || groups_.size() > 1) && (h.extra & plain_methods_on_loop) == 0;
    for (const call_group& g : groups_) thread_limit_ += g.limit;
    use_gpus(h.gpus);  // for life
    if (!run_call(h, payload.subspan(sizeof h), 0) || !instance_) {
      // The constructor threw (its error is the reply): an actor without its object ends.
      std::fflush(nullptr);
      _exit(3);
    }
  }

  /// Gives this process the GPUs (a mask of the runtime's) the calls it runs now were given:
  /// CUDA_VISIBLE_DEVICES and ray::get_gpu_ids(). No GPU: the environment it started with.
  void use_gpus(std::uint32_t mask) {
    if (!env_saved_) {
      const char* v = std::getenv("CUDA_VISIBLE_DEVICES");
      if (v) env_before_ = v;
      env_saved_ = true;
    }
    gpus_ = mask;
    auto& ids = assigned_gpu_ids();
    ids.clear();
    if (mask == 0) {
      if (env_before_)
        setenv("CUDA_VISIBLE_DEVICES", env_before_->c_str(), 1);
      else
        unsetenv("CUDA_VISIBLE_DEVICES");
      return;
    }
    const std::string list = hdr->gpu_ids_of(mask);
    setenv("CUDA_VISIBLE_DEVICES", list.c_str(), 1);
    for (std::size_t at = 0; at < list.size();) {
      const std::size_t end = std::min(list.find(',', at), list.size());
      ids.push_back(list.substr(at, end - at));
      at = end + 1;
    }
  }

  /// A call's message, copied to wait here until it starts, in a buffer a started call gave
  /// back when there is one: an actor's every call waits so, and malloc and free of its copy
  /// were some 160 of the actor's instructions per call.
  std::vector<std::byte> copy_of_call(std::span<const std::byte> payload) {
    std::vector<std::byte> call;
    if (!spare_calls_.empty()) {
      call = std::move(spare_calls_.back());
      spare_calls_.pop_back();
    }
    call.assign(payload.begin(), payload.end());
    return call;
  }
  /// Keeps a started call's buffer for the next copy (its bytes are no longer read: a body
  /// that outlives the call, a coroutine's or a method thread's, holds its own copy).
  void spare_call(std::vector<std::byte>&& call) {
    if (spare_calls_.size() < 64 && call.capacity() <= mailbox_slot::payload_bytes)
      spare_calls_.push_back(std::move(call));
  }

  /// Starts queued actor calls while their groups' limits allow, each group's in order.
  bool start_calls() {
    if (!is_actor_ || !instance_ || internal_waits_) return false;
    bool started = false;
    for (std::uint32_t i = 0; i < groups_.size(); ++i) {
      call_group& g = groups_[i];
      while (!g.calls.empty() && g.running < g.limit && !internal_waits_ && !exiting_) {
        std::vector<std::byte> call = std::move(g.calls.front());
        g.calls.pop_front();
        ++g.running;
        if (groups_.size() == 1) count_taken();
        run_task(call, i);
        spare_call(std::move(call));
        started = true;
      }
    }
    return started;
  }

  /// The error of the first of `spec`'s dependencies that failed, its blocks released (the
  /// call is never sent), or null.
  const std::exception_ptr* failed_dependency(const task_spec& spec) noexcept {
    for (const auto& d : spec.deps)
      if (d->st == object_state::status::failed) {
        for (auto* b : spec.blocks) release_block(b);
        return &d->error();
      }
    return nullptr;
  }

  /// `f(message)` with the message of a call this process makes (`id`: its result's). Ready
  /// dependencies travel by value, pending ones by id (the driver knows the ids of results of
  /// calls only, not of values put in this process). Refs inside the arguments (published
  /// while they were sized) travel by id, and actor handles inside them as they are: the
  /// driver keeps both alive until the call ends. A task's resources other than the
  /// default travel last (carries_resources); the driver schedules the call with them.
  template <class F>
  void with_call_message(const task_spec& spec, std::uint64_t id, F&& f) {
    const std::vector<std::uint64_t> refs = ids_of(held_refs(spec.held));
    const auto actors = held_actors(spec.held);
    const resource_request* resources = spec.resources.get();
    const task_header h{
        id,
        spec.fn_id,
        spec.nargs,
        static_cast<std::uint32_t>(actors.size()) | (resources ? carries_resources : 0),
        spec.target_actor,
        spec.max_retries,
        spec.group,
        spec.retry_matcher,
        static_cast<std::uint32_t>(refs.size()),
        spec.stream    ? returns_stream
        : spec.returns ? static_cast<std::uint32_t>(spec.returns->size())
                       : 0};
    f(call_message_writer(h, spec.args, spec.deps, actors, refs, resources));
  }

  static std::vector<std::uint64_t> ids_of(std::span<const state_ptr> refs) {
    std::vector<std::uint64_t> ids;
    ids.reserve(refs.size());
    for (const auto& r : refs) ids.push_back(r->id);
    return ids;
  }

  /// The ids of what a value holds, refs (published first) then actors, as a result or an
  /// export lists them after the value; counts them in `h`.
  /// A value about to go to the driver as a call's result or a stream's item: its header,
  /// the ids of the refs and handles inside it, and its block when it is too large to travel
  /// inline (filled already).
  struct outgoing_value {
    result_header h;
    std::vector<std::uint64_t> ids;
    object_block* block = nullptr;
    /// The message's bytes: the header, the inline value if any, the ids.
    std::size_t bytes() const noexcept {
      return sizeof h + (block ? 0 : h.len) + ids.size() * sizeof(std::uint64_t);
    }
    void write(std::byte* out, void (*fill)(void*, std::byte*), void* context) const {
      std::memcpy(out, &h, sizeof h);
      const std::size_t value = block ? 0 : h.len;
      if (value) fill(context, out + sizeof h);
      if (!ids.empty())
        std::memcpy(out + sizeof h + value, ids.data(), ids.size() * sizeof(std::uint64_t));
    }
  };
  outgoing_value prepare_value(std::uint64_t task_id, std::size_t size,
                               void (*fill)(void*, std::byte*), void* context,
                               const object_contents* held) {
    outgoing_value v{
        {task_id, result_header::value_inline, static_cast<std::uint32_t>(size), 0, 0, 0}, {}};
    if (held) v.ids = contents_ids(*held, v.h);
    if (size > inline_threshold()) {
      v.block = new_block(size);
      fill(context, v.block->data());
      v.h.status = result_header::value_block;
      v.h.len = 0;
      v.h.block = seg.offset_of(v.block);
    }
    return v;
  }

  std::vector<std::uint64_t> contents_ids(const object_contents& held, result_header& h) {
    publish_refs(held.refs);
    std::vector<std::uint64_t> ids = ids_of(held.refs);
    ids.insert(ids.end(), held.actors.begin(), held.actors.end());
    h.refs = static_cast<std::uint32_t>(held.refs.size());
    h.actors = static_cast<std::uint32_t>(held.actors.size());
    return ids;
  }

  void export_object(object_state& s) {
    if (s.id) return;
    if (s.st.load(std::memory_order_acquire) != object_state::status::ready)
      throw internal_error("coray: a ref to an unfinished object of this process has no id");
    const std::size_t len = s.block ? 0 : s.bytes.size();
    result_header h{0,
                    s.block ? result_header::value_block : result_header::value_inline,
                    static_cast<std::uint32_t>(len),
                    s.block ? seg.offset_of(s.block) : 0,
                    0,
                    0};
    const std::vector<std::uint64_t> ids =
        s.contained() ? contents_ids(*s.contained(), h) : std::vector<std::uint64_t>{};
    s.id = h.id = next_id_++;
    awaited_.emplace(s.id, &s);
    const std::size_t id_bytes = ids.size() * sizeof(std::uint64_t);
    send(msg_kind::export_object, sizeof h + len + id_bytes, [&](std::byte* out) {
      std::memcpy(out, &h, sizeof h);
      if (len) std::memcpy(out + sizeof h, s.bytes.data(), len);
      if (id_bytes) std::memcpy(out + sizeof h + len, ids.data(), id_bytes);
    });
  }

  /// The group an actor call runs in: the one it names, else the one its method declares
  /// if the actor has it, else the default one. Null, once an error reply is sent, when it
  /// names one the actor lacks. With groups, calls start out of their arrival order, so a
  /// call counts as taken (tasks_started, which tells the driver which calls a death
  /// interrupted) on arrival: one cut off before it started then fails rather than run twice.
  call_group* group_of(std::span<const std::byte> payload) {
    task_header h;
    std::memcpy(&h, payload.data(), sizeof h);
    if (groups_.size() == 1 && h.extra == 0) [[likely]]
      return &groups_[0];
    if (groups_.size() > 1) count_taken();
    const std::uint32_t wanted = h.extra != 0 ? h.extra : declared_group(h.fn_id);
    for (call_group& g : groups_)
      if (g.name_hash == wanted) return &g;
    if (h.extra == 0) return &groups_[0];
    if (groups_.size() == 1) count_taken();
    const usage_error e("coray: the call names a concurrency group the actor was not spawned with");
    const registered_function* fn = find_function(h.fn_id);
    reply_error(h.task_id, describe_exception(std::make_exception_ptr(e), fn ? fn->name : ""));
    return nullptr;
  }

  /// One more call taken (tasks_started): the driver sends again, after a death, only the
  /// calls beyond it.
  void count_taken() noexcept {
    me_->tasks_started.store(me_->tasks_started.load(std::memory_order_relaxed) + 1,
                             std::memory_order_release);
  }

  bool no_calls_left() const noexcept {
    for (const call_group& g : groups_)
      if (!g.calls.empty() || g.running != 0) return false;
    return true;
  }

  /// A method thread: hands a finished threaded call to the loop thread, which replies.
  static void post_finished(void* self, threaded_call* call) noexcept {
    static_cast<worker*>(self)->post({&reply_finished, call});  // bad_alloc: terminates
  }
  static void reply_finished(void* ctx, process& p, bool /*live*/) noexcept {
    auto& self = static_cast<worker&>(p);
    std::uint32_t group = 0;
    {
      const std::unique_ptr<threaded_call> call(static_cast<threaded_call*>(ctx));
      group = call->group();
      try {
        call->reply(self);
      } catch (...) {  // no reply could be sent: the process cannot go on honestly
        std::terminate();
      }
    }  // its arguments go here, on the loop thread
    self.call_finished(group);
  }

  void send_u64(msg_kind k, std::uint64_t v) noexcept {
    send(k, sizeof v, [&](std::byte* out) { std::memcpy(out, &v, sizeof v); });
  }

  /// The next items of a stream consumed here: a state for each id, which the driver holds
  /// for this process and settles (object_ready) next.
  void on_stream_ready(std::span<const std::byte> payload) {
    std::uint64_t head[2];
    if (payload.size() < sizeof head) return;
    std::memcpy(head, payload.data(), sizeof head);
    auto it = consuming_.find(head[0]);
    const std::size_t n = std::min<std::size_t>(head[1], payload.size() / 8 - 2);
    for (std::size_t k = 0; k < n; ++k) {
      std::uint64_t id;
      std::memcpy(&id, payload.data() + sizeof head + k * sizeof id, sizeof id);
      state_ptr s = awaited_state(id);
      if (it != consuming_.end()) {
        it->second->items.push_back(std::move(s));
        ++it->second->delivered;
      }
    }
    if (it != consuming_.end() && n) it->second->wake_consumer();
  }

  void on_object_ready(std::span<const std::byte> payload) {
    result_header h;
    std::memcpy(&h, payload.data(), sizeof h);
    auto it = awaited_.find(h.id);
    if (it == awaited_.end()) {
      if (h.status == result_header::value_block) release_block(seg.at<object_block>(h.block));
      return;
    }
    settle_from_result(*it->second, h, payload.subspan(sizeof h, h.len), seg);
  }

  /// Sends to the driver, waiting for room (the driver always drains). A message longer than
  /// the ring takes goes in a block the driver frees after reading it.
  template <class Fill>
  void send(msg_kind k, std::size_t size, Fill&& fill) {
    object_block* b = nullptr;
    if (size > outbox_->max_message_bytes()) {
      b = new_block(size);
      fill(b->data());
    }
    auto sent = [&] {
      return b ? try_send_block(seg, *outbox_, hdr->driver_bell, k, b)
               : try_send(*outbox_, hdr->driver_bell, k, size, fill);
    };
    backoff bo;  // reads the clock only if the ring is full
    while (!sent()) {
      if (bo.pause(std::chrono::microseconds(hdr->spin_us))) {
        if (getppid() != hdr->supervisor_pid) _exit(0);
        usleep(50);
      }
    }
  }

  std::uint32_t slot_;
  std::uint32_t generation_ = 0;
  worker_shared* me_ = nullptr;
  mailbox* inbox_ = nullptr;
  mailbox* outbox_ = nullptr;
  std::uint64_t next_id_ = 0;
  bool stop_ = false;
  bool stopping_ = false;
  bool exiting_ = false;  // ray::exit_actor: stop once the running call has replied
  std::unordered_map<std::uint64_t, object_state*> awaited_;  // nested results by id
  std::uint64_t lookups_ = 0;
  std::unordered_map<std::uint64_t, actor_info> found_;
  struct spawn_answer {
    std::uint64_t id = 0;  // 0: refused, for `error`
    wire_error error;
  };
  std::unordered_map<std::uint64_t, spawn_answer> spawned_;
  struct grant {
    std::uint64_t offset, requested, free_bytes, capacity;
  };
  std::uint64_t requests_ = 0;
  std::unordered_map<std::uint64_t, grant> granted_;
  // Actor mode.
  bool is_actor_ = false;
  const char* output_named_ = nullptr;  // the name last given to name_output
  void* instance_ = nullptr;
  void (*destroy_)(void*) = nullptr;
  std::vector<call_group> groups_{call_group{}};
  bool threaded_ = false;                    // plain methods run on threads_
  std::unique_ptr<method_threads> threads_;  // started at the first threaded call
  std::uint32_t thread_limit_ = 0;           // the groups' limits together
  std::uint32_t gpus_ = 0;                   // the GPUs its calls run with now (a mask)
  bool env_saved_ = false;                   // env_before_ was read
  std::optional<std::string> env_before_;    // CUDA_VISIBLE_DEVICES as the process started
  int internal_waits_ = 0;
  std::vector<std::uint64_t> blocked_marks_;         // blocking waits on the stack, innermost last
  std::deque<std::vector<std::byte>> deferred_;      // tasks that arrived during an internal wait
  std::vector<std::vector<std::byte>> spare_calls_;  // buffers of started calls, for the next
  std::mutex streams_mutex_;
  std::unordered_map<std::uint64_t, stream_run> streams_;  // generators running, by call id
  /// Streams consumed here, by call id, until they end.
  std::unordered_map<std::uint64_t, std::shared_ptr<stream_state>> consuming_;
  std::condition_variable flusher_wake_;
  std::thread flusher_;  // never joined: the process ends with _exit
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/worker.hpp>
#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

extern char** environ;

CORAY_BEGIN_NAMESPACE
namespace detail {

struct supervisor_command {
  /// `output`: the tail of process `slot`'s output (`slot` holds a pid), answered with an
  /// output_reply packet followed by its stdout's bytes, then its stderr's.
  enum op_t : std::uint32_t { start = 1, kill = 2, output = 3 };
  std::uint32_t op;
  std::uint32_t slot;
};
struct output_reply {
  std::int32_t pid;
  std::uint32_t out_bytes;
  std::uint32_t err_bytes;
};

inline constexpr const char* worker_env = "CORAY_WORKER";

/// The signal state of a coray process, whatever the program had set: every disposition
/// default (a SIGCHLD the program ignores would have the kernel reap workers unseen; its
/// handlers belong to the driver), but SIGINT ignored -- a terminal's Ctrl-C reaches the
/// whole process group, and it is the driver's to handle; the runtime ends with the driver.
/// Only `blocked` is blocked. Dispositions and mask carry over fork and exec.
inline void take_own_signals(const sigset_t& blocked) noexcept {
  for (int sig = 1; sig < NSIG; ++sig)
    if (sig != SIGKILL && sig != SIGSTOP) signal(sig, sig == SIGINT ? SIG_IGN : SIG_DFL);
  sigprocmask(SIG_SETMASK, &blocked, nullptr);
}

/// Closes the descriptors in [first, last] (close_range, or one by one before Linux 5.9).
inline void close_descriptors(unsigned first, unsigned last) noexcept {
#ifdef SYS_close_range
  if (syscall(SYS_close_range, first, last, 0) == 0) return;
#endif
  std::vector<int> open;
  if (DIR* dir = opendir("/proc/self/fd")) {
    while (dirent* e = readdir(dir)) {
      const long fd = std::strtol(e->d_name, nullptr, 10);
      if (e->d_name[0] != '.' && fd != dirfd(dir) && fd >= first && fd <= last)
        open.push_back(static_cast<int>(fd));
    }
    closedir(dir);
  }
  for (int fd : open) ::close(fd);
}

/// Closes every descriptor but stdin, stdout, stderr and `keep`: the program's own pipes and
/// sockets must reach end of file when the program closes them, not live on in the runtime.
inline void close_descriptors_except(std::vector<int> keep) noexcept {
  std::sort(keep.begin(), keep.end());
  unsigned first = 3;
  for (int fd : keep) {
    if (fd < static_cast<int>(first)) continue;
    if (static_cast<unsigned>(fd) > first) close_descriptors(first, static_cast<unsigned>(fd) - 1);
    first = static_cast<unsigned>(fd) + 1;
  }
  close_descriptors(first, UINT_MAX);
}

/// Runs `serve` (which never returns) on a thread with a deep stack, reserved but committed
/// only as it is used: a task blocked in ray::get runs its descendants sent to its worker
/// meanwhile above it on the stack (design.md, "Blocking inside a task"), so a tree of
/// blocking tasks needs stack in proportion to its depth (a few kB per level, several times
/// that under the sanitizers). Falls back to a smaller stack, then to this thread, where
/// memory is limited (ulimit -v).
template <class Serve>
[[noreturn]] void serve_on_deep_stack(Serve serve) {
  static Serve* body = nullptr;
  body = &serve;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  for (std::size_t size : {std::size_t{256} << 20, std::size_t{64} << 20}) {
    pthread_t t;
    if (pthread_attr_setstacksize(&attr, size) != 0) continue;
    if (pthread_create(
            &t, &attr,
            [](void*) -> void* {
              (*body)();
              return nullptr;
            },
            nullptr) == 0) {
      pthread_join(t, nullptr);  // serve exits the process; this thread only waits
      _exit(0);
    }
  }
  pthread_attr_destroy(&attr);
  serve();
  _exit(0);
}

/// Worker-side start-up shared by both start methods. Never returns.
[[noreturn]] inline void become_worker(segment& seg, std::uint32_t slot, std::uint32_t epoch,
                                       pid_t supervisor) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != supervisor) _exit(0);
  // A worker dies of its signals as a plain process does: handlers the program installed
  // (crash reporters, test frameworks) belong to the driver.
  sigset_t none;
  sigemptyset(&none);
  take_own_signals(none);
  // Output appears line by line, not when a buffer fills: a worker may be killed. A buffer
  // is given: glibc resets a stream's pointers only then, and a forked worker's stdout is the
  // driver's, already used (without it, its lines would wait for a full buffer).
  static char line_buffer[BUFSIZ];
  std::setvbuf(stdout, line_buffer, _IOLBF, sizeof line_buffer);
  char name[16];
  std::snprintf(name, sizeof name, "coray-w%u", slot);
  prctl(PR_SET_NAME, name);
  this_process() = {process_kind::task_worker, slot, {}};
  // The worker serves on a thread of its own (serve_on_deep_stack), which malloc would give
  // an arena of its own: the main arena is the one whose free top malloc_trim gives back, so
  // an idle worker keeps none of a big result's pages (process.hpp). A forked worker whose
  // driver had made other arenas (threads that allocated) before the runtime started may
  // still be given one of those: malloc hands out arenas freed by fork first.
  mallopt(M_ARENA_MAX, 1);
  // `seg` is moved into the worker's own process state.
  auto* w = new worker(slot, epoch);
  w->seg.adopt(seg);
  serve_on_deep_stack([w] { w->serve(); });
}

/// Called early by every program that may be a spawned worker (ray::runtime's constructor
/// does it). Returns at once in a normal process.
inline void enter_worker_if_spawned() {
  const char* env = std::getenv(worker_env);
  if (!env) return;
  unsigned fd = 0, slot = 0, epoch = 0;
  int sup = 0;
  if (std::sscanf(env, "%u:%u:%u:%d", &fd, &slot, &epoch, &sup) != 4) {
    std::fprintf(stderr, "coray: malformed %s=%s\n", worker_env, env);
    _exit(2);
  }
  unsetenv(worker_env);
  static segment seg;
  try {
    seg.attach(static_cast<int>(fd));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    _exit(2);
  }
  become_worker(seg, slot, epoch, sup);
}

struct supervisor_config {
  segment* seg;
  shared_header* hdr;
  int command_fd;
  start_method_id method;
  std::uint32_t epoch;
  std::vector<std::string> argv;  // for spawn
  output_options output;
};

[[noreturn]] inline void supervisor_main(supervisor_config cfg) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != cfg.hdr->driver_pid) _exit(0);
  prctl(PR_SET_NAME, "coray-super");
  const pid_t self = getpid();

  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  take_own_signals(chld);
  // Its stdout may be a pipe whose reader left (`program | head`): a write then fails, and
  // the runtime goes on. Workers take the default back (take_own_signals, POSIX_SPAWN_SETSIGDEF).
  signal(SIGPIPE, SIG_IGN);
  close_descriptors_except({cfg.seg->fd(), cfg.command_fd});
  int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  // Spawned workers inherit the segment as this descriptor. It is close-on-exec here and
  // made inheritable only in the spawned child (dup2 onto it), so no other program the
  // supervisor or a worker runs can ever hold the segment. Made under either start method:
  // a ray::process may choose spawn where the runtime forks.
  const int spawn_fd = fcntl(cfg.seg->fd(), F_DUPFD_CLOEXEC, 3);

  std::unordered_map<pid_t, std::uint32_t> children;
  log_monitor monitor(std::move(cfg.output), cfg.hdr);

  // A new process for `slot`: its pid, or -errno if it could not be made.
  auto start = [&](std::uint32_t slot) -> pid_t {
    const std::uint32_t how = cfg.hdr->worker(slot).start_as.load(std::memory_order_relaxed);
    const start_method_id method = how ? static_cast<start_method_id>(how - 1) : cfg.method;
    cfg.hdr->worker(slot).output_name.clear();  // a new process starts unnamed
    log_monitor::pipes out;
    log_monitor::make_pipes(out);  // without them, the process writes to the supervisor's
    if (method == start_method_id::fork) {
      pid_t pid = fork();
      if (pid == 0) {
        close(sfd);
        close(cfg.command_fd);
        if (spawn_fd >= 0) close(spawn_fd);
        monitor.become_child_output(out);
        become_worker(*cfg.seg, slot, cfg.epoch, self);
      }
      const int error = errno;
      monitor.watch(out, pid, slot);
      return pid < 0 ? -error : pid;
    }
    std::string env_entry = std::string(worker_env) + "=" + std::to_string(spawn_fd) + ":" +
                            std::to_string(slot) + ":" + std::to_string(cfg.epoch) + ":" +
                            std::to_string(self);
    std::vector<char*> envp;
    for (char** e = environ; *e; ++e)
      if (std::strncmp(*e, "CORAY_WORKER=", 13) != 0) envp.push_back(*e);
    envp.push_back(env_entry.data());
    envp.push_back(nullptr);
    std::vector<char*> argv;
    for (auto& a : cfg.argv) argv.push_back(a.data());
    argv.push_back(nullptr);
    // The supervisor's dispositions are already a worker's; only its mask is its own.
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    sigset_t pipe_default;
    sigemptyset(&pipe_default);
    sigaddset(&pipe_default, SIGPIPE);
    posix_spawnattr_setsigdefault(&attr, &pipe_default);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, cfg.seg->fd(), spawn_fd);
    if (out.out[1] >= 0) {
      posix_spawn_file_actions_adddup2(&actions, out.out[1], STDOUT_FILENO);
      posix_spawn_file_actions_adddup2(&actions, out.err[1], STDERR_FILENO);
    }
    pid_t pid = -1;
    const int err = spawn_fd < 0 ? EBADF
                                 : posix_spawn(&pid, "/proc/self/exe", &actions, &attr, argv.data(),
                                               envp.data());
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    monitor.watch(out, err ? -1 : pid, slot);
    return err ? -err : pid;
  };

  auto report_death = [&](std::uint32_t slot, int status) {
    worker_shared& w = cfg.hdr->worker(slot);
    w.wait_status.store(status, std::memory_order_relaxed);
    w.state.store(static_cast<std::uint32_t>(slot_state::dead), std::memory_order_release);
    cfg.hdr->deaths.fetch_add(1, std::memory_order_acq_rel);
    cfg.hdr->driver_bell.ring_always();
  };

  auto reap = [&](bool block) {
    int status = 0;
    pid_t pid;
    while ((pid = waitpid(-1, &status, block ? 0 : WNOHANG)) > 0) {
      auto it = children.find(pid);
      if (it == children.end()) continue;
      std::uint32_t slot = it->second;
      children.erase(it);
      if (block) continue;
      monitor.drain_process(pid);  // its last lines come before its death is known
      report_death(slot, status);
    }
  };

  std::vector<pollfd> fds;
  for (;;) {
    fds.assign({{cfg.command_fd, POLLIN, 0}, {sfd, POLLIN, 0}});
    monitor.add_pollfds(fds);
    const int n = poll(fds.data(), fds.size(), monitor.poll_timeout(log_monitor::clock::now()));
    if (n < 0) continue;
    monitor.on_ready(std::span(fds).subspan(2));
    if (fds[1].revents & POLLIN) {
      signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) == sizeof si) {
      }
      reap(false);
    }
    if (fds[0].revents & (POLLIN | POLLHUP)) {
      supervisor_command c{};
      ssize_t n = read(cfg.command_fd, &c, sizeof c);
      if (n <= 0) {
        // The driver is shutting down (or gone): end every worker, reap them, leave.
        for (auto& [pid, slot] : children) ::kill(pid, SIGKILL);
        reap(true);
        monitor.finish();  // every line written before the end is printed before ~runtime returns
        _exit(0);
      }
      if (c.op == supervisor_command::start) {
        pid_t pid = start(c.slot);
        if (pid > 0) {
          children[pid] = c.slot;
          cfg.hdr->worker(c.slot).pid.store(pid, std::memory_order_release);
        } else {
          report_death(c.slot, start_failure_status(-pid));
        }
      } else if (c.op == supervisor_command::output) {
        const int pid = static_cast<int>(c.slot);
        const log_monitor::tail* t = monitor.tail_of(pid);
        const std::string_view out = t ? std::string_view(t->out) : std::string_view();
        const std::string_view err = t ? std::string_view(t->err) : std::string_view();
        const output_reply head{pid, static_cast<std::uint32_t>(out.size()),
                                static_cast<std::uint32_t>(err.size())};
        std::string packet(reinterpret_cast<const char*>(&head), sizeof head);
        packet.append(out).append(err);
        ::send(cfg.command_fd, packet.data(), packet.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      } else if (c.op == supervisor_command::kill) {
        for (auto& [pid, slot] : children)
          if (slot == c.slot) ::kill(pid, SIGKILL);
      }
    }
  }
}

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/supervisor.hpp>
// #include <coray/errors.hpp>: inlined above
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// A started supervisor: its pid and the driver's end of its command socket.
struct supervisor_handle {
  pid_t pid = -1;
  int command_fd = -1;
};

/// Forks the supervisor. Call before the runtime makes any thread. Throws ray::runtime_error
/// saying why if it cannot (the errno's words: a process limit reads differently from memory).
inline supervisor_handle start_supervisor(segment& seg, shared_header* hdr, start_method_id method,
                                          std::uint32_t epoch, const std::vector<std::string>& argv,
                                          output_options output = {}) {
  auto refused = [](const char* what, int error) {
    return ray::runtime_error(fmt::format("coray: cannot start the supervisor process: {}: {}",
                                          what, std::strerror(error)));
  };
  // A socket, not a pipe: writing to a dead supervisor must be an error, not SIGPIPE.
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0)
    throw refused("socketpair", errno);
  std::fflush(nullptr);  // buffered output must not be written twice
  const pid_t pid = fork();
  if (pid < 0) {
    const int error = errno;
    ::close(fds[0]);
    ::close(fds[1]);
    throw refused("fork", error);
  }
  if (pid == 0) {
    ::close(fds[1]);
    supervisor_main({&seg, hdr, fds[0], method, epoch, argv, std::move(output)});
  }
  ::close(fds[0]);
  hdr->supervisor_pid = pid;
  return {pid, fds[1]};
}

/// Waits at most `limit` for the child `pid` to end, and reaps it: true once it has ended (or
/// is no child to wait for), false if it still runs. Wakes as it ends (a pidfd), not on a tick.
inline bool reaped_within(pid_t pid, std::chrono::milliseconds limit, int& status) noexcept {
  const auto deadline = std::chrono::steady_clock::now() + limit;
#ifdef SYS_pidfd_open
  const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
#else
  const int pidfd = -1;  // before Linux 5.3: a millisecond tick
#endif
  bool ended = false;
  for (;;) {
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid || (r < 0 && errno != EINTR)) {
      ended = true;
      break;
    }
    const auto left =
        std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    if (pidfd >= 0) {
      pollfd p{pidfd, POLLIN, 0};
      poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), INT_MAX)));
    } else {
      poll(nullptr, 0, 1);
    }
  }
  if (pidfd >= 0) ::close(pidfd);
  return ended;
}

/// Ends the supervisor: closing the command socket asks it to end every process and exit;
/// one that has not within `grace` (stopped, or stuck reaping) is killed, and its workers die
/// with it (PR_SET_PDEATHSIG). Returns its wait status (0 if there was none to reap). Blocks
/// at most `grace` plus the reaping of a killed process. Never throws.
inline int end_supervisor(pid_t pid, int command_fd,
                          std::chrono::milliseconds grace = std::chrono::seconds(2)) noexcept {
  if (command_fd >= 0) ::close(command_fd);
  int status = 0;
  if (pid <= 0 || reaped_within(pid, grace, status)) return status;
  ::kill(pid, SIGKILL);  // ends a stopped process too
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

/// The driver's end of the supervisor as one object: started once, commanded, watched for
/// its death, ended at teardown (end_supervisor: a stopped one cannot hang it).
class supervisor_link {
 public:
  supervisor_link() = default;
  supervisor_link(const supervisor_link&) = delete;
  supervisor_link& operator=(const supervisor_link&) = delete;
  ~supervisor_link() { end(); }

  void start(segment& seg, shared_header* hdr, start_method_id method, std::uint32_t epoch,
             const std::vector<std::string>& argv, output_options output = {}) {
    h_ = start_supervisor(seg, hdr, method, epoch, argv, std::move(output));
  }
  pid_t pid() const noexcept { return h_.pid; }
  /// False once the supervisor is known gone (or before start).
  bool running() const noexcept { return h_.pid > 0; }
  /// Sends a command; false if the supervisor is gone.
  bool command(supervisor_command c) noexcept {
    return h_.pid > 0 && ::send(h_.command_fd, &c, sizeof c, MSG_NOSIGNAL) == sizeof c;
  }
  /// The tail of what process `pid` wrote to stdout and stderr, as the supervisor keeps it;
  /// nullopt if the supervisor does not answer within `limit` (gone, or stopped). Blocks.
  std::optional<std::pair<std::string, std::string>> output_of(
      int pid, std::chrono::milliseconds limit = std::chrono::seconds(2)) {
    if (!command({supervisor_command::output, static_cast<std::uint32_t>(pid)})) return {};
    const auto deadline = std::chrono::steady_clock::now() + limit;
    std::vector<char> buf(sizeof(output_reply) + 2 * log_monitor::tail_bytes);
    for (;;) {
      const ssize_t n = ::recv(h_.command_fd, buf.data(), buf.size(), MSG_DONTWAIT);
      output_reply head{};
      if (n >= static_cast<ssize_t>(sizeof head)) {
        std::memcpy(&head, buf.data(), sizeof head);
        if (head.pid == pid &&
            static_cast<std::size_t>(n) == sizeof head + head.out_bytes + head.err_bytes) {
          const char* at = buf.data() + sizeof head;
          return std::pair{std::string(at, head.out_bytes),
                           std::string(at + head.out_bytes, head.err_bytes)};
        }
        continue;  // an answer to an earlier question that timed out
      }
      const auto left =
          std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR) || left.count() <= 0) return {};
      pollfd p{h_.command_fd, POLLIN, 0};
      ::poll(&p, 1, static_cast<int>(left.count()));
    }
  }
  /// If the supervisor died (killed from outside), reaps it and returns its wait status.
  bool reap_if_gone(int& wait_status) noexcept {
    if (h_.pid <= 0 || waitpid(h_.pid, &wait_status, WNOHANG) != h_.pid) return false;
    h_.pid = -1;
    return true;
  }
  /// Ends it (and with it every process); idempotent.
  void end() noexcept {
    if (h_.pid > 0 || h_.command_fd >= 0) end_supervisor(h_.pid, h_.command_fd);
    h_ = {};
  }

 private:
  supervisor_handle h_;
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/supervisor_link.hpp>
// #include <coray/detail/runtime/system.hpp>: inlined above
// #include <coray/detail/runtime/transport.hpp>: inlined above
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

class shm_transport final : public transport {
 public:
  static constexpr std::size_t mailbox_capacity = 1024;

  /// Bytes of segment the control header and the task workers' mailboxes take.
  static std::size_t control_bytes(std::uint32_t slots, std::uint32_t workers) {
    return shared_header::bytes_for(slots) +
           2 * workers * (mailbox::bytes_for(mailbox_capacity) + 64);
  }

  /// Lays out the control header for `slots` slots in `seg`.
  shm_transport(segment& seg, std::uint32_t slots, std::uint32_t spin_us,
                std::size_t inline_threshold)
      : seg_(seg) {
    hdr_ = new (seg.allocate_aligned(shared_header::bytes_for(slots), 64)) shared_header{};
    seg.header_root().header_offset = seg.offset_of(hdr_);
    hdr_->driver_pid = getpid();
    hdr_->slots = slots;
    hdr_->spin_us = spin_us;
    hdr_->inline_threshold = inline_threshold;
    hdr_->mailbox_capacity = mailbox_capacity;
    views_.resize(slots);
    signals_.resize(slots);
    for (std::uint32_t i = 0; i < slots; ++i) {
      worker_shared* s = views_[i].shared = new (&hdr_->worker(i)) worker_shared{};
      signals_[i] = {&s->state, &s->suspended, &s->blocked_mark};
    }
  }

  shared_header* header() const noexcept { return hdr_; }

  /// Forks the supervisor (before any process is started).
  void start_supervisor(start_method_id method, std::uint32_t epoch, std::vector<std::string> argv,
                        output_options output) {
    link_.start(seg_, hdr_, method, epoch, argv, std::move(output));
  }
  /// The tail of process `pid`'s stdout and stderr (the supervisor keeps them); nullopt if
  /// the supervisor does not answer.
  std::optional<std::pair<std::string, std::string>> output_of(int pid) {
    return link_.output_of(pid);
  }
  /// Ends the supervisor and with it every process (teardown).
  void end() noexcept { link_.end(); }

  void start(std::uint32_t slot) override {
    open_mailboxes(views_[slot]);
    if (std::find(active_.begin(), active_.end(), slot) == active_.end()) active_.push_back(slot);
    worker_shared& s = hdr_->worker(slot);
    s.state.store(static_cast<std::uint32_t>(slot_state::starting), std::memory_order_release);
    // No supervisor, no process: the slot stays dead and its calls fail.
    if (!link_.command({supervisor_command::start, slot}))
      s.state.store(static_cast<std::uint32_t>(slot_state::dead), std::memory_order_release);
  }
  void start_as(std::uint32_t slot, std::uint32_t how) override {
    hdr_->worker(slot).start_as.store(how, std::memory_order_relaxed);
  }
  void close(std::uint32_t slot) override {
    view& v = views_[slot];
    worker_shared& s = *v.shared;
    if (s.inbox) seg_.deallocate(seg_.at(s.inbox));
    if (s.outbox) seg_.deallocate(seg_.at(s.outbox));
    s.inbox = s.outbox = 0;
    v.inbox = v.outbox = nullptr;
    active_.erase(std::remove(active_.begin(), active_.end(), slot), active_.end());
  }
  void kill(std::uint32_t slot) override { link_.command({supervisor_command::kill, slot}); }
  int pid(std::uint32_t slot) const override {
    return views_[slot].shared->pid.load(std::memory_order_acquire);
  }
  bool can_start() const override { return link_.running(); }

  void await_exit(std::span<const std::uint32_t> slots, std::chrono::milliseconds grace) override {
    const auto deadline = clock::now() + grace;
    auto all_gone = [&] {
      for (std::uint32_t s : slots)
        if (alive(s)) return false;
      return true;
    };
    while (!all_gone() && clock::now() < deadline) {
      const std::uint32_t seen = hdr_->deaths.load(std::memory_order_acquire);
      hdr_->driver_bell.sleep([&] { return hdr_->deaths.load(std::memory_order_acquire) != seen; },
                              std::chrono::milliseconds(10));
    }
  }

  std::size_t max_message_bytes() const override {
    return mailbox_capacity / 2 * mailbox_slot::payload_bytes;
  }
  bool send(std::uint32_t slot, msg_kind kind, std::size_t size, fill_ref fill) override {
    view& v = views_[slot];
    if (try_send(*v.inbox, v.shared->bell, kind, size, fill)) return true;
    v.blocked = mailbox::slots_for(size);
    return false;
  }
  bool send_carried(std::uint32_t slot, msg_kind kind, object_block* carrier) override {
    view& v = views_[slot];
    if (try_send_block(seg_, *v.inbox, v.shared->bell, kind, carrier)) return true;
    v.blocked = 1;
    return false;
  }

  bool poll(transport_events& to) override {
    bool progress = false;
    for (std::size_t i = 0; i < active_.size(); ++i) progress |= drain(active_[i], 64, to);
    if (hdr_->deaths.load(std::memory_order_acquire) != seen_deaths_) {
      report_deaths(to);
      progress = true;
    }
    return progress;
  }

  void sleep(std::chrono::nanoseconds limit, transport_events& to, wake_check also) override {
    hdr_->driver_bell.sleep(
        [this, also] {
          if (also() || hdr_->deaths.load(std::memory_order_acquire) != seen_deaths_) return true;
          for (std::uint32_t i : active_)
            if (!views_[i].outbox->empty()) return true;
          // Waiting for room in an inbox: the process rings once it frees slots (Dekker with
          // worker::poll: flag set, fence, room read here; slots freed, fence, flag read there).
          for (std::uint32_t i : active_) {
            view& w = views_[i];
            if (w.blocked == 0) continue;
            w.shared->driver_waiting.store(1, std::memory_order_relaxed);
            std::atomic_thread_fence(std::memory_order_seq_cst);
            if (w.inbox->has_room(w.blocked)) {
              w.blocked = 0;  // retry now; a send that fails again sets it again
              return true;
            }
          }
          return false;
        },
        limit);
    check_supervisor(to);
  }

 private:
  struct view {
    worker_shared* shared = nullptr;
    mailbox* inbox = nullptr;
    mailbox* outbox = nullptr;
    std::uint32_t generation = 0;
    std::size_t blocked = 0;  // slots a message to it needed and did not find
  };

  void open_mailboxes(view& v) {
    const std::size_t bytes = mailbox::bytes_for(mailbox_capacity);
    worker_shared& s = *v.shared;
    if (!s.inbox) {  // both or neither: a slot refused for want of room keeps no half
      void* inbox = seg_.allocate_aligned(bytes, 64);
      try {
        s.outbox = seg_.offset_of(seg_.allocate_aligned(bytes, 64));
      } catch (...) {
        seg_.deallocate(inbox);
        throw;
      }
      s.inbox = seg_.offset_of(inbox);
    }
    v.inbox = mailbox::create(seg_.at(s.inbox), mailbox_capacity);
    v.outbox = mailbox::create(seg_.at(s.outbox), mailbox_capacity);
    v.blocked = 0;
    ++v.generation;
    s.tasks_started.store(0, std::memory_order_relaxed);
    s.suspended.store(0, std::memory_order_relaxed);
    s.blocked_mark.store(0, std::memory_order_relaxed);
    s.pid.store(0, std::memory_order_relaxed);
    s.served.store(0, std::memory_order_relaxed);
    s.generation.store(v.generation, std::memory_order_relaxed);
  }

  bool drain(std::uint32_t slot, int budget, transport_events& to) {
    view& w = views_[slot];
    bool progress = false;
    message_view m;
    while (budget-- > 0 && w.outbox && peek_message(seg_, *w.outbox, gathered_, m)) {
      to.on_message(slot, m.kind, m.payload, m.block);
      if (!w.outbox) break;  // the slot was closed while handling
      w.outbox->pop(m.slots);
      progress = true;
    }
    return progress;
  }

  void report_deaths(transport_events& to) {
    seen_deaths_ = hdr_->deaths.load(std::memory_order_acquire);
    std::vector<std::uint32_t> dead;
    for (std::uint32_t i : active_)
      if (!alive(i)) dead.push_back(i);
    for (std::uint32_t i : dead) {
      drain(i, 1 << 30, to);  // replies it managed to send count
      const worker_shared& s = *views_[i].shared;
      process_death how{s.pid.load(std::memory_order_relaxed),
                        s.wait_status.load(std::memory_order_relaxed),
                        s.tasks_started.load(std::memory_order_acquire),
                        s.served.load(std::memory_order_acquire) != 0};
      views_[i].blocked = 0;
      to.on_death(i, how);
    }
  }

  /// The supervisor died (killed from outside): its processes died with it and none can be
  /// started, so the orchestrator fails every call rather than letting it wait forever.
  void check_supervisor(transport_events& to) {
    int st;
    if (!link_.reap_if_gone(st)) return;
    for (std::uint32_t i : active_) {
      views_[i].shared->wait_status.store(st, std::memory_order_relaxed);
      views_[i].shared->state.store(static_cast<std::uint32_t>(slot_state::dead),
                                    std::memory_order_release);
    }
    report_deaths(to);
    to.on_lost("coray: the supervisor process " + describe_exit(st) +
               ", taking the workers with it");
  }

  segment& seg_;
  shared_header* hdr_ = nullptr;
  std::vector<view> views_;            // one per slot: task workers, then actors
  std::vector<std::uint32_t> active_;  // slots with mailboxes (a process, or one starting)
  std::vector<std::byte> gathered_;    // multi-slot messages, read contiguously
  std::uint32_t seen_deaths_ = 0;
  supervisor_link link_;
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/shm_transport.hpp>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

inline std::uint32_t next_epoch() noexcept {
  static std::uint32_t e = 0;
  return ++e;
}

class local_driver final : public driver {
 public:
  /// With `cluster`, the other nodes' task workers are scheduled too (cluster_seam.hpp): the
  /// orchestrator sees them as more task workers, behind the transport the seam wraps.
  explicit local_driver(driver_config cfg, cluster_seam* cluster = nullptr) {
    epoch = next_epoch();
    const std::uint32_t slots = cfg.num_workers + cfg.max_actors;
    create_segment(cfg, segment::root_bytes + cfg.object_store_bytes +
                            shm_transport::control_bytes(slots, cfg.num_workers) + (1 << 20));
    transport_.emplace(seg, slots, cfg.spin_us, cfg.inline_threshold);
    hdr = transport_->header();
    const std::uint32_t remote = cluster ? cluster->remote_workers() : 0;
    const std::uint32_t remote_actors = cluster ? cluster->remote_actors() : 0;
    if (cluster) cluster_ = cluster->wrap(*transport_, seg, cfg.num_workers, cfg.max_actors);
    active_ = cluster_ ? cluster_.get() : &*transport_;
    orchestrator_config oc{cfg.num_workers + remote, cfg.max_actors + remote_actors,
                           cfg.max_tasks_in_flight_per_worker, epoch, cfg.spill_directory};
    oc.num_cpus = to_resource_amount(cfg.num_cpus.value_or(cfg.num_workers));
    if (cluster) oc.other_nodes = cluster->remote_resources();
    oc.num_gpus = to_resource_amount(cfg.num_gpus.value_or(0));
    oc.gpu_ids = cfg.gpu_ids;
    oc.task_history = cfg.task_history;
    oc.record_timeline = cfg.record_timeline;
    for (const auto& [name, x] : cfg.resources) oc.custom_resources[name] = to_resource_amount(x);
    hdr->set_gpu_ids(cfg.gpu_ids);  // workers name their GPUs from these
    orchestrator_.emplace(std::move(oc), seg, *active_);
    transport_->start_supervisor(cfg.method, epoch, std::move(cfg.argv), std::move(cfg.output));
    orchestrator_->start_workers();
    process::current() = this;
    memory_timer_ = add_timer(clock::now() + memory_return::period, &on_memory_timer, this);
  }

  ~local_driver() override {
    cancel_timer(memory_timer_);
    orchestrator_->stop_idle_actors();
    if (process::current() == this) process::current() = nullptr;
    transport_->end();  // the supervisor ends every process, then itself
    orchestrator_->clear();
  }

  // ---- process ---------------------------------------------------------------------------
  state_ptr submit(task_spec&& spec) override {
    state_ptr result = orchestrator_->submit(std::move(spec));
    turn_in_burst();
    return result;
  }
  state_ptr submit_into(task_spec&& spec, state_ptr result) override {
    orchestrator_->submit_into(std::move(spec), result);
    turn_in_burst();
    return result;
  }
  void cancel_call(std::uint64_t id, bool force) override { orchestrator_->cancel_call(id, force); }
  void stream_credit(std::uint64_t id, std::uint64_t limit) override {
    orchestrator_->stream_credit(id, limit);
  }
  void actor_handle(std::uint64_t id, int delta) noexcept override {
    orchestrator_->actor_ref(id, delta);
  }
  void kill_actor(std::uint64_t id) override { orchestrator_->kill_actor(id); }
  actor_info lookup_actor(std::string_view name) override {
    return orchestrator_->lookup_actor(name);
  }

  /// A new block for the user (a put, a large argument). When the store is full and spilling
  /// is on, it also lets replies on their way arrive for up to a second: they may free
  /// memory or make it spillable.
  object_block* new_block(std::size_t size) override {
    const auto deadline = clock::now() + std::chrono::seconds(1);
    for (;;) {
      try {
        return orchestrator_->allocate(size);
      } catch (const object_store_full&) {
        if (!orchestrator_->spiller().enabled() || in_poll_ || clock::now() > deadline) throw;
        if (!poll()) sched_yield();
      }
    }
  }
  void release_block(object_block* b) noexcept override { seg.release(b); }
  void block_adopted(object_state& s) override { orchestrator_->spiller().adopted(s); }
  void state_released(object_state& s) noexcept override {
    orchestrator_->spiller().released(s);
    if (s.id) orchestrator_->forget(s);
  }
  void publish_refs(std::span<const state_ptr> refs) override { orchestrator_->publish_refs(refs); }
  state_ptr ref_from_id(std::uint64_t id) override { return orchestrator_->ref_from_id(id); }
  void restore(object_state& s) override {
    orchestrator_->spiller().restore(s, new_block(static_cast<std::size_t>(s.spill_size())));
  }

  // ---- driver ----------------------------------------------------------------------------
  std::uint32_t num_workers() const noexcept override {
    return orchestrator_->config().num_workers;
  }
  std::vector<int> worker_pids() const override {
    std::vector<int> pids;
    for (std::uint32_t i = 0, n = num_workers(); i < n; ++i) pids.push_back(active_->pid(i));
    return pids;
  }
  std::vector<state::task_info> list_tasks() const override { return orchestrator_->list_tasks(); }
  std::vector<state::actor_info> list_actors() const override {
    return orchestrator_->list_actors();
  }
  std::vector<timeline_entry> timeline() const override { return orchestrator_->timeline(); }
  bool records_timeline() const noexcept override { return orchestrator_->records_timeline(); }
  std::vector<state::worker_info> list_workers() const override {
    return orchestrator_->list_workers();
  }
  std::vector<state::object_info> list_objects() const override {
    return orchestrator_->list_objects();
  }
  std::optional<std::pair<std::string, std::string>> process_output(int pid) override {
    return transport_->output_of(pid);
  }
  std::uint64_t spawn_actor(actor_spawn_request req) override {
    return orchestrator_->spawn_actor(std::move(req));
  }
  int actor_pid(std::uint64_t id) const override {
    const actor_entry* a = orchestrator_->actors().find(id);
    return !a || a->dead ? 0 : active_->pid(a->slot);
  }
  std::optional<actor_process_status> actor_status(std::uint64_t id) const override {
    const actor_entry* a = orchestrator_->actors().find(id);
    if (!a) return std::nullopt;
    if (a->dead) return actor_process_status{a->pid, true, a->wait_status};
    return actor_process_status{active_->pid(a->slot), false, 0};
  }
  std::pair<std::uint64_t, state_ptr> create_placement_group(std::vector<resource_request> bundles,
                                                             bundle_strategy strategy) override {
    return orchestrator_->create_placement_group(std::move(bundles), strategy);
  }
  void remove_placement_group(std::uint64_t id) override {
    orchestrator_->remove_placement_group(id);
  }
  std::vector<int> placement_group_nodes(std::uint64_t id) const override {
    return orchestrator_->placement_group_nodes(id);
  }
  std::map<std::string, double> resources(bool available, int node = -1) override {
    return orchestrator_->resources(available, node);
  }
  std::uint64_t spilled_objects() const noexcept override {
    return orchestrator_->spiller().spilled_objects();
  }

 protected:
  bool poll() override {
    struct in_poll {
      bool& flag;
      bool was;
      explicit in_poll(bool& f) : flag(f), was(f) { flag = true; }
      ~in_poll() { flag = was; }
    } guard(in_poll_);
    orchestrator_->stamp_turn();
    bool progress = active_->poll(*orchestrator_);
    progress |= orchestrator_->service();
    return progress;
  }

  void sleep(std::chrono::nanoseconds limit) override {
    // Jobs other threads hand over wake the loop too (they ring the driver's doorbell).
    const auto next_start = orchestrator_->next_start();
    if (next_start != clock::time_point::max())
      limit = std::clamp<std::chrono::nanoseconds>(next_start - clock::now(),
                                                   std::chrono::nanoseconds(0), limit);
    active_->sleep(
        limit, *orchestrator_,
        {[](const void* p) { return static_cast<const local_driver*>(p)->jobs_waiting(); }, this});
  }

 private:
  /// Submissions between two turns of the loop in a burst (see turn_in_burst).
  static constexpr std::uint32_t burst_turn = 16;

  /// A burst of calls to an actor from the loop's thread (a loop of `.call()`, then a
  /// `get`) outruns it: its inbox holds 1,024 calls, the rest wait in the driver, and its
  /// replies are read, and the calls behind them sent, only when the loop turns, so without
  /// a turn the actor would stop once its outbox is full, until the burst ends. While an
  /// actor's calls wait, the loop turns once every `burst_turn` submissions (never inside a
  /// poll): the actor works through the burst beside it. Not for task calls waiting in the
  /// run queue: a turn gives a task worker only its few calls in flight, and a million tasks
  /// ran slower with turns (design.md, "Bursts").
  void turn_in_burst() {
    if (++since_turn_ < burst_turn || !orchestrator_->actor_calls_waiting()) return;
    since_turn_ = 0;
    serve_once();
  }

  static void on_memory_timer(void* self) {
    auto& d = *static_cast<local_driver*>(self);
    d.orchestrator_->return_memory();
    d.memory_timer_ = d.add_timer(clock::now() + memory_return::period, &on_memory_timer, self);
  }

  /// The shared segment, with the object store in it; refused with the figures when the
  /// address space is limited below it (ulimit -v). (make_local_driver has refused a store
  /// larger than memory.)
  void create_segment(const driver_config& cfg, std::size_t bytes) {
    try {
      seg.create(bytes);
    } catch (const ray::runtime_error& e) {
      throw ray::runtime_error(fmt::format(
          "{}, asking for a shared segment of {} bytes, {} of them the object store "
          "(runtime_options::object_store_bytes; an address-space limit such as `ulimit -v` "
          "below the segment refuses it)",
          e.what(), bytes, cfg.object_store_bytes));
    }
  }

  // Declared in the order they are built; destroyed in reverse (the orchestrator first).
  std::optional<shm_transport> transport_;
  /// The cluster's transport (this machine's and the other nodes' processes), if any.
  std::unique_ptr<transport> cluster_;
  transport* active_ = nullptr;  // what the orchestrator uses: cluster_, else transport_
  std::optional<orchestrator> orchestrator_;
  bool in_poll_ = false;
  std::uint32_t since_turn_ = 0;  // submissions since the loop last turned in a burst
  std::uint64_t memory_timer_ = 0;
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/local_driver.hpp>
// #include <coray/detail/runtime/resource_ledger.hpp>: inlined above
// #include <coray/detail/runtime/supervisor.hpp>: inlined above
// #include <coray/detail/runtime/system.hpp>: inlined above
// #include <coray/errors.hpp>: inlined above
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// A resource amount given by an option or an environment variable; invalid_resources if
/// it is not a number of 0 or more.
inline double checked_amount(double x, std::string_view what) {
  if (to_resource_amount(x) < 0)
    throw invalid_resources(fmt::format(
        "ray::runtime: {} is {}: an amount of a resource must be a finite number, 0 or more", what,
        x));
  return x;
}
inline std::optional<double> amount_from_env(const char* var) {
  const char* v = std::getenv(var);
  if (!v || !*v) return std::nullopt;
  char* end = nullptr;
  const double x = std::strtod(v, &end);
  if (end == v || *end != '\0')
    throw invalid_resources(fmt::format("ray::runtime: {}={} is not a number", var, v));
  return checked_amount(x, var);
}
/// CORAY_RESOURCES: custom resources as `name=amount,name=amount` ("disk=2,foo=1").
inline std::map<std::string, double> resources_from_env() {
  std::map<std::string, double> out;
  const char* v = std::getenv("CORAY_RESOURCES");
  if (!v) return out;
  const std::string s(v);
  for (std::size_t at = 0; at < s.size();) {
    const std::size_t end = std::min(s.find(',', at), s.size());
    const std::string item = s.substr(at, end - at);
    const std::size_t eq = item.find('=');
    char* num_end = nullptr;
    const double x = eq == std::string::npos ? 0 : std::strtod(item.c_str() + eq + 1, &num_end);
    if (eq == 0 || eq == std::string::npos || num_end == item.c_str() + eq + 1 || *num_end)
      throw invalid_resources(fmt::format(
          "ray::runtime: CORAY_RESOURCES={} is not a list of name=amount separated by commas", s));
    out[item.substr(0, eq)] = checked_amount(x, "CORAY_RESOURCES");
    at = end + 1;
  }
  return out;
}

/// Fills in the runtime's resources: the options, else the environment (CORAY_NUM_CPUS,
/// CORAY_NUM_GPUS, CORAY_RESOURCES), else the usable cores (at least num_workers) and the
/// GPUs detected.
inline void resolve_resources(driver_config& cfg) {
  if (cfg.num_cpus) checked_amount(*cfg.num_cpus, "runtime_options::num_cpus");
  if (!cfg.num_cpus) cfg.num_cpus = amount_from_env("CORAY_NUM_CPUS");
  // At least one per worker: num_workers above the cores still runs that many tasks at once,
  // as it did before CPUs were counted, and default tasks keep their fast path.
  if (!cfg.num_cpus) cfg.num_cpus = std::max(usable_cores(), cfg.num_workers);
  if (cfg.num_gpus) checked_amount(*cfg.num_gpus, "runtime_options::num_gpus");
  if (!cfg.num_gpus) cfg.num_gpus = amount_from_env("CORAY_NUM_GPUS");
  cfg.gpu_ids = detect_gpu_ids();
  if (cfg.num_gpus) {
    // As many ids as started GPUs: the detected ones first, then numbers (a declared GPU).
    const auto n = static_cast<std::size_t>(std::ceil(std::min(*cfg.num_gpus, 1e6)));
    cfg.gpu_ids.resize(std::min(cfg.gpu_ids.size(), n));
    while (cfg.gpu_ids.size() < n) cfg.gpu_ids.push_back(std::to_string(cfg.gpu_ids.size()));
  } else {
    cfg.num_gpus = static_cast<double>(cfg.gpu_ids.size());
  }
  if (cfg.gpu_ids.size() > resource_ledger::max_gpus)
    throw invalid_resources(fmt::format("ray::runtime: {} GPUs: a runtime may have at most {}",
                                        cfg.gpu_ids.size(), resource_ledger::max_gpus));
  if (cfg.resources.empty()) cfg.resources = resources_from_env();
  for (const auto& [name, x] : cfg.resources) {
    if (name.empty() || name == "CPU" || name == "GPU")
      throw invalid_resources(fmt::format(
          "ray::runtime: '{}' cannot name a custom resource (CPU and GPU are num_cpus and "
          "num_gpus)",
          name));
    checked_amount(x, fmt::format("the amount of resource '{}'", name));
  }
}

CORAY_API void resolve_driver_config(driver_config& cfg) {
  if (!cfg.num_workers) cfg.num_workers = usable_cores();
  resolve_resources(cfg);
  // The store lives in shared memory: one larger than the memory this process may use could
  // never be filled, and would only fail later, less clearly.
  const std::uint64_t memory = usable_memory_bytes();
  if (!cfg.object_store_bytes) cfg.object_store_bytes = static_cast<std::size_t>(memory * 3 / 10);
  if (cfg.object_store_bytes > memory)
    throw usage_error(fmt::format(
        "ray::runtime: runtime_options::object_store_bytes is {} bytes, more than the {} "
        "bytes of memory this process may use (RAM, or its cgroup's memory.max): the store "
        "lives in shared memory",
        cfg.object_store_bytes, memory));
  if (cfg.argv.empty()) {
    // No argv given: the program's own arguments, as spawned workers re-run it.
    std::ifstream f("/proc/self/cmdline", std::ios::binary);
    std::string a;
    while (std::getline(f, a, '\0')) cfg.argv.push_back(a);
    if (cfg.argv.empty()) cfg.argv.emplace_back("coray-worker");
  }
}

CORAY_API std::unique_ptr<driver> make_local_driver(driver_config cfg, cluster_seam* cluster) {
  resolve_driver_config(cfg);
  return std::make_unique<local_driver>(std::move(cfg), cluster);
}

CORAY_API void enter_spawned_worker() { enter_worker_if_spawned(); }

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/entry_impl.hpp>
// end <coray/detail/runtime/entry.hpp>
// #include <coray/detail/runtime/foreign.hpp>: inlined above
// #include <coray/errors.hpp>: inlined above
// #include <coray/sync_wait.hpp>: inlined above
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

CORAY_BEGIN_NAMESPACE

/// How worker processes are started (as in Python's multiprocessing).
enum class start_method {
  /// fork() from the supervisor, a small process made when the runtime starts: fast, and
  /// safe even when the driver has grown threads since.
  fork,
  /// posix_spawn() of /proc/self/exe: a fresh program image that becomes a worker in
  /// ray::runtime's constructor (or in ray::enter_worker_if_spawned()).
  spawn,
};

struct runtime_options {
  /// Worker processes; 0 means the usable cores (CPU affinity and cgroup quota).
  std::uint32_t num_workers = 0;
  /// Capacity of the object store; 0 means 30% of usable memory, as Ray does.
  std::size_t object_store_bytes = 0;
  /// Unset: the CORAY_START_METHOD environment variable ("fork" or "spawn"), else fork.
  std::optional<ray::start_method> start_method = std::nullopt;
  /// Values up to this size travel inside messages; larger ones go through the store.
  /// At most 120 KiB (what one mailbox message carries).
  std::size_t inline_threshold = 100 * 1024;
  /// How long an idle process spins (3 us of pure spin, then yielding the core between
  /// looks) before it sleeps on its futex. A call's body blocked in a wait sleeps right
  /// after the pure spin while other processes keep the machine's cores busy.
  std::chrono::microseconds spin = std::chrono::microseconds(200);
  /// Calls queued on one worker beyond the one it runs; more waits in the driver. In a
  /// cluster, a worker on another node takes 16 times as many, to cover the round trip.
  std::uint32_t max_tasks_in_flight_per_worker = 4;
  /// Actors that may be alive at once (each is a process with two 256 KiB mailboxes).
  std::uint32_t max_actors = 1024;
  /// When set, objects that do not fit in the store spill to an unnamed file in this
  /// directory (Ray's object spilling) instead of failing with object_store_full.
  std::string spill_directory = {};
  /// CPUs the runtime schedules by (Ray's `num_cpus`; a task holds 1 while it runs). Unset:
  /// the CORAY_NUM_CPUS environment variable, else the usable cores, or num_workers if that
  /// is more (each worker can run a task at once, as before CPUs were counted).
  std::optional<double> num_cpus = std::nullopt;
  /// GPUs (Ray's `num_gpus`; a fraction such as 0.5 is allowed). Unset: CORAY_NUM_GPUS, else
  /// the GPUs detected: CUDA_VISIBLE_DEVICES's ids when it is set, else those the NVIDIA
  /// driver lists in /proc/driver/nvidia/gpus; 0 when none. Declared GPUs that were not
  /// detected are numbered on from the detected ones. At most 32.
  std::optional<double> num_gpus = std::nullopt;
  /// Custom resources by name: `{.resources = {{"disk", 2}}}`. Empty: CORAY_RESOURCES,
  /// written `name=amount,name=amount` (`CORAY_RESOURCES=disk=2,licence=1`).
  std::map<std::string, double> resources = {};
  /// Each line a worker or actor writes to stdout or stderr reaches this process's stdout or
  /// stderr prefixed with its process, `(name pid=1234) line` (the function it runs, or the
  /// actor's class), identical lines from several processes folded as Ray folds them
  /// (`[repeated 7x across cluster]`). False: not shown (Ray's `log_to_driver`).
  bool log_to_driver = true;
  /// When set, each worker's and actor's output is also written, as it came, to
  /// `worker-<pid>.out` and `worker-<pid>.err` in this directory (made if missing).
  std::string log_directory = {};
  /// How many finished tasks and actor calls ray::state::list_tasks keeps, the oldest
  /// evicted first (Ray keeps a bounded task history likewise). 0 keeps none.
  std::size_t task_history = 10000;
  /// Records when each call was submitted, sent and settled, for ray::timeline (the last
  /// task_history calls, or 10,000 when that is 0). Also turned on by CORAY_TIMELINE=1.
  /// Off, it costs a branch per call.
  bool record_timeline = false;
  /// Serves the dashboard, a web page of the runtime's processes, actors, tasks, objects,
  /// configuration and logs, and prints its URL (Ray's `include_dashboard`). Also turned on
  /// by CORAY_DASHBOARD=1. The dashboard's code comes with <coray/dashboard.hpp> (include it
  /// in one file of the program) or with coray's compiled library.
  bool include_dashboard = false;
  /// The dashboard's port; when taken, the next free one (the printed URL says which). 0: any.
  std::uint16_t dashboard_port = 8265;
  /// The address it listens on. Anything but a loopback address serves only requests that
  /// carry the run's token (the printed URL has it).
  std::string dashboard_host = "127.0.0.1";
};

/// Becomes a worker if this process was spawned as one; returns at once otherwise. The
/// runtime's constructor calls it; call it yourself before anything else in main() if main
/// does work before constructing the runtime that workers must not repeat.
inline void enter_worker_if_spawned() { detail::enter_spawned_worker(); }

namespace detail {
/// A running dashboard (<coray/dashboard.hpp>); destroying it stops it.
class dashboard_service {
 public:
  virtual ~dashboard_service() = default;
  /// http://host:port/?token=...
  virtual std::string url() const = 0;
};
using dashboard_starter = std::unique_ptr<dashboard_service> (*)(const runtime_options&);
/// Set when the dashboard's code is in the program: by <coray/dashboard.hpp> header-only, by
/// coray's compiled library when it was built with it. Null otherwise, and a runtime asked
/// for a dashboard refuses to start. The runtime reaches the dashboard only through this, so
/// programs without it never parse the HTTP and JSON libraries it uses.
inline dashboard_starter& dashboard_start_hook() noexcept {
  static dashboard_starter f = nullptr;
  return f;
}

/// Builds the driver instead of make_local_driver when a cluster's code is in the program
/// (<coray/mpi.hpp> sets it): under `mpirun` it returns rank 0's driver, and on every other
/// rank it serves as a node until rank 0's runtime ends, then exits the process.
using cluster_starter = std::unique_ptr<driver> (*)(driver_config);
inline cluster_starter& cluster_start_hook() noexcept {
  static cluster_starter f = nullptr;
  return f;
}

/// Run by the runtime's destructor first, while the runtime still serves: ray::process joins
/// its non-daemon children there (set once a process is started). Never throws.
inline void (*&before_runtime_end() noexcept)() noexcept {
  static void (*f)() noexcept = nullptr;
  return f;
}
}  // namespace detail

class runtime {
 public:
  explicit runtime(runtime_options opts = {}) : runtime(0, nullptr, opts) {}

  runtime(int argc, char** argv, runtime_options opts = {}) {
    detail::enter_spawned_worker();
    if (detail::process::here() || detail::runtime_gate::instance().accepts_calls())
      throw usage_error("coray: a runtime is already running in this process");
    detail::driver_config cfg;
    cfg.num_workers = opts.num_workers;  // 0: make_local_driver counts the usable cores
    cfg.max_actors = opts.max_actors;
    cfg.object_store_bytes = opts.object_store_bytes;  // 0: 30% of usable memory, likewise
    cfg.method = resolve(opts.start_method) == start_method::spawn ? detail::start_method_id::spawn
                                                                   : detail::start_method_id::fork;
    // A value inline in a reply must fit one mailbox message (half a ring, 120 KiB).
    cfg.inline_threshold = std::min<std::size_t>(opts.inline_threshold, 120 * 1024);
    cfg.spin_us = static_cast<std::uint32_t>(opts.spin.count());
    cfg.max_tasks_in_flight_per_worker =
        std::max<std::uint32_t>(1, opts.max_tasks_in_flight_per_worker);
    if (argv) cfg.argv.assign(argv, argv + argc);  // else /proc/self/cmdline's
    cfg.spill_directory = opts.spill_directory;
    cfg.num_cpus = opts.num_cpus;
    cfg.num_gpus = opts.num_gpus;
    cfg.resources = opts.resources;
    cfg.output = {opts.log_to_driver, opts.log_directory};
    cfg.task_history = opts.task_history;
    const char* timeline = std::getenv("CORAY_TIMELINE");
    cfg.record_timeline = opts.record_timeline || (timeline && std::string_view(timeline) == "1");
    if (!opts.log_directory.empty()) make_log_directory(opts.log_directory);
    const bool dashboard = wants_dashboard(opts);
    auto cluster = detail::cluster_start_hook();
    driver_ = cluster ? cluster(std::move(cfg)) : detail::make_local_driver(std::move(cfg));
    driver_->open_handoff(driver_->hdr->driver_bell, detail::runtime_gate::phase::calls);
    if (dashboard) start_dashboard(opts);
  }

  runtime(const runtime&) = delete;
  runtime& operator=(const runtime&) = delete;
  /// Ends every worker and frees the segment. Refs still held afterwards are inert. Calls
  /// other threads made that the runtime has not taken yet fail; their later calls throw
  /// ray::runtime_error. Call it on the runtime's thread.
  ///
  /// Non-daemon ray::process children are joined first, as Python joins them at exit; the
  /// daemon ones end with the runtime.
  ///
  /// Only in the process that built the runtime: a process forked from it shares its
  /// segment, mailboxes and supervisor, and its exit() runs static destructors (ray::init's
  /// runtime among them). There the runtime is left as it lies, its memory not freed.
  ~runtime() {
    if (getpid() != builder_pid_) {
      (void)dashboard_.release();  // its threads are the builder's
      (void)driver_.release();
      return;
    }
    if (auto end = detail::before_runtime_end()) end();
    driver_->close_handoff();  // fails what the dashboard's threads wait for on the loop
    dashboard_.reset();
  }

  /// Runs the coroutine `main` to completion on this thread, serving the runtime meanwhile;
  /// returns its result or rethrows its exception. On the thread that built the runtime.
  template <class T>
  T run(async<T> main) {
    if (!driver_->is_loop_thread())
      throw ray::runtime_error(
          "ray::runtime::run: must be called on the thread that built the runtime (other threads "
          "use ray::sync_wait)");
    auto h = main.handle();
    driver_->schedule(h);
    driver_->run_until([&] { return h.done(); });
    return main.take();
  }

  /// Serves the runtime on this thread (the one that built it) until `done()` holds: what
  /// calls from other threads need when this thread has nothing of its own to wait for.
  /// `done` is checked after each piece of work and at least every millisecond.
  template <class Done>
  void serve_until(Done&& done) {
    if (!driver_->is_loop_thread())
      throw ray::runtime_error(
          "ray::runtime::serve_until: must be called on the thread that built the runtime");
    while (!done()) driver_->run_until(done, detail::clock::now() + std::chrono::milliseconds(1));
  }

  std::uint32_t num_workers() const noexcept { return driver_->num_workers(); }
  /// Process ids of the task workers, in slot order (0 for one being started).
  std::vector<int> worker_pids() const { return driver_->worker_pids(); }
  /// Bytes the object store can still hand out, and its capacity.
  std::size_t object_store_free_bytes() const noexcept { return driver_->seg.free_bytes(); }
  std::size_t object_store_capacity() const noexcept { return driver_->seg.capacity(); }
  /// How many objects have been spilled to disk (with runtime_options::spill_directory).
  std::uint64_t objects_spilled() const noexcept { return driver_->spilled_objects(); }
  /// The dashboard's address with the run's token (runtime_options::include_dashboard), or
  /// empty without one.
  std::string dashboard_url() const { return dashboard_ ? dashboard_->url() : std::string(); }

 private:
  static start_method resolve(std::optional<start_method> m) {
    if (m) return *m;
    if (const char* e = std::getenv("CORAY_START_METHOD")) {
      std::string_view v(e);
      if (v == "spawn") return start_method::spawn;
      if (v == "fork" || v.empty()) return start_method::fork;
      throw usage_error(fmt::format("coray: CORAY_START_METHOD must be fork or spawn, not {}", v));
    }
    return start_method::fork;
  }
  static void make_log_directory(const std::string& dir) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec || !std::filesystem::is_directory(dir, ec))
      throw usage_error(fmt::format("coray: log_directory {} is not a directory one can make: {}",
                                    dir, ec ? ec.message() : "a file is in the way"));
  }
  static bool wants_dashboard(const runtime_options& opts) {
    const char* e = std::getenv("CORAY_DASHBOARD");
    const bool wanted = opts.include_dashboard || (e && std::string_view(e) == "1");
    if (wanted && !detail::dashboard_start_hook())
      throw usage_error(
          "coray: include_dashboard (or CORAY_DASHBOARD=1) needs the dashboard's code: "
          "#include <coray/dashboard.hpp> in one file of the program and link coray::dashboard "
          "(cpp-httplib and nlohmann_json), or link coray's compiled library built with them");
    return wanted;
  }
  void start_dashboard(const runtime_options& opts) {
    try {
      dashboard_ = detail::dashboard_start_hook()(opts);
    } catch (...) {
      driver_->close_handoff();
      throw;
    }
  }
  std::unique_ptr<detail::driver> driver_;
  pid_t builder_pid_ = getpid();
  std::unique_ptr<detail::dashboard_service> dashboard_;  // destroyed before the driver
};

namespace detail {
inline std::unique_ptr<runtime>& global_runtime() {
  static std::unique_ptr<runtime> rt;
  return rt;
}
}  // namespace detail

/// Starts a process-wide runtime (Ray's ray.init()); ray::shutdown() ends it.
inline void init(runtime_options opts = {}) {
  if (detail::global_runtime()) throw usage_error("ray::init: already initialised");
  detail::global_runtime() = std::make_unique<runtime>(opts);
}
inline void shutdown() { detail::global_runtime().reset(); }
inline bool is_initialized() noexcept {
  return detail::process::here() != nullptr || detail::runtime_gate::instance().accepts_calls();
}

CORAY_END_NAMESPACE
// end <coray/runtime.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE

/// Names a process's target: `ray::process p(ray::target<f>, args...)`.
template <auto F>
struct target_t {};
template <auto F>
inline constexpr target_t<F> target{};

class context;

/// A function and its arguments to run in a new process (multiprocessing.Process). Made in
/// the driver; start() starts it, join() waits for it. Moveable, not copyable. Every member
/// but name() and daemon() is for the driver's runtime thread, and throws ray::usage_error
/// elsewhere.
class process {
 public:
  /// No target: a placeholder that cannot be started.
  process() = default;

  /// F(args...) in a new process once started. F is a free or static member function; the
  /// arguments are converted to its parameters' types now and sent at start(): values, refs,
  /// actor handles and the runtime's shared things (shared_value, mutex, queue, a pipe's
  /// connection, event...).
  template <auto F, class... A>
  explicit process(target_t<F>, A&&... args) : s_(std::make_shared<detail::child_state>()) {
    using traits = detail::function_traits<decltype(F)>;
    static_assert(traits::is_function && !traits::is_member,
                  "ray::target<f>: f must be a free function or a static member function");
    if constexpr (traits::is_function && !traits::is_member) {
      static_assert(sizeof...(A) == traits::arity,
                    "ray::process(ray::target<f>, args...): wrong number of arguments for f");
      using body = typename detail::process_body_type<F>::type;
      static_assert(
          std::is_constructible_v<body, std::string,
                                  detail::constructor_arg_t<detail::put_type_t<A>>&&...>,
          "ray::process(ray::target<f>, args...): an argument does not convert to f's parameter");
      s_->spawner = std::make_unique<detail::child_spawner_of<body, detail::put_type_t<A>...>>(
          detail::put_type_t<A>(std::forward<A>(args))...);
    }
    static std::atomic<std::uint32_t> made{0};  // Python counts Process objects per process
    s_->name = fmt::format("Process-{}", ++made);
  }

  /// F(args...) in a new process started as `ctx` says.
  template <auto F, class... A>
  process(const context& ctx, target_t<F> t, A&&... args);

  process(process&&) noexcept = default;
  process& operator=(process&&) noexcept = default;

  /// Starts the process; returns once its pid is known, without waiting for F to begin.
  /// Throws ray::usage_error if it was started before or has no target.
  void start() {
    if (!s_ || (!s_->spawner && !s_->started))
      throw usage_error("ray::process::start: this process has no target");
    if (s_->started)
      throw usage_error(fmt::format(
          "ray::process::start: {} was already started (a process starts once)", s_->name));
    auto& d = detail::require_driver("ray::process::start");
    s_->handle = s_->spawner->spawn(d, s_->start_as, s_->name);
    s_->spawner.reset();
    s_->started = true;
    auto& children = detail::started_children();
    std::erase_if(children, [](const auto& c) { return c->exitcode.has_value(); });  // joined
    children.push_back(s_);
    detail::before_runtime_end() = &detail::end_children;
    // Its pid is the supervisor's to write, and it rings no one: served until it is there.
    while (!s_->pid && !s_->exitcode) {
      const auto next = detail::clock::now() + std::chrono::microseconds(200);
      d.run_until(
          [&] {
            s_->refresh(d);
            return s_->pid || s_->exitcode;
          },
          next);
    }
  }

  /// Waits for the process to end. Throws ray::usage_error if it was never started.
  void join() { (void)join_until(detail::clock::time_point::max()); }
  /// Waits at most `timeout` for the process to end; true if it has (then exitcode() is
  /// set). Python's join(timeout) returns None either way: check is_alive() or the result.
  template <class Rep, class Period>
  bool join(std::chrono::duration<Rep, Period> timeout) {
    return join_until(detail::deadline_in(timeout));
  }

  /// Started and not yet seen ended.
  bool is_alive() {
    if (!s_ || !s_->started) return false;
    return !refreshed().exitcode;
  }
  /// Empty while it runs (or before start); its exit code once it ended: 0 after F
  /// returned, 1 after F threw, -N if signal N ended it.
  std::optional<int> exitcode() {
    if (!s_ || !s_->started) return std::nullopt;
    return refreshed().exitcode;
  }
  /// Its process id; 0 before start().
  int pid() const noexcept { return s_ ? s_->pid : 0; }

  /// "Process-N" unless given another before start().
  const std::string& name() const {
    static const std::string none;
    return s_ ? s_->name : none;
  }
  void name(std::string n) {
    if (s_ && !s_->started) s_->name = std::move(n);
  }
  /// A daemon process is killed when the runtime ends; a non-daemon one (the default) is
  /// joined by the runtime's destructor, as Python joins non-daemon children at exit.
  bool daemon() const noexcept { return s_ && s_->daemon; }
  void daemon(bool d) {
    if (s_ && s_->started)
      throw usage_error("ray::process::daemon: set it before start(), as in Python");
    if (s_) s_->daemon = d;
  }

  /// Sends SIGTERM (the process ends with exitcode -15); nothing if it already ended.
  void terminate() { send_signal(SIGTERM, "terminate"); }
  /// Sends SIGKILL (exitcode -9); nothing if it already ended.
  void kill() { send_signal(SIGKILL, "kill"); }

 private:
  friend class context;

  /// Its state, with what the driver learnt: a death is taken in by serving the loop once,
  /// so that `while (p.is_alive())` ends.
  detail::child_state& refreshed() {
    if (s_->exitcode) return *s_;
    detail::driver& d = detail::require_driver("ray::process");
    d.serve_once();
    s_->refresh(d);
    return *s_;
  }
  void require_started(const char* what) const {
    if (!s_ || !s_->started)
      throw usage_error(fmt::format("ray::process::{}: {} was never started", what,
                                    s_ ? s_->name : std::string("a process without a target")));
  }
  bool join_until(detail::clock::time_point deadline) {
    require_started("join");
    return detail::join_child(detail::require_driver("ray::process::join"), *s_, deadline);
  }
  void send_signal(int sig, const char* what) {
    require_started(what);
    if (!refreshed().exitcode && s_->pid > 0) ::kill(s_->pid, sig);
  }

  std::shared_ptr<detail::child_state> s_;
};

/// A start method chosen for the processes made through it (multiprocessing's context).
class context {
 public:
  /// The start method of the runtime (CORAY_START_METHOD or runtime_options::start_method).
  context() = default;
  explicit context(ray::start_method m) : method_(m) {}

  /// nullopt: the runtime's.
  std::optional<ray::start_method> start_method() const noexcept { return method_; }

  /// ray::process(target, args...), started by this context's method.
  template <auto F, class... A>
  ray::process process(target_t<F> t, A&&... args) const {
    return ray::process(*this, t, std::forward<A>(args)...);
  }

 private:
  friend class ray::process;
  std::uint32_t start_as() const noexcept {
    if (!method_) return 0;
    return 1 + static_cast<std::uint32_t>(*method_ == ray::start_method::spawn
                                              ? detail::start_method_id::spawn
                                              : detail::start_method_id::fork);
  }
  std::optional<ray::start_method> method_;
};

template <auto F, class... A>
process::process(const context& ctx, target_t<F> t, A&&... args)
    : process(t, std::forward<A>(args)...) {
  s_->start_as = ctx.start_as();
}

/// The context of start method `method`: "fork" or "spawn" (Python also has "forkserver",
/// which coray's supervisor already is for fork); empty, the runtime's. Throws
/// ray::usage_error for another name.
inline context get_context(std::string_view method = {}) {
  if (method.empty()) return context();
  if (method == "fork") return context(start_method::fork);
  if (method == "spawn") return context(start_method::spawn);
  throw usage_error(
      fmt::format("ray::get_context: no start method is named '{}' (fork or spawn)", method));
}

CORAY_END_NAMESPACE
// end <coray/process.hpp>
// #include <coray/processes.hpp>: inlined above
// begin <coray/progress.hpp>
/// A progress bar for long waits in terminal programs (what Ray users write with tqdm and
/// ray.wait): done/total, the rate and the time left, redrawn on one line of stderr when
/// stderr is a terminal, and nothing at all when it is not (a log file, a pipe, CI).
///
///   std::vector<double> losses = ray::get_with_progress(refs, {.description = "training"});
///   for (int r : ray::with_progress(pool.imap<square>(xs), xs.size())) use(r);
///
///   training:  42%|########            | 42/100 [00:03<00:04, 12.31 it/s]

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
// #include <coray/object_store.hpp>: inlined above
// #include <coray/result_stream.hpp>: inlined above
#include <cstddef>
#include <cstdio>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE

struct progress_options {
  /// Shown before the bar.
  std::string description = {};
  /// Where the bar is drawn; drawn only when it is a terminal.
  int fd = STDERR_FILENO;
  /// The bar is redrawn at most this often (and when the count reaches the total).
  std::chrono::milliseconds redraw = std::chrono::milliseconds(100);
};

/// Counts work done out of a total and draws it, tqdm's way. One thread; not copyable.
class progress_bar {
 public:
  using clock = std::chrono::steady_clock;

  explicit progress_bar(std::size_t total, progress_options opts = {})
      : total_(total), opts_(std::move(opts)), shown_(isatty(opts_.fd) == 1) {
    draw(true);
  }
  progress_bar(const progress_bar&) = delete;
  progress_bar& operator=(const progress_bar&) = delete;
  /// Draws the last state and ends the line (when shown).
  ~progress_bar() {
    if (!shown_) return;
    draw(true);
    write_out("\n");
  }

  /// `n` more are done (never past the total). Draws if the redraw interval has passed.
  void update(std::size_t n = 1) {
    done_ = std::min(total_, done_ + n);
    draw(done_ == total_);
  }
  std::size_t done() const noexcept { return done_; }
  std::size_t total() const noexcept { return total_; }
  /// Whether the bar is drawn (its descriptor is a terminal).
  bool shown() const noexcept { return shown_; }

  /// The line as drawn after `elapsed`: description, percentage, bar, count, elapsed and
  /// estimated time left, rate. Pure: no clock, no output.
  std::string line(std::chrono::duration<double> elapsed) const {
    const double secs = std::max(0.0, elapsed.count());
    const double rate = secs > 0 ? static_cast<double>(done_) / secs : 0.0;
    const double fraction = total_ ? static_cast<double>(done_) / static_cast<double>(total_) : 1;
    constexpr std::size_t width = 20;
    const auto filled = static_cast<std::size_t>(fraction * width);
    std::string s = opts_.description.empty() ? std::string() : opts_.description + ": ";
    s += fmt::format("{:3d}%|{}{}| {}/{} [{}<{}, {:.2f} it/s]", static_cast<int>(fraction * 100),
                     std::string(filled, '#'), std::string(width - filled, ' '), done_, total_,
                     clock_text(secs),
                     rate > 0 ? clock_text(static_cast<double>(total_ - done_) / rate) : "?", rate);
    return s;
  }

 private:
  /// "mm:ss", or "h:mm:ss" from an hour.
  static std::string clock_text(double secs) {
    const auto s = static_cast<long long>(std::llround(secs));
    if (s >= 3600) return fmt::format("{}:{:02d}:{:02d}", s / 3600, s / 60 % 60, s % 60);
    return fmt::format("{:02d}:{:02d}", s / 60, s % 60);
  }
  void draw(bool now) {
    if (!shown_) return;
    const auto t = clock::now();
    if (!now && t - drawn_ < opts_.redraw) return;
    drawn_ = t;
    write_out("\r" + line(t - start_) + "\x1b[K");
  }
  void write_out(const std::string& s) const noexcept {
    std::string_view left(s);
    while (!left.empty()) {
      const ssize_t n = ::write(opts_.fd, left.data(), left.size());
      if (n <= 0) return;  // a terminal that went away: the bar is not worth an error
      left.remove_prefix(static_cast<std::size_t>(n));
    }
  }

  std::size_t total_;
  std::size_t done_ = 0;
  progress_options opts_;
  bool shown_;
  clock::time_point start_ = clock::now();
  clock::time_point drawn_ = start_;
};

/// ray::get(refs) with a progress bar that advances as each ref becomes ready (ray::wait
/// with the redraw interval as its timeout). Returns the values in the order of `refs`, or
/// throws the first error as ray::get does. Where the bar is not shown, it is ray::get.
template <class T>
requires(!std::is_void_v<T>) std::vector<T> get_with_progress(std::vector<object_ref<T>> refs,
                                                              progress_options opts = {}) {
  const auto redraw = opts.redraw;
  {
    progress_bar bar(refs.size(), std::move(opts));
    std::vector<object_ref<T>> pending = refs;
    while (bar.shown() && !pending.empty()) {
      const wait_options until{.num_returns = pending.size(),
                               .timeout = std::chrono::nanoseconds(redraw)};
      wait_result<T> w = ray::wait(std::move(pending), until);
      bar.update(w.ready.size());
      pending = std::move(w.pending);
    }
  }
  return ray::get(std::move(refs));
}

/// Iterates a result stream (pool::imap and the like) with a progress bar of `total`
/// results: `for (int r : ray::with_progress(pool.imap<f>(xs), xs.size()))`. Loop thread
/// only, as the stream is.
template <class R>
class progress_stream {
 public:
  progress_stream(result_stream<R> stream, std::size_t total, progress_options opts = {})
      : stream_(std::move(stream)), bar_(total, std::move(opts)) {}

  /// The next result (waiting for it), the bar advanced; nullopt after the last.
  std::optional<R> next() {
    std::optional<R> r = stream_.next();
    if (r) bar_.update();
    return r;
  }
  const progress_bar& bar() const noexcept { return bar_; }

  class iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = R;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(progress_stream* s) : s_(s) { ++*this; }
    R& operator*() { return *current_; }
    iterator& operator++() {
      current_ = s_->next();
      if (!current_) s_ = nullptr;
      return *this;
    }
    void operator++(int) { ++*this; }
    bool operator==(const iterator& o) const noexcept { return s_ == o.s_; }

   private:
    progress_stream* s_ = nullptr;
    std::optional<R> current_;
  };
  iterator begin() { return iterator(this); }
  iterator end() { return iterator(); }

 private:
  result_stream<R> stream_;
  progress_bar bar_;
};

template <class R>
progress_stream<R> with_progress(result_stream<R> stream, std::size_t total,
                                 progress_options opts = {}) {
  return progress_stream<R>(std::move(stream), total, std::move(opts));
}

CORAY_END_NAMESPACE
// end <coray/progress.hpp>
// begin <coray/queue.hpp>
/// ray::queue<T>: a FIFO queue that every process of the runtime can use -- the driver, tasks
/// and actors -- with Ray's Queue semantics: put() waits while the queue is full, get() while
/// it is empty; with a timeout they throw ray::queue_full / ray::queue_empty instead.
///
///   void produce(ray::queue<int> q, int n) { for (int i = 0; i < n; ++i) q.put(i); }
///
///   ray::queue<int> q(100);                        // at most 100 items; 0: unbounded
///   ray::task<produce>.remote(q, 1000);
///   int first = q.get();                           // blocking, serving the runtime
///   int next = co_await q.get_async();             // in a coroutine
///   int maybe = q.get(std::chrono::milliseconds(10));   // or ray::queue_empty
///
/// Like Ray's, the queue is an actor holding a std::deque<T>; a put or get that must wait
/// suspends inside the actor, which meanwhile serves the calls that unblock it. Each
/// operation costs one actor call; put_nowait_batch / get_nowait_batch move many items in
/// one. A handle is a value: pass it to tasks and actors (alone or inside containers). The
/// queue's process starts at the handle's first use; create queues in the driver. It ends
/// when its last handle in any process goes.

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
// #include <coray/actor.hpp>: inlined above
// begin <coray/detail/mp/queue_actor.hpp>
/// The actor behind a ray::queue<T>: a std::deque<T> whose blocking put and get are coroutine
/// methods, so a call that must wait (queue full, or empty) suspends and the actor goes on
/// serving others -- the put that makes room for it, the get that frees a slot. It also
/// counts the items put and not yet marked done, for ray::joinable_queue's task_done and join.

#include <chrono>
// #include <coray/async.hpp>: inlined above
// #include <coray/detail/runtime/process.hpp>: inlined above
#include <coroutine>
#include <cstdint>
#include <deque>
#include <list>
#include <optional>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

template <class T>
class queue_actor {
 public:
  /// Calls that may wait at once (each blocked put or get holds one).
  static constexpr std::uint32_t max_waiting_calls = 1u << 20;

  explicit queue_actor(std::uint64_t maxsize) : maxsize_(maxsize) {}

  /// Puts `item`, waiting at most `timeout_ns` for room (< 0: as long as it takes; 0: not at
  /// all). False if there was no room in time.
  async<bool> put(T item, std::int64_t timeout_ns) {
    if (!full()) {
      push(std::move(item));
      co_return true;
    }
    if (timeout_ns == 0) co_return false;
    waiter w;
    w.item = std::move(item);
    co_await wait_in{putters_, w, timeout_ns};
    co_return w.done;
  }

  /// Takes the oldest item, waiting at most `timeout_ns` for one; nullopt if none came.
  async<std::optional<T>> get(std::int64_t timeout_ns) {
    if (!items_.empty()) co_return pop();
    if (timeout_ns == 0) co_return std::nullopt;
    waiter w;
    co_await wait_in{getters_, w, timeout_ns};
    if (!w.done) co_return std::nullopt;
    co_return std::move(w.item);
  }

  /// Puts all of `items` if there is room for all; else none and false.
  bool put_batch(std::vector<T> items) {
    if (maxsize_ && items_.size() + items.size() > maxsize_) return false;
    for (auto& x : items) push(std::move(x));
    return true;
  }

  /// Takes `n` items if there are that many; else none and nullopt.
  std::optional<std::vector<T>> get_batch(std::uint64_t n) {
    if (items_.size() < n) return std::nullopt;
    std::vector<T> out;
    out.reserve(static_cast<std::size_t>(n));
    for (std::uint64_t i = 0; i < n; ++i) out.push_back(pop());
    return out;
  }

  std::uint64_t size() const noexcept { return items_.size(); }

  /// One item put earlier is done; false (and no change) if none is left undone.
  bool task_done() {
    if (unfinished_ == 0) return false;
    if (--unfinished_ == 0)
      while (!joiners_.empty()) {
        waiter& j = *joiners_.front();
        j.done = true;
        wake(j);
      }
    return true;
  }
  /// Waits until every item put has been marked done.
  async<void> join() {
    if (unfinished_ == 0) co_return;
    waiter w;
    co_await wait_in{joiners_, w, -1};
  }
  std::uint64_t unfinished() const noexcept { return unfinished_; }

 private:
  struct waiter {
    std::coroutine_handle<> h;
    std::optional<T> item;  // a putter's item, or what a getter received
    bool done = false;      // the put went in, or the get got an item
    std::uint64_t timer = 0;
    typename std::list<waiter*>::iterator at;
    std::list<waiter*>* in = nullptr;
  };

  /// Suspends the calling method in `list` until served or `timeout_ns` passes.
  struct wait_in {
    std::list<waiter*>& list;
    waiter& w;
    std::int64_t timeout_ns;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) {
      process& p = *process::current();
      w.h = h;
      w.in = &list;
      w.at = list.insert(list.end(), &w);
      if (timeout_ns > 0)
        w.timer = p.add_timer(deadline_after(std::chrono::nanoseconds(timeout_ns)),
                              &queue_actor::timed_out, &w);
      p.coroutine_suspended(+1);
    }
    void await_resume() const noexcept {}
  };

  static void wake(waiter& w) {
    process& p = *process::current();
    w.in->erase(w.at);
    if (w.timer) p.cancel_timer(w.timer);
    p.coroutine_suspended(-1);
    p.schedule(w.h);
  }
  static void timed_out(void* ctx) {
    auto& w = *static_cast<waiter*>(ctx);
    w.timer = 0;
    wake(w);
  }

  bool full() const noexcept { return maxsize_ && items_.size() >= maxsize_; }

  /// A new item goes to the oldest waiting getter, else to the back of the queue.
  void push(T&& item) {
    ++unfinished_;
    if (!getters_.empty()) {
      waiter& g = *getters_.front();
      g.item = std::move(item);
      g.done = true;
      wake(g);
    } else {
      items_.push_back(std::move(item));
    }
  }
  /// The oldest item; the oldest waiting putter's item takes the room it leaves.
  T pop() {
    T item = std::move(items_.front());
    items_.pop_front();
    if (!putters_.empty()) {
      waiter& w = *putters_.front();
      items_.push_back(std::move(*w.item));
      ++unfinished_;
      w.done = true;
      wake(w);
    }
    return item;
  }

  std::uint64_t maxsize_;
  std::deque<T> items_;
  std::list<waiter*> getters_, putters_, joiners_;
  std::uint64_t unfinished_ = 0;  // items put and not yet marked done
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/mp/queue_actor.hpp>
// #include <coray/errors.hpp>: inlined above
// #include <coray/object_store.hpp>: inlined above
// #include <coray/sync_wait.hpp>: inlined above
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE

template <class T>
class queue {
  using actor_type = detail::queue_actor<T>;

 public:
  using timeout_type = std::optional<std::chrono::nanoseconds>;

  /// An unbounded queue.
  queue() noexcept = default;
  /// A queue of at most `maxsize` items (0: unbounded, as in Python).
  explicit queue(std::size_t maxsize) : maxsize_(maxsize) {}
  /// Copies are handles to the same queue.
  queue(const queue& o) : actor_((o.start(), o.actor_)), maxsize_(o.maxsize_) {}
  queue(queue&&) noexcept = default;
  queue& operator=(const queue& o) {
    o.start();
    actor_ = o.actor_;
    maxsize_ = o.maxsize_;
    return *this;
  }
  queue& operator=(queue&&) noexcept = default;

  /// Appends `item`, waiting while the queue is full; after `timeout`, throws queue_full.
  void put(T item, timeout_type timeout = std::nullopt) {
    if (!ray::get(put_call(std::move(item), wait_ns(timeout))).get()) throw full_error();
  }
  /// Appends `item` if there is room now; else throws queue_full.
  void put_nowait(T item) { put(std::move(item), std::chrono::nanoseconds(0)); }
  /// put() in a coroutine: `co_await q.put_async(item)`. The put is sent at once.
  async<void> put_async(T item, timeout_type timeout = std::nullopt) {
    return await_put(put_call(std::move(item), wait_ns(timeout)));
  }

  /// Takes the oldest item, waiting while the queue is empty; after `timeout`, throws
  /// queue_empty.
  T get(timeout_type timeout = std::nullopt) {
    std::optional<T> v = ray::get(get_call(wait_ns(timeout))).get();
    if (!v) throw empty_error();
    return std::move(*v);
  }
  /// Takes the oldest item if there is one now; else throws queue_empty.
  T get_nowait() { return get(std::chrono::nanoseconds(0)); }
  /// get() in a coroutine: `T v = co_await q.get_async()`. The get is sent at once.
  async<T> get_async(timeout_type timeout = std::nullopt) {
    return await_get(get_call(wait_ns(timeout)));
  }

  /// Appends every item if there is room for all now; else none, and throws queue_full.
  void put_nowait_batch(std::vector<T> items) {
    if (!ray::get(handle().template call<&actor_type::put_batch>(std::move(items))).get())
      throw full_error();
  }
  /// Takes `n` items if there are that many now; else none, and throws queue_empty.
  std::vector<T> get_nowait_batch(std::size_t n) {
    std::optional<std::vector<T>> v =
        ray::get(handle().template call<&actor_type::get_batch>(std::uint64_t{n})).get();
    if (!v) throw empty_error();
    return std::move(*v);
  }

  /// Items in the queue now (Ray's qsize()).
  std::size_t size() const { return ray::get(handle().template call<&actor_type::size>()).get(); }
  bool empty() const { return size() == 0; }
  bool full() const { return maxsize_ != 0 && size() >= maxsize_; }
  /// The bound given at construction; 0 for an unbounded queue.
  std::size_t maxsize() const noexcept { return maxsize_; }

  /// Ends the queue's process now (Ray's shutdown(force=True)); waiting calls fail with
  /// actor_died.
  void shutdown() {
    if (actor_.valid()) ray::kill(actor_);
  }

  /// Handles travel as call arguments: the receiving process reaches the same queue.
  template <class Archive>
  void serialize(Archive& ar) {
    if constexpr (!Archive::is_loading) start();
    std::uint64_t maxsize = maxsize_;
    ar(actor_, maxsize);
    maxsize_ = static_cast<std::size_t>(maxsize);
  }

 protected:
  const actor<actor_type>& handle() const {
    start();
    return actor_;
  }

 private:
  void start() const {
    if (actor_.valid()) return;
    actor_ = ray::spawn<actor_type>(
        detail::multiprocessing_options({.max_concurrency = actor_type::max_waiting_calls}),
        std::uint64_t{maxsize_});
  }
  static std::int64_t wait_ns(timeout_type timeout) {
    return timeout ? std::max<std::int64_t>(0, timeout->count()) : -1;
  }

  object_ref<bool> put_call(T&& item, std::int64_t ns) {
    return handle().template call<&actor_type::put>(std::move(item), ns);
  }
  object_ref<std::optional<T>> get_call(std::int64_t ns) {
    return handle().template call<&actor_type::get>(ns);
  }

  queue_full full_error() const {
    return queue_full(fmt::format("ray::queue: full (maxsize {})", maxsize_));
  }
  static queue_empty empty_error() { return queue_empty("ray::queue: empty"); }

  static async<void> await_put(object_ref<bool> r) {
    const bool put = co_await ray::get(r);  // (g++ 12 mishandles co_await inside `if (!...)`)
    if (!put) throw queue_full("ray::queue: full");
  }
  static async<T> await_get(object_ref<std::optional<T>> r) {
    std::optional<T> v = co_await ray::get(r);
    if (!v) throw empty_error();
    co_return std::move(*v);
  }

  mutable actor<actor_type> actor_;
  std::size_t maxsize_ = 0;
};

/// multiprocessing.JoinableQueue: a ray::queue that also counts the items put and not yet
/// marked done. A consumer calls task_done() once per item it has finished with; join()
/// waits until every item put so far is done.
///
///   void worker(ray::joinable_queue<int> q) {
///     for (;;) { int job = q.get(); run(job); q.task_done(); }
///   }
///   for (int j : jobs) q.put(j);
///   q.join();                                  // every job has been run
template <class T>
class joinable_queue : public queue<T> {
  using actor_type = detail::queue_actor<T>;

 public:
  using queue<T>::queue;

  /// Marks one item taken from the queue as done. Throws usage_error (Python's ValueError)
  /// if called more times than items were put.
  void task_done() {
    if (!ray::get(this->handle().template call<&actor_type::task_done>()).get())
      throw usage_error("coray: ray::joinable_queue::task_done() called more times than items put");
  }
  /// Waits until every item put has been marked done (at once if none is pending). On a
  /// runtime loop's thread it serves the runtime meanwhile, as a blocking ray::get does.
  void join() { ray::get(this->handle().template call<&actor_type::join>()).get(); }
  /// join() in a coroutine: `co_await q.join_async()`.
  async<void> join_async() { return await_join(this->handle().template call<&actor_type::join>()); }
  /// Items put and not yet marked done (one actor call; it may change at once).
  std::size_t unfinished() const {
    return ray::get(this->handle().template call<&actor_type::unfinished>()).get();
  }

 private:
  static async<void> await_join(object_ref<void> r) { co_await ray::get(r); }
};

CORAY_END_NAMESPACE
// end <coray/queue.hpp>
// begin <coray/resources.hpp>
/// The runtime's resources, as Ray reports them: CPUs, GPUs and custom resources by name
/// ("CPU", "GPU", then yours), all of them or those free now; and the GPUs the running task
/// or actor was given. Tasks and actors ask for resources with task_options and
/// actor_options (num_cpus, num_gpus, resources); the runtime's are runtime_options'.
///
///   ray::runtime rt({.num_gpus = 2, .resources = {{"disk", 1}}});
///   auto all = ray::cluster_resources();     // {"CPU": 8, "GPU": 2, "disk": 1}
///   auto free = ray::available_resources();  // what running tasks and actors leave

// #include <coray/detail/runtime/driver.hpp>: inlined above
// #include <coray/detail/runtime/foreign.hpp>: inlined above
// #include <coray/detail/runtime/process.hpp>: inlined above
// #include <coray/errors.hpp>: inlined above
#include <map>
#include <string>
#include <vector>

CORAY_BEGIN_NAMESPACE

namespace detail {
inline std::map<std::string, double> runtime_resources(const char* what, bool available) {
  return on_loop(what, [&](process& p) { return require_driver(p, what).resources(available); });
}
}  // namespace detail

/// Everything the runtime has, by name: {"CPU": n, "GPU": n (when it has GPUs), custom...}.
/// Driver only; thread-safe there.
inline std::map<std::string, double> cluster_resources() {
  return detail::runtime_resources("ray::cluster_resources", false);
}

/// What is free now: the totals less what running tasks (their workers' leases) and actors
/// hold. Driver only; thread-safe there.
inline std::map<std::string, double> available_resources() {
  return detail::runtime_resources("ray::available_resources", true);
}

/// The ids of the GPUs the running task or actor was given (CUDA_VISIBLE_DEVICES holds the
/// same, comma-separated): the runtime's ids, which are CUDA_VISIBLE_DEVICES's own values
/// when the driver had it set. Empty for a call given no GPU, and in the driver, as in Ray.
/// From the thread running the task or actor's calls.
inline std::vector<std::string> get_gpu_ids() { return detail::assigned_gpu_ids(); }

CORAY_END_NAMESPACE
// end <coray/resources.hpp>
// #include <coray/result_stream.hpp>: inlined above
// #include <coray/returns.hpp>: inlined above
// #include <coray/runtime.hpp>: inlined above
// begin <coray/runtime_context.hpp>
/// ray::get_runtime_context(): who and where the calling code runs, as Ray's
/// `ray.get_runtime_context()`: the job, the call running now, the actor, the worker, the
/// process, the node, and the GPUs the call or actor was given.
///
///   auto ctx = ray::get_runtime_context();
///   if (!ctx.is_driver) fmt::print("task {:#x} on worker {}\n", ctx.task_id, ctx.worker_id);

#include <unistd.h>

// #include <coray/detail/runtime/identity.hpp>: inlined above
// #include <coray/detail/runtime/process.hpp>: inlined above
// #include <coray/version.hpp>: inlined above
#include <cstdint>
#include <map>
#include <string>
#include <vector>

CORAY_BEGIN_NAMESPACE

struct runtime_context {
  /// The runtime's: the driver's pid in the high 32 bits, the runtime's number in that
  /// process (1 for the first) in the low ones. 0 outside a runtime.
  std::uint64_t job_id = 0;
  /// The call whose body runs now (its id in the driver's table); 0 in the driver and
  /// between calls. In a coroutine body, the call that started last on this process while
  /// it runs past a co_await.
  std::uint64_t task_id = 0;
  /// The actor this process is; 0 in the driver and in task workers.
  std::uint64_t actor_id = 0;
  /// The worker slot this process runs in (task workers first, then actors); 0 in the driver.
  std::uint32_t worker_id = 0;
  int pid = 0;
  /// The machine: 0 on one machine (the cluster numbers its nodes).
  std::uint32_t node_id = 0;
  bool is_driver = true;
  /// The GPU ids the running call or the actor was given (as ray::get_gpu_ids()).
  std::vector<std::string> gpu_ids;
  /// Whether this actor was built again after its process died (max_restarts).
  bool was_restarted = false;
};

/// The calling code's context. Any process; on the thread that runs its calls.
inline runtime_context get_runtime_context() {
  const detail::process_identity& me = detail::this_process();
  runtime_context c;
  c.pid = static_cast<int>(getpid());
  c.is_driver = me.kind == process_kind::driver;
  if (detail::process* p = detail::process::current(); p && p->hdr)
    c.job_id = (std::uint64_t{static_cast<std::uint32_t>(p->hdr->driver_pid)} << 32) | p->epoch;
  if (c.is_driver) return c;
  c.task_id = me.task_id;
  c.actor_id = me.kind == process_kind::actor ? me.actor_id : 0;
  c.worker_id = me.slot;
  c.gpu_ids = detail::assigned_gpu_ids();
  c.was_restarted = me.restarts > 0;
  return c;
}

/// Whether the calling actor was built again after its process died (Ray's
/// `was_current_actor_restarted`); false outside an actor.
inline bool was_current_actor_restarted() {
  return detail::this_process().kind == process_kind::actor && detail::this_process().restarts > 0;
}

CORAY_END_NAMESPACE
// end <coray/runtime_context.hpp>
// begin <coray/shared_memory.hpp>
/// Raw shared memory that every process of the runtime reads and writes in place:
/// ray::shared_buffer (multiprocessing.shared_memory.SharedMemory: bytes of a given size) and
/// ray::shared_array<T> (multiprocessing.Array: a fixed number of T, with a lock beside it).
///
///   void scale(ray::shared_array<double> xs, std::size_t begin, std::size_t end) {
///     for (double& x : xs.span().subspan(begin, end - begin)) x *= 2;
///   }
///   ray::shared_array<double> xs{1.0, 2.0, 3.0, 4.0};
///   ray::get(ray::task<scale>.remote(xs, 0, 2)).get();   // xs is now 2, 4, 3, 4
///
/// Both are handles, as ray::shared_value is: copy them, pass them to tasks and actors,
/// create them in any process; the memory lives while a handle exists in any process and
/// then returns to the object store. There is no name in /dev/shm to unlink: the memory is a
/// block of the runtime's segment, reached through the handle. Accesses are plain loads and
/// stores: order them with the array's lock, a ray::mutex, std::atomic_ref or the
/// synchronisation primitives of synchronize.hpp.

#include <algorithm>
// #include <coray/detail/mp/shared_block.hpp>: inlined above
// #include <coray/mutex.hpp>: inlined above
#include <cstddef>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <type_traits>

CORAY_BEGIN_NAMESPACE

/// multiprocessing.shared_memory.SharedMemory: `size()` bytes, zero-filled at creation.
class shared_buffer {
 public:
  /// An empty handle (size 0), what decoding fills.
  shared_buffer() noexcept = default;
  /// `bytes` new zero bytes. Throws usage_error for 0 (as Python's ValueError), and
  /// object_store_full.
  explicit shared_buffer(std::size_t bytes) {
    if (bytes == 0) throw usage_error("coray: a ray::shared_buffer needs a size above 0");
    block_ = detail::shared_block::allocate(bytes);
    std::memset(block_.data(), 0, bytes);
  }

  std::size_t size() const noexcept { return block_ ? block_.size() : 0; }
  /// The bytes, 16-byte aligned (nullptr when empty).
  std::byte* data() const noexcept { return block_ ? block_.data() : nullptr; }
  /// The bytes (Python's .buf).
  std::span<std::byte> bytes() const noexcept { return {data(), size()}; }
  /// The bytes as an array of trivially copyable T (alignment at most 16); a trailing part
  /// shorter than a T is left out.
  template <class T>
  std::span<T> as() const noexcept {
    static_assert(std::is_trivially_copyable_v<T> && alignof(T) <= 16,
                  "ray::shared_buffer::as<T>: T must be trivially copyable, aligned to 16 at most");
    return {reinterpret_cast<T*>(data()), size() / sizeof(T)};
  }

  /// Handles travel as call arguments: the receiving process reaches the same bytes.
  template <class Archive>
  void serialize(Archive& ar) {
    ar(block_);
  }

 private:
  detail::shared_block block_;
};

/// multiprocessing.Array: `size()` values of T in shared memory, value-initialised unless
/// given. With `lock` (the default, as Python's) a ray::mutex comes with the array,
/// get_lock(), to make compound updates exact; each element access itself takes no lock.
template <class T>
class shared_array {
  static_assert(std::is_trivially_copyable_v<T> && !std::is_const_v<T> && !std::is_volatile_v<T> &&
                    alignof(T) <= 16,
                "ray::shared_array<T>: T must be a trivially copyable, non-const type aligned "
                "to 16 bytes at most, as multiprocessing.Array takes ctypes");

 public:
  using value_type = T;
  using iterator = T*;

  /// An empty handle (size 0, no lock), what decoding fills.
  shared_array() noexcept = default;
  /// `n` values T{}. Throws object_store_full.
  explicit shared_array(std::size_t n, bool lock = true) : shared_array(n, lock, nullptr) {}
  /// A copy of `values`.
  explicit shared_array(std::span<const T> values, bool lock = true)
      : shared_array(values.size(), lock, values.data()) {}
  shared_array(std::initializer_list<T> values, bool lock = true)
      : shared_array(values.size(), lock, values.begin()) {}

  std::size_t size() const noexcept { return buf_.size() / sizeof(T); }
  bool empty() const noexcept { return size() == 0; }
  T* data() const noexcept { return reinterpret_cast<T*>(buf_.data()); }
  std::span<T> span() const noexcept { return {data(), size()}; }
  T& operator[](std::size_t i) const noexcept { return data()[i]; }
  T* begin() const noexcept { return data(); }
  T* end() const noexcept { return data() + size(); }

  /// Whether the array was made with a lock.
  bool has_lock() const noexcept { return lock_.has_value(); }
  /// The array's lock (Python's get_lock()). Throws usage_error if it was made without.
  mutex& get_lock() {
    if (!lock_) throw usage_error("coray: this ray::shared_array was made without a lock");
    return *lock_;
  }

  /// Handles travel as call arguments: the receiving process reaches the same values.
  template <class Archive>
  void serialize(Archive& ar) {
    ar(buf_, lock_);
    if constexpr (Archive::is_loading) {
      if (buf_.size() % sizeof(T) != 0)
        throw codec_error("coray: a ray::shared_array handle of another element type");
    }
  }

 private:
  shared_array(std::size_t n, bool lock, const T* values) {
    if (lock) lock_.emplace();
    if (n == 0) return;
    buf_ = shared_buffer(n * sizeof(T));
    if (values != nullptr)
      std::memcpy(buf_.data(), values, n * sizeof(T));
    else
      std::uninitialized_value_construct_n(data(), n);
  }

  shared_buffer buf_;
  std::optional<mutex> lock_;
};

CORAY_END_NAMESPACE
// end <coray/shared_memory.hpp>
// begin <coray/shared_value.hpp>
/// ray::shared_value<T>: one value of a trivially copyable T in the runtime's shared memory,
/// read and written in place by every process that holds a handle -- multiprocessing.Value,
/// with atomic operations instead of a lock where T allows them.
///
///   int bump(ray::shared_value<int> hits, int n) {
///     for (int i = 0; i < n; ++i) hits.fetch_add(1);   // atomic across processes
///     return n;
///   }
///   ray::shared_value<int> hits(0);
///   ray::get(ray::task<bump>.remote(hits, 1000)).get();
///   int total = hits.load();                            // 1000
///
/// A handle is a value: copy it, pass it to tasks and actors (alone or inside containers),
/// create it in any process. The value lives while a handle to it exists in any process.

#include <atomic>
// #include <coray/detail/mp/shared_block.hpp>: inlined above
// #include <coray/detail/shm/robust_mutex.hpp>: inlined above
#include <cstring>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

CORAY_BEGIN_NAMESPACE

template <class T>
class shared_value {
  static_assert(
      std::is_trivially_copyable_v<T> && !std::is_const_v<T> && !std::is_volatile_v<T>,
      "ray::shared_value<T>: T must be a trivially copyable, non-const type (a number, an "
      "enum, or a struct or array of them), as multiprocessing.Value takes ctypes");

 public:
  /// True when load/store/fetch_* are single atomic instructions; otherwise each operation
  /// takes a robust process-shared lock kept next to the value.
  static constexpr bool is_always_lock_free =
      std::atomic_ref<T>::is_always_lock_free && std::atomic_ref<T>::required_alignment <= 16;

  /// A new shared T{}. Its memory is taken at first use (any operation, a copy, or passing
  /// it to a call), so that decoding a handle never allocates one to throw away.
  shared_value() noexcept = default;
  /// A new shared value holding `initial`. Any process of a runtime. Throws object_store_full.
  explicit shared_value(const T& initial) { materialize(initial); }
  /// Copies share the value.
  shared_value(const shared_value& o) : block_((o.c(), o.block_)) {}
  shared_value(shared_value&&) noexcept = default;
  shared_value& operator=(const shared_value& o) {
    o.c();
    block_ = o.block_;
    return *this;
  }
  shared_value& operator=(shared_value&&) noexcept = default;

  T load(std::memory_order order = std::memory_order_seq_cst) const {
    if constexpr (is_always_lock_free) {
      return atomic(order).load(order);
    } else {
      guard g(*c());
      return c()->value;
    }
  }
  void store(T v, std::memory_order order = std::memory_order_seq_cst) {
    if constexpr (is_always_lock_free) {
      atomic(order).store(v, order);
    } else {
      guard g(*c());
      c()->value = v;
    }
  }
  /// Replaces the value; returns the previous one.
  T exchange(T v, std::memory_order order = std::memory_order_seq_cst) {
    if constexpr (is_always_lock_free) {
      return atomic(order).exchange(v, order);
    } else {
      guard g(*c());
      return std::exchange(c()->value, v);
    }
  }
  /// If the value equals `expected` (bytewise), replaces it by `desired` and returns true;
  /// otherwise loads it into `expected` and returns false.
  bool compare_exchange_strong(T& expected, T desired,
                               std::memory_order order = std::memory_order_seq_cst) {
    if constexpr (is_always_lock_free) {
      return atomic(order).compare_exchange_strong(expected, desired, order);
    } else {
      guard g(*c());
      if (std::memcmp(&c()->value, &expected, sizeof(T)) == 0) {
        c()->value = desired;
        return true;
      }
      expected = c()->value;
      return false;
    }
  }
  bool compare_exchange_weak(T& expected, T desired,
                             std::memory_order order = std::memory_order_seq_cst) {
    if constexpr (is_always_lock_free)
      return atomic(order).compare_exchange_weak(expected, desired, order);
    else
      return compare_exchange_strong(expected, desired, order);
  }
  /// Atomically replaces the value by f(value) and returns the new value. `f` may run more
  /// than once (a compare-exchange loop), so it should only compute.
  template <class F>
  T update(F&& f) {
    if constexpr (is_always_lock_free) {
      T old = load(std::memory_order_relaxed);
      T next = f(old);
      while (!compare_exchange_weak(old, next)) next = f(old);
      return next;
    } else {
      guard g(*c());
      c()->value = f(c()->value);
      return c()->value;
    }
  }

  /// Atomic arithmetic; each returns the previous value.
  T fetch_add(T d, std::memory_order order = std::memory_order_seq_cst) requires(
      std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
    return atomic(order).fetch_add(d, order);
  }
  T fetch_sub(T d, std::memory_order order = std::memory_order_seq_cst) requires(
      std::is_arithmetic_v<T> && !std::is_same_v<T, bool>) {
    return atomic(order).fetch_sub(d, order);
  }
  T fetch_and(T d, std::memory_order order = std::memory_order_seq_cst) requires(
      std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    return atomic(order).fetch_and(d, order);
  }
  T fetch_or(T d, std::memory_order order = std::memory_order_seq_cst) requires(
      std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    return atomic(order).fetch_or(d, order);
  }
  T fetch_xor(T d, std::memory_order order = std::memory_order_seq_cst) requires(
      std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    return atomic(order).fetch_xor(d, order);
  }

  /// Handles travel as call arguments: the receiving process reaches the same value.
  template <class Archive>
  void serialize(Archive& ar) {
    if constexpr (!Archive::is_loading) c();
    ar(block_);
    if constexpr (Archive::is_loading) {
      if (block_ && block_.size() != sizeof(cell))
        throw codec_error("coray: a shared_value handle of another type");
    }
  }

 private:
  struct lock_free_cell {
    T value;
  };
  struct locked_cell {
    detail::robust_mutex lock;
    T value;
  };
  using cell = std::conditional_t<is_always_lock_free, lock_free_cell, locked_cell>;
  struct guard {
    explicit guard(cell& c) : c_(c) { c_.lock.lock(); }
    ~guard() { c_.lock.unlock(); }
    cell& c_;
  };

  cell* c() const {
    if (!block_) materialize(T{});
    return std::launder(reinterpret_cast<cell*>(block_.data()));
  }
  void materialize(const T& initial) const {
    block_ = detail::shared_block::allocate(sizeof(cell));
    auto* c = new (block_.data()) cell{};
    c->value = initial;
  }
  std::atomic_ref<T> atomic(std::memory_order) const { return std::atomic_ref<T>(c()->value); }

  mutable detail::shared_block block_;
};

CORAY_END_NAMESPACE
// end <coray/shared_value.hpp>
// begin <coray/sleep.hpp>
/// ray::sleep_for and ray::sleep_until: timers for coroutines. `co_await` one in a coroutine
/// task or an async actor method and only that coroutine waits: the process keeps serving
/// (a task worker takes other calls, an actor with max_concurrency > 1 serves other calls),
/// as `await asyncio.sleep(...)` does in Ray's async actors. For polling, rate limits and
/// timeouts without a thread.
///
///   ray::async<int> poll_until_ready(ray::actor<source> s) {
///     while (!co_await s.call<&source::ready>()) co_await ray::sleep_for(10ms);
///     co_return co_await s.call<&source::value>();
///   }
///
/// The timer fires on the process's loop; a coroutine resumes no earlier than the time
/// asked, later if the loop is busy. Outside a runtime's loop (no runtime, or a thread other
/// than the loop's), awaiting one sleeps the thread instead.

#include <chrono>
// #include <coray/async.hpp>: inlined above
// #include <coray/detail/runtime/process.hpp>: inlined above
#include <coroutine>
#include <thread>

CORAY_BEGIN_NAMESPACE

/// What ray::sleep_until and ray::sleep_for return: co_await it.
class sleep_awaitable {
 public:
  explicit sleep_awaitable(detail::clock::time_point until) noexcept : until_(until) {}
  bool await_ready() const {
    if (detail::clock::now() >= until_) return true;
    if (detail::process::here()) return false;
    std::this_thread::sleep_until(until_);  // no loop to serve on this thread
    return true;
  }
  void await_suspend(std::coroutine_handle<> h) {
    detail::process& p = *detail::process::here();
    p.add_timer(until_, &resume, h.address());
    p.coroutine_suspended(+1);  // the coroutine does not occupy its worker meanwhile
  }
  void await_resume() const noexcept {}

 private:
  static void resume(void* address) {
    detail::process& p = *detail::process::current();
    p.coroutine_suspended(-1);
    p.schedule(std::coroutine_handle<>::from_address(address));
  }
  detail::clock::time_point until_;
};

/// Suspends the awaiting coroutine for `duration` (none if not positive; one too long to
/// have a deadline never ends).
template <class Rep, class Period>
sleep_awaitable sleep_for(const std::chrono::duration<Rep, Period>& duration) {
  return sleep_awaitable(detail::deadline_in(duration));
}

/// Suspends the awaiting coroutine until `deadline` (of any clock).
template <class Clock, class Duration>
sleep_awaitable sleep_until(const std::chrono::time_point<Clock, Duration>& deadline) {
  return sleep_awaitable(detail::deadline_at(deadline));
}

CORAY_END_NAMESPACE
// end <coray/sleep.hpp>
// begin <coray/state.hpp>
/// ray::state: what the runtime is doing, as Ray's state API lists it (`ray list tasks`,
/// `ray list actors`, `ray list objects`, `ray summary tasks`, `ray memory`): the calls live
/// and finished, the actors, the worker processes, the objects. Each listing is a copy made on the
/// driver's loop thread; other threads of the driver may call these too (they wait for the loop).
/// Driver only.
///
///   for (const auto& t : ray::state::list_tasks({.state = ray::state::task_state::running}))
///     fmt::print("{} {} on pid {}\n", t.id, t.name, t.pid);
///   auto counts = ray::state::summarize_tasks();   // {"square": {FINISHED: 100, RUNNING: 2}}
///   std::string recent = ray::state::get_log(pid).err;  // what a worker wrote lately

// #include <coray/detail/runtime/state_records.hpp>: inlined above
// #include <coray/version.hpp>: inlined above
#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace state {

struct task_filter {
  std::optional<task_state> state = std::nullopt;
  /// The function's name as the registry spells it ("ns::f") or bare ("f"); empty: any.
  std::string name = {};
};
struct actor_filter {
  std::optional<actor_state> state = std::nullopt;
  std::string class_name = {};  // empty: any
  std::string name = {};        // the actor's own name (actor_options::name); empty: any
};
struct worker_filter {
  std::optional<worker_kind> kind = std::nullopt;
  std::optional<bool> alive = std::nullopt;
};

/// Live calls (waiting, queued, running), then the finished and failed ones the runtime
/// keeps (runtime_options::task_history, oldest first).
CORAY_API std::vector<task_info> list_tasks(const task_filter& filter = {});

/// The actors, by id: alive, being created or restarted, and dead ones still referenced.
CORAY_API std::vector<actor_info> list_actors(const actor_filter& filter = {});

/// The task workers (in slot order), then the actors' processes.
CORAY_API std::vector<worker_info> list_workers(const worker_filter& filter = {});

/// What a worker or actor process wrote: the last 16 KiB of its stdout and of its stderr,
/// as it wrote them (no prefix). Ray's get_log.
struct process_log {
  std::string out;
  std::string err;
};

/// The output of process `pid` (a task worker or an actor of this runtime, running or among
/// the last 64 that ended), kept in memory by the supervisor whether or not it was shown
/// (log_to_driver). Empty for a pid the runtime does not know. Throws ray::runtime_error if
/// the supervisor does not answer within 2 s.
CORAY_API process_log get_log(int pid);

/// The objects the driver holds (`ray list objects`): each one with a value in the store or
/// the spill file, and each one a ref inside a value has named; by id, unnamed ones (id 0)
/// first, largest first. Small values only object_refs name are not listed (they live in the
/// refs themselves).
CORAY_API std::vector<object_info> list_objects();

/// How many calls of each function are in each state (`ray summary tasks`), over what
/// list_tasks reports.
CORAY_API std::map<std::string, std::map<task_state, std::size_t>> summarize_tasks();

}  // namespace state

/// What `ray memory` prints: the store's capacity and use, then each object list_objects
/// reports with its size, where it lies, and who holds it (handles in the driver, references
/// to its store block, readers in place). Driver only.
CORAY_API std::string memory_summary();

/// Writes the calls recorded so far (runtime_options::record_timeline: the last
/// task_history of them) to `file` in Chrome's trace-event format, which Perfetto
/// (ui.perfetto.dev) and chrome://tracing open; returns how many calls it wrote. Ray's
/// `ray.timeline(filename)`. One track per process (the driver, each task worker, each
/// actor); on a worker's track a slice per call it ran, named by its function or method,
/// with its id, its arguments' bytes, its attempt and whether it failed; an arrow from the
/// driver, when the call was submitted, to the slice. Times are the driver's: a slice runs
/// from when the call was sent to its process (or when the one before it there ended, if
/// later) until its reply was read. Driver only; throws ray::usage_error if the runtime
/// does not record a timeline, and ray::runtime_error if the file cannot be written.
CORAY_API std::size_t timeline(const std::string& file);

CORAY_END_NAMESPACE

// begin <coray/detail/runtime/state_impl.hpp>
/// The functions of ray::state, ray::memory_summary and ray::timeline: included by state.hpp
/// in header-only mode (inline), and compiled once by src/coray.cpp into coray::coray_compiled
/// in compiled mode (CORAY_COMPILED_LIB), so that a translation unit including coray.hpp
/// neither parses the driver's listings nor instantiates what they use.

#include <fmt/format.h>
#include <unistd.h>

// #include <coray/detail/runtime/driver.hpp>: inlined above
// #include <coray/detail/runtime/foreign.hpp>: inlined above
// #include <coray/detail/runtime/output_name.hpp>: inlined above
// begin <coray/detail/runtime/timeline_trace.hpp>
/// The timeline's calls as slices on their processes' tracks, and as Chrome's trace-event
/// JSON: what ray::timeline writes and the dashboard serves (design.md, "The runtime core",
/// on the timeline).

#include <fmt/format.h>

#include <algorithm>
// #include <coray/detail/runtime/state_records.hpp>: inlined above
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// `s` as a JSON string's contents.
inline std::string json_escaped(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\')
      out += {'\\', c};
    else if (static_cast<unsigned char>(c) < 0x20)
      out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
    else
      out += c;
  }
  return out;
}

/// One call drawn on its process's track, from `start_ns` to its end.
struct timeline_slice {
  const timeline_entry* call;
  std::int64_t start_ns;
};

/// Sorts `calls` by process, then by end, and draws each from when it was sent to its
/// process (or when the call before it there ended, if later) to when its reply was read.
inline std::vector<timeline_slice> timeline_slices(std::vector<timeline_entry>& calls) {
  std::sort(calls.begin(), calls.end(), [](const auto& a, const auto& b) {
    return a.pid != b.pid ? a.pid < b.pid : a.ended_ns < b.ended_ns;
  });
  std::vector<timeline_slice> out;
  out.reserve(calls.size());
  int pid = -1;
  std::int64_t previous_end = 0;
  for (const auto& c : calls) {
    if (c.pid != pid) {
      pid = c.pid;
      previous_end = 0;
    }
    const std::int64_t sent = c.sent_ns ? c.sent_ns : c.ended_ns;
    out.push_back({&c, std::min(std::max(sent, previous_end), c.ended_ns)});
    previous_end = c.ended_ns;
  }
  return out;
}

/// The calls in Chrome's trace-event format: a track per process (named), an `X` slice per
/// call, and an arrow from the driver's track at submission to the slice.
inline std::string timeline_trace(std::vector<timeline_entry> calls, int driver_pid) {
  std::int64_t t0 = calls.empty() ? 0 : calls.front().submitted_ns;
  for (const auto& c : calls) t0 = std::min(t0, c.submitted_ns);
  auto us = [t0](std::int64_t ns) { return static_cast<double>(ns - t0) / 1000.0; };
  std::string out = "{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n";
  out += fmt::format(
      "{{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":{0},\"tid\":{0},"
      "\"args\":{{\"name\":\"driver (pid {0})\"}}}}",
      driver_pid);
  int pid = -1;
  for (const timeline_slice& s : timeline_slices(calls)) {
    const timeline_entry& c = *s.call;
    const int track = c.pid ? c.pid : driver_pid;
    if (c.pid != pid) {
      pid = c.pid;
      if (c.pid)
        out += fmt::format(
            ",\n{{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":{0},\"tid\":{0},"
            "\"args\":{{\"name\":\"{1} (pid {0})\"}}}}",
            c.pid, c.actor ? "actor" : "worker");
    }
    const std::string name = json_escaped(c.name.empty() ? "a task" : c.name);
    out += fmt::format(
        ",\n{{\"name\":\"{}\",\"cat\":\"{}\",\"ph\":\"X\",\"pid\":{},\"tid\":{},"
        "\"ts\":{:.3f},\"dur\":{:.3f},\"args\":{{\"id\":{},\"argument_bytes\":{},"
        "\"attempt\":{},\"outcome\":\"{}\"}}}}",
        name, c.actor ? "actor_call" : "task", track, track, us(s.start_ns),
        us(c.ended_ns) - us(s.start_ns), c.id, c.argument_bytes, c.attempt,
        c.failed ? "failed" : "ok");
    // The arrow: from an instant slice on the driver's track at submission to the call.
    out += fmt::format(
        ",\n{{\"name\":\"submit {0}\",\"cat\":\"submit\",\"ph\":\"X\",\"pid\":{1},"
        "\"tid\":{1},\"ts\":{2:.3f},\"dur\":0}}"
        ",\n{{\"name\":\"call\",\"cat\":\"flow\",\"ph\":\"s\",\"id\":{3},\"pid\":{1},"
        "\"tid\":{1},\"ts\":{2:.3f}}}"
        ",\n{{\"name\":\"call\",\"cat\":\"flow\",\"ph\":\"f\",\"bp\":\"e\",\"id\":{3},"
        "\"pid\":{4},\"tid\":{4},\"ts\":{5:.3f}}}",
        name, driver_pid, us(c.submitted_ns), c.id, track, us(s.start_ns));
  }
  out += "\n]}\n";
  return out;
}

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/timeline_trace.hpp>
// #include <coray/errors.hpp>: inlined above
// #include <coray/state.hpp>: inlined above
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace state {

namespace detail {
/// Runs `f(driver&)` on the driver's loop; refuses in a worker, and without a runtime.
template <class F>
auto from_driver(const char* what, F&& f) {
  return ray::detail::on_loop(what, [&](ray::detail::process& p) {
    ray::detail::driver* d = p.as_driver();
    if (!d)
      throw usage_error(
          fmt::format("{}: the runtime's state is listed by the driver (the process that built the "
                      "runtime), not from inside a task or an actor",
                      what));
    return f(*d);
  });
}
inline bool name_matches(std::string_view full, std::string_view wanted) noexcept {
  return wanted.empty() || full == wanted || ray::detail::output_short_name(full) == wanted;
}
}  // namespace detail

CORAY_API std::vector<task_info> list_tasks(const task_filter& filter) {
  std::vector<task_info> all = detail::from_driver(
      "ray::state::list_tasks", [](ray::detail::driver& d) { return d.list_tasks(); });
  std::vector<task_info> out;
  for (auto& t : all)
    if ((!filter.state || t.state == *filter.state) && detail::name_matches(t.name, filter.name))
      out.push_back(std::move(t));
  return out;
}

CORAY_API std::vector<actor_info> list_actors(const actor_filter& filter) {
  std::vector<actor_info> all = detail::from_driver(
      "ray::state::list_actors", [](ray::detail::driver& d) { return d.list_actors(); });
  std::vector<actor_info> out;
  for (auto& a : all)
    if ((!filter.state || a.state == *filter.state) &&
        detail::name_matches(a.class_name, filter.class_name) &&
        (filter.name.empty() || a.name == filter.name))
      out.push_back(std::move(a));
  return out;
}

CORAY_API std::vector<worker_info> list_workers(const worker_filter& filter) {
  std::vector<worker_info> all = detail::from_driver(
      "ray::state::list_workers", [](ray::detail::driver& d) { return d.list_workers(); });
  std::vector<worker_info> out;
  for (auto& w : all)
    if ((!filter.kind || w.kind == *filter.kind) && (!filter.alive || w.alive == *filter.alive))
      out.push_back(w);
  return out;
}

CORAY_API process_log get_log(int pid) {
  auto got = detail::from_driver("ray::state::get_log",
                                 [pid](ray::detail::driver& d) { return d.process_output(pid); });
  if (!got) throw runtime_error("ray::state::get_log: the supervisor process did not answer");
  return {std::move(got->first), std::move(got->second)};
}

CORAY_API std::vector<object_info> list_objects() {
  return detail::from_driver("ray::state::list_objects",
                             [](ray::detail::driver& d) { return d.list_objects(); });
}

CORAY_API std::map<std::string, std::map<task_state, std::size_t>> summarize_tasks() {
  std::map<std::string, std::map<task_state, std::size_t>> out;
  for (const auto& t : list_tasks()) ++out[t.name][t.state];
  return out;
}

}  // namespace state

CORAY_API std::string memory_summary() {
  struct store_use {
    std::size_t capacity, free;
    std::uint64_t spilled;
  };
  const store_use use =
      state::detail::from_driver("ray::memory_summary", [](ray::detail::driver& d) {
        return store_use{d.seg.capacity(), d.seg.free_bytes(), d.spilled_objects()};
      });
  const auto objects = state::list_objects();
  std::size_t in_store = 0, spilled = 0;
  for (const auto& o : objects) {
    if (o.location == state::object_location::store) in_store += o.size;
    if (o.location == state::object_location::spilled) spilled += o.size;
  }
  std::string out = fmt::format(
      "Object store: {} of {} bytes used ({} free); {} objects listed, {} bytes in the store, "
      "{} bytes spilled now ({} spilled so far)\n",
      use.capacity - use.free, use.capacity, use.free, objects.size(), in_store, spilled,
      use.spilled);
  out += fmt::format("{:>10} {:>12} {:>8} {:>8} {:>10} {:>5} {:>9}\n", "ID", "SIZE", "WHERE",
                     "HANDLES", "STORE_REFS", "PINS", "CONTAINED");
  for (const auto& o : objects)
    out += fmt::format("{:>10} {:>12} {:>8} {:>8} {:>10} {:>5} {:>9}\n", o.id, o.size,
                       state::to_string(o.location), o.handles, o.store_refs, o.pins, o.contained);
  return out;
}

CORAY_API std::size_t timeline(const std::string& file) {
  struct recorded {
    bool on;
    std::vector<ray::detail::timeline_entry> calls;
  };
  recorded r = state::detail::from_driver("ray::timeline", [](ray::detail::driver& d) {
    return recorded{d.records_timeline(), d.timeline()};
  });
  if (!r.on)
    throw usage_error(
        "ray::timeline: the runtime records no timeline; start it with "
        "{.record_timeline = true} or CORAY_TIMELINE=1");
  const std::size_t n = r.calls.size();
  const std::string out =
      ray::detail::timeline_trace(std::move(r.calls), static_cast<int>(::getpid()));
  std::FILE* f = std::fopen(file.c_str(), "wb");
  if (!f || std::fwrite(out.data(), 1, out.size(), f) != out.size() || std::fclose(f) != 0) {
    if (f) std::fclose(f);
    throw ray::runtime_error(fmt::format("ray::timeline: cannot write {}", file));
  }
  return n;
}

CORAY_END_NAMESPACE
// end <coray/detail/runtime/state_impl.hpp>
// end <coray/state.hpp>
// #include <coray/sync_wait.hpp>: inlined above
// begin <coray/synchronize.hpp>
/// Synchronisation between the runtime's processes, kept in its shared memory -- Python's
/// multiprocessing.RLock, Semaphore, BoundedSemaphore, Event, Condition and Barrier:
/// ray::recursive_mutex, ray::semaphore, ray::bounded_semaphore, ray::event,
/// ray::condition_variable (with ray::mutex, mutex.hpp) and ray::barrier.
///
///   void worker_part(ray::barrier ready, ray::event go, ray::semaphore slots) {
///     ready.wait();                          // every party arrived
///     go.wait();                             // the driver said so
///     std::lock_guard one(slots);            // at most N at once in here
///   }
///
/// Each is a handle, as ray::mutex is: copy it, pass it to tasks and actors, create it in any
/// process; the state lives while a handle exists in any process. Every wait has a timed
/// form; one on a runtime loop's thread keeps serving the runtime.
///
/// A process's death: recursive_mutex is robust as ray::mutex is (the next locker gets it and
/// owner_died() says so). A barrier whose waiting party died breaks: every waiter ends with
/// ray::broken_barrier. A condition wait whose lock's holder died (the notifier, killed while
/// it updated the state) ends with ray::peer_died, holding the lock. Semaphores and events have
/// no holder: a waiter's death leaves them working, and units a dead process took are not
/// given back (as with POSIX and Python semaphores).

#include <atomic>
#include <chrono>
#include <condition_variable>
// begin <coray/detail/mp/barrier_state.hpp>
/// ray::barrier's state in the segment, and how a party waits on it.
///
/// A short robust lock (`guard`) covers the count and the generation. Each waiting party
/// takes a slot: a robust mutex it holds while it waits, and a futex word where whoever ends
/// the generation writes the outcome (passed or broken) and wakes it. A party's death is
/// read off its slot: a waiting slot whose mutex another process can take has lost its
/// holder (the kernel releases a dead thread's robust mutexes), which breaks the barrier.
/// Each waiter looks at the others' slots between its sleeps. The party that completes a
/// generation takes no slot; a slot is reused once its party has read its outcome and let go
/// of its mutex, so a late reader never sees a later generation's outcome.

#include <atomic>
// #include <coray/detail/mp/shared_wait.hpp>: inlined above
// #include <coray/detail/shm/robust_mutex.hpp>: inlined above
#include <cstddef>
#include <cstdint>
#include <new>
#include <thread>

CORAY_BEGIN_NAMESPACE
namespace detail {

struct barrier_slot {
  enum : std::uint32_t { unused = 0, waiting = 1, passed = 2, broke = 3 };
  robust_mutex held;  // locked by the party in this slot from its arrival until it leaves
  std::atomic<std::uint32_t> status{unused};
  std::uint32_t generation = 0;
};

struct barrier_state {
  static constexpr const char* name = "ray::barrier";
  static constexpr std::uint32_t no_slot = ~0u;
  /// Waiters of one generation and, at most as many, of the last one not yet gone.
  static std::uint32_t slots_for(std::uint32_t parties) { return 2 * parties; }
  static std::size_t bytes(std::uint32_t parties) {
    return sizeof(barrier_state) + slots_for(parties) * sizeof(barrier_slot);
  }
  static bool fits(std::size_t n) {
    return n >= sizeof(barrier_state) && (n - sizeof(barrier_state)) % sizeof(barrier_slot) == 0;
  }
  explicit barrier_state(std::uint32_t n) : parties(n), nslots(slots_for(n)) {
    for (std::uint32_t i = 0; i < nslots; ++i) new (slots() + i) barrier_slot{};
  }

  robust_mutex guard;
  std::uint32_t guard_deaths = 0;  // the guard's owner_deaths() when last taken
  const std::uint32_t parties;
  const std::uint32_t nslots;
  std::uint32_t generation = 0;
  std::uint32_t arrived = 0;  // waiting parties of this generation
  bool broken = false;

  barrier_slot* slots() noexcept { return std::launder(reinterpret_cast<barrier_slot*>(this + 1)); }

  /// The guard, held for a scope. A process that died holding it may have left the state
  /// half updated: the barrier breaks.
  struct locked {
    explicit locked(barrier_state& b) : s(b) {
      s.guard.lock();
      if (s.guard.owner_deaths() != s.guard_deaths) {
        s.guard_deaths = s.guard.owner_deaths();
        s.break_generation();
      }
    }
    ~locked() { s.guard.unlock(); }
    locked(const locked&) = delete;
    locked& operator=(const locked&) = delete;
    barrier_state& s;
  };

  /// Under the guard: ends this generation, telling its waiters `outcome`.
  void finish(std::uint32_t outcome) noexcept {
    for (std::uint32_t i = 0; i < nslots; ++i) {
      barrier_slot& sl = slots()[i];
      if (sl.status.load(std::memory_order_relaxed) == barrier_slot::waiting &&
          sl.generation == generation) {
        sl.status.store(outcome, std::memory_order_release);
        futex_wake_all(&sl.status);
      }
    }
    ++generation;
    arrived = 0;
  }
  void break_generation() noexcept {
    broken = true;
    finish(barrier_slot::broke);
  }
  /// Under the guard: a waiting party of this generation has died.
  bool party_died(std::uint32_t mine) {
    for (std::uint32_t i = 0; i < nslots; ++i) {
      barrier_slot& sl = slots()[i];
      if (i == mine || sl.status.load(std::memory_order_relaxed) != barrier_slot::waiting ||
          sl.generation != generation)
        continue;
      if (sl.held.try_lock()) {  // its holder is gone: the kernel released it
        sl.held.unlock();
        return true;
      }
    }
    return false;
  }

  /// Arrives and waits for the generation to pass; returns the arrival index.
  std::uint32_t wait(clock::time_point deadline) {
    if (parties == 0) throw usage_error("coray: a default-constructed ray::barrier has no parties");
    std::uint32_t mine = no_slot, index = 0;
    bool last = false;
    auto arrive = [&] {
      locked g(*this);
      if (broken) throw broken_barrier("coray: the ray::barrier is broken");
      if (arrived + 1 == parties) {
        if (party_died(no_slot)) {  // no round passes with a dead party
          break_generation();
          throw broken_barrier("coray: a ray::barrier party died while it waited");
        }
        index = arrived;
        last = true;
        finish(barrier_slot::passed);
        return true;
      }
      for (std::uint32_t i = 0; i < nslots && mine == no_slot; ++i) {
        barrier_slot& sl = slots()[i];
        if (sl.status.load(std::memory_order_relaxed) != barrier_slot::waiting &&
            sl.held.try_lock())
          mine = i;
      }
      if (mine == no_slot) return false;  // the last generation's waiters have not all gone
      barrier_slot& sl = slots()[mine];
      sl.generation = generation;
      sl.status.store(barrier_slot::waiting, std::memory_order_relaxed);
      index = arrived++;
      return true;
    };
    auto pause = [](clock::time_point until) {
      std::this_thread::sleep_until(until);
      return false;
    };
    if (!wait_serving(arrive, pause, deadline, true)) {
      locked g(*this);
      break_generation();
      throw broken_barrier("coray: a ray::barrier wait timed out, which breaks the barrier");
    }
    if (last) return index;

    barrier_slot& sl = slots()[mine];
    auto gone = [&] { return sl.status.load(std::memory_order_acquire) != barrier_slot::waiting; };
    auto sleep = [&](clock::time_point until) {
      futex_wait_until(sl.status, barrier_slot::waiting, until);
      if (gone()) return true;
      locked g(*this);
      if (!gone() && party_died(mine)) break_generation();
      return gone();
    };
    bool timed_out = false;
    try {
      if (!wait_serving(gone, sleep, deadline, true)) {
        locked g(*this);
        timed_out = !gone();
        if (timed_out) break_generation();  // as Python's: a timeout breaks the barrier
      }
    } catch (...) {
      {
        locked g(*this);
        if (!gone()) break_generation();
      }
      sl.held.unlock();
      throw;
    }
    const std::uint32_t outcome = sl.status.load(std::memory_order_acquire);
    sl.held.unlock();
    if (timed_out)
      throw broken_barrier("coray: a ray::barrier wait timed out, which breaks the barrier");
    if (outcome != barrier_slot::passed)
      throw broken_barrier("coray: the ray::barrier broke while this party waited");
    return index;
  }
};

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/mp/barrier_state.hpp>
// #include <coray/detail/mp/shared_wait.hpp>: inlined above
// #include <coray/detail/shm/robust_mutex.hpp>: inlined above
// #include <coray/mutex.hpp>: inlined above
#include <cstddef>
#include <cstdint>
#include <limits>
#include <mutex>

CORAY_BEGIN_NAMESPACE

namespace detail {
struct recursive_mutex_state {
  static constexpr const char* name = "ray::recursive_mutex";
  static std::size_t bytes(std::uint32_t) { return sizeof(recursive_mutex_state); }
  static bool fits(std::size_t n) { return n == sizeof(recursive_mutex_state); }
  explicit recursive_mutex_state(std::uint32_t) {}
  robust_recursive_mutex lock;
  std::uint32_t deaths_seen = 0;  // the lock's owner_deaths() at the last first acquisition
  std::uint32_t depth = 0;        // the holder's acquisitions
  bool owner_died = false;
};
struct semaphore_state {
  static constexpr const char* name = "ray::semaphore";
  static std::size_t bytes(std::uint32_t) { return sizeof(semaphore_state); }
  static bool fits(std::size_t n) { return n == sizeof(semaphore_state); }
  explicit semaphore_state(std::uint32_t initial) : word(initial), initial(initial) {}
  std::atomic<std::uint32_t> word;  // the count, and sleepers_bit
  std::uint32_t initial;
};
struct event_state {
  static constexpr const char* name = "ray::event";
  static std::size_t bytes(std::uint32_t) { return sizeof(event_state); }
  static bool fits(std::size_t n) { return n == sizeof(event_state); }
  explicit event_state(std::uint32_t) {}
  std::atomic<std::uint32_t> word{0};  // 1 when set, and sleepers_bit
};
struct condition_state {
  static constexpr const char* name = "ray::condition_variable";
  static std::size_t bytes(std::uint32_t) { return sizeof(condition_state); }
  static bool fits(std::size_t n) { return n == sizeof(condition_state); }
  explicit condition_state(std::uint32_t) {}
  std::atomic<std::uint32_t> seq{0};      // bumped by each notify; waiters sleep on it
  std::atomic<std::uint32_t> waiters{0};  // a waiter that died stays counted: one wake more
};
}  // namespace detail

/// multiprocessing.RLock: a ray::mutex that the thread holding it may lock again; it is free
/// once unlocked as many times as locked. Robust as ray::mutex is.
class recursive_mutex : public detail::shared_handle<detail::recursive_mutex_state> {
 public:
  recursive_mutex() noexcept : shared_handle(0) {}

  void lock() { acquire_until(detail::clock::time_point::max()); }
  bool try_lock() {
    if (!state().lock.try_lock()) return false;
    acquired();
    return true;
  }
  template <class Rep, class Period>
  bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout) {
    return acquire_until(detail::deadline_in(timeout));
  }
  template <class Clock, class Duration>
  bool try_lock_until(const std::chrono::time_point<Clock, Duration>& deadline) {
    return acquire_until(detail::deadline_at(deadline));
  }
  /// Precondition: this thread holds the lock.
  void unlock() {
    --state().depth;
    state().lock.unlock();
  }
  /// While holding the lock: true if its first acquisition took it over from a process that
  /// died holding it.
  bool owner_died() const { return state().owner_died; }

 private:
  void acquired() {
    auto& st = state();
    const std::uint32_t deaths = st.lock.owner_deaths();
    if (deaths != st.deaths_seen) {  // recovered from a dead holder: its depth went with it
      st.deaths_seen = deaths;
      st.depth = 1;
      st.owner_died = true;
    } else if (++st.depth == 1) {
      st.owner_died = false;
    }
  }
  bool acquire_until(detail::clock::time_point deadline) {
    return detail::wait_serving([&] { return try_lock(); },
                                [&](detail::clock::time_point until) {
                                  if (!state().lock.try_lock_until(until)) return false;
                                  acquired();
                                  return true;
                                },
                                deadline);
  }
};

namespace detail {
/// ray::semaphore and ray::bounded_semaphore.
template <bool Bounded>
class basic_semaphore : public shared_handle<semaphore_state> {
 public:
  /// The largest count a semaphore holds.
  static constexpr std::uint32_t max_value = ~sleepers_bit;

  /// A semaphore of count 1, Python's default.
  basic_semaphore() noexcept : shared_handle(1) {}
  /// A semaphore of count `value`. Throws usage_error above max_value.
  explicit basic_semaphore(std::uint32_t value) : shared_handle(checked(value)) {}

  /// Takes a unit, waiting for one.
  void acquire() { acquire_until(clock::time_point::max()); }
  /// Takes a unit if there is one; never waits.
  bool try_acquire() noexcept {
    auto& w = state().word;
    std::uint32_t v = w.load(std::memory_order_relaxed);
    while ((v & ~sleepers_bit) != 0)
      if (w.compare_exchange_weak(v, v - 1, std::memory_order_acquire, std::memory_order_relaxed))
        return true;
    return false;
  }
  template <class Rep, class Period>
  bool try_acquire_for(const std::chrono::duration<Rep, Period>& timeout) {
    return acquire_until(deadline_in(timeout));
  }
  template <class Clock, class Duration>
  bool try_acquire_until(const std::chrono::time_point<Clock, Duration>& deadline) {
    return acquire_until(deadline_at(deadline));
  }
  /// Gives back `n` units. A bounded semaphore throws usage_error (Python's ValueError) if
  /// that would raise its count above the initial value, and changes nothing.
  void release(std::uint32_t n = 1) {
    auto& st = state();
    std::uint32_t v = st.word.load(std::memory_order_relaxed);
    for (;;) {
      const std::uint32_t count = v & ~sleepers_bit;
      const std::uint32_t limit = Bounded ? st.initial : max_value;
      if (n > limit - count)
        throw usage_error(Bounded ? "coray: ray::bounded_semaphore released too many times"
                                  : "coray: ray::semaphore released past its largest count");
      if (st.word.compare_exchange_weak(v, count + n, std::memory_order_release,
                                        std::memory_order_relaxed))
        break;
    }
    if ((v & sleepers_bit) != 0) futex_wake_all(&st.word);
  }
  /// The count now (Python's get_value; it may change at once).
  std::uint32_t value() const noexcept {
    return state().word.load(std::memory_order_relaxed) & ~sleepers_bit;
  }

  /// acquire and release under the names std::lock_guard and std::unique_lock use: a guard
  /// holds one unit for its scope (Python's `with semaphore:`).
  void lock() { acquire(); }
  bool try_lock() noexcept { return try_acquire(); }
  template <class Rep, class Period>
  bool try_lock_for(const std::chrono::duration<Rep, Period>& timeout) {
    return try_acquire_for(timeout);
  }
  template <class Clock, class Duration>
  bool try_lock_until(const std::chrono::time_point<Clock, Duration>& deadline) {
    return try_acquire_until(deadline);
  }
  void unlock() { release(); }

 private:
  static std::uint32_t checked(std::uint32_t value) {
    if (value > max_value) throw usage_error("coray: a semaphore's count is at most 2^31 - 1");
    return value;
  }
  bool acquire_until(clock::time_point deadline) {
    return wait_serving([&] { return try_acquire(); },
                        [&](clock::time_point until) {
                          sleep_on(
                              state().word, [](std::uint32_t c) { return c != 0; }, until);
                          return false;
                        },
                        deadline);
  }
};
}  // namespace detail

/// multiprocessing.Semaphore: a count of units; acquire takes one, waiting while there is
/// none, and release gives one back (any process may release).
using semaphore = detail::basic_semaphore<false>;
/// multiprocessing.BoundedSemaphore: a semaphore whose count never exceeds its initial value.
using bounded_semaphore = detail::basic_semaphore<true>;

/// multiprocessing.Event: a flag that waiters wait to see set.
class event : public detail::shared_handle<detail::event_state> {
 public:
  /// A new event, clear.
  event() noexcept : shared_handle(0) {}

  /// Sets the flag and wakes every waiter.
  void set() {
    auto& w = state().word;
    if ((w.exchange(1, std::memory_order_acq_rel) & detail::sleepers_bit) != 0)
      detail::futex_wake_all(&w);
  }
  /// Clears the flag: later waits wait again.
  void clear() { state().word.fetch_and(~1u, std::memory_order_relaxed); }
  bool is_set() const noexcept { return (state().word.load(std::memory_order_acquire) & 1) != 0; }

  /// Waits until the flag is set.
  void wait() { wait_until_(detail::clock::time_point::max()); }
  /// Waits at most `timeout`; returns whether the flag is set (Python's wait(timeout)).
  template <class Rep, class Period>
  bool wait_for(const std::chrono::duration<Rep, Period>& timeout) {
    return wait_until_(detail::deadline_in(timeout));
  }
  template <class Clock, class Duration>
  bool wait_until(const std::chrono::time_point<Clock, Duration>& deadline) {
    return wait_until_(detail::deadline_at(deadline));
  }

 private:
  bool wait_until_(detail::clock::time_point deadline) {
    return detail::wait_serving([&] { return is_set(); },
                                [&](detail::clock::time_point until) {
                                  detail::sleep_on(
                                      state().word, [](std::uint32_t f) { return f != 0; }, until);
                                  return false;
                                },
                                deadline);
  }
};

/// multiprocessing.Condition: waits for a change of state that a ray::mutex protects, used
/// with std::unique_lock<ray::mutex> as std::condition_variable is with std::mutex.
///
/// A wait may end without a notify (a spurious wake-up, as std and Python allow): use the
/// forms with a predicate. notify_one wakes one sleeper at once; others that see the notify
/// before they sleep again wake too. If a process dies holding the lock while others wait
/// (a notifier killed mid-update), each wait ends with ray::peer_died, holding the lock, and
/// the lock's owner_died() tells its taker. A notifier that dies without holding the lock
/// cannot be told from a slow one: use a timed wait where that matters.
class condition_variable : public detail::shared_handle<detail::condition_state> {
 public:
  condition_variable() noexcept : shared_handle(0) {}

  void wait(std::unique_lock<mutex>& lock) { wait_until_(lock, detail::clock::time_point::max()); }
  template <class Predicate>
  void wait(std::unique_lock<mutex>& lock, Predicate pred) {
    while (!pred()) wait(lock);
  }
  template <class Rep, class Period>
  std::cv_status wait_for(std::unique_lock<mutex>& lock,
                          const std::chrono::duration<Rep, Period>& timeout) {
    return wait_until_(lock, detail::deadline_in(timeout));
  }
  template <class Rep, class Period, class Predicate>
  bool wait_for(std::unique_lock<mutex>& lock, const std::chrono::duration<Rep, Period>& timeout,
                Predicate pred) {
    return wait_pred(lock, detail::deadline_in(timeout), pred);
  }
  template <class Clock, class Duration>
  std::cv_status wait_until(std::unique_lock<mutex>& lock,
                            const std::chrono::time_point<Clock, Duration>& deadline) {
    return wait_until_(lock, detail::deadline_at(deadline));
  }
  template <class Clock, class Duration, class Predicate>
  bool wait_until(std::unique_lock<mutex>& lock,
                  const std::chrono::time_point<Clock, Duration>& deadline, Predicate pred) {
    return wait_pred(lock, detail::deadline_at(deadline), pred);
  }

  void notify_one() { notify(1); }
  void notify_all() { notify(std::numeric_limits<int>::max()); }

 private:
  void notify(int n) {
    auto& st = state();
    st.seq.fetch_add(1, std::memory_order_seq_cst);
    if (st.waiters.load(std::memory_order_seq_cst) != 0) detail::futex_wake(&st.seq, n);
  }
  template <class Predicate>
  bool wait_pred(std::unique_lock<mutex>& lock, detail::clock::time_point deadline,
                 Predicate& pred) {
    while (!pred())
      if (wait_until_(lock, deadline) == std::cv_status::timeout) return pred();
    return true;
  }
  std::cv_status wait_until_(std::unique_lock<mutex>& lock, detail::clock::time_point deadline);
};

inline std::cv_status condition_variable::wait_until_(std::unique_lock<mutex>& lock,
                                                      detail::clock::time_point deadline) {
  if (!lock.owns_lock())
    throw usage_error("coray: ray::condition_variable::wait needs the lock held");
  mutex& m = *lock.mutex();
  auto& st = state();
  const std::uint32_t seq = st.seq.load(std::memory_order_acquire);
  const std::uint32_t deaths = m.s().lock.owner_deaths();
  // Counted before the lock is let go, so a notify made under the lock after this sees it;
  // a notify between the unlock and the sleep changes seq, which the futex then refuses.
  st.waiters.fetch_add(1, std::memory_order_seq_cst);
  m.unlock();
  bool died = false, holding = false;
  auto notified = [&] { return st.seq.load(std::memory_order_acquire) != seq; };
  auto sleep = [&](detail::clock::time_point until) {
    detail::futex_wait_until(st.seq, seq, until);
    if (notified()) return true;
    // The lock's holder died if a locker recovered the lock since the wait began, or if the
    // lock is free to take because its holder's death freed it.
    if (!holding && m.try_lock()) {
      holding = true;
      if (m.s().lock.owner_deaths() == deaths) {
        holding = false;
        m.unlock();
      }
    }
    died = m.s().lock.owner_deaths() != deaths;
    return died;
  };
  bool woke = false;
  try {
    woke = detail::wait_serving(notified, sleep, deadline, true);
  } catch (...) {  // from what the wait served: the lock is held again, as on every exit
    st.waiters.fetch_sub(1, std::memory_order_relaxed);
    if (!holding) m.lock();
    throw;
  }
  st.waiters.fetch_sub(1, std::memory_order_relaxed);
  if (!holding) m.lock();
  if (died) throw peer_died("coray: a process died holding a ray::condition_variable's lock");
  return woke ? std::cv_status::no_timeout : std::cv_status::timeout;
}

/// multiprocessing.Barrier: `parties` waiters meet; each wait returns once all have arrived,
/// then the barrier serves the next round.
///
/// The barrier breaks, and every wait on it (pending or later, until reset()) throws
/// ray::broken_barrier, when abort() is called, when a timed wait runs out (as Python's
/// does), or when a waiting party's process dies.
class barrier : public detail::shared_handle<detail::barrier_state> {
 public:
  /// An empty handle, what decoding fills; waiting on it is a usage_error.
  barrier() noexcept : shared_handle(0) {}
  /// A barrier for `parties` waiters (at least 1). Throws usage_error otherwise.
  explicit barrier(std::uint32_t parties) : shared_handle(checked(parties)) {}

  /// Waits for every party; returns this arrival's index, 0 to parties() - 1 (Python's).
  std::uint32_t wait() { return state().wait(detail::clock::time_point::max()); }
  /// As wait(), at most `timeout`; a timeout breaks the barrier and throws broken_barrier.
  template <class Rep, class Period>
  std::uint32_t wait_for(const std::chrono::duration<Rep, Period>& timeout) {
    return state().wait(detail::deadline_in(timeout));
  }
  template <class Clock, class Duration>
  std::uint32_t wait_until(const std::chrono::time_point<Clock, Duration>& deadline) {
    return state().wait(detail::deadline_at(deadline));
  }
  /// Breaks the barrier: its waiters, and later waits, throw broken_barrier.
  void abort() {
    detail::barrier_state::locked g(state());
    state().break_generation();
  }
  /// Back to empty and unbroken; parties waiting now throw broken_barrier.
  void reset() {
    detail::barrier_state::locked g(state());
    if (state().arrived != 0) state().finish(detail::barrier_slot::broke);
    state().broken = false;
  }
  bool broken() const {
    detail::barrier_state::locked g(state());
    return state().broken;
  }
  /// How many parties wait now.
  std::uint32_t n_waiting() const {
    detail::barrier_state::locked g(state());
    return state().broken ? 0 : state().arrived;
  }
  std::uint32_t parties() const { return state().parties; }

 private:
  static std::uint32_t checked(std::uint32_t parties) {
    if (parties == 0 || parties > (1u << 20))
      throw usage_error("coray: a ray::barrier has 1 to 2^20 parties");
    return parties;
  }
};

CORAY_END_NAMESPACE
// end <coray/synchronize.hpp>
// #include <coray/task.hpp>: inlined above
// #include <coray/version.hpp>: inlined above
// end <coray/coray.hpp>
// begin <coray/detail/runtime/proc_sample.hpp>
/// A process's CPU time and resident memory as /proc says: the dashboard samples this
/// machine's processes with it, and a cluster's node samples its own for rank 0.

#include <unistd.h>

// #include <coray/version.hpp>: inlined above
#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// A process's CPU time and resident memory, from /proc.
struct proc_sample {
  double cpu_seconds = 0;
  std::uint64_t rss_bytes = 0;
  bool exists = false;
};
inline proc_sample sample_proc(int pid) {
  proc_sample s;
  if (pid <= 0) return s;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return s;
  // The command name may hold spaces and parentheses: the fields start after the last ')'.
  const auto close = line.rfind(')');
  if (close == std::string::npos) return s;
  std::istringstream fields(line.substr(close + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0, rss_pages = 0;
  for (int i = 3; fields >> field; ++i) {  // field 3 is the state
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
    if (i == 24) {
      rss_pages = std::stoull(field);
      break;
    }
  }
  static const long ticks = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
  s.cpu_seconds = static_cast<double>(utime + stime) / static_cast<double>(ticks);
  s.rss_bytes = rss_pages * static_cast<unsigned long long>(page);
  s.exists = true;
  return s;
}

}  // namespace detail
CORAY_END_NAMESPACE
// end <coray/detail/runtime/proc_sample.hpp>
