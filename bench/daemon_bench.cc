// daemon_bench: the fleet daemon under load, measured from outside as operators run it.
//
//   daemon_bench --reactor PATH [--cells 2000] [--sleepers 5000] [--syscall-cells 500]
//                [--only throughput|density|syscalls|admission] [--live 0,1000,5000]
//                [--admit-cells 1000] [--perf-dir DIR] [--perf-event EV] [--rounds 3]
//
//   throughput  N /bin/true cells renamed into the spool at once, full isolation, until the
//               last destroyed event: cells/s. Peer in the same run: the same N
//               `bwrap --unshare-all --die-with-parent --ro-bind / / --tmpfs /tmp /bin/true`
//               driven by `xargs -P2` (two at a time: one per vCPU here). Target: >= 2x bwrap.
//               Measured for the daemon as shipped ([pool] off, the headline) and with its warm
//               pool ([pool] enabled = true, default sizes: cells/warm_pool.h). The three run
//               --rounds times, each round in another order (what one run leaves behind slows
//               the next), and each figure is the median of its rounds.
//   density     S cells of `sleep 600` at once, [pool] enabled: reactor RSS per cell ((VmRSS
//               growth + the Pss of the warm pool's prepared processes) / S; target <= 16 KiB), reactor CPU while they sleep (target ~0), time to admit them all.
//   syscalls    `perf stat --no-inherit -e raw_syscalls:sys_enter -p <daemon>` around K
//               /bin/true cells: the reactor's own syscalls per cell lifecycle (children and
//               io_uring's kernel workers excluded). Target <= 30.
//
//   admission   One daemon; for each live count L of --live (ascending): `sleep 600` cells are
//               added until L are alive, then --admit-cells /bin/true cells are renamed into the
//               spool at once and timed to their last destroyed event: the admission rate with
//               L live cells, and its ratio to the rate at the first L (target >= 80% at 5,000).
//               --perf-dir DIR: `perf record -g -a` of each timed batch (DIR/perf-L.data);
//               --perf-event EV records EV instead of CPU samples (sched:sched_switch: where
//               each admitted cell waits).
//
// Completion is read from the event log (followed incrementally), so the bench adds no work
// to the daemon it measures.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "report_line.h"

extern char** environ;

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string reactor;
  long cells = 2000, sleepers = 5000, syscall_cells = 500, admit_cells = 1000, rounds = 3;
  std::vector<long> live{0, 1000, 5000};
  std::string only, perf_dir, perf_event;
};

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "daemon_bench: %s\n", msg.c_str());
  std::exit(1);
}

pid_t spawn(const std::vector<std::string>& argv, const std::string& out = "/dev/null",
            const std::string& err = "/dev/null") {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<char*> a;
  for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
  a.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawnp(&pid, a[0], &fa, nullptr, a.data(), environ) != 0) die("cannot run " + argv[0]);
  posix_spawn_file_actions_destroy(&fa);
  return pid;
}

