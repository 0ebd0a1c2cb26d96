#include "ebpf/cgroup_id.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <cstring>

namespace cellos::ebpf {

base::Result<uint64_t> cgroup_id_of(int cgroup_dirfd) {
  // kernfs encodes a cgroup2 directory's handle as its 64-bit node id (FILEID_KERNFS), the
  // number bpf_get_current_cgroup_id returns.
  alignas(file_handle) unsigned char buf[sizeof(file_handle) + sizeof(uint64_t)] = {};
  auto* fh = reinterpret_cast<file_handle*>(buf);
  fh->handle_bytes = sizeof(uint64_t);
  int mount_id = 0;
  if (::name_to_handle_at(cgroup_dirfd, "", fh, &mount_id, AT_EMPTY_PATH) != 0)
    return base::sys_error("name_to_handle_at", "cgroup fd " + std::to_string(cgroup_dirfd));
  if (fh->handle_bytes != sizeof(uint64_t))
    return base::value_error("cgroup fd " + std::to_string(cgroup_dirfd),
                             "file handle of " + std::to_string(fh->handle_bytes) +
                                 " bytes: not a cgroup2 directory");
  uint64_t id = 0;
  std::memcpy(&id, fh->f_handle, sizeof(id));
  return id;
}

base::Result<uint64_t> cgroup_inode_of(int cgroup_dirfd) {
  struct stat st {};
  if (::fstat(cgroup_dirfd, &st) != 0)
    return base::sys_error("fstat", "cgroup fd " + std::to_string(cgroup_dirfd));
  return static_cast<uint64_t>(st.st_ino);
}

}  // namespace cellos::ebpf
