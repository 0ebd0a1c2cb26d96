// Supervisor: the reactor proper. One ring, one signal watcher, the host-wide cell services and
// the cells themselves, all on one thread. `run` adds one cell and runs until it is gone; the
// fleet daemon adds cells as they are admitted.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "cells/cell.h"
#include "reactor/ring.h"
#include "reactor/signals.h"

namespace cellos::reactor {

struct SupervisorOptions {
  const cells::Config* config = nullptr;
  sinks::EventSink* events = nullptr;
  const cells::CgroupTree* cgroups = nullptr;
  netns::HostUplink* uplink = nullptr;  // [network] uplink = "nat"; outlives the supervisor
  // Called for each cell once it has finished, just before it is destroyed.
  std::function<void(const cells::Cell&)> on_cell_done;
  // SIGINT/SIGTERM. Unset: every cell is killed at once (what `run` wants); the daemon sets
  // its own to stop intake and give cells a grace period first.
  std::function<void(int signo)> on_signal;
  // Submission queue size; the completion queue is twice that. The daemon, with thousands of
  // cells each holding a few operations in flight, wants a large one.
  unsigned ring_entries = 256;
};

class Supervisor {
 public:
  static base::Result<std::unique_ptr<Supervisor>> create(SupervisorOptions options);
  ~Supervisor();

  // Starts a cell. Its id must not be running in this reactor (the CellLock refuses it across
  // reactors too, with its own events).
  void add(cells::CellOptions options);

  // Runs completions until no cell is left. SIGINT/SIGTERM kill every cell (each still ends
  // with its completed and destroyed events) and are remembered in stop_signal().
  base::Result<void> run_until_idle();

  int stop_signal() const { return stop_signal_; }
  void kill_all(cells::KillCause cause);
  // Runs completion rounds until `done()` holds (checked before each round), then drains the
  // event sink. `done` must become true through a completion, or the loop waits forever.
  base::Result<void> run_until(const std::function<bool()>& done);
  Ring& ring() { return *ring_; }
  const std::unordered_map<cells::Cell*, std::unique_ptr<cells::Cell>>& cells() const {
    return cells_;
  }
  // The ring, for host-wide services created after the supervisor (the event log writes
  // through it); and the sink they become, set before the first cell is added.
  base::IoPort& io() { return *ring_; }
  void set_events(sinks::EventSink* events) {
    opts_.events = events;
    host_.events = events;
    flows_->set_events(events);
  }
  cells::FlowMonitor& flows() { return *flows_; }
  size_t running() const { return cells_.size(); }

 private:
  explicit Supervisor(SupervisorOptions o) : opts_(std::move(o)) {}
  void on_signal(int signo);
  void reap_finished();
  // Flushes the event sink and runs completions until it has written everything.
  base::Result<void> drain_events();

  SupervisorOptions opts_;
  std::unique_ptr<Ring> ring_;
  std::unique_ptr<cells::FlowMonitor> flows_;
  std::unique_ptr<SignalWatcher> signals_;
  cells::CellHost host_;
  std::unordered_map<cells::Cell*, std::unique_ptr<cells::Cell>> cells_;
  std::vector<cells::Cell*> finished_;
  int stop_signal_ = 0;
};

}  // namespace cellos::reactor
