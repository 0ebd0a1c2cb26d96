// `run --via-daemon`: `run`'s cell handed to the fleet daemon serving the host, through its
// status socket (access as for `submit --wait`: root, or the socket's group), so a one-shot CI
// step shares the daemon's host (its admission, slots and log) instead of building its own.
//
// The client asks the daemon to tell it of the cell's run (`wait ID`), queues the spec in the
// spool once it listens, streams the cell's stdout and stderr from the daemon's log files as
// they grow, and exits with `run`'s exit status table. SIGINT/SIGTERM stop the cell as `run`
// does (`stop ID`: SIGTERM and the spec's grace; a second signal `kill ID`); one before the
// daemon took the spec withdraws it from the spool, and nothing runs.
#pragma once

#include <optional>
#include <string>

#include "cells/config.h"

namespace cellos::reactor {

// Runs the admitted spec `spec_text` (cell `cell_id`) through the daemon serving
// config.host.state_dir. std::nullopt when no daemon serves it (no socket, or nobody listens):
// the caller runs the cell itself. Otherwise `run`'s exit status.
std::optional<int> run_via_daemon(const cells::Config& config, const std::string& cell_id,
                                  const std::string& spec_text);

}  // namespace cellos::reactor
