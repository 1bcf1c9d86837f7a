#include <doctest/doctest.h>

#include <array>
#include <chrono>
#include <coray/codec.hpp>
#include <cstdint>
#include <cstring>
#include <deque>
#include <limits>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <variant>
#include <vector>

namespace {

enum class color : std::uint8_t { red = 1, green = 2 };
enum legacy_flags : std::uint16_t { flag_a = 1, flag_b = 2 };  // unscoped, fixed type
enum unfixed_enum { unfixed_a, unfixed_b };

struct point {
  double x, y, z;
  bool operator==(const point&) const = default;
};

struct packed_pair {  // no padding: raw, copied as one block inside vectors
  std::int32_t a;
  float b;
  bool operator==(const packed_pair&) const = default;
};

struct padded {  // 3 padding bytes: written field by field (5 bytes)
  char c;
  std::int32_t i;
  bool operator==(const padded&) const = default;
};

struct record {
  std::string name;
  std::vector<int> values;
  std::optional<point> where;
  std::map<std::string, double> tags;
  bool operator==(const record&) const = default;
};

struct with_vector {
  char c;
  std::vector<double> v;
};

struct with_view {
  char c;
  std::span<const double> v;
};

struct empty_struct {
  bool operator==(const empty_struct&) const = default;
};

// Only `kept` goes on the wire: serialize() wins over field-by-field reflection.
struct partial {
  int kept = 0;
  int dropped = 0;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(kept);
  }
};

class account {  // not an aggregate: only serialize() makes it encodable
 public:
  account() = default;
  account(std::string owner, std::vector<std::int64_t> history)
      : owner_(std::move(owner)), history_(std::move(history)) {}
  template <class Archive>
  void serialize(Archive& ar) {
    ar(owner_, history_, frozen_);
  }
  bool operator==(const account&) const = default;

 private:
  std::string owner_;
  std::vector<std::int64_t> history_;
  bool frozen_ = false;
};

// Recursive types need serialize(): reflection cannot describe a type through itself.
struct tree {
  int value = 0;
  std::vector<tree> children;
  template <class Archive>
  void serialize(Archive& ar) {
    ar(value, children);
  }
  bool operator==(const tree&) const = default;
};

int global_int = 0;
struct with_reference {
  int& r;
};
struct with_defaulted_reference {
  int x;
  int& r = global_int;
};
struct with_const_member {
  int x;
  const int y = 0;
};
struct with_unique_ptr {
  std::unique_ptr<int> p;
};
struct base_part {
  int x;
};
struct derived_part : base_part {
  int y;
};

template <class T>
T round_trip(const T& value) {
  const std::vector<std::byte> bytes = ray::encode(value);
  REQUIRE(bytes.size() == ray::encoded_size(value));
  // encode_to into caller memory writes the same bytes.
  std::vector<std::byte> again(bytes.size());
  ray::encode_to(std::span<std::byte>(again), value);
  REQUIRE(again == bytes);
  return ray::decode<T>(bytes);
}

template <class T>
void check_round_trip(const T& value) {
  CHECK(round_trip(value) == value);
}

std::vector<std::byte> bytes_of(std::initializer_list<unsigned> list) {
  std::vector<std::byte> out;
  for (unsigned b : list) out.push_back(static_cast<std::byte>(b));
  return out;
}

template <class V>
void append(std::vector<std::byte>& out, V v) {
  const auto old = out.size();
  out.resize(old + sizeof(V));
  std::memcpy(out.data() + old, &v, sizeof(V));
}

// Every proper prefix of a valid encoding is malformed input.
template <class T>
void check_every_truncation_throws(const T& value) {
  const auto bytes = ray::encode(value);
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    CAPTURE(n);
    CHECK_THROWS_AS(ray::decode<T>(std::span(bytes).first(n)), ray::codec_error);
  }
  CHECK(ray::decode<T>(bytes) == value);
}

template <class T>
void decode_or_codec_error(std::span<const std::byte> bytes, int& decoded) {
  try {
    (void)ray::decode<T>(bytes);
    ++decoded;
  } catch (const ray::codec_error&) {
  }
}

using nested_map = std::map<std::string, std::vector<std::optional<std::pair<int, std::string>>>>;
using mixed_variant =
    std::vector<std::variant<std::monostate, int, std::string, std::vector<double>>>;
