// The fleet daemon, run as operators run it: `cellos-reactor --config FLEET.toml`, fed through
// its spool, stopped with signals, killed and restarted.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "tests/support/daemon_support.h"
#include "tests/support/test_support.h"

using namespace cellos::test;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::set<std::string> ids_of(const std::vector<json>& events) {
  std::set<std::string> ids;
  for (const auto& e : events)
    if (e["data"].contains("cellId") && e["data"]["cellId"].is_string())
      ids.insert(e["data"]["cellId"].get<std::string>());
  return ids;
}

json sh_spec(const std::string& id, const std::string& script) {
  return make_spec(id, {"/bin/sh", "-c", script});
}

std::string cgroup_dir(const Fleet& f, const std::string& id = "") {
  return "/sys/fs/cgroup/unified/cellos/" + f.host_id() + (id.empty() ? "" : "/" + id);
}

// Tasks of `pid` that run user code: io_uring's kernel io-workers (PF_IO_WORKER, 0x10 in the
// flags field of /proc/<pid>/task/<tid>/stat) are the kernel's, not the daemon's threads.
int user_threads(pid_t pid) {
  int n = 0;
  for (const auto& t : fs::directory_iterator("/proc/" + std::to_string(pid) + "/task")) {
    std::string stat = read_text(t.path().string() + "/stat");
    std::istringstream in(stat.substr(stat.rfind(')') + 2));
    std::string field;
    unsigned long flags = 0;
    for (int i = 3; i <= 9 && in >> field; ++i)
      if (i == 9) flags = std::stoul(field);
    if (!(flags & 0x10)) ++n;
  }
  return n;
}

long cpu_ticks(pid_t pid) {
  std::string stat = read_text("/proc/" + std::to_string(pid) + "/stat");
  std::istringstream in(stat.substr(stat.rfind(')') + 2));
  std::string f;
  long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && in >> f; ++i) {
    if (i == 14) utime = std::stol(f);
    if (i == 15) stime = std::stol(f);
  }
  return utime + stime;
}

}  // namespace

TEST_CASE("the daemon runs 200 specs submitted at once, with events and logs, within its cap",
          "[daemon]") {
  Fleet fleet("", "", "max_concurrent_cells = 8");
  DaemonProcess daemon(fleet);
  std::vector<std::string> ids;
  for (int i = 0; i < 200; ++i) ids.push_back(unique_id("many"));
  for (const auto& id : ids) spool(fleet, sh_spec(id, "echo out-" + id + "; echo err-" + id + " >&2; sleep 0.1"));

  REQUIRE(eventually([&] { return events_of(fleet, "lifecycle.v1.destroyed").size() >= 200; },
                     std::chrono::seconds(100)));
  // Concurrency from the log itself: events are written in the order the reactor saw them.
  int now = 0, peak = 0;
  for (const auto& e : fleet.events()) {
    const std::string t = e["type"];
    if (t.ends_with("lifecycle.v1.started")) peak = std::max(peak, ++now);
    if (t.ends_with("lifecycle.v1.destroyed")) --now;
  }
  CHECK(peak == 8);
  auto completed = events_of(fleet, "command.v1.completed");
  CHECK(ids_of(completed) == std::set<std::string>(ids.begin(), ids.end()));
  for (const auto& c : completed) CHECK(c["data"]["exitCode"] == 0);
  for (const auto& id : ids) {
    CHECK(read_text(fleet.state_dir() + "/logs/" + id + "/stdout") == "out-" + id + "\n");
    CHECK(read_text(fleet.state_dir() + "/logs/" + id + "/stderr") == "err-" + id + "\n");
  }
  CHECK(dir_entries(fleet.state_dir() + "/spool").empty());
  CHECK(dir_entries(fleet.state_dir() + "/active").empty());
  const std::string prom = fleet.state_dir() + "/metrics.prom";
  // Rewritten at most once a second after a change: wait for the one after the last cell.
  REQUIRE(eventually([&] {
    return read_text(prom).find("reason=\"exited\"} 200") != std::string::npos;
  }, std::chrono::seconds(5)));
  std::string metrics = read_text(prom);
  CHECK(metrics.find("cellos_cells_started_total{host=\"" + fleet.host_id() + "\"} 200") !=
        std::string::npos);
  CHECK(metrics.find("cellos_cells_running{host=\"" + fleet.host_id() + "\"} 0") !=
        std::string::npos);
  CHECK(metrics.find("cellos_spawn_latency_seconds_count{host=\"" + fleet.host_id() + "\"} 200") !=
        std::string::npos);
  daemon.signal(SIGTERM);
  CHECK(daemon.wait() == 0);
}

