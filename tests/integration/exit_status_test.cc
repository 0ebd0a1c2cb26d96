// `run`'s exit status and its one-line errors, from real cells.
#include <catch2/catch.hpp>

#include "tests/support/test_support.h"

using namespace cellos::test;

TEST_CASE("run passes the command's own exit status through", "[run]") {
  Fleet fleet;
  auto spec = make_spec(unique_id("exit"), {"/bin/sh", "-c", "echo out; echo err >&2; exit 7"});
  auto r = fleet.run(spec.dump());
  CHECK(r.status == 7);
  CHECK(r.out == "out\n");
  CHECK(r.err == "err\n");
}
