// CellLock: at most one running cell per id on a host, across reactor processes.
//
// An flock on <state_dir>/cells/<id>.lock, held for the cell's life. The kernel drops it when
// the holder dies, so a crashed reactor never leaves an id blocked.
#pragma once

#include <string>

#include "base/fd.h"

namespace cellos::cells {

class CellLock {
 public:
  // Fails with EWOULDBLOCK and "cell id is already running" when another holder has it.
  static base::Result<CellLock> acquire(const std::string& state_dir, const std::string& id);
  CellLock(CellLock&&) noexcept = default;
  CellLock& operator=(CellLock&&) noexcept = default;
  ~CellLock();

 private:
  CellLock(base::Fd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}
  base::Fd fd_;
  std::string path_;
};

}  // namespace cellos::cells
