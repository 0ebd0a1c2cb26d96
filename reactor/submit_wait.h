// `submit --wait`: the client half. It asks the daemon (its status socket, `wait ID`) to be told
// of the next run of the cell, queues the spec only once the daemon listens (so the start cannot
// be missed), streams the cell's stdout and stderr from its log files as they grow, and exits
// with the cell's exit status, the table `run` uses (0, the command's code, 128+N, 124 timeout,
// 125 refused or setup failed, 126/127 argv[0]).
//
// Ctrl-C (or any signal) only detaches: the cell is the daemon's and keeps running; `show ID`
// tells its end later. A waiting client costs the daemon one connection and no work.
#pragma once

#include <string>

#include "reactor/spool.h"

namespace cellos::reactor {

struct SubmitWaitOptions {
  const StateDirs* dirs = nullptr;
  std::string cell_id;
  std::string spec_text;
};

int submit_and_wait(const SubmitWaitOptions& options);

}  // namespace cellos::reactor
