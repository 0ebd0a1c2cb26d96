// The gVisor backend on the real runsc: the isolation the native backend's tests hold, run in
// runsc sandboxes ([cells] backend = "gvisor", ptrace platform), and the choice of backend by
// fleet.toml and by spec.run.backend. Where runsc is missing or cannot start a sandbox here,
// every test skips and prints why.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <sstream>

#include "tests/support/daemon_support.h"
#include "tests/support/test_hosts.h"
#include "tests/support/test_support.h"

using namespace cellos::test;
namespace fs = std::filesystem;

namespace {

const std::string kGvisor = "[cells]\nbackend = \"gvisor\"\n";

// Empty when a sandbox starts here; else why not (printed by the skip). Asked once per process.
std::string gvisor_unavailable() {
  static const std::string why = [] {
    if (::access("/usr/bin/runsc", X_OK) != 0)
      return std::string("runsc is not installed (apt-get install runsc)");
    Fleet fleet(kGvisor);
    auto r = fleet.run(make_spec(unique_id("gv-probe"), {"/bin/true"}).dump());
    if (r.status == 0) return std::string();
    return "runsc cannot start a sandbox here (run exit status " + std::to_string(r.status) +
           "): " + r.err.substr(0, 300);
  }();
  return why;
}

#define REQUIRE_GVISOR()                                          \
  do {                                                            \
    if (std::string why = gvisor_unavailable(); !why.empty()) CELLOS_SKIP(why); \
  } while (0)

std::string status_field(const std::string& status, const std::string& field) {
  std::istringstream in(status);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field + ":", 0) == 0) {
      auto start = line.find_first_not_of(" \t", field.size() + 1);
      return start == std::string::npos ? "" : line.substr(start);
    }
  return "<missing " + field + ">";
}

// Nothing of a fleet's gVisor cells outlives them: no runsc process naming its state dir, no
// runsc state or bundle, no cgroup leaf.
void check_nothing_left(const Fleet& fleet) {
  CHECK(processes_with("--root=" + fleet.state_dir() + "/gvisor").empty());
  std::error_code ec;
  size_t entries = 0;
  for (auto it = fs::directory_iterator(fleet.state_dir() + "/gvisor", ec);
       !ec && it != fs::directory_iterator(); it.increment(ec))
    ++entries;
  CHECK(entries == 0);
  std::error_code ec2;
  size_t leaves = 0;
  for (auto it = fs::directory_iterator("/sys/fs/cgroup/unified/cellos/" + fleet.host_id(), ec2);
       !ec2 && it != fs::directory_iterator(); it.increment(ec2))
    leaves += it->is_directory();
  CHECK(leaves == 0);
}

// The data of cell `id`'s first event of this type (a fleet's log holds every run's events).
nlohmann::json cell_event(const RunResult& r, const std::string& id, const std::string& suffix) {
  for (const auto& e : r.events)
    if (e.value("subject", "") == id && e.value("type", "").ends_with(suffix)) return e["data"];
  return nullptr;
}

}  // namespace

TEST_CASE("gvisor: the command runs on gVisor's kernel, and every lifecycle event says so",
          "[gvisor]") {
  REQUIRE_GVISOR();
  Fleet fleet(kGvisor);
  auto r = fleet.run(make_spec(unique_id("gv-kernel"),
                               {"/bin/sh", "-c", "dmesg | head -1; uname -r"})
                         .dump());
  REQUIRE(r.status == 0);
  // gVisor's Sentry writes its own boot log; the host kernel's never reaches the cell.
  CHECK_THAT(r.out, Catch::StartsWith("[    0.000000] Starting gVisor..."));
  auto host_release = run_process({"/bin/uname", "-r"}).out;
  CHECK(r.out.find(host_release) == std::string::npos);
  CHECK(r.event("lifecycle.v1.started")["backend"] == "gvisor");
  CHECK(r.event("command.v1.completed")["backend"] == "gvisor");
  CHECK(r.event("lifecycle.v1.destroyed")["backend"] == "gvisor");
  check_nothing_left(fleet);

  // The same spec on a native host: the host's kernel, and the events say native.
  Fleet native;
  auto n = native.run(make_spec(unique_id("gv-kernel"), {"/bin/uname", "-r"}).dump());
  CHECK(n.out == host_release);
  CHECK(n.event("lifecycle.v1.started")["backend"] == "native");
}

