#pragma once
/// What a callee (a task's function or an actor's method) takes and returns, and which
/// arguments may be passed for its parameters: the compile-time checks behind task<f>.remote,
/// actor<T>.call and ray::spawn.

#include <coray/async.hpp>
#include <coray/codec.hpp>
#include <coray/detail/codec/codec_traits.hpp>
#include <coray/object_ref.hpp>
#include <coray/returns.hpp>
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
