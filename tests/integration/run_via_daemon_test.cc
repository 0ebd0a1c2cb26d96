// `run --via-daemon`: the cell runs in the daemon serving the host (its events in the daemon's
// log, not a run log of its own), with `run`'s output, exit status table and signal handling;
// without a daemon, `run` runs the cell itself.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <thread>

#include "tests/support/daemon_support.h"
#include "tests/support/test_support.h"

using namespace cellos::test;
using Catch::Matchers::Contains;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

json sh_spec(const std::string& id, const std::string& script) {
  return make_spec(id, {"/bin/sh", "-c", script});
}

ProcessResult run_via(const Fleet& fleet, const json& spec) {
  return run_process({CELLOS_REACTOR_BIN, "run", "-", "--via-daemon", "--config", fleet.config_path()},
                     spec.dump());
}

// The daemon's log holds events of cell `id` of this type suffix.
size_t count(const Fleet& fleet, const std::string& id, const std::string& type) {
  size_t n = 0;
  for (const auto& e : fleet.events())
    if (e.value("subject", "") == id && e.value("type", "").ends_with(type)) ++n;
  return n;
}

}  // namespace

TEST_CASE("run --via-daemon: the daemon runs the cell, run streams its output and exits with its status",
          "[run-via-daemon]") {
  Fleet fleet;
  DaemonProcess daemon(fleet);
  const std::string id = unique_id("via");
  auto r = run_via(fleet, sh_spec(id, "echo first-out; echo first-err >&2; sleep 0.5; "
                                      "echo second-out; exit 3"));
  INFO(r.err);
  CHECK(r.status == 3);
  CHECK(r.out == "first-out\nsecond-out\n");
  CHECK_THAT(r.err, Contains("first-err\n"));
  // The daemon's cell: its events are in the daemon's log, and no run log was made beside it.
  CHECK(count(fleet, id, "lifecycle.v1.started") == 1);
  CHECK(count(fleet, id, "command.v1.completed") == 1);
  CHECK(!path_exists(fleet.state_dir() + "/runs"));
  CHECK(r.err.find("no daemon serves") == std::string::npos);

  auto ok = run_via(fleet, sh_spec(unique_id("via-ok"), "echo fine"));
  CHECK(ok.status == 0);
  CHECK(ok.out == "fine\n");
  auto sig = run_via(fleet, sh_spec(unique_id("via-sig"), "kill -KILL $$"));
  CHECK(sig.status == 128 + SIGKILL);
  daemon.signal(SIGTERM);
  CHECK(daemon.wait() == 0);
}

TEST_CASE("run --via-daemon: a failing spec exits as run does, a rejected spec runs nothing",
          "[run-via-daemon]") {
  Fleet fleet;
  DaemonProcess daemon(fleet);
  // argv[0] missing: 127 and the reason in one line, as `run` says it.
  const std::string missing = unique_id("via-missing");
  auto m = run_via(fleet, make_spec(missing, {"/usr/bin/cellos-no-such-tool"}));
  INFO(m.err);
  CHECK(m.status == 127);
  CHECK_THAT(m.err, Contains("cellos-no-such-tool"));
  CHECK(count(fleet, missing, "command.v1.completed") == 1);

  // Refused: one line naming the field, 125, nothing queued, nothing started.
  const std::string bad = unique_id("via-bad");
  json spec = make_spec(bad, {"/bin/true"});
  spec["spec"]["run"]["limits"] = {{"pidsMax", 0}};
  auto b = run_via(fleet, spec);
  INFO(b.err);
  CHECK(b.status == 125);
  CHECK_THAT(b.err, Contains("pidsMax"));
  CHECK(std::count(b.err.begin(), b.err.end(), '\n') == 1);
  CHECK(count(fleet, bad, "lifecycle.v1.started") == 0);
  CHECK(dir_entries(fleet.state_dir() + "/spool").empty());
  daemon.signal(SIGTERM);
  CHECK(daemon.wait() == 0);
}

TEST_CASE("run --via-daemon: SIGINT stops the daemon's cell and run exits 130", "[run-via-daemon]") {
  Fleet fleet;
  DaemonProcess daemon(fleet);
  const std::string id = unique_id("via-int");
  const std::string spec_path = fleet.dir() + "/int.json", out_path = fleet.dir() + "/int.out";
  write_text(spec_path, sh_spec(id, "echo ready; exec sleep 60").dump());
  const std::string bin = CELLOS_REACTOR_BIN;
  std::vector<const char*> argv{bin.c_str(), "run", spec_path.c_str(), "--via-daemon",
                                "--config", fleet.config_path().c_str(), nullptr};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = -1;
  REQUIRE(posix_spawn(&pid, argv[0], &fa, nullptr, const_cast<char**>(argv.data()), environ) == 0);
  posix_spawn_file_actions_destroy(&fa);
  // Its output came through: the daemon started the cell and run follows it.
  bool ready = eventually([&] { return read_text(out_path) == "ready\n"; }, 30s);
  if (!ready) ::kill(pid, SIGKILL);
  REQUIRE(ready);
  REQUIRE(::kill(pid, SIGINT) == 0);
  int status = -1;
  bool exited = eventually([&] { return ::waitpid(pid, &status, WNOHANG) == pid; }, 30s);
  if (!exited) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
  }
  REQUIRE(exited);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 128 + SIGINT);
  // The cell was stopped by the daemon, as `run` stops its own: reason shutdown, then gone.
  REQUIRE(eventually([&] { return count(fleet, id, "lifecycle.v1.destroyed") == 1; }, 10s));
  bool shutdown = false;
  for (const auto& e : fleet.events())
    if (e.value("subject", "") == id && e.value("type", "").ends_with("command.v1.completed"))
      shutdown = e["data"].value("reason", "") == "shutdown";
  CHECK(shutdown);
  daemon.signal(SIGTERM);
  CHECK(daemon.wait() == 0);
}

TEST_CASE("run --via-daemon without a daemon runs the cell itself", "[run-via-daemon]") {
  Fleet fleet;
  const std::string id = unique_id("via-none");
  auto r = run_via(fleet, sh_spec(id, "echo here; exit 4"));
  INFO(r.err);
  CHECK(r.status == 4);
  CHECK(r.out == "here\n");
  CHECK_THAT(r.err, Contains("no daemon serves"));
  CHECK(count(fleet, id, "command.v1.completed") == 1);  // run's own log: the fleet's
  CHECK(dir_entries(fleet.state_dir() + "/spool").empty());
}