using small_tuple =
    std::tuple<bool, std::optional<std::int16_t>, std::set<int>, std::list<std::string>>;

}  // namespace

TEST_CASE("arithmetic values, bytes and enums encode as their fixed-width native bytes") {
  check_round_trip(std::int8_t{-5});
  check_round_trip(std::uint16_t{65535});
  check_round_trip(std::int32_t{-123456});
  check_round_trip(std::numeric_limits<std::int64_t>::min());
  check_round_trip(std::numeric_limits<std::uint64_t>::max());
  check_round_trip(3.25f);
  check_round_trip(-1e300);
  check_round_trip('x');
  check_round_trip(true);
  check_round_trip(false);
  check_round_trip(std::byte{0xab});
  check_round_trip(color::green);
  check_round_trip(legacy_flags::flag_b);
  CHECK(ray::encoded_size(std::int32_t{1}) == 4);
  CHECK(ray::encoded_size(1.0) == 8);
  CHECK(ray::encoded_size(true) == 1);
  CHECK(ray::encoded_size(color::red) == 1);
  CHECK(ray::encode(std::uint32_t{0x04030201}) == bytes_of({1, 2, 3, 4}));
  // Any underlying value of a fixed-type enum is valid, so it survives unchanged.
  CHECK(round_trip(static_cast<color>(200)) == static_cast<color>(200));
}

TEST_CASE("strings, string literals and const char* encode as a count and the characters") {
  check_round_trip(std::string());
  check_round_trip(std::string("hello"));
  check_round_trip(std::string(1000, 'z'));
  check_round_trip(std::string("with\0nul", 8));
  const auto expected = ray::encode(std::string("hello"));
  CHECK(ray::encode("hello") == expected);
  const char* c_string = "hello";
  CHECK(ray::encode(c_string) == expected);
  CHECK(ray::encode(std::string_view("hello")) == expected);
  char buffer[16] = "hello";  // only up to the first NUL
  CHECK(ray::encode(buffer) == expected);
  CHECK(ray::encoded_size(std::string("hello")) == 8 + 5);
}

TEST_CASE("sequence containers round trip with their order") {
  check_round_trip(std::vector<int>{});
  check_round_trip(std::vector<int>{1, -2, 3});
  check_round_trip(std::vector<bool>{true, false, true, true});
  check_round_trip(std::vector<std::string>{"a", "", "ccc"});
  check_round_trip(std::array<double, 3>{1, 2, 3});
  check_round_trip(std::array<std::string, 2>{"x", "yy"});
  check_round_trip(std::deque<int>{5, 6, 7});
  check_round_trip(std::list<std::string>{"p", "q"});
  check_round_trip(std::vector<std::byte>{std::byte{1}, std::byte{255}});
  check_round_trip(std::vector<color>{color::red, color::green});
  check_round_trip(std::vector<std::array<float, 2>>{{1, 2}, {3, 4}});
}

TEST_CASE("associative containers round trip, multi containers keep equal keys in order") {
  check_round_trip(std::map<int, std::string>{{1, "one"}, {2, "two"}});
  check_round_trip(std::unordered_map<std::string, int>{{"a", 1}, {"b", 2}, {"c", 3}});
  check_round_trip(std::set<std::string>{"x", "y"});
  check_round_trip(std::unordered_set<int>{4, 5, 6});
  check_round_trip(std::multiset<int>{1, 1, 2});
  check_round_trip(std::unordered_multimap<int, int>{{1, 1}, {1, 2}, {3, 3}});
  const std::multimap<int, std::string> mm{{1, "first"}, {1, "second"}, {0, "zero"}};
  const auto back = round_trip(mm);
  REQUIRE(back == mm);
  auto [lo, hi] = back.equal_range(1);
  CHECK(lo->second == "first");
  CHECK(std::next(lo)->second == "second");
  CHECK(std::next(lo, 2) == hi);
}

