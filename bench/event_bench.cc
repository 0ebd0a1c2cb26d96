// Event-log throughput on one core: events per second into the JSONL sink and write syscalls
// per event, for an unsigned log, a batch-signed log (one Ed25519 signature per batch) and
// per-event DSSE signatures; per-event signing is compared with this machine's Ed25519
// ceiling, measured in the same run (`openssl speed ed25519` and an in-process EVP loop), and
// the batch-signed rate with `openssl speed sha256` at 384 bytes (a line's hash), the peer
// that makes figures from a loaded machine comparable. The last line is `REPORT {json}`.
//
//   build/bench/event_bench [-n 1000000] [--dsse-n 50000] [--repeat 3] [--dir /var/tmp]
//                           [--csv FILE] [--pin] [--no-peer] [--lazy-ring]
//
// Each mode writes a real file (ext4 under --dir) through a real io_uring Ring, exactly as the
// reactor does: emit() for every event, the ring serviced between events (once per batch, or
// every 64 events while sealed batches wait), the producer waiting for the disk only past 4 MiB
// buffered, then flush() and drain. The time includes the drain, so it is end to end. Writes
// are counted on the IoPort (every write the log asks for is one SQE = one write). A second
// table says where the bench thread's wall time went (on a CPU, waiting for one, asleep on the
// file) and how much CPU the io_uring workers that copy the batches spent.
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "base/counting_port.h"
#include "bench/report_line.h"
#include "reactor/ring.h"
#include "sinks/event_log.h"
#include "sinks/signing.h"

using namespace cellos;

