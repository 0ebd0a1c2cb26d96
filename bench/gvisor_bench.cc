// gvisor_bench: what a gVisor cell costs against a native one, and the reactor's overhead over
// runsc driving the same OCI bundle directly, in one run.
//
//   gvisor_bench [-n 40] [--warmup 3] [--parallel 8] [--csv FILE]
//
// Interleaves, in one process, N rounds of /bin/true as:
//   native   one cell through the reactor on the native backend (Supervisor::add + run)
//   gvisor   the same cell with spec.run.backend = "gvisor": runsc in the cell's leaf
//   runsc    `runsc run` of an OCI bundle of the same view (oci_bundle.h), fork/exec/wait,
//            no reactor, no cgroup leaf: the peer, gVisor's own cost
//   runsc+cg the peer again, in a cgroup leaf with a cell's default limits (what the limits
//            cost runsc, apart from the reactor)
// then, for throughput, --parallel cells at once on each backend (cells per second).
// Prints median and p99 per row, the ratios gvisor/native and gvisor/runsc, and the command
// that reproduces it.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "bench/bench_stats.h"
#include "bench/report_line.h"
#include "cells/cgroup.h"
#include "cells/config.h"
#include "cells/gvisor_backend.h"
#include "cells/oci_bundle.h"
#include "cells/root_view.h"
#include "reactor/supervisor.h"

namespace {

using Clock = std::chrono::steady_clock;
using cellos::bench::ms_since;
using cellos::bench::stats;
namespace fs = std::filesystem;

int fail(const std::string& what) {
  std::fprintf(stderr, "gvisor_bench: %s\n", what.c_str());
  return 1;
}

// `runsc run` of the bundle in `dir`, output to /dev/null; its exit status. With `leaf`, the
// child first writes the leaf's limits and joins it in every hierarchy, as a cell's helper does.
int runsc_once(const cellos::cells::Config& config, const std::string& dir, int i,
               const cellos::cells::CgroupLeaf* leaf = nullptr) {
  const std::string root = dir + "/root-" + std::to_string(i);
  fs::create_directories(root);
  auto args = cellos::cells::runsc_argv(config, root, dir + "/bundle", "peer-" + std::to_string(i),
                                        false);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    if (leaf) {
      auto put = [](int at, const std::string& path, const std::string& value) {
        int fd = ::openat(at, path.c_str(), O_WRONLY);
        if (fd < 0 || ::write(fd, value.data(), value.size()) < 0) ::_exit(125);
        ::close(fd);
      };
      for (const auto& w : leaf->writes()) put(AT_FDCWD, w.path, w.value);
      for (const auto& v1 : leaf->v1_procs_paths()) put(AT_FDCWD, v1, "0");
      put(leaf->v2_dirfd(), "cgroup.procs", "0");
    }
    int null = ::open("/dev/null", O_RDWR);
    ::dup2(null, 0), ::dup2(null, 1), ::dup2(null, 2);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  std::error_code ec;
  fs::remove_all(root, ec);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

}  // namespace

int main(int argc, char** argv) {
  int n = 40, warmup = 3, parallel = 8;
  std::string csv;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-n" && i + 1 < argc) n = std::atoi(argv[++i]);
    else if (a == "--warmup" && i + 1 < argc) warmup = std::atoi(argv[++i]);
    else if (a == "--parallel" && i + 1 < argc) parallel = std::atoi(argv[++i]);
    else if (a == "--csv" && i + 1 < argc) csv = argv[++i];
    else return fail("usage: gvisor_bench [-n N] [--warmup N] [--parallel K] [--csv FILE]");
  }
  if (n < 1 || parallel < 1) return fail("-n and --parallel must be >= 1");

