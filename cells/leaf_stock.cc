#include "cells/leaf_stock.h"

#include <stdio.h>
#include <unistd.h>

#include "cells/cgroup.h"

namespace cellos::cells {

LeafStock::LeafStock(const CgroupTree& tree, uint64_t max)
    : prefix_(std::string(kStockLeafPrefix) + std::to_string(::getpid()) + "-"), max_(max) {
  const CgroupRoots& r = tree.roots();
  if (!r.memory.empty() && !r.memory_v2) memory_parent_ = r.memory + "/" + tree.parent();
}

LeafStock::~LeafStock() { clear(); }

bool LeafStock::usable() const { return max_ > 0 && !memory_parent_.empty(); }

std::optional<LeafStock::Taken> LeafStock::take(const std::string& name) {
  if (leaves_.empty()) return std::nullopt;
  const std::string to = memory_parent_ + "/" + name;
  // Last in, first out: the leaf most recently used is the likeliest to be warm in the caches.
  Entry e = std::move(leaves_.back());
  leaves_.pop_back();
  if (::rename(e.dir.c_str(), to.c_str()) != 0) {
    leaves_.push_back(std::move(e));  // EEXIST: a leftover leaf of that name; keep ours
    return std::nullopt;
  }
  return Taken{to, e.oom_kills_raw};
}

bool LeafStock::give(const std::string& dir, uint64_t oom_kills_raw) {
  if (!usable() || leaves_.size() >= max_) return false;
  std::string to = memory_parent_ + "/" + prefix_ + std::to_string(next_++);
  if (::rename(dir.c_str(), to.c_str()) != 0) return false;
  leaves_.push_back({std::move(to), oom_kills_raw});
  return true;
}

void LeafStock::clear() {
  // Empty leaves: rmdir succeeds at once (no process can be in one).
  for (const Entry& e : leaves_) (void)::rmdir(e.dir.c_str());
  leaves_.clear();
}

}  // namespace cellos::cells
