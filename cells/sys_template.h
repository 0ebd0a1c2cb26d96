// The /sys a cell without network devices of its own gets: a clone of one sysfs mount made once
// per spawner in an empty network namespace, instead of a fresh sysfs per cell.
//
// Why: sysfs is one superblock per network namespace, and each mount looks for its
// namespace's superblock by comparing against every live sysfs superblock of the host
// (sget_fc -> kernfs_test_super): with a sysfs per cell that search was about 20% of a cell's
// setup CPU at 5,000 live cells, and it grows with them. With the template only cells that
// carry a veth (whose /sys must list it) mount their own; the others clone this mount, whose
// superblock already exists.
//
// What such a cell sees: the same /sys as before (sysfs is host-wide but for the network
// devices), except that /sys/class/net lists the template namespace's `lo` (up, like the
// cell's own) rather than the cell's own `lo`: its counters there are the template's (zero),
// while /proc/net/dev and netlink show the cell's own. No host device is in it, nothing of
// any cell is, and the mount is read-only, nosuid, nodev and noexec.
#pragma once

namespace cellos::cells {

// The template: a detached sysfs mount (fsmount, close-on-exec) made in a fresh network
// namespace whose `lo` is brought up; the caller's network namespace is the same on return.
// *netns_fd is that namespace, which the caller keeps open as long as the template (sysfs
// alone does not keep it alive). -1 with errno set when it cannot be made (the cells then
// mount sysfs each, as before). Allocation-free (the spawner calls it).
int make_sys_template(int* netns_fd);

// In the cell's setup: a clone of the template `fd` attached at `path` (its attributes are
// the template's). 0 or an errno.
int attach_sys_template(int fd, const char* path);

}  // namespace cellos::cells
