#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <coray/runtime.hpp>
#include <cstdlib>
#include <string_view>

// Test binaries are also the worker executables of the spawn start method: a spawned child
// becomes a worker here and never reaches the test runner.
// `--coray-start-method=fork|spawn` picks the start method for every runtime of the run.
int main(int argc, char** argv) {
  ray::enter_worker_if_spawned();
  for (int i = 1; i < argc; ++i) {
    std::string_view a(argv[i]);
    if (a.starts_with("--coray-start-method=")) setenv("CORAY_START_METHOD", argv[i] + 21, 1);
  }
  doctest::Context context(argc, argv);
  return context.run();
}
