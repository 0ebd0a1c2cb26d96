// The warm pool: cells the daemon prepares ahead of demand (prepared_cell.h), so admission
// only binds a spec's authority to a process already cloned into fresh namespaces and already
// in its cgroup leaf.
//
// Sizing ([pool] in fleet.toml): the pool aims at max(size, cells taken or missed in the last
// second), never above max_size. Refilling is off the critical path: it happens on a timer
// that every admission pushes back (kIdle), so a burst of admissions is never slowed by the
// pool making cells, and a pause refills it one cell per tick. Each prepared cell costs the
// reactor its leaf's mkdirs and one sendmsg to the spawner; the clone and the v1 joins run in
// the spawner and the new process, on whatever CPU is free.
//
// What the pool does not serve (the cell takes the cold path, and its `started` event says
// "admission": "cold"): a backend other than the host's native one, spec.export (its workspace
// and /tmp are tmpfs the reactor holds and hands the clone), a cpuMax on a host whose cpu
// controller is v1 (prepared leaves have no v1 cpu leaf), spec.inputs, a dnsAuthority or
// runtime secret delivery (a prepared cell's root is built before its spec, without the host
// paths those open: prepared_cell.h), a rootless reactor, an empty pool.
//
// Nothing prepared outlives the pool: shutdown() (and the destructor) closes each prepared
// cell's socket, kills its leaf, reaps its process and removes its leaf. Leaves a crashed
// daemon left behind are reclaimed by the next one's recovery (their names start with
// kPreparedLeafPrefix; no cell is reported lost for them).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "base/completion.h"
#include "base/io.h"
#include "cells/backend.h"
#include "cells/cgroup.h"
#include "cells/config.h"
#include "cells/prepared_cell.h"
#include "cells/spec.h"

namespace cellos::cells {

struct WarmPoolOptions {
  base::IoPort* io = nullptr;
  const CgroupTree* tree = nullptr;
  PoolConfig config;
  bool want_pidfd = false;  // the ring cannot wait by pid: prepared cells come with a pidfd
  // The policy's root view (root_view_paths): each prepared cell builds its root from it.
  std::vector<std::string> host_paths = {};
};

struct WarmPoolStats {
  uint64_t hits = 0;      // admissions served by a prepared cell
  uint64_t misses = 0;    // admissions the pool could serve but had no ready cell for
  uint64_t cold = 0;      // admissions the pool cannot serve (see above)
  uint64_t prepared = 0;  // cells prepared so far
  uint64_t discarded = 0; // prepared cells that died or failed before a spec
  size_t ready = 0, starting = 0;
};

class WarmPool {
 public:
  explicit WarmPool(WarmPoolOptions o);
  ~WarmPool();
  WarmPool(const WarmPool&) = delete;
  WarmPool& operator=(const WarmPool&) = delete;

  // Why the pool cannot serve this cell (empty: it can).
  std::string refusal(const Spec& spec, const CgroupLimits& limits, const Backend& backend) const;
  // A ready prepared cell for the spec, or null (the cold path). Counts the demand and pushes
  // the next refill back.
  std::unique_ptr<PreparedCell> take(const Spec& spec, const CgroupLimits& limits,
                                     const Backend& backend);
  // Starts filling (the daemon calls it once its host is up).
  void start();
  // Destroys every prepared cell and stops refilling (blocks until they are gone).
  void shutdown();
  WarmPoolStats stats() const;
  // No refill timer in flight (after shutdown(), the owner runs the ring until it is).
  bool idle() const { return !timer_.armed(); }
  // Pooled cells' leaves share the host's parent; their memory counts like a cell's.
  size_t size() const { return cells_.size(); }

  // The refill timer's delay after the last admission.
  static constexpr std::chrono::milliseconds kIdle{2};

 private:
  size_t target() const;
  void arm(std::chrono::nanoseconds after);
  void tick();
  void prune();

  WarmPoolOptions o_;
  std::deque<std::unique_ptr<PreparedCell>> cells_;
  std::deque<std::chrono::steady_clock::time_point> demand_;  // takes in the last second
  base::Timer timer_;
  bool stopped_ = false, started_ = false;
  uint64_t seq_ = 0;
  WarmPoolStats stats_;
};

}  // namespace cellos::cells
