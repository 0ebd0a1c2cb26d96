// spawn_bench: how long one isolated /bin/true takes, end to end, through three launchers.
//
//   spawn_bench --reactor PATH [-n 500] [--warmup 20] [--csv FILE] [--compare PATH2]
//
//   floor    <dir of spawn_bench>/spawn_floor   clone3 with new namespaces + exec + waitid: the
//                                                kernel's floor
//   reactor  PATH run SPEC --config FLEET --events /dev/null
//                                                a whole cell: spec, policy, cgroup, namespaces,
//                                                seccomp, events
//   bwrap    bwrap --unshare-all --die-with-parent --ro-bind / / --tmpfs /tmp /bin/true
//                                                the best-known peer
//   pooled   PATH run SPEC --via-daemon --config POOL_FLEET
//                                                the same cell handed to a daemon with a warm
//                                                pool ([pool] size = 2): the cell binds a
//                                                prepared process (cells/warm_pool.h)
//   dcold    PATH run SPEC --via-daemon --config COLD_FLEET
//                                                the same through a daemon without a pool
//                                                ([pool] enabled = false): what the pool saves
//   pcmp     PATH2 run SPEC --via-daemon --config CMP_FLEET      (only with --compare)
//                                                the pooled row through another build (a
//                                                daemon of PATH2 with the same pool): a before/
//                                                after of the pooled path, interleaved
//
// The two daemons are started by the benchmark (their own state dirs) and stopped at its end.
//
// Each invocation is posix_spawn + waitpid, timed with CLOCK_MONOTONIC. The three run
// interleaved, round-robin, with the starting tool rotating each round, so drift and noise on
// the machine hit all three alike. Every invocation must exit 0: a launcher that failed did
// not do the work, so its time would be a lie; the run aborts with the command and status.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "report_line.h"

extern char** environ;

namespace {

namespace fs = std::filesystem;

struct Options {
  std::string reactor;
  long n = 500;
  long warmup = 20;
  std::string csv;
  std::string compare;  // another cellos-reactor: the pcmp row
};

struct Tool {
  std::string name;
  std::vector<std::string> argv;  // argv[0] is an absolute path
  std::vector<double> ms;         // one per measured invocation
};

struct Stats {
  double median = 0, p99 = 0, mean = 0;
};

// Single-quotes an argument for a shell when it needs it, so printed commands can be pasted.
std::string shell_quote(const std::string& s) {
  bool plain = !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || std::strchr("/._-=:,+@%", c);
  });
  if (plain) return s;
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string join(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) s += (s.empty() ? "" : " ") + shell_quote(a);
  return s;
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const char* name = sigabbrev_np(WTERMSIG(status));
    return std::string("killed by SIG") + (name != nullptr ? name : "?");
  }
  return "wait status " + std::to_string(status);
}

std::optional<long> parse_count(const char* s, long min) {
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < min) return std::nullopt;
  return v;
}

void usage(FILE* to) {
  std::fprintf(to,
               "usage: spawn_bench --reactor PATH [-n N] [--warmup W] [--csv FILE] [--compare PATH2]\n"
               "  --reactor PATH  the cellos-reactor binary to measure (required)\n"
               "  -n N            measured invocations per command (default 500)\n"
               "  --warmup W      unmeasured rounds first (default 20)\n"
               "  --csv FILE      write one row per measured invocation: tool,iteration,ms\n"
               "  --compare PATH2 also the pooled row through a daemon of PATH2 (row pcmp)\n");
}

// Returns the options, or an exit code (0 for --help, 2 for a usage error).
std::variant<Options, int> parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      usage(stdout);
      return 0;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "spawn_bench: %s needs a value\n", a.c_str());
      usage(stderr);
      return 2;
    }
    const char* v = argv[++i];
    if (a == "--reactor") {
      o.reactor = v;
    } else if (a == "--csv") {
      o.csv = v;
    } else if (a == "--compare") {
      o.compare = v;
    } else if (a == "-n" || a == "--warmup") {
      auto c = parse_count(v, a == "-n" ? 1 : 0);
      if (!c) {
        std::fprintf(stderr, "spawn_bench: %s wants a %s integer, got \"%s\"\n", a.c_str(),
                     a == "-n" ? "positive" : "non-negative", v);
        return 2;
      }
      (a == "-n" ? o.n : o.warmup) = *c;
    } else {
      std::fprintf(stderr, "spawn_bench: unknown option %s\n", a.c_str());
      usage(stderr);
      return 2;
    }
  }
  if (o.reactor.empty()) {
    std::fprintf(stderr, "spawn_bench: --reactor PATH is required\n");
    usage(stderr);
    return 2;
  }
  return o;
}

