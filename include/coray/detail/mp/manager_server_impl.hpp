#pragma once
/// The members of manager_server, the actor behind a ray::manager: included by
/// manager_server.hpp in header-only mode (inline), and compiled once by src/coray.cpp into
/// coray::coray_compiled in compiled mode (CORAY_COMPILED_LIB), so that a translation unit
/// including coray.hpp does not instantiate the server's containers.

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <coray/detail/mp/manager_server.hpp>
#include <coray/errors.hpp>
#include <cstdint>
#include <iterator>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE
namespace detail {

CORAY_API int manager_server::pid() const { return static_cast<int>(::getpid()); }

CORAY_API std::uint64_t manager_server::create(std::uint8_t k) {
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

CORAY_API void manager_server::dict_set(std::uint64_t id, encoded key, encoded value) {
  dict(id).set(std::move(key), std::move(value));
}

CORAY_API std::optional<encoded> manager_server::dict_get(std::uint64_t id, const encoded& key) {
  auto& d = dict(id);
  auto it = d.index.find(key);
  if (it == d.index.end()) return std::nullopt;
  return it->second->second;
}

CORAY_API encoded manager_server::dict_setdefault(std::uint64_t id, encoded key, encoded value) {
  auto& d = dict(id);
  auto it = d.index.find(key);
  if (it != d.index.end()) return it->second->second;
  return d.set(std::move(key), std::move(value))->second;
}

CORAY_API std::optional<encoded> manager_server::dict_pop(std::uint64_t id, const encoded& key) {
  auto& d = dict(id);
  auto it = d.index.find(key);
  if (it == d.index.end()) return std::nullopt;
  encoded v = std::move(it->second->second);
  d.items.erase(it->second);
  d.index.erase(it);
  return v;
}

CORAY_API std::optional<std::pair<encoded, encoded>> manager_server::dict_popitem(
    std::uint64_t id) {
  auto& d = dict(id);
  if (d.items.empty()) return std::nullopt;
  auto item = std::move(d.items.back());
  d.index.erase(item.first);
  d.items.pop_back();
  return item;
}

CORAY_API bool manager_server::dict_contains(std::uint64_t id, const encoded& key) {
  return dict(id).index.contains(key);
}

CORAY_API std::uint64_t manager_server::dict_size(std::uint64_t id) {
  return dict(id).items.size();
}

CORAY_API std::vector<encoded> manager_server::dict_keys(std::uint64_t id) {
  std::vector<encoded> out;
  for (auto& [k, v] : dict(id).items) out.push_back(k);
  return out;
}

CORAY_API std::vector<encoded> manager_server::dict_values(std::uint64_t id) {
  std::vector<encoded> out;
  for (auto& [k, v] : dict(id).items) out.push_back(v);
  return out;
}

CORAY_API std::vector<std::pair<encoded, encoded>> manager_server::dict_items(std::uint64_t id) {
  auto& items = dict(id).items;
  return {items.begin(), items.end()};
}

CORAY_API void manager_server::dict_clear(std::uint64_t id) {
  auto& d = dict(id);
  d.index.clear();
  d.items.clear();
}

CORAY_API void manager_server::dict_update(std::uint64_t id,
                                           std::vector<std::pair<encoded, encoded>> items) {
  auto& d = dict(id);
  for (auto& [k, v] : items) d.set(std::move(k), std::move(v));
}

CORAY_API bool manager_server::dict_compare_exchange(std::uint64_t id, encoded key,
                                                     std::optional<encoded> expected,
                                                     encoded desired) {
  auto& d = dict(id);
  auto it = d.index.find(key);
  const bool present = it != d.index.end();
  if (present != expected.has_value()) return false;
  if (present && it->second->second != *expected) return false;
  d.set(std::move(key), std::move(desired));
  return true;
}

CORAY_API encoded manager_server::dict_increment(std::uint64_t id, encoded key, std::uint8_t k,
                                                 encoded delta) {
  auto& d = dict(id);
  auto it = d.index.find(key);
  if (it == d.index.end()) return d.set(std::move(key), std::move(delta))->second;
  return it->second->second = add(static_cast<number_kind>(k), it->second->second, delta);
}

CORAY_API void manager_server::list_append(std::uint64_t id, encoded v) {
  list(id).push_back(std::move(v));
}

CORAY_API void manager_server::list_extend(std::uint64_t id, std::vector<encoded> vs) {
  auto& l = list(id);
  for (auto& v : vs) l.push_back(std::move(v));
}

CORAY_API void manager_server::list_insert(std::uint64_t id, std::int64_t i, encoded v) {
  auto& l = list(id);
  const auto n = static_cast<std::int64_t>(l.size());
  if (i < 0) i = std::max<std::int64_t>(0, i + n);
  if (i > n) i = n;
  l.insert(l.begin() + i, std::move(v));
}

CORAY_API encoded manager_server::list_get(std::uint64_t id, std::int64_t i) {
  auto& l = list(id);
  return l[position(l, i, "get")];
}

CORAY_API void manager_server::list_set(std::uint64_t id, std::int64_t i, encoded v) {
  auto& l = list(id);
  l[position(l, i, "set")] = std::move(v);
}

CORAY_API encoded manager_server::list_pop(std::uint64_t id, std::int64_t i) {
  auto& l = list(id);
  if (l.empty()) throw index_error("ray::list_proxy: pop from an empty list");
  const std::size_t at = position(l, i, "pop");
  encoded v = std::move(l[at]);
  l.erase(l.begin() + static_cast<std::ptrdiff_t>(at));
  return v;
}

CORAY_API std::uint64_t manager_server::list_size(std::uint64_t id) { return list(id).size(); }

CORAY_API std::vector<encoded> manager_server::list_all(std::uint64_t id) { return list(id); }

CORAY_API void manager_server::list_clear(std::uint64_t id) { list(id).clear(); }

CORAY_API void manager_server::ns_set(std::uint64_t id, std::string name, std::string type,
                                      encoded v) {
  ns(id).insert_or_assign(std::move(name), std::pair{std::move(type), std::move(v)});
}

CORAY_API std::optional<std::pair<std::string, encoded>> manager_server::ns_get(
    std::uint64_t id, const std::string& name) {
  auto& n = ns(id);
  auto it = n.find(name);
  if (it == n.end()) return std::nullopt;
  return it->second;
}

CORAY_API bool manager_server::ns_contains(std::uint64_t id, const std::string& name) {
  return ns(id).contains(name);
}

CORAY_API bool manager_server::ns_erase(std::uint64_t id, const std::string& name) {
  return ns(id).erase(name) != 0;
}

CORAY_API std::vector<std::string> manager_server::ns_names(std::uint64_t id) {
  std::vector<std::string> out;
  for (auto& [name, v] : ns(id)) out.push_back(name);
  return out;
}

CORAY_API manager_server::dict_state::item_list::iterator manager_server::dict_state::set(
    encoded&& key, encoded&& value) {
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

CORAY_API manager_server::dict_state& manager_server::dict(std::uint64_t id) {
  return find(dicts_, id);
}

CORAY_API std::vector<encoded>& manager_server::list(std::uint64_t id) { return find(lists_, id); }

CORAY_API std::map<std::string, std::pair<std::string, encoded>>& manager_server::ns(
    std::uint64_t id) {
  return find(namespaces_, id);
}

CORAY_API std::size_t manager_server::position(const std::vector<encoded>& l, std::int64_t i,
                                               const char* op) {
  const auto n = static_cast<std::int64_t>(l.size());
  const std::int64_t at = i < 0 ? i + n : i;
  if (at < 0 || at >= n)
    throw index_error(
        fmt::format("ray::list_proxy: {} at index {} out of range (size {})", op, i, n));
  return static_cast<std::size_t>(at);
}

CORAY_API encoded manager_server::add(number_kind k, const encoded& a, const encoded& b) {
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

}  // namespace detail
CORAY_END_NAMESPACE
