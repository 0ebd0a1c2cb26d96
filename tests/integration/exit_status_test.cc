// `run`'s exit status and its one-line errors, from real cells.
#include <catch2/catch.hpp>

#include "tests/support/test_support.h"

using namespace cellos::test;

TEST_CASE("run passes the command's exit status and both streams through", "[run]") {
  Fleet fleet;
  auto spec = make_spec(unique_id("exit"), {"/bin/sh", "-c", "echo out; echo err >&2; exit 7"});
  auto r = fleet.run(spec.dump());
  CHECK(r.status == 7);
  CHECK(r.out == "out\n");
  CHECK(r.err == "err\n");
  auto done = r.event("command.v1.completed");
  CHECK(done["exitCode"] == 7);
  CHECK(done["reason"] == "exited");
}

TEST_CASE("a command killed by a signal gives 128+N", "[run]") {
  Fleet fleet;
  // The command is not the cell's pid 1, so it can signal itself like anywhere else.
  auto r = fleet.run(make_spec(unique_id("sig"), {"/bin/sh", "-c", "kill -TERM $$"}).dump());
  CHECK(r.status == 128 + 15);
  auto done = r.event("command.v1.completed");
  CHECK(done["signal"] == 15);
  CHECK(done["exitCode"].is_null());
  CHECK(done["reason"] == "signaled");
}

TEST_CASE("an argv[0] that does not exist gives 127 and says so on one line", "[run]") {
  Fleet fleet;
  auto r = fleet.run(make_spec(unique_id("enoent"), {"/usr/bin/cellos-no-such-program"}).dump());
  CHECK(r.status == 127);
  CHECK(r.err == "cellos-reactor: spec.run.argv[0]: /usr/bin/cellos-no-such-program: "
                 "No such file or directory\n");
  CHECK(r.event("command.v1.completed")["reason"] == "setup_failed");
  CHECK(r.event("lifecycle.v1.destroyed")["outcome"] == "failed");
}

TEST_CASE("an argv[0] that cannot be executed gives 126", "[run]") {
  Fleet fleet;
  // A directory under an allowed prefix: execve fails with EACCES.
  if (!path_exists("/usr/bin/X11")) CELLOS_SKIP("/usr/bin/X11 does not exist on this host");
  auto r = fleet.run(make_spec(unique_id("eacces"), {"/usr/bin/X11"}).dump());
  CHECK(r.status == 126);
  CHECK_THAT(r.err, Catch::Contains("spec.run.argv[0]: /usr/bin/X11: Permission denied"));
}

TEST_CASE("the run timeout kills the cell and gives 124", "[run]") {
  Fleet fleet;
  auto spec = make_spec(unique_id("timeout"), {"/bin/sleep", "60"});
  spec["spec"]["run"]["timeoutMs"] = 300;
  auto r = fleet.run(spec.dump());
  CHECK(r.status == 124);
  auto done = r.event("command.v1.completed");
  CHECK(done["reason"] == "timeout");
  CHECK(r.event("lifecycle.v1.destroyed")["terminalState"] == "Forced");
}

TEST_CASE("a setup failure names the call and its object, not a stage number", "[exit]") {
  Fleet fleet;
  auto spec = make_spec(unique_id("badwork"), {"/bin/true"});
  // A regular file on the way: the workspace cannot be made below it.
  spec["spec"]["run"]["workingDirectory"] = "/etc/passwd/work";
  auto r = fleet.run(spec.dump());
  CHECK(r.status == 125);
  CHECK_THAT(r.err, Catch::Contains("mkdir -p /etc/passwd/work: Not a directory"));
  auto completed = r.event("command.v1.completed");
  REQUIRE(completed.is_object());
  CHECK(completed["reason"] == "setup_failed");
}
