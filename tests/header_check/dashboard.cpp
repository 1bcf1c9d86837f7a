// dashboard.hpp alone: a runtime that serves the dashboard, and its address.
#include <coray/dashboard.hpp>

namespace header_check_dashboard {

std::string uses(int argc, char** argv) {
  ray::runtime rt(
      argc, argv,
      {.include_dashboard = true, .dashboard_port = 8265, .dashboard_host = "127.0.0.1"});
  return rt.dashboard_url();
}

}  // namespace header_check_dashboard
