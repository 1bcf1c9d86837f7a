#pragma once
/// The caller's side of a call: the task_spec message for a call of F, each argument
/// encoded inline or into a store block, or recorded as a dependency (object_ref).

#include <array>
#include <coray/codec.hpp>
#include <coray/detail/codec/codec_traits.hpp>
#include <coray/detail/runtime/invoker.hpp>
#include <coray/detail/runtime/process.hpp>
#include <coray/detail/runtime/signature.hpp>
#include <coray/detail/runtime/stored_value.hpp>
#include <coray/errors.hpp>
#include <coray/generator.hpp>
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
