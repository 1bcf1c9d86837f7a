// version.hpp alone: the version macros and the namespace they open.
#include <coray/version.hpp>

CORAY_BEGIN_NAMESPACE
inline constexpr int header_check_version = CORAY_VERSION;
static_assert(CORAY_VERSION_MAJOR * 10000 + CORAY_VERSION_MINOR * 100 + CORAY_VERSION_PATCH ==
              CORAY_VERSION);
CORAY_END_NAMESPACE
