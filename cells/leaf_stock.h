// A bounded stock of empty v1 memory cgroups left by cells that ended, each given to a later
// cell renamed to that cell's id, instead of a memory cgroup made and removed per cell.
//
// Why: creating a memory cgroup allocates shrinker info sized by every live shrinker
// (alloc_shrinker_info), and removing one walks every memcg-aware list_lru of the host, two per
// superblock (css_killed_work_fn -> memcg_reparent_list_lrus), under cgroup_mutex, which the
// next cells' mkdir and cgroup.procs writes then wait for. Both grow with the live cells (each
// holds a few superblocks): at 5,000 live cells they were the largest cost of admission
// (bench/README.md, "daemon"). A rename within a v1 hierarchy costs neither.
//
// Only the v1 memory leaf is stocked: cgroup2 refuses rename (a pure-v2 host, whose memory
// controller sits in the non-renamable v2 leaf, gets no stock), and the other leaves (cgroup2
// without controllers, v1 pids, v1 cpu) are cheap to make and remove and hold counters that
// cannot be reset (v1 pids.peak).
//
// A stocked leaf carries nothing of its last cell to the next (cgroup.h, make_leaf): its limits
// are rewritten, its charge is reclaimed (memory.force_empty, when more than
// kStockReclaimFloorBytes) and its peak and fail counters
// reset (a write of 0) by the next cell's setup before that cell joins it, and its OOM-kill
// count, which cannot be reset, is reported as the difference from the count at hand-over.
// Only leaves of cold cells of the native backend are stocked: a nested cell's leaf was
// delegated (chowned) to the cell's own reactor; a warm pool's cell's leaf is removed (the
// next cells' memory.force_empty of such leaves, which had held a prepared process from
// before its spec, reclaimed over and over through every shrinker of the host: measured).
//
// Named "<parent>/.stock-<daemon pid>-<n>" while stocked: no cell id starts with '.', so the
// next daemon's recovery knows them for what they are and removes them (reactor/recovery.cc).
// The daemon empties its stock when it stops.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace cellos::cells {

inline constexpr const char* kStockLeafPrefix = ".stock-";

// A stocked leaf holding at most this many bytes is handed over without memory.force_empty
// (child_knobs.cc says why): such a charge is kernel objects of the cell before still being
// freed, which reclaim cannot take. Page cache and dentries past it are reclaimed as before.
inline constexpr uint64_t kStockReclaimFloorBytes = 256 * 1024;

class CgroupTree;

class LeafStock {
 public:
  // `max`: how many empty leaves are kept ([host] cgroup_leaf_stock); 0 keeps none.
  LeafStock(const CgroupTree& tree, uint64_t max);
  ~LeafStock();
  LeafStock(const LeafStock&) = delete;
  LeafStock& operator=(const LeafStock&) = delete;

  // Whether this host can stock at all: a v1 memory hierarchy (rename) and max > 0.
  bool usable() const;

  struct Taken {
    std::string dir;          // the v1 memory leaf, now named for the cell
    uint64_t oom_kills_base;  // its memory.oom_control oom_kill count at hand-over
  };
  // A stocked leaf renamed to <parent>/<name> in the memory hierarchy; nullopt when the stock
  // is empty or the rename failed (a leaf of that name exists: the caller makes its own).
  std::optional<Taken> take(const std::string& name);
  // Takes an empty memory leaf of an ended cell into the stock (renamed to a stock name):
  // false when the stock is full or the rename failed (the caller removes the leaf).
  // `oom_kills_raw`: its oom_kill count now, the next cell's base.
  bool give(const std::string& dir, uint64_t oom_kills_raw);
  // Removes every stocked leaf (the daemon's stop).
  void clear();
  size_t size() const { return leaves_.size(); }
  uint64_t max() const { return max_; }

 private:
  struct Entry {
    std::string dir;
    uint64_t oom_kills_raw;
  };
  std::string memory_parent_;  // <memory root>/<parent>; empty: unusable
  std::string prefix_;         // ".stock-<pid>-": getpid once, not a syscall per cell
  uint64_t max_;
  uint64_t next_ = 0;
  std::vector<Entry> leaves_;
};

}  // namespace cellos::cells
