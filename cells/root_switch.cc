#include "cells/root_switch.h"

#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>

namespace cellos::cells {

int switch_root_to(const char* dir) {
  // The working directory names the new root's mount, not a path: it follows the mount when
  // MS_MOVE puts it on "/", so chroot(".") then makes that mount the root. A ".." from there
  // stays there (the old root is the namespace's top, and what covers it is this mount).
  if (::chdir(dir) != 0) return errno;
  if (::mount(".", "/", nullptr, MS_MOVE, nullptr) != 0) return errno;
  if (::chroot(".") != 0) return errno;
  if (::chdir("/") != 0) return errno;
  return 0;
}

}  // namespace cellos::cells
