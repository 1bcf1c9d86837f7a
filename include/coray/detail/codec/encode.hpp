#pragma once
/// encode_value: writes any encodable value into an output archive (size_counter or writer)
/// in the format described in coray/codec.hpp.

#include <coray/detail/codec/archive.hpp>
#include <coray/detail/codec/codec_traits.hpp>
#include <coray/version.hpp>
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
