#pragma once
/// How a value goes into an object and comes out: put_type_t (the type a value is stored
/// as), store_value (encoded inline or into a store block) and read_value (decoded, or the
/// object's error rethrown).

#include <coray/codec.hpp>
#include <coray/detail/codec/codec_traits.hpp>
#include <coray/detail/runtime/object_state.hpp>
#include <coray/detail/runtime/process.hpp>
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