TEST_CASE("pair, tuple, optional, variant, monostate and duration round trip") {
  check_round_trip(std::pair<int, double>{7, 0.5});
  check_round_trip(std::tuple<>{});
  check_round_trip(std::tuple<int, std::string, bool>{1, "t", true});
  check_round_trip(std::optional<std::string>{});
  check_round_trip(std::optional<std::string>{"set"});
  check_round_trip(std::variant<int, std::string>{42});
  check_round_trip(std::variant<int, std::string>{"alt"});
  check_round_trip(std::variant<std::monostate, int>{});
  check_round_trip(std::monostate{});
  check_round_trip(std::chrono::milliseconds{1234});
  check_round_trip(std::chrono::duration<double>{2.5});
  CHECK(ray::encoded_size(std::pair<int, double>{}) == 12);
  CHECK(ray::encoded_size(std::optional<int>{}) == 1);
  CHECK(ray::encoded_size(std::optional<int>{1}) == 5);
  CHECK(ray::encoded_size(std::variant<int, double>{1.0}) == 4 + 8);
  CHECK(ray::encoded_size(std::monostate{}) == 0);
  CHECK(ray::encoded_size(std::chrono::seconds{1}) == sizeof(std::chrono::seconds::rep));
}

TEST_CASE("arbitrarily nested standard types round trip") {
  nested_map m;
  m["empty"];
  m["mixed"] = {std::nullopt, std::pair<int, std::string>{1, "one"},
                std::pair<int, std::string>{-2, ""}};
  check_round_trip(m);
  check_round_trip(mixed_variant{std::monostate{}, 3, std::string("s"), std::vector<double>{1.5}});
  check_round_trip(small_tuple{true, std::int16_t{-3}, {1, 2}, {"a", "b"}});
  check_round_trip(std::vector<std::vector<std::vector<int>>>{{{1}, {}}, {}, {{2, 3}}});
  check_round_trip(std::optional<std::map<int, std::set<std::string>>>{{{1, {"a"}}, {2, {}}}});
}

TEST_CASE("plain aggregates round trip field by field without any annotation") {
  check_round_trip(point{1, 2, 3});
  check_round_trip(record{"r", {1, 2, 3}, point{4, 5, 6}, {{"k", 0.5}}});
  check_round_trip(record{});
  check_round_trip(
      std::vector<record>{record{"a", {}, std::nullopt, {}}, record{"b", {9}, {}, {}}});
  check_round_trip(empty_struct{});
  check_round_trip(padded{'c', 77});
  CHECK(ray::encoded_size(padded{}) == 5);  // padding is not written
}

TEST_CASE("a serialize member is used for sizing, writing and reading and beats reflection") {
  check_round_trip(account("ann", {1, -2, 3}));
  check_round_trip(std::vector<account>{account("a", {}), account("b", {5})});
  const partial p{5, 9};
  CHECK(ray::encoded_size(p) == 4);
  const auto back = round_trip(p);
  CHECK(back.kept == 5);
  CHECK(back.dropped == 0);
  CHECK(ray::detail::reader::is_loading);
  CHECK_FALSE(ray::detail::writer::is_loading);
}

TEST_CASE("recursive types round trip through serialize") {
  check_round_trip(tree{1, {tree{2, {}}, tree{3, {tree{4, {}}}}}});
  check_every_truncation_throws(tree{1, {tree{2, {}}}});
}

TEST_CASE("tuples of references encode like tuples of values") {
  const int i = 7;
  const std::string s = "ref";
  const auto bytes = ray::encode(std::forward_as_tuple(i, s));
  CHECK(bytes == ray::encode(std::tuple<int, std::string>{i, s}));
  CHECK(ray::decode<std::tuple<int, std::string>>(bytes) == std::tuple<int, std::string>{i, s});
  static_assert(!ray::is_decodable_v<std::tuple<const int&>>);
}

TEST_CASE("wide strings round trip with their characters aligned") {
  check_round_trip(std::u16string(u"wide"));
  check_round_trip(std::u32string(U"wider"));
  check_round_trip(std::tuple<char, std::u32string>{'c', U"x"});
  CHECK(ray::encoded_size(std::tuple<char, std::u32string>{'c', U"x"}) == 1 + 8 + 3 + 4);
}

