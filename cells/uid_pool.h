// UidLease: the uid a running cell's processes run as, its own among all running cells of the
// host, and a gid of the same number.
//
// Per-user kernel limits (inotify instances and watches, RLIMIT_NPROC, fanotify groups, user
// keyrings, POSIX message queue bytes, pending signals) count per uid across the whole host:
// cells sharing one uid shared them, and one cell taking all 128 inotify instances made the
// next one fail. So every running cell leases a uid from [policy] uid_range and returns it once
// its processes are gone (the Cell releases it after its cgroup is removed).
//
// Leases hold across processes: the daemon and any number of `cellos-reactor run`s on one host
// share the range, whatever their state dirs. A lease is an OFD write lock on byte <uid> of one
// host-wide file, /run/cellos-reactor/uids.lock (a fixed path: state dirs differ between
// reactors, /run is per boot, like the leases). The kernel drops the lock when the holder dies,
// so a crashed reactor leaks no uid; its cells die with it (their init has PDEATHSIG), though
// their last processes may still be exiting when another reactor leases the uid again. One
// descriptor per process, as CellLock has: locks taken through one open file description never
// conflict with each other, so this process's own leases are tracked beside it.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "base/fd.h"

namespace cellos::cells {

// The host-wide lease file; its directory is created (0700) when absent.
inline constexpr const char* kUidLeaseFile = "/run/cellos-reactor/uids.lock";

struct UidRange {
  uint32_t first = 0;
  uint32_t last = 0;  // inclusive
};

class UidLease {
 public:
  // The next free uid of `range` (this process's own leases and other processes' locks both
  // count as taken). EAGAIN "no free uid in uid_range A-B" when every one is held.
  static base::Result<UidLease> acquire(UidRange range, const std::string& lease_file = kUidLeaseFile);

  uid_t uid() const { return uid_; }
  gid_t gid() const { return static_cast<gid_t>(uid_); }

  UidLease(UidLease&& o) noexcept;
  UidLease& operator=(UidLease&& o) noexcept;
  UidLease(const UidLease&) = delete;
  UidLease& operator=(const UidLease&) = delete;
  ~UidLease();

 private:
  struct File;
  UidLease(File* f, uid_t uid) : file_(f), uid_(uid) {}
  void release();
  File* file_ = nullptr;  // owned by a process-wide table, one per lease file
  uid_t uid_ = 0;
};

}  // namespace cellos::cells
