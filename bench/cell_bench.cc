// cell_bench: what one isolated /bin/true costs inside a running reactor, without process
// start-up. The companion of spawn_bench, which measures whole `cellos-reactor run` commands.
//
//   cell_bench [-n 500] [--warmup 20] [--csv FILE]
//
// Interleaves, in one process, N rounds of:
//   floor    clone3(CLONE_PIDFD | NEWNS | NEWPID | NEWIPC | NEWUTS | NEWNET), exec /bin/true,
//            waitid(P_PIDFD): the kernel's floor, as spawn_floor does it
//   reactor  one cell through the reactor (Supervisor::add + run_until_idle): lock, events,
//            cgroup leaf with limits, clone3 into the cgroup, the cell's init and mounts,
//            credentials, seccomp, exec, reap, teardown
// and prints the median and p99 of each and their ratio. The difference is what the isolation
// and supervision cost per cell, which is what a fleet daemon pays for every cell it runs.
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "bench/bench_stats.h"
#include "bench/floor_spawn.h"
#include "bench/report_line.h"
#include "cells/cgroup.h"
#include "cells/config.h"
#include "reactor/supervisor.h"
#include "reactor/event_log_config.h"

namespace {

using Clock = std::chrono::steady_clock;

using cellos::bench::ms_since;
using cellos::bench::stats;

int fail(const std::string& what) {
  std::fprintf(stderr, "cell_bench: %s\n", what.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  int n = 500, warmup = 20;
  std::string csv;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-n" && i + 1 < argc) n = std::atoi(argv[++i]);
    else if (a == "--warmup" && i + 1 < argc) warmup = std::atoi(argv[++i]);
    else if (a == "--csv" && i + 1 < argc) csv = argv[++i];
    else return fail("usage: cell_bench [-n N] [--warmup N] [--csv FILE]");
  }
  if (n < 1) return fail("-n must be >= 1");

  char tmpl[] = "/tmp/cellos-cell-bench-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return fail("mkdtemp failed");
  const std::string dir = tmpl;
  // Removed on every way out, failures included.
  struct RemoveDir {
    std::string path;
    ~RemoveDir() { std::filesystem::remove_all(path); }
  } remove_dir{dir};
  cellos::cells::Config config = cellos::cells::default_config();
  config.host.id = "bench-inproc";
  config.host.state_dir = dir + "/state";
  std::filesystem::create_directories(config.host.state_dir);

  // Events are built, rendered, hashed and batched as in `run`; the file is /dev/null.
  cellos::reactor::HostOptions ho;
  ho.config = &config;
  ho.events_path = "/dev/null";
  ho.cgroups = cellos::reactor::cgroup_placement_for_run(config);
  auto host = cellos::reactor::Host::create(std::move(ho));
  if (!host) return fail(host.error().message());
  int failures = 0;
  auto sup = std::make_unique<cellos::reactor::Supervisor>(
      **host, cellos::reactor::SupervisorOptions{[&](const cellos::cells::Cell& c) {
        if (c.outcome().exit_status() != 0) ++failures;
      }});

  auto cell_once = [&](int i) {
    cellos::cells::CellOptions co;
    co.spec.id = "bench-" + std::to_string(i);
    co.spec.run.argv = {"/bin/true"};
    co.env = {"PATH=/usr/local/bin:/usr/bin:/bin"};
    co.run_id = "bench";
    sup->add(std::move(co));
    return sup->run_until_idle().ok();
  };

  std::vector<double> floor_ms, cell_ms;
  for (int i = 0; i < warmup + n; ++i) {
    // Alternate which goes first, so drift and teardown spill-over fall on both alike.
    double f = 0, c = 0;
    for (int k = 0; k < 2; ++k) {
      auto t0 = Clock::now();
      if ((i + k) % 2 == 0) {
        if (cellos::bench::floor_spawn_once() != 0) return fail("floor: clone3/exec/waitid failed");
        f = ms_since(t0);
      } else {
        if (!cell_once(i)) return fail("reactor: the ring failed");
        c = ms_since(t0);
      }
    }
    if (failures != 0) return fail("reactor: a cell did not exit 0 (run cellos-reactor run to see why)");
    if (i >= warmup) floor_ms.push_back(f), cell_ms.push_back(c);
  }
  (*host)->cgroups().remove_empty_parents();

  auto fs = stats(floor_ms), cs = stats(cell_ms);
  std::printf("cell_bench: %d isolated /bin/true per row, in one process, interleaved\n\n", n);
  std::printf("%-8s %10s %10s %10s\n", "row", "median ms", "p99 ms", "mean ms");
  std::printf("%-8s %10.3f %10.3f %10.3f\n", "floor", fs.median, fs.p99, fs.mean);
  std::printf("%-8s %10.3f %10.3f %10.3f\n", "reactor", cs.median, cs.p99, cs.mean);
  std::printf("\nreactor/floor median %6.2f   (per-cell cost of isolation and supervision)\n",
              cs.median / fs.median);
  std::printf("reproduce: %s -n %d --warmup %d\n", argv[0], n, warmup);
  if (!csv.empty()) {
    std::ofstream out(csv);
    out << "row,iteration,ms\n";
    for (size_t i = 0; i < floor_ms.size(); ++i)
      out << "floor," << i << "," << floor_ms[i] << "\nreactor," << i << "," << cell_ms[i] << "\n";
  }
  // The line bench/report.py reads.
  cellos::bench::ReportLine rep("cell");
  rep.row("floor", {{"median ms", fs.median}, {"p99 ms", fs.p99}, {"mean ms", fs.mean}})
      .row("reactor", {{"median ms", cs.median}, {"p99 ms", cs.p99}, {"mean ms", cs.mean}})
      .metric("reactor/floor median", cs.median / fs.median, "x")
      .field("n", n)
      .field("reproduce", std::string(argv[0]) + " -n " + std::to_string(n) + " --warmup " +
                              std::to_string(warmup));
  if (!csv.empty()) rep.field("samples", std::filesystem::absolute(csv).string());
  rep.print();
  return 0;
}