TEST_CASE("vectors of raw elements are one block aligned to the element from the buffer start") {
  const std::vector<double> v{1.0, 2.0};
  CHECK(ray::encoded_size(v) == 8 + 16);  // count already leaves offset 8 aligned
  // After a char and a count the data would start at offset 9: padded to 16 with zeros.
  const std::tuple<char, std::vector<double>> t{'c', v};
  const auto bytes = ray::encode(t);
  REQUIRE(bytes.size() == 1 + 8 + 7 + 16);
  for (std::size_t i = 9; i < 16; ++i) CHECK(bytes[i] == std::byte{0});
  double first = 0;
  std::memcpy(&first, bytes.data() + 16, sizeof first);
  CHECK(first == 1.0);
  CHECK(ray::decode<std::tuple<char, std::vector<double>>>(bytes) == t);
  // Raw aggregates in vectors are copied whole; padded ones go field by field.
  CHECK(ray::detail::is_raw_copyable_v<packed_pair>);
  CHECK_FALSE(ray::detail::is_raw_copyable_v<padded>);
  CHECK_FALSE(ray::detail::is_raw_copyable_v<bool>);
  CHECK(ray::encoded_size(std::vector<packed_pair>(10)) == 8 + 80);
  CHECK(ray::encoded_size(std::vector<padded>(10)) == 8 + 50);
  CHECK(ray::encoded_size(std::vector<bool>(10)) == 8 + 10);
  CHECK(ray::encoded_size(std::map<int, double>{{1, 1.0}, {2, 2.0}}) == 8 + 2 * 12);
  check_round_trip(std::vector<packed_pair>{{1, 2.0f}, {-3, 4.5f}});
  check_round_trip(std::vector<padded>{{'a', 1}, {'b', 2}});
  // A large block round trips (sizing is O(1), writing and reading are one copy).
  std::vector<double> big(1 << 20);
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<double>(i) * 0.5;
  check_round_trip(big);
}

TEST_CASE("span and string_view decode as zero-copy views into the input buffer") {
  const std::vector<double> v{1.5, 2.5, 3.5};
  const auto bytes = ray::encode(v);
  const auto view = ray::decode<std::span<const double>>(bytes);
  CHECK(static_cast<const void*>(view.data()) == static_cast<const void*>(bytes.data() + 8));
  CHECK(std::vector<double>(view.begin(), view.end()) == v);

  // Inside a struct, after a char: the view is still aligned for double.
  const with_vector wv{'q', {4.0, 5.0}};
  const auto wbytes = ray::encode(wv);
  const auto wview = ray::decode<with_view>(wbytes);
  CHECK(wview.c == 'q');
  REQUIRE(wview.v.size() == 2);
  CHECK(static_cast<const void*>(wview.v.data()) == static_cast<const void*>(wbytes.data() + 16));
  CHECK(reinterpret_cast<std::uintptr_t>(wview.v.data()) % alignof(double) == 0);
  CHECK(wview.v[1] == 5.0);

  const auto sbytes = ray::encode(std::string("zero copy"));
  const auto sv = ray::decode<std::string_view>(sbytes);
  CHECK(sv == "zero copy");
  CHECK(static_cast<const void*>(sv.data()) == static_cast<const void*>(sbytes.data() + 8));

  // Views encode exactly like the owning types they stand for.
  CHECK(ray::encode(std::span<const double>(v)) == bytes);
  CHECK(ray::encode(wview) == wbytes);
  const auto strings = ray::encode(std::vector<std::string>{"a", "bc"});
  const auto views = ray::decode<std::vector<std::string_view>>(strings);
  CHECK(views == std::vector<std::string_view>{"a", "bc"});
}

TEST_CASE("a view whose elements would be misaligned throws instead of reading unaligned") {
  const std::vector<double> v{1.0, 2.0};
  const auto bytes = ray::encode(v);
  alignas(16) std::byte storage[64]{};
  std::memcpy(storage + 1, bytes.data(), bytes.size());
  const std::span<const std::byte> shifted(storage + 1, bytes.size());
  CHECK_THROWS_AS(ray::decode<std::span<const double>>(shifted), ray::codec_error);
  CHECK(ray::decode<std::vector<double>>(shifted) == v);  // copying decodes do not care
}

