// A cell's events from start to destroy, stopping `run` with a signal, and what a finished
// cell leaves behind on the host: nothing.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <regex>
#include <set>
#include <thread>

#include "tests/support/test_support.h"

using namespace cellos::test;

TEST_CASE("a cell emits started, network_policy, completed, destroyed as CloudEvents", "[events]") {
  Fleet fleet;
  const std::string id = unique_id("events");
  auto r = fleet.run(make_spec(id, {"/bin/true"}).dump());
  REQUIRE(r.status == 0);
  REQUIRE(r.events.size() == 4);
  const std::vector<std::string> types = {
      "dev.cellos.events.cell.lifecycle.v1.started",
      "dev.cellos.events.cell.observability.v1.network_policy",
      "dev.cellos.events.cell.command.v1.completed",
      "dev.cellos.events.cell.lifecycle.v1.destroyed"};
  std::set<std::string> ids;
  const std::regex rfc3339(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z)");
  for (size_t i = 0; i < types.size(); ++i) {
    const auto& e = r.events[i];
    CHECK(e["type"] == types[i]);
    CHECK(e["specversion"] == "1.0");
    CHECK(e["source"] == "/cellos-reactor/" + fleet.host_id());
    CHECK(e["subject"] == id);
    CHECK(e["datacontenttype"] == "application/json");
    CHECK(std::regex_match(e["time"].get<std::string>(), rfc3339));
    CHECK(e["data"]["cellId"] == id);
    ids.insert(e["id"].get<std::string>());
  }
  CHECK(ids.size() == 4);
  CHECK(r.events[0]["data"]["hostId"] == fleet.host_id());
  CHECK(r.events[0]["data"]["runId"].get<std::string>().size() == 36);
  CHECK(r.events[2]["data"]["exitCode"] == 0);
  CHECK(r.events[2]["data"]["reason"] == "exited");
  CHECK(r.events[2]["data"]["durationMs"].is_number_unsigned());
  CHECK(r.events[3]["data"]["outcome"] == "succeeded");
  CHECK(r.events[3]["data"]["terminalState"] == "Clean");
}

TEST_CASE("the events flag overrides the configured event log", "[events]") {
  Fleet fleet;
  const std::string other = fleet.dir() + "/other.jsonl";
  auto r = fleet.run(make_spec(unique_id("evpath"), {"/bin/true"}).dump(), {"--events", other});
  CHECK(r.status == 0);
  CHECK(r.events.empty());
  const std::string log = read_text(other);
  // Four cell events and the batch manifest(s) that seal them.
  size_t events = 0, pos = 0;
  while ((pos = log.find("\"type\":\"dev.cellos.events.cell.", pos)) != std::string::npos) {
    ++events;
    ++pos;
  }
  CHECK(events == 4);
  CHECK(log.find("batch_sealed") != std::string::npos);
}

TEST_CASE("SIGTERM to run kills the cell, still emits its last events, exits 143", "[signals]") {
  Fleet fleet;
  const std::string id = unique_id("sigterm");
  const std::string marker = unique_id("cellos-sigterm-marker");
  const auto spec =
      make_spec(id, {"/bin/sh", "-c", fleet.probe() + " daemonize " + marker + "; sleep 600"});
  pid_t pid = fleet.start_run(spec.dump());
  for (int i = 0; i < 250 && processes_with(marker).empty(); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  REQUIRE_FALSE(processes_with(marker).empty());
  ::kill(pid, SIGTERM);
  int st = 0;
  ::waitpid(pid, &st, 0);
  CHECK(WIFEXITED(st));
  CHECK(WEXITSTATUS(st) == 128 + SIGTERM);
  auto events = fleet.events();
  REQUIRE(events.size() == 4);
  CHECK(events[2]["data"]["reason"] == "shutdown");
  CHECK(events[3]["data"]["terminalState"] == "Forced");
  CHECK(events[3]["data"]["outcome"] == "failed");
  CHECK(processes_with(marker).empty());
}

TEST_CASE("a finished cell leaves no cgroup, mount, lock or process behind", "[cleanup]") {
  Fleet fleet;
  const std::string id = unique_id("residue");
  const std::string marker = unique_id("cellos-residue-marker");
  const std::string ws = fleet.dir() + "/ws";
  std::filesystem::create_directories(ws);
  auto spec = make_spec(id, {fleet.probe(), "daemonize", marker});
  spec["spec"]["run"]["workingDirectory"] = ws;
  spec["spec"]["run"]["limits"] = {{"cpuMax", {{"quotaMicros", 50000}}}};
  auto r = fleet.run(spec.dump());
  CHECK(r.status == 0);
  CHECK(r.out == "daemonized\n");
  for (const char* h : {"unified", "memory", "pids", "cpu"}) {
    const std::string leaf =
        std::string("/sys/fs/cgroup/") + h + "/cellos/" + fleet.host_id() + "/" + id;
    INFO(leaf);
    CHECK_FALSE(path_exists(leaf));
  }
  CHECK(read_text("/proc/self/mountinfo").find(ws) == std::string::npos);
  CHECK_FALSE(path_exists(fleet.state_dir() + "/cells/" + id + ".lock"));
  CHECK(processes_with(marker).empty());
}
