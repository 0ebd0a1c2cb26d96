// Backend: how an admitted cell's command becomes running processes.
//
// The Cell (cell.h) owns everything every backend shares: the id lock, the events, the cgroup
// leaf and its limits, the network namespace with its ruleset and flow probes, the log pumps,
// the TTL, the outcome. A backend owns only what lies between "here is a prepared cell" and
// "here is its root process": the native backend clones into new namespaces and execs the
// cell's init; a gVisor backend would start runsc; a nested backend a reactor of the cell's own.
//
// The contract, for a backend author:
//   - prepare() runs once per cell, before start(), on the reactor thread; it may make what the
//     cell needs on disk (a bundle, a state dir) and must not block on anything slow.
//   - start() creates the cell's root process inside the given cgroup (CLONE_INTO_CGROUP or
//     equivalent: every process of the cell, the backend's own helpers included, must be in
//     the leaf so cgroup.kill and the limits reach them) and returns its pid (and pidfd when
//     asked), the read ends of its stdout and stderr, and a status pipe.
//   - The root process's exit ends the cell. The Cell reaps it through the ring (never a
//     thread, never polling) and kills the whole cell with cgroup.kill, so a backend needs no
//     signal or reap code of its own.
//   - The status pipe carries ChildStatus records (child_status.h) when traits().status_records;
//     otherwise the backend closes its write end and the root process's own exit status is
//     the command's.
//   - Destroying the BackendCell (after the root process is reaped and the leaf is empty)
//     removes whatever prepare() and start() left; it must not block.
//   - traits() says what the backend cannot do, so events and docs can say it too.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "cells/config.h"

namespace cellos::cells {

struct BackendTraits {
  // The status pipe carries ChildStatus records (setup stage and errno, exec errors, the
  // command's own wait status); false: the root process's exit status is the command's.
  bool status_records = true;
  // The command's packets leave through the cell's network namespace, where its nftables
  // ruleset and the cgroup_skb probes see them.
  bool netns_enforcement = true;
};

// What the Cell hands a backend to start the command: all decided, nothing left to look up.
struct StartRequest {
  std::string cell_id;
  std::vector<std::string> argv;
  std::vector<std::string> env;  // "KEY=value", complete: nothing is inherited
  std::string workdir;
  uid_t uid = 65534;  // the cell's own (uid_pool.h)
  gid_t gid = 65534;
  // The root view: host paths bound read-only, and reactor files under them masked
  // (root_view.h). Every backend builds the same view.
  std::vector<std::string> host_paths, masked_paths;
  int cgroup_v2_dirfd = -1;  // the cell's leaf (CLONE_INTO_CGROUP)
  // Limit writes and v1 cgroup joins to make as root inside the cell before the command runs
  // (CgroupLeafOptions::defer_writes). Parallel vectors; the strings outlive start().
  std::vector<const char*> knob_paths, knob_values;
  std::vector<const char*> v1_procs_paths;
  // CLONE_PIDFD. Off when the reactor watches exits by pid (IoPort::can_wait_pid).
  bool want_pidfd = true;
  // The cell's prepared network namespace, or -1: a new, empty one. Not owned.
  int netns_fd = -1;
  // A host file bound read-only over the cell's /etc/resolv.conf (a cell with a dnsAuthority:
  // cells/cell_dns.h), or empty.
  std::string resolv_conf;
};

// What the Cell keeps of a started cell.
struct Started {
  pid_t pid = -1;
  base::Fd pidfd;  // empty without want_pidfd
  base::Fd stdout_read;
  base::Fd stderr_read;
  base::Fd status_read;  // ChildStatus records (traits().status_records), then EOF
};

// One cell's share of a backend: made by prepare(), destroyed at the cell's teardown.
class BackendCell {
 public:
  virtual ~BackendCell() = default;
  virtual base::Result<Started> start(const StartRequest& request) = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  // The name fleet.toml and the events use ("native", ...).
  virtual std::string_view name() const = 0;
  virtual BackendTraits traits() const = 0;
  virtual base::Result<std::unique_ptr<BackendCell>> prepare(const std::string& cell_id) = 0;
};

// The registered backends by name (backend_registry.cc): checks, once per host, that the backend
// can run cells here (its binaries load, its kernel features exist), naming what is missing.
base::Result<std::unique_ptr<Backend>> make_backend(std::string_view name, const Config& config);
// Every registered name, for configuration errors and docs.
std::vector<std::string_view> backend_names();

}  // namespace cellos::cells