TEST_CASE("a spec whose id is running or waiting is rejected, the others run", "[daemon]") {
  Fleet fleet("", "", "max_concurrent_cells = 1");
  DaemonProcess daemon(fleet);
  const std::string a = unique_id("dup"), b = unique_id("dup");
  spool(fleet, sh_spec(a, "sleep 1"));
  REQUIRE(eventually([&] { return !events_of(fleet, "lifecycle.v1.started").empty(); }));
  spool(fleet, sh_spec(b, "true"));
  std::string again_a = spool(fleet, sh_spec(a, "true"));
  std::string again_b = spool(fleet, sh_spec(b, "true"));
  REQUIRE(eventually([&] { return events_of(fleet, "lifecycle.v1.rejected").size() >= 2; }));
  auto rejected = events_of(fleet, "lifecycle.v1.rejected");
  CHECK(rejected[0]["data"]["cellId"] == a);
  CHECK(rejected[0]["data"]["reason"].get<std::string>().find("is already running") != std::string::npos);
  CHECK(rejected[1]["data"]["cellId"] == b);
  CHECK(rejected[1]["data"]["reason"].get<std::string>().find("is already waiting") != std::string::npos);
  const std::string rej = fleet.state_dir() + "/rejected/";
  CHECK(path_exists(rej + again_a));
  CHECK(read_text(rej + again_a + ".error").find("already running") != std::string::npos);
  CHECK(read_text(rej + again_b + ".error").find("already waiting") != std::string::npos);
  REQUIRE(eventually([&] { return events_of(fleet, "lifecycle.v1.destroyed").size() >= 2; }));
  for (const auto& c : events_of(fleet, "command.v1.completed")) CHECK(c["data"]["exitCode"] == 0);
  daemon.signal(SIGTERM);
  CHECK(daemon.wait() == 0);
}

TEST_CASE("malformed and unreadable specs are rejected with their reason while a cell runs",
          "[daemon]") {
  Fleet fleet;
  DaemonProcess daemon(fleet);
  const std::string id = unique_id("steady");
  spool(fleet, sh_spec(id, "sleep 1; echo still-here"));
  REQUIRE(eventually([&] { return !events_of(fleet, "lifecycle.v1.started").empty(); }));

  spool_raw(fleet, "broken.json", "{\"apiVersion\": ");
  spool_raw(fleet, "unknown-field.json",
            R"({"apiVersion":"cellos.io/v1","kind":"ExecutionCell","spec":{"id":"u","run":{"argv":["/bin/true"]},"bogus":1}})");
  spool_raw(fleet, "bad-argv0.json", make_spec(unique_id("argv0"), {"/opt/evil"}).dump());
  // Things that are not specs at all, renamed in as a submitter would.
  const std::string spool_dir = fleet.state_dir() + "/spool/";
  fs::create_directory(fleet.dir() + "/a-dir");
  fs::rename(fleet.dir() + "/a-dir", spool_dir + "a-dir.json");
  REQUIRE(::mkfifo((fleet.dir() + "/fifo").c_str(), 0644) == 0);
  fs::rename(fleet.dir() + "/fifo", spool_dir + "fifo.json");
  fs::create_symlink("/etc/hostname", fleet.dir() + "/link");
  fs::rename(fleet.dir() + "/link", spool_dir + "link.json");

  REQUIRE(eventually([&] { return events_of(fleet, "lifecycle.v1.rejected").size() >= 6; }));
  const std::string rej = fleet.state_dir() + "/rejected/";
  const std::map<std::string, std::string> expected = {
      {"broken.json", "invalid JSON"},
      {"unknown-field.json", "bogus"},
      {"bad-argv0.json", "allowed prefix"},
      {"a-dir.json", "not a regular file"},
      {"fifo.json", "not a regular file"},
      {"link.json", "link.json"}};
  for (const auto& [name, what] : expected) {
    INFO(name);
    CHECK(path_exists(rej + name));
    std::string error = read_text(rej + name + ".error");
    CHECK(error.find(what) != std::string::npos);
    CHECK(error.find('\n') == error.size() - 1);  // exactly one line
  }
  CHECK(dir_entries(spool_dir).empty());
  REQUIRE(eventually([&] { return !events_of(fleet, "lifecycle.v1.destroyed").empty(); }));
  auto done = events_of(fleet, "command.v1.completed");
  REQUIRE(done.size() == 1);
  CHECK(done[0]["data"]["exitCode"] == 0);
  CHECK(read_text(fleet.state_dir() + "/logs/" + id + "/stdout") == "still-here\n");
  daemon.signal(SIGTERM);
  CHECK(daemon.wait() == 0);
}

