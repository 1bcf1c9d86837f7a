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

#include <algorithm>
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
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

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

/// type_name<T>() tidied for messages: "std::string" rather than libstdc++'s spelling.
template <class T>
std::string display_name() {
  std::string s(type_name<T>());
  const auto replace_all = [&s](std::string_view from, std::string_view to) {
    for (auto i = s.find(from); i != std::string::npos; i = s.find(from, i + to.size()))
      s.replace(i, from.size(), to);
  };
  replace_all("__cxx11::", "");
  replace_all("std::basic_string<char>", "std::string");
  replace_all("std::basic_string_view<char>", "std::string_view");
  return s;
}

[[noreturn, gnu::cold, gnu::noinline]] inline void throw_codec_error(const std::string& what) {
  throw codec_error("codec: " + what);
}

template <class Out, class T>
void encode_value(Out& out, const T& value);
template <class T>
void decode_value(reader& in, T& value);

/// Output archive that only counts the bytes writer would write (padding included).
class size_counter {
 public:
  static constexpr bool is_loading = false;

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

  explicit writer(std::span<std::byte> out) noexcept
      : begin_(out.data()), pos_(out.data()), end_(out.data() + out.size()) {}

  template <class... Ts>
  void operator()(const Ts&... values) {
    (encode_value(*this, values), ...);
  }
  std::size_t offset() const noexcept { return static_cast<std::size_t>(pos_ - begin_); }
  std::size_t remaining() const noexcept { return static_cast<std::size_t>(end_ - pos_); }
  void put(const void* data, std::size_t n) noexcept {
    assert(n <= remaining() && "encode_to: buffer smaller than encoded_size()");
    if (n != 0) std::memcpy(pos_, data, n);  // data may be null when n == 0
    pos_ += n;
  }
  void pad(std::size_t align) noexcept {
    const std::size_t n = padding_for(offset(), align);
    assert(n <= remaining() && "encode_to: buffer smaller than encoded_size()");
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
  [[noreturn, gnu::cold, gnu::noinline]] void fail_truncated(const char* what,
                                                             std::size_t need) const {
    throw_codec_error("truncated input reading " + display_name<T>() + " " + what + " (need " +
                      std::to_string(need) + " bytes, " + std::to_string(remaining()) + " left)");
  }
  template <class T>
  [[noreturn, gnu::cold, gnu::noinline]] void fail_count(std::uint64_t n,
                                                         std::size_t min_element) const {
    throw_codec_error(display_name<T>() + " count " + std::to_string(n) + " exceeds the input (" +
                      std::to_string(remaining()) + " bytes left, at least " +
                      std::to_string(min_element) + " per element)");
  }
  template <class T>
  [[noreturn, gnu::cold, gnu::noinline]] void fail(const std::string& what) const {
    throw_codec_error("invalid " + display_name<T>() + ": " + what + " at offset " +
                      std::to_string(offset()));
  }

 private:
  const std::byte* begin_;
  const std::byte* pos_;
  const std::byte* end_;
};

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
    boost::pfr::for_each_field(v, [&out](const auto& field) { encode_value(out, field); });
  }
}

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
    boost::pfr::for_each_field(v, [&in](auto& field) { decode_value(in, field); });
  }
}

}  // namespace detail

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
  assert(out.size() == encoded_size(value) && "encode_to: out.size() != encoded_size(value)");
  detail::writer w(out);
  detail::encode_value(w, value);
  assert(w.remaining() == 0);
}

/// value's encoding in a fresh buffer (operator new's alignment, 16 bytes on common targets).
template <class T>
std::vector<std::byte> encode(const T& value) {
  std::vector<std::byte> out(encoded_size(value));
  encode_to(std::span<std::byte>(out), value);
  return out;
}

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
    detail::throw_codec_error(std::to_string(in.remaining()) + " trailing bytes after " +
                              detail::display_name<T>() + " (input " +
                              std::to_string(bytes.size()) + " bytes)");
  return value;
}

CORAY_END_NAMESPACE