TEST_CASE("gvisor: the host is read-only, the workspace and /tmp are fresh and writable",
          "[gvisor][fs]") {
  REQUIRE_GVISOR();
  Fleet fleet(kGvisor);
  const std::string marker = "/usr/cellos-gvisor-write-" + std::to_string(::getpid());
  const std::string script = "touch " + marker + " 2>/dev/null && echo host-written; "
                             "echo \"$(pwd)\"; echo ws > f && cat f; "
                             "echo t > /tmp/t && cat /tmp/t; "
                             "test -e " + fleet.state_dir() + " && echo state-visible; true";
  auto r = fleet.run(make_spec(unique_id("gv-fs"), {"/bin/sh", "-c", script}).dump());
  CHECK(r.status == 0);
  CHECK(r.out == "/work\nws\nt\n");
  CHECK_FALSE(path_exists(marker));
  // A second cell finds its workspace and /tmp empty again.
  auto again = fleet.run(
      make_spec(unique_id("gv-fs"), {"/bin/sh", "-c", "cat f /tmp/t 2>/dev/null; echo $?"}).dump());
  CHECK(again.out == "1\n");
  check_nothing_left(fleet);
}

TEST_CASE("gvisor: the environment is exactly PATH, run.env and the declared secrets",
          "[gvisor][env]") {
  REQUIRE_GVISOR();
  Fleet plain;
  const std::string secrets = plain.dir() + "/secrets";
  fs::create_directories(secrets);
  write_text(secrets + "/NPM_TOKEN", "s3cr3t-value-xyz\n");
  write_text(secrets + "/UNDECLARED", "must-not-appear\n");
  Fleet fleet(kGvisor + "[secrets]\ndir = \"" + secrets +
              "\"\n[secrets.grants]\nNPM_TOKEN = [\"env-*\"]\n");
  const std::string spec = R"({"apiVersion":"cellos.io/v1","kind":"ExecutionCell","spec":{
      "id":")" + unique_id("env") + R"(","authority":{"secretRefs":["NPM_TOKEN"]},
      "run":{"argv":["/usr/bin/env"],"env":{"CI":"true","EMPTY":"","B":"2"}}}})";
  auto r = fleet.run(spec);
  REQUIRE(r.status == 0);
  // runsc would add HOME=/ (the backend takes it out again).
  CHECK(r.out == "PATH=/usr/local/bin:/usr/bin:/bin\nCI=true\nEMPTY=\nB=2\nNPM_TOKEN=s3cr3t-value-xyz\n");
  for (const auto& e : r.events) CHECK(e.dump().find("s3cr3t-value-xyz") == std::string::npos);
  CHECK(r.err.find("s3cr3t") == std::string::npos);
  // Not in runsc's files either: the bundle (which holds the environment) is gone.
  check_nothing_left(fleet);
}

TEST_CASE("gvisor: the policy's uid and gid, no capabilities, stdin /dev/null, the id as hostname",
          "[gvisor][proc]") {
  REQUIRE_GVISOR();
  Fleet fleet(kGvisor + "[policy]\nargv0_allow_prefixes = [\"/usr/bin\", \"/bin\"]\n"
                        "uid_range = \"4242-4242\"\n");
  const std::string id = unique_id("gv-creds");
  auto r = fleet.run(make_spec(id, {"/bin/sh", "-c", "cat /proc/self/status; cat; echo eof; hostname"}).dump());
  REQUIRE(r.status == 0);
  CHECK(status_field(r.out, "Uid") == "4242\t4242\t4242\t4242");
  CHECK(status_field(r.out, "Gid") == "4242\t4242\t4242\t4242");
  CHECK(status_field(r.out, "Groups").empty());
  for (const char* cap : {"CapInh", "CapPrm", "CapEff", "CapBnd"})
    CHECK(status_field(r.out, cap) == "0000000000000000");
  // `cat` read end-of-file at once: stdin is /dev/null, not the reactor's.
  CHECK(r.out.find("eof\n" + id + "\n") != std::string::npos);
}

