#pragma once
/// decode_value: reads any decodable value from a reader, checking every length and tag
/// (see coray/codec.hpp for the format); malformed input throws codec_error.

#include <algorithm>
#include <coray/detail/codec/archive.hpp>
#include <coray/detail/codec/codec_traits.hpp>
#include <coray/version.hpp>
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