  char tmpl[] = "/var/tmp/cellos-gvisor-bench-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return fail("mkdtemp failed");
  const std::string dir = tmpl;
  struct RemoveDir {
    std::string path;
    ~RemoveDir() { std::filesystem::remove_all(path); }
  } remove_dir{dir};
  cellos::cells::Config config = cellos::cells::default_config();
  config.host.id = "bench-gvisor";
  config.host.state_dir = dir + "/state";
  config.policy.allowed_backends = {"native", "gvisor"};
  fs::create_directories(config.host.state_dir);

  // The peer's bundle: the one a gVisor cell of /bin/true runs from (the same view, and the
  // same env(1) -i start that keeps the environment exact: gvisor_backend.cc).
  fs::create_directories(dir + "/bundle/rootfs");
  cellos::cells::OciBundleOptions b;
  b.argv = {"/usr/bin/env", "-i", "PATH=/usr/local/bin:/usr/bin:/bin", "/bin/true"};
  b.env = {"PATH=/usr/local/bin:/usr/bin:/bin"};
  b.workdir = "/work";
  b.hostname = "peer";
  b.uid = b.gid = 200000;
  b.host_paths = cellos::cells::root_view_paths(config.policy);
  auto json = cellos::cells::oci_config_json(b);
  if (!json) return fail(json.error().message());
  std::ofstream(dir + "/bundle/config.json") << *json;

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
  int seq = 0;
  auto add_cell = [&](const char* backend) {
    cellos::cells::CellOptions co;
    co.spec.id = "bench-" + std::to_string(seq++);
    co.spec.run.argv = {"/bin/true"};
    co.spec.run.backend = backend;
    co.env = {"PATH=/usr/local/bin:/usr/bin:/bin"};
    co.run_id = "bench";
    sup->add(std::move(co));
  };
  auto cells_once = [&](const char* backend, int count) {
    for (int k = 0; k < count; ++k) add_cell(backend);
    return sup->run_until_idle().ok();
  };

  // The peer in a leaf of its own with a cell's default limits: what the limits cost runsc
  // (memory accounting of the Sentry's memory above all), apart from the reactor.
  auto leaf_once = [&](int i) {
    auto leaf = (*host)->cgroups().create_leaf(
        "peer-" + std::to_string(i),
        {config.policy.default_limits.memory_max_bytes, config.policy.default_limits.pids_max + 256,
         std::nullopt});
    if (!leaf) {
      fail(leaf.error().message());
      return 125;
    }
    int st = runsc_once(config, dir, i, &*leaf);
    for (int tries = 0; tries < 2000 && !leaf->remove().ok(); ++tries) ::usleep(1000);
    return st;
  };

  std::vector<double> native_ms, gvisor_ms, runsc_ms, leaf_ms;
  for (int i = 0; i < warmup + n; ++i) {
    double t[4] = {0, 0, 0, 0};
    for (int k = 0; k < 4; ++k) {
      const int which = (i + k) % 4;  // rotate the order: drift falls on every row alike
      auto t0 = Clock::now();
      if (which == 0) {
        if (!cells_once("native", 1)) return fail("reactor: the ring failed");
      } else if (which == 1) {
        if (!cells_once("gvisor", 1)) return fail("reactor: the ring failed");
      } else if (which == 2) {
        if (int st = runsc_once(config, dir, i); st != 0)
          return fail("runsc run of the peer bundle exited " + std::to_string(st));
      } else if (int st = leaf_once(i); st != 0) {
        return fail("runsc run of the peer bundle in a leaf exited " + std::to_string(st));
      }
      t[which] = ms_since(t0);
    }
    if (failures != 0)
      return fail("a cell did not exit 0 (run `cellos-reactor run` with [cells] backend = "
                  "\"gvisor\" to see why)");
    if (i >= warmup)
      native_ms.push_back(t[0]), gvisor_ms.push_back(t[1]), runsc_ms.push_back(t[2]),
          leaf_ms.push_back(t[3]);
  }
  // Throughput: `parallel` cells at once, three batches per backend, best kept.
  double native_rate = 0, gvisor_rate = 0;
  for (int round = 0; round < 3; ++round)
    for (const char* backend : {"native", "gvisor"}) {
      auto t0 = Clock::now();
      if (!cells_once(backend, parallel)) return fail("reactor: the ring failed");
      double rate = parallel / (ms_since(t0) / 1000.0);
      double& best = std::string(backend) == "native" ? native_rate : gvisor_rate;
      best = std::max(best, rate);
    }
  if (failures != 0) return fail("a parallel cell did not exit 0");
  (*host)->cgroups().remove_empty_parents();

