// A prepared cell: one entry of the daemon's warm pool (warm_pool.h).
//
// What is prepared, ahead of demand and off the admission path: a process cloned by the
// spawner (spawner.h) with fresh mount, pid, ipc, uts and network namespaces, straight into a
// cgroup leaf of its own (CLONE_INTO_CGROUP), which it has joined in every v1 hierarchy too
// (the first v1 migration after an idle moment waits for an RCU grace period: milliseconds
// that a cold cell pays on its critical path). It holds nothing but /dev/null, the init binary
// and its end of a SOCK_SEQPACKET pair, and blocks reading that socket. Before it blocks, it
// builds the part of its root view that depends on no spec (prepare_cell_view: private mounts,
// a cgroup namespace, the policy's host paths on a fresh tmpfs made its root, its leaves'
// clones parked for /sys), which was about half of the bind's time.
//
// What is bound at admission (bind()): everything of the spec. The reactor sends the very plan
// a cold cell's clone would get (spawn_plan.h), with the cell's pipes (and its prepared network
// namespace, for a cell with egress rules) as SCM_RIGHTS, after the reactor wrote the spec's
// limits to the leaf; the prepared process then runs the same setup as a cold cell
// (child_setup.h) from its built root on: the egress namespace joined, /tmp, the workspace,
// /dev, /sys, /proc and the masks, the root made read-only, the hostname (the cell's id), and
// the exec of the cell's init with the spec's uid, env and seccomp filter. A spec that binds
// something opened from the host's root (inputs, a dnsAuthority's resolv.conf, the secret
// broker) is not served (WarmPool::refusal; bind() refuses it too).
//
// Why no state crosses from one spec to another: a prepared cell serves one spec and is
// destroyed with it (its leaf is removed at the cell's end like any cell's); nothing of any
// spec exists in it before bind() (its namespaces were created empty, its root was built from
// the policy alone, /tmp and the workspace are made after the bind on that root's own tmpfs,
// which no other cell had, its hostname is set at the bind, and its
// memory image is replaced by the init's exec before anything of the spec runs).
//
// The leaf is named neutrally, ".pool-<pid>-<n>" (a spec id may not start with '.', so it never
// collides with a cell's), and keeps that name for the cell's life: cgroup2 refuses rename(2).
// The cell's id is in its hostname, its events and `status`; its leaf is an implementation
// detail, found by the reactor, never by id.
#pragma once

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "cells/cgroup.h"
#include "cells/child_setup.h"
#include "cells/launcher.h"

namespace cellos::cells {

// The spawner's child for a prepare request: joins the leaf's v1 hierarchies, says it is ready
// and waits for its plan, then runs cell_setup_main with it. `prep.status_fd` is the socket.
[[noreturn]] void prepared_cell_main(const ChildPlan& prep);

// The leaf names of prepared cells start with this (never a spec id's first character).
inline constexpr const char* kPreparedLeafPrefix = ".pool-";

class PreparedCell {
 public:
  // Makes the leaf `name` under `tree` and asks the spawner for the process; returns at once
  // (ready() tells when it waits for a spec). Null spawner: an error.
  // `host_paths`: the policy's root view (root_view_paths), built into its root now.
  static base::Result<std::unique_ptr<PreparedCell>> start(const CgroupTree& tree,
                                                           const std::string& name,
                                                           bool want_pidfd,
                                                           const std::vector<std::string>& host_paths);
  // An unbound prepared cell is killed, reaped and its leaf removed (this blocks for the few
  // milliseconds its exit takes: the pool does it at shutdown, or for one that died).
  ~PreparedCell();
  PreparedCell(const PreparedCell&) = delete;
  PreparedCell& operator=(const PreparedCell&) = delete;

  enum class State { kStarting, kReady, kGone };
  // Reads what has arrived (the spawner's pid, the process's ready byte), never waiting.
  State poll();
  const std::string& name() const { return name_; }
  pid_t pid() const { return pid_; }

  // The leaf, to adopt with the spec's limits (CgroupTree::adopt_leaf).
  CgroupLeaf& leaf() { return *leaf_; }
  // Sends the spec's plan (`o`, as launch() takes it; its cgroup fd is ignored) and returns
  // what the cell's owner keeps, as launch() does. The prepared cell is spent either way.
  base::Result<Launched> bind(const LaunchOptions& o);

 private:
  PreparedCell() = default;
  void reap();

  std::string name_;
  base::Fd sock_;
  pid_t pid_ = 0;
  base::Fd pidfd_;
  bool ready_ = false, gone_ = false, bound_ = false;
  std::optional<CgroupLeaf> leaf_;
};

}  // namespace cellos::cells
