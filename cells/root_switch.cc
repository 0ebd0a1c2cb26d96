#include "cells/root_switch.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
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

// Where detach_all gathers the host's mounts, on the new root's tmpfs (below `keep`).
constexpr const char kHolder[] = "/.cellos-detach";
constexpr int kMaxDetached = 64;

// umount2(MNT_DETACH) of each of `points`, in one umount where it can. Every umount that takes
// mounts out waits for an expedited RCU grace period (namespace_unlock) before it returns:
// one umount per top-level host mount made a cell's setup wait for several, one after another,
// which at 5,000 live cells was the largest wait of a cell's start (bench/README.md,
// "daemon"). So the mounts are first moved (MS_MOVE, no grace period) below one bind mount of
// a directory of the new root's tmpfs (no new superblock), which is then detached with
// everything below it, and the directories are removed again: the cell's root is left as it
// was. A step that fails falls back to a umount of its own for what is left.
void detach_all(const char* keep, const char* const* points, int n) {
  char holder[256], sub[256 + 4];
  const size_t klen = std::strlen(keep), hlen = klen + sizeof kHolder - 1;
  // The i-th mount's place below the holder: "<holder>/aa", "<holder>/ab", ...
  auto place = [&](int i) {
    sub[hlen] = '/';
    sub[hlen + 1] = static_cast<char>('a' + i / 26);
    sub[hlen + 2] = static_cast<char>('a' + i % 26);
    sub[hlen + 3] = '\0';
    return sub;
  };
  int moved = 0;
  if (n > 1 && hlen < sizeof holder) {
    std::memcpy(holder, keep, klen);
    std::memcpy(holder + klen, kHolder, sizeof kHolder);
    std::memcpy(sub, holder, hlen);
    // Below "/", which make_mounts made private: the bind is private too, so nothing moved
    // below it propagates anywhere.
    if (::mkdir(holder, 0700) == 0 && ::mount(holder, holder, nullptr, MS_BIND, nullptr) == 0) {
      while (moved < n && ::mkdir(place(moved), 0700) == 0 &&
             ::mount(points[moved], sub, nullptr, MS_MOVE, nullptr) == 0)
        ++moved;
      (void)::umount2(holder, MNT_DETACH);
    }
    // A plain directory of the new root again, holding the emptied mount points.
    for (int i = 0; i <= moved && i < n; ++i) (void)::rmdir(place(i));
    (void)::rmdir(holder);
  }
  for (int i = moved; i < n; ++i) (void)::umount2(points[i], MNT_DETACH);
}

// Detaches every host mount directly below "/" but the one at `keep` (where the new root is
// stacked), each with its subtree: the host's /proc, /sys, /dev, /run, /boot... leave the
// cell's namespace now, as pivot_root's detach of the old root took them, and what stays
// covered by the cell's root is the host's root file system alone (and its mount at `keep`,
// if it has one). None of the umounts walks the host's tasks, and there is one for all of
// them (detach_all). Best effort: a mount that will not go (locked in a user namespace) stays
// covered all the same, and a mount table past the buffer's 16 KiB is left as it is past there.
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
  const char* points[kMaxDetached];
  int count = 0;
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
    if (count == kMaxDetached) {
      (void)::umount2(point, MNT_DETACH);
      continue;
    }
    points[count++] = point;  // NUL-terminated in buf by field(), which lives until the end
  }
  detach_all(keep, points, count);
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