TEST_CASE("every truncation of a valid encoding throws codec_error") {
  nested_map m;
  m["k"] = {std::pair<int, std::string>{1, "abc"}, std::nullopt};
  m["l"] = {};
  check_every_truncation_throws(m);
  check_every_truncation_throws(record{"r", {1, 2}, point{1, 2, 3}, {{"t", 1.0}}});
  check_every_truncation_throws(
      mixed_variant{std::monostate{}, 3, std::string("s"), std::vector<double>{1.5, 2}});
  check_every_truncation_throws(small_tuple{false, std::int16_t{9}, {3}, {"x"}});
  check_every_truncation_throws(std::vector<bool>{true, false});
  check_every_truncation_throws(account("z", {1, 2}));
}

TEST_CASE("random and corrupted bytes decode or throw codec_error, never crash") {
  std::mt19937_64 rng(20240601);
  alignas(16) std::byte buffer[256 + 16];
  int decoded = 0;
  const auto fuzz = [&](std::span<const std::byte> bytes) {
    decode_or_codec_error<nested_map>(bytes, decoded);
    decode_or_codec_error<mixed_variant>(bytes, decoded);
    decode_or_codec_error<small_tuple>(bytes, decoded);
    decode_or_codec_error<record>(bytes, decoded);
    decode_or_codec_error<std::vector<bool>>(bytes, decoded);
    decode_or_codec_error<std::span<const double>>(bytes, decoded);
    decode_or_codec_error<std::unordered_map<std::string_view, std::vector<std::monostate>>>(
        bytes, decoded);
    decode_or_codec_error<account>(bytes, decoded);
  };
  for (int i = 0; i < 1500; ++i) {
    const std::size_t n = rng() % 257;
    for (std::size_t j = 0; j < n; ++j)
      buffer[j] = static_cast<std::byte>(rng() & 0x0f ? rng() : 0);
    fuzz(std::span<const std::byte>(buffer, n));
  }
  // Corrupting bytes of valid encodings reaches deeper than pure noise.
  nested_map m;
  m["key"] = {std::pair<int, std::string>{1, "abc"}, std::nullopt};
  const std::vector<std::vector<std::byte>> seeds{
      ray::encode(m), ray::encode(record{"r", {1, 2}, point{1, 2, 3}, {{"t", 1.0}}}),
      ray::encode(mixed_variant{3, std::string("s"), std::vector<double>{1.5}}),
      ray::encode(small_tuple{true, std::int16_t{1}, {1, 2}, {"a"}})};
  for (int i = 0; i < 1500; ++i) {
    const auto& seed = seeds[static_cast<std::size_t>(i) % seeds.size()];
    std::memcpy(buffer, seed.data(), seed.size());
    for (int flips = 1 + static_cast<int>(rng() % 3); flips > 0; --flips)
      buffer[rng() % seed.size()] = static_cast<std::byte>(rng());
    fuzz(std::span<const std::byte>(buffer, seed.size()));
  }
  CHECK(decoded > 0);  // some inputs are valid: the checks are not rejecting everything
}

TEST_CASE("huge element counts throw codec_error without allocating for them") {
  for (const std::uint64_t count :
       {std::numeric_limits<std::uint64_t>::max(), std::uint64_t{1} << 40, std::uint64_t{1} << 62,
        std::uint64_t{17}}) {
    CAPTURE(count);
    std::vector<std::byte> bytes;
    append(bytes, count);
    append(bytes, std::uint64_t{0});  // a little payload, far less than the count needs
    CHECK_THROWS_AS(ray::decode<std::vector<double>>(bytes), ray::codec_error);
    CHECK_THROWS_AS(ray::decode<std::string>(bytes), ray::codec_error);
    CHECK_THROWS_AS(ray::decode<std::vector<std::string>>(bytes), ray::codec_error);
    CHECK_THROWS_AS((ray::decode<std::map<int, int>>(bytes)), ray::codec_error);
    CHECK_THROWS_AS(ray::decode<std::vector<bool>>(bytes), ray::codec_error);
    CHECK_THROWS_AS(ray::decode<std::span<const double>>(bytes), ray::codec_error);
    CHECK_THROWS_AS(ray::decode<std::list<int>>(bytes), ray::codec_error);
    if (count > 1000)
      CHECK_THROWS_AS(ray::decode<std::vector<empty_struct>>(bytes), ray::codec_error);
  }
}

TEST_CASE("containers of empty elements round trip even with more elements than bytes") {
  check_round_trip(std::vector<std::monostate>(1000));
  check_round_trip(std::vector<empty_struct>(5));
  CHECK(ray::encoded_size(std::vector<std::monostate>(1000)) == 8);
}

