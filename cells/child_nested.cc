// The nested-cell part of a cell's setup (nested_backend.h): the reactor binary, fleet.toml and
// state dir of the nested reactor in the view, and root of the cell's own user namespace.
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include "cells/child_setup_internal.h"
#include "cells/child_status.h"

namespace cellos::cells::child {

// A nested cell's reactor binary, fleet.toml (both read-only) and state dir (writable),
// cloned while the child is still the host's uid 0 (the paths may lie below directories only
// root may enter) and moved to their kNested* paths once the view's root is in place.
namespace {

struct NestedTrees {
  int exe = -1, config = -1, state = -1;
};

int clone_for_nested(const char* path, uint64_t attrs) {
  int tree = static_cast<int>(::syscall(SYS_open_tree, AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC));
  if (tree < 0) fail(kStageRootView, "open_tree", path);
  mount_attr attr{};
  attr.attr_set = attrs;
  if (::syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof attr) != 0)
    fail(kStageRootView, "mount_setattr", path);
  return tree;
}

NestedTrees g_nested;  // the child's own copy (fork-like clone): no allocation

}  // namespace

void open_nested_trees(const ChildPlan& p) {
  g_nested.exe = clone_for_nested(p.nested_exe, kHostMountAttrs);
  g_nested.config = clone_for_nested(p.nested_config, kHostMountAttrs | MOUNT_ATTR_NOEXEC);
  g_nested.state = clone_for_nested(p.nested_state_dir, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
}

void attach_nested_trees() {
  struct {
    int fd;
    const char* path;
    bool dir;
  } const at[] = {{g_nested.exe, kNestedExePath, false},
                  {g_nested.config, kNestedConfigPath, false},
                  {g_nested.state, kNestedStatePath, true}};
  for (const auto& a : at) {
    if (int err = make_dirs_at(AT_FDCWD, a.path, a.dir); err != 0) {
      errno = err;
      fail(kStageRootView, "mkdir -p", a.path);
    }
    if (!a.dir) {
      int fd = ::open(a.path, O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
      if (fd < 0) fail(kStageRootView, "create", a.path);
      ::close(fd);
    }
    if (::syscall(SYS_move_mount, a.fd, "", AT_FDCWD, a.path, MOVE_MOUNT_F_EMPTY_PATH) != 0)
      fail(kStageRootView, "bind the nested reactor's file at", a.path);
    ::close(a.fd);
  }
}

// Root of the cell's user namespace (its uid and gid 0 are the block's first, mapped by the
// parent while the child waited), with the kernel's bound on user namespaces below it written
// in its own namespace, and CAP_SYS_RESOURCE out of its bounding set so nothing it execs can
// raise that bound again (the sysctl is writable only with that capability in the namespace).
void become_nested_root(const ChildPlan& p) {
  if (::setgroups(0, nullptr) != 0 || ::setresgid(0, 0, 0) != 0 || ::setresuid(0, 0, 0) != 0)
    fail(kStageCredentials, "become root of", "the cell's user namespace");
  char digits[12];
  int n = 0;
  uint32_t v = p.nested_max_user_namespaces;
  do digits[n++] = static_cast<char>('0' + v % 10), v /= 10;
  while (v != 0);
  char text[12];
  for (int i = 0; i < n; ++i) text[i] = digits[n - 1 - i];
  text[n] = '\0';
  if (!write_all("/proc/sys/user/max_user_namespaces", text))
    fail(kStageCredentials, "write", "/proc/sys/user/max_user_namespaces");
  if (::prctl(PR_CAPBSET_DROP, CAP_SYS_RESOURCE) != 0) fail(kStageCapabilities, "drop", "CAP_SYS_RESOURCE");
}

}  // namespace cellos::cells::child
