// The OCI runtime bundle (config.json) a gVisor cell runs from: the same cell as the native
// backend builds, said in OCI terms for runsc.
//
//   root      an empty directory of the bundle, read-only: nothing of the host but what the
//             mounts below add
//   mounts    each root-view host path bound read-only, nosuid, nodev (absent ones skipped, as
//             the native view skips them); the reactor's own files inside them masked (an
//             empty read-only tmpfs over a directory, /dev/null over a file); a fresh tmpfs
//             workspace owned by the cell's uid and a fresh /tmp; gVisor's own /proc and /sys
//   process   argv, the exact environment, the cell's uid/gid with no supplementary groups, no
//             capabilities in any set, no_new_privs, the workspace as cwd; hostname the cell id
//   linux     pid, ipc, uts and mount namespaces (gVisor's own: none is the host's), no
//             cgroupsPath (runsc then leaves every process where it started: in the cell's
//             leaf, which the reactor placed it in and limits)
#pragma once

#include <string>
#include <vector>

#include "base/result.h"

namespace cellos::cells {

struct OciBundleOptions {
  std::vector<std::string> argv;
  std::vector<std::string> env;  // "KEY=value", complete
  std::string workdir;
  std::string hostname;
  uid_t uid = 65534;
  gid_t gid = 65534;
  std::vector<std::string> host_paths, masked_paths;  // root_view.h
  std::string rootfs = "rootfs";  // relative to the bundle
  // RLIMIT_NPROC inside the sandbox: the spec's pidsMax (the cell's uid is its own, and the
  // Sentry counts that uid's tasks as the pids controller would). 0: none.
  uint64_t nproc = 0;
  // The cell's prepared network namespace (a /proc path runsc can open), or empty: none in the
  // bundle (runsc --network=none gives the cell gVisor's own loopback only).
  std::string netns_path;
};

// The config.json text. Fails (naming the field) for a workspace inside a host path of the
// view: runsc would have to create its mount point in the host's directory.
base::Result<std::string> oci_config_json(const OciBundleOptions& options);

}  // namespace cellos::cells
