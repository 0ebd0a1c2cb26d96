// CellLock: at most one running cell per id on a host, across reactor processes.
//
// One byte-range lock per id: an open-file-description (OFD) write lock on the byte at a 62-bit
// hash of the id, in one of 64 files chosen by that hash (<state_dir>/cells.lock.00 to .3f,
// so no file's lock list, which the kernel walks on every lock, holds more than a 64th of the
// live cells). The kernel drops it when the holder dies, so a crashed reactor never leaves an
// id blocked. At most 64 descriptors per process rather than one per cell: the fleet daemon
// runs thousands of cells under a descriptor limit it may not raise (20000 on our CI
// machines), and locking costs two fcntl calls instead of six syscalls.
// Two different ids share a byte only if their 62-bit hashes collide (about 1 in 10^11 for
// 5,000 running cells); such a cell is refused as "already running", never run twice.
#pragma once

#include <string>

#include "base/fd.h"

namespace cellos::cells {

class CellLock {
 public:
  // Fails with EWOULDBLOCK and "cell id is already running" when another holder has it (in
  // this process or another).
  static base::Result<CellLock> acquire(const std::string& state_dir, const std::string& id);
  CellLock(CellLock&& o) noexcept;
  CellLock& operator=(CellLock&& o) noexcept;
  ~CellLock();

 private:
  struct File;
  CellLock(File* f, std::string id, long long slot) : file_(f), id_(std::move(id)), slot_(slot) {}
  void release();
  File* file_ = nullptr;
  std::string id_;
  long long slot_ = 0;
};

}  // namespace cellos::cells
