#include "bench/flow_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace cellos::flowbench {
namespace {

// Every numeric field of a Row, named once: CSV header, CSV values and combine() agree.
struct Field {
  const char* name;
  double Row::*p;
};
constexpr Field kFields[] = {
    {"cells", &Row::cells},
    {"conns", &Row::conns},
    {"conns_failed", &Row::conns_failed},
    {"conns_per_s", &Row::conns_per_s},
    {"client_tcp_bytes", &Row::tcp_bytes},
    {"server_tcp_bytes", &Row::server_bytes},
    {"server_conns", &Row::server_conns},
    {"throughput_bytes_per_s", &Row::throughput_Bps},
    {"connect_p50_us", &Row::p50_us},
    {"connect_p99_us", &Row::p99_us},
    {"added_p50_us", &Row::added_p50_us},
    {"added_p99_us", &Row::added_p99_us},
    {"reactor_cpu_ns", &Row::reactor_cpu_ns},
    {"flows", &Row::flows},
    {"reactor_cpu_ns_per_flow", &Row::cpu_ns_per_flow},
    {"host_cpu_ns", &Row::host_cpu_ns},
    {"packets", &Row::packets},
    {"host_cpu_ns_per_conn", &Row::host_ns_per_conn},
    {"host_cpu_ns_per_packet", &Row::host_ns_per_packet},
    {"wall_s", &Row::wall_s},
    {"flow_events", &Row::flow_events},
    {"events_per_s", &Row::events_per_s},
    {"lost_records", &Row::lost},
    {"tcp_flows_in_events", &Row::tcp_flows_ev},
    {"tcp_tx_bytes_in_events", &Row::tcp_tx_bytes_ev},
    {"tcp_rx_bytes_in_events", &Row::tcp_rx_bytes_ev},
    {"udp_sent", &Row::udp_sent},
    {"udp_sent_bytes", &Row::udp_bytes},
    {"udp_server_received", &Row::udp_server},
    {"udp_pps", &Row::udp_pps},
    {"udp_tx_packets_in_events", &Row::udp_tx_packets_ev},
    {"udp_tx_bytes_in_events", &Row::udp_tx_bytes_ev},
};

std::string num(double v, int decimals = 0) {
  if (std::isnan(v) || std::isinf(v)) return "?";
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", decimals, v);
  return b;
}

std::string csv_text(const std::string& s) {
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

const Row* find(const std::vector<Row>& rows, const std::string& mode, bool probes) {
  for (const auto& r : rows)
    if (r.mode == mode && r.probes == probes && r.ok) return &r;
  return nullptr;
}

}  // namespace

Row combine(const std::vector<Row>& runs) {
  Row out = runs.front();
  out.runs = static_cast<int>(runs.size());
  for (const auto& r : runs)
    if (!r.ok) {
      out.ok = false, out.error = r.error;
      break;
    }
  for (const Field& f : kFields) {
    std::vector<double> v;
    bool unknown = false;
    for (const auto& r : runs) {
      if (std::isnan(r.*f.p)) unknown = true;
      else v.push_back(r.*f.p);
    }
    std::sort(v.begin(), v.end());
    out.*f.p = v.empty() ? NAN : v[v.size() / 2];
    // Lost records are summed, not medianed (one lost record in any run is a miss), and
    // unknown in any run is unknown.
    if (f.p == &Row::lost) {
      double sum = 0;
      for (double x : v) sum += x;
      out.lost = unknown ? NAN : sum;
    }
  }
  return out;
}

void write_csv(const std::vector<Row>& rows, const std::string& path) {
  std::ofstream out(path);
  out << "mode,probes,status,runs";
  for (const Field& f : kFields) out << ',' << f.name;
  out << ",error,note\n";
  for (const auto& r : rows) {
    out << r.mode << ',' << (r.probes ? "on" : "off") << ',' << (r.ok ? "ok" : "failed") << ',' << r.runs;
    // A failed row's numbers describe a broken run: "?" here, the per-run values stay in runs.csv.
    for (const Field& f : kFields) out << ',' << (r.ok ? num(r.*f.p, 3) : std::string("?"));
    out << ',' << csv_text(r.error) << ',' << csv_text(r.note) << '\n';
  }
}

std::string write_plots(const std::vector<Row>& rows, const std::string& dir) {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0)
    return "none (gnuplot not found: apt-get install gnuplot-nox, see scripts/install-deps.sh)";
  if (std::none_of(rows.begin(), rows.end(), [](const Row& r) { return r.ok; })) return "none (no row succeeded)";
  // One line per mode, columns: probes on / off for each metric; failed rows are "?" (gaps).
  std::ofstream dat(dir + "/plot.dat");
  dat << "# mode conns_on conns_off p50_on p50_off p99_on p99_off cpu_on cpu_off\n";
  std::vector<std::string> modes;
  for (const auto& r : rows)
    if (std::find(modes.begin(), modes.end(), r.mode) == modes.end()) modes.push_back(r.mode);
  for (const auto& m : modes) {
    const Row* on = find(rows, m, true);
    const Row* off = find(rows, m, false);
    auto v = [](const Row* r, double Row::*p, int d) { return r ? num(r->*p, d) : std::string("?"); };
    dat << m << ' ' << v(on, &Row::conns_per_s, 1) << ' ' << v(off, &Row::conns_per_s, 1) << ' '
        << v(on, &Row::p50_us, 2) << ' ' << v(off, &Row::p50_us, 2) << ' ' << v(on, &Row::p99_us, 2) << ' '
        << v(off, &Row::p99_us, 2) << ' ' << v(on, &Row::cpu_ns_per_flow, 0) << ' '
        << v(off, &Row::cpu_ns_per_flow, 0) << '\n';
  }
  dat.close();
  std::ofstream gp(dir + "/plots.gp");
  gp << "set datafile missing '?'\nset style data histograms\nset style histogram clustered gap 1\n"
        "set style fill solid 0.8 border -1\nset boxwidth 0.9\nset grid ytics\nset key top left\n"
        "set yrange [0:*]\nset xlabel 'enforcement mode'\n";
  struct Plot {
    const char *file, *title, *ylabel, *using_;
  };
  const Plot plots[] = {
      {"conns_per_s", "TCP connections/s (N cells in parallel)", "connections/s",
       "using 2:xtic(1) title 'probes on', '' using 3 title 'probes off'"},
      {"connect_latency", "connect() latency in the cells", "microseconds",
       "using 4:xtic(1) title 'p50 probes on', '' using 5 title 'p50 probes off', '' using 6 title 'p99 probes on', "
       "'' using 7 title 'p99 probes off'"},
      {"reactor_cpu_per_flow", "reactor CPU per flow (reactor thread + io-wq)", "ns per flow",
       "using 8:xtic(1) title 'probes on', '' using 9 title 'probes off'"},
  };
  std::string written;
  // pngcairo where gnuplot has it (gnuplot-nox does); the libgd png terminal otherwise.
  bool cairo = std::system("gnuplot -e 'set terminal' 2>&1 | grep -q pngcairo") == 0;
  for (const Plot& p : plots) {
    for (const char* ext : {"png", "svg"}) {
      std::string term = std::string(ext) == "svg" ? "svg size 800,480 dynamic background rgb 'white'"
                                                    : (cairo ? "pngcairo size 800,480" : "png size 800,480");
      gp << "set terminal " << term << "\nset output '" << dir << '/' << p.file << '.' << ext << "'\n"
         << "set title \"" << p.title << "\"\nset ylabel '" << p.ylabel << "'\n"
         << "plot '" << dir << "/plot.dat' " << p.using_ << "\n";
      written += std::string(written.empty() ? "" : ", ") + p.file + "." + ext;
    }
  }
  gp.close();
  if (std::system(("gnuplot '" + dir + "/plots.gp' 2>'" + dir + "/gnuplot.err'").c_str()) != 0) {
    std::ifstream e(dir + "/gnuplot.err");
    std::string line;
    std::getline(e, line);
    return "none (gnuplot failed: " + line + ")";
  }
  return written;
}

