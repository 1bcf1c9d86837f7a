#pragma once
/// The non-template members of ray::manager and ray::namespace_proxy: included by
/// manager.hpp in header-only mode (inline), and compiled once by src/coray.cpp into
/// coray::coray_compiled in compiled mode (CORAY_COMPILED_LIB). Each call to the manager's
/// actor registers that method's handler where it is instantiated; here, that is one
/// translation unit instead of every one that includes coray.hpp.

#include <coray/manager.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

CORAY_BEGIN_NAMESPACE

CORAY_API bool namespace_proxy::contains(const std::string& name) const {
  return call<&server::ns_contains>("ray::namespace_proxy::contains", name);
}

CORAY_API bool namespace_proxy::erase(const std::string& name) {
  return call<&server::ns_erase>("ray::namespace_proxy::erase", name);
}

CORAY_API std::vector<std::string> namespace_proxy::names() const {
  return call<&server::ns_names>("ray::namespace_proxy::names");
}

CORAY_API void namespace_proxy::set_encoded(std::string name, std::string type,
                                            detail::encoded value) {
  call<&server::ns_set>("ray::namespace_proxy::set", std::move(name), std::move(type),
                        std::move(value));
}

CORAY_API std::optional<std::pair<std::string, detail::encoded>> namespace_proxy::fetch_encoded(
    const std::string& name) const {
  return call<&server::ns_get>("ray::namespace_proxy::get", name);
}

CORAY_API manager::manager(actor_options opts)
    : server_(ray::spawn<server>(detail::multiprocessing_options(std::move(opts)))) {}

CORAY_API namespace_proxy manager::ns() const { return {server_, create(server::kind::ns)}; }

CORAY_API int manager::pid() const { return ray::get(server_.call<&server::pid>()).get(); }

CORAY_API std::uint64_t manager::create(server::kind k) const {
  if (!server_.valid()) throw usage_error("ray::manager: this manager is empty");
  return ray::get(server_.call<&server::create>(static_cast<std::uint8_t>(k))).get();
}

CORAY_END_NAMESPACE
