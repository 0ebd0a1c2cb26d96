// The status pipe between a cell and the reactor: what the cell's setup and its init report.
//
// Shared by the reactor and the freestanding init (cells/init/), so it holds plain types only.
#pragma once

#include <cstdint>

namespace cellos::cells {

// Records init writes on the status pipe. Fixed size, so one read returns whole records.
struct ChildStatus {
  enum Kind : int32_t { kSetupFailed = 1, kExecFailed = 2, kStarted = 3, kExited = 4,
                        // From the spawner (spawner.h), not the cell: the cell's pid on the
                        // host, in wait_status. Comes before EOF, maybe after the setup's own.
                        kSpawned = 5 };
  int32_t kind = 0;
  int32_t stage = 0;        // a ChildStage, for kSetupFailed / kExecFailed
  int32_t err = 0;          // errno, for kSetupFailed / kExecFailed
  int32_t wait_status = 0;  // waitpid status of the command, for kExited
  // The call and the object that failed, for kSetupFailed from the cell's setup: "mount tmpfs
  // on /work", NUL-terminated (cut to fit). Empty: the stage name says what failed.
  char what[112] = {};
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
  kStageInit,
  kStageSpawn,
  kStageCredentials,
  kStageCapabilities,
  kStageNoNewPrivs,
  kStageSeccomp,
  kStageExec,
  kStageCgroupLimits,  // wait_status holds the index of the limit write that failed
  kStageNetns,
  kStageRootView,  // bind the allowed host paths into the cell's fresh root
  kStageSys,
  kStageCgroupNs,
  kStageInputs,  // bind spec.inputs read-only into the view
  kStageClone,   // the spawner's clone3 of the cell (spawner.h)
};

// "mount tmpfs at the workspace", ... for error messages.
const char* child_stage_name(int32_t stage);

}  // namespace cellos::cells
