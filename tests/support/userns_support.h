// A rootless reactor's world, made by the test as a service manager or a parent cell would: a
// user namespace mapping a uid range of its own, a cgroup subtree delegated to that range's
// root (chowned, the reactor moved into it), and namespaces owned by the user namespace with
// their own proc, sysfs and cgroup mounts (rooted at the subtree by a cgroup namespace).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "tests/support/test_support.h"

namespace cellos::test {

// The cgroup hierarchies a delegated subtree spans on this host (unified, plus the v1 memory,
// pids and cpu ones where they are mounted).
std::vector<std::string> delegation_hierarchies();

// <hierarchy>/<name> in every hierarchy, owned by `uid`. The destructor kills whatever is
// still in it and removes it depth first, so a failed test leaves no cgroup.
class DelegatedSubtree {
 public:
  DelegatedSubtree(const std::string& name, uid_t uid);
  ~DelegatedSubtree();
  DelegatedSubtree(const DelegatedSubtree&) = delete;
  DelegatedSubtree& operator=(const DelegatedSubtree&) = delete;
  const std::vector<std::string>& dirs() const { return dirs_; }
  // Every cgroup below the subtree's top, in every hierarchy ("" when none is left).
  std::string leftovers() const;

 private:
  std::vector<std::string> dirs_;
};

struct RootlessOptions {
  uid_t outer_first = 0;  // host uid that is root in the namespace
  uint32_t count = 65536;
  const DelegatedSubtree* subtree = nullptr;
  std::string input;  // the reactor's stdin
  int timeout_s = 90;
};

// Runs argv as root of a fresh user namespace (see the header comment); its exit status and
// output as run_process gives them.
ProcessResult run_rootless(const RootlessOptions& options, const std::vector<std::string>& argv);

// chown -R of a test's own directory to the namespace's root.
void chown_tree(const std::string& path, uid_t uid);

}  // namespace cellos::test
