#pragma once
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

#include <coray/version.hpp>
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
