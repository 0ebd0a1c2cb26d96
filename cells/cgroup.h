// Cgroups for cells: one leaf per cell, limits written where the controllers are.
//
// Membership always goes through cgroup2 (clone3 CLONE_INTO_CGROUP needs a cgroup2 dir fd, and
// cgroup.kill lives there). The memory, pids and cpu limits go to the cgroup2 files when the
// unified hierarchy carries those controllers (pure v2) and to the v1 hierarchies otherwise
// (hybrid hosts such as this project's CI machines); the child joins the v1 leaves itself by
// writing "0" into their cgroup.procs before exec.
//
// Roots are injected (CgroupRoots), so the pure-v2 path is tested against a fake cgroupfs in a
// temp dir.
#pragma once

#include <chrono>
#include <cstdint>
#include <array>
#include <optional>
#include <string>
#include <vector>

#include "base/fd.h"
#include "cells/spec.h"

namespace cellos::cells {

struct CgroupRoots {
  std::string unified;  // the cgroup2 mount; required
  // Where each controller's limits go: the unified root when cgroup2 carries the controller,
  // else the v1 hierarchy's mount, else empty (the limit cannot be applied on this host).
  std::string memory, pids, cpu;
  bool memory_v2 = false, pids_v2 = false, cpu_v2 = false;
};

// Reads a mounts table (/proc/self/mounts format) and the unified root's cgroup.controllers.
base::Result<CgroupRoots> detect_cgroup_roots(const std::string& mounts_file = "/proc/self/mounts");

struct CgroupLimits {
  uint64_t memory_max_bytes = 0;
  uint64_t pids_max = 0;  // as the spec counts it: the cell's init is added on top
  std::optional<CpuMax> cpu_max;
};

class CgroupLeaf;
class LeafStock;

// What a cell's processes used over its life, read from its leaf after they are gone (the
// kernel keeps the counters until the leaf is removed). Unset: this host's hierarchies do not
// count it (no memory or pids controller in use).
struct CgroupUsage {
  std::optional<uint64_t> memory_peak_bytes;  // memory.peak / memory.max_usage_in_bytes
  std::optional<uint64_t> cpu_usec;           // cgroup2 cpu.stat usage_usec (user + system)
  std::optional<uint64_t> pids_peak;          // pids.peak: the cell's init counts too
  uint64_t oom_kills = 0;                     // processes the OOM killer took in the leaf
};


// The per-host parent ("[<delegated>/]cellos/<hostId>") under every hierarchy in use. Prepared
// once per process (mkdir -p, and on pure v2 the controllers enabled in each parent's
// subtree_control), so a cell's setup costs only its own leaf.
class CgroupTree {
 public:
  // `delegated`: a prefix of `parent` handed to us by the service manager (systemd's
  // Delegate=yes): nothing above it is written or removed. Empty: the tree starts at the roots.
  static base::Result<CgroupTree> prepare(CgroupRoots roots, std::string parent,
                                          std::string delegated = {});
  const CgroupRoots& roots() const { return roots_; }
  const std::string& parent() const { return parent_; }

  // The leaf in every hierarchy in use. Its limits and v1 joins are planned (writes(),
  // v1_procs_paths()) for the cell's setup to carry out as root before anything of the cell
  // runs: the reactor spends no syscalls on them.
  // `stock` (leaf_stock.h): where the v1 memory leaf comes from when it has one (renamed to
  // `name`, its charge and counters reset by the planned writes); null: made with mkdir.
  base::Result<CgroupLeaf> create_leaf(const std::string& name, const CgroupLimits& limits,
                                       LeafStock* stock = nullptr) const;
  // A prepared cell's leaf (warm_pool.h), already made and holding the prepared process, given
  // the limits of the spec it is bound to: the same leaf with those writes planned. `leaf` lets
  // go of its directories (the returned leaf removes them).
  base::Result<CgroupLeaf> adopt_leaf(CgroupLeaf&& leaf, const CgroupLimits& limits) const;

  // Removes the parent dirs that are empty (another reactor may still use them: best effort).
  // `run` keeps them: like a systemd slice they are host infrastructure, made once and shared
  // by every cell of the host; removing and recreating them cost a quarter of a cell's setup.
  void remove_empty_parents() const;

  // The leaves under the parent in any hierarchy: what a reactor that died left behind.
  std::vector<std::string> list_leaves() const;
  // Kills every process of a leftover leaf (cgroup.kill, then SIGKILL to each pid as a
  // fallback), waits up to `wait` for them to be gone, and removes the leaf everywhere. Used at
  // start-up only: it blocks.
  base::Result<void> reclaim_leaf(const std::string& name, std::chrono::milliseconds wait) const;

