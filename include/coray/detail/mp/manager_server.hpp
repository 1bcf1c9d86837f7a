#pragma once
/// The actor behind a ray::manager: one process serving every dict, list and namespace made
/// through that manager. It knows no user types: keys, values and items arrive as their
/// codec encodings (held in std::string, so they hash and compare as bytes), and the proxies
/// in the callers' processes encode and decode them. Each method runs alone in the actor, so
/// each operation is atomic; a sequence of operations is not.

#include <fmt/format.h>
#include <unistd.h>

#include <coray/codec.hpp>
#include <coray/errors.hpp>
#include <cstdint>
#include <list>
#include <map>
#include <optional>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// An arithmetic type's tag, so that the server can add encoded numbers it has no type for.
enum class number_kind : std::uint8_t { i8, i16, i32, i64, u8, u16, u32, u64, f32, f64 };

template <class T>
constexpr number_kind number_kind_of() {
  static_assert(std::is_arithmetic_v<T> && !std::is_same_v<T, bool> && sizeof(T) <= 8,
                "ray::dict_proxy::increment: the value type must be an integer or floating "
                "point type of at most 8 bytes (not bool)");
  if constexpr (std::is_floating_point_v<T>)
    return sizeof(T) == 4 ? number_kind::f32 : number_kind::f64;
  else if constexpr (std::is_signed_v<T>)
    return sizeof(T) == 1   ? number_kind::i8
           : sizeof(T) == 2 ? number_kind::i16
           : sizeof(T) == 4 ? number_kind::i32
                            : number_kind::i64;
  else
    return sizeof(T) == 1   ? number_kind::u8
           : sizeof(T) == 2 ? number_kind::u16
           : sizeof(T) == 4 ? number_kind::u32
                            : number_kind::u64;
}

/// Bytes as the server holds them: a value's encoding.
using encoded = std::string;

template <class T>
encoded encode_as_string(const T& v) {
  encoded s(encoded_size(v), '\0');
  encode_to(std::as_writable_bytes(std::span<char>(s)), v);
  return s;
}
template <class T>
T decode_from_string(const encoded& s) {
  return decode<T>(std::as_bytes(std::span<const char>(s)));
}

class manager_server {
 public:
  enum class kind : std::uint8_t { dict, list, ns };

  /// The server's process id (for introspection and tests).
  CORAY_API int pid() const;

  /// A new, empty object; its id names it in later calls.
  CORAY_API std::uint64_t create(std::uint8_t k);

  // ---- dict: insertion-ordered, as Python's -----------------------------------------------

  CORAY_API void dict_set(std::uint64_t id, encoded key, encoded value);
  CORAY_API std::optional<encoded> dict_get(std::uint64_t id, const encoded& key);
  /// The value at `key`, first setting it to `value` if absent (Python's setdefault).
  CORAY_API encoded dict_setdefault(std::uint64_t id, encoded key, encoded value);
  /// Removes `key`, returning its value; nullopt if it was absent.
  CORAY_API std::optional<encoded> dict_pop(std::uint64_t id, const encoded& key);
  /// Removes and returns the last item inserted (Python's popitem); nullopt if empty.
  CORAY_API std::optional<std::pair<encoded, encoded>> dict_popitem(std::uint64_t id);
  CORAY_API bool dict_contains(std::uint64_t id, const encoded& key);
  CORAY_API std::uint64_t dict_size(std::uint64_t id);
  CORAY_API std::vector<encoded> dict_keys(std::uint64_t id);
  CORAY_API std::vector<encoded> dict_values(std::uint64_t id);
  CORAY_API std::vector<std::pair<encoded, encoded>> dict_items(std::uint64_t id);
  CORAY_API void dict_clear(std::uint64_t id);
  CORAY_API void dict_update(std::uint64_t id, std::vector<std::pair<encoded, encoded>> items);
  /// Sets `key` to `desired` if its value is `expected` (nullopt: if it is absent).
  CORAY_API bool dict_compare_exchange(std::uint64_t id, encoded key,
                                       std::optional<encoded> expected, encoded desired);
  /// Adds `delta` (a number of kind `k`) to the value at `key` (0 if absent); the new value.
  CORAY_API encoded dict_increment(std::uint64_t id, encoded key, std::uint8_t k, encoded delta);

