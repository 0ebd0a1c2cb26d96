// The cell's cgroup knob writes, made by its setup as root before the cell joins the leaf.
// Runs in the clone child: no allocation.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "cells/child_setup_internal.h"
#include "cells/leaf_stock.h"

namespace cellos::cells::child {
namespace {

constexpr char kForceEmpty[] = "memory.force_empty";
constexpr char kUsage[] = "memory.usage_in_bytes";

// The knob's name is the last component of `path`.
bool is_knob(const char* path, const char* name) {
  const size_t len = std::strlen(path), n = std::strlen(name);
  return len > n && path[len - n - 1] == '/' && std::strcmp(path + len - n, name) == 0;
}

// The leaf's charge in bytes, read from memory.usage_in_bytes beside `knob_path`; -1 when it
// cannot be read.
long long leaf_usage(const char* knob_path) {
  PathBuf p;
  const char* slash = std::strrchr(knob_path, '/');
  const size_t dir = static_cast<size_t>(slash - knob_path) + 1;
  if (dir + sizeof kUsage > sizeof p.s) return -1;
  std::memcpy(p.s, knob_path, dir);
  std::memcpy(p.s + dir, kUsage, sizeof kUsage);
  const int fd = ::open(p.s, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  char buf[32];
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return -1;
  long long v = 0;
  for (ssize_t i = 0; i < n && buf[i] >= '0' && buf[i] <= '9'; ++i) v = v * 10 + (buf[i] - '0');
  return v;
}

}  // namespace

// memory.force_empty of a stocked leaf (cgroup.cc, make_leaf) is written only when the leaf
// holds more than kStockReclaimFloorBytes. Why: the write costs even on an empty leaf (it
// drains every CPU's page lists under one host-wide mutex and waits for that: 1.4 ms per cell
// with no other cells, 4.5 ms at 5,000 live), and a leaf left holding kernel objects of the
// cell before that are still being freed (after an RCU grace period, or with its network
// namespace: one page in most leaves, up to 57 pages measured) makes it retry reclaim 16 times,
// each pass through every shrinker of the host, none able to take them: 36 ms per such cell
// on average at 5,000 live, and the cells behind it wait for the mutex (bench/README.md,
// "daemon"). What stays is at most the floor, and those objects give their charge back when
// they are freed.
bool write_cgroup_knob(const char* path, const char* value) {
  if (is_knob(path, kForceEmpty)) {
    const long long usage = leaf_usage(path);
    if (usage >= 0 && static_cast<unsigned long long>(usage) <= kStockReclaimFloorBytes) return true;
  }
  return write_all(path, value);
}

}  // namespace cellos::cells::child
