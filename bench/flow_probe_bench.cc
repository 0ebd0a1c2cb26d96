// The flow probes' cost per packet per hook.
//
// A worker in its own network namespace and a cgroup2 directory ping-pongs UDP datagrams over
// loopback between two of its own sockets: every datagram passes cgroup_skb egress (sender)
// and ingress (receiver), both in the cell's cgroup. Rounds alternate detached and attached
// (accounting; accounting + enforcement) in the same run, and
// (attached - detached) / 2 is the cost of one hook on one packet. Needs root, BTF and cgroup2
// at /sys/fs/cgroup/unified.
//
//   build/bench/flow_probe_bench [-n PACKETS_PER_ROUND] [-r ROUNDS] [--payload BYTES] [--rt 1]
//
// --rt 1 runs the worker SCHED_FIFO: on a shared machine a preempted egress run (process
// context) otherwise adds the other tasks' time slices to the figures.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench/bench_stats.h"
#include "bench/report_line.h"
#include "ebpf/cgroup_id.h"
#include "ebpf/flow_probes.h"
#include "netns/loopback.h"

using namespace cellos;
using bench::Clock;

namespace {

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "flow_probe_bench: %s\n", what.c_str());
  std::exit(1);
}

struct Worker {
  pid_t pid = -1;
  int cmd = -1, res = -1;  // pipes to and from the worker
  uint16_t port = 0;       // the receiving socket's port, for the allow-list
};

// The worker: a new netns (lo up), joins the cgroup, then runs rounds on command. Its sockets
// are made after it joins, so they belong to the cell's cgroup.
Worker start_worker(const std::string& cgroup, size_t payload, bool rt) {
  int to[2], from[2];
  if (::pipe(to) != 0 || ::pipe(from) != 0) die("pipe");
  Worker w;
  w.pid = ::fork();
  if (w.pid < 0) die("fork");
  if (w.pid > 0) {
    ::close(to[0]);
    ::close(from[1]);
    w.cmd = to[1];
    w.res = from[0];
    if (::read(w.res, &w.port, sizeof w.port) != sizeof w.port) die("worker did not start");
    return w;
  }
  ::close(to[1]);
  ::close(from[0]);
  if (::unshare(CLONE_NEWNET) != 0 || netns::bring_up_loopback() != 0) ::_exit(2);
  if (rt) {
    sched_param sp{};
    sp.sched_priority = 1;
    if (::sched_setscheduler(0, SCHED_FIFO, &sp) != 0) ::_exit(10);
  }
  int p = ::open((cgroup + "/cgroup.procs").c_str(), O_WRONLY);
  if (p < 0 || ::write(p, "0", 1) != 1) ::_exit(3);
  ::close(p);
  int rx = ::socket(AF_INET, SOCK_DGRAM, 0), tx = ::socket(AF_INET, SOCK_DGRAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(rx, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(rx, reinterpret_cast<sockaddr*>(&a), &len) != 0)
    ::_exit(4);
  uint16_t port = ntohs(a.sin_port);
  if (::write(from[1], &port, sizeof port) != sizeof port) ::_exit(5);
  std::vector<char> buf(payload + 64, 'x');
  uint32_t n = 0;
  while (::read(to[0], &n, sizeof n) == sizeof n && n > 0) {
    // Connected per round: the connect hook runs once here, outside the timed loop.
    if (::connect(tx, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) ::_exit(6);
    const auto t0 = Clock::now();
    for (uint32_t i = 0; i < n; i++) {
      if (::send(tx, buf.data(), payload, 0) != static_cast<ssize_t>(payload)) ::_exit(7);
      if (::recv(rx, buf.data(), buf.size(), 0) != static_cast<ssize_t>(payload)) ::_exit(8);
    }
    const uint64_t ns = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count());
    if (::write(from[1], &ns, sizeof ns) != sizeof ns) ::_exit(9);
  }
  ::_exit(0);
}

double run_round(const Worker& w, uint32_t n) {
  uint64_t ns = 0;
  if (::write(w.cmd, &n, sizeof n) != sizeof n || ::read(w.res, &ns, sizeof ns) != sizeof ns)
    die("worker failed");
  return static_cast<double>(ns) / n;
}

}  // namespace

