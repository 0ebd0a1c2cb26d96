// The event log from outside: the CLI (keygen, verify, events cat), a reactor killed mid-write
// and restarted, a full disk (a tiny tmpfs mounted here), and every line validated by the
// official CloudEvents JavaScript SDK.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sys/file.h>
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "sinks/log_io.h"
#include "sinks/verify.h"
#include "tests/support/event_log_support.h"
#include "tests/support/test_support.h"

namespace cellos::test {
namespace {

using Catch::Contains;
using Json = nlohmann::json;
namespace fs = std::filesystem;

// Node and the SDK as scripts/install-deps.sh installs them.
constexpr const char* kNode = "/usr/bin/node";
constexpr const char* kSdk = "/opt/cellos-test/node/node_modules/cloudevents";

ProcessResult reactor(const std::vector<std::string>& args) {
  std::vector<std::string> argv{CELLOS_REACTOR_BIN};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_process(argv);
}

// A fleet whose log is signed with a fresh key in <dir>/keys.
struct SignedFleet {
  TempDir keys;
  std::unique_ptr<Fleet> fleet;
  explicit SignedFleet(const std::string& extra = "") {
    auto k = reactor({"keygen", "--out", keys.path() + "/k"});
    REQUIRE(k.status == 0);
    fleet = std::make_unique<Fleet>("", "signing_key = \"" + keys.path() + "/k/host.key\"\n" + extra);
  }
  std::string pub() const { return keys.path() + "/k/host.pub"; }
};

// Kills every process left in the fleet's cgroup leaves (a reactor killed with SIGKILL leaves
// its cell behind) and removes the leaves, so the fleet's own cleanup can finish.
void kill_cell_leftovers(const std::string& host_id) {
  for (int round = 0; round < 50; ++round) {
    bool any = false;
    for (const char* h : {"unified", "memory", "pids", "cpu"}) {
      const fs::path parent = fs::path("/sys/fs/cgroup") / h / "cellos" / host_id;
      std::error_code ec;
      for (const auto& leaf : fs::directory_iterator(parent, ec)) {
        if (!leaf.is_directory()) continue;
        std::ifstream procs(leaf.path() / "cgroup.procs");
        for (int pid; procs >> pid;) {
          ::kill(pid, SIGKILL);
          any = true;
        }
        ::rmdir(leaf.path().c_str());
      }
    }
    if (!any) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

TEST_CASE("keygen, run, verify: the CLI verifies an intact signed log and names a tampered line",
          "[eventlog]") {
  SignedFleet sf;
  auto r = sf.fleet->run(make_spec(unique_id("verify"), {"/bin/true"}).dump());
  REQUIRE(r.status == 0);
  auto ok = reactor({"verify", sf.fleet->events_path(), "--public-key", sf.pub()});
  INFO(ok.out + ok.err);
  CHECK(ok.status == 0);
  // One batch or two: the 10 ms batch timer may close one between the cell's events.
  CHECK_THAT(ok.out, Contains("intact: 4 events in "));
  CHECK_THAT(ok.out, Contains("signatures verified"));

  std::string text = read_text(sf.fleet->events_path());
  auto p = text.find("\"exitCode\":0");
  REQUIRE(p != std::string::npos);
  text[p + 11] = '1';
  write_text(sf.fleet->events_path(), text);
  auto bad = reactor({"verify", sf.fleet->events_path(), "--public-key", sf.pub()});
  CHECK(bad.status != 0);
  CHECK_THAT(bad.err, Contains(": Merkle root mismatch"));
}

TEST_CASE("verify of a live log: a batch its running writer has not sealed yet is reported "
          "pending, not as tampering, and the same file with no writer fails",
          "[eventlog]") {
  // Batches close only when a run flushes at its end: with the default 10 ms delay a run slowed
  // by a loaded machine splits its events over two batches, and the counts below would move.
  SignedFleet sf("batch_max_delay_ms = 60000\n");
  // Two runs: the first one's batch is sealed whatever happens to the second's.
  REQUIRE(sf.fleet->run(make_spec(unique_id("live"), {"/bin/true"}).dump()).status == 0);
  REQUIRE(sf.fleet->run(make_spec(unique_id("live"), {"/bin/true"}).dump()).status == 0);
  // The log as a reader catches it mid-batch: its last manifest not written yet, and half a
  // record being appended.
  std::string text = read_text(sf.fleet->events_path());
  text.pop_back();
  text.erase(text.rfind('\n') + 1);  // the final manifest gone
  const std::string live = sf.fleet->dir() + "/live.jsonl";
  write_text(live, text + "{\"specversion\":\"1.0\",\"id\":");
  auto dead = reactor({"verify", live, "--public-key", sf.pub()});
  CHECK(dead.status == 1);
  CHECK_THAT(dead.err, Contains("truncated tail"));
  // Its writer holds the lock (as the daemon's event log does): pending, exit 0.
  const int fd = ::open(live.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  REQUIRE(::flock(fd, LOCK_EX) == 0);
  auto held = reactor({"verify", live, "--public-key", sf.pub()});
  ::close(fd);
  INFO(held.out << held.err);
  CHECK(held.status == 0);
  CHECK_THAT(held.out, Contains("intact: 4 events in "));
  CHECK_THAT(held.out, Contains("signatures verified"));
  CHECK_THAT(held.out, Contains("records of a batch not sealed yet and "));
  CHECK_THAT(held.out, Contains("bytes of a record being written: the log's writer is running"));
  // A tampered sealed part (the first run's) still fails, writer or not.
  auto p = text.find("\"exitCode\":0");
  REQUIRE(p != std::string::npos);
  text[p + 11] = '1';
  write_text(live, text);
  const int fd2 = ::open(live.c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(::flock(fd2, LOCK_EX) == 0);
  auto tampered = reactor({"verify", live, "--public-key", sf.pub()});
  ::close(fd2);
  CHECK(tampered.status == 1);
}

TEST_CASE("a rejected spec is written, sealed and verifiable", "[eventlog]") {
  SignedFleet sf;
  auto r = sf.fleet->run("{not json");
  CHECK(r.status == 125);
  auto recs = sf.fleet->log_records();
  REQUIRE(recs.size() == 2);
  CHECK(recs[0]["type"] == "dev.cellos.events.cell.lifecycle.v1.rejected");
  CHECK(recs[1]["type"] == sinks::kBatchSealedType);
  CHECK(reactor({"verify", sf.fleet->events_path(), "--public-key", sf.pub()}).status == 0);
}

TEST_CASE("a reactor killed mid-write, then restarted: the log is sealed over and verifies",
          "[eventlog]") {
  SignedFleet sf;
  Fleet& fleet = *sf.fleet;
  const std::string marker = unique_id("cellos-crash-marker");
  const auto spec =
      make_spec(unique_id("crash"), {"/bin/sh", "-c", fleet.probe() + " daemonize " + marker + "; sleep 600"});
  pid_t pid = fleet.start_run(spec.dump());
  // The started and network_policy events are sealed by the batch timer (10 ms).
  for (int i = 0; i < 250 && fleet.log_records().size() < 3; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  kill_cell_leftovers(fleet.host_id());
  REQUIRE(fleet.log_records().size() == 3);
  // The crash cut the next batch's write short: a whole unsealed line and part of another.
  std::string text = read_text(fleet.events_path());
  const std::string first_line = text.substr(0, text.find('\n'));
  std::string unsealed = first_line;
  unsealed.replace(unsealed.find("\"cellosseq\":1"), 13, "\"cellosseq\":4");
  text += unsealed + "\n" + unsealed.substr(0, 50);
  write_text(fleet.events_path(), text);
  CHECK(reactor({"verify", fleet.events_path(), "--public-key", sf.pub()}).status != 0);

  auto r = fleet.run(make_spec(unique_id("after"), {"/bin/true"}).dump());
  CHECK(r.status == 0);
  auto v = reactor({"verify", fleet.events_path(), "--public-key", sf.pub()});
  INFO(v.out + v.err);
  CHECK(v.status == 0);
  CHECK_THAT(v.out, Contains("1 sealed over after a crash"));
  auto recs = fleet.log_records();
  CHECK(recs[4]["data"]["recovered"] == true);
  CHECK(recs[4]["data"]["truncatedBytes"] == 50);
}

TEST_CASE("the capnp format: run writes a packed stream, events cat renders it, verify reads it",
          "[eventlog]") {
  SignedFleet sf("format = \"capnp\"\n");
  // Not Fleet::run: it reads the log back as JSON lines.
  const std::string spec = sf.fleet->dir() + "/spec.json";
  write_text(spec, make_spec(unique_id("capnp"), {"/bin/true"}).dump());
  auto r = reactor({"run", spec, "--config", sf.fleet->config_path()});
  REQUIRE(r.status == 0);
  auto cat = reactor({"events", "cat", sf.fleet->events_path()});
  REQUIRE(cat.status == 0);
  auto lines = sinks::split_jsonl(cat.out).lines;
  REQUIRE(lines.size() >= 5);  // 4 events and their manifest(s)
  CHECK(Json::parse(lines[0])["type"] == "dev.cellos.events.cell.lifecycle.v1.started");
  CHECK(Json::parse(lines.back())["type"] == sinks::kBatchSealedType);
  auto v = reactor({"verify", sf.fleet->events_path(), "--public-key", sf.pub()});
  CHECK(v.status == 0);
  CHECK_THAT(v.out, Contains("(capnp)"));
}

// A tmpfs of `size` mounted at <dir>/mnt for the test's lifetime.
struct TinyTmpfs {
  TempDir dir;
  std::string mnt;
  bool mounted = false;
  explicit TinyTmpfs(const char* size) {
    mnt = dir.path() + "/mnt";
    fs::create_directories(mnt);
    mounted = ::mount("tmpfs", mnt.c_str(), "tmpfs", 0, (std::string("size=") + size).c_str()) == 0;
  }
  ~TinyTmpfs() {
    if (mounted) ::umount2(mnt.c_str(), MNT_DETACH);
  }
  // Fills the filesystem with one file; returns its path.
  std::string fill() {
    const std::string path = mnt + "/filler";
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    std::string block(4096, 'x');
    while (::write(fd, block.data(), block.size()) > 0) {
    }
    ::close(fd);
    return path;
  }
};

TEST_CASE("ENOSPC: emit never blocks, the overflow is a gap record, writing resumes, verify passes",
          "[eventlog]") {
  TinyTmpfs t("512k");
  if (!t.mounted) CELLOS_SKIP("cannot mount a tmpfs here (needs CAP_SYS_ADMIN)");
  TempDir keys;
  REQUIRE(sinks::write_key_pair(keys.path() + "/k").ok());
  sinks::EventLogOptions o;
  o.path = t.mnt + "/events.jsonl";
  o.host_id = "host-1";
  o.signing_key_path = keys.path() + "/k/host.key";
  o.batch_max_events = 16;
  o.max_buffered_bytes = 64 << 10;
  o.retry_interval = std::chrono::milliseconds(20);
  LogHarness h(o);
  h.emit_samples(4);
  h.drain();
  const std::string filler = t.fill();

  int rounds = 0;
  while (rounds < 200 && h.log().dropped_events() < 10) {  // until the 64 KiB buffer overflows
    h.emit_samples(1);
    ++rounds;
    h.run_until([] { return false; }, std::chrono::milliseconds(5));  // retries fail meanwhile
  }
  CHECK(h.log().failing());
  CHECK(h.log().dropped_events() > 0);
  const uint64_t written_before = h.log().events_written();

  REQUIRE(::unlink(filler.c_str()) == 0);  // space again
  REQUIRE(h.run_until([&] { return !h.log().failing() && h.log().buffered_bytes() == 0; }));
  CHECK(h.log().events_written() > written_before);
  h.emit_samples(2);
  h.drain();

  sinks::VerifyOptions v;
  v.path = o.path;
  v.public_key_path = keys.path() + "/k/host.pub";
  auto r = sinks::verify_log(v);
  REQUIRE(r.ok());
  INFO(r->summary());
  CHECK(r->ok);
  CHECK(r->gaps == 1);
  CHECK(r->dropped_events == h.log().dropped_events());
  CHECK(r->events + r->dropped_events == 5u * (4 + rounds + 2));
}

TEST_CASE("ENOSPC under a real run: the cell is supervised to its end and the error is one line",
          "[eventlog]") {
  TinyTmpfs t("64k");
  if (!t.mounted) CELLOS_SKIP("cannot mount a tmpfs here (needs CAP_SYS_ADMIN)");
  Fleet fleet;
  t.fill();
  auto r = fleet.run(make_spec(unique_id("enospc"), {"/bin/sh", "-c", "exit 7"}).dump(),
                     {"--events", t.mnt + "/events.jsonl"});
  INFO(r.err);
  CHECK(r.status == 7);
  size_t lines = 0, pos = 0;
  while ((pos = r.err.find("No space left on device", pos)) != std::string::npos) {
    ++lines;
    ++pos;
  }
  CHECK(lines == 1);
  CHECK_THAT(r.err, Contains("giving up at shutdown"));
}

TEST_CASE("every emitted line is a valid CloudEvent for the official JavaScript SDK",
          "[eventlog][interop]") {
  if (::access(kNode, X_OK) != 0) CELLOS_SKIP(std::string("no node at ") + kNode + " (scripts/install-deps.sh installs it)");
  if (::access(kSdk, R_OK) != 0)
    CELLOS_SKIP(std::string("CloudEvents JS SDK not installed at ") + kSdk +
                " (scripts/install-deps.sh installs it)");
  // Every record kind: cell events from a real run and a rejection, then in-process events with
  // per-event DSSE, a gap-free manifest chain across a restart.
  SignedFleet sf;
  REQUIRE(sf.fleet->run(make_spec(unique_id("interop"), {"/bin/true"}).dump()).status == 0);
  REQUIRE(sf.fleet->run("{bad").status == 125);
  {
    sinks::EventLogOptions o;
    o.path = sf.fleet->events_path();
    o.host_id = sf.fleet->host_id();
    o.signing_key_path = sf.keys.path() + "/k/host.key";
    o.per_event_signing = true;
    LogHarness h(o);
    h.emit_samples(2);
    h.drain();
  }
  {
    // And a gap record: a one-byte buffer takes the first event and drops the rest.
    sinks::EventLogOptions o;
    o.path = sf.fleet->events_path();
    o.host_id = sf.fleet->host_id();
    o.signing_key_path = sf.keys.path() + "/k/host.key";
    o.max_buffered_bytes = 1;
    LogHarness h(o);
    h.emit_samples(1);
    h.drain();
    h.drain();  // the gap record, once the buffer is empty again
    REQUIRE(h.log().dropped_events() == 4);
  }
  REQUIRE(read_text(sf.fleet->events_path()).find(sinks::kGapType) != std::string::npos);
  REQUIRE(reactor({"verify", sf.fleet->events_path(), "--public-key", sf.pub()}).status == 0);
  const std::string script = std::string(CELLOS_SOURCE_DIR) + "/tests/support/cloudevents_validate.js";
  auto p = run_process({kNode, script, sf.fleet->events_path(), kSdk});
  INFO(p.out + p.err);
  CHECK(p.status == 0);
  CHECK_THAT(p.out, Contains(std::to_string(sf.fleet->log_records().size()) + " lines valid"));
}

}  // namespace
}  // namespace cellos::test
