// FlowMonitor: the reactor's per-flow observability and BPF enforcement, host-wide, and
// CellFlows: one cell's share of it.
//
//   host:  the BPF object, loaded once; its ring buffer polled through the ring; one drain
//          timer for the whole flow map (armed only while some cell is watched, so an idle
//          reactor does no work)
//   cell:  a FlowAccumulator; the probes attached to its cgroup2 dir (bpf_links); its nflog
//          listener (nft enforcement) — all fed into the accumulator, which emits
//          network_flow_decision events; finish() drains one last time and returns the summary
//          for the destroyed event
//
// If BPF cannot load, the monitor says so once (stderr and a flow_probes event), runs without
// probes, and enforcement that needed BPF falls back to nft: a cell never runs unenforced
// because the kernel lacks something.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/completion.h"
#include "base/io.h"
#include "base/result.h"
#include "cells/config.h"
#include "ebpf/flow_probes.h"
#include "netns/cell_net.h"
#include "flows/flow_accumulator.h"
#include "netns/nflog.h"
#include "sinks/events.h"

namespace cellos::flows {

class CellFlows;

struct FlowMonitorOptions {
  const cells::Config* config = nullptr;
  base::IoPort* io = nullptr;
  sinks::EventSink* events = nullptr;  // may be set later (set_events)
};

class FlowMonitor {
 public:
  // Never fails: what could not load is reported and left off (see the header comment).
  static std::unique_ptr<FlowMonitor> create(FlowMonitorOptions options);
  ~FlowMonitor();
  FlowMonitor(const FlowMonitor&) = delete;
  FlowMonitor& operator=(const FlowMonitor&) = delete;

  // Loads the BPF object, once (lazily: `run` of a cell without egress never pays for it).
  // Whether it loaded decides enforcement(), so call it before building a cell's network.
  void load();
  // load(), then emits the flow_probes event (once, when the event sink exists).
  void announce();
  void set_events(sinks::EventSink* events) { opts_.events = events; }

  bool probes_active() const { return probes_ != nullptr; }
  // The loaded object (null when off): tests read its maps to prove teardown emptied them.
  ebpf::FlowProbes* probes() { return probes_.get(); }
  size_t watched_cells() const { return cells_.size(); }
  // NFLOG groups are per network namespace, so any number would do; distinct ones keep a
  // host-wide view (nflog tracing, a capture) unambiguous. 1..65535, then around again.
  uint16_t next_nflog_group() { return static_cast<uint16_t>(next_nflog_group_++ % 65535 + 1); }
  // [network] enforcement as it runs ("nft" when "bpf" was asked for and BPF did not load).
  const std::string& enforcement() const { return enforcement_; }
  bool nft_enforces() const { return enforcement_ == "nft" || enforcement_ == "both"; }
  bool bpf_enforces() const { return enforcement_ == "bpf" || enforcement_ == "both"; }

  struct CellOptions {
    std::string cell_id;
    int cgroup_v2_fd = -1;  // the cell's cgroup2 directory (borrowed)
    std::vector<netns::EgressTarget> targets;
    netns::CellNetwork* net = nullptr;  // for the nflog listener (nft enforcement)
    std::string correlation_id = {};    // the cell's spec.correlation, on its flow events
    std::string keeper_cgroup = {};     // ebpf::CellAttachOptions::keeper_cgroup
  };
  // Attaches the probes and opens the listener before the cell is cloned, so its first packet
  // is seen and (bpf) judged.
  base::Result<std::unique_ptr<CellFlows>> open_cell(CellOptions options);

 private:
  friend class CellFlows;
  explicit FlowMonitor(FlowMonitorOptions o);
  void arm_poll();
  void on_ringbuf(int res);
  void on_drain_timer(int res);
  void consume();
  // Routes one kernel flow (a drained entry or a record's) to its cell.
  void route(const ebpf::Flow& f);
  void drain(uint64_t cgroup_id, bool all);
  void watch(CellFlows* c);
  void unwatch(CellFlows* c);
  int64_t realtime_us(uint64_t mono_ns) const;
  int64_t now_us() const;

  FlowMonitorOptions opts_;
  std::unique_ptr<ebpf::FlowProbes> probes_;
  std::string enforcement_, off_reason_;
  bool loaded_ = false, announced_ = false;
  std::unordered_map<uint64_t, CellFlows*> cells_;  // by cgroup id
  // Ids for cells watched without a cgroup of their own in the map (no probes): above any
  // real cgroup id.
  uint64_t next_synthetic_ = 1ull << 63;
  uint16_t next_nflog_group_ = 0;
  base::MemberOp<&FlowMonitor::on_ringbuf> poll_op_{this};
  base::MemberOp<&FlowMonitor::on_drain_timer> drain_op_{this};
  uint64_t lost_seen_ = 0;  // ring buffer records lost, as last read
};

class CellFlows {
 public:
  ~CellFlows();
  CellFlows(const CellFlows&) = delete;
  CellFlows& operator=(const CellFlows&) = delete;

  // How long the cell's end may wait before finish(): the nflog instance holds denies up to
  // its flush timeout before sending them. Zero without a listener. With flush() this is only
  // the bound on waiting for its ack (which comes within a turn or two of the ring).
  std::chrono::milliseconds linger() const;
  // After the cell's processes are gone: asks the kernel for the denies it still holds; `done`
  // runs once they (and the ack that follows them) have been received. False without a
  // listener or when the request could not be sent: then wait linger() instead.
  bool flush(std::function<void()> done);
  // After the cell's processes are gone (and linger()): the last drain, the final reports, the
  // summary; then the probes are detached and the listener closed.
  sinks::FlowSummaryData finish();
  // Under BPF enforcement: allow-list entries added and removed while the cell runs (the
  // addresses its DNS answers open, cells/cell_dns.h). A no-op when BPF does not enforce.
  base::Result<void> update_allow(const std::vector<netns::EgressTarget>& add,
                                  const std::vector<netns::EgressTarget>& del);
  bool bpf_enforces() const;

 private:
  friend class FlowMonitor;
  CellFlows(FlowMonitor& mon, const FlowMonitor::CellOptions& o);
  void on_deny(const netns::DenyRecord& r);

  FlowMonitor& mon_;
  std::vector<netns::EgressTarget> targets_;
  std::string correlation_id_;
  FlowAccumulator acc_;
  ebpf::CellAttachment attachment_;
  std::unique_ptr<netns::NflogListener> nflog_;
  uint64_t cgroup_id_ = 0;
  bool watched_ = false;
};

// The rule of `targets` (first match, in declared order, like the nft chain) that allows a
// flow to `remote`: "egress[i]", "loopback", or "unmatched".
std::string allow_reason(const std::vector<netns::EgressTarget>& targets,
                         const FlowTuple& t);

}  // namespace cellos::flows
