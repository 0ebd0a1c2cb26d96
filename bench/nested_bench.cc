// nested_bench: what a nested cell (spec.run.backend "nested", docs/nested.md) costs against a
// native cell of the same host reactor, in one run.
//
//   nested_bench [-n 20] [--warmup 2] [--csv FILE]
//
// Interleaves, in one process, N rounds of:
//   native      /bin/true as a cell of this reactor on the native backend (the peer)
//   nested      /bin/true as a nested cell: user namespace over a uid block, delegated cgroup
//               leaf, generated fleet.toml, signing key, the nested view
//   nested-run  a nested cell whose command runs `cellos-reactor run` of a /bin/true cell inside
//               (the whole latency of a cell at depth 1: the nested reactor's own start, its
//               cell, its log)
// Prints median and p99 per row, the ratios to native, and the command that reproduces it.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "bench/bench_stats.h"
#include "bench/report_line.h"
#include "cells/config.h"
#include "reactor/supervisor.h"

namespace {

using Clock = std::chrono::steady_clock;
using cellos::bench::ms_since;
using cellos::bench::stats;
namespace fs = std::filesystem;

int fail(const std::string& what) {
  std::fprintf(stderr, "nested_bench: %s\n", what.c_str());
  return 1;
}

// The nested cell's script: one inner spec, run by the nested reactor.
constexpr const char* kInnerRun =
    "cd /tmp\ncat > t.json <<'EOF'\n"
    "{\"apiVersion\":\"cellos.io/v1\",\"kind\":\"ExecutionCell\",\"spec\":{\"id\":\"inner\","
    "\"lifetime\":{\"ttlSeconds\":30},\"run\":{\"argv\":[\"/bin/true\"]}}}\nEOF\n"
    "exec /cellos/bin/cellos-reactor run t.json --config /cellos/fleet.toml >/dev/null";

}  // namespace

