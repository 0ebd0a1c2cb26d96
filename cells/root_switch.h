// How a cell's setup makes its freshly built root tmpfs the root of its mount namespace.
//
// pivot_root(2) would do, but it walks every task on the host (chroot_fs_refs, looking for
// processes whose root or cwd is the old root, to move them): with thousands of live cells that
// walk was about 29% of a cell's setup CPU, and it grows with every process on the host. The
// setup is the only process of its mount namespace, so nothing needs moving. Instead the new
// root is moved onto "/" and the setup chroots into it, the way switch_root(8) leaves an
// initramfs, after detaching the host's other mounts: the host's root file system stays in the
// namespace, covered by the cell's root and reachable by no path, descriptor or /proc link of
// the cell. docs/security.md ("The cell's root")
// gives the argument and isolation_test "a cell cannot reach the host's root ..." tries it.
#pragma once

namespace cellos::cells {

// Makes the mount whose root is the directory `dir` (absolute, a mount's root, in a private
// mount namespace whose only process is the caller) the caller's root and working directory.
// Runs in the clone child: no allocation. 0 or an errno.
int switch_root_to(const char* dir);

// pivot_root(2) to `dir`, the old root then detached: nothing of the host's root file system
// is left in the namespace at all. For a cell whose command may chroot (a nested cell is root
// of its user namespace, with CAP_SYS_CHROOT there and a seccomp filter that allows chroot):
// after switch_root_to, a chroot into a subdirectory and ".." past it would reach the covered
// host root file system, which pivot_root leaves no trace of. It pays the walk over every
// task; nested cells are few. 0 or an errno.
int pivot_root_to(const char* dir);

}  // namespace cellos::cells
