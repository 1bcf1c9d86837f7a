#pragma once
/// ray::retry_on<E...>'s matcher: a function telling whether an exception is one of E...,
/// registered by an id made from the types' names, and evaluated in the worker where the
/// exception lives.

#include <coray/detail/codec/codec_traits.hpp>
#include <coray/detail/runtime/registry.hpp>
#include <cstdint>
#include <exception>
#include <string>

CORAY_BEGIN_NAMESPACE
namespace detail {

template <class E, class... Rest>
bool exception_is(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const E&) {
    return true;
  } catch (...) {
    if constexpr (sizeof...(Rest) > 0)
      return exception_is<Rest...>(e);
    else
      return false;
  }
}

/// Registers the matcher of E... and returns its id; ray::retry_on<E...> calls it once, at
/// static initialisation.
template <class... E>
std::uint64_t retry_matcher_id() {
  // Named by its types (a function template instance's printed name lacks them under clang).
  std::string key = "retry_on";
  ((key += ',', key += type_name_v<E>), ...);
  const std::uint64_t id = fnv1a(key) | 2;  // 0 and 1 mean none and all
  register_retry_matcher(id, &exception_is<E...>);
  return id;
}

}  // namespace detail
CORAY_END_NAMESPACE
