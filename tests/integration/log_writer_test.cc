// One writer per event log: a `run` beside a live daemon (or another run) on the same state dir
// writes a log of its own, and every log verifies.
#include <signal.h>

#include <catch2/catch.hpp>
#include <filesystem>

#include "tests/support/daemon_support.h"
#include "tests/support/test_support.h"

using namespace cellos::test;
namespace fs = std::filesystem;

TEST_CASE("a run beside the daemon writes its own log, never the daemon's, and both verify",
          "[daemon][log]") {
  Fleet fleet;
  DaemonProcess daemon(fleet);
  const std::string in_daemon = unique_id("bydaemon");
  spool(fleet, make_spec(in_daemon, {"/bin/true"}));
  REQUIRE(eventually([&] { return !events_of(fleet, "lifecycle.v1.destroyed").empty(); }));

  auto r = fleet.run(make_spec(unique_id("beside"), {"/bin/true"}).dump());
  REQUIRE(r.status == 0);
  CHECK_THAT(r.err, Catch::Contains("has another writer: this run's events go to"));
  const std::string runs = fleet.state_dir() + "/runs";
  REQUIRE(fs::is_directory(runs));
  std::vector<std::string> logs;
  for (const auto& e : fs::directory_iterator(runs)) logs.push_back(e.path().string());
  REQUIRE(logs.size() == 1);
  CHECK_THAT(read_text(logs[0]), Catch::Contains("command.v1.completed"));
  // A second daemon cell after the run: the daemon's log stays one numbering.
  spool(fleet, make_spec(unique_id("after"), {"/bin/true"}));
  REQUIRE(eventually([&] { return events_of(fleet, "lifecycle.v1.destroyed").size() == 2; }));
  daemon.signal(SIGTERM);
  REQUIRE(daemon.wait() == 0);
  for (const std::string& log : {fleet.events_path(), logs[0]}) {
    auto v = run_process({CELLOS_REACTOR_BIN, "verify", log});
    INFO(log << ": " << v.out << v.err);
    CHECK(v.status == 0);
  }
  // The daemon's log holds no line of the run's cell.
  CHECK(read_text(fleet.events_path()).find("beside") == std::string::npos);
}

TEST_CASE("an explicit --events file another writer holds is refused with 125, naming it",
          "[log]") {
  Fleet fleet;
  DaemonProcess daemon(fleet);
  auto r = fleet.run(make_spec(unique_id("explicit"), {"/bin/true"}).dump(),
                     {"--events", fleet.events_path()});
  CHECK(r.status == 125);
  CHECK_THAT(r.err, Catch::Contains(fleet.events_path()) &&
                        Catch::Contains("another writer (a daemon or another run) has it"));
  daemon.signal(SIGTERM);
  REQUIRE(daemon.wait() == 0);
}
