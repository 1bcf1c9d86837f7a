# Header-only by default; the one thing compiled is coray::coray_compiled (libcoray.a, the
# compiled mode's runtime), installed beside the headers. One (release) configuration of it.
set(VCPKG_BUILD_TYPE release)

# An overlay port of the checkout it lives in (packaging/vcpkg/ports/coray), used as
#   vcpkg install coray --overlay-ports=packaging/vcpkg/ports
get_filename_component(SOURCE_PATH "${CMAKE_CURRENT_LIST_DIR}/../../../.." ABSOLUTE)

# Feature "mpi": cluster mode (coray::mpi); without it the port builds no MPI part.
vcpkg_check_features(OUT_FEATURE_OPTIONS FEATURE_OPTIONS FEATURES mpi CORAY_MPI)

vcpkg_cmake_configure(
  SOURCE_PATH "${SOURCE_PATH}"
  OPTIONS
    ${FEATURE_OPTIONS}
    -DCORAY_BUILD_TESTS=OFF
    -DCORAY_BUILD_EXAMPLES=OFF
    -DCORAY_BUILD_BENCH=OFF
    -DCORAY_INSTALL=ON
    -DCORAY_DASHBOARD=ON
)
vcpkg_cmake_install()
vcpkg_cmake_config_fixup(PACKAGE_NAME coray CONFIG_PATH share/cmake/coray)

file(INSTALL "${CMAKE_CURRENT_LIST_DIR}/usage" DESTINATION "${CURRENT_PACKAGES_DIR}/share/${PORT}")
vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")
