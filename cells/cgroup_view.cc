#include "cells/cgroup_view.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <initializer_list>

namespace cellos::cells {

int open_cgroup2_leaf() {
  // "0::/cellos/host/cell\n" is the cgroup2 line of /proc/self/cgroup.
  char buf[4096];
  int fd = ::open("/proc/self/cgroup", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return -1;
  buf[n] = '\0';
  const char* line = std::strncmp(buf, "0::", 3) == 0 ? buf : std::strstr(buf, "\n0::");
  if (!line) return -1;
  const char* rel = line + (line == buf ? 3 : 4);
  const char* end = std::strchr(rel, '\n');
  const size_t rel_len = end ? static_cast<size_t>(end - rel) : std::strlen(rel);
  if (rel_len == 0 || rel[0] != '/') return -1;
  for (const char* root : {"/sys/fs/cgroup/unified", "/sys/fs/cgroup"}) {
    struct statfs sf{};
    if (::statfs(root, &sf) != 0 || sf.f_type != CGROUP2_SUPER_MAGIC) continue;
    char path[4096 + 64];
    const size_t root_len = std::strlen(root);
    if (root_len + rel_len + 1 > sizeof path) return -1;
    std::memcpy(path, root, root_len);
    std::memcpy(path + root_len, rel, rel_len);
    path[root_len + rel_len] = '\0';
    int tree = static_cast<int>(::syscall(SYS_open_tree, AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC));
    if (tree < 0) return -1;
    mount_attr attr{};
    attr.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
    if (::syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof attr) != 0) {
      ::close(tree);
      return -1;
    }
    return tree;
  }
  return -1;
}

}  // namespace cellos::cells