 private:
  CgroupTree(CgroupRoots roots, std::string parent)
      : roots_(std::move(roots)), parent_(std::move(parent)) {}
  // The unified root plus each distinct v1 root in use (the cpu one only when asked for).
  std::vector<std::string> hierarchies(bool with_cpu = true) const;
  base::Result<CgroupLeaf> make_leaf(const std::string& name, const CgroupLimits& limits,
                                     bool adopt, LeafStock* stock) const;
  CgroupRoots roots_;
  std::string parent_;
  std::string delegated_;
  // v1 memory has memory.memsw.* (swap accounting on): probed once, not per cell.
  bool memsw_ = false;
};

class CgroupLeaf {
 public:
  CgroupLeaf(CgroupLeaf&&) noexcept = default;
  CgroupLeaf& operator=(CgroupLeaf&&) noexcept = default;
  ~CgroupLeaf();

  // O_PATH dir fd of the cgroup2 leaf, for clone3's cgroup field.
  int v2_dirfd() const { return v2_dir_.get(); }
  // The limit writes, in order, and the v1 cgroup.procs files the cell's setup joins by
  // writing "0".
  struct KnobWrite {
    std::string path, value;
  };
  const std::vector<KnobWrite>& writes() const { return writes_; }
  const std::vector<std::string>& v1_procs_paths() const { return v1_procs_paths_; }
  // Once clone3 has placed the child, the v2 dir fd is not needed until the next cell.
  void close_v2_dir() { v2_dir_.reset(); }
  // The same, handing the descriptor to the caller (who closes it through its ring).
  int release_v2_dir() { return v2_dir_.release(); }
  const std::string& relative_path() const { return rel_; }

  // Kills every process in the leaf at once (cgroup.kill). Fails where the kernel has no
  // cgroup.kill (before 5.14); the caller then kills the cell's init, which takes its pid
  // namespace down with it.
  base::Result<void> kill() const;
  // Sends `sig` to every process now in the leaf (as systemd's control-group kill mode does):
  // the command, its children and daemonized grandchildren. The cell's init, pid 1 of its
  // namespace with no handler, is immune to anything but SIGKILL, so it is not disturbed.
  base::Result<void> signal_all(int sig) const;
  // Whether the kernel OOM killer fired inside this leaf.
  bool oom_killed() const { return usage().oom_kills > 0; }
  // The leaf's counters now; a few small reads, done once per cell at its end.
  CgroupUsage usage() const;
  // usage() in two halves, for a caller that reads the files itself (the cell, through its
  // ring): the files it reads (kUsageFiles of them; "" where this host has none), and what
  // their texts (nullopt: unreadable) say.
  static constexpr size_t kUsageFiles = 4;
  std::array<std::string, kUsageFiles> usage_files() const;
  CgroupUsage parse_usage(const std::array<std::optional<std::string>, kUsageFiles>& texts) const;
  // Current memory use of the leaf (memory.current / memory.usage_in_bytes); 0 if unknown.
  uint64_t memory_bytes() const;
  // rmdir in every hierarchy. EBUSY while a process is still exiting: the caller retries.
  // `stock`: the v1 memory leaf goes there instead (renamed) once the cgroup2 leaf, which holds
  // every process of the cell, is gone and usage() has read its OOM count; a full stock or a
  // failed rename removes it as without one.
  base::Result<void> remove(LeafStock* stock = nullptr);
  // The v1 memory leaf came from the stock: until the cell's setup has run the planned resets,
  // its peak is the previous cell's (Cell reports none for a setup that failed).
  bool memory_from_stock() const { return memory_from_stock_; }
  // The v1 memory leaf's directory ("" on pure v2 or without a memory controller).
  const std::string& memory_dir() const { return memory_dir_; }
  bool removed() const { return dirs_.empty(); }

 private:
  friend class CgroupTree;
  CgroupLeaf() = default;
  std::string rel_;                 // "cellos/<host>/<cell>"
  std::vector<std::string> dirs_;   // absolute leaf dirs still present, v2 first
  std::string memory_dir_;          // where memory.events / memory.oom_control live
  std::string pids_dir_;            // where pids.peak lives
  bool memory_v2_ = false;
  bool memory_from_stock_ = false;
  // The v1 memory.oom_control oom_kill count when the leaf was handed to this cell (it cannot be
  // reset): usage() reports the difference. The last raw count read, for the stock.
  uint64_t oom_kills_base_ = 0;
  mutable std::optional<uint64_t> oom_kills_raw_;
  base::Fd v2_dir_;
  std::vector<KnobWrite> writes_;
  std::vector<std::string> v1_procs_paths_;
};

}  // namespace cellos::cells
