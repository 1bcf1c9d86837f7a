#pragma once
/// What the supervisor does with its processes' output (runtime_options::log_to_driver and
/// log_directory): the log monitor's settings (log_monitor.hpp), apart so that the driver's
/// interface names them without the monitor.

#include <coray/version.hpp>
#include <string>

CORAY_BEGIN_NAMESPACE
namespace detail {

struct output_options {
  bool to_driver = true;
  std::string directory = {};  // empty: no files
};

}  // namespace detail
CORAY_END_NAMESPACE
