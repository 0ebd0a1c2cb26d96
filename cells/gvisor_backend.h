// The gVisor backend: each cell is a runsc sandbox. The command's system calls reach gVisor's
// Sentry (a user-space kernel), never the host kernel; with the ptrace platform the Sentry traces
// stub processes, so it needs no KVM (nested virtualisation does not boot one here).
//
// The cell's root process is a small fork-like helper cloned straight into the cell's cgroup
// leaf: it writes the leaf's limits and joins the v1 hierarchies as the native setup does,
// checks argv[0] (so a missing program is the same exec failure, 127, as on the native
// backend), enters the cell's network namespace when it has one, starts `runsc run`, closes
// every descriptor it inherited from the reactor, and waits: a SIGTERM from the reactor
// (a graceful stop) becomes `runsc kill <id> TERM`, runsc's exit becomes its own. The bundle
// has no cgroupsPath, so runsc leaves the sandbox, the gofer and the ptrace stubs where they
// started: in the leaf, under its limits and its cgroup.kill.
//
// runsc's exit status is the command's (a signal N becomes 128+N, as a shell reports it); the
// Cell reads it from the root process (traits().status_records = false). Per cell the backend
// keeps <state_dir>/gvisor/<cell id>/ (bundle/ and runsc's --root state), removed at teardown
// after every process is gone; a reactor that died leaves it for recovery (reactor/recovery.h).
#pragma once

#include <string>
#include <vector>

#include "cells/backend.h"

namespace cellos::cells {

// Fails when runsc is not an executable file, or when a platform other than ptrace is
// configured and cannot start a sandbox (KVM under nested virtualisation hangs: the check gives
// it a few seconds and says so).
base::Result<std::unique_ptr<Backend>> make_gvisor_backend(const Config& config);

// Where the gVisor cells' state lives, and the cell ids a dead reactor left there.
std::string gvisor_state_dir(const Config& config);
std::vector<std::string> gvisor_leftover_cells(const Config& config);
// Removes one cell's leftover state (runsc --root and the bundle). Its processes must be gone.
base::Result<void> remove_gvisor_cell_state(const Config& config, const std::string& cell_id);

// The runsc command line for a bundle (for the benchmark's direct-runsc peer too).
std::vector<std::string> runsc_argv(const Config& config, const std::string& root_dir,
                                    const std::string& bundle_dir, const std::string& container_id,
                                    bool network);

}  // namespace cellos::cells
