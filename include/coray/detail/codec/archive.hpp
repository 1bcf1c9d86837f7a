#pragma once
/// The codec's archives: size_counter and writer (output), reader (input), and the alignment
/// and error helpers they share; coray/codec.hpp describes the format. An archive's operator()
/// is what a user type's serialize(Archive&) calls: it goes to encode_value (encode.hpp) or
/// decode_value (decode.hpp), so the three are used together, through coray/codec.hpp.

#include <bit>
#include <cassert>
#include <coray/detail/codec/codec_traits.hpp>
#include <coray/errors.hpp>
#include <coray/version.hpp>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <utility>

static_assert(std::endian::native == std::endian::little,
              "coray's codec writes native little-endian data");

CORAY_BEGIN_NAMESPACE
namespace detail {

/// Padding never exceeds this, so every view decoded from a buffer aligned to it is aligned.
inline constexpr std::size_t max_wire_align = 16;
template <class T>
inline constexpr std::size_t wire_align_v = alignof(T) < max_wire_align ? alignof(T)
                                                                        : max_wire_align;

/// Elements that may encode to no bytes (monostate, empty structs, serialize() types) escape
/// the bytes-left bound on counts; such a count may exceed the bytes left by at most this.
inline constexpr std::uint64_t max_extra_empty_elements = std::uint64_t{1} << 20;

constexpr std::size_t padding_for(std::size_t offset, std::size_t align) noexcept {
  return (align - offset % align) % align;
}

/// A type's name tidied for messages: "std::string" rather than libstdc++'s spelling.
inline std::string tidy_type_name(std::string_view name) {
  std::string s(name);
  const auto replace_all = [&s](std::string_view from, std::string_view to) {
    for (auto i = s.find(from); i != std::string::npos; i = s.find(from, i + to.size()))
      s.replace(i, from.size(), to);
  };
  replace_all("__cxx11::", "");
  replace_all("std::basic_string<char>", "std::string");
  replace_all("std::basic_string_view<char>", "std::string_view");
  return s;
}

/// T's name as messages show it. The work is tidy_type_name's, compiled once, not per type.
template <class T>
std::string display_name() {
  return tidy_type_name(type_name_v<T>);
}

[[noreturn, gnu::cold, gnu::noinline]] inline void throw_codec_error(const std::string& what) {
  throw codec_error("codec: " + what);
}

template <class Out, class T>
void encode_value(Out& out, const T& value);
template <class T>
void decode_value(reader& in, T& value);

/// How deep a value's user types (serialize() types, aggregates) may nest: 1,000 levels, as
/// Python's pickle allows by default. Only a recursive type nests at run time, as deep as
/// its value goes; beyond this the codec throws codec_error rather than overflow the stack
/// of whichever process encodes or decodes it (a sanitizer's frames included).
inline constexpr std::uint32_t max_codec_depth = 1'000;

/// The error of a value nested deeper than max_codec_depth: one cold function for all types,
/// given the type's name, so a type's coding carries one call for it.
[[noreturn, gnu::cold, gnu::noinline]] inline void throw_too_deep(std::string_view type) {
  throw_codec_error(tidy_type_name(type) + " nests deeper than " + std::to_string(max_codec_depth) +
                    " levels of user types");
}

/// One level of a user type in an archive, for as long as its fields are coded.
template <class T, class Archive>
class nesting {
 public:
  explicit nesting(Archive& a) : a_(a) {
    if (a_.depth == max_codec_depth) [[unlikely]]
      throw_too_deep(type_name_v<T>);
    ++a_.depth;
  }
  nesting(const nesting&) = delete;
  nesting& operator=(const nesting&) = delete;
  ~nesting() { --a_.depth; }

 private:
  Archive& a_;
};

/// Output archive that only counts the bytes writer would write (padding included).
class size_counter {
 public:
  static constexpr bool is_loading = false;
  static constexpr bool is_sizing = true;
  std::uint32_t depth = 0;  // user types entered and not left (see nesting)

  template <class... Ts>
  void operator()(const Ts&... values) {
    (encode_value(*this, values), ...);
  }
  std::size_t size() const noexcept { return size_; }
  std::size_t offset() const noexcept { return size_; }
  void put(const void*, std::size_t n) noexcept { size_ += n; }
  void pad(std::size_t align) noexcept { size_ += padding_for(size_, align); }

 private:
  std::size_t size_ = 0;
};

/// Output archive writing into a buffer sized by size_counter; it does not check bounds
/// beyond asserts, the exact size is the caller's precondition.
class writer {
 public:
  static constexpr bool is_loading = false;
  static constexpr bool is_sizing = false;
  std::uint32_t depth = 0;  // user types entered and not left (see nesting)

  explicit writer(std::span<std::byte> out) noexcept
      : begin_(out.data()), pos_(out.data()), end_(out.data() + out.size()) {}

