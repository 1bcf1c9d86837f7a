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
  int pid() const { return static_cast<int>(::getpid()); }

  /// A new, empty object; its id names it in later calls.
  std::uint64_t create(std::uint8_t k) {
    const std::uint64_t id = ++last_id_;
    switch (static_cast<kind>(k)) {
      case kind::dict:
        dicts_.try_emplace(id);
        break;
      case kind::list:
        lists_.try_emplace(id);
        break;
      case kind::ns:
        namespaces_.try_emplace(id);
        break;
      default:
        throw usage_error("ray::manager: unknown object kind");
    }
    return id;
  }

  // ---- dict: insertion-ordered, as Python's -----------------------------------------------

  void dict_set(std::uint64_t id, encoded key, encoded value) {
    dict(id).set(std::move(key), std::move(value));
  }
  std::optional<encoded> dict_get(std::uint64_t id, const encoded& key) {
    auto& d = dict(id);
    auto it = d.index.find(key);
    if (it == d.index.end()) return std::nullopt;
    return it->second->second;
  }
  /// The value at `key`, first setting it to `value` if absent (Python's setdefault).
  encoded dict_setdefault(std::uint64_t id, encoded key, encoded value) {
    auto& d = dict(id);
    auto it = d.index.find(key);
    if (it != d.index.end()) return it->second->second;
    return d.set(std::move(key), std::move(value))->second;
  }
  /// Removes `key`, returning its value; nullopt if it was absent.
  std::optional<encoded> dict_pop(std::uint64_t id, const encoded& key) {
    auto& d = dict(id);
    auto it = d.index.find(key);
    if (it == d.index.end()) return std::nullopt;
    encoded v = std::move(it->second->second);
    d.items.erase(it->second);
    d.index.erase(it);
    return v;
  }
  /// Removes and returns the last item inserted (Python's popitem); nullopt if empty.
  std::optional<std::pair<encoded, encoded>> dict_popitem(std::uint64_t id) {
    auto& d = dict(id);
    if (d.items.empty()) return std::nullopt;
    auto item = std::move(d.items.back());
    d.index.erase(item.first);
    d.items.pop_back();
    return item;
  }
  bool dict_contains(std::uint64_t id, const encoded& key) { return dict(id).index.contains(key); }
  std::uint64_t dict_size(std::uint64_t id) { return dict(id).items.size(); }
  std::vector<encoded> dict_keys(std::uint64_t id) {
    std::vector<encoded> out;
    for (auto& [k, v] : dict(id).items) out.push_back(k);
    return out;
  }
  std::vector<encoded> dict_values(std::uint64_t id) {
    std::vector<encoded> out;
    for (auto& [k, v] : dict(id).items) out.push_back(v);
    return out;
  }
  std::vector<std::pair<encoded, encoded>> dict_items(std::uint64_t id) {
    auto& items = dict(id).items;
    return {items.begin(), items.end()};
  }
  void dict_clear(std::uint64_t id) {
    auto& d = dict(id);
    d.index.clear();
    d.items.clear();
  }
  void dict_update(std::uint64_t id, std::vector<std::pair<encoded, encoded>> items) {
    auto& d = dict(id);
    for (auto& [k, v] : items) d.set(std::move(k), std::move(v));
  }
  /// Sets `key` to `desired` if its value is `expected` (nullopt: if it is absent).
  bool dict_compare_exchange(std::uint64_t id, encoded key, std::optional<encoded> expected,
                             encoded desired) {
    auto& d = dict(id);
    auto it = d.index.find(key);
    const bool present = it != d.index.end();
    if (present != expected.has_value()) return false;
    if (present && it->second->second != *expected) return false;
    d.set(std::move(key), std::move(desired));
    return true;
  }
  /// Adds `delta` (a number of kind `k`) to the value at `key` (0 if absent); the new value.
  encoded dict_increment(std::uint64_t id, encoded key, std::uint8_t k, encoded delta) {
    auto& d = dict(id);
    auto it = d.index.find(key);
    if (it == d.index.end()) return d.set(std::move(key), std::move(delta))->second;
    return it->second->second = add(static_cast<number_kind>(k), it->second->second, delta);
  }

  // ---- list ------------------------------------------------------------------------------

  void list_append(std::uint64_t id, encoded v) { list(id).push_back(std::move(v)); }
  void list_extend(std::uint64_t id, std::vector<encoded> vs) {
    auto& l = list(id);
    for (auto& v : vs) l.push_back(std::move(v));
  }
  /// Inserts before index `i` (negative: from the end; clamped, as Python's insert).
  void list_insert(std::uint64_t id, std::int64_t i, encoded v) {
    auto& l = list(id);
    const auto n = static_cast<std::int64_t>(l.size());
    if (i < 0) i = std::max<std::int64_t>(0, i + n);
    if (i > n) i = n;
    l.insert(l.begin() + i, std::move(v));
  }
  encoded list_get(std::uint64_t id, std::int64_t i) {
    auto& l = list(id);
    return l[position(l, i, "get")];
  }
  void list_set(std::uint64_t id, std::int64_t i, encoded v) {
    auto& l = list(id);
    l[position(l, i, "set")] = std::move(v);
  }
  encoded list_pop(std::uint64_t id, std::int64_t i) {
    auto& l = list(id);
    if (l.empty()) throw index_error("ray::list_proxy: pop from an empty list");
    const std::size_t at = position(l, i, "pop");
    encoded v = std::move(l[at]);
    l.erase(l.begin() + static_cast<std::ptrdiff_t>(at));
    return v;
  }
  std::uint64_t list_size(std::uint64_t id) { return list(id).size(); }
  std::vector<encoded> list_all(std::uint64_t id) { return list(id); }
  void list_clear(std::uint64_t id) { list(id).clear(); }

  // ---- namespace: named values, each with its type's name ----------------------------------

  void ns_set(std::uint64_t id, std::string name, std::string type, encoded v) {
    ns(id).insert_or_assign(std::move(name), std::pair{std::move(type), std::move(v)});
  }
  /// The type's name and the value of `name`; nullopt if it has none.
  std::optional<std::pair<std::string, encoded>> ns_get(std::uint64_t id, const std::string& name) {
    auto& n = ns(id);
    auto it = n.find(name);
    if (it == n.end()) return std::nullopt;
    return it->second;
  }
  bool ns_contains(std::uint64_t id, const std::string& name) { return ns(id).contains(name); }
  bool ns_erase(std::uint64_t id, const std::string& name) { return ns(id).erase(name) != 0; }
  std::vector<std::string> ns_names(std::uint64_t id) {
    std::vector<std::string> out;
    for (auto& [name, v] : ns(id)) out.push_back(name);
    return out;
  }

 private:
  struct dict_state {
    using item_list = std::list<std::pair<encoded, encoded>>;
    item_list items;  // insertion order
    std::unordered_map<encoded, item_list::iterator> index;

    item_list::iterator set(encoded&& key, encoded&& value) {
      auto it = index.find(key);
      if (it != index.end()) {
        it->second->second = std::move(value);
        return it->second;
      }
      items.emplace_back(key, std::move(value));
      auto at = std::prev(items.end());
      index.emplace(std::move(key), at);
      return at;
    }
  };

  template <class Map>
  static auto& find(Map& m, std::uint64_t id) {
    auto it = m.find(id);
    if (it == m.end())
      throw usage_error(fmt::format("ray::manager: no object {} in this manager", id));
    return it->second;
  }
  dict_state& dict(std::uint64_t id) { return find(dicts_, id); }
  std::vector<encoded>& list(std::uint64_t id) { return find(lists_, id); }
  std::map<std::string, std::pair<std::string, encoded>>& ns(std::uint64_t id) {
    return find(namespaces_, id);
  }

  /// Python's index rules: negative counts from the end; out of range is an index_error.
  static std::size_t position(const std::vector<encoded>& l, std::int64_t i, const char* op) {
    const auto n = static_cast<std::int64_t>(l.size());
    const std::int64_t at = i < 0 ? i + n : i;
    if (at < 0 || at >= n)
      throw index_error(
          fmt::format("ray::list_proxy: {} at index {} out of range (size {})", op, i, n));
    return static_cast<std::size_t>(at);
  }

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
  static encoded add(number_kind k, const encoded& a, const encoded& b) {
    switch (k) {
      case number_kind::i8:
        return add_as<std::int8_t>(a, b);
      case number_kind::i16:
        return add_as<std::int16_t>(a, b);
      case number_kind::i32:
        return add_as<std::int32_t>(a, b);
      case number_kind::i64:
        return add_as<std::int64_t>(a, b);
      case number_kind::u8:
        return add_as<std::uint8_t>(a, b);
      case number_kind::u16:
        return add_as<std::uint16_t>(a, b);
      case number_kind::u32:
        return add_as<std::uint32_t>(a, b);
      case number_kind::u64:
        return add_as<std::uint64_t>(a, b);
      case number_kind::f32:
        return add_as<float>(a, b);
      case number_kind::f64:
        return add_as<double>(a, b);
    }
    throw usage_error("ray::dict_proxy::increment: unknown number kind");
  }

  std::uint64_t last_id_ = 0;
  std::unordered_map<std::uint64_t, dict_state> dicts_;
  std::unordered_map<std::uint64_t, std::vector<encoded>> lists_;
  std::unordered_map<std::uint64_t, std::map<std::string, std::pair<std::string, encoded>>>
      namespaces_;
};

}  // namespace detail
CORAY_END_NAMESPACE
