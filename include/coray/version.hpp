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

/// How coray declares its non-template functions: inline in header-only mode (the default);
/// with CORAY_COMPILED_LIB defined, plain declarations, defined once in the
/// coray::coray_compiled library (src/coray.cpp).
#ifdef CORAY_COMPILED_LIB
#define CORAY_API
#else
#define CORAY_API inline
#endif
