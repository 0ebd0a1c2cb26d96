// Cgroup limits and the TTL, enforced on real cells.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "tests/support/test_support.h"

using namespace cellos::test;

TEST_CASE("the memory limit holds: a cell allocating past it is OOM-killed", "[limits]") {
  Fleet fleet;
  auto spec = make_spec(unique_id("oom"), {fleet.probe(), "alloc", "256"});
  spec["spec"]["run"]["limits"] = {{"memoryMaxBytes", 64 << 20}};
  auto r = fleet.run(spec.dump());
  CHECK(r.status == 128 + 9);
  CHECK(r.out.find("allocated") == std::string::npos);
  auto done = r.event("command.v1.completed");
  CHECK(done["reason"] == "oom");
  CHECK(done["signal"] == 9);

  // The same allocation under a limit that fits it succeeds: the limit, not the probe, failed.
  spec["spec"]["id"] = unique_id("oom");
  spec["spec"]["run"]["limits"] = {{"memoryMaxBytes", 512 << 20}};
  auto ok = fleet.run(spec.dump());
  CHECK(ok.status == 0);
  CHECK(ok.out == "allocated 256 MiB\n");
}

TEST_CASE("the pids limit holds: pidsMax processes, no more", "[limits]") {
  Fleet fleet;
  auto spec = make_spec(unique_id("pids"), {fleet.probe(), "fork", "50"});
  spec["spec"]["run"]["limits"] = {{"pidsMax", 8}};
  spec["spec"]["run"]["timeoutMs"] = 20000;
  auto r = fleet.run(spec.dump());
  // The probe itself is one of the 8 (the cell's init is counted on top): 7 forks succeed.
  CHECK(r.out == "forked 7\n");
  CHECK(r.status == 0);
}

TEST_CASE("limits from the spec and the policy defaults reach the cell's cgroups", "[limits]") {
  Fleet fleet("[policy]\nargv0_allow_prefixes = [\"/bin\", \"/usr/bin\"]\n"
              "[policy.default_limits]\nmemory_max_bytes = 100000000\npids_max = 77\n");
  // The cell reads its own cgroup files: /sys/fs/cgroup holds its own hierarchies' leaves.
  auto script_for = [](const std::string& controllers) {
    return "for c in " + controllers + "; do p=$(grep -E \"^[0-9]+:([a-z,]*,)?$c(,[a-z,]*)?:\" "
      "/proc/self/cgroup | cut -d: -f3); d=/sys/fs/cgroup/$c$p; "
      "cat $d/memory.limit_in_bytes $d/pids.max $d/cpu.cfs_quota_us $d/cpu.cfs_period_us 2>/dev/null; "
      "done";
  };
  if (!path_exists("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
    CELLOS_SKIP("not a hybrid cgroup host; the pure-v2 files are covered by the fake-cgroupfs unit test");
  // Without cpuMax the cell gets no cpu leaf at all (it stays in the reactor's cpu cgroup).
  auto spec = make_spec(unique_id("lim"), {"/bin/sh", "-c", script_for("memory pids")});
  auto r = fleet.run(spec.dump());
  CHECK(r.out == "99999744\n78\n");  // page-rounded bytes; pids.max counts the cell's init
  spec["spec"]["id"] = unique_id("lim");
  spec["spec"]["run"]["argv"][2] = script_for("memory pids cpu");
  spec["spec"]["run"]["limits"] = {{"memoryMaxBytes", 50 << 20},
                                   {"pidsMax", 10},
                                   {"cpuMax", {{"quotaMicros", 25000}, {"periodMicros", 50000}}}};
  auto s = fleet.run(spec.dump());
  CHECK(s.out == std::to_string(50 << 20) + "\n11\n25000\n50000\n");
}

TEST_CASE("at the TTL a daemonized grandchild dies with the cell", "[ttl]") {
  Fleet fleet;
  const std::string marker = unique_id("cellos-daemon-marker");
  const std::string script = fleet.probe() + " daemonize " + marker + " && sleep 600";
  auto spec = make_spec(unique_id("ttl"), {"/bin/sh", "-c", script});
  spec["spec"]["lifetime"] = {{"ttlSeconds", 1}};
  auto started = std::chrono::steady_clock::now();
  auto r = fleet.run(spec.dump());
  auto took = std::chrono::steady_clock::now() - started;
  CHECK(r.status == 124);
  CHECK(r.out == "daemonized\n");
  CHECK(took < std::chrono::seconds(30));  // it did not wait for sleep 600
  CHECK(r.event("command.v1.completed")["reason"] == "timeout");
  CHECK(processes_with(marker).empty());
}

TEST_CASE("a daemon left behind by a finished command dies at teardown", "[ttl]") {
  Fleet fleet;
  const std::string marker = unique_id("cellos-orphan-marker");
  auto r = fleet.run(make_spec(unique_id("orphan"), {fleet.probe(), "daemonize", marker}).dump());
  CHECK(r.status == 0);
  CHECK(r.out == "daemonized\n");  // it was running when the command exited
  CHECK(processes_with(marker).empty());
}