// An executable's absolute path, or nullopt with the reason on stderr.
std::optional<std::string> executable(const std::string& path, const char* what) {
  std::error_code ec;
  fs::path abs = fs::canonical(path, ec);
  if (ec) {
    std::fprintf(stderr, "spawn_bench: %s \"%s\": %s\n", what, path.c_str(),
                 ec.message().c_str());
    return std::nullopt;
  }
  if (::access(abs.c_str(), X_OK) != 0) {
    std::fprintf(stderr, "spawn_bench: %s \"%s\": %s\n", what, abs.c_str(),
                 std::strerror(errno));
    return std::nullopt;
  }
  return abs.string();
}

// The first executable `name` in $PATH, as a shell would find it.
std::optional<std::string> find_in_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string dir = dirs.substr(start, end - start);
    std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    struct stat st{};
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        ::access(candidate.c_str(), X_OK) == 0)
      return fs::absolute(candidate).string();
    start = end + 1;
  }
  return std::nullopt;
}

// The daemon's own admission latency (admitted -> the cell's process started or bound), mean
// ms, from its metrics.prom (cellos_spawn_latency_seconds_sum / _count); -1 if absent.
double daemon_spawn_ms(const fs::path& state_dir) {
  std::ifstream in(state_dir / "metrics.prom");
  double sum = -1, count = 0;
  for (std::string line; std::getline(in, line);) {
    auto value = [&] { return std::strtod(line.c_str() + line.rfind(' ') + 1, nullptr); };
    if (line.rfind("cellos_spawn_latency_seconds_sum", 0) == 0) sum = value();
    if (line.rfind("cellos_spawn_latency_seconds_count", 0) == 0) count = value();
  }
  return sum < 0 || count <= 0 ? -1 : 1000.0 * sum / count;
}

bool write_file(const fs::path& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << data;
  out.close();
  if (!out) {
    std::fprintf(stderr, "spawn_bench: cannot write %s\n", path.c_str());
    return false;
  }
  return true;
}

double now_ms() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

// Runs argv once with stdin from /dev/null, and stdout and stderr to /dev/null unless
// `show_stderr`. Returns the wait status (or -1 if the spawn failed) and the wall time.
struct Run {
  int status = -1;
  double ms = 0;
};

Run run_once(const std::vector<std::string>& argv, int devnull, bool show_stderr) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, devnull, 0);
  posix_spawn_file_actions_adddup2(&fa, devnull, 1);
  if (!show_stderr) posix_spawn_file_actions_adddup2(&fa, devnull, 2);

  Run r;
  double start = now_ms();
  pid_t pid = -1;
  int err = ::posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ);
  if (err == 0) {
    pid_t w;
    do w = ::waitpid(pid, &r.status, 0);
    while (w < 0 && errno == EINTR);
    if (w != pid) {
      std::fprintf(stderr, "spawn_bench: waitpid: %s\n", std::strerror(errno));
      r.status = -1;
    }
  } else {
    std::fprintf(stderr, "spawn_bench: posix_spawn %s: %s\n", args[0], std::strerror(err));
  }
  r.ms = now_ms() - start;
  posix_spawn_file_actions_destroy(&fa);
  return r;
}

// Runs every tool `rounds` times, interleaved. Returns false, having said why, when any
// invocation did not exit 0.
bool run_rounds(std::vector<Tool>& tools, long rounds, bool record, int devnull) {
  const size_t k = tools.size();
  for (long round = 0; round < rounds; ++round) {
    for (size_t j = 0; j < k; ++j) {
      Tool& t = tools[(static_cast<size_t>(round) + j) % k];
      Run r = run_once(t.argv, devnull, false);
      if (r.status == 0) {
        if (record) t.ms.push_back(r.ms);
        continue;
      }
      std::fprintf(stderr,
                   "spawn_bench: %s failed on %s round %ld: %s\n"
                   "  command: %s\n"
                   "spawn_bench: running it once more with its stderr shown:\n",
                   t.name.c_str(), record ? "measured" : "warm-up", round + 1,
                   r.status < 0 ? "could not run" : describe_status(r.status).c_str(),
                   join(t.argv).c_str());
      std::fflush(stderr);
      Run again = run_once(t.argv, devnull, true);
      std::fprintf(stderr, "spawn_bench: the re-run ended with %s\n",
                   again.status < 0 ? "a spawn failure" : describe_status(again.status).c_str());
      return false;
    }
  }
  return true;
}

