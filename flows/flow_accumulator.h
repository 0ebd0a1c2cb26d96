// FlowAccumulator: one cell's table of network flows, fed by the flow probes (ring-buffer births
// and ends, periodic drains of the kernel's LRU flow map) and by denies (nflog records under nft
// enforcement, BPF deny records under bpf enforcement), turned into network_flow_decision
// events and the flow summary of the cell's destroyed event.
//
// The kernel keeps cumulative counters per flow; the accumulator remembers what it has already
// reported and reports only the difference, so every packet is in exactly one report:
//   - a flow is reported when it ends (FIN/RST), when it is first denied, at most every
//     report_interval while it has new counts, and finally when the cell ends;
//   - counters that go backwards mean the LRU map evicted the flow and it was born again: the
//     lost part cannot be known, so the eviction is counted (evicted_flows), never hidden.
// Pure logic (no kernel calls, time passed in): tested as such.
#pragma once

#include <netinet/in.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>

#include "sinks/events.h"

namespace cellos::flows {

// A flow as the cell sees it: its own end (local) and the other end (remote).
struct FlowTuple {
  uint8_t family = AF_INET;  // AF_INET | AF_INET6
  uint8_t protocol = IPPROTO_TCP;
  std::array<uint8_t, 16> local{}, remote{};  // network byte order; IPv4 in the first 4 bytes
  uint16_t local_port = 0, remote_port = 0;   // host byte order
  bool outbound = true;                       // the cell opened it (egress)
  bool operator==(const FlowTuple&) const = default;
};

struct FlowTupleHash {
  size_t operator()(const FlowTuple& t) const;
};

// Cumulative counters of one flow since the kernel first saw it.
struct FlowCounts {
  uint64_t tx_packets = 0, tx_bytes = 0, rx_packets = 0, rx_bytes = 0;
  int64_t first_us = 0, last_us = 0;  // CLOCK_REALTIME
};

struct FlowAccumulatorOptions {
  std::string cell_id;
  std::chrono::milliseconds report_interval{5000};
  size_t top_destinations = 5;
  bool probes = true;  // accounting on (the summary says so)
  // Names the rule that allowed a flow ("egress[2]", "loopback", "unmatched").
  std::function<std::string(const FlowTuple&)> allow_reason;
  std::function<void(sinks::FlowDecisionData)> emit;
};

class FlowAccumulator {
 public:
  explicit FlowAccumulator(FlowAccumulatorOptions options);

  // A probe's view of an allowed flow: a birth, a drained sample or an end (FIN/RST seen).
  void observe(const FlowTuple& t, const FlowCounts& cumulative, bool ended, int64_t now_us);
  // Denied traffic: `packets`/`bytes` more (0 packets: a connect() refused before any packet),
  // named by `reason` ("egress_default_deny"). Denies of one destination are one flow whatever
  // the source port (BPF refuses connect() before a port is bound; nft sees the bound port).
  void deny(const FlowTuple& t, uint64_t packets, uint64_t bytes, const std::string& reason,
            int64_t now_us);
  // A kernel entry standing for denied traffic (BPF enforcement), with its cumulative counts:
  // what is new since its previous sample goes to deny() (the first sample reports at once).
  void denied_sample(const FlowTuple& t, uint64_t packets, uint64_t bytes,
                     const std::string& reason, int64_t now_us);
  // Reports every flow with new counts whose last report is report_interval old.
  void tick(int64_t now_us);
  void add_lost_records(uint64_t n) { lost_records_ += n; }
  void add_nflog_gaps(uint64_t n) { nflog_gaps_ += n; }
  // Reports everything not yet reported (phase "end") and returns the cell's summary. Call
  // after the cell's processes are gone and the kernel map was drained one last time.
  sinks::FlowSummaryData finish(int64_t now_us);

  size_t flows() const { return flows_.size(); }

 private:
  struct Flow {
    FlowTuple tuple;
    bool denied = false;
    std::string reason;
    FlowCounts seen;      // cumulative, as far as known (including before evictions)
    FlowCounts reported;  // what earlier reports covered
    FlowCounts kernel;    // the kernel's last cumulative view (resets on eviction)
    int64_t last_report_us = 0;
    bool ended = false, end_reported = false;
  };
  bool has_news(const Flow& f) const;
  void report(Flow& f, const char* phase, int64_t now_us);

  FlowAccumulatorOptions opts_;
  std::unordered_map<FlowTuple, Flow, FlowTupleHash> flows_;
  struct DenySeen {
    uint64_t packets = 0, bytes = 0;
  };
  std::unordered_map<FlowTuple, DenySeen, FlowTupleHash> deny_kernel_;
  uint64_t lost_records_ = 0, nflog_gaps_ = 0, evicted_ = 0;
};

// "10.0.0.1" / "fd00::1" for a tuple address.
std::string address_text(uint8_t family, const std::array<uint8_t, 16>& addr);
// "tcp", "udp" or the protocol number.
std::string protocol_text(uint8_t protocol);

}  // namespace cellos::flows