int wait_for(pid_t pid) {
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Follows a growing event log, counting lines that contain a needle.
class LogCounter {
 public:
  explicit LogCounter(std::string path) : path_(std::move(path)) {}
  long count(const std::string& needle) {
    int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return n_;
    ::lseek(fd, off_, SEEK_SET);
    char buf[1 << 16];
    ssize_t r;
    while ((r = ::read(fd, buf, sizeof buf)) > 0) {
      off_ += r;
      partial_.append(buf, static_cast<size_t>(r));
      size_t pos = 0, nl;
      while ((nl = partial_.find('\n', pos)) != std::string::npos) {
        if (std::string_view(partial_).substr(pos, nl - pos).find(needle) != std::string::npos)
          ++n_;
        pos = nl + 1;
      }
      partial_.erase(0, pos);
    }
    ::close(fd);
    return n_;
  }

 private:
  std::string path_, partial_;
  off_t off_ = 0;
  long n_ = 0;
};

// A throwaway fleet: state dir, fleet.toml, and the daemon serving it.
class Fleet {
 public:
  Fleet(const std::string& reactor, const std::string& name, long max_cells,
        const std::string& extra_toml = "")
      : reactor_(reactor) {
    char tmpl[] = "/var/tmp/cellos-bench-XXXXXX";
    if (!::mkdtemp(tmpl)) die("mkdtemp failed");
    dir_ = tmpl;
    host_ = name + "-" + std::to_string(::getpid());
    std::ofstream(dir_ + "/fleet.toml")
        << "[host]\nid = \"" << host_ << "\"\nstate_dir = \"" << dir_ << "/state\"\n"
        << "max_concurrent_cells = " << max_cells << "\nshutdown_grace_seconds = 0\n"
        << extra_toml;
    fs::create_directories(dir_ + "/state/spool");
    fs::create_directories(dir_ + "/staging");
  }
  ~Fleet() {
    stop();
    fs::remove_all(dir_);
    for (const char* h : {"unified", "memory", "pids", "cpu"}) {
      std::string root = std::string("/sys/fs/cgroup/") + h + "/cellos";
      ::rmdir((root + "/" + host_).c_str());
      ::rmdir(root.c_str());
    }
  }
  void start() {
    pid_ = spawn({reactor_, "--config", dir_ + "/fleet.toml"}, "/dev/null", dir_ + "/daemon.err");
    for (int i = 0; i < 200 && !fs::exists(dir_ + "/state/reactor.sock"); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    if (!fs::exists(dir_ + "/state/reactor.sock")) die("daemon did not start: " + read_text(dir_ + "/daemon.err"));
  }
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    int st = wait_for(pid_);
    pid_ = -1;
    if (st != 0) std::fprintf(stderr, "daemon_bench: daemon exit status %d: %s\n", st,
                              read_text(dir_ + "/daemon.err").c_str());
  }
  // Writes n specs into a staging dir (not timed); rename_all() moves them into the spool.
  void stage(long n, const std::string& argv_json, const std::string& stem) {
    for (long i = 0; i < n; ++i) {
      char name[64];
      std::snprintf(name, sizeof name, "%08ld-%s.json", i, stem.c_str());
      std::ofstream(dir_ + "/staging/" + name)
          << R"({"apiVersion":"cellos.io/v1","kind":"ExecutionCell","spec":{"id":")" << stem << "-"
          << i << R"(","run":{"argv":)" << argv_json << "}}}";
      staged_.push_back(name);
    }
  }
  void rename_all() {
    for (const auto& n : staged_)
      fs::rename(dir_ + "/staging/" + n, dir_ + "/state/spool/" + n);
    staged_.clear();
  }
  pid_t pid() const { return pid_; }
  std::string events() const { return dir_ + "/state/events.jsonl"; }

 private:
  std::string reactor_, dir_, host_;
  pid_t pid_ = -1;
  std::vector<std::string> staged_;
};

long proc_field_kib(pid_t pid, const char* key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key, 0) == 0) return std::atol(line.c_str() + std::strlen(key));
  return -1;
}

long cpu_ticks(pid_t pid) {
  std::string s = read_text("/proc/" + std::to_string(pid) + "/stat");
  std::istringstream in(s.substr(s.rfind(')') + 2));
  std::string f;
  long ut = 0, st = 0;
  for (int i = 3; i <= 15 && in >> f; ++i) {
    if (i == 14) ut = std::atol(f.c_str());
    if (i == 15) st = std::atol(f.c_str());
  }
  return ut + st;
}

// The warm pool's share of memory: the proportional set size of the daemon's prepared cells
// (cells/prepared_cell.h: children named cellos-prepared), which share most pages with the
// spawner they are forked from.
long pool_pss_kib(pid_t daemon) {
  long total = 0;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string pid = e.path().filename();
    if (pid.empty() || !std::isdigit(static_cast<unsigned char>(pid[0]))) continue;
    std::string stat = read_text("/proc/" + pid + "/stat");
    if (stat.find("(cellos-prepared)") == std::string::npos) continue;
    auto close = stat.rfind(')');
    if (std::atol(stat.c_str() + close + 4) != daemon) continue;
    std::ifstream in("/proc/" + pid + "/smaps_rollup");
    for (std::string line; std::getline(in, line);)
      if (line.rfind("Pss:", 0) == 0) total += std::atol(line.c_str() + 4);
  }
  return total;
}

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

