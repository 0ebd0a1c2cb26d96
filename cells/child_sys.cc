// The cell's /sys: sysfs of its network namespace (or the spawner's template), and the cgroups
// the cell joined, bound from the host. Runs in the clone child: no allocation.
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "cells/child_setup_internal.h"
#include "cells/sys_template.h"

namespace cellos::cells::child {
namespace {

// The v1 hierarchy a cgroup.procs path of the plan lies in: "memory" of
// "/sys/fs/cgroup/memory/cellos/h/c/cgroup.procs", copied into `out`; false when the path is
// not under /sys/fs/cgroup.
bool v1_hierarchy(const char* procs_path, PathBuf& out) {
  static constexpr char kRoot[] = "/sys/fs/cgroup/";
  if (std::strncmp(procs_path, kRoot, sizeof kRoot - 1) != 0) return false;
  const char* name = procs_path + sizeof kRoot - 1;
  const char* end = std::strchr(name, '/');
  size_t len = end ? static_cast<size_t>(end - name) : std::strlen(name);
  if (len == 0 || len + 1 > sizeof out.s) return false;
  std::memcpy(out.s, name, len);
  out.s[len] = '\0';
  return true;
}

// sysfs mounted here belongs to the cell's network namespace: /sys/class/net lists its own
// interfaces only. The cgroup namespace (entered after joining the cell's cgroups) is rooted
// at the cell's leaves, so each cgroup mount below shows the cell's own cgroup and nothing of
// other cells. The layout follows the host's: cgroup2 at /sys/fs/cgroup on a pure-v2 host; on
// a hybrid one a tmpfs there, holding the v1 hierarchies the cell joined (memory, pids, cpu:
// where its limits are, which runtimes read to size themselves) and cgroup2 at unified/.
// The cell's v1 leaves, cloned while the host's root is still there: each bound read-only at
// /sys/fs/cgroup/<hierarchy> instead of a cgroup mount in the cell's cgroup namespace, whose
// cgroup1_get_tree drains and walks every cgroup of the host (O(live cells), and it waits for
// other cells' dying cgroups). The same directory, the same files; -1: mount as before.

}  // namespace

void open_v1_trees(const ChildPlan& p, V1Trees& t) {
  for (int i = 0; i < kMaxV1Trees; ++i) t.fd[i] = -1;
  if (p.nested) return;  // fresh, writable mounts in its cgroup namespace instead (make_sys)
  for (int i = 0; i < p.n_v1_procs_paths && i < kMaxV1Trees; ++i) {
    PathBuf dir;
    size_t len = std::strlen(p.v1_procs_paths[i]);
    if (len >= sizeof dir.s) continue;
    std::memcpy(dir.s, p.v1_procs_paths[i], len + 1);
    char* slash = std::strrchr(dir.s, '/');
    if (!slash || slash == dir.s) continue;
    *slash = '\0';  // the leaf: its cgroup.procs's directory
    int tree = static_cast<int>(::syscall(SYS_open_tree, AT_FDCWD, dir.s, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC));
    if (tree < 0) continue;
    mount_attr attr{};
    attr.attr_set = kHostMountAttrs | MOUNT_ATTR_NOEXEC;
    if (::syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof attr) != 0) {
      ::close(tree);
      continue;
    }
    t.fd[i] = tree;
  }
}

namespace {

// The cell's cgroup2 at `at`: its leaf bound from the host (cgroup_view.h) when `leaf` holds
// one, else a cgroup2 mount in its cgroup namespace.
bool attach_cgroup2(int leaf, const char* at, unsigned long flags) {
  if (leaf < 0) return ::mount("cgroup2", at, "cgroup2", flags, nullptr) == 0;
  const bool ok = ::syscall(SYS_move_mount, leaf, "", AT_FDCWD, at, MOVE_MOUNT_F_EMPTY_PATH) == 0;
  ::close(leaf);
  return ok;
}

}  // namespace

void make_sys(const ChildPlan& p, const V1Trees& v1, int cgroup2_leaf) {
  // A nested cell's reactor makes its cells' cgroups below its own: its hierarchies are
  // writable (the files it may write are the ones the host chowned to it: nested_backend.h).
  // A nested cell is rootless too, so it never gets the template nor the bound leaf.
  const unsigned long kFlags = (p.nested ? 0 : MS_RDONLY) | MS_NOSUID | MS_NODEV | MS_NOEXEC;
  if (p.sys_template_fd >= 0 && !p.rootless) {
    if (int err = attach_sys_template(p.sys_template_fd, "/sys"); err != 0) {
      errno = err;
      fail(kStageSys, "clone the sysfs template onto", "/sys");
    }
    ::close(p.sys_template_fd);
  } else if (!p.rootless && ::mount("sysfs", "/sys", "sysfs", kFlags, nullptr) != 0) {
    fail(kStageSys, "mount sysfs on", "/sys");
  }
  if (p.n_v1_procs_paths == 0) {
    if (!attach_cgroup2(cgroup2_leaf, "/sys/fs/cgroup", kFlags)) fail(kStageSys, "mount cgroup2 on", "/sys/fs/cgroup");
    return;
  }
  // The directory holding the hierarchies is the root tmpfs's kCgroupStaging (made by
  // make_mounts under /proc, which procfs covers once mounted), bound here: no tmpfs of its own.
  const bool staged =
      p.rootless ? ::mount("tmpfs", "/sys/fs/cgroup", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                           "mode=0755,size=4k") == 0
                 : ::mount(kCgroupStaging, "/sys/fs/cgroup", nullptr, MS_BIND, nullptr) == 0 &&
                       set_mount_attr("/sys/fs/cgroup", 0,
                                      MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC) == 0;
  if (!staged ||
      ::mkdir("/sys/fs/cgroup/unified", 0555) != 0 ||
      !attach_cgroup2(cgroup2_leaf, "/sys/fs/cgroup/unified", kFlags))
    fail(kStageSys, "mount cgroup2 on", "/sys/fs/cgroup/unified");
  for (int i = 0; i < p.n_v1_procs_paths; ++i) {
    PathBuf name, at;
    if (!v1_hierarchy(p.v1_procs_paths[i], name)) continue;
    char* o = at.s;
    for (const char* c = "/sys/fs/cgroup/"; *c;) *o++ = *c++;
    for (const char* c = name.s; *c && o < at.s + sizeof at.s - 1;) *o++ = *c++;
    *o = '\0';
    if (::mkdir(at.s, 0555) != 0 && errno != EEXIST) fail(kStageSys, "mkdir", at.s);
    if (i < kMaxV1Trees && v1.fd[i] >= 0) {
      if (::syscall(SYS_move_mount, v1.fd[i], "", AT_FDCWD, at.s, MOVE_MOUNT_F_EMPTY_PATH) != 0)
        fail(kStageSys, "bind the cell's v1 cgroup at", at.s);
      ::close(v1.fd[i]);
      continue;
    }
    // The directory's name is the hierarchy's controller list by convention ("memory",
    // "cpu,cpuacct"); where it is not, the cell just does not get that hierarchy's files.
    (void)::mount("cgroup", at.s, "cgroup", kFlags, name.s);
  }
  if (set_mount_attr("/sys/fs/cgroup", 0, MOUNT_ATTR_RDONLY) != 0) fail(kStageSys, "mount_setattr read-only", "/sys/fs/cgroup");
}

}  // namespace cellos::cells::child