void write_summary(const std::vector<Row>& rows, const ReportOptions& o) {
  std::ostringstream md;
  md << "# Per-flow enforcement benchmark\n\n" << o.machine << ".\n\n"
     << "| mode | probes | status | conns/s | MB/s | connect p50 µs | p99 µs | added p50 / p99 µs | reactor ns/flow "
        "| flow events/s | lost | UDP pps | UDP pkts: sent / in events / server |\n"
     << "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n";
  for (const auto& r : rows) {
    if (!r.ok) {
      md << "| " << r.mode << " | " << (r.probes ? "on" : "off") << " | **failed**: " << r.error
         << " | | | | | | | | | | |\n";
      continue;
    }
    md << "| " << r.mode << " | " << (r.probes ? "on" : "off") << " | ok | " << num(r.conns_per_s) << " | "
       << num(r.throughput_Bps / 1e6, 1) << " | " << num(r.p50_us, 1) << " | " << num(r.p99_us, 1) << " | "
       << num(r.added_p50_us, 1) << " / " << num(r.added_p99_us, 1) << " | " << num(r.cpu_ns_per_flow) << " | "
       << num(r.events_per_s, 1) << " | " << (std::isnan(r.lost) ? "unknown" : num(r.lost)) << " | "
       << num(r.udp_pps) << " | " << num(r.udp_sent) << " / " << num(r.udp_tx_packets_ev) << " / "
       << num(r.udp_server) << " |\n";
  }
  md << "\nTCP bytes (client payload / server received / tx bytes in flow events): ";
  for (const auto& r : rows)
    if (r.ok)
      md << r.mode << (r.probes ? "+probes" : "") << " " << num(r.tcp_bytes) << " / " << num(r.server_bytes) << " / "
         << num(r.tcp_tx_bytes_ev) << (r.tcp_bytes == r.server_bytes ? "" : " **(client and server disagree)**")
         << "; ";
  md << "\n\nNotes from the runs (flow_probes events, client errors):\n\n";
  for (const auto& r : rows)
    if (!r.note.empty()) md << "- " << r.mode << (r.probes ? " probes on" : " probes off") << ": " << r.note << "\n";

  // The targets.
  md << "\n## Targets\n\n";
  // 1. Zero lost flow counts at the UDP target rate, with probes on: achieved rate, lost
  //    records reported as 0, and the UDP packets in the flow events exactly what was sent.
  for (const auto& r : rows) {
    if (!r.probes) continue;
    std::string verdict, why;
    if (!r.ok) verdict = "MISS", why = "run failed: " + r.error;
    else {
      std::vector<std::string> miss;
      if (!(r.udp_pps >= o.udp_target_pps)) miss.push_back("achieved " + num(r.udp_pps) + " pps of " + num(o.udp_target_pps) + " (the sender is paced to the target; lower means the path or the CPUs could not carry it)");
      if (std::isnan(r.lost)) miss.push_back("lost records unknown (destroyed events carry no flows.lostRecords/nflogGaps/evictedFlows)");
      else if (r.lost != 0) miss.push_back(num(r.lost) + " lost records");
      if (r.udp_tx_packets_ev != r.udp_sent)
        miss.push_back("flow events count " + num(r.udp_tx_packets_ev) + " UDP packets of " + num(r.udp_sent) + " sent (diff " + num(r.udp_tx_packets_ev - r.udp_sent) + ")");
      if (r.tcp_flows_ev != r.conns)
        miss.push_back("flow events show " + num(r.tcp_flows_ev) + " TCP flows of " + num(r.conns) + " connections");
      verdict = miss.empty() ? "PASS" : "MISS";
      for (const auto& m : miss) why += (why.empty() ? "" : "; ") + m;
    }
    md << "- zero lost flow counts at " << num(o.udp_target_pps) << " pps, mode " << r.mode << ": **" << verdict << "**"
       << (why.empty() ? "" : " — " + why) << "\n";
  }
  // 2. BPF connect-time enforcement cheaper per connection than nft: added connect latency
  //    (vs none) with probes off, so only the enforcement differs; host CPU per connection too.
  {
    const Row* b = find(rows, "bpf", false);
    const Row* n = find(rows, "nft", false);
    const Row* z = find(rows, "none", false);
    md << "- BPF connect-time enforcement cheaper per connection than nft: ";
    if (!b || !n || !z) md << "**UNKNOWN** — needs ok rows none, nft and bpf with probes off\n";
    else if (b->enforcement_reported != "bpf")
      md << "**UNVERIFIED** — the bpf run's log has no flow_probes event saying enforcement \"bpf\" ran"
         << (b->enforcement_reported.empty() ? "" : " (it says \"" + b->enforcement_reported + "\")")
         << ", so its numbers may be another mode's: added connect p50 bpf " << num(b->added_p50_us, 1)
         << " µs vs nft " << num(n->added_p50_us, 1) << " µs\n";
    else
      md << "**" << (b->added_p50_us < n->added_p50_us ? "PASS" : "MISS") << "** — added connect p50 bpf "
         << num(b->added_p50_us, 1) << " µs vs nft " << num(n->added_p50_us, 1) << " µs (p99 " << num(b->added_p99_us, 1)
         << " vs " << num(n->added_p99_us, 1) << "); host CPU per connection bpf " << num(b->host_ns_per_conn / 1e3, 1)
         << " µs vs nft " << num(n->host_ns_per_conn / 1e3, 1) << " µs (none " << num(z->host_ns_per_conn / 1e3, 1) << ")\n";
  }
  // 3. Probe cost per packet per hook: an estimate from whole-host CPU (probes on - off) per
  //    packet over the two cgroup_skb hooks. Noisy on a shared VM; flow_probe_bench measures it.
  for (const std::string m : {"none", "nft", "bpf", "both"}) {
    const Row* on = find(rows, m, true);
    const Row* off = find(rows, m, false);
    if (!on || !off) continue;
    double est = (on->host_ns_per_packet - off->host_ns_per_packet) / 2;
    md << "- probe cost ≤ 250 ns per packet per hook, mode " << m << ": estimate " << num(est, 0)
       << " ns (whole-host CPU per packet, probes on − off, / 2 hooks; noisy — bench/flow_probe_bench is the "
          "measurement): ";
    // Without a sign that the probes ran, on − off is noise, not a probe cost.
    if (on->flow_events == 0 && on->enforcement_reported.empty())
      md << "**UNKNOWN** (no sign the probes ran: no flow events, no flow_probes event)\n";
    else
      md << "**" << (est <= 250 ? "PASS" : "MISS") << " (estimate)**\n";
  }
  md << "\nreproduce: `" << o.reproduce << "`\n";
  std::ofstream(o.out_dir + "/summary.md") << md.str();
  std::fputs(md.str().c_str(), stdout);
}

}  // namespace cellos::flowbench
