// The daemon's warm pool (cells/warm_pool.h): prepared cells bound to specs at admission. A
// pooled cell runs with exactly its spec's authority (as a cold cell does), shares nothing with
// the spec the pool served before it, the pool refills, specs it cannot serve go cold, a pooled
// cell's TTL works, and a stopped daemon leaves no prepared process or leaf behind.
#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <linux/magic.h>
#include <set>
#include <thread>

#include "tests/support/daemon_support.h"
#include "tests/support/test_hosts.h"
#include "tests/support/test_support.h"

using namespace cellos::test;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

const char* kPoolOn = "[pool]\nenabled = true\nsize = 2\nmax_size = 4\n";
const char* kPoolOff = "[pool]\nenabled = false\n";

// The admission field of the cell's started event ("" when there is none yet).
std::string admission_of(const Fleet& fleet, const std::string& id) {
  for (const auto& e : events_of(fleet, "lifecycle.v1.started"))
    if (e.value("subject", "") == id) return e["data"].value("admission", "");
  return "";
}

bool destroyed(const Fleet& fleet, const std::string& id) {
  for (const auto& e : events_of(fleet, "lifecycle.v1.destroyed"))
    if (e.value("subject", "") == id) return true;
  return false;
}

json completed_of(const Fleet& fleet, const std::string& id) {
  for (const auto& e : events_of(fleet, "command.v1.completed"))
    if (e.value("subject", "") == id) return e["data"];
  return nullptr;
}

// Runs `spec` through the fleet's daemon; its stdout.
std::string run_cell(const Fleet& fleet, const json& spec) {
  const std::string id = spec["spec"]["id"];
  spool(fleet, spec);
  REQUIRE(eventually([&] { return destroyed(fleet, id); }));
  return read_text(fleet.state_dir() + "/logs/" + id + "/stdout");
}

json status_of(const Fleet& fleet) {
  auto r = run_process({CELLOS_REACTOR_BIN, "status", "--config", fleet.config_path(), "--json"});
  INFO(r.err);
  REQUIRE(r.status == 0);
  return json::parse(r.out);
}

// Prepared leaves (".pool-*") under the fleet's parent in any hierarchy.
std::vector<std::string> prepared_leaves(const Fleet& fleet) {
  std::vector<std::string> out;
  for (const char* h : {"unified", "memory", "pids", "cpu", ""}) {
    const std::string dir = std::string("/sys/fs/cgroup/") + h + (*h ? "/" : "") + "cellos/" +
                            fleet.host_id();
    if (DIR* d = ::opendir(dir.c_str())) {
      while (dirent* e = ::readdir(d))
        if (std::string(e->d_name).starts_with(".pool-")) out.push_back(dir + "/" + e->d_name);
      ::closedir(d);
    }
  }
  return out;
}

// Host processes named cellos-prepared whose parent is `daemon`.
std::vector<int> prepared_processes(pid_t daemon) {
  std::vector<int> out;
  if (DIR* d = ::opendir("/proc")) {
    while (dirent* e = ::readdir(d)) {
      const int pid = std::atoi(e->d_name);
      if (pid <= 0) continue;
      std::string stat;
      try {
        stat = read_text("/proc/" + std::to_string(pid) + "/stat");
      } catch (...) {
        continue;
      }
      auto close = stat.rfind(')');
      if (close == std::string::npos || stat.find("(cellos-prepared)") == std::string::npos) continue;
      int ppid = std::atoi(stat.c_str() + close + 4);  // ") S ppid"
      if (ppid == daemon) out.push_back(pid);
    }
    ::closedir(d);
  }
  return out;
}

// The pool holds n ready cells (a daemon still binding its socket just is not ready yet).
bool pool_ready(const Fleet& fleet, int n) {
  return eventually([&] {
    auto r = run_process({CELLOS_REACTOR_BIN, "status", "--config", fleet.config_path(), "--json"});
    return r.status == 0 && json::parse(r.out)["pool"].value("ready", 0) >= n;
  }, 30s);
}