int main(int argc, char** argv) {
  uint32_t n = 100000;
  int rounds = 9;
  size_t payload = 64;
  bool rt = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "-n") n = static_cast<uint32_t>(std::atol(argv[i + 1]));
    else if (a == "-r") rounds = std::atoi(argv[i + 1]);
    else if (a == "--payload") payload = static_cast<size_t>(std::atol(argv[i + 1]));
    else if (a == "--rt") rt = std::atoi(argv[i + 1]) != 0;
    else die("usage: flow_probe_bench [-n PACKETS] [-r ROUNDS] [--payload BYTES] [--rt 0|1]");
  }
  auto probes = ebpf::FlowProbes::load({});
  if (!probes) die("load: " + probes.error().message());

  const std::string cg = "/sys/fs/cgroup/unified/cellos-flow-bench-" + std::to_string(::getpid());
  if (::mkdir(cg.c_str(), 0755) != 0) die("mkdir " + cg + ": " + std::strerror(errno));
  const int cgfd = ::open(cg.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  auto cgid = ebpf::cgroup_id_of(cgfd);
  if (!cgid) die(cgid.error().message());
  Worker w = start_worker(cg, payload, rt);

  struct Mode {
    const char* name;
    bool attach, enforce;
    std::vector<double> ns;
  };
  std::vector<Mode> modes = {{"detached", false, false, {}},
                             {"account", true, false, {}},
                             {"account+enforce", true, true, {}}};
  run_round(w, n / 10);  // warm caches and the socket buffers
  for (int r = 0; r < rounds; r++) {
    // Rotate the order each round so drift (other load on the machine) spreads evenly.
    for (size_t k = 0; k < modes.size(); k++) {
      Mode& m = modes[(k + static_cast<size_t>(r)) % modes.size()];
      ebpf::CellAttachment cell;
      if (m.attach) {
        ebpf::CellAttachOptions o;
        o.cgroup_fd = cgfd;
        o.cgroup_id = *cgid;
        o.enforce = m.enforce;
        o.allow_loopback = false;  // make enforcement consult the allow-list
        ebpf::AllowRule rule;
        const uint32_t lo = htonl(INADDR_LOOPBACK);
        std::memcpy(rule.addr.data(), &lo, 4);
        rule.port = w.port;
        rule.l4proto = IPPROTO_UDP;
        o.allow = {rule};
        auto a = (*probes)->attach(o);
        if (!a) die(a.error().message());
        cell = std::move(a).value();
      }
      m.ns.push_back(run_round(w, n));
    }
  }
  // A second, independent figure: the kernel's own timing of each program run (BPF stats),
  // over one more attached round per mode. Includes the stats' own clock reads.
  struct Timed {
    const char* mode;
    std::vector<ebpf::FlowProbes::ProgramStats> progs;
  };
  std::vector<Timed> timed;
  if (auto on = ebpf::FlowProbes::enable_run_stats(); on.ok()) {
    for (bool enforce : {false, true}) {
      auto before = (*probes)->program_stats();
      ebpf::CellAttachOptions o;
      o.cgroup_fd = cgfd;
      o.cgroup_id = *cgid;
      o.enforce = enforce;
      o.allow_loopback = false;
      ebpf::AllowRule rule;
      const uint32_t lo = htonl(INADDR_LOOPBACK);
      std::memcpy(rule.addr.data(), &lo, 4);
      rule.port = w.port;
      rule.l4proto = IPPROTO_UDP;
      o.allow = {rule};
      auto a = (*probes)->attach(o);
      if (!a) die(a.error().message());
      run_round(w, n);
      auto after = (*probes)->program_stats();
      if (!before || !after) die("program_stats");
      for (size_t i = 0; i < after->size(); i++) {
        (*after)[i].run_count -= (*before)[i].run_count;
        (*after)[i].run_time_ns -= (*before)[i].run_time_ns;
      }
      timed.push_back({enforce ? "account+enforce" : "account", std::move(after).value()});
    }
  } else {
    std::fprintf(stderr, "flow_probe_bench: no kernel run-time stats: %s\n",
                 on.error().message().c_str());
  }

  const uint32_t stop = 0;
  (void)!::write(w.cmd, &stop, sizeof stop);
  ::waitpid(w.pid, nullptr, 0);
  ::close(cgfd);
  ::rmdir(cg.c_str());

  auto st = (*probes)->stats();
  const double base = bench::stats(modes[0].ns).median;
  std::printf("flow_probe_bench: %u UDP datagrams of %zu bytes per round, %d rounds, loopback in a"
              " netns, send+recv in one process%s\n", n, payload, rounds,
              rt ? ", worker SCHED_FIFO" : "");
  std::printf("%-16s %12s %12s %16s\n", "mode", "ns/packet", "p99-round", "ns/packet/hook");
  for (const Mode& m : modes) {
    const auto s = bench::stats(m.ns);
    std::printf("%-16s %12.1f %12.1f %16.1f\n", m.name, s.median, s.p99,
                m.attach ? (s.median - base) / 2 : 0.0);
  }
  for (const Timed& t : timed)
    for (const auto& p : t.progs)
      if (p.run_count > 0)
        std::printf("kernel-timed %-16s %-16s %10llu runs %8.1f ns/run\n", t.mode, p.name.c_str(),
                    static_cast<unsigned long long>(p.run_count),
                    static_cast<double>(p.run_time_ns) / static_cast<double>(p.run_count));
  if (st) std::printf("records lost %llu, flows created %llu\n",
                      static_cast<unsigned long long>(st->records_lost),
                      static_cast<unsigned long long>(st->flows_created));
  std::printf("reproduce: cmake --build build --target flow_probe_bench && "
              "build/bench/flow_probe_bench -n %u -r %d --payload %zu --rt %d\n", n, rounds, payload,
              rt ? 1 : 0);
  // The line bench/report.py reads.
  cellos::bench::ReportLine rep("flow-probes");
  for (const Mode& m : modes) {
    const auto s = bench::stats(m.ns);
    rep.row(m.name, {{"ns/packet", s.median}, {"p99-round ns", s.p99},
                     {"ns/packet/hook", m.attach ? (s.median - base) / 2 : 0.0}});
    if (m.attach)
      rep.metric(std::string(m.name) + ": ns per packet per hook", (s.median - base) / 2, "ns",
                 "<= 250", (s.median - base) / 2 <= 250);
  }
  for (const Timed& t : timed)
    for (const auto& p : t.progs)
      if (p.run_count > 0)
        rep.metric("kernel-timed " + std::string(t.mode) + " " + p.name,
                   static_cast<double>(p.run_time_ns) / static_cast<double>(p.run_count), "ns/run");
  if (st) rep.field("records lost", static_cast<double>(st->records_lost));
  rep.field("reproduce", "build/bench/flow_probe_bench -n " + std::to_string(n) + " -r " +
                             std::to_string(rounds) + " --payload " + std::to_string(payload) +
                             " --rt " + (rt ? "1" : "0"))
      .print();
  return 0;
}
