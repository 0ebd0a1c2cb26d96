// What runs inside a new cell, between clone3 and the command's execve.
//
// The clone3 child becomes the cell's init (pid 1 of its pid namespace). As root inside the new
// namespaces it joins the v1 cgroups, builds the mount view (host read-only, fresh workspace,
// /tmp, /dev and /proc), names the host, brings up loopback, then spawns the command with
// CLONE_VM|CLONE_VFORK: the command drops to the unprivileged uid, loses every capability, sets
// no_new_privs, loads the seccomp filter and execs. Init stays behind to reap orphans (zombies
// would count against pids.max) and to report the command's wait status on the status pipe.
//
// Everything the child needs is prepared by the parent in a ChildPlan, so the child allocates
// only in init's own (forked) address space and the command's side makes syscalls only.
#pragma once

#include <linux/filter.h>
#include <sys/types.h>

#include <cstdint>

namespace cellos::cells {

// Records init writes on the status pipe. Fixed size, so one read returns whole records.
struct ChildStatus {
  enum Kind : int32_t { kSetupFailed = 1, kExecFailed = 2, kStarted = 3, kExited = 4 };
  int32_t kind = 0;
  int32_t stage = 0;        // a ChildStage, for kSetupFailed / kExecFailed
  int32_t err = 0;          // errno, for kSetupFailed / kExecFailed
  int32_t wait_status = 0;  // waitpid status of the command, for kExited
};

enum ChildStage : int32_t {
  kStageCgroupV1 = 1,
  kStageFds,
  kStageMountPrivate,
  kStageMountReadonly,
  kStageWorkspaceParent,
  kStageWorkspace,
  kStageTmp,
  kStageDev,
  kStageProc,
  kStageHostname,
  kStageLoopback,
  kStageChdir,
  kStageSpawn,
  kStageCredentials,
  kStageCapabilities,
  kStageNoNewPrivs,
  kStageSeccomp,
  kStageExec,
};

// "mount tmpfs at the workspace", ... for error messages.
const char* child_stage_name(int32_t stage);

struct ChildPlan {
  const char* const* argv = nullptr;  // argv[0] is the absolute path executed
  const char* const* envp = nullptr;
  const char* workdir = nullptr;
  const char* hostname = nullptr;
  uid_t uid = 65534;
  gid_t gid = 65534;
  int cap_last_cap = 40;  // from /proc/sys/kernel/cap_last_cap, read by the parent
  const sock_fprog* seccomp = nullptr;

  // Descriptors in the parent's table; the child moves them to fixed numbers.
  int stdin_fd = -1;   // /dev/null
  int stdout_fd = -1;  // write ends of the cell's pipes
  int stderr_fd = -1;
  int status_fd = -1;
  const int* v1_procs = nullptr;  // cgroup.procs of each v1 leaf
  int n_v1_procs = 0;
};

// Runs in the clone3 child; never returns.
[[noreturn]] void cell_init_main(const ChildPlan& plan);

}  // namespace cellos::cells
