// nats_bench: the fleet on NATS JetStream, measured from outside as operators run it.
//
//   nats_bench --reactor PATH [--specs 1000] [--slots 8] [--publish-events 200000] [--dir /var/tmp]
//
//   spool     N /bin/true specs renamed into one daemon's spool at once, until its log holds N
//             completed events: specs/s through the spool of one host.
//   jetstream the same N specs published to the work queue (one nats-server -js on loopback,
//             three daemons with [intake.nats] and [events.nats], `slots` cells each), until the
//             three logs hold N completed events: specs/s dispatched through JetStream.
//   publish   one host's whole event log published from scratch to a fresh server (the catch-up
//             after an outage): batches/s and events/s until the stream's last Cellos-Last-Seq
//             is the log's last seq.
//   publish, large  a log of --publish-events events (unsigned, written by event_bench) published
//             from scratch: the publisher's own batches/s and events/s.
//
// Links libnats itself (to publish specs fast and to read the stream's state); the daemons are
// the real binaries.
#include <fcntl.h>
#include <nats/nats.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "report_line.h"

extern char** environ;

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

pid_t spawn(const std::vector<std::string>& args, const std::string& err_path) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  std::vector<char*> argv;
  std::vector<std::string> own = args;
  for (auto& a : own) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ) != 0) {
    std::perror("posix_spawn");
    std::exit(1);
  }
  posix_spawn_file_actions_destroy(&fa);
  return pid;
}

void stop(pid_t pid, int sig = SIGTERM) {
  ::kill(pid, sig);
  ::waitpid(pid, nullptr, 0);
}

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

size_t count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

