#pragma once
/// The seam between the templates a program instantiates and the runtime's own code: the
/// two ways into the processes' machinery. `ray::runtime` builds the driver here, and every
/// program that may be a spawned worker enters the worker here. Behind these two functions
/// is all the non-template runtime: the orchestrator and its parts, the transport, the
/// supervisor and the worker.
///
/// Header-only (the default), this header includes their definitions (entry_impl.hpp) and
/// they are inline. With CORAY_COMPILED_LIB defined, it only declares them: they are
/// compiled once, in the coray::coray_compiled library (src/coray.cpp), and a program's
/// translation units no longer parse or optimise the machinery behind them.

#include <coray/detail/runtime/driver.hpp>
#include <memory>

CORAY_BEGIN_NAMESPACE
namespace detail {

/// Starts the runtime in this process: the segment, the supervisor and the workers.
CORAY_API std::unique_ptr<driver> make_local_driver(driver_config cfg);

/// Becomes a worker (never returning) if this process was spawned as one; returns at once
/// otherwise.
CORAY_API void enter_spawned_worker();

}  // namespace detail
CORAY_END_NAMESPACE

#ifndef CORAY_COMPILED_LIB
#include <coray/detail/runtime/entry_impl.hpp>
#endif