namespace {

using base::CountingPort;

// A cell's life as the reactor reports it: five events of the usual sizes.
std::vector<sinks::Event> workload() {
  std::vector<sinks::Event> out;
  for (int i = 0; i < 200; ++i) {
    const std::string id = "build-" + std::to_string(1000 + i);
    sinks::NetworkPolicyData np;
    np.cell_id = id;
    np.declared_egress = {{"10.0.0.1", 443, std::string("tcp")}};
    sinks::CompletedData done;
    done.cell_id = id;
    done.exit_code = 0;
    done.duration_ms = 1234;
    for (sinks::EventData d :
         std::vector<sinks::EventData>{sinks::StartedData{id, "5b6b562a-5239-4727-964b-ba81d6fcbb8a", "host-1"},
                                       np, done, sinks::DestroyedData{id, true, false}})
      out.push_back(sinks::make_event(std::move(d)));
  }
  return out;
}

// --lazy-ring: the ring serviced only past 4 MiB buffered, as this bench did before
// 2026-12-07 (for comparison: the writes then wait unsubmitted, and the bench sleeps on them).
bool lazy_ring = false;

double now_s() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

double cpu_s(clockid_t clock = CLOCK_PROCESS_CPUTIME_ID) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// Where the bench thread's wall time went, so a wall rate below the CPU rate is explained:
// on a CPU (schedstat's run time), runnable but waiting for a CPU the machine's other load
// holds (schedstat's run-queue wait), and asleep, of which the part spent waiting for the disk
// (the producer's back-pressure wait past 4 MiB buffered, and the final drain) is timed here.
struct ThreadClock {
  // Seconds on a CPU (the thread's CPU clock: schedstat's own run time lags a running thread
  // by up to a tick) and runnable but waiting for one (schedstat's run_delay, accounted each
  // time the thread gets a CPU, so current whenever the thread itself reads it).
  double run = 0, runq = 0;
  long minflt = 0, nvcsw = 0, nivcsw = 0;  // getrusage(RUSAGE_THREAD)
  static ThreadClock now() {
    ThreadClock t;
    t.run = cpu_s(CLOCK_THREAD_CPUTIME_ID);
    if (FILE* f = std::fopen("/proc/thread-self/schedstat", "r")) {
      unsigned long long run = 0, wait = 0;
      if (std::fscanf(f, "%llu %llu", &run, &wait) == 2) t.runq = static_cast<double>(wait) / 1e9;
      std::fclose(f);
    }
    rusage ru{};
    getrusage(RUSAGE_THREAD, &ru);
    t.minflt = ru.ru_minflt;
    t.nvcsw = ru.ru_nvcsw;
    t.nivcsw = ru.ru_nivcsw;
    return t;
  }
  ThreadClock operator-(const ThreadClock& o) const {
    return {run - o.run, runq - o.runq, minflt - o.minflt, nvcsw - o.nvcsw, nivcsw - o.nivcsw};
  }
};

struct Row {
  std::string mode;
  uint64_t events = 0, writes = 0, bytes = 0;
  double secs = 0, cpu = 0, thread_cpu = 0;
  double disk_wait = 0;  // seconds asleep in the back-pressure wait and the final drain
  ThreadClock th;
};

Row run_mode(const std::string& mode, const std::string& dir, uint64_t n, const std::string& key,
             bool dsse, const std::string& keep = "") {
  const std::string path = keep.empty() ? dir + "/bench-" + mode + ".jsonl" : keep;
  std::filesystem::remove(path);
  auto ring = reactor::Ring::create({});
  if (!ring) {
    std::fprintf(stderr, "ring: %s\n", ring.error().message().c_str());
    std::exit(1);
  }
  CountingPort port(**ring);
  sinks::EventLogOptions o;
  o.path = path;
  o.host_id = "host-1";
  o.batch_max_events = 512;
  // Long enough that batches close by count, as they do under load; the drain flushes the rest.
  o.batch_max_delay = std::chrono::milliseconds(10);
  if (!key.empty()) o.signing_key_path = key;
  o.per_event_signing = dsse;
  auto log = sinks::EventLog::open(o, port);
  if (!log) {
    std::fprintf(stderr, "open: %s\n", log.error().message().c_str());
    std::exit(1);
  }
  const auto events = workload();
  // The reactor's loop submits what a handler queued and dispatches what completed between
  // events; Ring's only entry point, run_once(), waits for a completion. A POLL_ADD for
  // POLLOUT on an empty pipe completes at submission, so run_once() with it queued submits
  // the batch writes the log queued and dispatches finished ones without ever sleeping. Done
  // once per batch_max_events events (a real reactor services its ring far more often), so a
  // sealed batch's write is in flight while the next batch is built. Without it the writes
  // were submitted only once 4 MiB had piled up, then waited for one by one.
  struct Poke final : base::Completion {
    bool done = true;
    void complete(int) override { done = true; }
  } poke;
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    std::perror("pipe2");
    std::exit(1);
  }
  const ThreadClock th0 = ThreadClock::now();
  const double t0 = now_s(), c0 = cpu_s(), tc0 = cpu_s(CLOCK_THREAD_CPUTIME_ID);
  double disk_wait = 0;
  for (uint64_t i = 0; i < n; ++i) {
    (*log)->emit(events[i % events.size()]);
    // Every batch, and every 64 events while sealed batches wait for the file: the log writes
    // one batch at a time, so a backlog drains one write per ring visit.
    const uint64_t every = (*log)->buffered_bytes() > (512u << 10) ? 64 : o.batch_max_events;
    if (!lazy_ring && i % every == every - 1 && poke.done) {
      poke.done = false;
      (*ring)->poll(pipe_fds[1], POLLOUT, poke);
      if (!(*ring)->run_once().ok()) std::exit(1);
    }
    // The reactor runs completions between events; here, when enough is buffered that a write
    // is certainly in flight (so run_once never waits on the batch timer alone).
    // Past 4 MiB the producer waits for the disk (a real reactor would run completions
    // between events); without this a burst faster than the disk fills max_buffered_bytes and
    // the log records a gap instead of the events.
    if ((i & 1023) == 0 && (*log)->buffered_bytes() > (4u << 20)) {
      const double w0 = now_s();
      const ThreadClock c = ThreadClock::now();
      while ((*log)->buffered_bytes() > (4u << 20))
        if (!(*ring)->run_once().ok()) std::exit(1);
      const ThreadClock d = ThreadClock::now() - c;
      disk_wait += now_s() - w0 - d.run - d.runq;  // asleep in there
    }
  }
  (*log)->flush();
  const double d0 = now_s();
  const ThreadClock dc = ThreadClock::now();
  while (!(*log)->drained())
    if (!(*ring)->run_once().ok()) std::exit(1);
  {
    const ThreadClock d = ThreadClock::now() - dc;
    disk_wait += now_s() - d0 - d.run - d.runq;
  }
  while (!poke.done)
    if (!(*ring)->run_once().ok()) std::exit(1);
  Row r;
  const double t1 = now_s();
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
  r.disk_wait = disk_wait;
  r.th = ThreadClock::now() - th0;
  r.secs = t1 - t0;
  r.cpu = cpu_s() - c0;
  r.thread_cpu = cpu_s(CLOCK_THREAD_CPUTIME_ID) - tc0;
  r.mode = mode;
  r.events = (*log)->events_written();
  if (r.events != n || (*log)->dropped_events())
    std::fprintf(stderr, "%s: %llu of %llu events written\n", mode.c_str(),
                 static_cast<unsigned long long>(r.events), static_cast<unsigned long long>(n));
  r.writes = port.writes;
  r.bytes = std::filesystem::file_size(path);
  if (keep.empty()) std::filesystem::remove(path);
  return r;
}

