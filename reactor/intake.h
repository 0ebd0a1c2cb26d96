// Intake: where the fleet daemon's specs come from. The spool (spool_intake.h) and the NATS work
// queue (nats_intake.h) are two implementations; the daemon admits, queues and runs what any of
// them offers the same way, and tells the intake how each spec ended so it can settle it (move
// the spool file, ack or term the message).
//
// Life of a spec:   offer ─► admitted ─► waiting ─► activate ─► running ─► finished
//                            └► refuse   └► give_back (stop)   └► refuse (id taken elsewhere)
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"
#include "cells/cell.h"

namespace cellos::reactor {

class Intake;

// One spec as an intake delivered it, until the intake has settled it.
struct IntakeEntry {
  Intake* from = nullptr;
  std::string name;   // how messages name it: the spool file, "nats:<stream seq>"
  std::string text;   // the spec as delivered, when it has no file of its own
  std::string token;  // the intake's handle to settle it with (an ack subject); may change
  uint64_t seq = 0;   // the intake's sequence for it (a stream sequence), 0 when none
  // Another host owns it now (IntakeSink::fence): its cell is killed, and nothing of its end
  // is settled here.
  bool fenced = false;
};

// What an intake hands its specs to: the daemon.
class IntakeSink {
 public:
  // A spec delivered. The sink admits it (or refuses it through the intake).
  virtual void offer(IntakeEntry entry) = 0;
  // The entry `from` delivered with sequence `seq` that waits or runs here, or null.
  virtual IntakeEntry* held(const Intake& from, uint64_t seq) = 0;
  virtual bool stopping() const = 0;
  // A spec the intake refused before offering it (too large, unreadable): the rejected event,
  // the metrics and the stderr line, as for any refusal.
  virtual void rejected(const IntakeEntry& e, const std::optional<std::string>& cell_id,
                        const std::string& reason) = 0;
  // The spec `from` delivered with sequence `seq` is no longer this host's to run (another host
  // took it over): a running cell is killed, a waiting spec dropped; neither is settled here.
  virtual void fence(const Intake& from, uint64_t seq) = 0;

 protected:
  ~IntakeSink() = default;
};

class Intake {
 public:
  virtual ~Intake() = default;
  // How a refusal names the spec: "spool entry NAME", "nats spec (stream seq N)".
  virtual std::string where(const IntakeEntry& e) const = 0;
  // Starts delivering (after the daemon's crash recovery).
  virtual base::Result<void> start() = 0;
  // The daemon has `free` slots not taken by running or waiting cells.
  virtual void offer_room(uint64_t free) { (void)free; }
  // The spec's cell is about to start: its spec becomes active/<id>.json, so a daemon that
  // dies knows which cells it lost. ENOENT: withdrawn (drop it quietly); a transient errno:
  // the daemon requeues it and calls deactivate().
  virtual base::Result<void> activate(IntakeEntry& e, const std::string& cell_id) = 0;
  // Undoes activate() for a spec put back in the queue; false when it cannot (then refused).
  virtual bool deactivate(IntakeEntry& e, const std::string& cell_id) = 0;
  // Settles a refused spec so it never comes back; `active` when activate() had succeeded.
  virtual void refuse(const IntakeEntry& e, const std::optional<std::string>& cell_id,
                      const std::string& reason, bool active) = 0;
  // The cell ran and is destroyed; its destroyed event has log sequence `on_disk` (written once
  // the log reports it). Also for a fenced entry, which must then settle nothing.
  virtual void finished(const IntakeEntry& e, const cells::Cell& cell, uint64_t on_disk) = 0;
  // SIGTERM: no more offers.
  virtual void stop() = 0;
  // A waiting spec that will not start here (the daemon stops): true when the intake took it
  // back (it runs elsewhere or later), false when it stays where it is (a spool file).
  virtual bool give_back(const IntakeEntry& e) { (void)e; return false; }
  // Nothing left to settle: the daemon may exit.
  virtual bool settled() const { return true; }
  // Said once when the daemon exits with settlements still outstanding.
  virtual void abandon_settling() {}
  // Everything the log holds has left the host (published), or nothing is published.
  virtual bool caught_up() const { return true; }
  // At exit, after the last cell: closes connections and helpers.
  virtual void close() {}
};

}  // namespace cellos::reactor
