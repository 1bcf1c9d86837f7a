# Finds coray's dependencies. Used by the build tree and by the installed package config.
include(CMakeFindDependencyMacro)

find_package(Threads REQUIRED)
find_package(Boost 1.81 REQUIRED)
find_package(fmt REQUIRED)

# moodycamel::ConcurrentQueue is header-only and installed under different folders:
# Debian puts it in <concurrentqueue/concurrentqueue.h>, vcpkg and Conan under
# <concurrentqueue/moodycamel/concurrentqueue.h> or <moodycamel/concurrentqueue.h>.
# coray includes <concurrentqueue.h>, so we add whichever folder holds that file.
if(NOT TARGET coray_concurrentqueue)
  find_package(unofficial-concurrentqueue CONFIG QUIET)
  find_package(concurrentqueue CONFIG QUIET)
  find_path(CORAY_CONCURRENTQUEUE_DIR concurrentqueue.h
    PATH_SUFFIXES concurrentqueue concurrentqueue/moodycamel moodycamel)
  if(NOT CORAY_CONCURRENTQUEUE_DIR)
    message(FATAL_ERROR "coray: moodycamel concurrentqueue not found "
      "(Debian: apt-get install libconcurrentqueue-dev)")
  endif()
  add_library(coray_concurrentqueue INTERFACE IMPORTED)
  set_target_properties(coray_concurrentqueue PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${CORAY_CONCURRENTQUEUE_DIR}")
endif()
