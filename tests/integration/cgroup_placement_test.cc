// Where the fleet daemon puts its cells: below its own cgroup when a service manager gave it
// one (systemd's Delegate=yes), never at the cgroup root; [host] cgroup_parent overrides.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <filesystem>

#include "tests/support/daemon_support.h"
#include "tests/support/test_support.h"

using namespace cellos::test;
namespace fs = std::filesystem;

namespace {

constexpr const char* kUnified = "/sys/fs/cgroup/unified";

// A cgroup2 directory the test makes, as a service manager makes a unit's; removed at the end
// with everything made below it in any hierarchy (the v1 controllers' trees mirror the path).
struct UnitCgroup {
  std::string rel, dir;
  explicit UnitCgroup(const std::string& name) : rel(name), dir(std::string(kUnified) + "/" + name) {
    fs::create_directories(dir);
  }
  ~UnitCgroup() {
    for (const char* h : {"unified", "memory", "pids", "cpu"}) {
      const std::string top = std::string("/sys/fs/cgroup/") + h + "/" + rel;
      std::vector<std::string> dirs;
      std::error_code ec;
      for (auto it = fs::recursive_directory_iterator(top, ec); !ec && it != fs::end(it); ++it)
        if (it->is_directory()) dirs.push_back(it->path().string());
      // Leaves first: a cgroup can only be removed once it has no children.
      std::sort(dirs.begin(), dirs.end(),
                [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
      for (const auto& d : dirs) ::rmdir(d.c_str());
      ::rmdir(top.c_str());
    }
  }
};

}  // namespace

TEST_CASE("a daemon started inside a service cgroup puts its cells below it, in a leaf of its "
          "own, and nothing at the root",
          "[daemon][cgroup]") {
  if (!fs::exists(std::string(kUnified) + "/cgroup.procs"))
    CELLOS_SKIP("no cgroup2 hierarchy at /sys/fs/cgroup/unified");
  Fleet fleet;
  UnitCgroup unit("cellos-unit-" + std::to_string(::getpid()) + ".service");
  DaemonProcess daemon(fleet, unit.dir);
  // The daemon moved itself out of the unit's cgroup into a leaf of its own.
  CHECK(read_text("/proc/" + std::to_string(daemon.pid()) + "/cgroup")
            .find("0::/" + unit.rel + "/supervisor\n") != std::string::npos);
  const std::string id = unique_id("delegated");
  spool(fleet, make_spec(id, {"/bin/sh", "-c", "sleep 30"}));
  REQUIRE(eventually([&] { return !events_of(fleet, "lifecycle.v1.started").empty(); }));
  const std::string leaf = unit.dir + "/cellos/" + fleet.host_id() + "/" + id;
  CHECK(eventually([&] { return fs::is_directory(leaf); }, std::chrono::seconds(10)));
  // The cell's own processes are in that leaf.
  CHECK_FALSE(read_text(leaf + "/cgroup.procs").empty());
  // Nothing of this host at the hierarchy's root.
  CHECK_FALSE(fs::exists(std::string(kUnified) + "/cellos/" + fleet.host_id()));
  // Two SIGTERMs sent at once would merge into one pending signal: the second after the first
  // was read, so it kills the cell now rather than at the end of the grace period.
  daemon.signal(SIGTERM);
  REQUIRE(eventually([&] { return daemon.err().find("intake stopped") != std::string::npos; }));
  daemon.signal(SIGTERM);
  CHECK(daemon.wait(std::chrono::seconds(30)) == 0);
  CHECK_FALSE(fs::exists(leaf));
}

TEST_CASE("[host] cgroup_parent puts a run's cells there, not at the root", "[cgroup]") {
  if (!fs::exists(std::string(kUnified) + "/cgroup.procs"))
    CELLOS_SKIP("no cgroup2 hierarchy at /sys/fs/cgroup/unified");
  UnitCgroup unit("cellos-parent-" + std::to_string(::getpid()));
  Fleet fleet("", "", "cgroup_parent = \"/" + unit.rel + "\"");
  const std::string id = unique_id("parented");
  // Seen from the host while the cell runs (inside, its cgroup namespace hides the path).
  pid_t run = fleet.start_run(make_spec(id, {"/bin/sleep", "2"}).dump());
  const std::string leaf = unit.dir + "/cellos/" + fleet.host_id() + "/" + id;
  CHECK(eventually([&] { return fs::is_directory(leaf); }, std::chrono::seconds(10)));
  CHECK_FALSE(fs::exists(std::string(kUnified) + "/cellos/" + fleet.host_id()));
  int status = 0;
  REQUIRE(::waitpid(run, &status, 0) == run);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}