void wait_count(LogCounter& log, const std::string& needle, long n, int timeout_s) {
  auto start = Clock::now();
  while (log.count(needle) < n) {
    if (seconds_since(start) > timeout_s)
      die("timed out waiting for " + std::to_string(n) + " \"" + needle + "\" events (have " +
          std::to_string(log.count(needle)) + ")");
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

const std::string kDestroyed = "lifecycle.v1.destroyed\"";
const std::string kStarted = "lifecycle.v1.started\"";

// Seconds for the daemon of a fresh fleet (with `extra_toml`) to run N /bin/true cells.
double daemon_seconds(const Options& o, const std::string& extra_toml) {
  Fleet f(o.reactor, "bench-tput", 64, extra_toml);
  f.stage(o.cells, R"(["/bin/true"])", "t");
  f.start();
  // The pool fills while the daemon is idle.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  LogCounter log(f.events());
  auto t0 = Clock::now();
  f.rename_all();
  wait_count(log, kDestroyed, o.cells, 600);
  double s = seconds_since(t0);
  f.stop();
  return s;
}

// The peer: the same number of isolated /bin/true, two at a time.
double bwrap_seconds(const Options& o) {
  std::string cmd = "seq " + std::to_string(o.cells) +
                    " | xargs -P2 -I{} bwrap --unshare-all --die-with-parent --ro-bind / / "
                    "--tmpfs /tmp /bin/true";
  auto t1 = Clock::now();
  int st = wait_for(spawn({"/bin/sh", "-c", cmd}));
  if (st != 0) die("bwrap peer failed (status " + std::to_string(st) + "): is bwrap installed?");
  return seconds_since(t1);
}

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

void throughput(const Options& o) {
  // Each of the three runs leaves work behind (dying namespaces and cgroups, deleted files
  // whose inodes the next run's file creations scan past), which slows whatever runs next: run
  // them --rounds times, each round in another order, and take the medians.
  std::vector<double> pool_t, nopool_t, bwrap_t;
  for (long round = 0; round < o.rounds; ++round) {
    for (long k = 0; k < 3; ++k) {
      switch ((round + k) % 3) {
        case 0: pool_t.push_back(daemon_seconds(o, "[pool]\nenabled = true\n")); break;  // default sizes
        case 1: nopool_t.push_back(daemon_seconds(o, "[pool]\nenabled = false\n")); break;
        default: bwrap_t.push_back(bwrap_seconds(o)); break;
      }
    }
  }
  const double reactor_s = median_of(pool_t), nopool_s = median_of(nopool_t),
               bwrap_s = median_of(bwrap_t);
  double r = o.cells / reactor_s, b = o.cells / bwrap_s, np = o.cells / nopool_s;
  // The headline is the daemon as shipped: [pool] is off by default (docs/daemon.md).
  std::printf("throughput  cells=%ld  rounds=%ld (medians)  reactor %.0f cells/s (%.2f s)  with the pool "
              "%.0f cells/s (%.2f s)  bwrap xargs -P2 %.0f cells/s (%.2f s)  ratio %.2fx  target >= 2x: %s\n",
              o.cells, o.rounds, np, nopool_s, r, reactor_s, b, bwrap_s, np / b,
              np / b >= 2 ? "MET" : "MISSED");
  cellos::bench::ReportLine("daemon", "throughput")
      .row("reactor daemon (spool), [pool] off (the default)", {{"cells", static_cast<double>(o.cells)}, {"seconds", nopool_s}, {"cells/s", np}})
      .row("reactor daemon, [pool] on", {{"cells", static_cast<double>(o.cells)}, {"seconds", reactor_s}, {"cells/s", r}})
      .row("bwrap, xargs -P2", {{"cells", static_cast<double>(o.cells)}, {"seconds", bwrap_s}, {"cells/s", b}})
      .metric("throughput reactor / bwrap -P2", np / b, "x", ">= 2", np / b >= 2)
      .metric("throughput with the pool / bwrap -P2", r / b, "x")
      .metric("throughput pool on / off", r / np, "x")
      .print();
}

void density(const Options& o) {
  Fleet f(o.reactor, "bench-dense", o.sleepers + 10, "[pool]\nenabled = true\n");
  f.stage(o.sleepers, R"(["/bin/sleep","600"])", "s");
  f.start();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  long rss0 = proc_field_kib(f.pid(), "VmRSS:");
  LogCounter log(f.events());
  auto t0 = Clock::now();
  f.rename_all();
  wait_count(log, kStarted, o.sleepers, 900);
  double admit_s = seconds_since(t0);
  // Let the last metrics write pass, then watch the daemon while every cell sleeps.
  std::this_thread::sleep_for(std::chrono::seconds(2));
  long rss1 = proc_field_kib(f.pid(), "VmRSS:");
  const long pool_kib = pool_pss_kib(f.pid());
  long c0 = cpu_ticks(f.pid());
  const int watch_s = 10;
  std::this_thread::sleep_for(std::chrono::seconds(watch_s));
  long c1 = cpu_ticks(f.pid());
  // For the report's admission-rate figure: every started event (its time), kept before stop.
  std::string started_path = cellos::bench::out_path("daemon-density-started.jsonl");
  if (!started_path.empty()) {
    std::ifstream in(f.events());
    std::ofstream out(started_path);
    for (std::string line; std::getline(in, line);)
      if (line.find(kStarted) != std::string::npos) out << line << "\n";
  }
  double per_cell = static_cast<double>(rss1 - rss0 + pool_kib) / o.sleepers;
  double cpu_pct = 100.0 * static_cast<double>(c1 - c0) / ::sysconf(_SC_CLK_TCK) / watch_s;
  auto t1 = Clock::now();
  f.stop();
  double stop_s = seconds_since(t1);
  std::printf("density     cells=%ld  admitted in %.2f s (%.0f cells/s)  reactor RSS %ld -> %ld KiB "
              "+ warm pool %ld KiB = %.1f KiB/cell (target <= 16: %s)  reactor CPU while sleeping %.2f%% over %d s "
              "(%ld ticks)  stop+teardown %.2f s\n",
              o.sleepers, admit_s, o.sleepers / admit_s, rss0, rss1, pool_kib, per_cell,
              per_cell <= 16 ? "MET" : "MISSED", cpu_pct, watch_s, c1 - c0, stop_s);
  cellos::bench::ReportLine rep("daemon", "density");
  rep.row(std::to_string(o.sleepers) + " sleepers", {{"admitted in s", admit_s},
                                                     {"cells/s", o.sleepers / admit_s},
                                                     {"RSS KiB/cell", per_cell},
                                                     {"pool KiB", static_cast<double>(pool_kib)},
                                                     {"CPU % sleeping", cpu_pct},
                                                     {"stop s", stop_s}})
      .metric("admission rate, " + std::to_string(o.sleepers) + " sleepers", o.sleepers / admit_s, "cells/s")
      .metric("RSS per live cell", per_cell, "KiB", "<= 16", per_cell <= 16)
      .metric("reactor CPU while they sleep", static_cast<double>(c1 - c0), "ticks", "~0");
  if (!started_path.empty()) rep.field("samples", started_path);
  rep.print();
}

void syscalls(const Options& o) {
  Fleet f(o.reactor, "bench-sys", 64);
  f.stage(o.syscall_cells, R"(["/bin/true"])", "k");
  f.start();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const std::string out = "/var/tmp/cellos-bench-perf-" + std::to_string(::getpid()) + ".txt";
  pid_t perf = spawn({"perf", "stat", "--no-inherit", "-x,", "-e", "raw_syscalls:sys_enter", "-p",
                      std::to_string(f.pid()), "-o", out});
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  LogCounter log(f.events());
  f.rename_all();
  wait_count(log, kDestroyed, o.syscall_cells, 600);
  // The metrics write after the last change belongs to these cells too.
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  ::kill(perf, SIGINT);
  wait_for(perf);
  std::string text = read_text(out);
  ::unlink(out.c_str());
  long count = -1;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    if (line.find("raw_syscalls:sys_enter") != std::string::npos) count = std::atol(line.c_str());
  f.stop();
  if (count < 0) die("perf stat gave no count: " + text);
  double per = static_cast<double>(count) / o.syscall_cells;
  std::printf("syscalls    cells=%ld  reactor syscalls %ld = %.1f per cell lifecycle (target <= 30: "
              "%s)\n",
              o.syscall_cells, count, per, per <= 30 ? "MET" : "MISSED");
  cellos::bench::ReportLine("daemon", "syscalls")
      .metric("reactor syscalls per cell lifecycle", per, "", "<= 30", per <= 30)
      .print();
}


// `perf record -g -a` of the timed batch only: started with its events off, enabled once it
// has read every task's maps (with thousands of live cells that takes seconds, which a fixed
// wait missed: the profile then lacked the batch's start). Returns perf's pid.
pid_t start_perf(const std::string& dir, long live, const std::string& event) {
  const std::string ctl = dir + "/perf-ctl", ack = dir + "/perf-ack";
  ::unlink(ctl.c_str());
  ::unlink(ack.c_str());
  if (::mkfifo(ctl.c_str(), 0600) != 0 || ::mkfifo(ack.c_str(), 0600) != 0)
    die("mkfifo in --perf-dir " + dir + ": " + std::strerror(errno));
  std::vector<std::string> argv{"perf", "record", "-q", "-g", "-a", "-D", "-1", "--control",
                      "fifo:" + ctl + "," + ack, "-o",
                      dir + "/perf-" + std::to_string(live) + ".data"};
  if (!event.empty()) {
    argv.push_back("-e");
    argv.push_back(event);
  }
  pid_t perf = spawn(argv);
  // perf opens both once it is ready; a perf that failed to start never does.
  int c = -1;
  for (int i = 0; i < 6000 && c < 0; ++i) {
    c = ::open(ctl.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);  // ENXIO until perf reads
    if (c < 0 && ::waitpid(perf, nullptr, WNOHANG) == perf) die("perf record exited at start");
    if (c < 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  int a = c < 0 ? -1 : ::open(ack.c_str(), O_RDONLY | O_CLOEXEC);
  // "enable" is acknowledged once the events are on.
  char buf[16] = {};
  if (c < 0 || a < 0 || ::write(c, "enable\n", 7) != 7 || ::read(a, buf, sizeof buf - 1) <= 0)
    die("perf record did not take its enable command");
  ::close(c);
  ::close(a);
  ::unlink(ctl.c_str());
  ::unlink(ack.c_str());
  return perf;
}

void admission(const Options& o) {
  cellos::bench::ReportLine rep("daemon", "admission");
  long max_live = 0;
  for (long l : o.live) max_live = std::max(max_live, l);
  Fleet f(o.reactor, "bench-admit", max_live + 64);
  f.start();
  // One follower per event kind: a follower counts only the lines it is asked about.
  LogCounter started(f.events()), destroyed(f.events());
  long live = 0, batch = 0;
  double base_rate = 0;
  for (size_t k = 0; k < o.live.size(); ++k) {
    long want = o.live[k];
    if (want > live) {
      f.stage(want - live, R"(["/bin/sleep","600"])", "s" + std::to_string(k));
      f.rename_all();
      wait_count(started, kStarted, want + batch * o.admit_cells, 1800);
      live = want;
      std::this_thread::sleep_for(std::chrono::seconds(1));
    }
    f.stage(o.admit_cells, R"(["/bin/true"])", "a" + std::to_string(k));
    pid_t perf = -1;
    if (!o.perf_dir.empty()) perf = start_perf(o.perf_dir, live, o.perf_event);
    auto t0 = Clock::now();
    f.rename_all();
    ++batch;
    wait_count(destroyed, kDestroyed, batch * o.admit_cells, 1800);
    double s = seconds_since(t0);
    if (perf > 0) {
      ::kill(perf, SIGINT);
      wait_for(perf);
    }
    double rate = o.admit_cells / s;
    if (k == 0) base_rate = rate;
    std::printf("admission   live=%ld  %ld /bin/true cells in %.2f s = %.0f cells/s  (%.0f%% of the "
                "rate at %ld live%s)\n",
                live, o.admit_cells, s, rate, 100 * rate / base_rate, o.live[0],
                live >= 5000 ? rate >= 0.8 * base_rate ? "; target >= 80%: MET" : "; target >= 80%: MISSED" : "");
    std::fflush(stdout);
    rep.row(std::to_string(live) + " live", {{"live cells", static_cast<double>(live)},
                                             {"cells/s", rate},
                                             {"of the first rate", rate / base_rate}});
    if (k + 1 == o.live.size() && k > 0)
      rep.metric("admission rate at " + std::to_string(live) + " live / at " +
                     std::to_string(o.live[0]),
                 rate / base_rate, "", live >= 5000 ? ">= 0.8" : "",
                 live >= 5000 ? (rate >= 0.8 * base_rate ? 1 : 0) : -1);
  }
  rep.print();
  auto t1 = Clock::now();
  f.stop();
  std::printf("admission   stop+teardown of %ld live cells %.2f s\n", live, seconds_since(t1));
}
}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) die(a + " needs a value");
      return argv[++i];
    };
    if (a == "--reactor") o.reactor = value();
    else if (a == "--cells") o.cells = std::atol(value().c_str());
    else if (a == "--rounds") o.rounds = std::max(1L, std::atol(value().c_str()));
    else if (a == "--sleepers") o.sleepers = std::atol(value().c_str());
    else if (a == "--syscall-cells") o.syscall_cells = std::atol(value().c_str());
    else if (a == "--only") o.only = value();
    else if (a == "--admit-cells") o.admit_cells = std::atol(value().c_str());
    else if (a == "--perf-dir") o.perf_dir = value();
    else if (a == "--perf-event") o.perf_event = value();
    else if (a == "--live") {
      o.live.clear();
      std::stringstream ss(value());
      for (std::string item; std::getline(ss, item, ',');) o.live.push_back(std::atol(item.c_str()));
      if (o.live.empty() || !std::is_sorted(o.live.begin(), o.live.end()) || o.live[0] < 0)
        die("--live: a comma-separated ascending list of live-cell counts, e.g. 0,1000,5000");
    }
    else die("unknown option " + a + " (see the comment at the top of bench/daemon_bench.cc)");
  }
  if (o.reactor.empty()) die("--reactor PATH is required");
  if (o.cells < 1 || o.sleepers < 1 || o.syscall_cells < 1 || o.admit_cells < 1) die("counts must be >= 1");
  std::string live;
  for (long l : o.live) live += (live.empty() ? "" : ",") + std::to_string(l);
  std::printf("reproduce: %s --reactor %s --cells %ld --sleepers %ld --syscall-cells %ld --live %s "
              "--admit-cells %ld --rounds %ld%s%s\n",
              argv[0], o.reactor.c_str(), o.cells, o.sleepers, o.syscall_cells, live.c_str(),
              o.admit_cells, o.rounds, o.only.empty() ? "" : " --only ", o.only.c_str());
  std::fflush(stdout);
  if (o.only.empty() || o.only == "throughput") throughput(o);
  std::fflush(stdout);
  if (o.only.empty() || o.only == "syscalls") syscalls(o);
  std::fflush(stdout);
  if (o.only.empty() || o.only == "density") density(o);
  std::fflush(stdout);
  if (o.only.empty() || o.only == "admission") admission(o);
  return 0;
}
