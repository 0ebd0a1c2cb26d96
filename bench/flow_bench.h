// flow_bench: the per-flow enforcement benchmark. One binary, three roles:
//   driver   (default)  builds the server's test host, runs the fleet daemon once per
//                       mode x probes, gathers results, writes CSV, plots and a summary;
//   --serve             the TCP/UDP sink, run by the driver inside the server's namespace;
//   --client            the load generator, run by the daemon as each cell's command.
// See bench/README.md ("flows") for what is measured and why.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace cellos::flowbench {

// What one client (one cell) did; printed as one JSON line on its stdout.
struct ClientOptions {
  std::string server;               // IPv4 address of the server's test host
  int tcp_port = 0, udp_port = 0;
  long conns = 100;                 // TCP connections, one after another
  long bytes = 65536;               // payload per connection
  long udp_packets = 0;             // datagrams this cell sends
  double udp_pps = 0;               // this cell's paced rate (0: as fast as it can)
  int udp_size = 64;                // payload bytes per datagram
  std::string go_file;              // start barrier: wait until this path exists
  int go_timeout_s = 120;
};

int run_client(const ClientOptions& o);

// The sink: listens on `ip` (ports chosen by the kernel), prints "ready TCP UDP\n" on stdout,
// then answers every line on stdin with the counts since the previous line (the counts of
// one run): "counts conns bytes datagrams udp_bytes\n". Exits at EOF on stdin.
int run_server(const std::string& ip);

// CLOCK_MONOTONIC in ns: clients and driver share it (cells get no time namespace).
int64_t mono_ns();

}  // namespace cellos::flowbench
