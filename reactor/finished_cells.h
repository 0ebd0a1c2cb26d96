// The daemon's memory of finished cells: the last few summaries for `status`, and the
// `finished` lines for `submit --wait` clients, told only once the cell's events are on disk
// (so a `show ID` right after the client exits finds them).
#pragma once

#include <cstdint>
#include <deque>
#include <nlohmann/json.hpp>
#include <string>

#include "cells/cell.h"
#include "reactor/status.h"

namespace cellos::reactor {

class FinishedCells {
 public:
  // How many summaries `status` lists: enough for an on-call look at the last minutes of a
  // busy host; the event log (and `show ID`) holds every one.
  static constexpr size_t kRecent = 50;

  explicit FinishedCells(StatusServer* status = nullptr) : status_(status) {}
  void set_status(StatusServer* status) { status_ = status; }

  // A cell just finished; its last event has sequence `emitted`, and the log is on disk
  // through `written`.
  void add(const cells::Cell& c, uint64_t emitted, uint64_t written);
  // The log is on disk through `written`: tell the waiters whose cells' events now are.
  void written(uint64_t written);
  // Cell `id`'s last event was held back when it finished (emitted kHeld) and is now emitted
  // with sequence `emitted` (the daemon's CompletionGate).
  static constexpr uint64_t kHeld = UINT64_MAX;
  void emitted(const std::string& id, uint64_t emitted, uint64_t written);
  // The summaries, newest first (id, runId, finishedAt, reason, exitCode, signal, exitStatus,
  // durationMs, error).
  nlohmann::ordered_json recent() const;

 private:
  struct Tell {
    uint64_t seq;
    std::string id, run_id, line;
  };
  StatusServer* status_;
  std::deque<nlohmann::ordered_json> recent_;  // oldest first
  std::deque<Tell> tells_;
};

}  // namespace cellos::reactor