TEST_CASE("gvisor: the memory limit holds on the sandbox: past it the cell is OOM-killed",
          "[gvisor][limits]") {
  REQUIRE_GVISOR();
  Fleet fleet(kGvisor);
  auto spec = make_spec(unique_id("gv-oom"), {fleet.probe(), "alloc", "256"});
  spec["spec"]["run"]["limits"] = {{"memoryMaxBytes", 64 << 20}};
  auto r = fleet.run(spec.dump());
  CHECK(r.status == 128 + 9);
  CHECK(r.out.find("allocated") == std::string::npos);
  auto done = r.event("command.v1.completed");
  CHECK(done["reason"] == "oom");
  CHECK(done["signal"] == 9);
  spec["spec"]["id"] = unique_id("gv-oom");
  spec["spec"]["run"]["limits"] = {{"memoryMaxBytes", 512 << 20}};
  auto ok = fleet.run(spec.dump());
  CHECK(ok.status == 0);
  CHECK(ok.out == "allocated 256 MiB\n");
  check_nothing_left(fleet);
}

TEST_CASE("gvisor: the pids limit holds: pidsMax processes, no more", "[gvisor][limits]") {
  REQUIRE_GVISOR();
  Fleet fleet(kGvisor);
  auto spec = make_spec(unique_id("gv-pids"), {fleet.probe(), "fork", "50"});
  spec["spec"]["run"]["limits"] = {{"pidsMax", 8}};
  spec["spec"]["run"]["timeoutMs"] = 20000;
  auto r = fleet.run(spec.dump());
  CHECK(r.out == "forked 7\n");
  CHECK(r.status == 0);
}

TEST_CASE("gvisor: at the TTL the whole sandbox dies, a daemonized child with it, nothing left",
          "[gvisor][ttl]") {
  REQUIRE_GVISOR();
  Fleet fleet(kGvisor);
  const std::string id = unique_id("gv-ttl");
  auto spec = make_spec(id, {"/bin/sh", "-c", "(setsid sleep 600 &); echo daemonized; sleep 600"});
  spec["spec"]["lifetime"] = {{"ttlSeconds", 1}};
  auto r = fleet.run(spec.dump());
  CHECK(r.status == 124);
  CHECK(r.out == "daemonized\n");
  CHECK(r.event("command.v1.completed")["reason"] == "timeout");
  CHECK(r.event("lifecycle.v1.destroyed")["terminalState"] == "Forced");
  // The sandbox (its Sentry holds the daemonized sleep), the gofer and runsc itself are gone.
  CHECK(processes_with(id).empty());
  check_nothing_left(fleet);
}

TEST_CASE("gvisor: exit codes are the native backend's", "[gvisor][run]") {
  REQUIRE_GVISOR();
  Fleet fleet(kGvisor);
  auto e = fleet.run(make_spec(unique_id("gv-exit"), {"/bin/sh", "-c", "echo out; echo err >&2; exit 7"}).dump());
  CHECK(e.status == 7);
  CHECK(e.out == "out\n");
  CHECK(e.err == "err\n");
  CHECK(e.event("command.v1.completed")["exitCode"] == 7);

  const std::string sig_id = unique_id("gv-sig");
  auto s = fleet.run(make_spec(sig_id, {"/bin/sh", "-c", "kill -TERM $$"}).dump());
  CHECK(s.status == 128 + 15);
  auto done = cell_event(s, sig_id, "command.v1.completed");
  CHECK(done["signal"] == 15);
  CHECK(done["exitCode"].is_null());
  CHECK(done["reason"] == "signaled");

  const std::string enoent_id = unique_id("gv-enoent");
  auto n = fleet.run(make_spec(enoent_id, {"/usr/bin/cellos-no-such-program"}).dump());
  CHECK(n.status == 127);
  CHECK(n.err == "cellos-reactor: spec.run.argv[0]: /usr/bin/cellos-no-such-program: "
                 "No such file or directory\n");
  CHECK(cell_event(n, enoent_id, "command.v1.completed")["reason"] == "setup_failed");

  // A file under an allowed prefix without an execute bit.
  const std::string plain = fs::path(fleet.probe()).parent_path().string() + "/not-executable";
  write_text(plain, "#!/bin/sh\n");
  ::chmod(plain.c_str(), 0644);
  auto x = fleet.run(make_spec(unique_id("gv-eacces"), {plain}).dump());
  CHECK(x.status == 126);
  CHECK_THAT(x.err, Catch::Contains("Permission denied"));

  const std::string timeout_id = unique_id("gv-timeout");
  auto t = make_spec(timeout_id, {"/bin/sleep", "60"});
  t["spec"]["run"]["timeoutMs"] = 300;
  auto to = fleet.run(t.dump());
  CHECK(to.status == 124);
  CHECK(cell_event(to, timeout_id, "command.v1.completed")["reason"] == "timeout");
  check_nothing_left(fleet);
}

