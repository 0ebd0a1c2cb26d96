// Host: everything `run` and the fleet daemon build before the first cell, and that outlives
// every cell: the ring, the signal watcher, the event log, the cgroup parents, the backend (the
// native one loads the cell init), the NAT uplink, the flow monitor and the resolver for
// hostnames in egress rules.
//
// Built in dependency order by create(); the destructor closes the ring first (which cancels
// every operation without dispatching it), so nothing can complete into a service, or into
// anything its owner built on the ring, after it is freed.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "cells/backend.h"
#include "cells/cell.h"
#include "cells/cgroup.h"
#include "cells/config.h"
#include "cells/leaf_stock.h"
#include "flows/flow_monitor.h"
#include "netns/resolver.h"
#include "netns/uplink.h"
#include "reactor/cgroup_parent.h"
#include "reactor/ring.h"
#include "reactor/signals.h"
#include "sinks/events.h"

namespace cellos::reactor {

struct HostOptions {
  const cells::Config* config = nullptr;  // outlives the host
  // `--events FILE|-`: replaces [events] jsonl.
  std::optional<std::string> events_path;
  // The host side of [network] uplink = "nat": the daemon always, `run` only for a cell with
  // egress rules (only such a run pays for the bridge).
  bool uplink = false;
  // Submission queue size; the completion queue is twice that. The daemon, with thousands of
  // cells each holding a few operations in flight, wants a large one.
  unsigned ring_entries = 256;
  // Where the cells' cgroup tree goes (cgroup_parent.h).
  CgroupPlacement cgroups;
};

class Host {
 public:
  static base::Result<std::unique_ptr<Host>> create(HostOptions options);
  ~Host();
  Host(const Host&) = delete;
  Host& operator=(const Host&) = delete;

  const cells::Config& config() const { return *opts_.config; }
  Ring& ring() { return *ring_; }
  sinks::EventSink& events() { return *events_; }
  const cells::CgroupTree& cgroups() const { return *tree_; }
  flows::FlowMonitor& flows() { return *flows_; }
  netns::Resolver& resolver() { return *resolver_; }
  // The services a cell uses (cell.h).
  cells::CellHost cell_host();
  // The daemon's warm pool (cells/warm_pool.h), handed to cells from cell_host(); owned by the
  // caller, set before the first cell_host().
  void set_pool(cells::WarmPool* pool) { pool_ = pool; }
  // The daemon's stock of memory leaves (cells/leaf_stock.h), handed to cells likewise.
  void set_leaf_stock(cells::LeafStock* stock) { leaf_stock_ = stock; }

  // SIGINT/SIGTERM, on the reactor thread. Until a handler is set, signals are remembered only.
  void on_signal(std::function<void(int signo)> handler) { on_signal_ = std::move(handler); }
  // The last SIGINT/SIGTERM received, or 0.
  int stop_signal() const { return stop_signal_; }

  // Flushes the event sink and runs completions until it has written everything.
  base::Result<void> drain_events();

 private:
  explicit Host(HostOptions o) : opts_(std::move(o)) {}
  void signalled(int signo);

  HostOptions opts_;
  std::unique_ptr<Ring> ring_;
  std::unique_ptr<SignalWatcher> signals_;
  std::unique_ptr<sinks::EventSink> events_;
  std::optional<cells::CgroupTree> tree_;
  std::unique_ptr<cells::Backend> backend_;
  std::vector<std::unique_ptr<cells::Backend>> other_backends_;  // policy.allowed_backends
  std::unique_ptr<netns::HostUplink> uplink_;
  std::unique_ptr<flows::FlowMonitor> flows_;
  std::unique_ptr<netns::Resolver> resolver_;
  std::unique_ptr<cells::IdentityIssuer> identity_;
  std::function<void(int)> on_signal_;
  int stop_signal_ = 0;
  cells::WarmPool* pool_ = nullptr;
  cells::LeafStock* leaf_stock_ = nullptr;
};

}  // namespace cellos::reactor
