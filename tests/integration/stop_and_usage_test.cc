// How a cell is stopped (SIGTERM first, then its cgroup killed) and what it used, on real cells:
// the daemon's shutdown, the TTL with gracefulShutdownSeconds, resources and OOM kills in the
// completed event.
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <map>

#include "tests/support/daemon_support.h"
#include "tests/support/test_support.h"

using namespace cellos::test;
using nlohmann::json;

namespace {

json sh_spec(const std::string& id, const std::string& script) {
  return make_spec(id, {"/bin/sh", "-c", script});
}

std::map<std::string, json> by_cell(const Fleet& fleet, const std::string& suffix) {
  std::map<std::string, json> m;
  for (auto& e : events_of(fleet, suffix)) m[e["data"]["cellId"]] = e["data"];
  return m;
}

}  // namespace

TEST_CASE("at daemon SIGTERM cells get SIGTERM first: a trap runs and exits in time, a cell "
          "ignoring it is killed at the grace's end, both reason shutdown",
          "[stop]") {
  Fleet fleet("", "", "shutdown_grace_seconds = 3");
  DaemonProcess daemon(fleet);
  const std::string polite = unique_id("polite"), stubborn = unique_id("stubborn");
  // `sleep & wait`: the shell runs its trap as soon as the signal arrives.
  spool(fleet, sh_spec(polite, "trap 'echo got TERM; exit 3' TERM; s=321; sleep $s & wait"));
  // An ignored SIGTERM is inherited by sleep too: nothing in this cell leaves on SIGTERM.
  spool(fleet, sh_spec(stubborn, "trap '' TERM; s=322; sleep $s"));
  REQUIRE(eventually([&] { return events_of(fleet, "lifecycle.v1.started").size() == 2; }));
  // Both shells have set their traps once they are sleeping. The shells' own command lines say
  // "sleep $s", so only the sleeps match (a shell seen before its trap would die of SIGTERM).
  REQUIRE(eventually([&] {
    return !processes_with("sleep 321").empty() && !processes_with("sleep 322").empty();
  }));
  daemon.signal(SIGTERM);
  CHECK(daemon.wait(std::chrono::seconds(30)) == 0);

  auto completed = by_cell(fleet, "command.v1.completed");
  auto destroyed = by_cell(fleet, "lifecycle.v1.destroyed");
  REQUIRE(completed.size() == 2);
  CHECK(completed[polite]["reason"] == "shutdown");
  CHECK(completed[polite]["exitCode"] == 3);
  CHECK(completed[polite]["gracefulStop"]["cause"] == "shutdown");
  CHECK(completed[polite]["gracefulStop"]["graceSeconds"] == 3);
  CHECK(completed[polite]["gracefulStop"]["exitedInTime"] == true);
  CHECK(destroyed[polite]["terminalState"] == "Clean");
  CHECK(destroyed[polite]["outcome"] == "failed");
  CHECK(read_text(fleet.state_dir() + "/logs/" + polite + "/stdout") == "got TERM\n");

  CHECK(completed[stubborn]["reason"] == "shutdown");
  CHECK(completed[stubborn]["signal"] == 9);
  CHECK(completed[stubborn]["gracefulStop"]["exitedInTime"] == false);
  CHECK(destroyed[stubborn]["terminalState"] == "Forced");
}

TEST_CASE("a cell's gracefulShutdownSeconds shortens the daemon's grace for that cell", "[stop]") {
  Fleet fleet("", "", "shutdown_grace_seconds = 3600");
  DaemonProcess daemon(fleet);
  const std::string id = unique_id("short");
  auto spec = sh_spec(id, "trap '' TERM; s=323; sleep $s");  // only the sleep matches below
  spec["spec"]["run"]["limits"] = {{"gracefulShutdownSeconds", 1}};
  spool(fleet, spec);
  REQUIRE(eventually([&] { return !events_of(fleet, "lifecycle.v1.started").empty(); }));
  REQUIRE(eventually([&] { return !processes_with("sleep 323").empty(); }));
  daemon.signal(SIGTERM);
  // Not the host's hour: the cell's own second.
  CHECK(daemon.wait(std::chrono::seconds(30)) == 0);
  auto completed = by_cell(fleet, "command.v1.completed");
  REQUIRE(completed.count(id) == 1);
  CHECK(completed[id]["gracefulStop"]["graceSeconds"] == 1);
  CHECK(completed[id]["gracefulStop"]["exitedInTime"] == false);
}

