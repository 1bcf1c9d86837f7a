# Finds coray's dependencies. Used by the build tree (CMakeLists.txt) and, installed next to
# it, by the package config (corayConfig.cmake), so both look for the same things the same way.
include(CMakeFindDependencyMacro)

# Inside find_package(coray) a missing dependency must make coray "not found" with a reason
# (find_dependency sets coray_FOUND and returns from this file; the config checks it). In
# coray's own build it is a configure error.
macro(_coray_find_dependency)
  if(CMAKE_FIND_PACKAGE_NAME STREQUAL "coray")
    find_dependency(${ARGN})
  else()
    find_package(${ARGN} REQUIRED)
  endif()
endmacro()

_coray_find_dependency(Threads)
_coray_find_dependency(Boost 1.81)
_coray_find_dependency(fmt)

# moodycamel::ConcurrentQueue is header-only and installed under different folders:
# Debian and vcpkg's unofficial package put it in <concurrentqueue/concurrentqueue.h>, vcpkg's
# upstream package in <concurrentqueue/moodycamel/concurrentqueue.h>, Conan in
# <moodycamel/concurrentqueue.h>. coray includes <concurrentqueue.h>, so we add whichever
# folder holds that file. Conan's packages are outside the prefix path: its generated config
# says where through concurrentqueue_INCLUDE_DIRS.
if(NOT TARGET coray_concurrentqueue)
  find_package(unofficial-concurrentqueue CONFIG QUIET)
  find_package(concurrentqueue CONFIG QUIET)
  find_path(CORAY_CONCURRENTQUEUE_DIR concurrentqueue.h
    HINTS ${concurrentqueue_INCLUDE_DIRS}
    PATH_SUFFIXES concurrentqueue concurrentqueue/moodycamel moodycamel)
  if(NOT CORAY_CONCURRENTQUEUE_DIR)
    set(_coray_message "moodycamel concurrentqueue not found (Debian: apt-get install libconcurrentqueue-dev)")
    if(CMAKE_FIND_PACKAGE_NAME STREQUAL "coray")
      set(coray_NOT_FOUND_MESSAGE "${_coray_message}")
      set(coray_FOUND FALSE)
      return()
    endif()
    message(FATAL_ERROR "coray: ${_coray_message}")
  endif()
  add_library(coray_concurrentqueue INTERFACE IMPORTED)
  set_target_properties(coray_concurrentqueue PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${CORAY_CONCURRENTQUEUE_DIR}")
endif()

# The dashboard's libraries, optional: cpp-httplib and nlohmann::json. Only
# <coray/dashboard.hpp> (and coray's compiled library built with the dashboard) include them.
# Upstream cpp-httplib, vcpkg and Conan install a CMake package (httplib::httplib); Debian
# ships no CMake package but a pkg-config file, and splits cpp-httplib into declarations in
# httplib.h and a shared library (libcpp-httplib.so) built with OpenSSL, zlib and Brotli: its
# compile definitions must be the library's (they change class layouts), so they come from
# pkg-config too. coray_dashboard_deps is the target that carries them when both are found.
if(NOT TARGET coray_dashboard_deps)
  find_package(nlohmann_json 3 QUIET)
  find_package(httplib CONFIG QUIET)
  set(_coray_httplib_target)
  if(TARGET httplib::httplib)
    set(_coray_httplib_target httplib::httplib)
  else()
    find_package(PkgConfig QUIET)
    if(PKG_CONFIG_FOUND)
      pkg_check_modules(CORAY_HTTPLIB QUIET IMPORTED_TARGET cpp-httplib)
      if(TARGET PkgConfig::CORAY_HTTPLIB)
        set(_coray_httplib_target PkgConfig::CORAY_HTTPLIB)
      endif()
    endif()
  endif()
  if(_coray_httplib_target AND TARGET nlohmann_json::nlohmann_json)
    add_library(coray_dashboard_deps INTERFACE IMPORTED)
    set_target_properties(coray_dashboard_deps PROPERTIES
      INTERFACE_LINK_LIBRARIES "${_coray_httplib_target};nlohmann_json::nlohmann_json")
  endif()
endif()

# Cluster mode's MPI, optional: only <coray/mpi.hpp> includes it (coray::mpi links it). Any
# MPI implementation that CMake's FindMPI finds (Open MPI, MPICH).
if(NOT TARGET MPI::MPI_CXX AND NOT CORAY_MPI STREQUAL "OFF")
  find_package(MPI QUIET COMPONENTS CXX)
endif()
