// Operating a host as a CI team does: `submit --wait` (stream the job, exit with its status),
// `show ID` (what happened to a job), `status --json` (recently finished jobs), and what the
// daemon writes where the user looks (the cell's stderr log).
#include <signal.h>
#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <sys/wait.h>
#include <sstream>
#include <thread>

#include "tests/support/daemon_support.h"
#include "tests/support/test_support.h"

using namespace cellos::test;
using Catch::Matchers::Contains;
using nlohmann::json;

namespace {

json sh_spec(const std::string& id, const std::string& script) {
  return make_spec(id, {"/bin/sh", "-c", script});
}

ProcessResult submit_wait(const Fleet& fleet, const json& spec, int timeout_s = 60) {
  return run_process({CELLOS_REACTOR_BIN, "submit", "--wait", "-", "--config", fleet.config_path()},
                     spec.dump(), timeout_s);
}

ProcessResult show(const Fleet& fleet, const std::string& id, bool as_json) {
  std::vector<std::string> argv{CELLOS_REACTOR_BIN, "show", id, "--config", fleet.config_path()};
  if (as_json) argv.push_back("--json");
  return run_process(argv);
}

}  // namespace

TEST_CASE("submit --wait streams the cell's stdout and stderr and exits with its exit code",
          "[operate]") {
  Fleet fleet;
  DaemonProcess daemon(fleet);
  const std::string id = unique_id("wait");
  auto r = submit_wait(fleet, sh_spec(id, "echo first-out; echo first-err >&2; sleep 0.5; "
                                          "echo second-out; exit 3"));
  INFO(r.err);
  CHECK(r.status == 3);
  CHECK(r.out == "first-out\nsecond-out\n");
  CHECK_THAT(r.err, Contains("first-err\n"));
  CHECK_THAT(r.err, Contains("submitted " + id));

  // The same table as `run`: a success is 0, a signal 128+N.
  auto ok = submit_wait(fleet, sh_spec(unique_id("wait-ok"), "echo fine"));
  CHECK(ok.status == 0);
  CHECK(ok.out == "fine\n");
  auto sig = submit_wait(fleet, sh_spec(unique_id("wait-sig"), "kill -KILL $$"));
  CHECK(sig.status == 128 + SIGKILL);
}

TEST_CASE("a missing argv[0] under the daemon: 127 from submit --wait, a marker line in the "
          "cell's stderr log, and show says why",
          "[operate]") {
  Fleet fleet;
  DaemonProcess daemon(fleet);
  const std::string id = unique_id("noexec");
  auto r = submit_wait(fleet, make_spec(id, {"/usr/bin/cellos-no-such-tool"}));
  CHECK(r.status == 127);
  CHECK_THAT(r.err, Contains("/usr/bin/cellos-no-such-tool: No such file or directory"));
  const std::string log = read_text(fleet.state_dir() + "/logs/" + id + "/stderr");
  CHECK_THAT(log, Contains("[cellos-reactor: setup failed, the command did not run (exit status "
                           "127): spec.run.argv[0]: /usr/bin/cellos-no-such-tool"));

  auto s = show(fleet, id, true);
  REQUIRE(s.status == 0);
  json j = json::parse(s.out);
  CHECK(j["state"] == "failed");
  CHECK(j["reason"] == "setup_failed");
  CHECK(j["exitStatus"] == 127);
  CHECK(j["exitCode"].is_null());
  CHECK_THAT(j["error"].get<std::string>(), Contains("No such file or directory"));
}

TEST_CASE("show tells a finished cell's outcome, resources, log paths and last lines, and an "
          "unknown id exits 1",
          "[operate]") {
  Fleet fleet;
  DaemonProcess daemon(fleet);
  const std::string id = unique_id("show");
  auto r = submit_wait(fleet, sh_spec(id, "for i in 1 2 3 4 5; do echo line-$i; done; exit 0"));
  REQUIRE(r.status == 0);

  auto j = json::parse(show(fleet, id, true).out);
  CHECK(j["id"] == id);
  CHECK(j["state"] == "succeeded");
  CHECK(j["reason"] == "exited");
  CHECK(j["exitCode"] == 0);
  CHECK(j["exitStatus"] == 0);
  CHECK(j["terminalState"] == "Clean");
  CHECK(j["hostId"] == fleet.host_id());
  CHECK(j["stdout"] == fleet.state_dir() + "/logs/" + id + "/stdout");
  CHECK(j["resources"]["memoryPeakBytes"].get<uint64_t>() > 0);
  CHECK(j["resources"].contains("cpuUsageUsec"));
  CHECK_FALSE(j["startedAt"].get<std::string>().empty());
  CHECK_FALSE(j["finishedAt"].get<std::string>().empty());

  auto text = run_process({CELLOS_REACTOR_BIN, "show", id, "--config", fleet.config_path(),
                           "--lines", "2"});
  CHECK(text.status == 0);
  CHECK_THAT(text.out, Contains("cell " + id + ": succeeded"));
  CHECK_THAT(text.out, Contains("    | line-4\n    | line-5\n"));
  CHECK_THAT(text.out, !Contains("line-3"));

  auto missing = show(fleet, unique_id("never"), false);
  CHECK(missing.status == 1);
  CHECK_THAT(missing.err, Contains("no cell"));
}

