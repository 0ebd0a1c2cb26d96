// A daemon cell's log directory at admission.
#pragma once

#include <string>

#include "base/result.h"

namespace cellos::reactor {

// The log files are created when their stream's first bytes arrive (cells/cell.h's
// stdout_path), not here: creating a directory and two files per cell was most of the reactor
// thread's CPU per cell (ext4 inode allocation), and a quiet cell needs none. Two exceptions,
// made here: a client following the cell (`watched`: submit --wait, run --via-daemon) opens
// both files once told the cell started, so they exist first; and a reused id's old logs are
// emptied, so no stale output stands for a stream that stays quiet this time (one access()
// finds them).
base::Result<void> prepare_cell_logs(const std::string& logdir, bool watched);

}  // namespace cellos::reactor