  template <class... Ts>
  void operator()(const Ts&... values) {
    (encode_value(*this, values), ...);
  }
  std::size_t offset() const noexcept { return static_cast<std::size_t>(pos_ - begin_); }
  std::size_t remaining() const noexcept { return static_cast<std::size_t>(end_ - pos_); }
  /// encode_to's precondition, that out holds encoded_size() bytes: asserted, and otherwise
  /// told to the optimiser, which then sees no write past the end (g++ 12 warned of one
  /// where it could not tell an encoded size from zero).
  void fits(std::size_t n) const noexcept {
    assert(n <= remaining() && "encode_to: buffer smaller than encoded_size()");
    if (n > remaining()) __builtin_unreachable();
  }
  void put(const void* data, std::size_t n) noexcept {
    fits(n);
    if (n != 0) std::memcpy(pos_, data, n);  // data may be null when n == 0
    pos_ += n;
  }
  void pad(std::size_t align) noexcept {
    const std::size_t n = padding_for(offset(), align);
    fits(n);
    if (n != 0) std::memset(pos_, 0, n);
    pos_ += n;
  }

 private:
  std::byte* begin_;
  std::byte* pos_;
  std::byte* end_;
};

/// Input archive: every read is bounds checked and throws codec_error when the input is short.
/// Offsets count from the start of the buffer it was given, which must be where encoding began.
class reader {
 public:
  static constexpr bool is_loading = true;
  std::uint32_t depth = 0;  // user types entered and not left (see nesting)

  explicit reader(std::span<const std::byte> in) noexcept
      : begin_(in.data()), pos_(in.data()), end_(in.data() + in.size()) {}

  template <class... Ts>
  void operator()(Ts&... values) {
    (decode_value(*this, values), ...);
  }
  std::size_t offset() const noexcept { return static_cast<std::size_t>(pos_ - begin_); }
  std::size_t remaining() const noexcept { return static_cast<std::size_t>(end_ - pos_); }

  /// The next n bytes, consumed; T and what only name them in the error.
  template <class T>
  const std::byte* take(std::size_t n, const char* what) {
    if (n > remaining()) [[unlikely]]
      fail_truncated<T>(what, n);
    const std::byte* p = pos_;
    pos_ += n;
    return p;
  }
  template <class T, class V>
  V take_scalar(const char* what) {
    V v;
    std::memcpy(&v, take<T>(sizeof(V), what), sizeof(V));
    return v;
  }
  template <class T>
  void skip_padding(std::size_t align) {
    take<T>(padding_for(offset(), align), "alignment padding");
  }
  /// Reads a u64 element count and rejects it unless count * MinElement bytes are left.
  template <class T, std::size_t MinElement>
  std::size_t take_count() {
    const auto n = take_scalar<T, std::uint64_t>("count");
    const std::size_t left = remaining();
    bool fits;
    if constexpr (MinElement != 0)
      fits = n <= left / MinElement;  // no overflow, unlike n * MinElement
    else
      fits = n <= left + max_extra_empty_elements;
    if (!fits) [[unlikely]]
      fail_count<T>(n, MinElement);
    return static_cast<std::size_t>(n);
  }
  /// Count, padding and bytes of a contiguous run of raw E; returns its first byte.
  template <class T, class E>
  std::pair<const std::byte*, std::size_t> take_raw_run() {
    const std::size_t n = take_count<T, sizeof(E)>();
    skip_padding<T>(wire_align_v<E>);
    return {take<T>(n * sizeof(E), "elements"), n};
  }

  template <class T>
  [[noreturn]] void fail_truncated(const char* what, std::size_t need) const {
    fail_truncated(type_name_v<T>, what, need);
  }
  template <class T>
  [[noreturn]] void fail_count(std::uint64_t n, std::size_t min_element) const {
    fail_count(type_name_v<T>, n, min_element);
  }
  template <class T>
  [[noreturn]] void fail(const std::string& what) const {
    fail(type_name_v<T>, what);
  }
  // What the templates above call: one cold function each for every type.
  [[noreturn, gnu::cold, gnu::noinline]] void fail_truncated(std::string_view type,
                                                             const char* what,
                                                             std::size_t need) const {
    throw_codec_error("truncated input reading " + tidy_type_name(type) + " " + what + " (need " +
                      std::to_string(need) + " bytes, " + std::to_string(remaining()) + " left)");
  }
  [[noreturn, gnu::cold, gnu::noinline]] void fail_count(std::string_view type, std::uint64_t n,
                                                         std::size_t min_element) const {
    throw_codec_error(tidy_type_name(type) + " count " + std::to_string(n) +
                      " exceeds the input (" + std::to_string(remaining()) +
                      " bytes left, at least " + std::to_string(min_element) + " per element)");
  }
  [[noreturn, gnu::cold, gnu::noinline]] void fail(std::string_view type,
                                                   const std::string& what) const {
    throw_codec_error("invalid " + tidy_type_name(type) + ": " + what + " at offset " +
                      std::to_string(offset()));
  }

 private:
  const std::byte* begin_;
  const std::byte* pos_;
  const std::byte* end_;
};

}  // namespace detail
CORAY_END_NAMESPACE
