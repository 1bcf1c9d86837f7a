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
