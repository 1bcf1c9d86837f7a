#pragma once
/// How an actor is built in its process: actor_constructor<T, S...> decodes the constructor's
/// arguments (of types S..., see constructor_arg_t), makes the T and replies; it registers
/// itself like a function's invoker. actor_type_id<T> is what ray::get_actor checks.

#include <coray/codec.hpp>
#include <coray/detail/codec/codec_traits.hpp>
#include <coray/detail/runtime/invocation.hpp>
#include <coray/detail/runtime/invoker.hpp>
#include <coray/detail/runtime/registry.hpp>
#include <coray/detail/runtime/signature.hpp>
#include <coray/detail/runtime/stored_value.hpp>
#include <coray/object_ref.hpp>
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