TEST_CASE("invalid bool, optional tag, variant index and duplicate keys throw codec_error") {
  CHECK_THROWS_AS(ray::decode<bool>(bytes_of({2})), ray::codec_error);
  CHECK(ray::decode<bool>(bytes_of({1})) == true);
  CHECK_THROWS_AS(ray::decode<std::optional<std::uint8_t>>(bytes_of({7, 0})), ray::codec_error);
  CHECK_THROWS_AS((ray::decode<std::variant<int, float>>(bytes_of({99, 0, 0, 0, 0, 0, 0, 0}))),
                  ray::codec_error);
  auto vb = ray::encode(std::vector<bool>{true, false});
  vb.back() = std::byte{2};
  CHECK_THROWS_AS(ray::decode<std::vector<bool>>(vb), ray::codec_error);
  std::vector<std::byte> dup;
  append(dup, std::uint64_t{2});
  append(dup, 1);
  append(dup, 1);
  CHECK_THROWS_AS(ray::decode<std::set<int>>(dup), ray::codec_error);
  CHECK(ray::decode<std::multiset<int>>(dup) == std::multiset<int>{1, 1});
}

TEST_CASE("trailing bytes after a complete value throw codec_error") {
  auto bytes = ray::encode(std::string("abc"));
  bytes.push_back(std::byte{0});
  CHECK_THROWS_AS(ray::decode<std::string>(bytes), ray::codec_error);
  CHECK_THROWS_AS(ray::decode<std::int32_t>(bytes_of({1, 2, 3, 4, 5})), ray::codec_error);
  CHECK_THROWS_AS(ray::decode<std::monostate>(bytes_of({0})), ray::codec_error);
}

TEST_CASE("error messages say what was being read and how many bytes were missing") {
  try {
    (void)ray::decode<std::vector<int>>(bytes_of({1, 2, 3}));
    FAIL("expected codec_error");
  } catch (const ray::codec_error& e) {
    const std::string what = e.what();
    CHECK(what.find("std::vector<int") != std::string::npos);
    CHECK(what.find("count") != std::string::npos);
    CHECK(what.find("need 8 bytes, 3 left") != std::string::npos);
  }
  try {
    (void)ray::decode<std::optional<int>>(bytes_of({7, 0, 0, 0, 0}));
    FAIL("expected codec_error");
  } catch (const ray::codec_error& e) {
    CHECK(std::string(e.what()).find("tag 7") != std::string::npos);
  }
}

TEST_CASE("is_encodable_v is false, not a compile error, for unsupported types") {
  static_assert(ray::is_encodable_v<int>);
  static_assert(ray::is_encodable_v<const record&>);
  static_assert(ray::is_encodable_v<account>);
  static_assert(ray::is_encodable_v<nested_map>);
  static_assert(ray::is_encodable_v<const char*>);
  static_assert(ray::is_encodable_v<decltype("literal")>);
  static_assert(!ray::is_encodable_v<int*>);
  static_assert(!ray::is_encodable_v<void*>);
  static_assert(!ray::is_encodable_v<with_reference>);
  static_assert(!ray::is_encodable_v<with_defaulted_reference>);
  static_assert(!ray::is_encodable_v<with_unique_ptr>);
  static_assert(!ray::is_encodable_v<std::unique_ptr<int>>);
  static_assert(!ray::is_encodable_v<std::vector<int*>>);
  static_assert(!ray::is_encodable_v<std::map<int, std::shared_ptr<int>>>);
  static_assert(!ray::is_encodable_v<derived_part>);
  static_assert(!ray::is_encodable_v<with_const_member>);
  static_assert(!ray::is_encodable_v<unfixed_enum>);
  static_assert(!ray::is_encodable_v<int[3]>);
  // Decoding needs an owner for the bytes and writable, default-constructible parts.
  static_assert(ray::is_decodable_v<record>);
  static_assert(ray::is_decodable_v<std::span<const double>>);
  static_assert(ray::is_decodable_v<std::string_view>);
  static_assert(!ray::is_decodable_v<const char*>);
  static_assert(!ray::is_decodable_v<std::span<double>>);
  static_assert(!ray::is_decodable_v<std::span<const std::string>>);
  static_assert(!ray::is_decodable_v<std::pair<const int, int>>);
  static_assert(!ray::is_decodable_v<int&>);
  CHECK(true);
}

