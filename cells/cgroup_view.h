// The cell's cgroup2 directory at /sys/fs/cgroup (or /sys/fs/cgroup/unified on a hybrid host):
// its own leaf, bound read-only from the host's cgroup2 mount, rather than a cgroup2 mount made
// in the cell's cgroup namespace.
//
// Why: a cgroup2 mount in a new cgroup namespace is a superblock of its own, one per live cell,
// and every memory cgroup the host removes walks every superblock's list_lrus
// (memcg_reparent_list_lrus, from css_killed_work_fn) and every one it creates sizes shrinker
// info by them: at 5,000 live cells that walk was the largest thing left that grows with them.
// The bind shows the same directory and files; /proc/self/mountinfo shows its root as "/"
// through the cell's cgroup namespace, as the v1 leaves bound the same way do.
#pragma once

namespace cellos::cells {

// In the cell's setup, after it is in its cgroups and before it enters its cgroup namespace
// (its /proc/self/cgroup still names the host's path), while the host's mounts are still in
// its mount namespace: a detached, read-only, nosuid, nodev, noexec clone of the host's
// cgroup2 mount at the cell's leaf (close-on-exec), or -1 when there is none to clone (no
// cgroup2 mount at /sys/fs/cgroup/unified or /sys/fs/cgroup: the cell then mounts cgroup2 as
// before). Allocation-free.
int open_cgroup2_leaf();

}  // namespace cellos::cells