int main(int argc, char** argv) {
  int n = 20, warmup = 2;
  std::string csv;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-n" && i + 1 < argc) n = std::atoi(argv[++i]);
    else if (a == "--warmup" && i + 1 < argc) warmup = std::atoi(argv[++i]);
    else if (a == "--csv" && i + 1 < argc) csv = argv[++i];
    else return fail("usage: nested_bench [-n N] [--warmup N] [--csv FILE]");
  }
  if (n < 1) return fail("-n must be >= 1");
  if (::geteuid() != 0) return fail("needs root (user namespaces over host uids, cgroups)");

  char tmpl[] = "/var/tmp/cellos-nested-bench-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return fail("mkdtemp failed");
  const std::string dir = tmpl;
  struct RemoveDir {
    std::string path;
    ~RemoveDir() { std::filesystem::remove_all(path); }
  } remove_dir{dir};
  cellos::cells::Config config = cellos::cells::default_config();
  config.host.id = "bench-nested";
  config.host.state_dir = dir + "/state";
  config.policy.allowed_backends = {"native", "nested"};
  config.policy.nested.max_depth = 1;
  config.policy.nested.max_cells = 2;
  config.policy.nested.uid_block_size = 65536;
  config.policy.nested.uid_first = 300000000;
  config.policy.nested.uid_last = 300000000 + 2 * 65536 - 1;
  // The nested cells' reactor: cellos-reactor of this build (the bench binary is not one).
  config.policy.nested.reactor_binary =
      fs::canonical(fs::path(argv[0]).parent_path() / ".." / "cellos-reactor").string();
  fs::create_directories(config.host.state_dir);

  cellos::reactor::HostOptions ho;
  ho.config = &config;
  // A real log, as a host has: a nested cell's sub-log is sealed into it at the cell's end
  // (docs/nested.md, Auditing), and that seal is part of what a nested cell costs.
  ho.events_path = dir + "/events.jsonl";
  ho.cgroups = cellos::reactor::cgroup_placement_for_run(config);
  auto host = cellos::reactor::Host::create(std::move(ho));
  if (!host) return fail(host.error().message());
  int failures = 0;
  std::string why;
  auto sup = std::make_unique<cellos::reactor::Supervisor>(
      **host, cellos::reactor::SupervisorOptions{[&](const cellos::cells::Cell& c) {
        if (c.outcome().exit_status() != 0) ++failures, why = c.outcome().error;
      }});
  int seq = 0;
  auto cell_once = [&](const char* backend, std::vector<std::string> argv) {
    cellos::cells::CellOptions co;
    co.spec.id = "bench-" + std::to_string(seq++);
    co.spec.run.argv = std::move(argv);
    co.spec.run.backend = backend;
    co.spec.ttl_seconds = 60;
    co.env = {"PATH=/usr/local/bin:/usr/bin:/bin"};
    co.run_id = "bench";
    sup->add(std::move(co));
    return sup->run_until_idle().ok();
  };

  std::vector<double> native_ms, nested_ms, run_ms;
  for (int i = 0; i < warmup + n; ++i) {
    double t[3] = {0, 0, 0};
    for (int k = 0; k < 3; ++k) {
      const int which = (i + k) % 3;  // rotate the order: drift falls on every row alike
      auto t0 = Clock::now();
      bool ok = which == 0   ? cell_once("native", {"/bin/true"})
                : which == 1 ? cell_once("nested", {"/bin/true"})
                             : cell_once("nested", {"/bin/sh", "-c", kInnerRun});
      if (!ok) return fail("reactor: the ring failed");
      t[which] = ms_since(t0);
    }
    if (failures != 0) return fail("a cell did not exit 0: " + why);
    if (i >= warmup) native_ms.push_back(t[0]), nested_ms.push_back(t[1]), run_ms.push_back(t[2]);
  }
  (*host)->cgroups().remove_empty_parents();

  auto ns = stats(native_ms), xs = stats(nested_ms), rs = stats(run_ms);
  std::printf("nested_bench: %d rounds per row, in one process, interleaved (nproc %ld)\n\n", n,
              ::sysconf(_SC_NPROCESSORS_ONLN));
  std::printf("%-11s %10s %10s %10s\n", "row", "median ms", "p99 ms", "mean ms");
  std::printf("%-11s %10.3f %10.3f %10.3f\n", "native", ns.median, ns.p99, ns.mean);
  std::printf("%-11s %10.3f %10.3f %10.3f\n", "nested", xs.median, xs.p99, xs.mean);
  std::printf("%-11s %10.3f %10.3f %10.3f\n", "nested-run", rs.median, rs.p99, rs.mean);
  std::printf("\nnested/native median     %7.2f   (what the nested backend's setup costs per cell)\n",
              xs.median / ns.median);
  std::printf("nested-run/native median %7.2f   (a cell at depth 1, its reactor's start included)\n",
              rs.median / ns.median);
  std::printf("reproduce: %s -n %d --warmup %d\n", argv[0], n, warmup);
  if (!csv.empty()) {
    std::ofstream out(csv);
    out << "row,iteration,ms\n";
    for (size_t i = 0; i < native_ms.size(); ++i)
      out << "native," << i << "," << native_ms[i] << "\nnested," << i << "," << nested_ms[i]
          << "\nnested-run," << i << "," << run_ms[i] << "\n";
  }
  cellos::bench::ReportLine rep("nested");
  for (const auto& [name, s] : std::vector<std::pair<const char*, cellos::bench::Stats>>{
           {"native", ns}, {"nested", xs}, {"nested-run", rs}})
    rep.row(name, {{"median ms", s.median}, {"p99 ms", s.p99}, {"mean ms", s.mean}});
  rep.metric("nested/native median", xs.median / ns.median, "x")
      .metric("nested-run/native median", rs.median / ns.median, "x")
      .field("n", n)
      .field("reproduce", std::string(argv[0]) + " -n " + std::to_string(n) + " --warmup " +
                              std::to_string(warmup));
  if (!csv.empty()) rep.field("samples", std::filesystem::absolute(csv).string());
  rep.print();
  return 0;
}