// Signatures per second with the EVP API in this process: the ceiling for per-event signing.
double evp_sign_rate(const sinks::SigningKey& key) {
  const std::string msg(300, 'x');
  uint64_t n = 0;
  const double t0 = now_s();
  while (now_s() - t0 < 1.0) {
    for (int i = 0; i < 100; ++i) (void)key.sign(msg);
    n += 100;
  }
  return static_cast<double>(n) / (now_s() - t0);
}

// `openssl speed -seconds 2 ed25519`: its "sign/s" column.
double openssl_speed() {
  FILE* p = ::popen("openssl speed -seconds 2 ed25519 2>/dev/null", "r");
  if (!p) return 0;
  char line[512];
  double rate = 0;
  while (std::fgets(line, sizeof line, p)) {
    if (!std::strstr(line, "Ed25519") || !std::strstr(line, "EdDSA")) continue;
    // "253 bits EdDSA (Ed25519)   0.0000s   0.0001s  37000.0  12000.0"
    double sign_s, verify_s, sign_rate, verify_rate;
    const char* q = std::strchr(line, ')');
    if (q && std::sscanf(q + 1, " %lfs %lfs %lf %lf", &sign_s, &verify_s, &sign_rate, &verify_rate) == 4)
      rate = sign_rate;
  }
  ::pclose(p);
  return rate;
}

