// The cell's cgroup knob writes and its joins of the v1 leaves, made by its setup as root
// before the cell's command can run. Runs in the clone child: no allocation.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "cells/child_setup_internal.h"
#include "cells/child_status.h"
#include "cells/leaf_reclaim.h"

namespace cellos::cells::child {
namespace {

// The number in the file `dir`/`name` (a cgroup counter), or -1.
long long read_counter(const char* dir, size_t dir_len, const char* name) {
  PathBuf b;
  const size_t name_len = std::strlen(name);
  if (dir_len + name_len + 1 > sizeof b.s) return -1;
  std::memcpy(b.s, dir, dir_len);
  std::memcpy(b.s + dir_len, name, name_len + 1);
  int fd = ::open(b.s, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  char text[32];
  ssize_t n = ::read(fd, text, sizeof text - 1);
  ::close(fd);
  if (n <= 0 || text[0] < '0' || text[0] > '9') return -1;
  long long v = 0;
  for (ssize_t i = 0; i < n && text[i] >= '0' && text[i] <= '9'; ++i) v = v * 10 + (text[i] - '0');
  return v;
}

// Whether the knob write to `path` is a stocked leaf's memory.force_empty with nothing to
// reclaim (leaf_reclaim.h): then it is skipped.
bool idle_reclaim(const char* path) {
  static constexpr char kSuffix[] = "/memory.force_empty";
  const size_t len = std::strlen(path);
  if (len < sizeof kSuffix - 1 || std::strcmp(path + len - (sizeof kSuffix - 1), kSuffix) != 0)
    return false;
  const size_t dir_len = len - (sizeof kSuffix - 2);  // keeps the '/'
  // Kernel memory read on both sides of the usage: with no process in the leaf its charges only
  // fall (objects freed meanwhile), so equal reads mean the usage was read against the same
  // kernel memory, and no freeing between the reads can pass for pages.
  const long long kmem = read_counter(path, dir_len, "memory.kmem.usage_in_bytes");
  const long long usage = read_counter(path, dir_len, "memory.usage_in_bytes");
  const long long kmem_after = read_counter(path, dir_len, "memory.kmem.usage_in_bytes");
  return kmem == kmem_after && !stocked_leaf_needs_reclaim(usage, kmem);
}

}  // namespace

void write_cgroup_limits(const ChildPlan& p) {
  for (int i = 0; i < p.n_knobs; ++i) {
    if (idle_reclaim(p.knob_paths[i])) continue;
    if (write_all(p.knob_paths[i], p.knob_values[i])) continue;
    ChildStatus s;
    s.kind = ChildStatus::kSetupFailed;
    s.stage = kStageCgroupLimits;
    s.err = errno;
    s.wait_status = i;  // which write: the reactor names the file and value
    ssize_t n = ::write(kStatusFd, &s, sizeof s);
    (void)n;
    _exit(125);
  }
  // "0" means the writer itself; the command inherits the membership.
  for (int i = 0; i < p.n_v1_procs_paths && !p.v1_joined; ++i)
    if (!write_all(p.v1_procs_paths[i], "0")) fail(kStageCgroupV1, "write", p.v1_procs_paths[i]);
}

}  // namespace cellos::cells::child
