// The spawner: a small process forked from the reactor before its first cell, which clones each
// cell on the reactor's behalf.
//
// Why: a clone copies the caller's descriptor table, and the cell's setup then closes every
// descriptor it did not ask for. Cloned from the reactor, that is O(live cells): each live cell
// holds its pipes there, so with thousands of cells alive most of a spawn went to dup_fd and to
// close_range's filp_flush of other cells' files. The spawner holds a handful of descriptors
// (its socket, the init's memfd, /dev/null, the sysfs template of sys_template.h and its network
// namespace) plus the few each request brings, so a spawn costs
// the same with 0 or 5,000 cells alive. It also runs on the other CPU: the reactor waits only
// for the clone itself (the reply carries the pid), not for the cell's setup, which the spawner's
// child does while the reactor goes on.
//
// The cell is cloned with CLONE_PARENT: it is the reactor's child, not the spawner's, so the
// reactor reaps it through the ring by pid (or pidfd) exactly as before, its parent-death signal
// follows the reactor, and exit status, signals, OOM and stops read the same. The spawner itself
// dies with the reactor (PR_SET_PDEATHSIG, and EOF on its socket).
//
// The protocol: one SOCK_SEQPACKET request per cell (spawn_plan.h's bytes, the cell's
// descriptors in SCM_RIGHTS). Where the reactor watches exits by pid (IORING_OP_WAITID), no
// reply: the spawner writes the pid on the cell's status pipe, which the reactor reads through
// its ring anyway, so admission costs the reactor one sendmsg and never waits. Where it needs a
// pidfd, one reply carries it (the reactor blocks for one clone of a small process).
#pragma once

#include <sys/types.h>

#include "base/fd.h"
#include "base/result.h"
#include "cells/spawn_plan.h"

namespace cellos::cells {

struct Spawned {
  pid_t pid = -1;
  base::Fd pidfd;  // empty unless the plan asked for one
};

class Spawner {
 public:
  // The process's spawner, forked on the first call; null when it could not be started or has
  // gone (the caller then clones the cell itself, as the launcher did before the spawner).
  static Spawner* get();
  // Forks the spawner now, while the caller's descriptor table and memory are small (the
  // native backend calls it before any cell). Idempotent.
  static void start_early() { (void)get(); }

  // Clones the cell of `plan`. On an error, *not_sent says the request never reached the
  // spawner (it is gone: get() returns null from now on), so the caller may clone the cell
  // itself; otherwise the error is the clone's own, or the spawner's loss mid-request.
  // With want_pidfd false the call returns once the request is sent, with pid 0: the pid comes
  // as a ChildStatus::kSpawned record on the cell's status pipe (or a kSetupFailed record of
  // stage kStageClone), so the reactor never waits for the spawner.
  // With `prepare`, the child is a prepared cell of the warm pool (prepared_cell.h): the plan
  // names its leaf and its bind socket (the status slot), and it waits there for its spec.
  base::Result<Spawned> spawn(const WirePlan& plan, bool want_pidfd, const char* cell,
                              bool* not_sent, bool prepare = false);

  pid_t pid() const { return pid_; }

 private:
  Spawner(base::Fd sock, pid_t pid) : sock_(std::move(sock)), pid_(pid) {}
  void lost();

  base::Fd sock_;
  pid_t pid_;
};

}  // namespace cellos::cells