// `openssl speed -seconds 1 -bytes 384 sha256`: 384-byte SHA-256 hashes per second of user CPU
// time (openssl speed's default clock). Every event's line (~365 bytes) is hashed once for its
// Merkle leaf, so this is a ceiling no event log of this format can pass on the machine, and a
// peer measured in the same run: events/cpu-s over it moves much less with the machine's load
// than events/s does.
double openssl_sha256_384() {
  FILE* p = ::popen("openssl speed -seconds 1 -bytes 384 sha256 2>/dev/null", "r");
  if (!p) return 0;
  char line[512];
  double rate = 0;
  while (std::fgets(line, sizeof line, p)) {
    double kbytes = 0;  // "sha256          1139044.95k"
    if (std::sscanf(line, "sha256 %lfk", &kbytes) == 1) rate = kbytes * 1000.0 / 384.0;
  }
  ::pclose(p);
  return rate;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t n = 1000000, dsse_n = 50000;
  std::string dir = "/var/tmp", csv, write_log;
  bool peer = true, pin = false;
  int repeat = 3;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-n" && i + 1 < argc) n = std::strtoull(argv[++i], nullptr, 10);
    else if (a == "--dsse-n" && i + 1 < argc) dsse_n = std::strtoull(argv[++i], nullptr, 10);
    else if (a == "--dir" && i + 1 < argc) dir = argv[++i];
    else if (a == "--csv" && i + 1 < argc) csv = argv[++i];
    // Only writes a log of N events (unsigned) to FILE and keeps it: the NATS benchmark
    // publishes it.
    else if (a == "--write-log" && i + 1 < argc) write_log = argv[++i];
    else if (a == "--lazy-ring") lazy_ring = true;
    else if (a == "--no-peer") peer = false;  // profiling: skip the openssl speed runs
    else if (a == "--pin") pin = true;  // the thread on CPU 0 (worse on a shared machine)
    else if (a == "--repeat" && i + 1 < argc) repeat = std::atoi(argv[++i]);
    else {
      std::fprintf(stderr, "usage: event_bench [-n N] [--dsse-n N] [--repeat N] [--dir DIR] "
                           "[--csv FILE] [--pin] [--no-peer] [--lazy-ring] [--write-log FILE]\n");
      return 2;
    }
  }
  if (!write_log.empty()) {
    Row r = run_mode("unsigned", dir, n, "", false, write_log);
    std::printf("wrote %llu events (%llu bytes) to %s\n", static_cast<unsigned long long>(r.events),
                static_cast<unsigned long long>(r.bytes), write_log.c_str());
    return r.events == n ? 0 : 1;
  }
  // One core: the reactor is one thread, and emit() never blocks on the disk. (The kernel's io-wq workers that complete buffered
  // writes may still run on the other CPU; their time is in the cpu column.)
  if (pin) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(0, &set);
    sched_setaffinity(0, sizeof set, &set);
  }

  char tmpl[4096];
  std::snprintf(tmpl, sizeof tmpl, "%s/cellos-event-bench-XXXXXX", dir.c_str());
  if (!::mkdtemp(tmpl)) {
    std::perror("mkdtemp");
    return 1;
  }
  const std::string work = tmpl;
  auto id = sinks::write_key_pair(work + "/keys");
  if (!id) {
    std::fprintf(stderr, "keygen: %s\n", id.error().message().c_str());
    return 1;
  }
  const std::string key = work + "/keys/host.key";

  // Best of --repeat runs per mode (by wall time): the machine may be shared, and other load
  // only ever makes a run slower.
  auto best = [&](const std::string& mode, uint64_t count, const std::string& k, bool dsse) {
    Row b;
    for (int i = 0; i < repeat; ++i) {
      Row r = run_mode(mode, work, count, k, dsse);
      if (i == 0 || r.secs < b.secs) b = r;
    }
    return b;
  };
  std::vector<Row> rows;
  rows.push_back(best("unsigned", n, "", false));
  rows.push_back(best("batch-signed", n, key, false));
  rows.push_back(best("per-event-dsse", dsse_n, key, true));
  auto k = sinks::SigningKey::load_private(key);
  const double evp = peer ? evp_sign_rate(*k) : 1;
  const double ossl = peer ? openssl_speed() : 0;
  const double sha = peer ? openssl_sha256_384() : 0;
  std::filesystem::remove_all(work);

  // events/s is wall-clock, end to end; events/cpu-s is per second of the reactor thread's own
  // CPU time (what one core sustains when it is not shared; the machine may be busy).
  std::printf("%-16s %10s %12s %13s %8s %10s %12s %9s\n", "mode", "events", "events/s",
              "events/cpu-s", "writes", "writes/ev", "bytes/event", "cpu/wall");
  FILE* out = csv.empty() ? nullptr : std::fopen(csv.c_str(), "w");
  if (out) std::fprintf(out, "mode,events,seconds,events_per_s,events_per_thread_cpu_s,writes,writes_per_event,bytes\n");
  for (const auto& r : rows) {
    const double rate = static_cast<double>(r.events) / r.secs;
    std::printf("%-16s %10llu %12.0f %13.0f %8llu %10.5f %12.1f %9.2f\n", r.mode.c_str(),
                static_cast<unsigned long long>(r.events), rate,
                static_cast<double>(r.events) / r.thread_cpu,
                static_cast<unsigned long long>(r.writes),
                static_cast<double>(r.writes) / static_cast<double>(r.events),
                static_cast<double>(r.bytes) / static_cast<double>(r.events), r.cpu / r.secs);
    if (out)
      std::fprintf(out, "%s,%llu,%.4f,%.0f,%.0f,%llu,%.6f,%llu\n", r.mode.c_str(),
                   static_cast<unsigned long long>(r.events), r.secs, rate,
                   static_cast<double>(r.events) / r.thread_cpu,
                   static_cast<unsigned long long>(r.writes),
                   static_cast<double>(r.writes) / static_cast<double>(r.events),
                   static_cast<unsigned long long>(r.bytes));
  }
  if (out) std::fclose(out);
  // wall = on a CPU + runnable, waiting for a CPU (the machine's other load) + asleep waiting
  // for the file (the back-pressure wait and the final drain) + asleep otherwise. io-wq-cpu is
  // the process's CPU time outside this thread: the io_uring workers that copy the batches
  // into the page cache (on either CPU).
  std::printf("\nwhere the bench thread's wall time went (ms, best run of each mode):\n");
  std::printf("%-16s %9s %9s %9s %9s %9s %9s %8s %8s %8s\n", "mode", "wall", "on-cpu",
              "cpu-wait", "disk-wait", "other", "io-wq-cpu", "minflt", "vol-csw", "invol-csw");
  for (const auto& r : rows) {
    const double other = r.secs - r.th.run - r.th.runq - r.disk_wait;
    std::printf("%-16s %9.1f %9.1f %9.1f %9.1f %9.1f %9.1f %8ld %8ld %8ld\n", r.mode.c_str(),
                r.secs * 1e3, r.th.run * 1e3, r.th.runq * 1e3, r.disk_wait * 1e3, other * 1e3,
                (r.cpu - r.thread_cpu) * 1e3, r.th.minflt, r.th.nvcsw, r.th.nivcsw);
  }
  const double dsse_rate = static_cast<double>(rows[2].events) / rows[2].secs;
  std::printf("\nEd25519 ceiling on this machine: openssl speed ed25519 %.0f sign/s; in-process "
              "EVP %.0f sign/s\n", ossl, evp);
  std::printf("per-event DSSE: %.0f events/s = %.0f%% of the in-process EVP ceiling%s\n", dsse_rate,
              100.0 * dsse_rate / evp,
              ossl > 0 ? (", " + std::to_string(static_cast<int>(100.0 * dsse_rate / ossl)) +
                          "% of openssl speed").c_str() : "");
  std::printf("targets: batch-signed >= 1000000 events/s (%s), <= 0.01 writes/event (%s)\n",
              static_cast<double>(rows[1].events) / rows[1].secs >= 1e6 ? "met" : "MISSED",
              static_cast<double>(rows[1].writes) / static_cast<double>(rows[1].events) <= 0.01 ? "met" : "MISSED");
  const double signed_rate = static_cast<double>(rows[1].events) / rows[1].secs;
  const double signed_cpu_rate = static_cast<double>(rows[1].events) / rows[1].thread_cpu;
  if (sha > 0)
    std::printf("peer: openssl speed sha256 (384 B) %.0f hashes per cpu-s; batch-signed "
                "events/cpu-s / that = %.3f (events/s / that = %.3f)\n",
                sha, signed_cpu_rate / sha, signed_rate / sha);
  std::printf("reproduce: %s -n %llu --dsse-n %llu --repeat %d --dir %s\n", argv[0],
              static_cast<unsigned long long>(n), static_cast<unsigned long long>(dsse_n), repeat,
              dir.c_str());
  // The line bench/report.py reads.
  cellos::bench::ReportLine rep("events");
  for (const auto& r : rows)
    rep.row(r.mode, {{"events", static_cast<double>(r.events)},
                     {"events/s", static_cast<double>(r.events) / r.secs},
                     {"events/cpu-s", static_cast<double>(r.events) / r.thread_cpu},
                     {"writes/event", static_cast<double>(r.writes) / static_cast<double>(r.events)},
                     {"bytes/event", static_cast<double>(r.bytes) / static_cast<double>(r.events)},
                     {"wall ms", r.secs * 1e3},
                     {"on-cpu ms", r.th.run * 1e3},
                     {"cpu-wait ms", r.th.runq * 1e3},
                     {"disk-wait ms", r.disk_wait * 1e3},
                     {"io-wq cpu ms", (r.cpu - r.thread_cpu) * 1e3},
                     {"minor faults", static_cast<double>(r.th.minflt)}});
  const double batch_rate = static_cast<double>(rows[1].events) / rows[1].secs;
  rep.metric("batch-signed events/s", batch_rate, "events/s", ">= 1000000", batch_rate >= 1e6)
      .metric("batch-signed writes/event",
              static_cast<double>(rows[1].writes) / static_cast<double>(rows[1].events), "", "<= 0.01",
              static_cast<double>(rows[1].writes) / static_cast<double>(rows[1].events) <= 0.01)
      .metric("batch-signed events per reactor CPU-second", signed_cpu_rate, "events/cpu-s")
      .metric("peer: openssl speed sha256 (384-byte blocks)", sha, "hashes/cpu-s")
      .metric("batch-signed events/cpu-s / sha256 hashes/cpu-s", sha > 0 ? signed_cpu_rate / sha : 0.0, "")
      .metric("peer: openssl speed ed25519", ossl, "sign/s")
      .metric("peer: in-process EVP Ed25519", evp, "sign/s")
      .metric("per-event DSSE / EVP ceiling", dsse_rate / evp, "")
      .field("reproduce", std::string(argv[0]) + " -n " + std::to_string(n) + " --dsse-n " +
                              std::to_string(dsse_n) + " --repeat " + std::to_string(repeat) +
                              " --dir " + dir)
      .print();
  return 0;
}
