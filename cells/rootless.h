// Rootless mode: the reactor runs as root of a user namespace it was given (by a service
// manager, a container runtime, or a parent cell of the nested backend), not as the host's root.
//
// It still makes fully isolated cells: their namespaces are owned by its user namespace, their
// cgroups sit inside the subtree delegated to it, their rulesets live in their own network
// namespaces. What it cannot have it says, once, at start (docs/nested.md lists each with the
// kernel's reason):
//   - BPF flow probes: loading BPF programs needs CAP_BPF (or CAP_SYS_ADMIN) in the initial user
//     namespace, so the flow_probes event says "rootless" and nft enforces, with nflog;
//   - uids outside its map: [policy] uid_range must lie inside the mapped range, checked at
//     start, since a cell uid the namespace does not map cannot be switched to;
//   - the host-wide uid lease file (/run/cellos-reactor belongs to the host's root): leases go
//     to <state_dir>/uids.lock instead, shared by the reactors of that state dir.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"
#include "cells/config.h"

namespace cellos::cells {

// One line of /proc/<pid>/uid_map: `count` ids from `inside` map to `outside` in the parent.
struct IdMapLine {
  uint32_t inside = 0, outside = 0, count = 0;
};

// Parses uid_map / gid_map text; a malformed line is an error naming it.
base::Result<std::vector<IdMapLine>> parse_id_map(const std::string& text);

// True when the map is not the initial namespace's identity map ("0 0 4294967295").
bool is_rootless_map(const std::vector<IdMapLine>& map);

// This process's answer, read once from /proc/self/uid_map (false when it cannot be read).
bool running_rootless();

// [policy] uid_range inside the map (every uid of it mapped), else a one-line error naming the
// key and the mapped ranges.
base::Result<void> check_uid_range_mapped(uint32_t first, uint32_t last,
                                          const std::vector<IdMapLine>& map);

// Start-up checks of a rootless reactor (the uid range against /proc/self/uid_map); ok when not
// rootless.
base::Result<void> check_rootless_host(const Config& config);

// Where uid leases are kept (uid_pool.h): the host-wide file, or <state_dir>/uids.lock rootless.
std::string uid_lease_file(const Config& config);

// The flow_probes event's reason when BPF is not even tried.
inline constexpr const char* kRootlessProbesReason =
    "rootless: loading BPF needs CAP_BPF or CAP_SYS_ADMIN in the initial user namespace";

}  // namespace cellos::cells
