#pragma once
/// Stable ids for remote functions. A callee is found by a hash of its name, not its address,
/// so a spawned worker (different ASLR base) and, later, another machine resolve the same one.

#include <coray/version.hpp>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string_view>
#include <unordered_map>

CORAY_BEGIN_NAMESPACE
namespace detail {

constexpr std::uint64_t fnv1a(std::string_view s) noexcept {
  std::uint64_t h = 14695981039346656037ULL;
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ULL;
  }
  return h;
}

/// The name of the entity F, as the compiler spells it ("add", "ns::fib", "&counter::incr").
template <auto F>
constexpr std::string_view entity_name() noexcept {
  std::string_view p = __PRETTY_FUNCTION__;
#if defined(__clang__)
  auto b = p.find("F = ") + 4;
  auto e = p.rfind(']');
#else
  auto b = p.find("F = ") + 4;
  auto e = p.find(';', b);
  if (e == std::string_view::npos) e = p.rfind(']');
#endif
  std::string_view n = p.substr(b, e - b);
  if (!n.empty() && n.front() == '&') n.remove_prefix(1);
  return n;
}

/// entity_name<F>(), worked out once at compile time (a call site evaluates the function at
/// run time, two searches of a long string per call).
template <auto F>
inline constexpr std::string_view entity_name_v = entity_name<F>();

template <auto F>
inline constexpr std::uint64_t entity_id = fnv1a(entity_name_v<F>);

struct invocation;
using invoker_fn = void (*)(invocation&);

struct registered_function {
  invoker_fn invoke;
  std::string_view name;
};

/// id -> callee, filled during static initialisation in every process of the program.
inline std::unordered_map<std::uint64_t, registered_function>& function_table() {
  static std::unordered_map<std::uint64_t, registered_function> table;
  return table;
}

inline bool register_function(std::uint64_t id, invoker_fn fn, std::string_view name) {
  auto [it, inserted] = function_table().try_emplace(id, registered_function{fn, name});
  if (!inserted && it->second.name != name) {
    std::fprintf(stderr, "coray: function id collision between %.*s and %.*s\n",
                 static_cast<int>(name.size()), name.data(),
                 static_cast<int>(it->second.name.size()), it->second.name.data());
    std::abort();
  }
  return true;
}

inline const registered_function* find_function(std::uint64_t id) {
  auto& t = function_table();
  auto it = t.find(id);
  return it == t.end() ? nullptr : &it->second;
}

/// A concurrency group's name as calls carry it: 32 bits of its hash, never 0 (0: none
/// named, the method's own group or the actor's default one).
constexpr std::uint32_t group_hash(std::string_view name) noexcept {
  if (name.empty()) return 0;
  const std::uint64_t h = fnv1a(name);
  const auto folded = static_cast<std::uint32_t>(h ^ (h >> 32));
  return folded ? folded : 1;
}

/// The concurrency groups methods declare (ray::concurrency_group<&T::m>), by the method's
/// id: the group's group_hash. Filled during static initialisation, like function_table.
inline std::unordered_map<std::uint64_t, std::uint32_t>& method_group_table() {
  static std::unordered_map<std::uint64_t, std::uint32_t> table;
  return table;
}
inline bool register_method_group(std::uint64_t fn_id, std::uint32_t group) {
  method_group_table().emplace(fn_id, group);
  return true;
}
/// The group method `fn_id` declares; 0 for none (the actor's default group).
inline std::uint32_t declared_group(std::uint64_t fn_id) {
  auto& t = method_group_table();
  auto it = t.find(fn_id);
  return it == t.end() ? 0 : it->second;
}

/// Retry matchers (ray::retry_on<E...>): whether an exception in flight is to be retried.
/// Registered like functions, so a worker finds the caller's choice by id.
using retry_matcher_fn = bool (*)(std::exception_ptr);
inline std::unordered_map<std::uint64_t, retry_matcher_fn>& retry_matcher_table() {
  static std::unordered_map<std::uint64_t, retry_matcher_fn> table;
  return table;
}
inline bool register_retry_matcher(std::uint64_t id, retry_matcher_fn fn) {
  retry_matcher_table().emplace(id, fn);
  return true;
}
/// Whether the exception `e` is to be retried under matcher `id` (0: never, 1: always).
inline bool retry_matches(std::uint64_t id, std::exception_ptr e) {
  if (id <= 1) return id == 1;
  auto it = retry_matcher_table().find(id);
  return it != retry_matcher_table().end() && it->second(std::move(e));
}

}  // namespace detail
CORAY_END_NAMESPACE