TEST_CASE("gvisor: a spec chooses its backend only among policy.allowed_backends",
          "[gvisor][policy]") {
  // Refused before anything runs, whether or not runsc works here.
  Fleet native;
  auto spec = make_spec(unique_id("gv-choose"), {"/bin/uname", "-r"});
  spec["spec"]["run"]["backend"] = "gvisor";
  auto refused = native.run(spec.dump());
  CHECK(refused.status == 125);
  CHECK_THAT(refused.err, Catch::Contains("spec.run.backend: \"gvisor\" is not in "
                                          "policy.allowed_backends (native)"));
  CHECK(refused.event("lifecycle.v1.started").is_null());

  auto bad = make_spec(unique_id("gv-choose"), {"/bin/true"});
  bad["spec"]["run"]["backend"] = "firecracker";
  auto unknown = native.run(bad.dump());
  CHECK(unknown.status == 125);
  CHECK_THAT(unknown.err, Catch::Contains("spec.run.backend: must be \"native\", \"gvisor\" or \"nested\""));

  REQUIRE_GVISOR();
  Fleet both("[policy]\nargv0_allow_prefixes = [\"/usr/bin\", \"/bin\"]\n"
             "allowed_backends = [\"native\", \"gvisor\"]\n");
  const std::string chosen_id = unique_id("gv-choose");
  spec["spec"]["id"] = chosen_id;
  auto chosen = both.run(spec.dump());
  CHECK(chosen.status == 0);
  CHECK(chosen.out != run_process({"/bin/uname", "-r"}).out);  // not the host's kernel
  CHECK(cell_event(chosen, chosen_id, "lifecycle.v1.started")["backend"] == "gvisor");
  // Without the field: the host default.
  const std::string dflt_id = unique_id("gv-choose");
  auto dflt = both.run(make_spec(dflt_id, {"/bin/uname", "-r"}).dump());
  CHECK(cell_event(dflt, dflt_id, "lifecycle.v1.started")["backend"] == "native");
  check_nothing_left(both);
}

TEST_CASE("gvisor: a bare argv[0] runs the program the cell's PATH names, and what the sandbox "
          "cannot give a cell is refused at admission naming the field",
          "[gvisor][policy]") {
  // Refused before anything runs, whether or not runsc works here.
  Fleet fleet(kGvisor);
  auto broker = make_spec(unique_id("gv-broker"), {"/bin/true"});
  broker["spec"]["run"]["secretDelivery"] = "runtimeBroker";
  auto b = fleet.run(broker.dump());
  CHECK(b.status == 125);
  CHECK_THAT(b.err, Catch::Contains("spec.run.secretDelivery: not supported by the gvisor backend"));
  CHECK(b.event("lifecycle.v1.started").is_null());
  auto exp = make_spec(unique_id("gv-export"), {"/bin/true"});
  exp["spec"]["export"] = {{"artifacts", {{{"name", "out"}, {"path", "/work/out"}}}}};
  auto e = fleet.run(exp.dump());
  CHECK(e.status == 125);
  CHECK_THAT(e.err, Catch::Contains("spec.export: not supported by the gvisor backend"));
  auto dns = make_spec(unique_id("gv-dns"), {"/bin/true"});
  dns["spec"]["authority"]["dnsAuthority"] = {{"hostnameAllowlist", {"example.test"}}};
  auto d = fleet.run(dns.dump());
  CHECK(d.status == 125);
  CHECK_THAT(d.err, Catch::Contains("spec.authority.dnsAuthority: not supported by the gvisor backend"));

  REQUIRE_GVISOR();
  const std::string id = unique_id("gv-bare");
  auto r = fleet.run(make_spec(id, {"echo", "bare", "name"}).dump());
  CHECK(r.status == 0);
  CHECK(r.out == "bare name\n");
  CHECK(cell_event(r, id, "lifecycle.v1.started")["argv0Path"] == "/usr/bin/echo");
  check_nothing_left(fleet);
}

