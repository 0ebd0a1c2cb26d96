// What the cell's setup (child_setup.cc) shares with its nested-cell part (child_nested.cc).
// Everything here runs in the clone child: no allocation.
#pragma once

#include <sys/mount.h>

#include <cstdint>

#include "cells/child_setup.h"

namespace cellos::cells::child {

// Fixed descriptor numbers in the cell. 0-2 are the command's stdio, inherited as they are;
// 3 is the status pipe, kept across the exec into the init; the rest are close-on-exec.
constexpr int kStatusFd = 3;
constexpr int kInitFd = 4;
constexpr int kWorkspaceFd = 5;
constexpr int kTmpFd = 6;

// A path buffer: the child must not allocate (a raw clone3 runs no atfork handlers, so a
// malloc lock held by another thread of the reactor at clone time would never be released).
struct PathBuf {
  char s[4096];
};

// On a hybrid host, where the cell's /sys/fs/cgroup is built on the root tmpfs before it is
// bound into place (make_sys); /proc of the root tmpfs, covered by procfs right after.
inline constexpr const char* kCgroupStaging = "/proc/cgroup";

// Host mounts in the view: read-only, no set-uid, no device nodes.
inline constexpr uint64_t kHostMountAttrs = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;

// A setup step failed: its stage, errno, and (where it is known) the call and its object, so the
// error reads "mount tmpfs on /work: Operation not permitted".
[[noreturn]] void fail(int32_t stage, const char* call = nullptr, const char* object = nullptr);
// Writes `value` to the file at `path`; false with errno set.
bool write_all(const char* path, const char* value);
// The plan's cgroup knob writes (a stocked leaf's force_empty skipped when it has nothing to
// reclaim: leaf_reclaim.h), then the v1 leaves joined (child_knobs.cc); a failed write ends
// the setup, naming which.
void write_cgroup_limits(const ChildPlan& p);
// mkdir -p of the absolute, normalised `path` below the directory `root` (AT_FDCWD: below
// "/"); with `last` false, of its parent only. 0 or an errno.
int make_dirs_at(int root, const char* path, bool last);

// mount_setattr(2) of `path` (AT_FDCWD-relative) setting `set`: 0 or -1 with errno.
int set_mount_attr(const char* path, unsigned flags, uint64_t set);

// The cell's /sys and its cgroups there (child_sys.cc). Its v1 leaves are cloned while the
// host's root is still there (open_v1_trees; -1: mounted in the cell's cgroup namespace
// instead), and placed by make_sys once the view's root is in place, with the cgroup2 leaf
// (cgroup_view.h) or a cgroup2 mount.
inline constexpr int kMaxV1Trees = 8;
struct V1Trees {
  int fd[kMaxV1Trees];
};
void open_v1_trees(const ChildPlan& p, V1Trees& t);
void make_sys(const ChildPlan& p, const V1Trees& v1, int cgroup2_leaf);

// A nested cell (child_nested.cc): its reactor binary, fleet.toml and state dir cloned while the
// child is still the host's uid 0, attached once the view's root is in place; and becoming
// root of its user namespace.
void open_nested_trees(const ChildPlan& p);
void attach_nested_trees();
void become_nested_root(const ChildPlan& p);

}  // namespace cellos::cells::child