// A script printing what the cell's authority gave it, the same lines for any cell id.
json authority_spec(const std::string& id) {
  const std::string script =
      "[ \"$(id -u)\" != 0 ] && [ \"$(id -u)\" = \"$(stat -c %u .)\" ] && echo uid-ok; "
      "echo env=$POOL_TEST_VALUE; "
      "[ \"$(hostname)\" = \"$CELL\" ] && echo hostname-ok; "
      "echo mem=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || "
      "cat /sys/fs/cgroup/memory.max); "
      "echo pids=$(cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max); "
      "echo cwd=$(pwd); "
      // What a prepared cell makes before its spec (its /dev, its loopback) and the umask its
      // command starts with: the same as a cold cell's.
      "echo dev=$(ls -A /dev | tr '\\n' ' '); echo umask=$(umask); "
      "echo lo=$(cat /sys/class/net/lo/operstate); echo mounts=$(wc -l < /proc/self/mountinfo); "
      // Nothing the prepared process held (its parked leaf clones) reaches the command: the
      // descriptors a program of the cell starts with (ls's own, not the shell's, whose
      // command substitutions hold pipes for a moment).
      "echo fds=$(ls /proc/self/fd | tr '\\n' ' ')";
  json spec = make_spec(id, {"/bin/sh", "-c", script});
  spec["spec"]["run"]["env"] = {{"POOL_TEST_VALUE", "blue"}, {"CELL", id}};
  spec["spec"]["run"]["limits"] = {{"memoryMaxBytes", 48 << 20}, {"pidsMax", 37}};
  spec["spec"]["run"]["workingDirectory"] = "/work/pooltest";
  return spec;
}

}  // namespace

TEST_CASE("a pooled cell runs with exactly its spec's authority, as a cold cell does",
          "[daemon][pool]") {
  std::string pooled, cold;
  {
    Fleet fleet(kPoolOn);
    DaemonProcess daemon(fleet);
    REQUIRE(pool_ready(fleet, 2));
    const std::string id = unique_id("pool-auth");
    pooled = run_cell(fleet, authority_spec(id));
    CHECK(admission_of(fleet, id) == "pool");
    daemon.signal(SIGTERM);
    CHECK(daemon.wait() == 0);
  }
  {
    Fleet fleet(kPoolOff);
    DaemonProcess daemon(fleet);
    const std::string id = unique_id("cold-auth");
    cold = run_cell(fleet, authority_spec(id));
    CHECK(admission_of(fleet, id) == "cold");
    CHECK(status_of(fleet)["pool"]["enabled"] == false);
    daemon.signal(SIGTERM);
    CHECK(daemon.wait() == 0);
  }
  INFO("pooled:\n" << pooled << "cold:\n" << cold);
  CHECK(pooled.find("uid-ok\n") != std::string::npos);
  CHECK(pooled.find("env=blue\n") != std::string::npos);
  CHECK(pooled.find("hostname-ok\n") != std::string::npos);
  CHECK(pooled.find("mem=50331648\n") != std::string::npos);
  CHECK(pooled.find("pids=38\n") != std::string::npos);  // the spec's, plus the cell's init
  CHECK(pooled.find("cwd=/work/pooltest\n") != std::string::npos);
  CHECK(pooled == cold);
}

