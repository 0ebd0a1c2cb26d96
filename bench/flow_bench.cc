// flow_bench: per-flow enforcement, measured from outside as a user runs the fleet daemon.
//
//   flow_bench --reactor PATH [--out DIR] [--cells 4] [--conns 500] [--bytes 65536]
//              [--udp-packets 1000000] [--udp-pps 500000] [--udp-size 64] [--repeat 3]
//              [--modes none,nft,bpf,both] [--probes on,off] [--timeout 180]
//
// One server test host (netns + veth, 172.30.K.2) runs the sink. For each mode x probes (and
// each repeat, rotating the order so drift falls on every row alike) a fresh daemon with
// `uplink = "nat"` on 172.31.K.0/24 runs N cells whose command is this binary in --client mode:
// C TCP connections (connect timed), B bytes each, then a paced UDP flood. Cells wait at a
// start barrier (a file the driver creates once all N have started), so the load is N
// parallel cells. Afterwards the driver reads the clients' result lines, the sink's counts, the
// reactor's CPU and the event log. Outputs in DIR: results.csv, runs.csv, plots, summary.md.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/flow_bench.h"
#include "bench/flow_host.h"
#include "bench/flow_report.h"
#include "bench/report_line.h"

namespace cellos::flowbench {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

volatile sig_atomic_t g_stop = 0;  // SIGINT/SIGTERM: finish the current step, clean up, exit
void on_signal(int) { g_stop = 1; }

struct Options {
  std::string reactor, out_dir = "build/bench/flows", self;
  std::string client_exe;  // what the cells run: a copy of self (see BinCopy)
  long cells = 4, conns = 500, bytes = 65536, udp_packets = 1000000, udp_size = 64, repeat = 3;
  double udp_pps = 500000;
  int timeout_s = 180;
  std::vector<std::string> modes{"none", "nft", "bpf", "both"};
  std::vector<bool> probes{true, false};
};

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The last non-empty line of a daemon's stderr: its one-line error when it refused to run.
std::string last_line(const std::string& text) {
  std::string t = text;
  while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
  size_t nl = t.rfind('\n');
  return nl == std::string::npos ? t : t.substr(nl + 1);
}

// The reactor's CPU, ns: the sum of every task's schedstat (the reactor thread and io_uring's
// io-wq workers, which are its threads), nanosecond-exact where /proc/pid/stat has 10 ms ticks.
// An exited worker's time leaves the task list but stays in /proc/pid/stat's utime+stime, so
// the larger of the two is taken.
double reactor_cpu_ns(pid_t pid) {
  const std::string proc = "/proc/" + std::to_string(pid);
  double sum = 0;
  std::error_code ec;
  for (const auto& t : fs::directory_iterator(proc + "/task", ec))
    sum += std::atof(read_text(t.path().string() + "/schedstat").c_str());
  std::string s = read_text(proc + "/stat");
  if (s.rfind(')') == std::string::npos) return sum;
  std::istringstream in(s.substr(s.rfind(')') + 2));
  std::string f;
  double ticks = 0;
  for (int i = 3; i <= 15 && in >> f; ++i)
    if (i == 14 || i == 15) ticks += std::atof(f.c_str());
  return std::max(sum, ticks * 1e9 / static_cast<double>(::sysconf(_SC_CLK_TCK)));
}

// All CPUs' busy time (everything but idle and iowait) from /proc/stat, ns.
double host_busy_ns() {
  std::istringstream in(read_text("/proc/stat"));
  std::string cpu;
  double v[10] = {};
  in >> cpu;
  for (double& x : v) in >> x;
  double busy = 0;
  for (int i = 0; i < 8; ++i)
    if (i != 3 && i != 4) busy += v[i];
  return busy * 1e9 / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// Lines of a growing log containing a needle, read incrementally (the daemon_bench way).
class LogCounter {
 public:
  explicit LogCounter(std::string path) : path_(std::move(path)) {}
  long count(const std::string& needle) {
    refresh();
    long n = 0;
    for (const auto& l : lines_) n += l.find(needle) != std::string::npos;
    return n;
  }

 private:
  void refresh() {
    int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    ::lseek(fd, off_, SEEK_SET);
    char buf[1 << 16];
    ssize_t r;
    while ((r = ::read(fd, buf, sizeof buf)) > 0) {
      off_ += r;
      partial_.append(buf, static_cast<size_t>(r));
      size_t pos = 0, nl;
      while ((nl = partial_.find('\n', pos)) != std::string::npos) {
        std::string_view l = std::string_view(partial_).substr(pos, nl - pos);
        // Only what the waits look for is kept: lifecycle lines, not the flow events.
        if (l.find("lifecycle.v1.") != std::string::npos) lines_.emplace_back(l);
        pos = nl + 1;
      }
      partial_.erase(0, pos);
    }
    ::close(fd);
  }
  std::string path_, partial_;
  off_t off_ = 0;
  std::vector<std::string> lines_;
};

// A world-readable copy of this binary in /var/tmp, removed at the end.
class BinCopy {
 public:
  explicit BinCopy(const std::string& self) {
    char tmpl[] = "/var/tmp/cellos-flowbench-bin-XXXXXX";
    if (!::mkdtemp(tmpl)) {
      error_ = strerror(errno);
      return;
    }
    dir_ = tmpl;
    ::chmod(dir_.c_str(), 0755);
    std::error_code ec;
    fs::copy_file(self, path(), ec);
    if (ec) error_ = ec.message();
    else ::chmod(path().c_str(), 0755);
  }
  ~BinCopy() {
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }
  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  std::string path() const { return dir_ + "/flow_bench"; }

 private:
  std::string dir_, error_;
};

// One daemon run's directory, fleet.toml and process. The destructor stops the daemon and
// removes what it made, whatever happened in between.
class Fleet {
 public:
  Fleet(const Options& o, const std::string& mode, bool probes, int octet, int run) {
    char tmpl[] = "/var/tmp/cellos-flowbench-XXXXXX";
    if (!::mkdtemp(tmpl)) throw std::runtime_error("mkdtemp /var/tmp: " + std::string(strerror(errno)));
    dir_ = tmpl;
    // Cells run as the policy uid and must see the start barrier file: the dir is world-readable.
    ::chmod(dir_.c_str(), 0755);
    host_ = "fb" + std::to_string(::getpid()) + "r" + std::to_string(run);
    std::ofstream(dir_ + "/fleet.toml")
        << "[host]\nid = \"" << host_ << "\"\nstate_dir = \"" << dir_ << "/state\"\n"
        << "max_concurrent_cells = " << o.cells << "\nshutdown_grace_seconds = 0\n"
        << "[policy]\nargv0_allow_prefixes = [\"" << fs::path(o.client_exe).parent_path().string() << "\"]\n"
        << "[network]\nuplink = \"nat\"\nsubnet = \"172.31." << octet << ".0/24\"\n"
        << "enforcement = \"" << mode << "\"\n"
        << "[flows]\nprobes = " << (probes ? "true" : "false") << "\n";
    fs::create_directories(dir_ + "/state/spool");
    fs::create_directories(dir_ + "/staging");
  }
  ~Fleet() {
    stop();
    std::error_code ec;
    fs::remove_all(dir_, ec);
    for (const char* h : {"unified", "memory", "pids", "cpu", ""}) {
      std::string root = std::string("/sys/fs/cgroup/") + h + (*h ? "/" : "") + "cellos";
      ::rmdir((root + "/" + host_).c_str());
      ::rmdir(root.c_str());
    }
  }
  // False with the daemon's own last line when it would not start.
  bool start(const std::string& reactor, std::string& error) {
    pid_t parent = ::getpid();
    pid_ = ::fork();
    if (pid_ == 0) {
      // SIGTERM if the driver dies: the daemon's own clean stop removes bridge, table, cells.
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != parent) ::_exit(1);
      int null = ::open("/dev/null", O_RDWR), err = ::open((dir_ + "/daemon.err").c_str(),
                                                            O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(null, 0), ::dup2(null, 1), ::dup2(err, 2);
      ::execl(reactor.c_str(), reactor.c_str(), "--config", (dir_ + "/fleet.toml").c_str(),
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
    for (int i = 0; i < 400 && !fs::exists(dir_ + "/state/reactor.sock"); ++i) {
      if (exited()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    if (fs::exists(dir_ + "/state/reactor.sock") && !exited()) return true;
    error = "daemon did not start: " + last_line(read_text(dir_ + "/daemon.err"));
    stop();
    return false;
  }
  bool exited() {
    if (pid_ <= 0) return true;
    int st;
    if (::waitpid(pid_, &st, WNOHANG) == pid_) {
      pid_ = -1;
      status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      return true;
    }
    return false;
  }
  // SIGTERM, then SIGKILL after 30 s. Returns the exit status.
  int stop() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      for (int i = 0; i < 3000 && !exited(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      if (pid_ > 0) {
        ::kill(pid_, SIGKILL);
        int st;
        ::waitpid(pid_, &st, 0);
        pid_ = -1;
        status_ = 137;
      }
    }
    return status_;
  }
  void stage(const std::string& id, const std::string& spec) {
    std::ofstream(dir_ + "/staging/" + id + ".json") << spec;
    staged_.push_back(id + ".json");
  }
  void submit_all() {
    for (const auto& n : staged_) fs::rename(dir_ + "/staging/" + n, dir_ + "/state/spool/" + n);
  }
  pid_t pid() const { return pid_; }
  const std::string& dir() const { return dir_; }
  std::string events() const { return dir_ + "/state/events.jsonl"; }
  std::string stderr_text() const { return read_text(dir_ + "/daemon.err"); }

 private:
  std::string dir_, host_;
  pid_t pid_ = -1;
  int status_ = 0;
  std::vector<std::string> staged_;
};

std::string client_spec(const Options& o, const ServerHost& s, const std::string& id,
                        const std::string& go) {
  const long per_cell_udp = o.udp_packets / o.cells;
  json argv = json::array({o.client_exe, "--client", "--server", s.ip(), "--tcp-port", std::to_string(s.tcp_port()),
                           "--udp-port", std::to_string(s.udp_port()), "--conns", std::to_string(o.conns),
                           "--bytes", std::to_string(o.bytes), "--udp-packets", std::to_string(per_cell_udp),
                           "--udp-pps", std::to_string(o.udp_pps / static_cast<double>(o.cells)),
                           "--udp-size", std::to_string(o.udp_size), "--go", go});
  json spec = {{"apiVersion", "cellos.io/v1"},
               {"kind", "ExecutionCell"},
               {"spec",
                {{"id", id},
                 {"authority",
                  {{"egressRules", json::array({{{"host", s.ip()}, {"port", s.tcp_port()}, {"protocol", "tcp"}},
                                                {{"host", s.ip()}, {"port", s.udp_port()}, {"protocol", "udp"}}})}}},
                 {"run", {{"argv", argv}, {"timeoutMs", o.timeout_s * 1000}}}}}};
  return spec.dump();
}

double percentile(std::vector<int64_t>& v, double q) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  return static_cast<double>(v[std::min(v.size() - 1, static_cast<size_t>(static_cast<double>(v.size()) * q))]);
}

// Reads the finished run's event log: flow events, the destroyed events' flow summaries,
// setup failures and the host's flow_probes event.
void read_events(const std::string& path, const std::string& server_ip, Row& r, std::string& cell_error) {
  std::ifstream in(path);
  std::string line;
  std::set<std::string> tcp_flows;
  long destroyed = 0, with_summary = 0;
  double lost = 0;
  while (std::getline(in, line)) {
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.contains("type") || !j.contains("data")) continue;
    const std::string type = j["type"].get<std::string>();
    const json& d = j["data"];
    auto u = [&](const char* k) { return d.contains(k) && d[k].is_number() ? d[k].get<double>() : 0.0; };
    if (type.ends_with(".network_flow_decision")) {
      ++r.flow_events;
      if (d.value("decision", "") != "allow" || d.value("dstAddr", "") != server_ip) continue;
      if (d.value("protocol", "") == "tcp") {
        tcp_flows.insert(d.value("cellId", "") + ":" + std::to_string(d.value("srcPort", 0)));
        r.tcp_tx_bytes_ev += u("txBytes"), r.tcp_rx_bytes_ev += u("rxBytes");
      } else if (d.value("protocol", "") == "udp") {
        r.udp_tx_packets_ev += u("txPackets"), r.udp_tx_bytes_ev += u("txBytes");
      }
    } else if (type.ends_with(".lifecycle.v1.destroyed")) {
      ++destroyed;
      if (d.contains("flows") && d["flows"].is_object()) {
        const json& f = d["flows"];
        bool any = false;
        for (const char* k : {"lostRecords", "nflogGaps", "evictedFlows"})
          if (f.contains(k)) lost += f[k].get<double>(), any = true;
        with_summary += any;
      }
    } else if (type.ends_with(".command.v1.completed")) {
      if (cell_error.empty() && d.value("reason", "") == "setup_failed")
        cell_error = "setup_failed: " + d.value("error", "");
    } else if (type.ends_with(".lifecycle.v1.rejected")) {
      if (cell_error.empty()) cell_error = "rejected: " + d.value("reason", "");
    } else if (type.ends_with(".flow_probes")) {
      r.enforcement_reported = d.value("enforcement", "");
      r.note = "flow_probes active=" + std::string(d.value("active", false) ? "true" : "false") +
               " enforcement=" + d.value("enforcement", "") +
               (d.contains("reason") ? " reason=" + d.value("reason", "") : "");
    }
  }
  r.tcp_flows_ev = static_cast<double>(tcp_flows.size());
  if (r.note.empty())
    r.note = "no flow_probes event in the log: the reactor did not say which enforcement and probes ran";
  // Missing summaries are unknown, never zero: the target is "0 lost", and silence is not 0.
  r.lost = destroyed > 0 && with_summary == destroyed ? lost : NAN;
}

void wait_until(const std::function<bool()>& done, Fleet& f, int timeout_s, std::string& error,
                const std::string& what) {
  auto t0 = std::chrono::steady_clock::now();
  while (!done()) {
    if (g_stop) return void(error = "interrupted");
    if (f.exited()) return void(error = "daemon exited during the run: " + last_line(f.stderr_text()));
    if (std::chrono::steady_clock::now() - t0 > std::chrono::seconds(timeout_s))
      return void(error = "timed out after " + std::to_string(timeout_s) + " s waiting for " + what);
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

Row run_once(const Options& o, ServerHost& server, const std::string& mode, bool probes, int octet, int run) {
  Row r;
  r.mode = mode, r.probes = probes, r.runs = 1, r.cells = static_cast<double>(o.cells);
  ServerCounts junk;
  server.counts(junk);  // anything left from an earlier run is not this run's
  Fleet f(o, mode, probes, octet, run);
  // In the binary's directory: the one host directory in a cell's view (the argv0 prefix);
  // the run's own dir under /var/tmp is not, so a barrier there never opened.
  const std::string go =
      fs::path(o.client_exe).parent_path().string() + "/go-" + std::to_string(run);
  std::vector<std::string> ids;
  for (long i = 0; i < o.cells; ++i) {
    ids.push_back("fb-" + mode + (probes ? "-p" : "-n") + "-" + std::to_string(i));
    f.stage(ids.back(), client_spec(o, server, ids.back(), go));
  }
  if (!f.start(o.reactor, r.error)) return r;
  LogCounter log(f.events());
  double cpu0 = reactor_cpu_ns(f.pid());
  int64_t t_spool = mono_ns();
  f.submit_all();
  const long n = o.cells;
  auto finished = [&] { return log.count("lifecycle.v1.destroyed\"") + log.count("lifecycle.v1.rejected\""); };
  // The barrier opens when every cell has started, or as soon as one has ended (it failed: the
  // others must not wait for it).
  std::string error;
  wait_until([&] { return log.count("lifecycle.v1.started\"") >= n || finished() > 0; }, f, 60, error,
             "all cells to start");
  double busy0 = host_busy_ns();
  int64_t t_go = mono_ns();
  std::ofstream(go) << "go\n";
  if (error.empty()) wait_until([&] { return finished() >= n; }, f, o.timeout_s, error, "the cells to end");
  int64_t t_end = mono_ns();
  double busy1 = host_busy_ns();
  double cpu1 = f.pid() > 0 ? reactor_cpu_ns(f.pid()) : cpu0;
  ServerCounts sc;
  bool have_server = server.counts(sc);
  int status = f.stop();
  if (error.empty() && status != 0)
    error = "daemon exit status " + std::to_string(status) + ": " + last_line(f.stderr_text());

  std::string cell_error;
  read_events(f.events(), server.ip(), r, cell_error);
  // The clients' own lines.
  std::vector<int64_t> lat;
  int64_t tcp0 = INT64_MAX, tcp1 = 0, udp0 = INT64_MAX, udp1 = 0;
  long results = 0;
  for (const auto& id : ids) {
    std::string out = read_text(f.dir() + "/state/logs/" + id + "/stdout");
    json j = json::parse(out.substr(0, out.find('\n')), nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      if (cell_error.empty())
        cell_error = "cell " + id + " printed no result; stderr: " +
                     last_line(read_text(f.dir() + "/state/logs/" + id + "/stderr"));
      continue;
    }
    ++results;
    r.conns += j["connsOk"].get<double>(), r.conns_failed += j["connsFailed"].get<double>();
    r.tcp_bytes += j["tcpBytes"].get<double>();
    r.packets += j["tcpSegsOut"].get<double>() + j["tcpSegsIn"].get<double>() + j["udpSent"].get<double>();
    r.udp_sent += j["udpSent"].get<double>(), r.udp_bytes += j["udpBytes"].get<double>();
    for (const auto& x : j["connectNs"]) lat.push_back(x.get<int64_t>());
    if (j["connsOk"].get<long>() > 0) tcp0 = std::min(tcp0, j["tcpStart"].get<int64_t>()), tcp1 = std::max(tcp1, j["tcpEnd"].get<int64_t>());
    if (j["udpSent"].get<long>() > 0) udp0 = std::min(udp0, j["udpStart"].get<int64_t>()), udp1 = std::max(udp1, j["udpEnd"].get<int64_t>());
    if (cell_error.empty() && !j["error"].get<std::string>().empty()) cell_error = "client: " + j["error"].get<std::string>();
  }
  if (error.empty() && results < n) error = std::to_string(n - results) + " of " + std::to_string(n) + " cells gave no result: " + cell_error;
  if (error.empty() && r.conns_failed > 0) error = "connections failed: " + cell_error;
  if (error.empty() && !have_server) error = "the sink gave no counts";
  r.ok = error.empty();
  r.error = error;
  if (!cell_error.empty() && r.ok) r.note += (r.note.empty() ? "" : "; ") + cell_error;

  r.server_conns = static_cast<double>(sc.conns), r.server_bytes = static_cast<double>(sc.bytes);
  r.udp_server = static_cast<double>(sc.datagrams);
  double tcp_s = tcp1 > tcp0 ? static_cast<double>(tcp1 - tcp0) / 1e9 : NAN;
  r.conns_per_s = r.conns / tcp_s, r.throughput_Bps = r.tcp_bytes / tcp_s;
  r.p50_us = percentile(lat, 0.50) / 1e3, r.p99_us = percentile(lat, 0.99) / 1e3;
  r.udp_pps = udp1 > udp0 ? r.udp_sent / (static_cast<double>(udp1 - udp0) / 1e9) : NAN;
  r.flows = r.conns + (r.udp_sent > 0 ? static_cast<double>(results) : 0);
  r.reactor_cpu_ns = cpu1 - cpu0;
  r.cpu_ns_per_flow = r.flows > 0 ? r.reactor_cpu_ns / r.flows : NAN;
  r.host_cpu_ns = busy1 - busy0;
  r.host_ns_per_conn = r.conns > 0 ? r.host_cpu_ns / r.conns : NAN;
  r.host_ns_per_packet = r.packets > 0 ? r.host_cpu_ns / r.packets : NAN;
  r.wall_s = static_cast<double>(t_end - t_spool) / 1e9;
  r.events_per_s = r.flow_events / r.wall_s;
  (void)t_go;
  return r;
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> v;
  std::stringstream ss(s);
  for (std::string x; std::getline(ss, x, ',');) v.push_back(x);
  return v;
}

std::string machine_line() {
  std::string k = last_line(read_text("/proc/sys/kernel/osrelease"));
  std::string load = read_text("/proc/loadavg");
  return "kernel " + k + ", " + std::to_string(::sysconf(_SC_NPROCESSORS_ONLN)) + " CPUs, load " +
         load.substr(0, load.find(' ', load.find(' ') + 1));
}

// Every setting spelled out, absolute paths: the line reruns this exact benchmark from anywhere.
std::string reproduce_line(const Options& o) {
  auto join = [](const auto& v, auto f) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ",") + f(x);
    return s;
  };
  char pps[32];
  std::snprintf(pps, sizeof pps, "%.0f", o.udp_pps);
  return o.self + " --reactor " + o.reactor + " --out " + o.out_dir + " --cells " + std::to_string(o.cells) +
         " --conns " + std::to_string(o.conns) + " --bytes " + std::to_string(o.bytes) + " --udp-packets " +
         std::to_string(o.udp_packets) + " --udp-pps " + pps + " --udp-size " + std::to_string(o.udp_size) +
         " --repeat " + std::to_string(o.repeat) + " --timeout " + std::to_string(o.timeout_s) + " --modes " +
         join(o.modes, [](const std::string& m) { return m; }) + " --probes " +
         join(o.probes, [](bool p) { return std::string(p ? "on" : "off"); });
}

[[noreturn]] void usage(const std::string& msg) {
  std::fprintf(stderr, "flow_bench: %s (see the comment at the top of bench/flow_bench.cc)\n", msg.c_str());
  std::exit(2);
}

int driver(Options o, const std::string& reproduce) {
  if (::geteuid() != 0) usage("needs root (network namespaces, veth, the daemon's cgroups and uplink)");
  struct sigaction sa{};
  sa.sa_handler = on_signal;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  fs::create_directories(o.out_dir);
  o.out_dir = fs::absolute(o.out_dir).string();
  std::printf("reproduce: %s\n%s\n", reproduce.c_str(), machine_line().c_str());
  std::fflush(stdout);

  // The cells' command is a copy of this binary outside /work: a cell's default workspace is a
  // fresh tmpfs at /work, which hides a build tree there (and any path could be a workspace).
  BinCopy bin(o.self);
  if (!bin.ok()) {
    std::fprintf(stderr, "flow_bench: cannot copy %s to /var/tmp: %s\n", o.self.c_str(), bin.error().c_str());
    return 1;
  }
  o.client_exe = bin.path();
  const int octet = free_octet();
  std::vector<std::vector<Row>> runs;  // per mode x probes
  std::vector<std::pair<std::string, bool>> combos;
  for (const auto& m : o.modes)
    for (bool p : o.probes) combos.emplace_back(m, p), runs.emplace_back();
  std::ofstream per_run(o.out_dir + "/runs.csv");
  per_run << "repeat,mode,probes,ok,conns,conns_per_s,p50_us,p99_us,reactor_cpu_ns_per_flow,udp_pps,lost,error\n";
  try {
    ServerHost server(o.self, octet);
    std::printf("server %s tcp %d udp %d; cells on 172.31.%d.0/24\n", server.ip().c_str(), server.tcp_port(),
                server.udp_port(), octet);
    int run = 0;
    for (long rep = 0; rep < o.repeat && !g_stop; ++rep) {
      // Rotate the order each repeat: drift and one run's teardown spilling into the next
      // fall on every row alike.
      for (size_t k = 0; k < combos.size() && !g_stop; ++k) {
        size_t c = (k + static_cast<size_t>(rep)) % combos.size();
        Row r = run_once(o, server, combos[c].first, combos[c].second, octet, run++);
        if (r.ok)
          std::printf("  [%ld] %-4s probes=%-3s ok      conns/s %.0f  connect p50 %.1f us p99 %.1f us  cpu/flow %.0f ns  "
                      "udp %.0f pps\n",
                      rep + 1, r.mode.c_str(), r.probes ? "on" : "off", r.conns_per_s, r.p50_us, r.p99_us,
                      r.cpu_ns_per_flow, r.udp_pps);
        else
          std::printf("  [%ld] %-4s probes=%-3s FAILED  %s\n", rep + 1, r.mode.c_str(), r.probes ? "on" : "off",
                      r.error.c_str());
        std::fflush(stdout);
        per_run << rep + 1 << ',' << r.mode << ',' << (r.probes ? "on" : "off") << ',' << r.ok << ',' << r.conns << ','
                << r.conns_per_s << ',' << r.p50_us << ',' << r.p99_us << ',' << r.cpu_ns_per_flow << ',' << r.udp_pps
                << ',' << r.lost << ",\"" << r.error << "\"\n";
        runs[c].push_back(std::move(r));
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "flow_bench: %s\n", e.what());
    return 1;
  }
  if (g_stop) std::fprintf(stderr, "flow_bench: interrupted; reporting the runs done so far\n");
  std::vector<Row> rows;
  for (auto& v : runs)
    if (!v.empty()) rows.push_back(combine(v));
  // Added latency: against mode none with the same probes setting, so the enforcement's cost
  // is isolated from the probes' in both halves of the table.
  for (auto& r : rows)
    for (const auto& b : rows)
      if (b.mode == "none" && b.probes == r.probes && b.ok)
        r.added_p50_us = r.p50_us - b.p50_us, r.added_p99_us = r.p99_us - b.p99_us;
  write_csv(rows, o.out_dir + "/results.csv");
  std::string plots = write_plots(rows, o.out_dir);
  write_summary(rows, {o.out_dir, reproduce, o.udp_pps, machine_line()});
  std::printf("plots: %s\noutput: %s/{results.csv,runs.csv,summary.md}\n", plots.c_str(), o.out_dir.c_str());
  return g_stop ? 130 : 0;
}

}  // namespace
}  // namespace cellos::flowbench

int main(int argc, char** argv) {
  using namespace cellos::flowbench;
  std::string first = argc > 1 ? argv[1] : "";
  if (first == "--serve") return argc == 3 ? run_server(argv[2]) : 2;
  Options o;
  ClientOptions c;
  char self[4096];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  o.self = n > 0 ? std::string(self, static_cast<size_t>(n)) : argv[0];
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--client") continue;
    if (i + 1 >= argc) usage(a + " needs a value");
    std::string v = argv[++i];
    if (a == "--out") v = std::filesystem::absolute(v).string();
    if (a == "--reactor") v = std::filesystem::absolute(v).string();
    long l = std::atol(v.c_str());
    if (a == "--reactor") o.reactor = v;
    else if (a == "--out") o.out_dir = v;
    else if (a == "--cells") o.cells = l;
    else if (a == "--conns") o.conns = c.conns = l;
    else if (a == "--bytes") o.bytes = c.bytes = l;
    else if (a == "--udp-packets") o.udp_packets = c.udp_packets = l;
    else if (a == "--udp-pps") o.udp_pps = c.udp_pps = std::atof(v.c_str());
    else if (a == "--udp-size") o.udp_size = c.udp_size = static_cast<int>(l);
    else if (a == "--repeat") o.repeat = l;
    else if (a == "--timeout") o.timeout_s = static_cast<int>(l);
    else if (a == "--modes") o.modes = split(v);
    else if (a == "--probes") {
      o.probes.clear();
      for (const auto& p : split(v)) o.probes.push_back(p == "on");
    } else if (a == "--server") c.server = v;
    else if (a == "--tcp-port") c.tcp_port = static_cast<int>(l);
    else if (a == "--udp-port") c.udp_port = static_cast<int>(l);
    else if (a == "--go") c.go_file = v;
    else usage("unknown option " + a);
  }
  if (first == "--client") return run_client(c);
  if (o.reactor.empty()) usage("--reactor PATH is required");
  if (o.cells < 1 || o.cells > 250 || o.conns < 0 || o.bytes < 0 || o.repeat < 1 || o.udp_size < 1 || o.udp_size > 1400)
    usage("--cells 1..250, --conns/--bytes >= 0, --repeat >= 1, --udp-size 1..1400");
  for (const auto& m : o.modes)
    if (m != "none" && m != "nft" && m != "bpf" && m != "both") usage("unknown mode " + m);
  o.out_dir = std::filesystem::absolute(o.out_dir).string();
  const int rc = driver(o, reproduce_line(o));
  // The line bench/report.py reads: its table and figures are summary.md's and --out's.
  cellos::bench::ReportLine("flows")
      .field("out", o.out_dir)
      .field("summary", o.out_dir + "/summary.md")
      .field("reproduce", reproduce_line(o))
      .print();
  return rc;
}