  auto ns = stats(native_ms), gs = stats(gvisor_ms), rs = stats(runsc_ms), ls = stats(leaf_ms);
  std::printf("gvisor_bench: %d rounds of /bin/true per row, in one process, interleaved "
              "(runsc %s, platform %s)\n\n",
              n, config.cells.runsc.c_str(), config.cells.gvisor_platform.c_str());
  std::printf("%-8s %10s %10s %10s\n", "row", "median ms", "p99 ms", "mean ms");
  std::printf("%-8s %10.3f %10.3f %10.3f\n", "native", ns.median, ns.p99, ns.mean);
  std::printf("%-8s %10.3f %10.3f %10.3f\n", "gvisor", gs.median, gs.p99, gs.mean);
  std::printf("%-8s %10.3f %10.3f %10.3f\n", "runsc", rs.median, rs.p99, rs.mean);
  std::printf("%-8s %10.3f %10.3f %10.3f\n", "runsc+cg", ls.median, ls.p99, ls.mean);
  std::printf("\ngvisor/native median %7.2f   (what choosing gVisor costs per cell)\n",
              gs.median / ns.median);
  std::printf("gvisor/runsc median  %7.2f   (the reactor's overhead over runsc itself; target <= 1.2)\n",
              gs.median / rs.median);
  std::printf("gvisor/runsc+cg      %7.2f   (the same, the peer in a leaf with a cell's limits)\n",
              gs.median / ls.median);
  std::printf("throughput, %d cells at once: native %.1f cells/s, gvisor %.1f cells/s\n", parallel,
              native_rate, gvisor_rate);
  std::printf("reproduce: %s -n %d --warmup %d --parallel %d\n", argv[0], n, warmup, parallel);
  if (!csv.empty()) {
    std::ofstream out(csv);
    out << "row,iteration,ms\n";
    for (size_t i = 0; i < native_ms.size(); ++i)
      out << "native," << i << "," << native_ms[i] << "\ngvisor," << i << "," << gvisor_ms[i]
          << "\nrunsc," << i << "," << runsc_ms[i] << "\nrunsc+cg," << i << "," << leaf_ms[i]
          << "\n";
  }
  // The line bench/report.py reads.
  cellos::bench::ReportLine rep("gvisor");
  for (const auto& [name, s] : std::vector<std::pair<const char*, cellos::bench::Stats>>{
           {"native", ns}, {"gvisor", gs}, {"runsc", rs}, {"runsc+cg", ls}})
    rep.row(name, {{"median ms", s.median}, {"p99 ms", s.p99}, {"mean ms", s.mean}});
  rep.metric("gvisor/native median", gs.median / ns.median, "x")
      .metric("gvisor/runsc median", gs.median / rs.median, "x", "<= 1.2", gs.median / rs.median <= 1.2)
      .metric("gvisor/runsc+cg median", gs.median / ls.median, "x")
      .metric("native cells/s, " + std::to_string(parallel) + " at once", native_rate, "cells/s")
      .metric("gvisor cells/s, " + std::to_string(parallel) + " at once", gvisor_rate, "cells/s")
      .field("n", n)
      .field("reproduce", std::string(argv[0]) + " -n " + std::to_string(n) + " --warmup " +
                              std::to_string(warmup) + " --parallel " + std::to_string(parallel));
  if (!csv.empty()) rep.field("samples", std::filesystem::absolute(csv).string());
  rep.print();
  return 0;
}