TEST_CASE("gvisor: the daemon runs gVisor cells, status names the backend, and after a crash the "
          "restart removes the orphaned sandbox and reports it lost",
          "[gvisor][daemon]") {
  REQUIRE_GVISOR();
  Fleet fleet(kGvisor, "", "shutdown_grace_seconds = 0");
  const std::string done_id = unique_id("gv-daemon"), orphan_id = unique_id("gv-orphan");
  {
    DaemonProcess daemon(fleet);
    spool(fleet, make_spec(done_id, {"/bin/sh", "-c", "dmesg | head -1"}));
    spool(fleet, make_spec(orphan_id, {"/bin/sleep", "300"}));
    REQUIRE(eventually([&] { return events_of(fleet, "lifecycle.v1.destroyed").size() >= 1; }));
    auto destroyed = events_of(fleet, "lifecycle.v1.destroyed");
    CHECK(destroyed[0]["data"]["cellId"] == done_id);
    CHECK(destroyed[0]["data"]["outcome"] == "succeeded");
    CHECK(destroyed[0]["data"]["backend"] == "gvisor");
    CHECK_THAT(read_text(fleet.state_dir() + "/logs/" + done_id + "/stdout"),
               Catch::StartsWith("[    0.000000] Starting gVisor..."));
    REQUIRE(eventually([&] { return !processes_with(orphan_id).empty(); }));
    auto st = run_process({CELLOS_REACTOR_BIN, "status", "--config", fleet.config_path(), "--json"});
    REQUIRE(st.status == 0);
    auto j = nlohmann::json::parse(st.out);
    REQUIRE(j["cells"].size() == 1);
    CHECK(j["cells"][0]["id"] == orphan_id);
    CHECK(j["cells"][0]["backend"] == "gvisor");
    // The reactor dies; runsc, its gofer and sandbox live on in the cell's leaf.
    daemon.signal(SIGKILL);
    CHECK(daemon.wait() == 128 + SIGKILL);
  }
  CHECK_FALSE(processes_with(orphan_id).empty());
  CHECK(path_exists(fleet.state_dir() + "/gvisor/" + orphan_id));
  {
    DaemonProcess restarted(fleet);
    CHECK(eventually([&] {
      for (const auto& e : events_of(fleet, "lifecycle.v1.destroyed"))
        if (e["data"]["cellId"] == orphan_id && e["data"]["reason"] == "lost") return true;
      return false;
    }));
    CHECK(processes_with(orphan_id).empty());
    check_nothing_left(fleet);
    restarted.signal(SIGTERM);
    CHECK(restarted.wait() == 0);
  }
}