TEST_CASE("SIGTERM lets cells finish within the grace period, then kills the rest, and waiting "
          "specs stay in the spool",
          "[daemon]") {
  Fleet fleet("", "", "max_concurrent_cells = 2\nshutdown_grace_seconds = 2");
  DaemonProcess daemon(fleet);
  const std::string quick = unique_id("quick"), slow = unique_id("slow");
  // Every running cell gets SIGTERM when the grace starts: this one finishes its work anyway.
  spool(fleet, sh_spec(quick, "trap '' TERM; s=0.7; sleep $s"));
  // Ignores the SIGTERM every cell gets at the grace's start: killed at its end.
  spool(fleet, sh_spec(slow, "trap '' TERM; s=311; sleep $s"));
  std::vector<std::string> waiting;
  for (int i = 0; i < 3; ++i) waiting.push_back(spool(fleet, sh_spec(unique_id("wait"), "true")));
  REQUIRE(eventually([&] { return events_of(fleet, "lifecycle.v1.started").size() >= 2; }));
  // Their traps are set once they sleep. The shells' own command lines say "sleep $s", so
  // "sleep 311" is the sleep process alone, never a shell that has not set its trap yet.
  REQUIRE(eventually([&] {
    return !processes_with("sleep 0.7").empty() && !processes_with("sleep 311").empty();
  }));
  daemon.signal(SIGTERM);
  CHECK(daemon.wait(std::chrono::seconds(30)) == 0);

  std::map<std::string, json> completed, destroyed;
  for (auto& e : events_of(fleet, "command.v1.completed")) completed[e["data"]["cellId"]] = e["data"];
  for (auto& e : events_of(fleet, "lifecycle.v1.destroyed")) destroyed[e["data"]["cellId"]] = e["data"];
  REQUIRE(completed.size() == 2);
  CHECK(completed[quick]["exitCode"] == 0);
  CHECK(destroyed[quick]["terminalState"] == "Clean");
  CHECK(completed[slow]["signal"] == 9);
  CHECK(completed[slow]["reason"] == "shutdown");
  CHECK(destroyed[slow]["terminalState"] == "Forced");
  CHECK(destroyed[slow]["outcome"] == "failed");
  CHECK(dir_entries(fleet.state_dir() + "/spool") ==
        std::vector<std::string>(waiting.begin(), waiting.end()));
  CHECK(!path_exists(cgroup_dir(fleet, slow)));
}

TEST_CASE("a second SIGTERM kills running cells at once", "[daemon]") {
  Fleet fleet("", "", "shutdown_grace_seconds = 3600");
  DaemonProcess daemon(fleet);
  const std::string id = unique_id("stubborn");
  spool(fleet, sh_spec(id, "trap '' TERM; s=312; sleep $s"));
  REQUIRE(eventually([&] { return !events_of(fleet, "lifecycle.v1.started").empty(); }));
  REQUIRE(eventually([&] { return !processes_with("sleep 312").empty(); }));
  daemon.signal(SIGTERM);
  REQUIRE(eventually([&] { return daemon.err().find("intake stopped") != std::string::npos; }));
  daemon.signal(SIGINT);
  CHECK(daemon.wait(std::chrono::seconds(30)) == 0);
  auto destroyed = events_of(fleet, "lifecycle.v1.destroyed");
  REQUIRE(destroyed.size() == 1);
  CHECK(destroyed[0]["data"]["terminalState"] == "Forced");
}

