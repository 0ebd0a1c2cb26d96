// Internal: the kernel ABI (flow_abi.h) for the loader's sources, and its conversions to and
// from the C++ values in records.h and cell_attachment.h. Not for callers outside ebpf/.
#pragma once

#include <linux/types.h>

#include "ebpf/cell_attachment.h"
#include "ebpf/flow_abi.h"
#include "ebpf/records.h"

namespace cellos::ebpf::abi {

Flow decode(const cellos_flow_key& k, const cellos_flow_value& v);
cellos_flow_key encode(const FlowKey& k);

// The trie key of one rule of one cell (host bits beyond the prefix cleared).
cellos_allow_key allow_key(uint64_t cgroup_id, const AllowRule& r);

}  // namespace cellos::ebpf::abi