TEST_CASE("a pooled cell with egress rules reaches exactly its declared host:port, as a cold "
          "cell does",
          "[daemon][pool][net]") {
  std::string why;
  if (!can_build_test_hosts(&why)) CELLOS_SKIP(why);
  TestHost host(32);
  const int open_port = host.tcp(), closed_port = host.tcp();
  host.start();
  // A /24 of its own, apart from the other tests' (10.213.x, 10.214.x).
  const std::string subnet = "10.215." + std::to_string(::getpid() % 250) + ".0/24";
  auto egress_spec = [&](const Fleet& fleet, const std::string& id) {
    json spec = make_spec(id, {"/bin/sh", "-c",
                               fleet.probe() + " tcp-connect " + host.ip() + " " +
                                   std::to_string(open_port) + "; " + fleet.probe() +
                                   " tcp-connect " + host.ip() + " " +
                                   std::to_string(closed_port)});
    spec["spec"]["authority"]["egressRules"] = {
        {{"host", host.ip()}, {"port", open_port}, {"protocol", "tcp"}}};
    return spec;
  };
  std::string out[2];
  json enforcement[2];
  const char* pool_toml[2] = {kPoolOn, kPoolOff};
  for (int i = 0; i < 2; ++i) {
    Fleet fleet(std::string("[network]\nuplink = \"nat\"\nsubnet = \"") + subnet + "\"\n" +
                pool_toml[i]);
    DaemonProcess daemon(fleet);
    if (i == 0) REQUIRE(pool_ready(fleet, 1));
    const std::string id = unique_id(i == 0 ? "pool-net" : "cold-net");
    out[i] = run_cell(fleet, egress_spec(fleet, id));
    CHECK(admission_of(fleet, id) == (i == 0 ? "pool" : "cold"));
    auto e = events_of(fleet, "network_enforcement");
    REQUIRE(e.size() == 1);
    enforcement[i] = e[0]["data"];
    daemon.signal(SIGTERM);
    CHECK(daemon.wait() == 0);
  }
  INFO("pooled:\n" << out[0] << "cold:\n" << out[1]);
  for (int i = 0; i < 2; ++i) {
    CHECK(out[i].find("ok hello") != std::string::npos);
    CHECK(out[i].find("timeout") != std::string::npos);
    CHECK(enforcement[i]["nftRulesApplied"] == true);
  }
  CHECK(enforcement[0]["nftRuleCount"] == enforcement[1]["nftRuleCount"]);
}

TEST_CASE("two specs through the same pool share nothing, and the pool refills", "[daemon][pool]") {
  // One prepared cell at a time: the second spec gets the cell prepared after the first.
  Fleet fleet("[pool]\nenabled = true\nsize = 1\nmax_size = 1\n");
  DaemonProcess daemon(fleet);
  REQUIRE(pool_ready(fleet, 1));
  const std::string a = unique_id("pool-a"), b = unique_id("pool-b");
  json first = make_spec(a, {"/bin/sh", "-c",
                             "echo from-a > /tmp/left-by-a; echo from-a > ./left-by-a; " +
                                 fleet.probe() + " daemonize pool-a-sleeper; echo wrote"});
  first["spec"]["run"]["env"] = {{"ONLY_IN_A", "a-value"}};
  first["spec"]["run"]["workingDirectory"] = "/work/shared-path";
  // A leaves a process behind on purpose: its cell's end kills it (cgroup.kill).
  const std::string out_a = run_cell(fleet, first);
  CHECK(out_a == "daemonized\nwrote\n");
  REQUIRE(pool_ready(fleet, 1));
  json second = make_spec(b, {"/bin/sh", "-c",
                              "ls /tmp/left-by-a ./left-by-a 2>/dev/null; echo tmp-files=$?; "
                              "echo env-a=${ONLY_IN_A:-none}; hostname; "
                              "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done "
                              "2>/dev/null | grep -c '^pool-a-sleeper '; "
                              "echo pid1=$(head -c 11 /proc/1/cmdline)"});
  second["spec"]["run"]["workingDirectory"] = "/work/shared-path";
  const std::string out_b = run_cell(fleet, second);
  INFO(out_b);
  CHECK(admission_of(fleet, a) == "pool");
  CHECK(admission_of(fleet, b) == "pool");
  CHECK(out_b.find("left-by-a") == std::string::npos);
  CHECK(out_b.find("tmp-files=2\n") != std::string::npos);
  CHECK(out_b.find("env-a=none\n") != std::string::npos);
  CHECK(out_b.find(b + "\n") != std::string::npos);
  CHECK(out_b.find(a) == std::string::npos);
  // Nothing of A's in its pid namespace (A's sleeper was alive when A's command ended), whose
  // pid 1 is B's own init.
  CHECK(out_b.find("\n0\n") != std::string::npos);
  CHECK(out_b.find("pid1=cellos-init\n") != std::string::npos);
  // Each prepared cell served one spec: two used, a third made for the next.
  REQUIRE(pool_ready(fleet, 1));
  const json pool = status_of(fleet)["pool"];
  CHECK(pool["hits"] == 2);
  CHECK(pool["prepared"].get<int>() >= 3);
  daemon.signal(SIGTERM);
  CHECK(daemon.wait() == 0);
}

