// Where a reactor's cells go in the cgroup hierarchies.
//
// A service manager that delegates a subtree to its service (systemd's Delegate=yes, as the
// shipped unit asks) expects the service to keep to it: the fleet daemon then puts its cells
// below its own cgroup2 cgroup, first moving itself into a leaf of its own ("<own>/supervisor",
// because cgroup2 lets a cgroup with processes of its own enable no controller for children),
// and never writes the root's cgroup.subtree_control. Started in the root cgroup (by hand, in a
// container), it uses the roots as before. [host] cgroup_parent overrides both.
#pragma once

#include <string>

#include "base/result.h"
#include "cells/config.h"

namespace cellos::reactor {

struct CgroupPlacement {
  std::string parent;     // relative to each hierarchy's root: "<base>/cellos/<host id>"
  std::string delegated;  // the prefix of `parent` that belongs to us (empty: none)
};

// `run`: [host] cgroup_parent, else the roots. A `run` never moves itself: it is one process of
// whatever job called it.
CgroupPlacement cgroup_placement_for_run(const cells::Config& config);

// The daemon, as described above. `unified_root` is the cgroup2 mount; `self_cgroup` the
// /proc/self/cgroup text (injected for tests).
base::Result<CgroupPlacement> cgroup_placement_for_daemon(const cells::Config& config,
                                                          const std::string& unified_root,
                                                          const std::string& self_cgroup);

// The process's cgroup2 path from /proc/self/cgroup text ("0::/a/b" -> "a/b"; "" for the root).
std::string unified_cgroup_of(const std::string& self_cgroup);

}  // namespace cellos::reactor