TEST_CASE("storage_type_t and wire_compatible_v match task parameters to arguments") {
  using ray::detail::storage_type_t;
  using ray::detail::wire_compatible_v;
  static_assert(std::is_same_v<storage_type_t<std::span<const double>>, std::vector<double>>);
  static_assert(std::is_same_v<storage_type_t<std::string_view>, std::string>);
  static_assert(std::is_same_v<storage_type_t<const record&>, record>);
  static_assert(std::is_same_v<storage_type_t<int>, int>);

  static_assert(wire_compatible_v<const record&, record&>);
  static_assert(wire_compatible_v<int, const int&>);
  static_assert(wire_compatible_v<std::span<const double>, std::vector<double>>);
  static_assert(wire_compatible_v<std::span<const double>, std::span<double>>);
  static_assert(wire_compatible_v<std::span<const double>, std::span<const double, 3>>);
  static_assert(wire_compatible_v<const std::vector<double>&, std::span<const double>>);
  static_assert(wire_compatible_v<std::string_view, std::string>);
  static_assert(wire_compatible_v<std::string_view, const char*>);
  static_assert(wire_compatible_v<const std::string&, const char(&)[6]>);
  static_assert(wire_compatible_v<std::string, std::string_view>);
  static_assert(!wire_compatible_v<double, int>);  // the caller converts first
  static_assert(!wire_compatible_v<std::int64_t, std::int32_t>);
  static_assert(!wire_compatible_v<std::span<const double>, std::vector<float>>);
  static_assert(!wire_compatible_v<std::span<const double>, std::array<double, 3>>);  // no count
  static_assert(!wire_compatible_v<std::string, std::vector<char>*>);
  // What the trait promises: the argument's own encoding decodes as the parameter.
  const std::vector<double> v{1, 2};
  const auto v_bytes = ray::encode(v);
  CHECK(ray::decode<std::span<const double>>(v_bytes).size() == 2);
  CHECK(ray::decode<std::string>(ray::encode("abc")) == "abc");
  const std::array<double, 2> a{1, 2};
  CHECK(ray::decode<std::vector<double>>(ray::encode(std::span<const double>(a))) == v);
}

namespace {

/// A recursive user type: each link holds the rest of the chain.
struct chain {
  std::vector<chain> next;
  template <class Archive>
  void serialize(Archive& a) {
    a(next);
  }
};

chain chain_of(std::size_t levels) {
  chain c;
  for (std::size_t i = 1; i < levels; ++i) {
    chain outer;
    outer.next.push_back(std::move(c));
    c = std::move(outer);
  }
  return c;
}

/// Takes a chain apart link by link: its own destructor would recurse as deep as it goes.
void dismantle(chain& c) {
  while (!c.next.empty()) {
    std::vector<chain> rest = std::move(c.next.front().next);
    c.next = std::move(rest);
  }
}

}  // namespace

TEST_CASE("a value nested deeper than the codec's limit is a codec_error, not a stack overflow") {
  const std::size_t limit = ray::detail::max_codec_depth;
  chain at_limit = chain_of(limit);
  const std::vector<std::byte> bytes = ray::encode(at_limit);
  chain back = ray::decode<chain>(bytes);  // the limit itself is fine, both ways
  dismantle(back);
  dismantle(at_limit);

  chain deep = chain_of(100'000);
  CHECK_THROWS_WITH_AS(ray::encode(deep), doctest::Contains("nests deeper than 1000 levels"),
                       ray::codec_error);
  dismantle(deep);

  // Bytes that nest one level deeper (one more count of 1 in front), as a hostile sender
  // could write, are refused when decoded.
  std::vector<std::byte> deeper(sizeof(std::uint64_t));
  const std::uint64_t one = 1;
  std::memcpy(deeper.data(), &one, sizeof one);
  deeper.insert(deeper.end(), bytes.begin(), bytes.end());
  CHECK_THROWS_WITH_AS((void)ray::decode<chain>(deeper),
                       doctest::Contains("nests deeper than 1000 levels"), ray::codec_error);
}