TEST_CASE("a spec the pool cannot serve takes the cold path", "[daemon][pool]") {
  Fleet fleet(kPoolOn);
  DaemonProcess daemon(fleet);
  REQUIRE(pool_ready(fleet, 2));
  // A cpuMax on a host whose cpu controller is v1: prepared leaves have no v1 cpu leaf.
  struct stat st{};
  const bool cpu_v1 = ::stat("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", &st) == 0;
  const std::string id = unique_id("pool-cpu");
  json spec = make_spec(id, {"/bin/true"});
  spec["spec"]["run"]["limits"] = {{"cpuMax", {{"quotaMicros", 50000}, {"periodMicros", 100000}}}};
  (void)run_cell(fleet, spec);
  CHECK(admission_of(fleet, id) == (cpu_v1 ? "cold" : "pool"));
  CHECK(completed_of(fleet, id)["exitCode"] == 0);
  const std::string plain = unique_id("pool-plain");
  (void)run_cell(fleet, make_spec(plain, {"/bin/true"}));
  CHECK(admission_of(fleet, plain) == "pool");
  if (cpu_v1) CHECK(status_of(fleet)["pool"]["cold"] == 1);
  daemon.signal(SIGTERM);
  CHECK(daemon.wait() == 0);
}

TEST_CASE("a spec with inputs takes the cold path and sees its input", "[daemon][pool][inputs]") {
  // A prepared cell's root view is built before its spec, without the host's root to open
  // inputs from (prepared_cell.h): such a spec must be set up cold, and work.
  TempDir granted;
  const std::string checkout = granted.path() + "/pool-inp";
  ::mkdir(checkout.c_str(), 0755);
  write_text(checkout + "/README", "from the host\n");
  ::chmod((checkout + "/README").c_str(), 0644);
  Fleet fleet(std::string(kPoolOn) + "[policy.input_grants]\n\"" + granted.path() +
              "\" = [\"pool-*\"]\n");
  DaemonProcess daemon(fleet);
  REQUIRE(pool_ready(fleet, 2));
  const std::string id = unique_id("pool-inp");
  json spec = make_spec(id, {"/bin/cat", "/work/src/README"});
  spec["spec"]["inputs"] = {{{"hostPath", checkout}, {"path", "/work/src"}}};
  CHECK(run_cell(fleet, spec) == "from the host\n");
  CHECK(admission_of(fleet, id) == "cold");
  CHECK(status_of(fleet)["pool"]["cold"] == 1);
  daemon.signal(SIGTERM);
  CHECK(daemon.wait() == 0);
}

