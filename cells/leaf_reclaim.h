// When the setup of a cell given a stocked v1 memory leaf (leaf_stock.h) reclaims what the cell
// before left charged to it (memory.force_empty), and when it need not.
//
// Why it may not: force_empty loops until the leaf's usage is zero, and kernel objects of the
// cell before that are still in use elsewhere (a few hundred KiB after a /bin/true) never let
// it get there. So each time it drained every CPU's page lists and then reclaimed through every
// memcg-aware shrinker of the host, thirteen priorities per try, five tries: 0.5 ms of CPU and
// more of waiting per cell, growing with the host's superblocks, the largest single cost of a
// short cell in the daemon (bench/README.md "daemon", perf). When the leaf holds no page at all
// there is nothing for it to give back but cached kernel objects.
//
// The rule: skip only when the usage (memory.usage_in_bytes, a page counter of every charged
// page, kernel memory included) equals the kernel memory (memory.kmem.usage_in_bytes, charged to
// both counters) and that is at most kSkipReclaimKmemMax. Any page (page cache of files the cell
// before read, anon, shmem of a tmpfs still held, a CPU's precharged stock) makes the usage
// exceed it, and force_empty runs as before; so does kernel memory past the bound, so cached
// dentries and inodes cannot pile up from cell to cell. Both are exact counters, read with no
// process in the leaf (none can charge it meanwhile). docs/security.md states what stays.
#pragma once

namespace cellos::cells {

inline constexpr long long kSkipReclaimKmemMax = 512 * 1024;

// usage, kmem: the leaf's two counters; negative when unreadable (then it reclaims).
constexpr bool stocked_leaf_needs_reclaim(long long usage, long long kmem) {
  return usage < 0 || kmem < 0 || usage != kmem || kmem > kSkipReclaimKmemMax;
}

}  // namespace cellos::cells
