// Starting a helper process the reactor supervises (the NATS companion, the export helper):
// posix_spawn with the signal state a fresh program expects, and a pidfd for the ring.
#pragma once

#include <spawn.h>
#include <sys/types.h>

#include <string>

#include "base/fd.h"
#include "base/result.h"

namespace cellos::base {

struct SpawnedHelper {
  pid_t pid = -1;
  Fd pidfd;
};

// The reactor blocks SIGINT and SIGTERM (it reads them from a signalfd) and ignores SIGPIPE;
// the helper gets an empty mask and those three at their defaults, so a stray signal can end
// it. `what` names it in errors. A helper whose pidfd cannot be opened is killed and reaped.
Result<SpawnedHelper> spawn_helper(const std::string& path, const posix_spawn_file_actions_t& fa,
                                   char* const* argv, char* const* envp, const std::string& what);

}  // namespace cellos::base
