// What a fleet daemon does about its predecessor before it serves: one daemon per state dir
// (an flock that dies with its holder), and the cells a daemon that died left behind.
#pragma once

#include <chrono>
#include <functional>
#include <string>

#include "base/fd.h"
#include "cells/cgroup.h"
#include "cells/config.h"
#include "reactor/spool.h"
#include "sinks/events.h"

namespace cellos::reactor {

// <state_dir>/reactor.lock, held for the daemon's life; it names the holder's pid. Fails
// naming the daemon that holds it.
base::Result<base::Fd> lock_state_dir(const StateDirs& dirs);

struct RecoveryOptions {
  const StateDirs* dirs = nullptr;
  const cells::CgroupTree* tree = nullptr;
  sinks::EventSink* events = nullptr;
  // For gVisor cells' runsc state (<state_dir>/gvisor/<id>): a sandbox whose reactor died is
  // lost like any cell. Null: no gVisor state is looked for.
  const cells::Config* config = nullptr;
  // Start-up recovery waits at most this long for a lost cell's processes to die.
  std::chrono::milliseconds reclaim_wait{5000};
};

// Cgroup leaves (with processes, if its cells outlived it) and active/ entries of cells a dead
// predecessor had started: killed, removed and reported destroyed with reason "lost". A leaf
// whose cell lock is held belongs to a live `run` sharing the state dir, and is left alone.
// Returns the ids reported lost. Blocks: start-up only.
std::vector<std::string> recover_lost_cells(const RecoveryOptions& o);

}  // namespace cellos::reactor
