// The nested backend (spec.run.backend "nested", docs/nested.md): a cell that runs a
// cellos-reactor of its own, with no more authority than the cell was given.
//
// Per cell, on the host side:
//   - a block of uids (policy.nested: uid_block_size uids from uid_range, leased like
//     uid_pool.h leases a uid, released when the cell is gone) that the cell's user namespace
//     maps, uid 0 in it being the block's first;
//   - the cell cloned with CLONE_NEWUSER (launcher.h LaunchOptions::nested): its mount, pid, uts,
//     ipc, cgroup and network namespaces are owned by that user namespace; the child waits on a
//     pipe while this side writes its uid_map and gid_map (and, once netns/nested_link lands,
//     makes its network link: the NESTED-LINK call site in nested_backend.cc);
//   - its cgroup leaf, in every hierarchy, delegated: the directory and its cgroup.procs,
//     cgroup.subtree_control, cgroup.threads and tasks chowned to the block's root, the limit
//     files not (the nested reactor cannot raise its own limits); the child writes those limits
//     while it is still the host's uid 0, then becomes root of its user namespace;
//   - <state_dir>/nested/<cell id>/ (the block root's, 0700): the nested reactor's state dir,
//     bound writable at /cellos/state, holding its signing key (nested.key, fresh per cell) and
//     its event log (events.jsonl, KEPT after the cell ends, for the parent's evidence trail);
//     <state_dir>/nested/<cell id>.pub: the public half, outside what the cell can write (kept
//     too: it verifies the kept log); <state_dir>/nested/<cell id>.toml: the generated
//     fleet.toml (nested_config.h), bound read-only at /cellos/fleet.toml (removed at the end);
//   - the running cellos-reactor binary bound read-only at /cellos/bin/cellos-reactor.
// In the cell: a fully visible /proc and a fresh /sys (so its reactor may mount them for its own
// cells), writable cgroup mounts rooted at the leaf under /sys/fs/cgroup, the command as root
// of the user namespace with its capabilities there, no_new_privs and the nested seccomp filter
// (seccomp.h), and no CAP_SYS_RESOURCE (so it cannot lift the kernel's bound on user
// namespaces below it: 0 when it has no depth left).
//
// At the end: the Cell's cgroup.kill of the leaf reaches every process at every depth;
// before_leaf_removal() removes the cgroups the nested reactors made below the leaf; the
// destructor removes the state dir but its event log, and releases the uid block.
#pragma once

#include <memory>

#include "cells/backend.h"

namespace cellos::cells {

base::Result<std::unique_ptr<Backend>> make_nested_backend(const Config& config);

// Where a reactor keeps its nested cells' host-side files: <state_dir>/nested.
std::string nested_host_dir(const Config& config);

}  // namespace cellos::cells
