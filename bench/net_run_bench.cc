// net_run_bench: what a networked cell costs through `cellos-reactor run`, against the same
// cell without egress.
//
//   net_run_bench --reactor PATH [-n 100] [--warmup 5] [--unpinned] [--before PATH] [--csv FILE]
//
// Interleaves, N rounds of (first command of each round alternating; with more than two rows,
// each round in a shuffled order):
//   plain    cellos-reactor run plain.json   /bin/true, no egress rule (loopback-only netns)
//   egress   cellos-reactor run egress.json  /bin/true, one egress rule (10.9.0.1:443/tcp; /bin/true
//            sends nothing): prepared netns, nft ruleset, nflog
//            listener, flow probes attached to the cell's cgroup, the end-of-cell flush
// and prints the median, p99 and mean of each and egress/plain (target <= 1.2). Both use one
// fleet.toml of the bench's own (host id, state dir in a mkdtemp directory, removed at the
// end); events go to /dev/null. The BPF object is pinned under a bpf_pin_dir of the bench's
// own (removed at the end), so the warm-up rounds include the one load a host pays and the
// measured ones reuse it, whatever other reactors on the host hold.
// --unpinned adds a third row: the egress cell with `[flows] bpf_pin_dir = ""` (a private BPF
// load per `run`, as before the pins), to show what the pins save.
// --before PATH adds the plain and egress rows of another build's reactor (a pin root of its
// own), interleaved with the same rounds: an A/B in one time window, which on a shared machine
// is the only comparison that means anything.
#include <fcntl.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "bench/bench_stats.h"
#include "bench/report_line.h"

extern char** environ;

namespace {

using cellos::bench::Clock;
using cellos::bench::ms_since;
using cellos::bench::stats;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "net_run_bench: %s\n", what.c_str());
  std::exit(1);
}

// One `run`, stdin/stdout/stderr on /dev/null; its exit status. `cpu_ms`: the user + system
// time of the `run` process and its children (the cell), from wait4: unlike wall time, it
// barely moves when other work shares the CPUs (kernel threads' work, e.g. a namespace's
// asynchronous cleanup, is not in it).
int run_once(const std::vector<std::string>& args, double* cpu_ms) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  for (int fd : {0, 1, 2}) posix_spawn_file_actions_addopen(&fa, fd, "/dev/null", O_RDWR, 0);
  pid_t pid;
  const int r = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (r != 0) return -1;
  int st = 0;
  rusage ru{};
  ::wait4(pid, &st, 0, &ru);
  *cpu_ms = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
            (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

}  // namespace