TEST_CASE("gvisor: a cell with egress rules reaches exactly its declared destinations through the "
          "NAT uplink, and its denies are flow events",
          "[gvisor][net]") {
  REQUIRE_GVISOR();
  std::string why;
  if (!cellos::test::can_build_test_hosts(&why)) CELLOS_SKIP(why);
  TestHost a(30), b(31);
  const int tcp_ok = a.tcp(), tcp_other = a.tcp(), udp_ok = a.udp(), udp_other = a.udp();
  b.tcp(tcp_ok);
  a.start();
  b.start();
  REQUIRE_THAT(run_process({probe_path(), "tcp-connect", b.ip(), std::to_string(tcp_ok)}).out,
               Catch::Contains("ok hello"));
  const std::string subnet = "10.213." + std::to_string(::getpid() % 250) + ".0/24";
  Fleet fleet(kGvisor + "[network]\nuplink = \"nat\"\nsubnet = \"" + subnet + "\"\n");
  std::string script;
  for (const std::string& c :
       {"tcp-connect " + a.ip() + " " + std::to_string(tcp_ok),
        "tcp-connect " + a.ip() + " " + std::to_string(tcp_other),
        "tcp-connect " + b.ip() + " " + std::to_string(tcp_ok),
        "udp-send " + a.ip() + " " + std::to_string(udp_ok),
        "udp-send " + a.ip() + " " + std::to_string(udp_other)})
    script += fleet.probe() + " " + c + "; ";
  script += "dmesg | head -1";
  auto spec = make_spec(unique_id("gv-egress"), {"/bin/sh", "-c", script});
  spec["spec"]["authority"]["egressRules"] = {
      {{"host", a.ip()}, {"port", tcp_ok}, {"protocol", "tcp"}},
      {{"host", a.ip()}, {"port", udp_ok}, {"protocol", "udp"}}};
  auto r = fleet.run(spec.dump(), {}, 120);
  INFO(r.out << r.err);
  REQUIRE(r.status == 0);
  std::vector<std::string> lines;
  for (size_t s = 0, e; (e = r.out.find('\n', s)) != std::string::npos; s = e + 1)
    lines.push_back(r.out.substr(s, e - s));
  REQUIRE(lines.size() == 6);
  CHECK_THAT(lines[0], Catch::EndsWith("ok hello"));
  CHECK_THAT(lines[1], !Catch::Contains("ok"));  // same host, other port: dropped
  CHECK_THAT(lines[2], !Catch::Contains("ok"));  // other test host, same port: dropped
  CHECK_THAT(lines[3], Catch::EndsWith("ok pong"));
  CHECK_THAT(lines[4], !Catch::Contains("ok"));
  CHECK_THAT(lines[5], Catch::StartsWith("[    0.000000] Starting gVisor..."));

  auto e = r.event("observability.v1.network_enforcement");
  REQUIRE(e.is_object());
  CHECK(e["nftRulesApplied"] == true);
  CHECK(e["nftRuleCount"] == 4 + 2);
  auto counter = [&](const std::string& name) {
    for (const auto& c : e["ruleCounters"])
      if (c["rule"] == name) return c;
    return nlohmann::json(nullptr);
  };
  CHECK(counter("egress[0]")["packets"] == 1);  // the one SYN of the allowed connection
  CHECK(counter("egress[1]")["packets"] == 1);  // the one datagram
  // The refused SYNs (with retransmissions) and the datagram, logged then dropped.
  CHECK(counter("drop")["packets"].get<uint64_t>() >= 3);
  // Denies reach the flow events as a native cell's do: the Sentry's sockets are host sockets
  // in the cell's namespace, where its ruleset logs them.
  // Allowed flows are counted by the cgroup probes (the Sentry's socket is in the cell's
  // cgroup), from the cell's own address.
  bool denied = false, allowed = false;
  for (const auto& ev : r.events) {
    if (!ev.value("type", "").ends_with("network_flow_decision")) continue;
    const auto& d = ev["data"];
    if (d["decision"] == "deny" && d["dstAddr"] == a.ip() && d["dstPort"] == tcp_other)
      denied = true;
    if (d["decision"] == "allow" && d["dstAddr"] == a.ip() && d["dstPort"] == tcp_ok &&
        d["protocol"] == "tcp" && d["srcAddr"] == e["cellAddress"] && d["txPackets"] > 0)
      allowed = true;
  }
  CHECK(denied);
  CHECK(allowed);
  check_nothing_left(fleet);
}

TEST_CASE("gvisor: a graceful stop delivers SIGTERM to the command inside the sandbox first",
          "[gvisor][ttl]") {
  REQUIRE_GVISOR();
  Fleet fleet(kGvisor);
  auto spec = make_spec(unique_id("gv-graceful"),
                        {"/bin/sh", "-c", "trap 'echo got-term; exit 3' TERM; sleep 60 & wait"});
  spec["spec"]["run"]["timeoutMs"] = 1500;
  spec["spec"]["run"]["limits"] = {{"gracefulShutdownSeconds", 20}};
  auto r = fleet.run(spec.dump());
  CHECK(r.status == 124);
  CHECK(r.out == "got-term\n");
  auto done = r.event("command.v1.completed");
  CHECK(done["reason"] == "timeout");
  CHECK(done["exitCode"] == 3);
  CHECK(done["gracefulStop"]["exitedInTime"] == true);
  CHECK(r.event("lifecycle.v1.destroyed")["terminalState"] == "Clean");
  check_nothing_left(fleet);
}

