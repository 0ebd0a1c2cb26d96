// The spool as an intake (intake.h, spool.h): inotify on <state_dir>/spool through the ring,
// the entries already there at start oldest first, an entry that cannot be read for the host's
// trouble (descriptors, memory) read again later, never rejected for it.
#pragma once

#include <memory>
#include <string>
#include <unordered_set>

#include "base/completion.h"
#include "reactor/intake.h"
#include "reactor/spool.h"

namespace cellos::reactor {

class SpoolIntake final : public Intake {
 public:
  SpoolIntake(base::IoPort& io, StateDirs dirs, IntakeSink& sink)
      : io_(io), dirs_(std::move(dirs)), sink_(sink), retry_(&io) {}
  ~SpoolIntake() override;

  std::string where(const IntakeEntry& e) const override { return "spool entry " + e.name; }
  base::Result<void> start() override;
  base::Result<void> activate(IntakeEntry& e, const std::string& cell_id) override;
  bool deactivate(IntakeEntry& e, const std::string& cell_id) override;
  void refuse(const IntakeEntry& e, const std::optional<std::string>& cell_id,
              const std::string& reason, bool active) override;
  void finished(const IntakeEntry& e, const cells::Cell& cell, uint64_t on_disk) override;
  void stop() override;

 private:
  void offer(const std::string& name);
  void rescan();

  base::IoPort& io_;
  StateDirs dirs_;
  IntakeSink& sink_;
  std::unique_ptr<SpoolWatcher> watcher_;
  base::Timer retry_;
  std::unordered_set<std::string> retry_names_;  // entries to read again
  bool stopped_ = false;
};

// Out of descriptors, memory or disk for a moment: the spec waits and is tried again; it is
// never rejected for the host's trouble.
bool transient_errno(int err);

}  // namespace cellos::reactor