bool wait_for(const std::function<bool()>& cond, double timeout_s) {
  auto t = Clock::now();
  while (!cond()) {
    if (since(t) > timeout_s) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

struct Host {
  std::string id, dir, config, log;
  pid_t pid = -1;
};

Host make_host(const std::string& root, const std::string& id, int slots, const std::string& nats_toml) {
  Host h{id, root + "/" + id, "", ""};
  fs::create_directories(h.dir);
  h.config = h.dir + "/fleet.toml";
  h.log = h.dir + "/events.jsonl";
  std::ofstream(h.config) << "[host]\nid = \"" << id << "\"\nstate_dir = \"" << h.dir
                          << "/state\"\nmax_concurrent_cells = " << slots << "\n[events]\njsonl = \""
                          << h.log << "\"\n" << nats_toml;
  return h;
}

void start(Host& h, const std::string& reactor) {
  h.pid = spawn({reactor, "--config", h.config}, h.dir + "/daemon.err");
  if (!wait_for([&] { return fs::exists(h.dir + "/state/reactor.sock"); }, 20)) {
    std::fprintf(stderr, "daemon %s did not start: %s\n", h.id.c_str(), slurp(h.dir + "/daemon.err").c_str());
    std::exit(1);
  }
}

std::string spec(const std::string& id) {
  return "{\"apiVersion\":\"cellos.io/v1\",\"kind\":\"ExecutionCell\",\"spec\":{\"id\":\"" + id +
         "\",\"run\":{\"argv\":[\"/bin/true\"]}}}";
}

struct Server {
  int port = 0;
  pid_t pid = -1;
  std::string url() const { return "nats://127.0.0.1:" + std::to_string(port); }
};

Server start_server(const std::string& dir) {
  Server s;
  s.port = free_port();
  s.pid = spawn({"/usr/sbin/nats-server", "-js", "-a", "127.0.0.1", "-p", std::to_string(s.port), "-sd", dir},
                dir + ".log");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  return s;
}

uint64_t last_published(jsCtx* js, const std::string& host) {
  natsMsg* m = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  const std::string subject = "CELLOS_EVENTS." + host;
  // Only once the stream exists: Debian's nats-server 2.9.10 panicked (nil pointer in
  // jsMsgGetRequest) on a get-last-message racing the companion's creation of the stream.
  jsStreamInfo* si = nullptr;
  if (js_GetStreamInfo(&si, js, "CELLOS_EVENTS", nullptr, nullptr) != NATS_OK) return 0;
  jsStreamInfo_Destroy(si);
  if (js_GetLastMsg(&m, js, "CELLOS_EVENTS", subject.c_str(), nullptr, &jerr) != NATS_OK) return 0;
  const char* v = nullptr;
  uint64_t seq = natsMsgHeader_Get(m, "Cellos-Last-Seq", &v) == NATS_OK ? std::strtoull(v, nullptr, 10) : 0;
  natsMsg_Destroy(m);
  return seq;
}

uint64_t log_last_seq(const std::string& log) {
  const std::string t = slurp(log);
  size_t at = t.rfind(",\"cellosseq\":");
  return at == std::string::npos ? 0 : std::strtoull(t.c_str() + at + 13, nullptr, 10);
}

struct Conn {
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  explicit Conn(const std::string& url) {
    if (natsConnection_ConnectTo(&nc, url.c_str()) != NATS_OK || natsConnection_JetStream(&js, nc, nullptr) != NATS_OK) {
      std::fprintf(stderr, "cannot connect to %s\n", url.c_str());
      std::exit(1);
    }
  }
  ~Conn() {
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
  }
};

}  // namespace

int main(int argc, char** argv) {
  std::string reactor = "build/cellos-reactor", base = "/var/tmp";
  int n = 1000, slots = 8;
  unsigned long long publish_events = 200000;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--reactor") reactor = argv[i + 1];
    else if (a == "--specs") n = std::atoi(argv[i + 1]);
    else if (a == "--slots") slots = std::atoi(argv[i + 1]);
    else if (a == "--publish-events") publish_events = std::strtoull(argv[i + 1], nullptr, 10);
    else if (a == "--dir") base = argv[i + 1];
  }
  char tmpl[4096];
  std::snprintf(tmpl, sizeof tmpl, "%s/cellos-nats-bench-XXXXXX", base.c_str());
  const std::string root = ::mkdtemp(tmpl);
  std::printf("nats_bench: %d /bin/true specs, %d slots per daemon, work dir %s\n", n, slots, root.c_str());

  // spool: one daemon.
  Host one = make_host(root, "bench-spool", slots, "");
  start(one, reactor);
  fs::create_directories(one.dir + "/state/spool");
  auto t0 = Clock::now();
  for (int i = 0; i < n; ++i) {
    const std::string name = "s" + std::to_string(1000000 + i) + ".json";
    std::ofstream(one.dir + "/state/spool/." + name) << spec("spool-" + std::to_string(i));
    fs::rename(one.dir + "/state/spool/." + name, one.dir + "/state/spool/" + name);
  }
  wait_for([&] { return count(slurp(one.log), "command.v1.completed") >= static_cast<size_t>(n); }, 600);
  const double spool_s = since(t0);
  stop(one.pid);
  std::printf("spool, 1 daemon:          %6d specs in %6.2f s = %7.1f specs/s\n", n, spool_s, n / spool_s);

  // jetstream: three daemons.
  Server server = start_server(root + "/js");
  const std::string toml = "[intake.nats]\nurl = \"" + server.url() + "\"\n[events.nats]\nurl = \"" + server.url() + "\"\n";
  std::vector<Host> hosts;
  for (const char* id : {"bench-a", "bench-b", "bench-c"}) hosts.push_back(make_host(root, id, slots, toml));
  for (auto& h : hosts) start(h, reactor);
  Conn conn(server.url());
  wait_for([&] {
    jsStreamInfo* si = nullptr;
    if (js_GetStreamInfo(&si, conn.js, "CELLOS_SPECS", nullptr, nullptr) != NATS_OK) return false;
    jsStreamInfo_Destroy(si);
    return true;
  }, 20);
  t0 = Clock::now();
  for (int i = 0; i < n; ++i) {
    const std::string s = spec("js-" + std::to_string(i));
    jsPubAck* pa = nullptr;
    if (js_Publish(&pa, conn.js, "cellos.specs", s.data(), static_cast<int>(s.size()), nullptr, nullptr) != NATS_OK) {
      std::fprintf(stderr, "publish failed\n");
      return 1;
    }
    jsPubAck_Destroy(pa);
  }
  const double publish_s = since(t0);
  std::vector<size_t> per(hosts.size());
  wait_for([&] {
    size_t total = 0;
    for (size_t i = 0; i < hosts.size(); ++i) total += per[i] = count(slurp(hosts[i].log), "command.v1.completed");
    return total >= static_cast<size_t>(n);
  }, 600);
  const double js_s = since(t0);
  std::printf("jetstream, 3 daemons:     %6d specs in %6.2f s = %7.1f specs/s (publishing them took %.2f s; per host %zu/%zu/%zu)\n",
              n, js_s, n / js_s, publish_s, per[0], per[1], per[2]);
  wait_for([&] {
    for (auto& h : hosts)
      if (last_published(conn.js, h.id) < log_last_seq(h.log)) return false;
    return true;
  }, 60);
  for (auto& h : hosts) stop(h.pid);
  stop(server.pid);

  // publish: host a's whole log to a fresh server (catch-up after an outage).
  Server fresh = start_server(root + "/js2");
  Host& a = hosts[0];
  std::ofstream(a.config) << "[host]\nid = \"" << a.id << "\"\nstate_dir = \"" << a.dir
                          << "/state\"\n[events]\njsonl = \"" << a.log << "\"\n[events.nats]\nurl = \""
                          << fresh.url() << "\"\n";
  const std::string log = slurp(a.log);
  const size_t batches = count(log, "log.v1.batch_sealed"), lines = count(log, "\n");
  const uint64_t last = log_last_seq(a.log);
  Conn conn2(fresh.url());
  t0 = Clock::now();
  start(a, reactor);
  wait_for([&] { return last_published(conn2.js, a.id) >= last; }, 120);
  const double pub_s = since(t0);
  stop(a.pid);
  stop(fresh.pid);
  std::printf("events published:         %6zu batches (%zu records) in %.2f s = %.0f batches/s, %.0f events/s "
              "(catch-up of one host's log, daemon start included)\n",
              batches, lines, pub_s, batches / pub_s, lines / pub_s);

  // publish, large: a log of `publish_events` events (written by event_bench, beside this
  // program) published from scratch: the publisher's own rate, not the daemon's start.
  double big_s = 0;
  size_t big_batches = 0;
  uint64_t big_last = 0;
  if (publish_events > 0) {
    const std::string event_bench = fs::path(argv[0]).parent_path() / "event_bench";
    fs::remove(a.log);
    fs::remove_all(a.dir + "/state");
    const pid_t w = spawn({event_bench, "-n", std::to_string(publish_events), "--write-log", a.log},
                          a.dir + "/event_bench.err");
    int st = 0;
    ::waitpid(w, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      std::fprintf(stderr, "event_bench --write-log failed (see %s/event_bench.err)\n", a.dir.c_str());
      return 1;
    }
    big_batches = count(slurp(a.log), "log.v1.batch_sealed");
    big_last = log_last_seq(a.log);
    Server third = start_server(root + "/js3");
    std::ofstream(a.config) << "[host]\nid = \"" << a.id << "\"\nstate_dir = \"" << a.dir
                            << "/state\"\n[events]\njsonl = \"" << a.log
                            << "\"\n[events.nats]\nurl = \"" << third.url() << "\"\n";
    Conn conn3(third.url());
    start(a, reactor);  // returns once the daemon answers on its status socket
    t0 = Clock::now();
    wait_for([&] { return last_published(conn3.js, a.id) >= big_last; }, 300);
    big_s = since(t0);
    stop(a.pid);
    stop(third.pid);
    std::printf("events published (large):  %6zu batches (%llu records) in %.2f s = %.0f batches/s, %.0f events/s "
                "(a %llu-event log from scratch, timed from the daemon's start)\n",
                big_batches, static_cast<unsigned long long>(big_last), big_s, big_batches / big_s,
                static_cast<double>(publish_events) / big_s, static_cast<unsigned long long>(publish_events));
  }
  std::printf("reproduce: cmake --build build --target bench-nats   (or %s --reactor %s --specs %d --slots %d "
              "--publish-events %llu)\n",
              argv[0], reactor.c_str(), n, slots, static_cast<unsigned long long>(publish_events));
  // The line bench/report.py reads.
  cellos::bench::ReportLine rep("nats");
  rep.row("spool, 1 daemon", {{"specs", n}, {"seconds", spool_s}, {"specs/s", n / spool_s}})
      .row("JetStream, 3 daemons", {{"specs", n}, {"seconds", js_s}, {"specs/s", n / js_s}})
      .metric("events published (catch-up of one host's log)", batches / pub_s, "batches/s");
  if (publish_events > 0)
    rep.metric("events published (large log, from scratch)", static_cast<double>(publish_events) / big_s,
               "events/s");
  rep.field("reproduce", std::string(argv[0]) + " --reactor " + reactor + " --specs " + std::to_string(n) +
                             " --slots " + std::to_string(slots) + " --publish-events " +
                             std::to_string(publish_events))
      .print();
  fs::remove_all(root);
  for (const char* h : {"unified", "memory", "pids", "cpu"})
    for (const char* id : {"bench-spool", "bench-a", "bench-b", "bench-c"})
      ::rmdir((std::string("/sys/fs/cgroup/") + h + "/cellos/" + id).c_str());
  return 0;
}
