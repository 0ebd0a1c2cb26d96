// flow_bench's results: one Row per mode x probes (medians over --repeat runs), and the three
// outputs made from them: results.csv, gnuplot figures (PNG + SVG) and summary.md.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cellos::flowbench {

// One run of the daemon, or (after combine()) the median of a row's runs. Doubles so that
// "unknown" can be NaN and print as "?"; counts that must be exact stay exact in doubles.
struct Row {
  std::string mode;  // none | nft | bpf | both
  bool probes = false;
  bool ok = false;
  std::string error;  // one line: why the run failed (the reactor's own words when it has some)
  std::string note;   // what the log said about the probes (flow_probes event), warnings
  int runs = 0;
  std::string enforcement_reported;  // the flow_probes event's `enforcement`; empty: no event

  double cells = 0, conns = 0, conns_failed = 0;
  double conns_per_s = 0, tcp_bytes = 0, server_bytes = 0, server_conns = 0, throughput_Bps = 0;
  double p50_us = 0, p99_us = 0, added_p50_us = 0, added_p99_us = 0;
  double reactor_cpu_ns = 0, flows = 0, cpu_ns_per_flow = 0;
  double host_cpu_ns = 0, packets = 0, host_ns_per_conn = 0, host_ns_per_packet = 0;
  double wall_s = 0, flow_events = 0, events_per_s = 0;
  double lost = 0;                 // lostRecords + nflogGaps + evictedFlows; NaN: not reported
  double tcp_flows_ev = 0, tcp_tx_bytes_ev = 0, tcp_rx_bytes_ev = 0;
  double udp_sent = 0, udp_server = 0, udp_pps = 0, udp_tx_packets_ev = 0, udp_tx_bytes_ev = 0;
  double udp_bytes = 0;
};

// Median of each metric over one row's runs; failed if any run failed (its error kept).
Row combine(const std::vector<Row>& runs);

struct ReportOptions {
  std::string out_dir;
  std::string reproduce;  // the command line, absolute paths
  double udp_target_pps = 500000;
  std::string machine;    // one line: kernel, CPUs, load
};

void write_csv(const std::vector<Row>& rows, const std::string& path);
// Runs gnuplot; returns what was written, or why nothing was ("gnuplot not found").
std::string write_plots(const std::vector<Row>& rows, const std::string& out_dir);
// Prints the table and the PASS/MISS lines to stdout as well.
void write_summary(const std::vector<Row>& rows, const ReportOptions& o);

}  // namespace cellos::flowbench
