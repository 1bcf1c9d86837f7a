// coray's compiled mode: the runtime's non-template code (the driver and its orchestrator,
// the transport, the supervisor and the worker), and the non-template members of the public
// components that would otherwise be parsed and instantiated in every translation unit,
// compiled once into coray::coray_compiled.
// Programs that link it are built with CORAY_COMPILED_LIB defined, and their translation
// units see only the declarations: in include/coray/detail/runtime/entry.hpp, and in each
// header whose definitions are in a *_impl.hpp included here.
#ifndef CORAY_COMPILED_LIB
#error "src/coray.cpp is coray::coray_compiled's source: build it with CORAY_COMPILED_LIB defined"
#endif

#include <coray/detail/runtime/entry_impl.hpp>

// The segment's allocator (Boost.Interprocess).
#include <coray/detail/shm/segment_impl.hpp>

// What a call requires of the resources, checked and described.
#include <coray/detail/runtime/resource_request_impl.hpp>

// ray::manager's own functions, and with them its actor's handlers, and the actor's members.
#include <coray/detail/mp/manager_impl.hpp>
#include <coray/detail/mp/manager_server_impl.hpp>

// ray::pool's non-template members, with the calls to its process actor they make.
#include <coray/detail/mp/pool_impl.hpp>

// ray::state's listings, ray::memory_summary and ray::timeline; ray::metrics' lookups and
// the table's writer for /metrics.
#include <coray/detail/runtime/metrics_impl.hpp>
#include <coray/detail/runtime/metric_table_impl.hpp>
#include <coray/detail/runtime/state_impl.hpp>

// The dashboard, when the library is built with cpp-httplib and nlohmann::json
// (CORAY_WITH_DASHBOARD): a runtime of any program linking the library can then serve it.
#ifdef CORAY_WITH_DASHBOARD
#include <coray/detail/dashboard/server.hpp>

namespace {
const bool coray_dashboard_installed = ray::detail::dashboard::install();
}
#endif
