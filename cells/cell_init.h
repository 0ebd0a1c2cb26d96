// The cell's init: pid 1 of every cell.
//
// A freestanding program (cells/init/cell_init_main.cc) built with the project and embedded in
// the reactor. Each cell's setup (child_setup.h) execs it from a sealed memfd, in the cell's
// namespaces and cgroup, as root there:
//
//   cellos-init UID GID CAP_LAST_CAP -- PROGRAM ARGV...   (environment: the command's, exactly)
//   fd 0-2: the command's stdio; fd 3: the status pipe (ChildStatus records, child_status.h)
//
// It spawns the command with CLONE_VM|CLONE_VFORK; the command drops to UID/GID, loses every
// capability (bounding set included), sets no_new_privs, loads the default seccomp filter
// (compiled in from the same generated program as the reactor's) and execs PROGRAM with ARGV
// (PROGRAM is argv[0], or a bare argv[0] resolved through the cell's PATH: program_path.h). Init reports
// kStarted, or kSetupFailed/kExecFailed with the stage and errno, then reaps every process of
// the cell (orphans included: zombies would count against pids.max) until the command exits,
// reports kExited with its wait status, and leaves. Leaving takes the pid namespace down:
// whatever the command left running dies with it.
#pragma once

#include "base/fd.h"

namespace cellos::cells {

inline constexpr const char* kCellInitName = "cellos-init";

// A memfd holding the init binary, sealed against any change, created once per process.
const base::Result<base::Fd>& cell_init_binary();

}  // namespace cellos::cells