TEST_CASE("a prepared cell's root is its own view, holding nothing of a spec, before any bind",
          "[daemon][pool]") {
  // The view's root is built at the preparation (prepare_cell_view): a fresh tmpfs holding the
  // policy's host paths, read-only, and the view's own empty places; nothing of a spec.
  Fleet fleet(kPoolOn);
  DaemonProcess daemon(fleet);
  REQUIRE(pool_ready(fleet, 2));
  const auto prepared = prepared_processes(daemon.pid());
  REQUIRE(!prepared.empty());
  for (int pid : prepared) {
    const std::string root = "/proc/" + std::to_string(pid) + "/root";
    struct statfs sf{};
    struct stat sf_dir{};
    REQUIRE(::statfs(root.c_str(), &sf) == 0);
    CHECK(sf.f_type == TMPFS_MAGIC);
    auto entries_of = [](const std::string& dir) {
      std::set<std::string> names;
      if (DIR* d = ::opendir(dir.c_str())) {
        while (dirent* e = ::readdir(d))
          if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") names.insert(e->d_name);
        ::closedir(d);
      }
      return names;
    };
    // The view's own places exist and are empty (the host's /tmp is not what it shows), but
    // /dev, which holds the view's own nodes and links and nothing of the host's.
    for (const char* own : {"/tmp", "/proc", "/sys"}) {
      INFO(root + own);
      REQUIRE(::stat((root + own).c_str(), &sf_dir) == 0);
      CHECK(entries_of(root + own).empty());
    }
    CHECK(entries_of(root + "/dev") == std::set<std::string>{"null", "zero", "full", "random",
                                                              "urandom", "fd", "stdin", "stdout",
                                                              "stderr"});
    // The policy's host paths are there (read-only binds of the host's).
    struct stat st{};
    CHECK(::stat((root + "/usr/bin").c_str(), &st) == 0);
  }
  // And a spec bound to one gets its own places on that root.
  const std::string id = unique_id("pool-view");
  CHECK(run_cell(fleet, make_spec(id, {"/bin/sh", "-c", "echo x > /tmp/f && cat /tmp/f && hostname"})) ==
        "x\n" + id + "\n");
  CHECK(admission_of(fleet, id) == "pool");
  daemon.signal(SIGTERM);
  CHECK(daemon.wait() == 0);
}

TEST_CASE("a pooled cell's TTL kills it, and a stopped daemon leaves nothing prepared",
          "[daemon][pool]") {
  Fleet fleet(kPoolOn);
  pid_t daemon_pid = -1;
  {
    DaemonProcess daemon(fleet);
    daemon_pid = daemon.pid();
    REQUIRE(pool_ready(fleet, 2));
    CHECK(prepared_processes(daemon_pid).size() >= 2);
    CHECK(!prepared_leaves(fleet).empty());
    const std::string id = unique_id("pool-ttl");
    json spec = make_spec(id, {"/bin/sleep", "300"});
    spec["spec"]["lifetime"] = {{"ttlSeconds", 1}};
    spool(fleet, spec);
    // `status` names it by id and gives its leaf: a prepared one's, under the fleet's parent.
    std::string seen;
    CHECK(eventually([&] {
      const json st = status_of(fleet);
      if (!st["cells"].empty()) seen = st["cells"].dump();
      for (const auto& c : st["cells"])
        if (c.value("id", "") == id)
          return c.value("cgroup", "").find("cellos/" + fleet.host_id() + "/.pool-") != std::string::npos;
      return false;
    }, 30s));
    INFO(seen);
    REQUIRE(eventually([&] { return destroyed(fleet, id); }, 30s));
    CHECK(admission_of(fleet, id) == "pool");
    CHECK(completed_of(fleet, id)["reason"] == "timeout");
    daemon.signal(SIGTERM);
    CHECK(daemon.wait() == 0);
  }
  CHECK(prepared_processes(daemon_pid).empty());
  CHECK(prepared_leaves(fleet).empty());
  CHECK(processes_with(fleet.config_path()).empty());
}

TEST_CASE("prepared leaves a killed daemon left are reclaimed by the next one, reported as no cell",
          "[daemon][pool]") {
  Fleet fleet(kPoolOn);
  {
    DaemonProcess daemon(fleet);
    REQUIRE(pool_ready(fleet, 2));
    daemon.signal(SIGKILL);
    daemon.wait();
  }
  // Its prepared processes die with it (parent-death signal); their leaves stay until the
  // next daemon's recovery.
  REQUIRE(eventually([&] { return processes_with(fleet.config_path()).empty(); }, 30s));
  {
    DaemonProcess daemon(fleet);
    REQUIRE(pool_ready(fleet, 2));
    daemon.signal(SIGTERM);
    CHECK(daemon.wait() == 0);
  }
  CHECK(prepared_leaves(fleet).empty());
  for (const auto& e : events_of(fleet, "lifecycle.v1.destroyed"))
    CHECK(e.value("subject", "").find(".pool-") == std::string::npos);
}
