// `cellos-reactor --version`: the version CMake's project(VERSION) gives the build.
#include <catch2/catch.hpp>

#include "tests/support/test_support.h"

using namespace cellos::test;

TEST_CASE("cellos-reactor --version prints the project's version on stdout and exits 0", "[cli]") {
  auto r = run_process({CELLOS_REACTOR_BIN, "--version"});
  CHECK(r.status == 0);
  CHECK(r.out == std::string("cellos-reactor ") + CELLOS_VERSION + "\n");
  CHECK(r.err.empty());
}