Stats stats_of(std::vector<double> v) {
  Stats s;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  s.median = n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  // Nearest rank: the smallest sample with at least 99% of samples at or below it.
  size_t rank = static_cast<size_t>(std::ceil(0.99 * static_cast<double>(n)));
  s.p99 = v[std::max<size_t>(rank, 1) - 1];
  double sum = 0;
  for (double x : v) sum += x;
  s.mean = sum / static_cast<double>(n);
  return s;
}

void print_ratio(const char* label, double num, double den, double target) {
  double ratio = num / den;
  std::printf("%-22s %6.2f   (target <= %.1f)  %s\n", label, ratio, target,
              ratio <= target ? "PASS" : "MISS");
}

// The temp dir holding spec.json, fleet.toml and the reactor's state_dir; removed on exit.
class TempDir {
 public:
  bool create() {
    char tmpl[] = "/tmp/cellos-spawn-bench-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) {
      std::fprintf(stderr, "spawn_bench: mkdtemp(%s): %s\n", tmpl, std::strerror(errno));
      return false;
    }
    path_ = tmpl;
    return true;
  }
  ~TempDir() {
    if (path_.empty()) return;
    // `run` keeps its host's cgroup parents for the next cell; the benchmark's host is its own,
    // so it removes them (rmdir: only if empty, only ours).
    for (const char* h : {"unified", "memory", "pids", "cpu"}) {
      const std::string root = std::string("/sys/fs/cgroup/") + h + "/cellos";
      ::rmdir((root + "/bench").c_str());
      ::rmdir(root.c_str());
    }
    std::error_code ec;
    fs::remove_all(path_, ec);
    if (ec)
      std::fprintf(stderr, "spawn_bench: could not remove %s: %s\n", path_.c_str(),
                   ec.message().c_str());
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// A fleet daemon the benchmark starts for the pooled and daemon-cold tools, SIGTERM'd at the end.
class Daemon {
 public:
  bool start(const std::string& reactor, const fs::path& fleet, int devnull) {
    std::vector<std::string> argv = {reactor, "--config", fleet.string()};
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, devnull, 1);
    posix_spawn_file_actions_adddup2(&fa, devnull, 2);
    int rc = posix_spawn(&pid_, argv[0].c_str(), &fa, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
      std::fprintf(stderr, "spawn_bench: starting %s: %s\n", join(argv).c_str(), std::strerror(rc));
      pid_ = -1;
      return false;
    }
    // Serving once `status` answers (at most 20 s).
    std::vector<std::string> status = {reactor, "status", "--config", fleet.string()};
    std::vector<char*> sargs;
    for (auto& a : status) sargs.push_back(a.data());
    sargs.push_back(nullptr);
    for (int i = 0; i < 200; ++i) {
      pid_t p;
      posix_spawn_file_actions_t q;
      posix_spawn_file_actions_init(&q);
      posix_spawn_file_actions_adddup2(&q, devnull, 1);
      posix_spawn_file_actions_adddup2(&q, devnull, 2);
      int s = 1;
      if (posix_spawn(&p, status[0].c_str(), &q, nullptr, sargs.data(), environ) == 0)
        ::waitpid(p, &s, 0);
      posix_spawn_file_actions_destroy(&q);
      if (s == 0) {
        // The pool fills while the reactor is idle: give it that moment.
        ::usleep(300 * 1000);
        return true;
      }
      ::usleep(100 * 1000);
    }
    std::fprintf(stderr, "spawn_bench: %s did not start serving\n", join(argv).c_str());
    return false;
  }
  ~Daemon() { stop(); }
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    int s = 0;
    ::waitpid(pid_, &s, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
};

int bench(const Options& opt) {
  // The floor program ships beside this one (the build puts both in bench/).
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (ec) {
    std::fprintf(stderr, "spawn_bench: readlink /proc/self/exe: %s\n", ec.message().c_str());
    return 1;
  }
  auto floor = executable((self.parent_path() / "spawn_floor").string(), "floor program");
  auto reactor = executable(opt.reactor, "--reactor");
  if (!floor || !reactor) return 1;
  auto bwrap = find_in_path("bwrap");
  std::optional<std::string> compare;
  if (!opt.compare.empty()) {
    compare = executable(opt.compare, "--compare");
    if (!compare) return 1;
  }

  // Opened before measuring: a bad --csv path should not cost a whole run.
  FILE* csv = nullptr;
  if (!opt.csv.empty()) {
    csv = std::fopen(opt.csv.c_str(), "w");
    if (csv == nullptr) {
      std::fprintf(stderr, "spawn_bench: --csv %s: %s\n", opt.csv.c_str(), std::strerror(errno));
      return 1;
    }
  }
  struct CsvCloser {
    FILE* f;
    ~CsvCloser() {
      if (f != nullptr) std::fclose(f);
    }
  } csv_closer{csv};

  TempDir tmp;
  if (!tmp.create()) return 1;
  const fs::path spec = tmp.path() / "spec.json";
  const fs::path fleet = tmp.path() / "fleet.toml";
  if (!write_file(spec,
                  R"({"apiVersion":"cellos.io/v1","kind":"ExecutionCell",)"
                  R"("spec":{"id":"bench-spawn","run":{"argv":["/bin/true"]}}})"
                  "\n") ||
      !write_file(fleet, "[host]\nid = \"bench\"\nstate_dir = \"" +
                             (tmp.path() / "state").string() + "\"\n"))
    return 1;

  // The daemons' fleets: their own state dirs (and so their own cgroup parents' leaves).
  const fs::path pool_fleet = tmp.path() / "fleet-pool.toml";
  const fs::path cold_fleet = tmp.path() / "fleet-dcold.toml";
  if (!write_file(pool_fleet, "[host]\nid = \"bench\"\nstate_dir = \"" +
                                  (tmp.path() / "pool-state").string() +
                                  "\"\n[pool]\nenabled = true\nsize = 2\n") ||
      !write_file(cold_fleet, "[host]\nid = \"bench-dcold\"\nstate_dir = \"" +
                                  (tmp.path() / "dcold-state").string() +
                                  "\"\n[pool]\nenabled = false\n"))
    return 1;
  const fs::path cmp_fleet = tmp.path() / "fleet-pcmp.toml";
  if (compare && !write_file(cmp_fleet, "[host]\nid = \"bench-pcmp\"\nstate_dir = \"" +
                                            (tmp.path() / "pcmp-state").string() +
                                            "\"\n[pool]\nenabled = true\nsize = 2\n"))
    return 1;
  int daemon_null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  Daemon pool_daemon, cold_daemon, cmp_daemon;
  if (daemon_null < 0 || !pool_daemon.start(*reactor, pool_fleet, daemon_null) ||
      !cold_daemon.start(*reactor, cold_fleet, daemon_null) ||
      (compare && !cmp_daemon.start(*compare, cmp_fleet, daemon_null)))
    return 1;
  ::close(daemon_null);

  std::vector<Tool> tools;
  tools.push_back({"floor", {*floor}, {}});
  tools.push_back({"reactor",
                   {*reactor, "run", spec.string(), "--config", fleet.string(), "--events",
                    "/dev/null"},
                   {}});
  if (bwrap) {
    tools.push_back({"bwrap",
                     {*bwrap, "--unshare-all", "--die-with-parent", "--ro-bind", "/", "/",
                      "--tmpfs", "/tmp", "/bin/true"},
                     {}});
  }
  tools.push_back({"pooled",
                   {*reactor, "run", spec.string(), "--via-daemon", "--config", pool_fleet.string()},
                   {}});
  tools.push_back({"dcold",
                   {*reactor, "run", spec.string(), "--via-daemon", "--config", cold_fleet.string()},
                   {}});
  if (compare)
    tools.push_back({"pcmp",
                     {*compare, "run", spec.string(), "--via-daemon", "--config", cmp_fleet.string()},
                     {}});

  utsname u{};
  ::uname(&u);
  std::printf("spawn_bench: %ld measured invocations per command, interleaved, after %ld "
              "warm-up rounds\nhost: Linux %s, %ld CPUs\n",
              opt.n, opt.warmup, u.release, ::sysconf(_SC_NPROCESSORS_ONLN));
  for (const Tool& t : tools) std::printf("  %-8s %s\n", t.name.c_str(), join(t.argv).c_str());
  if (!bwrap)
    std::printf("  %-8s not installed (no bwrap in PATH): column and ratio skipped\n", "bwrap");
  std::fflush(stdout);

  int devnull = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (devnull < 0) {
    std::fprintf(stderr, "spawn_bench: open /dev/null: %s\n", std::strerror(errno));
    return 1;
  }
  bool ok = run_rounds(tools, opt.warmup, false, devnull) &&
            run_rounds(tools, opt.n, true, devnull);
  ::close(devnull);
  if (!ok) return 1;

  // Stopped now: their last metrics are written on the way out.
  pool_daemon.stop();
  cold_daemon.stop();
  cmp_daemon.stop();
  const double pool_admit_ms = daemon_spawn_ms(tmp.path() / "pool-state");
  const double cold_admit_ms = daemon_spawn_ms(tmp.path() / "dcold-state");
  std::printf("\n%-8s %10s %10s %10s\n", "command", "median ms", "p99 ms", "mean ms");
  std::vector<Stats> stats;
  for (const Tool& t : tools) {
    stats.push_back(stats_of(t.ms));
    std::printf("%-8s %10.3f %10.3f %10.3f\n", t.name.c_str(), stats.back().median,
                stats.back().p99, stats.back().mean);
  }
  std::printf("\n");
  print_ratio("reactor/floor median", stats[1].median, stats[0].median, 1.5);
  if (bwrap)
    print_ratio("reactor/bwrap median", stats[1].median, stats[2].median, 0.5);
  else
    std::printf("%-22s skipped (bwrap not installed)\n", "reactor/bwrap median");
  const size_t pooled = bwrap ? 3 : 2, dcold = pooled + 1;
  print_ratio("pooled/floor median", stats[pooled].median, stats[0].median, 1.5);
  if (bwrap) print_ratio("pooled/bwrap median", stats[pooled].median, stats[2].median, 0.5);
  std::printf("%-22s %.2f (the pool's saving through the same daemon path)\n",
              "pooled/dcold median", stats[pooled].median / stats[dcold].median);
  std::printf("%-22s pooled %.3f ms, dcold %.3f ms (the daemon's own, admitted -> started)\n",
              "daemon admission mean", pool_admit_ms, cold_admit_ms);
  const size_t pcmp = dcold + 1;
  if (compare)
    std::printf("%-22s %.3f (pooled through --reactor against pooled through --compare)\n",
                "pooled/pcmp median", stats[pooled].median / stats[pcmp].median);

  if (csv != nullptr) {
    std::fprintf(csv, "tool,iteration,ms\n");
    for (const Tool& t : tools)
      for (size_t i = 0; i < t.ms.size(); ++i)
        std::fprintf(csv, "%s,%zu,%.4f\n", t.name.c_str(), i, t.ms[i]);
    if (std::fflush(csv) != 0 || std::ferror(csv)) {
      std::fprintf(stderr, "spawn_bench: writing %s failed\n", opt.csv.c_str());
      return 1;
    }
  }

  // Every option spelled out, with absolute paths, so the line reruns from any directory.
  std::vector<std::string> again = {self.string(), "--reactor", *reactor, "-n",
                                    std::to_string(opt.n), "--warmup",
                                    std::to_string(opt.warmup)};
  if (!opt.csv.empty()) {
    again.push_back("--csv");
    again.push_back(fs::absolute(opt.csv).string());
  }
  if (compare) {
    again.push_back("--compare");
    again.push_back(*compare);
  }
  std::printf("reproduce: %s\n", join(again).c_str());

  // The line bench/report.py reads.
  cellos::bench::ReportLine rep("spawn");
  for (size_t i = 0; i < tools.size(); ++i)
    rep.row(tools[i].name, {{"median ms", stats[i].median}, {"p99 ms", stats[i].p99},
                            {"mean ms", stats[i].mean}});
  rep.metric("reactor/floor median", stats[1].median / stats[0].median, "x", "<= 1.5",
             stats[1].median / stats[0].median <= 1.5);
  if (bwrap)
    rep.metric("reactor/bwrap median", stats[1].median / stats[2].median, "x", "<= 0.5",
               stats[1].median / stats[2].median <= 0.5);
  rep.metric("pooled/floor median", stats[pooled].median / stats[0].median, "x", "<= 1.5",
             stats[pooled].median / stats[0].median <= 1.5);
  if (bwrap)
    rep.metric("pooled/bwrap median", stats[pooled].median / stats[2].median, "x", "<= 0.5",
               stats[pooled].median / stats[2].median <= 0.5);
  rep.metric("pooled/dcold median", stats[pooled].median / stats[dcold].median, "x");
  rep.metric("daemon admission mean, pooled", pool_admit_ms, "ms");
  rep.metric("daemon admission mean, dcold", cold_admit_ms, "ms");
  if (compare) rep.metric("pooled/pcmp median", stats[pooled].median / stats[pcmp].median, "x");
  rep.field("n", static_cast<double>(opt.n)).field("reproduce", join(again));
  if (!opt.csv.empty()) rep.field("samples", fs::absolute(opt.csv).string());
  rep.print();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  auto parsed = parse_args(argc, argv);
  if (const int* code = std::get_if<int>(&parsed)) return *code;
  return bench(std::get<Options>(parsed));
}
