#pragma once
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
#include <coray/detail/codec/archive.hpp>
#include <coray/detail/codec/codec_traits.hpp>
#include <coray/detail/codec/decode.hpp>
#include <coray/detail/codec/encode.hpp>
#include <coray/errors.hpp>
#include <coray/version.hpp>
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
