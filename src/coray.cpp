// coray's compiled mode: the runtime's non-template code (the driver and its orchestrator,
// the transport, the supervisor and the worker, and ray::manager), compiled once into
// coray::coray_compiled.
// Programs that link it are built with CORAY_COMPILED_LIB defined, and their translation
// units see only the declarations in include/coray/detail/runtime/entry.hpp.
#ifndef CORAY_COMPILED_LIB
#error "src/coray.cpp is coray::coray_compiled's source: build it with CORAY_COMPILED_LIB defined"
#endif

#include <coray/detail/runtime/entry_impl.hpp>

// ray::manager's own functions, and with them its actor's handlers: defined once here
// rather than in every translation unit that includes coray.hpp.
#include <coray/detail/mp/manager_impl.hpp>

// The dashboard, when the library is built with cpp-httplib and nlohmann::json
// (CORAY_WITH_DASHBOARD): a runtime of any program linking the library can then serve it.
#ifdef CORAY_WITH_DASHBOARD
#include <coray/detail/dashboard/server.hpp>

namespace {
const bool coray_dashboard_installed = ray::detail::dashboard::install();
}
#endif
