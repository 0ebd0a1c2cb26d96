// An exclusive flock that waits out a holder which has already exited.
//
// A flock lives on the open file description, so it is released when the last reference to
// that description goes, not when its process dies. A daemon killed with SIGKILL while writes
// to its event log were in flight through io_uring leaves references in the ring's
// requests; the kernel drops them from a worker after the process is reaped, a few
// milliseconds later, more under load. A daemon restarted at once would then refuse to start
// ("another writer has it") although no writer lives. So: a lock held only by processes that
// have exited, or by this process through an earlier open (a closed log whose ring requests
// are still being freed), is waited for, up to a bound; a lock held by another live process
// is refused at once, naming its pid. A lock /proc/locks names nobody for is refused at once
// too: outside the initial pid namespace (a nested reactor) it leaves out holders it cannot
// name, the exited ones included, and a file system may give /proc/locks another device or
// inode number than stat(2) gives.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "base/result.h"

namespace cellos::base {

struct FlockOptions {
  std::string what;  // the object named in errors: "event log \"/var/lib/...\""
  // How long a lock whose every holder has exited is waited for.
  std::chrono::milliseconds dead_holder_wait{10000};
};

// LOCK_EX | LOCK_NB on fd. On a live holder: an Error with err EWOULDBLOCK, call "flock",
// object o.what and detail naming the holder's pid.
Result<void> flock_exclusive(int fd, const FlockOptions& o);

// The pids /proc/locks names as holding a FLOCK on (dev, ino) (waiters not included), in the
// reader's pid namespace (0: a holder that has exited, outside the initial one).
std::vector<pid_t> flock_holders(dev_t dev, ino_t ino);

// Whether pid names a process that still runs (not gone, not a zombie whose files are closed).
bool process_alive(pid_t pid);

}  // namespace cellos::base