TEST_CASE("at the timeout gracefulShutdownSeconds gives the command SIGTERM and time to clean "
          "up, and without it the cell is killed at once",
          "[stop]") {
  Fleet fleet;
  auto spec = sh_spec(unique_id("tidy"), "trap 'echo cleaning up; exit 0' TERM; sleep 300 & wait");
  spec["spec"]["run"]["timeoutMs"] = 500;
  spec["spec"]["run"]["limits"] = {{"gracefulShutdownSeconds", 10}};
  auto r = fleet.run(spec.dump());
  CHECK(r.status == 124);
  CHECK(r.out == "cleaning up\n");
  auto done = r.event("command.v1.completed");
  CHECK(done["reason"] == "timeout");
  CHECK(done["exitCode"] == 0);
  CHECK(done["gracefulStop"]["cause"] == "timeout");
  CHECK(done["gracefulStop"]["exitedInTime"] == true);
  CHECK(r.event("lifecycle.v1.destroyed")["terminalState"] == "Clean");

  auto blunt = sh_spec(unique_id("blunt"), "trap 'echo never printed' TERM; sleep 300 & wait");
  blunt["spec"]["run"]["timeoutMs"] = 500;
  Fleet other;  // a log of its own: RunResult::event reads the first of its type
  auto k = other.run(blunt.dump());
  CHECK(k.status == 124);
  CHECK(k.out.empty());
  auto kd = k.event("command.v1.completed");
  CHECK(kd["reason"] == "timeout");
  CHECK(kd["signal"] == 9);
  CHECK_FALSE(kd.contains("gracefulStop"));
  CHECK(k.event("lifecycle.v1.destroyed")["terminalState"] == "Forced");
}

TEST_CASE("gracefulShutdownSeconds over the policy cap is refused naming the field", "[stop]") {
  Fleet fleet("[policy.max_limits]\ngraceful_shutdown_seconds = 5\n");
  auto spec = make_spec(unique_id("greedy"), {"/bin/true"});
  spec["spec"]["run"]["limits"] = {{"gracefulShutdownSeconds", 6}};
  auto r = fleet.run(spec.dump());
  CHECK(r.status == 125);
  CHECK(r.err.find("spec.run.limits.gracefulShutdownSeconds: 6 exceeds the policy cap of 5 "
                   "(policy.max_limits.graceful_shutdown_seconds)") != std::string::npos);
  CHECK(r.event("lifecycle.v1.started").is_null());
}

TEST_CASE("the completed event carries the cell's peak memory, CPU time, peak pids and OOM "
          "kills",
          "[usage]") {
  Fleet fleet;
  // Four processes at once (sh, two probes, the init on top), 96 MiB touched by one of them,
  // and some CPU.
  const std::string p = fleet.probe();
  auto spec = sh_spec(unique_id("usage"), p + " alloc 96 & " + p + " alloc 8 & wait; i=0; "
                                              "while [ $i -lt 20000 ]; do i=$((i+1)); done");
  auto r = fleet.run(spec.dump());
  REQUIRE(r.status == 0);
  auto res = r.event("command.v1.completed")["resources"];
  REQUIRE(res.is_object());
  CHECK(res["memoryPeakBytes"].get<uint64_t>() >= 96ull << 20);
  CHECK(res["memoryPeakBytes"].get<uint64_t>() < 1ull << 30);
  CHECK(res["cpuUsageUsec"].get<uint64_t>() > 0);
  CHECK(res["pidsPeak"].get<uint64_t>() >= 3);
  CHECK(res["oomKills"] == 0);
}

TEST_CASE("an OOM kill of a child the command survives makes the reason oom, keeping the "
          "command's exit code",
          "[usage]") {
  Fleet fleet;
  // The compiler-driver case: the driver (sh) lives, its worker (the probe) is OOM-killed, and
  // the driver exits 2 as gcc does when cc1 dies.
  auto spec = sh_spec(unique_id("cc1"), fleet.probe() + " alloc 256; echo worker $?; exit 2");
  spec["spec"]["run"]["limits"] = {{"memoryMaxBytes", 64 << 20}};
  auto r = fleet.run(spec.dump());
  CHECK(r.status == 2);
  CHECK(r.out == "worker 137\n");
  auto done = r.event("command.v1.completed");
  CHECK(done["reason"] == "oom");
  CHECK(done["exitCode"] == 2);
  CHECK(done["resources"]["oomKills"].get<uint64_t>() >= 1);

  // A command that survives its worker's OOM kill and still succeeds has succeeded: the kill is
  // counted, the reason stays exited.
  Fleet other;
  auto ok = sh_spec(unique_id("retry"), other.probe() + " alloc 256; echo worker $?; exit 0");
  ok["spec"]["run"]["limits"] = {{"memoryMaxBytes", 64 << 20}};
  auto s = other.run(ok.dump());
  CHECK(s.status == 0);
  CHECK(s.out == "worker 137\n");
  CHECK(s.event("command.v1.completed")["reason"] == "exited");
  CHECK(s.event("command.v1.completed")["resources"]["oomKills"].get<uint64_t>() >= 1);
}