  // ---- list ------------------------------------------------------------------------------

  CORAY_API void list_append(std::uint64_t id, encoded v);
  CORAY_API void list_extend(std::uint64_t id, std::vector<encoded> vs);
  /// Inserts before index `i` (negative: from the end; clamped, as Python's insert).
  CORAY_API void list_insert(std::uint64_t id, std::int64_t i, encoded v);
  CORAY_API encoded list_get(std::uint64_t id, std::int64_t i);
  CORAY_API void list_set(std::uint64_t id, std::int64_t i, encoded v);
  CORAY_API encoded list_pop(std::uint64_t id, std::int64_t i);
  CORAY_API std::uint64_t list_size(std::uint64_t id);
  CORAY_API std::vector<encoded> list_all(std::uint64_t id);
  CORAY_API void list_clear(std::uint64_t id);

  // ---- namespace: named values, each with its type's name ----------------------------------

  CORAY_API void ns_set(std::uint64_t id, std::string name, std::string type, encoded v);
  /// The type's name and the value of `name`; nullopt if it has none.
  CORAY_API std::optional<std::pair<std::string, encoded>> ns_get(std::uint64_t id,
                                                                  const std::string& name);
  CORAY_API bool ns_contains(std::uint64_t id, const std::string& name);
  CORAY_API bool ns_erase(std::uint64_t id, const std::string& name);
  CORAY_API std::vector<std::string> ns_names(std::uint64_t id);

 private:
  struct dict_state {
    using item_list = std::list<std::pair<encoded, encoded>>;
    item_list items;  // insertion order
    std::unordered_map<encoded, item_list::iterator> index;

    CORAY_API item_list::iterator set(encoded&& key, encoded&& value);
  };

  template <class Map>
  static auto& find(Map& m, std::uint64_t id) {
    auto it = m.find(id);
    if (it == m.end())
      throw usage_error(fmt::format("ray::manager: no object {} in this manager", id));
    return it->second;
  }
  CORAY_API dict_state& dict(std::uint64_t id);
  CORAY_API std::vector<encoded>& list(std::uint64_t id);
  CORAY_API std::map<std::string, std::pair<std::string, encoded>>& ns(std::uint64_t id);

  /// Python's index rules: negative counts from the end; out of range is an index_error.
  CORAY_API static std::size_t position(const std::vector<encoded>& l, std::int64_t i,
                                        const char* op);

  template <class T>
  static encoded add_as(const encoded& a, const encoded& b) {
    const T x = decode_from_string<T>(a), y = decode_from_string<T>(b);
    if constexpr (std::is_integral_v<T>) {  // wraps, as the unsigned sum does, never UB
      using U = std::make_unsigned_t<T>;
      return encode_as_string(static_cast<T>(static_cast<U>(x) + static_cast<U>(y)));
    } else {
      return encode_as_string(static_cast<T>(x + y));
    }
  }
  CORAY_API static encoded add(number_kind k, const encoded& a, const encoded& b);

  std::uint64_t last_id_ = 0;
  std::unordered_map<std::uint64_t, dict_state> dicts_;
  std::unordered_map<std::uint64_t, std::vector<encoded>> lists_;
  std::unordered_map<std::uint64_t, std::map<std::string, std::pair<std::string, encoded>>>
      namespaces_;
};

}  // namespace detail
CORAY_END_NAMESPACE

#ifndef CORAY_COMPILED_LIB
#include <coray/detail/mp/manager_server_impl.hpp>
#endif