TEST_CASE("submit --wait: a spec the daemon rejects exits 125 with its reason, and a missing secret "
          "is refused before anything is queued",
          "[operate]") {
  TempDir secrets;
  Fleet fleet("[secrets]\ndir = \"" + secrets.path() + "\"\n[secrets.grants]\nTOKEN = [\"*\"]\n");
  DaemonProcess daemon(fleet);

  // The same id already running: the daemon's own refusal reaches the waiting client.
  const std::string id = unique_id("dup");
  spool(fleet, sh_spec(id, "sleep 30"));
  REQUIRE(eventually([&] { return !events_of(fleet, "lifecycle.v1.started").empty(); }));
  auto dup = submit_wait(fleet, sh_spec(id, "true"));
  CHECK(dup.status == 125);
  CHECK_THAT(dup.err, Contains("rejected " + id));
  CHECK_THAT(dup.err, Contains("is already running"));

  // A secret that is granted but has no file: refused by submit itself, the spool untouched.
  json spec = sh_spec(unique_id("nosecret"), "true");
  spec["spec"]["authority"]["secretRefs"] = json::array({"TOKEN"});
  const auto before = dir_entries(fleet.state_dir() + "/spool");
  auto missing = submit_wait(fleet, spec);
  CHECK(missing.status == 125);
  CHECK_THAT(missing.err, Contains("TOKEN"));
  CHECK(dir_entries(fleet.state_dir() + "/spool") == before);
  // Without --wait too.
  auto plain = run_process({CELLOS_REACTOR_BIN, "submit", "-", "--config", fleet.config_path()},
                           spec.dump());
  CHECK(plain.status == 125);
  CHECK(dir_entries(fleet.state_dir() + "/spool") == before);
  daemon.signal(SIGINT);
  daemon.signal(SIGINT);
  CHECK(daemon.wait() >= 0);
}

TEST_CASE("submit --wait without a daemon queues nothing, and a daemon stopping before the cell "
          "starts leaves it in the spool and says so",
          "[operate]") {
  Fleet fleet("", "", "max_concurrent_cells = 1\nshutdown_grace_seconds = 2");
  {
    auto r = submit_wait(fleet, sh_spec(unique_id("nodaemon"), "true"));
    CHECK(r.status == 125);
    CHECK_THAT(r.err, Contains("no daemon is serving"));
    CHECK_THAT(r.err, Contains("nothing was queued"));
    CHECK(dir_entries(fleet.state_dir() + "/spool").empty());
  }
  DaemonProcess daemon(fleet);
  spool(fleet, sh_spec(unique_id("busy"), "sleep 30"));
  REQUIRE(eventually([&] { return !events_of(fleet, "lifecycle.v1.started").empty(); }));
  // The one slot is taken: this spec waits in the spool; the client waits for it.
  const std::string id = unique_id("queued");
  ProcessResult r;
  std::thread client([&] { r = submit_wait(fleet, sh_spec(id, "true")); });
  REQUIRE(eventually([&] {
    for (const auto& n : dir_entries(fleet.state_dir() + "/spool"))
      if (n.find(id) != std::string::npos) return true;
    return false;
  }));
  daemon.signal(SIGTERM);
  client.join();
  CHECK(r.status == 125);
  CHECK_THAT(r.err, Contains("the daemon stopped before cell " + id + " started"));
  CHECK(daemon.wait() == 0);
  bool kept = false;
  for (const auto& n : dir_entries(fleet.state_dir() + "/spool"))
    kept = kept || n.find(id) != std::string::npos;
  CHECK(kept);
}

TEST_CASE("status --json lists recently finished cells, newest first, with their exit status",
          "[operate]") {
  Fleet fleet;
  DaemonProcess daemon(fleet);
  const std::string a = unique_id("recent-a"), b = unique_id("recent-b");
  REQUIRE(submit_wait(fleet, sh_spec(a, "exit 0")).status == 0);
  REQUIRE(submit_wait(fleet, sh_spec(b, "exit 7")).status == 7);
  auto s = run_process({CELLOS_REACTOR_BIN, "status", "--json", "--config", fleet.config_path()});
  REQUIRE(s.status == 0);
  json j = json::parse(s.out);
  REQUIRE(j["recentlyFinished"].size() == 2);
  CHECK(j["recentlyFinished"][0]["id"] == b);
  CHECK(j["recentlyFinished"][0]["exitStatus"] == 7);
  CHECK(j["recentlyFinished"][0]["reason"] == "exited");
  CHECK(j["recentlyFinished"][1]["id"] == a);
  CHECK(j["recentlyFinished"][1]["exitStatus"] == 0);
  CHECK(j["succeeded"] == 1);
  CHECK(j["failed"] == 1);
  auto table = run_process({CELLOS_REACTOR_BIN, "status", "--config", fleet.config_path()});
  CHECK_THAT(table.out, Contains("RECENTLY FINISHED"));
  CHECK_THAT(table.out, Contains(b));
}