TEST_CASE("after SIGKILL of the daemon a restart kills and removes the lost cells, reports them "
          "and runs the specs that were waiting",
          "[daemon]") {
  Fleet fleet("", "", "max_concurrent_cells = 3\nshutdown_grace_seconds = 0");
  const std::string marker = "lost-cell-marker-" + unique_id("m");
  const auto mounts_before = read_text("/proc/self/mountinfo");
  std::vector<std::string> lost, later;
  {
    DaemonProcess daemon(fleet);
    for (int i = 0; i < 3; ++i) {
      lost.push_back(unique_id("lost"));
      spool(fleet, sh_spec(lost.back(), "sleep 300; : " + marker));
    }
    REQUIRE(eventually([&] { return events_of(fleet, "lifecycle.v1.started").size() >= 3; }));
    for (int i = 0; i < 2; ++i) {
      later.push_back(unique_id("later"));
      spool(fleet, sh_spec(later.back(), "echo ran"));
    }
    REQUIRE(eventually([&] { return processes_with(marker).size() >= 3; }));
    daemon.signal(SIGKILL);
    CHECK(daemon.wait() == 128 + SIGKILL);
  }
  // The cells' init processes die with the daemon (parent-death signal), their pid namespaces
  // with them; the restart then finds only the empty cgroups and the active/ entries.
  CHECK(eventually([&] { return processes_with(marker).empty(); }, std::chrono::seconds(10)));
  CHECK(dir_entries(fleet.state_dir() + "/active").size() == 3);

  DaemonProcess again(fleet);
  REQUIRE(eventually([&] { return events_of(fleet, "lifecycle.v1.destroyed").size() >= 5; }));
  std::map<std::string, json> destroyed;
  for (auto& e : events_of(fleet, "lifecycle.v1.destroyed")) destroyed[e["data"]["cellId"]] = e["data"];
  for (const auto& id : lost) {
    INFO(id);
    CHECK(destroyed[id]["outcome"] == "failed");
    CHECK(destroyed[id]["reason"] == "lost");
    CHECK(!path_exists(cgroup_dir(fleet, id)));
  }
  for (const auto& id : later) {
    CHECK(destroyed[id]["outcome"] == "succeeded");
    CHECK(read_text(fleet.state_dir() + "/logs/" + id + "/stdout") == "ran\n");
  }
  CHECK(dir_entries(fleet.state_dir() + "/active").empty());
  again.signal(SIGTERM);
  CHECK(again.wait() == 0);
  CHECK(processes_with(marker).empty());
  CHECK(dir_entries(cgroup_dir(fleet)).empty());
  CHECK(read_text("/proc/self/mountinfo") == mounts_before);
  // The log spans the crash: the batch the killed daemon left unsealed was sealed over at the
  // restart, and the whole chain verifies.
  auto verify = run_process({CELLOS_REACTOR_BIN, "verify", fleet.events_path()});
  INFO(verify.out << verify.err);
  CHECK(verify.status == 0);
}

TEST_CASE("a stream past logs.max_bytes_per_stream is cut with a marker and the cell runs on",
          "[daemon]") {
  Fleet fleet("[logs]\nmax_bytes_per_stream = 4096\n");
  DaemonProcess daemon(fleet);
  const std::string id = unique_id("chatty");
  spool(fleet, sh_spec(id, "head -c 1000000 /dev/zero | tr '\\0' x; echo finished >&2"));
  REQUIRE(eventually([&] { return !events_of(fleet, "lifecycle.v1.destroyed").empty(); }));
  const std::string out = read_text(fleet.state_dir() + "/logs/" + id + "/stdout");
  const std::string notice = "[cellos-reactor: stdout cut at 4096 bytes";
  auto at = out.find(notice);
  REQUIRE(at != std::string::npos);
  CHECK(at <= 4096 + 1);
  CHECK(out.size() < 4096 + 200);
  CHECK(out.substr(0, 4000) == std::string(4000, 'x'));
  CHECK(read_text(fleet.state_dir() + "/logs/" + id + "/stderr") == "finished\n");
  auto completed = events_of(fleet, "command.v1.completed");
  REQUIRE(completed.size() == 1);
  CHECK(completed[0]["data"]["exitCode"] == 0);
  CHECK(completed[0]["data"]["stdoutTruncated"] == true);
  CHECK_FALSE(completed[0]["data"].contains("stderrTruncated"));
  daemon.signal(SIGTERM);
  CHECK(daemon.wait() == 0);
}

