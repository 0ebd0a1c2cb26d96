// The daemon's per-cell log files (docs/daemon.md, Logs): created when a stream's first bytes
// arrive, none for a quiet stream, and a reused id's old logs emptied when its new cell starts.
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "tests/support/daemon_support.h"
#include "tests/support/test_support.h"

using namespace cellos::test;
namespace fs = std::filesystem;

TEST_CASE("daemon logs: a stream gets its file when it writes, a quiet stream none, a reused "
          "id's old logs are emptied, and a setup failure's note creates the stderr log",
          "[daemon][logs]") {
  Fleet fleet;
  DaemonProcess daemon(fleet);
  const std::string talk = unique_id("logs-talk"), quiet = unique_id("logs-quiet"),
                    bad = unique_id("logs-bad");
  const std::string logs = fleet.state_dir() + "/logs/";
  // A previous run of `quiet` left output behind: the new run must not show it.
  fs::create_directories(logs + quiet);
  std::ofstream(logs + quiet + "/stdout") << "stale stdout\n";
  std::ofstream(logs + quiet + "/stderr") << "stale stderr\n";

  spool(fleet, make_spec(talk, {"/bin/sh", "-c", "echo hello"}));
  spool(fleet, make_spec(quiet, {"/bin/true"}));
  spool(fleet, make_spec(bad, {"/usr/bin/cellos-no-such-program"}));
  REQUIRE(eventually([&] { return events_of(fleet, "lifecycle.v1.destroyed").size() >= 3; },
                     std::chrono::seconds(60)));

  CHECK(read_text(logs + talk + "/stdout") == "hello\n");
  CHECK_FALSE(fs::exists(logs + talk + "/stderr"));  // it wrote nothing there

  REQUIRE(fs::exists(logs + quiet + "/stdout"));
  CHECK(fs::file_size(logs + quiet + "/stdout") == 0);
  CHECK(fs::file_size(logs + quiet + "/stderr") == 0);

  // Neither the directory nor the file existed: the setup failure's note made both.
  const std::string note = read_text(logs + bad + "/stderr");
  CHECK(note.find("[cellos-reactor: setup failed") != std::string::npos);
  CHECK(note.find("cellos-no-such-program") != std::string::npos);
  CHECK_FALSE(fs::exists(logs + bad + "/stdout"));

  daemon.signal(SIGTERM);
  CHECK(daemon.wait() == 0);
}
