// Supervisor: the cells of one reactor, on the host's ring. `run` adds one cell and runs until it
// is gone; the fleet daemon adds cells as they are admitted.
#pragma once

#include <functional>
#include <memory>
#include <unordered_map>
#include <vector>

#include "cells/cell.h"
#include "reactor/host.h"

namespace cellos::reactor {

struct SupervisorOptions {
  // Called for each cell once it has finished, just before it is destroyed.
  std::function<void(const cells::Cell&)> on_cell_done;
  // Where the cells emit their events, when not straight into the host's log (the fleet
  // daemon's CompletionGate). Outlives the supervisor.
  sinks::EventSink* events = nullptr;
};

class Supervisor {
 public:
  // `host` outlives the supervisor.
  Supervisor(Host& host, SupervisorOptions options);
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Starts a cell. Its id must not be running in this reactor (the CellLock refuses it across
  // reactors too, with its own events).
  void add(cells::CellOptions options);
  void kill_all(cells::KillCause cause);
  // Cell::stop for every cell, each with the grace `grace(cell)` gives it.
  void stop_all(cells::KillCause cause,
                const std::function<std::chrono::seconds(const cells::Cell&)>& grace);

  // Runs completion rounds until `done()` holds (checked before each round), then drains the
  // event sink. `done` must become true through a completion, or the loop waits forever.
  base::Result<void> run_until(const std::function<bool()>& done);
  // run_until no cell is left.
  base::Result<void> run_until_idle();

  const std::unordered_map<cells::Cell*, std::unique_ptr<cells::Cell>>& cells() const {
    return cells_;
  }

 private:
  void reap_finished();

  Host& host_;
  SupervisorOptions opts_;
  cells::CellHost cell_host_;
  std::unordered_map<cells::Cell*, std::unique_ptr<cells::Cell>> cells_;
  std::vector<cells::Cell*> finished_;
};

}  // namespace cellos::reactor
