#pragma once
/// The caller's side of a call: the task_spec message for a call of F, each argument
/// encoded inline or into a store block, or recorded as a dependency (object_ref).

#include <coray/codec.hpp>
#include <coray/detail/codec/codec_traits.hpp>
#include <coray/detail/runtime/invoker.hpp>
#include <coray/detail/runtime/process.hpp>
#include <coray/detail/runtime/signature.hpp>
#include <coray/errors.hpp>
#include <coray/object_ref.hpp>
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
  // Actor handles inside the value are kept alive for the call's duration.
  struct collecting {
    std::vector<std::uint64_t>* saved;
    explicit collecting(std::vector<std::uint64_t>& into)
        : saved(std::exchange(actor_collector(), &into)) {}
    ~collecting() { actor_collector() = saved; }
  } collect(spec.actors);
  const std::size_t size = encoded_size(v);
  if (size > p.inline_threshold()) {
    object_block* b = p.allocate_block(size);
    encode_to(std::span<std::byte>(b->data(), size), v);
    spec.add_block(p.seg, b);
  } else {
    spec.add_inline(size, [&](std::byte* out) { encode_to(std::span<std::byte>(out, size), v); });
  }
}

template <class P, class A>
void add_argument(task_spec& spec, process& p, A&& a) {
  using S = storage_type_t<std::remove_cvref_t<P>>;
  if constexpr (is_object_ref_v<A>) {
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

/// The message of a call of F with `args` (already checked against F's parameters).
template <auto F, class... A>
task_spec make_call(process& p, A&&... args) {
  using params = typename function_traits<decltype(F)>::params;
  (void)invoker<F>::registered;
  require_usable_ref_arguments(args...);
  task_spec spec;
  spec.fn_id = entity_id<F>;
  spec.name = entity_name<F>();
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    (add_argument<std::tuple_element_t<I, params>>(spec, p, std::forward<A>(args)), ...);
  }
  (std::make_index_sequence<sizeof...(A)>{});
  return spec;
}

}  // namespace detail
CORAY_END_NAMESPACE
