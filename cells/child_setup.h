// What runs inside a new cell between clone3 and the exec of its init.
//
// The spawner (spawner.h) clones the child fork-like from its own small memory and descriptor
// table; without a spawner the launcher clones with CLONE_VM|CLONE_VFORK, as posix_spawn does:
// the child runs on the reactor's memory (the reactor waits) instead of a copy of it, because
// copying the reactor's page tables cost about 2 ms per cell on our machines and grows with the
// reactor. Either way the child only makes syscalls on memory prepared before the clone. It is
// pid 1 of the new pid namespace. As root inside the new namespaces it joins the v1 cgroups,
// enters a cgroup namespace rooted at its leaves, builds the root view (root_view.h: a fresh
// tmpfs holding the allowed host paths read-only, a fresh workspace, /tmp, /dev, /proc, /sys and
// its own cgroup), names the host, brings up loopback, enters the workspace, and execs the
// cell's init (cell_init.h).
//
// Everything it needs is prepared by the parent in a ChildPlan. It only makes syscalls on stack
// memory: no allocation, no libc lock, nothing that writes the reactor's memory but errno.
#pragma once

#include <sys/types.h>

#include "cells/child_status.h"

namespace cellos::cells {

struct ChildPlan {
  const char* const* init_argv = nullptr;  // the init's command line (cell_init.h)
  const char* const* envp = nullptr;       // the command's environment, passed through init
  const char* workdir = nullptr;
  const char* hostname = nullptr;
  uid_t uid = 65534;  // owner of the workspace
  gid_t gid = 65534;

  // Descriptors in the parent's table; the child moves them to fixed numbers.
  int stdin_fd = -1;   // /dev/null
  int stdout_fd = -1;  // write ends of the cell's pipes
  int stderr_fd = -1;
  int status_fd = -1;
  int init_fd = -1;               // the init binary (the reactor's own, via /proc/self/exe)
  // Cgroup limits the setup writes itself, in order, then the v1 cgroup.procs files it joins
  // (by path, as root, before the mount view changes): the reactor makes no syscall for them.
  const char* const* knob_paths = nullptr;
  const char* const* knob_values = nullptr;
  int n_knobs = 0;
  const char* const* v1_procs_paths = nullptr;
  int n_v1_procs_paths = 0;
  int netns_fd = -1;              // a prepared network namespace to join, or -1 (CLONE_NEWNET)
  // The host paths of the root view, in mount order (root_view_paths).
  const char* const* host_paths = nullptr;
  int n_host_paths = 0;
  // The reactor's own files inside those paths, hidden in the view (masked_paths).
  const char* const* masked_paths = nullptr;
  int n_masked_paths = 0;
  // The host directory holding the cell's secret broker socket (secret_broker.h), bound
  // read-only at /run/cellos in the view; null: none.
  const char* broker_dir = nullptr;
  // spec.inputs (inputs.h): each host path, opened with RESOLVE_NO_SYMLINKS while the host's
  // root is still there, is bound read-only at the cell path of the same index.
  const char* const* input_host_paths = nullptr;
  const char* const* input_paths = nullptr;
  int n_inputs = 0;
  // A detached tmpfs (fsmount) the reactor keeps open past the cell's end, moved onto workdir
  // instead of a fresh mount, so the cell's artifacts can be exported (cell_export.h); or -1.
  int workspace_mount_fd = -1;
  int tmp_mount_fd = -1;  // likewise for /tmp; set exactly when workspace_mount_fd is
  // Rootless (cells/rootless.h): a user namespace's root may not mknod devices, so /dev's
  // nodes are the host's, bound before the host's root is detached; and it may mount proc and
  // sysfs only while a fully visible one is in its mount namespace, so they are mounted in the
  // new root before the host's root is detached.
  bool rootless = false;
  // A host file bound read-only over /etc/resolv.conf, or null.
  const char* resolv_conf = nullptr;
  // The spawner's sysfs template (sys_template.h), cloned onto /sys instead of a fresh sysfs
  // mount; -1: mount one. Only for a cell in a fresh network namespace of its own (netns_fd
  // -1), never rootless. At a number above the fixed ones (kSysTemplateFd), kept by place_fds.
  int sys_template_fd = -1;
  // A nested cell (cells/nested_backend.h): the child waits for one byte on nested_sync_fd (its
  // maps are written meanwhile), makes its cgroup writes while it is still the host's uid 0,
  // becomes root of its user namespace, writes max_user_namespaces there, and builds a view
  // with writable cgroup mounts, the reactor binary, its fleet.toml and its state dir
  // (kNested* paths). rootless is set too: /dev and proc/sysfs as a user namespace's root.
  bool nested = false;
  int nested_sync_fd = -1;
  uint32_t nested_max_user_namespaces = 0;
  const char* nested_exe = nullptr;
  const char* nested_config = nullptr;
  const char* nested_state_dir = nullptr;
  // A prepared cell (prepared_cell.h) joined its v1 leaves ahead of demand: not again here.
  bool v1_joined = false;
  // ... and built its view's root ahead of demand (prepare_cell_view): the setup starts from
  // that root, its cgroup namespace and the leaf clones parked at kPreparedViewFd.
  bool view_prepared = false;
  // Which of the kPreparedViewFd slots hold a leaf clone (bit i: slot i); the others hold
  // /dev/null, so that no descriptor received at the bind lands in the parked range.
  uint32_t view_parked = 0;
};
// Where the spawner keeps its sysfs template: above the cell's fixed descriptors (0-6).
inline constexpr int kSysTemplateFd = 7;
// Where a prepared cell keeps, from its preparation to its bind, the clones of its cgroup2 leaf
// (kPreparedViewFd) and of its v1 leaves (the next ones, in v1_procs_paths order); a slot with
// no clone holds /dev/null (ChildPlan::view_parked says which hold one).
inline constexpr int kPreparedViewFd = 8;
inline constexpr int kPreparedViewFds = 9;

// Where a nested cell finds its reactor, its generated fleet.toml and its state dir.
inline constexpr const char* kNestedExePath = "/cellos/bin/cellos-reactor";
inline constexpr const char* kNestedConfigPath = "/cellos/fleet.toml";
inline constexpr const char* kNestedStatePath = "/cellos/state";
inline constexpr int kMaxPlanInputs = 16;

// Runs in the clone3 child; never returns (it execs the init or exits 125 after reporting).
[[noreturn]] void cell_setup_main(const ChildPlan& plan);

// A prepared cell's setup made before any spec (prepared_cell.h), from its preparing plan
// `prep` (its v1 leaves and the policy's host paths, nothing of a spec): the mount namespace
// made private, the cgroup2 and v1 leaf clones taken and parked (kPreparedViewFd), a cgroup
// namespace rooted at its leaves, and the view's root built and switched to (the same
// make_root a cold cell runs). What depends on a spec (/tmp, the workspace, inputs, /dev,
// /sys, /proc, the masks, the hostname, the read-only flip of the root) waits for
// cell_setup_main with view_prepared. Exits 125 on a failure (the pool discards the cell).
// Returns which slots hold a clone (ChildPlan::view_parked).
uint32_t prepare_cell_view(const ChildPlan& prep);

}  // namespace cellos::cells
