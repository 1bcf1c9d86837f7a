// errors.hpp alone: every error is a ray::error, and a std::runtime_error.
#include <coray/errors.hpp>
#include <string>

namespace header_check_errors {

std::string uses() {
  try {
    throw ray::worker_crashed("crashed");
  } catch (const ray::error& e) {
    return e.what();
  }
}

}  // namespace header_check_errors
