# Configures, builds and runs one consumer project of tests/package/ from scratch, as a user's
# project would: cmake -DCONSUMER=find_package|add_subdirectory|fetch_content
#   -DCORAY_SOURCE_DIR=<checkout> -DCORAY_BINARY_DIR=<coray's build tree> -DWORK_DIR=<scratch>
#   -DGENERATOR=<generator> -DCXX=<compiler> [-DSANITIZE=<sanitizers>] -P build_and_run.cmake
# For find_package it first installs coray from CORAY_BINARY_DIR into WORK_DIR/prefix; when
# that build is sanitized (SANITIZE), so is its compiled library, and the consumer links the
# sanitizer's runtime too.
# Each consumer builds test_package/test_package.cpp, the program Conan's test package builds:
# find_package header-only (consumer) and in compiled mode (consumer_compiled), from the
# installed headers and library; from source, FetchContent header-only and add_subdirectory in
# compiled mode (FetchContent adds coray's project just as add_subdirectory does, so each mode
# is built from source once).
cmake_minimum_required(VERSION 3.25)

file(REMOVE_RECURSE ${WORK_DIR})
set(configure_args)
if(CONSUMER STREQUAL "find_package")
  execute_process(COMMAND ${CMAKE_COMMAND} --install ${CORAY_BINARY_DIR} --prefix ${WORK_DIR}/prefix
    OUTPUT_QUIET COMMAND_ERROR_IS_FATAL ANY)
  list(APPEND configure_args -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix)
  if(SANITIZE)
    list(APPEND configure_args -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=${SANITIZE})
  endif()
endif()

execute_process(COMMAND ${CMAKE_COMMAND} -S ${CORAY_SOURCE_DIR}/tests/package/${CONSUMER}
  -B ${WORK_DIR}/build -G ${GENERATOR} -DCMAKE_CXX_COMPILER=${CXX}
  -DCORAY_SOURCE_DIR=${CORAY_SOURCE_DIR} ${configure_args}
  COMMAND_ERROR_IS_FATAL ANY)
execute_process(COMMAND ${CMAKE_COMMAND} --build ${WORK_DIR}/build COMMAND_ERROR_IS_FATAL ANY)
if(NOT CONSUMER STREQUAL "add_subdirectory")
  execute_process(COMMAND ${WORK_DIR}/build/consumer COMMAND_ERROR_IS_FATAL ANY)
endif()
if(NOT CONSUMER STREQUAL "fetch_content")
  execute_process(COMMAND ${WORK_DIR}/build/consumer_compiled COMMAND_ERROR_IS_FATAL ANY)
endif()
