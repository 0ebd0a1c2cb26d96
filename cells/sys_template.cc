#include "cells/sys_template.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include "netns/loopback.h"

namespace cellos::cells {
namespace {

int fail_with(int err, int a = -1, int b = -1) {
  if (a >= 0) ::close(a);
  if (b >= 0) ::close(b);
  errno = err;
  return -1;
}

}  // namespace

int make_sys_template(int* netns_fd) {
  int home = ::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  if (home < 0) return -1;
  if (::unshare(CLONE_NEWNET) != 0) return fail_with(errno, home);
  int mnt = -1;
  // sysfs holds only a passive reference to its namespace: without a live one the namespace
  // is dismantled and its lo leaves the template's /sys/class/net.
  *netns_fd = ::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  int err = *netns_fd < 0 ? errno : netns::bring_up_loopback();
  // sysfs takes its network namespace from the caller at fsopen.
  int fs = err == 0 ? static_cast<int>(::syscall(SYS_fsopen, "sysfs", FSOPEN_CLOEXEC)) : -1;
  if (err == 0 && fs < 0) err = errno;
  if (err == 0 && ::syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0) err = errno;
  if (err == 0) {
    mnt = static_cast<int>(::syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC,
                                     MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
                                         MOUNT_ATTR_NOEXEC));
    if (mnt < 0) err = errno;
  }
  if (fs >= 0) ::close(fs);
  // Back home whatever happened: the template namespace lives on through *netns_fd.
  if (::setns(home, CLONE_NEWNET) != 0) {
    // A spawner stuck in the wrong namespace would be harmless to cells (each gets its own or
    // joins a prepared one), but say so rather than go on half-done.
    err = errno;
    mnt = fail_with(err, home, mnt);
  } else {
    ::close(home);
  }
  if (err == 0) return mnt;
  if (*netns_fd >= 0) ::close(*netns_fd);
  *netns_fd = -1;
  return fail_with(err, mnt);
}

int attach_sys_template(int fd, const char* path) {
  int tree = static_cast<int>(::syscall(SYS_open_tree, fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH));
  if (tree < 0) return errno;
  int rc = static_cast<int>(::syscall(SYS_move_mount, tree, "", AT_FDCWD, path, MOVE_MOUNT_F_EMPTY_PATH));
  int err = rc == 0 ? 0 : errno;
  ::close(tree);
  return err;
}

}  // namespace cellos::cells