TEST_CASE("gvisor: a platform other than ptrace that cannot start a sandbox stops the start, "
          "saying so",
          "[gvisor][platform]") {
  REQUIRE_GVISOR();
  Fleet fleet(kGvisor + "gvisor_platform = \"kvm\"\n");
  auto r = fleet.run(make_spec(unique_id("gv-kvm"), {"/bin/true"}).dump(), {}, 90);
  if (r.status == 0) {
    std::printf("note: KVM started a sandbox on this machine; the failure path was not exercised\n");
    return;
  }
  CHECK(r.status == 125);
  CHECK_THAT(r.err, Catch::Contains("cells.gvisor_platform: \"kvm\": runsc "));
  CHECK_THAT(r.err, Catch::Contains("use \"ptrace\""));
  CHECK(r.event("lifecycle.v1.started").is_null());  // nothing ran
  CHECK(processes_with("--root=" + fleet.state_dir() + "/gvisor").empty());
  CHECK_FALSE(path_exists(fleet.state_dir() + "/gvisor/.platform-probe"));
}

TEST_CASE("gvisor: every process of the sandbox sits in the cell's leaf, under its memory, pids "
          "and cpu limits",
          "[gvisor][limits]") {
  REQUIRE_GVISOR();
  Fleet fleet(kGvisor);
  const std::string id = unique_id("gv-leaf");
  auto spec = make_spec(id, {"/bin/sleep", "4"});
  spec["spec"]["run"]["limits"] = {{"memoryMaxBytes", 300 << 20},
                                   {"pidsMax", 20},
                                   {"cpuMax", {{"quotaMicros", 25000}, {"periodMicros", 50000}}}};
  const pid_t run = fleet.start_run(spec.dump());
  const std::string rel = "/cellos/" + fleet.host_id() + "/" + id;
  const std::string unified = "/sys/fs/cgroup/unified" + rel;
  // A hybrid host (this project's CI machines) keeps the limits in the v1 hierarchies.
  const bool hybrid = path_exists("/sys/fs/cgroup/memory/memory.limit_in_bytes");
  // Once the sandbox is up (the helper, runsc, its gofer and its sandbox at least), the
  // leaf holds the same processes in every hierarchy: each joined before anything ran.
  std::string procs;
  INFO("leaf " << unified);
  REQUIRE(eventually([&] {
    procs = read_text(unified + "/cgroup.procs");
    if (std::count(procs.begin(), procs.end(), '\n') < 4) return false;
    return !hybrid || (read_text("/sys/fs/cgroup/memory" + rel + "/cgroup.procs") == procs &&
                       read_text("/sys/fs/cgroup/pids" + rel + "/cgroup.procs") == procs &&
                       read_text("/sys/fs/cgroup/cpu" + rel + "/cgroup.procs") == procs);
  }));
  // runsc, its gofer and its sandbox: each is a process of the leaf. Four processes in the
  // leaf can come before the third of them has its command line (the sandbox re-execs), so
  // the leaf is read again with them.
  std::vector<int> runsc;
  CHECK(eventually([&] {
    runsc = processes_with("--root=" + fleet.state_dir() + "/gvisor/" + id);
    procs = read_text(unified + "/cgroup.procs");
    return runsc.size() >= 3;
  }));
  for (int pid : runsc) CHECK(procs.find(std::to_string(pid) + "\n") != std::string::npos);
  // The limits hold where this host keeps each controller (v1 on a hybrid host, else v2), and
  // the same processes are there.
  if (hybrid) {
    CHECK(read_text("/sys/fs/cgroup/memory" + rel + "/memory.limit_in_bytes") ==
          std::to_string(300 << 20) + "\n");
    // pidsMax + the cell's init slot + the sandbox's own threads (gvisor_backend.cc).
    CHECK(read_text("/sys/fs/cgroup/pids" + rel + "/pids.max") == "277\n");
    CHECK(read_text("/sys/fs/cgroup/cpu" + rel + "/cpu.cfs_quota_us") == "25000\n");
  } else {
    CHECK(read_text(unified + "/memory.max") == std::to_string(300 << 20) + "\n");
    CHECK(read_text(unified + "/pids.max") == "277\n");
    CHECK(read_text(unified + "/cpu.max") == "25000 50000\n");
  }
  int st = 0;
  REQUIRE(::waitpid(run, &st, 0) == run);
  CHECK(WIFEXITED(st));
  CHECK(WEXITSTATUS(st) == 0);
  check_nothing_left(fleet);
}
