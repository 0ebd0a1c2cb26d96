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

// The host mounts directly below "/" (the root's children in /proc/self/mountinfo), but "/"
// itself (a mount stacked on the root), the one at `keep` and escaped names (a space or newline
// in the path: left, covered like the root). Fills points[] with pointers into buf (NUL-cut);
// returns how many. One read: the first line whose mount point is "/" names the root's id (the
// first on every kernel we know), and its children are the lines with that parent id.
int top_level_mounts(char* buf, size_t size, const char* keep, const char** points, int max) {
  int fd = ::open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  ssize_t n = ::read(fd, buf, size - 1);
  ::close(fd);
  if (n <= 0) return 0;
  char* const end = buf + n;
  // Per complete line: its id, parent id and mount point (cut in place by field()).
  constexpr int kMaxLines = 512;
  long ids[kMaxLines], parents[kMaxLines];
  const char* at_point[kMaxLines];
  int lines = 0;
  long root_id = -1;
  for (char* line = buf; line < end && lines < kMaxLines;) {
    char* eol = static_cast<char*>(std::memchr(line, '\n', static_cast<size_t>(end - line)));
    if (!eol) break;  // a cut last line
    char* at = line;
    const char* id = field(at, eol);
    const char* parent = field(at, eol);
    (void)field(at, eol);  // major:minor
    (void)field(at, eol);  // root
    const char* point = field(at, eol);
    line = eol + 1;
    if (!id || !parent || !point) continue;
    ids[lines] = std::strtol(id, nullptr, 10);
    parents[lines] = std::strtol(parent, nullptr, 10);
    at_point[lines] = point;
    if (root_id < 0 && std::strcmp(point, "/") == 0) root_id = ids[lines];
    ++lines;
  }
  int k = 0;
  for (int i = 0; i < lines && k < max; ++i) {
    if (parents[i] != root_id || ids[i] == root_id) continue;
    const char* point = at_point[i];
    if (std::strcmp(point, "/") == 0 || std::strcmp(point, keep) == 0 || std::strchr(point, '\\')) continue;
    points[k++] = point;
  }
  return root_id < 0 ? 0 : k;
}

// Detaches every host mount directly below "/" but the one at `keep` (where the new root is
// stacked, a tmpfs), each with its subtree: the host's /proc, /sys, /dev, /run, /boot... leave
// the cell's namespace now, as pivot_root's detach of the old root took them, and what stays
// covered by the cell's root is the host's root file system alone (and its mount at `keep`).
//
// In one umount2: every umount2 that takes mounts away ends in an expedited RCU grace period
// (namespace_unlock -> synchronize_rcu_expedited), which a cell's setup waited for once per
// top-level host mount, 1 ms or more each on a busy host (perf sched, bench/README.md
// "daemon"). So the mounts are first moved (MS_MOVE, no grace period) below one holder, a bind
// of an empty directory of the new root's tmpfs onto itself (no new superblock), and the
// holder is detached with all of them at once. A mount that will not move (locked in a user
// namespace) or a holder that cannot be made falls back to a umount2 of its own. Best effort:
// a mount that will not go stays covered all the same, and a mount table past the buffer's
// 16 KiB is left as it is past there.
void detach_host_mounts(const char* keep) {
  char buf[16384];
  constexpr int kMaxTop = 64;
  const char* points[kMaxTop];
  const int k = top_level_mounts(buf, sizeof buf, keep, points, kMaxTop);
  if (k == 0) return;
  // "<keep>/.host" and "<keep>/.host/<i>": below the new root's own tmpfs, removed after.
  char holder[256], slot[272];
  const size_t keep_len = std::strlen(keep);
  bool held = keep_len + sizeof "/.host" <= sizeof holder;
  if (held) {
    std::memcpy(holder, keep, keep_len);
    std::memcpy(holder + keep_len, "/.host", sizeof "/.host");
    held = ::mkdir(holder, 0700) == 0;
    if (held && ::mount(holder, holder, nullptr, MS_BIND, nullptr) != 0) {
      ::rmdir(holder);
      held = false;
    }
  }
  auto slot_path = [&](int i) {
    // holder + "/" + i, without snprintf (which may allocate).
    char digits[12];
    int n = 0;
    do digits[n++] = static_cast<char>('0' + i % 10), i /= 10;
    while (i != 0);
    size_t len = std::strlen(holder);
    std::memcpy(slot, holder, len);
    slot[len++] = '/';
    while (n > 0) slot[len++] = digits[--n];
    slot[len] = '\0';
    return slot;
  };
  for (int i = 0; i < k; ++i) {
    if (held) {
      const char* to = slot_path(i);
      if (::mkdir(to, 0700) == 0 && ::mount(points[i], to, nullptr, MS_MOVE, nullptr) == 0) {
        continue;
      }
    }
    (void)::umount2(points[i], MNT_DETACH);
  }
  if (!held) return;
  // One grace period for all of them; then the holder's directories go from the tmpfs.
  (void)::umount2(holder, MNT_DETACH);
  for (int i = 0; i < k; ++i) (void)::rmdir(slot_path(i));
  (void)::rmdir(holder);
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
