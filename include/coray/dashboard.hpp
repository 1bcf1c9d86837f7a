#pragma once
/// The dashboard: a web page of the runtime (its processes with CPU and memory, the actors
/// with a kill button, the calls, the object store, the configuration, the logs), served
/// while the runtime runs with `include_dashboard` (or CORAY_DASHBOARD=1), as Ray serves its
/// own at port 8265. The runtime prints where:
///
///   #include <coray/coray.hpp>
///   #include <coray/dashboard.hpp>   // once in the program, header-only
///
///   int main(int argc, char** argv) {
///     ray::runtime rt(argc, argv, {.include_dashboard = true, .dashboard_port = 8265});
///     // coray: View the dashboard at http://127.0.0.1:8265/?token=...
///   }
///
/// Its code uses cpp-httplib and nlohmann::json, so it lives apart from coray.hpp: only the
/// file that includes this header parses them, and ray::runtime reaches the dashboard
/// through a hook this header sets (link coray::dashboard in CMake). With coray's compiled
/// library built with them the library holds the dashboard and sets the hook itself; this
/// header then adds nothing.

#include <coray/runtime.hpp>

#ifndef CORAY_COMPILED_LIB
#include <coray/detail/dashboard/server.hpp>

CORAY_BEGIN_NAMESPACE
namespace detail::dashboard {
/// Sets dashboard_start_hook before main() in every program that includes this header.
inline const bool installed = install();
}  // namespace detail::dashboard
CORAY_END_NAMESPACE
#endif