int main(int argc, char** argv) {
  int n = 100, warmup = 5;
  bool unpinned = false;
  std::string reactor, csv, before;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--reactor" && i + 1 < argc) reactor = argv[++i];
    else if (a == "-n" && i + 1 < argc) n = std::atoi(argv[++i]);
    else if (a == "--warmup" && i + 1 < argc) warmup = std::atoi(argv[++i]);
    else if (a == "--csv" && i + 1 < argc) csv = argv[++i];
    else if (a == "--unpinned") unpinned = true;
    else if (a == "--before" && i + 1 < argc) before = argv[++i];
    else die("usage: net_run_bench --reactor PATH [-n N] [--warmup N] [--unpinned] [--before PATH] [--csv FILE]");
  }
  if (reactor.empty() || n < 1) die("--reactor PATH is required, -n >= 1");
  reactor = std::filesystem::absolute(reactor).lexically_normal();
  if (!before.empty()) before = std::filesystem::absolute(before).lexically_normal();

  char tmpl[] = "/tmp/cellos-net-run-bench-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) die("mkdtemp");
  const std::string dir = tmpl;
  struct RemoveDir {
    std::string path;
    ~RemoveDir() { std::filesystem::remove_all(path); }
  } remove_dir{dir};
  const std::string host = "netrun" + std::to_string(::getpid());
  // The bench's own pin root (removed at the end, with the hook keeper's cgroup if the bench
  // made it): a reactor of another build, or a daemon holding the host's pins, would otherwise
  // make the measured runs load a private object (probe_pins.h).
  const std::string pins = "/sys/fs/bpf/cellos-net-run-bench-" + std::to_string(::getpid());
  const std::string cg2 = std::filesystem::exists("/sys/fs/cgroup/unified/cgroup.procs")
                              ? "/sys/fs/cgroup/unified"
                              : "/sys/fs/cgroup";
  const std::string keeper = cg2 + "/cellos/.bpf-keep";
  const bool had_keeper = std::filesystem::exists(keeper);
  struct RemovePins {
    std::string pins, keeper;
    bool keep_keeper;
    ~RemovePins() {
      std::error_code ec;
      std::filesystem::remove_all(pins, ec);  // unpinning detaches the keeper's links
      if (!keep_keeper) ::rmdir(keeper.c_str());
    }
  } remove_pins{pins, keeper, had_keeper}, remove_before_pins{pins + "-before", keeper, had_keeper};
  std::ofstream(dir + "/fleet.toml") << "[host]\nid = \"" << host << "\"\nstate_dir = \"" << dir
                                     << "/state\"\n[flows]\nbpf_pin_dir = \"" << pins << "\"\n";
  std::ofstream(dir + "/before.toml") << "[host]\nid = \"" << host << "\"\nstate_dir = \"" << dir
                                      << "/state\"\n[flows]\nbpf_pin_dir = \"" << pins
                                      << "-before\"\n";
  std::ofstream(dir + "/unpinned.toml") << "[host]\nid = \"" << host << "\"\nstate_dir = \"" << dir
                                        << "/state\"\n[flows]\nbpf_pin_dir = \"\"\n";
  std::ofstream(dir + "/plain.json")
      << R"({"apiVersion":"cellos.io/v1","kind":"ExecutionCell","spec":{"id":"plain",)"
      << R"("run":{"argv":["/bin/true"]}}})";
  std::ofstream(dir + "/egress.json")
      << R"({"apiVersion":"cellos.io/v1","kind":"ExecutionCell","spec":{"id":"egress",)"
      << R"("authority":{"egressRules":[{"host":"10.9.0.1","port":443,"protocol":"tcp"}]},)"
      << R"("run":{"argv":["/bin/true"]}}})";

  struct Row {
    const char* name;
    std::vector<std::string> args;
    std::vector<double> ms, cpu;
  };
  std::vector<Row> rows = {
      {"plain", {reactor, "run", dir + "/plain.json", "--config", dir + "/fleet.toml", "--events", "/dev/null"}, {}, {}},
      {"egress", {reactor, "run", dir + "/egress.json", "--config", dir + "/fleet.toml", "--events", "/dev/null"}, {}, {}},
  };
  if (unpinned)
    rows.push_back({"unpinned", {reactor, "run", dir + "/egress.json", "--config", dir + "/unpinned.toml", "--events", "/dev/null"}, {}, {}});
  const size_t before_row = rows.size();
  if (!before.empty()) {
    rows.push_back({"plain-before", {before, "run", dir + "/plain.json", "--config", dir + "/before.toml", "--events", "/dev/null"}, {}, {}});
    rows.push_back({"egress-before", {before, "run", dir + "/egress.json", "--config", dir + "/before.toml", "--events", "/dev/null"}, {}, {}});
  }
  const size_t nrows = rows.size();
  // Each round in a new order: with a fixed rotation every row would always follow the same
  // one, whose leftovers (a namespace the kernel is still cleaning up) it would always pay.
  std::vector<size_t> order(nrows);
  std::mt19937 rng(12345);
  for (int i = 0; i < warmup + n; ++i) {
    for (size_t k = 0; k < nrows; ++k) order[k] = (static_cast<size_t>(i) + k) % nrows;
    if (nrows > 2) std::shuffle(order.begin(), order.end(), rng);
    for (size_t k = 0; k < nrows; ++k) {
      Row& row = rows[order[k]];
      auto t0 = Clock::now();
      double cpu = 0;
      const int st = run_once(row.args, &cpu);
      const double ms = ms_since(t0);
      if (st != 0) {
        std::string cmd;
        for (const auto& a : row.args) cmd += a + " ";
        die("`" + cmd + "` exited " + std::to_string(st) + " (run it to see why)");
      }
      if (i >= warmup) row.ms.push_back(ms), row.cpu.push_back(cpu);
    }
  }
  // `run` keeps its cgroup parents for the next cell: remove them (empty by now), and the
  // hook keeper's cgroup when the bench made it (hook_keeper.h).
  if (!had_keeper) ::rmdir(keeper.c_str());
  for (const char* h : {"unified", "memory", "pids", "cpu"}) {
    const std::string root = std::string("/sys/fs/cgroup/") + h + "/cellos";
    ::rmdir((root + "/" + host).c_str());
    ::rmdir(root.c_str());
  }

  auto p = stats(rows[0].ms), e = stats(rows[1].ms);
  utsname u{};
  ::uname(&u);
  double load[3] = {0, 0, 0};
  ::getloadavg(load, 3);
  char date[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", std::gmtime(&now));
  std::printf("net_run_bench: %d x `cellos-reactor run` of /bin/true per row, interleaved\n", n);
  std::printf("machine: nproc %ld, kernel %s, %s, load %.2f %.2f %.2f\n\n",
              ::sysconf(_SC_NPROCESSORS_ONLN), u.release, date, load[0], load[1], load[2]);
  auto pc = stats(rows[0].cpu), ec = stats(rows[1].cpu);
  std::printf("%-8s %10s %10s %10s %12s\n", "row", "median ms", "p99 ms", "mean ms", "cpu med ms");
  std::printf("%-8s %10.3f %10.3f %10.3f %12.3f\n", "plain", p.median, p.p99, p.mean, pc.median);
  std::printf("%-8s %10.3f %10.3f %10.3f %12.3f\n", "egress", e.median, e.p99, e.mean, ec.median);
  double unpinned_median = 0;
  if (unpinned) {
    auto u2 = stats(rows[2].ms);
    unpinned_median = u2.median;
    std::printf("%-8s %10.3f %10.3f %10.3f %12.3f   (egress, bpf_pin_dir = \"\": a BPF load per run)\n",
                "unpinned", u2.median, u2.p99, u2.mean, stats(rows[2].cpu).median);
  }
  double before_ratio = 0, before_cpu_ratio = 0;
  if (!before.empty()) {
    auto pb = stats(rows[before_row].ms), eb = stats(rows[before_row + 1].ms);
    auto pbc = stats(rows[before_row].cpu), ebc = stats(rows[before_row + 1].cpu);
    std::printf("%-8s %10.3f %10.3f %10.3f %12.3f   (--before %s)\n", "plain-b", pb.median, pb.p99,
                pb.mean, pbc.median, before.c_str());
    std::printf("%-8s %10.3f %10.3f %10.3f %12.3f\n", "egress-b", eb.median, eb.p99, eb.mean,
                ebc.median);
    before_ratio = eb.median / pb.median;
    before_cpu_ratio = ebc.median / pbc.median;
    std::printf("\nbefore: egress/plain median %6.2f, cpu median %6.2f\n", before_ratio,
                before_cpu_ratio);
  }
  const double ratio = e.median / p.median;
  std::printf("\negress/plain median %6.2f   (target <= 1.2)  %s\n", ratio,
              ratio <= 1.2 ? "PASS" : "MISS");
  std::printf("egress/plain cpu median %6.2f   (user + system time of run and cell: less load-sensitive)\n",
              ec.median / pc.median);
  if (unpinned) std::printf("unpinned/plain median %6.2f\n", unpinned_median / p.median);
  std::printf("reproduce: %s --reactor %s -n %d --warmup %d%s%s%s\n", argv[0], reactor.c_str(), n,
              warmup, unpinned ? " --unpinned" : "", before.empty() ? "" : " --before ",
              before.c_str());
  if (!csv.empty()) {
    std::ofstream out(csv);
    out << "row,iteration,ms,cpu_ms\n";
    for (const Row& r : rows)
      for (size_t i = 0; i < r.ms.size(); ++i)
        out << r.name << "," << i << "," << r.ms[i] << "," << r.cpu[i] << "\n";
  }
  cellos::bench::ReportLine rep("net-run");
  rep.row("plain", {{"median ms", p.median}, {"p99 ms", p.p99}, {"cpu median ms", pc.median}});
  rep.row("egress", {{"median ms", e.median}, {"p99 ms", e.p99}, {"cpu median ms", ec.median}});
  if (unpinned) rep.row("unpinned egress", {{"median ms", unpinned_median}});
  rep.metric("egress/plain median", ratio, "x", "<= 1.2", ratio <= 1.2 ? 1 : 0);
  rep.metric("egress/plain cpu median", ec.median / pc.median, "x");
  if (!before.empty()) {
    rep.metric("before: egress/plain median", before_ratio, "x");
    rep.metric("before: egress/plain cpu median", before_cpu_ratio, "x");
  }
  if (!csv.empty()) rep.field("samples", std::filesystem::absolute(csv).string());
  rep.print();
  return 0;
}
