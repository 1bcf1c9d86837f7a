#pragma once
/// Compile-time classification of the types the codec accepts (see coray/codec.hpp), and the
/// traits task.remote uses to match an argument's type against a parameter's type.

#include <array>
#include <boost/pfr/core.hpp>
#include <boost/pfr/tuple_size.hpp>
#include <chrono>
#include <coray/version.hpp>
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
