// nft_bench: what a cell's network authority costs.
//
//   nft_bench [-n 100] [--nft-n 20] [--cells 100] [--targets 1,20,200] [--csv FILE]
//
// 1. Ruleset install, per cell, for 1, 20 and 200 egress targets, each into a fresh network
//    namespace: one libnftnl batch over a NETLINK_NETFILTER socket opened in that namespace
//    (what the reactor does) against `nft -f` of the same ruleset run in the same namespace
//    (what a script would do), interleaved in one run. The namespace's creation is not timed.
// 2. Cell setup latency through an in-process reactor (Supervisor::add + run_until_idle of
//    /bin/true), interleaved: no egress (CLONE_NEWNET, loopback only) · one egress rule without
//    uplink (prepared namespace + ruleset) · one egress rule with the NAT uplink (+ veth on the
//    bridge, address, route).
// Traffic: none. The uplink bench uses its own host id, bridge and subnet, removed at exit.
#include <fcntl.h>
#include <sched.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "bench/bench_stats.h"
#include "bench/nft_text.h"
#include "bench/report_line.h"
#include "cells/cgroup.h"
#include "cells/config.h"
#include "netns/nft.h"
#include "reactor/host.h"
#include "reactor/supervisor.h"
#include "reactor/event_log_config.h"

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;
namespace netns = cellos::netns;

using cellos::bench::ms_since;
using cellos::bench::stats;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "nft_bench: %s\n", what.c_str());
  std::exit(1);
}

// A fresh namespace, kept by fd; the calling thread stays home.
struct Netns {
  int fd = -1;
  Netns() {
    int home = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (home < 0 || ::unshare(CLONE_NEWNET) != 0) die("unshare(CLONE_NEWNET)");
    fd = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (::setns(home, CLONE_NEWNET) != 0) die("setns home");
    ::close(home);
  }
  ~Netns() { ::close(fd); }
};

struct InNetns {
  int home;
  explicit InNetns(int fd) : home(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)) {
    if (::setns(fd, CLONE_NEWNET) != 0) die("setns");
  }
  ~InNetns() {
    if (::setns(home, CLONE_NEWNET) != 0) die("setns home");
    ::close(home);
  }
};

netns::CellRuleset ruleset(int targets) {
  netns::CellRuleset r;
  for (int i = 0; i < targets; ++i) {
    auto t = netns::parse_target("10.9." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1));
    t->port = static_cast<uint16_t>(1000 + i);
    t->tag = "egress[" + std::to_string(i) + "]";
    r.targets.push_back(*t);
  }
  return r;
}

double libnftnl_once(const netns::CellRuleset& r) {
  Netns ns;
  netns::NetlinkSocket nf;
  {
    InNetns in(ns.fd);
    auto s = netns::NetlinkSocket::open(NETLINK_NETFILTER);
    if (!s) die(s.error().message());
    nf = std::move(*s);
  }
  auto t0 = Clock::now();
  auto ok = netns::install_cell_ruleset(nf, r);
  double ms = ms_since(t0);
  if (!ok) die(ok.error().message());
  return ms;
}

double nft_once(const std::string& file) {
  Netns ns;
  InNetns in(ns.fd);  // posix_spawn's child starts in the caller's namespace
  const char* argv[] = {"nft", "-f", file.c_str(), nullptr};
  auto t0 = Clock::now();
  pid_t pid;
  if (posix_spawn(&pid, "/usr/sbin/nft", nullptr, nullptr, const_cast<char**>(argv), environ) != 0)
    die("posix_spawn /usr/sbin/nft (install the nftables package)");
  int st = 0;
  waitpid(pid, &st, 0);
  double ms = ms_since(t0);
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) die("nft -f " + file + " failed");
  return ms;
}

}  // namespace

