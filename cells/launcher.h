// The launcher: clone3 into new namespaces and a cgroup. The child is set up by
// cell_setup_main (child_setup.h), then becomes the cell's init (cell_init.h), which runs the
// command under the default seccomp filter (seccomp.h).
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/io.h"

namespace cellos::cells {

struct LaunchOptions {
  std::vector<std::string> argv;
  std::string program;  // the file exec'd with argv; empty: argv[0]
  std::vector<std::string> env;  // "KEY=value", complete: nothing is inherited
  std::string workdir;
  std::string hostname;
  uid_t uid = 65534;
  gid_t gid = 65534;
  int cgroup_v2_dirfd = -1;              // CLONE_INTO_CGROUP target
  // CLONE_PIDFD. Off when the reactor watches exits by pid (IoPort::can_wait_pid).
  bool want_pidfd = true;
  // Where the reactor's copies of the cell's pipe write ends are closed once the spawner has
  // them: through the ring (no close syscall per pipe). Null: closed here.
  base::IoPort* io = nullptr;
  // Limit writes and v1 joins the child makes itself (CgroupLeafOptions::defer_writes).
  std::vector<const char*> knob_paths, knob_values;
  std::vector<const char*> v1_procs_paths;
  // A network namespace the reactor prepared (netns/cell_net.h): the child joins it instead of
  // creating an empty one with CLONE_NEWNET. -1: a new, empty namespace. Not owned.
  int netns_fd = -1;
  // The host paths the cell's root view holds, read-only (root_view.h: root_view_paths).
  std::vector<std::string> host_paths;
  std::vector<std::string> masked_paths;  // hidden inside them (root_view.h: masked_paths)
  std::string broker_dir;  // bound at /run/cellos (secret_broker.h); empty: none
  // spec.inputs (inputs.h): host paths bound read-only at the cell paths of the same index.
  std::vector<std::string> input_host_paths, input_paths;
  int workspace_mount_fd = -1;  // a detached tmpfs to move onto workdir, or -1 (cell_export.h)
  int tmp_mount_fd = -1;        // likewise onto /tmp (both or neither)
  std::string resolv_conf;  // bound over /etc/resolv.conf when set (StartRequest)
  // A nested cell (cells/nested_backend.h): cloned with CLONE_NEWUSER too, by the launcher
  // itself (never the spawner), fork-like (not CLONE_VFORK): the child waits on sync_fd until
  // the caller has written its uid and gid maps, then runs as root of its user namespace.
  struct Nested {
    int sync_fd = -1;             // read end; the child goes on after one byte
    uint32_t max_user_namespaces = 0;  // written in the cell's user namespace (the kernel's bound)
    std::string exe, config, state_dir;  // host paths bound at kNested* in the view
  };
  std::optional<Nested> nested = {};
};

// What the parent keeps of a launched cell.
struct Launched {
  pid_t pid = -1;  // 0: not known yet, a ChildStatus::kSpawned record brings it (spawner.h)
  base::Fd pidfd;  // empty without want_pidfd
  base::Fd stdout_read;
  base::Fd stderr_read;
  base::Fd status_read;  // ChildStatus records, then EOF when the cell's init is gone
};

// A cell's three pipes (stdout, stderr, status records): made before its plan is sent; once the
// cell (or the spawner) holds its own copies of the write ends, the parent keeps the read ends.
struct CellPipes {
  base::Pipe out, err, status;
  static base::Result<CellPipes> make();
  // The read ends as a Launched; ours of the write ends are closed through `io` (the ring's
  // next submission, no syscall of the reactor's own) when there is one, else here.
  Launched keep(pid_t pid, base::Fd pidfd, base::IoPort* io);
};

// CLONE_PIDFD | CLONE_INTO_CGROUP | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS |
// CLONE_NEWNET (or setns into netns_fd). Failures of the child's own setup arrive later on status_read.
base::Result<Launched> launch(const LaunchOptions& options);

// The cell init's command line for `options` (cell_init.h): what the plan's init_argv holds.
std::vector<std::string> cell_init_args(const LaunchOptions& options);

}  // namespace cellos::cells