TEST_CASE("operating.md: every command it shows runs as shown", "[operate][docs]") {
  const std::string doc = read_text(std::string(CELLOS_SOURCE_DIR) + "/docs/operating.md");
  // The job spec is the doc's own JSON block; the commands are its `cellos-reactor` lines.
  std::string spec_text;
  std::vector<std::string> commands;
  {
    std::istringstream in(doc);
    std::string line, block;
    bool inside = false;
    for (; std::getline(in, line);) {
      if (line.starts_with("```")) {
        inside = !inside;
        block = inside ? line.substr(3) : "";
        continue;
      }
      if (!inside) continue;
      if (block == "json") spec_text += line + "\n";
      else if (line.starts_with("cellos-reactor ")) commands.push_back(line);
    }
  }
  REQUIRE(commands.size() == 6);
  Fleet fleet;
  const std::string job = fleet.dir() + "/job.json";
  write_text(job, spec_text);
  DaemonProcess daemon(fleet);
  for (const std::string& command : commands) {
    std::vector<std::string> argv;
    std::istringstream words(command);
    for (std::string w; words >> w;) {
      if (w == "cellos-reactor") w = CELLOS_REACTOR_BIN;
      else if (w == "fleet.toml") w = fleet.config_path();
      else if (w == "job.json") w = job;
      else if (w == "events.jsonl") w = fleet.events_path();
      argv.push_back(w);
    }
    INFO(command);
    auto r = run_process(argv);
    INFO(r.out << r.err);
    if (command.find("submit") != std::string::npos) {
      CHECK(r.status == 3);
      CHECK(r.out == "compiling\n");
      CHECK_THAT(r.err, Contains("warning: unused\n"));
    } else if (command.find("--json") != std::string::npos && command.find("show") != std::string::npos) {
      REQUIRE(r.status == 0);
      auto j = json::parse(r.out);
      CHECK(j["state"] == "failed");
      CHECK(j["exitStatus"] == 3);
    } else if (command.find("show") != std::string::npos) {
      CHECK(r.status == 0);
      CHECK_THAT(r.out, Contains("cell build-42: failed"));
      CHECK_THAT(r.out, Contains("reason exited, exit code 3 (exit status 3"));
      CHECK_THAT(r.out, Contains("    | compiling\n"));
      CHECK_THAT(r.out, Contains("    | warning: unused\n"));
    } else if (command.find("status") != std::string::npos) {
      CHECK(r.status == 0);
      CHECK_THAT(r.out, Contains("build-42"));
    } else {
      CHECK(command.find("verify") != std::string::npos);
      CHECK(r.status == 0);
    }
  }
}

TEST_CASE("Ctrl-C on submit --wait only stops waiting: the cell runs to its end", "[operate]") {
  Fleet fleet;
  DaemonProcess daemon(fleet);
  const std::string id = unique_id("detach");
  const std::string spec = fleet.dir() + "/detach.json";
  write_text(spec, sh_spec(id, "sleep 1; echo done").dump());
  pid_t client = ::fork();
  if (client == 0) {
    int null = ::open("/dev/null", O_WRONLY);
    ::dup2(null, 1);
    ::dup2(null, 2);
    ::execl(CELLOS_REACTOR_BIN, CELLOS_REACTOR_BIN, "submit", "--wait", spec.c_str(), "--config",
            fleet.config_path().c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  REQUIRE(client > 0);
  REQUIRE(eventually([&] {
    for (const auto& e : events_of(fleet, "lifecycle.v1.started"))
      if (e.value("subject", "") == id) return true;
    return false;
  }));
  ::kill(client, SIGINT);
  int status = 0;
  ::waitpid(client, &status, 0);
  CHECK(WIFSIGNALED(status));
  REQUIRE(eventually([&] {
    for (const auto& e : events_of(fleet, "command.v1.completed"))
      if (e.value("subject", "") == id) return true;
    return false;
  }));
  for (const auto& e : events_of(fleet, "command.v1.completed"))
    if (e.value("subject", "") == id) {
      CHECK(e["data"]["exitCode"] == 0);
      CHECK(e["data"]["reason"] == "exited");
    }
  CHECK(read_text(fleet.state_dir() + "/logs/" + id + "/stdout") == "done\n");
}
