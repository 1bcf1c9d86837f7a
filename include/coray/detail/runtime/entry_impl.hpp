#pragma once
/// The definitions behind entry.hpp: included by it in header-only mode, and compiled once
/// by src/coray.cpp into coray::coray_compiled in compiled mode (CORAY_COMPILED_LIB).

#include <fmt/format.h>

#include <coray/detail/runtime/entry.hpp>
#include <coray/detail/runtime/local_driver.hpp>
#include <coray/detail/runtime/supervisor.hpp>
#include <coray/detail/runtime/system.hpp>
#include <coray/errors.hpp>
#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <utility>

CORAY_BEGIN_NAMESPACE
namespace detail {

CORAY_API std::unique_ptr<driver> make_local_driver(driver_config cfg) {
  if (!cfg.num_workers) cfg.num_workers = usable_cores();
  // The store lives in shared memory: one larger than the memory this process may use could
  // never be filled, and would only fail later, less clearly.
  const std::uint64_t memory = usable_memory_bytes();
  if (!cfg.object_store_bytes) cfg.object_store_bytes = static_cast<std::size_t>(memory * 3 / 10);
  if (cfg.object_store_bytes > memory)
    throw usage_error(fmt::format(
        "ray::runtime: runtime_options::object_store_bytes is {} bytes, more than the {} "
        "bytes of memory this process may use (RAM, or its cgroup's memory.max): the store "
        "lives in shared memory",
        cfg.object_store_bytes, memory));
  if (cfg.argv.empty()) {
    // No argv given: the program's own arguments, as spawned workers re-run it.
    std::ifstream f("/proc/self/cmdline", std::ios::binary);
    std::string a;
    while (std::getline(f, a, '\0')) cfg.argv.push_back(a);
    if (cfg.argv.empty()) cfg.argv.emplace_back("coray-worker");
  }
  return std::make_unique<local_driver>(std::move(cfg));
}

CORAY_API void enter_spawned_worker() { enter_worker_if_spawned(); }

}  // namespace detail
CORAY_END_NAMESPACE
