// The id BPF programs see for a cgroup2 directory.
//
// bpf_skb_cgroup_id and bpf_get_current_cgroup_id return the kernfs node id of the cgroup2
// directory. name_to_handle_at on that directory returns the same id as its 8-byte handle, and
// on 64-bit kernels fstat's st_ino is the same number (both checked by the ebpf tests here).
#pragma once

#include <cstdint>

#include "base/result.h"

namespace cellos::ebpf {

// The cgroup id of an open cgroup2 directory, from its file handle.
base::Result<uint64_t> cgroup_id_of(int cgroup_dirfd);

// The same directory's inode number (fstat): equal to cgroup_id_of on 64-bit kernels.
base::Result<uint64_t> cgroup_inode_of(int cgroup_dirfd);

}  // namespace cellos::ebpf