TEST_CASE("the daemon has one thread and uses no CPU while its cells sleep, and status shows them",
          "[daemon]") {
  Fleet fleet("", "", "shutdown_grace_seconds = 0");
  DaemonProcess daemon(fleet);
  std::vector<std::string> ids;
  for (int i = 0; i < 20; ++i) {
    ids.push_back(unique_id("sleeper"));
    spool(fleet, sh_spec(ids.back(), "echo up; sleep 300"));
  }
  REQUIRE(eventually([&] { return events_of(fleet, "lifecycle.v1.started").size() >= 20; }));
  CHECK(user_threads(daemon.pid()) == 1);
  // Let the last metrics write (at most a second after the last change) pass, then watch.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  long before = cpu_ticks(daemon.pid());
  std::this_thread::sleep_for(std::chrono::seconds(2));
  long after = cpu_ticks(daemon.pid());
  CHECK(after - before <= 1);  // clock ticks (10 ms): a busy loop would burn ~200
  CHECK(user_threads(daemon.pid()) == 1);

  auto st = run_process({CELLOS_REACTOR_BIN, "status", "--config", fleet.config_path(), "--json"});
  REQUIRE(st.status == 0);
  json j = json::parse(st.out);
  CHECK(j["running"] == 20);
  CHECK(j["waiting"] == 0);
  CHECK(j["hostId"] == fleet.host_id());
  REQUIRE(j["cells"].size() == 20);
  for (const auto& c : j["cells"]) {
    CHECK(c["pid"].get<int>() > 0);
    CHECK(c["memoryBytes"].get<uint64_t>() > 0);
    CHECK(c["ageSeconds"].get<double>() > 1.0);
  }
  auto table = run_process({CELLOS_REACTOR_BIN, "status", "--config", fleet.config_path()});
  CHECK(table.status == 0);
  CHECK(table.out.find("running 20") != std::string::npos);
  CHECK(table.out.find(ids[0]) != std::string::npos);
  CHECK(read_text(fleet.state_dir() + "/metrics.prom")
            .find("cellos_cells_running{host=\"" + fleet.host_id() + "\"} 20") != std::string::npos);

  daemon.signal(SIGTERM);
  CHECK(daemon.wait() == 0);
  CHECK(events_of(fleet, "lifecycle.v1.destroyed").size() == 20);
  auto gone = run_process({CELLOS_REACTOR_BIN, "status", "--config", fleet.config_path()});
  CHECK(gone.status == 1);
  CHECK(gone.err.find("no daemon is serving") != std::string::npos);
}

TEST_CASE("submit refuses a spec the policy rejects and queues nothing, and a second daemon on the "
          "same state dir is refused",
          "[daemon]") {
  Fleet fleet;
  const std::string spec_file = fleet.dir() + "/bad.json";
  write_text(spec_file, make_spec(unique_id("evil"), {"/opt/evil"}).dump());
  auto r = run_process({CELLOS_REACTOR_BIN, "submit", spec_file, "--config", fleet.config_path()});
  CHECK(r.status == 125);
  CHECK(r.err.find("allowed prefix") != std::string::npos);
  CHECK(dir_entries(fleet.state_dir() + "/spool").empty());

  DaemonProcess daemon(fleet);
  auto second = run_process({CELLOS_REACTOR_BIN, "--config", fleet.config_path()}, "", 20);
  CHECK(second.status == 125);
  CHECK(second.err.find("another cellos-reactor daemon serves") != std::string::npos);

  const std::string good = fleet.dir() + "/good.json";
  const std::string id = unique_id("submitted");
  write_text(good, sh_spec(id, "echo via-submit").dump());
  auto ok = run_process({CELLOS_REACTOR_BIN, "submit", good, "--config", fleet.config_path()});
  CHECK(ok.status == 0);
  REQUIRE(eventually([&] { return !events_of(fleet, "lifecycle.v1.destroyed").empty(); }));
  CHECK(read_text(fleet.state_dir() + "/logs/" + id + "/stdout") == "via-submit\n");
  daemon.signal(SIGTERM);
  CHECK(daemon.wait() == 0);
}

TEST_CASE("while the daemon drains after SIGTERM, status still answers and says it is draining",
          "[daemon]") {
  Fleet fleet("", "", "shutdown_grace_seconds = 3600");
  DaemonProcess daemon(fleet);
  spool(fleet, sh_spec(unique_id("draining"), "trap '' TERM; s=313; sleep $s"));
  REQUIRE(eventually([&] { return !events_of(fleet, "lifecycle.v1.started").empty(); }));
  REQUIRE(eventually([&] { return !processes_with("sleep 313").empty(); }));
  daemon.signal(SIGTERM);
  REQUIRE(eventually([&] { return daemon.err().find("intake stopped") != std::string::npos; }));
  auto st = run_process({CELLOS_REACTOR_BIN, "status", "--config", fleet.config_path()});
  CHECK(st.status == 0);
  CHECK_THAT(st.out, Catch::Contains("draining"));
  auto js = run_process({CELLOS_REACTOR_BIN, "status", "--config", fleet.config_path(), "--json"});
  REQUIRE(js.status == 0);
  CHECK(json::parse(js.out)["stopping"] == true);
  CHECK(json::parse(js.out)["running"] == 1);
  daemon.signal(SIGTERM);
  CHECK(daemon.wait(std::chrono::seconds(30)) == 0);
  CHECK_FALSE(path_exists(fleet.state_dir() + "/reactor.sock"));
}
