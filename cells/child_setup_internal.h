// What the cell's setup (child_setup.cc) shares with its nested-cell part (child_nested.cc).
// Everything here runs in the clone child: no allocation.
#pragma once

#include <sys/mount.h>

#include <cstdint>

#include "cells/child_setup.h"

namespace cellos::cells::child {

// Host mounts in the view: read-only, no set-uid, no device nodes.
inline constexpr uint64_t kHostMountAttrs = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;

// A setup step failed: its stage, errno, and (where it is known) the call and its object, so the
// error reads "mount tmpfs on /work: Operation not permitted".
[[noreturn]] void fail(int32_t stage, const char* call = nullptr, const char* object = nullptr);
// Writes `value` to the file at `path`; false with errno set.
bool write_all(const char* path, const char* value);
// mkdir -p of the absolute, normalised `path` below the directory `root` (AT_FDCWD: below
// "/"); with `last` false, of its parent only. 0 or an errno.
int make_dirs_at(int root, const char* path, bool last);

// A nested cell (child_nested.cc): its reactor binary, fleet.toml and state dir cloned while the
// child is still the host's uid 0, attached once the view's root is in place; and becoming
// root of its user namespace.
void open_nested_trees(const ChildPlan& p);
void attach_nested_trees();
void become_nested_root(const ChildPlan& p);

}  // namespace cellos::cells::child
