// `cellos-reactor show ID --config FLEET.toml`: what happened to a cell, from the state dir
// alone (the event log and the cell's log files), so on-call never greps the log: its latest
// run's state, outcome and reason, times, exit code and the status `run` would exit with,
// resources used, the log paths and their last lines. Works with or without a daemon.
#pragma once

#include <string>

namespace cellos::reactor {

struct ShowArgs {
  std::string cell_id;
  std::string config_path;
  bool json = false;
  size_t tail_lines = 10;
};

// 0 when the cell was found; 1 when the log has no record of it; 125 for a setup error.
int show_command(const ShowArgs& args);

}  // namespace cellos::reactor