int main(int argc, char** argv) {
  int n = 100, nft_n = 20, cells = 100;
  std::string csv;
  // --targets: which ruleset sizes part 1 measures (for a profile of one size alone).
  std::vector<int> sizes = {1, 20, 200};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-n" && i + 1 < argc) n = std::atoi(argv[++i]);
    else if (a == "--nft-n" && i + 1 < argc) nft_n = std::atoi(argv[++i]);
    else if (a == "--cells" && i + 1 < argc) cells = std::atoi(argv[++i]);
    else if (a == "--csv" && i + 1 < argc) csv = argv[++i];
    else if (a == "--targets" && i + 1 < argc) {
      sizes.clear();
      std::string list = argv[++i];
      for (size_t at = 0; at <= list.size();) {
        size_t comma = std::min(list.find(',', at), list.size());
        const int v = std::atoi(list.substr(at, comma - at).c_str());
        if (v < 1 || v > 60000) die("--targets: a comma-separated list of counts 1..60000");
        sizes.push_back(v);
        at = comma + 1;
      }
    } else die("usage: nft_bench [-n N] [--nft-n N] [--cells N] [--targets 1,20,200] [--csv FILE]");
  }
  char tmpl[] = "/tmp/cellos-nft-bench-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) die("mkdtemp");
  const std::string dir = tmpl;
  struct RemoveDir {
    std::string path;
    ~RemoveDir() { std::filesystem::remove_all(path); }
  } remove_dir{dir};
  std::string csv_rows = "what,targets,median_ms,p99_ms,mean_ms\n";
  cellos::bench::ReportLine rep("nft");  // the line bench/report.py reads, printed at the end

  std::printf("nft_bench: ruleset install per cell, fresh namespace each time (median of %d / %d)\n\n",
              n, nft_n);
  std::printf("%8s %14s %14s %10s\n", "targets", "libnftnl ms", "nft -f ms", "speedup");
  for (int targets : sizes) {
    auto r = ruleset(targets);
    const std::string file = dir + "/ruleset-" + std::to_string(targets) + ".nft";
    // The same ruleset in nft's language (tests/unit/nft_hits_test.cc: it lists the same).
    std::ofstream(file) << cellos::bench::nft_text(r);
    std::vector<double> lib, tool;
    for (int i = 0; i < 3; ++i) libnftnl_once(r), nft_once(file);  // warm-up
    for (int i = 0; i < std::max(n, nft_n); ++i) {
      if (i < n) lib.push_back(libnftnl_once(r));
      if (i < nft_n) tool.push_back(nft_once(file));
    }
    auto l = stats(lib), t = stats(tool);
    std::printf("%8d %14.3f %14.3f %9.1fx\n", targets, l.median, t.median, t.median / l.median);
    char row[256];
    std::snprintf(row, sizeof row, "libnftnl,%d,%.4f,%.4f,%.4f\nnft-f,%d,%.4f,%.4f,%.4f\n", targets,
                  l.median, l.p99, l.mean, targets, t.median, t.p99, t.mean);
    csv_rows += row;
    rep.row(std::to_string(targets) + " targets: libnftnl vs nft -f",
            {{"libnftnl median ms", l.median}, {"nft -f median ms", t.median},
             {"speedup x", t.median / l.median}});
    if (targets == 200)
      rep.metric("200 rules: nft -f / libnftnl", t.median / l.median, "x", ">= 20",
                 t.median / l.median >= 20);
  }

  // Cell setup latency through a reactor in this process.
  cellos::cells::Config config = cellos::cells::default_config();
  config.host.id = "nftbench" + std::to_string(::getpid());
  config.host.state_dir = dir + "/state";
  config.network.subnet = "10.211." + std::to_string(::getpid() % 250) + ".0/24";
  std::filesystem::create_directories(config.host.state_dir);
  config.network.uplink = "nat";
  // Two hosts on one config: one without the uplink, one with it. Each supervisor's events are
  // built, rendered and batched as in `run`, into /dev/null, through its own host's ring.
  std::vector<std::unique_ptr<cellos::reactor::Host>> hosts;
  int failures = 0;
  auto make_sup = [&](bool uplink) {
    cellos::reactor::HostOptions ho;
    ho.config = &config;
    ho.events_path = "/dev/null";
    ho.uplink = uplink;
    ho.cgroups = cellos::reactor::cgroup_placement_for_run(config);
    auto h = cellos::reactor::Host::create(std::move(ho));
    if (!h) die(h.error().message());
    hosts.push_back(std::move(*h));
    return std::make_unique<cellos::reactor::Supervisor>(
        *hosts.back(), cellos::reactor::SupervisorOptions{[&](const cellos::cells::Cell& c) {
          if (c.outcome().exit_status() != 0) {
            std::fprintf(stderr, "%s\n", c.outcome().error.c_str());
            ++failures;
          }
        }});
  };
  auto plain = make_sup(false), with_uplink = make_sup(true);
  struct Row {
    const char* name;
    cellos::reactor::Supervisor* sup;
    bool egress;
    std::vector<double> ms;
  } rows[] = {{"no egress (CLONE_NEWNET)", plain.get(), false, {}},
              {"1 rule, uplink none", plain.get(), true, {}},
              {"1 rule, uplink nat", with_uplink.get(), true, {}}};
  for (int i = 0; i < cells + 5; ++i) {
    for (int k = 0; k < 3; ++k) {
      Row& row = rows[(i + k) % 3];
      cellos::cells::CellOptions co;
      co.spec.id = "nb-" + std::to_string(i) + "-" + std::to_string(k);
      co.spec.run.argv = {"/bin/true"};
      if (row.egress) co.spec.egress_rules = {{"10.9.0.1", 443, "tcp", {}}};
      co.env = {"PATH=/usr/bin:/bin"};
      co.run_id = "bench";
      auto t0 = Clock::now();
      row.sup->add(std::move(co));
      if (!row.sup->run_until_idle().ok()) die("the ring failed");
      if (i >= 5) row.ms.push_back(ms_since(t0));
    }
    if (failures) die("a cell failed");
  }
  std::printf("\ncell setup + /bin/true + teardown, in-process reactor (median of %d)\n\n", cells);
  std::printf("%-28s %10s %10s %10s\n", "row", "median ms", "p99 ms", "mean ms");
  for (auto& row : rows) {
    auto s = stats(row.ms);
    std::printf("%-28s %10.3f %10.3f %10.3f\n", row.name, s.median, s.p99, s.mean);
    char line[256];
    std::snprintf(line, sizeof line, "cell %s,1,%.4f,%.4f,%.4f\n", row.name, s.median, s.p99, s.mean);
    csv_rows += line;
    rep.row(std::string("cell: ") + row.name, {{"median ms", s.median}, {"p99 ms", s.p99},
                                               {"mean ms", s.mean}});
  }
  {
    auto none = stats(rows[0].ms).median, one = stats(rows[1].ms).median;
    rep.metric("cell with 1 egress rule / without (uplink none)", one / none, "x", "<= 1.2",
               one / none <= 1.2);
  }
  plain.reset();
  with_uplink.reset();
  hosts.front()->cgroups().remove_empty_parents();
  hosts.clear();
  if (!csv.empty()) std::ofstream(csv) << csv_rows;
  std::string reproduce = std::string(argv[0]) + " -n " + std::to_string(n) + " --nft-n " +
                          std::to_string(nft_n) + " --cells " + std::to_string(cells);
  if (sizes != std::vector<int>{1, 20, 200}) {
    reproduce += " --targets ";
    for (size_t i = 0; i < sizes.size(); ++i) reproduce += (i ? "," : "") + std::to_string(sizes[i]);
  }
  std::printf("\nreproduce: %s\n", reproduce.c_str());
  rep.field("reproduce", reproduce).print();
  return 0;
}
