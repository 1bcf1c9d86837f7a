#pragma once
/// coray's version and the versioned inline namespace that keeps two versions' symbols apart.

#define CORAY_VERSION_MAJOR 0
#define CORAY_VERSION_MINOR 1
#define CORAY_VERSION_PATCH 0
#define CORAY_VERSION \
  (CORAY_VERSION_MAJOR * 10000 + CORAY_VERSION_MINOR * 100 + CORAY_VERSION_PATCH)

/// Opens `namespace ray { inline namespace v0 {`: every public name lives there.
#define CORAY_BEGIN_NAMESPACE \
  namespace ray {             \
  inline namespace v0 {
#define CORAY_END_NAMESPACE \
  }                         \
  }
