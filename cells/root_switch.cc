#include "cells/root_switch.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace cellos::cells {
namespace {

// The next space-separated field of a mountinfo line at *at (advanced past it), or null.
const char* field(char*& at, char* end) {
  while (at < end && *at == ' ') ++at;
  if (at >= end) return nullptr;
  const char* start = at;
  while (at < end && *at != ' ') ++at;
  if (at < end) *at++ = '\0';
  return start;
}

// Detaches every host mount directly below "/" but the one at `keep` (where the new root is
// stacked), each with its subtree: the host's /proc, /sys, /dev, /run, /boot... leave the
// cell's namespace now, as pivot_root's detach of the old root took them, and what stays
// covered by the cell's root is the host's root file system alone (and its mount at `keep`,
// if it has one). One umount2 per top-level host mount, none of which walks the host's tasks.
// Best effort: a mount that will not go (locked in a user namespace) stays covered all the
// same, and a mount table past the buffer's 16 KiB is left as it is past there.
void detach_host_mounts(const char* keep) {
  char buf[16384];
  int fd = ::open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return;
  char* const end = buf + n;
  // The root's id: the line whose mount point is "/" (the first on every kernel we know).
  long root_id = -1;
  for (char* line = buf; line < end && root_id < 0;) {
    char* eol = static_cast<char*>(std::memchr(line, '\n', static_cast<size_t>(end - line)));
    if (!eol) break;
    // Only the first five fields are needed; parse a copy-free view of them.
    char* at = line;
    const char* id = field(at, eol);
    (void)field(at, eol);  // parent id
    (void)field(at, eol);  // major:minor
    (void)field(at, eol);  // root
    const char* point = field(at, eol);
    if (id && point && std::strcmp(point, "/") == 0) root_id = std::strtol(id, nullptr, 10);
    // field() wrote NULs into this line; nothing reads it again.
    line = eol + 1;
  }
  if (root_id < 0) return;
  // The fields of the first pass are cut; read again for the children.
  fd = ::open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return;
  char* const end2 = buf + n;
  for (char* line = buf; line < end2;) {
    char* eol = static_cast<char*>(std::memchr(line, '\n', static_cast<size_t>(end2 - line)));
    if (!eol) break;  // a cut last line
    char* at = line;
    (void)field(at, eol);
    const char* parent = field(at, eol);
    (void)field(at, eol);
    (void)field(at, eol);
    const char* point = field(at, eol);
    line = eol + 1;
    if (!parent || !point || std::strtol(parent, nullptr, 10) != root_id) continue;
    // "/" itself (a mount stacked on the root), the new root's place, and escaped names
    // (a space or newline in the path: left, covered like the root) are not detached.
    if (std::strcmp(point, "/") == 0 || std::strcmp(point, keep) == 0 || std::strchr(point, '\\')) continue;
    (void)::umount2(point, MNT_DETACH);
  }
}

}  // namespace

int switch_root_to(const char* dir) {
  detach_host_mounts(dir);
  // The working directory names the new root's mount, not a path: it follows the mount when
  // MS_MOVE puts it on "/", so chroot(".") then makes that mount the root. A ".." from there
  // stays there (the old root is the namespace's top, and what covers it is this mount).
  if (::chdir(dir) != 0) return errno;
  if (::mount(".", "/", nullptr, MS_MOVE, nullptr) != 0) return errno;
  if (::chroot(".") != 0) return errno;
  if (::chdir("/") != 0) return errno;
  return 0;
}

int pivot_root_to(const char* dir) {
  // pivot_root(".", "."): the old root ends up stacked on the new one, and detaching "." then
  // takes it (and every host mount below it) out of the namespace.
  if (::chdir(dir) != 0 || ::syscall(SYS_pivot_root, ".", ".") != 0 ||
      ::umount2(".", MNT_DETACH) != 0 || ::chdir("/") != 0)
    return errno;
  return 0;
}

}  // namespace cellos::cells
