#pragma once
/// The definitions behind entry.hpp: included by it in header-only mode, and compiled once
/// by src/coray.cpp into coray::coray_compiled in compiled mode (CORAY_COMPILED_LIB).

#include <coray/detail/runtime/entry.hpp>
#include <coray/detail/runtime/local_driver.hpp>
#include <coray/detail/runtime/supervisor.hpp>
#include <memory>
#include <utility>

CORAY_BEGIN_NAMESPACE
namespace detail {

CORAY_API std::unique_ptr<driver> make_local_driver(driver_config cfg) {
  return std::make_unique<local_driver>(std::move(cfg));
}

CORAY_API void enter_spawned_worker() { enter_worker_if_spawned(); }

}  // namespace detail
CORAY_END_NAMESPACE
