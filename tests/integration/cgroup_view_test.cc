// A cell's cgroup2 directory is its own leaf bound from the host's cgroup2 mount
// (cells/cgroup_view.h), not a cgroup2 superblock of its own: the same device as the host's
// cgroup2, its own processes in it, and "/" as its root in the cell's mount table.
#include <sys/stat.h>
#include <sys/statfs.h>
#include <linux/magic.h>

#include <catch2/catch.hpp>
#include <string>

#include "tests/support/test_support.h"

using namespace cellos::test;

TEST_CASE("a cell's cgroup2 is its leaf bound from the host's cgroup2, not a superblock of its own",
          "[iso][sys][cgroup]") {
  std::string host_root;
  for (const char* root : {"/sys/fs/cgroup/unified", "/sys/fs/cgroup"}) {
    struct statfs sf{};
    if (::statfs(root, &sf) == 0 && sf.f_type == CGROUP2_SUPER_MAGIC) {
      host_root = root;
      break;
    }
  }
  if (host_root.empty()) {
    WARN("SKIPPED: no cgroup2 mount at /sys/fs/cgroup/unified or /sys/fs/cgroup");
    return;
  }
  struct stat host{};
  REQUIRE(::stat(host_root.c_str(), &host) == 0);
  Fleet fleet;
  // The cell's cgroup2 sits where the host's does (unified/ on a hybrid host).
  const std::string at = host_root;
  auto r = fleet.run(make_spec(unique_id("cg2view"),
                               {"/bin/sh", "-c",
                                "stat -c %d " + at + "; wc -l < " + at + "/cgroup.procs; "
                                "grep ' " + at + " ' /proc/self/mountinfo | cut -d' ' -f4,9"})
                         .dump());
  INFO(r.out << r.err);
  REQUIRE(r.status == 0);
  CHECK(r.out.rfind(std::to_string(host.st_dev) + "\n", 0) == 0);
  // The init, the shell and wc at least: the cell's own processes, none of the host's.
  const std::string second = r.out.substr(r.out.find('\n') + 1);
  CHECK(std::atoi(second.c_str()) >= 2);
  CHECK(std::atoi(second.c_str()) < 10);
  CHECK(r.out.find("\n/ cgroup2\n") != std::string::npos);
}
