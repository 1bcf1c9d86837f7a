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

class cluster_seam;

/// Starts the runtime in this process: the segment, the supervisor and the workers; with
/// `cluster`, the other nodes' workers too (cluster_seam.hpp).
CORAY_API std::unique_ptr<driver> make_local_driver(driver_config cfg,
                                                    cluster_seam* cluster = nullptr);

/// Fills in num_workers (the usable cores when 0), the resources and the store's size, and
/// refuses a store larger than memory: what make_local_driver does first, for a cluster's
/// nodes too.
CORAY_API void resolve_driver_config(driver_config& cfg);

/// Becomes a worker (never returning) if this process was spawned as one; returns at once
/// otherwise.
CORAY_API void enter_spawned_worker();

}  // namespace detail
CORAY_END_NAMESPACE

#ifndef CORAY_COMPILED_LIB
#include <coray/detail/runtime/entry_impl.hpp>
#endif
