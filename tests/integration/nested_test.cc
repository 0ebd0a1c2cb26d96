// The nested backend (cells/nested_backend.h, docs/nested.md): a cell of this host runs a
// cellos-reactor of its own against the fleet.toml generated for it, and that reactor's cells
// end as they should at both levels; depth 2 works where policy allows it, depth beyond policy
// is refused by the reactor and by the kernel; killing the parent leaves nothing behind.
#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "cells/config.h"
#include "reactor/event_log_config.h"
#include "reactor/host.h"
#include "reactor/supervisor.h"
#include "tests/support/test_hosts.h"
#include "tests/support/run_host.h"
#include "tests/support/test_support.h"

using namespace cellos;
using namespace cellos::test;
namespace fs = std::filesystem;

namespace {

// Host uids for this process's nested blocks: far above the default policy.uid_range and the
// rootless tests' ranges (2,000,000 + 64 Ki per process).
uint32_t blocks_first() { return 200000000u + static_cast<uint32_t>(::getpid() % 1000) * (1u << 21); }

// A fleet allowing the nested backend: `depth` levels, 1 MiB-uid blocks (room for a nested
// reactor's own cells and, at depth 2, its nested blocks), two blocks.
std::string nested_toml(uint32_t depth) {
  const uint32_t first = blocks_first();
  return "[policy]\nallowed_backends = [\"native\", \"nested\"]\n"
         "[policy.nested]\nmax_depth = " + std::to_string(depth) +
         "\nmax_cells = 2\nuid_block_size = 1048576\nuid_range = \"" + std::to_string(first) + "-" +
         std::to_string(first + 2 * 1048576 - 1) + "\"\n";
}

// A spec whose command is a shell script (run by /bin/sh -c).
std::string script_spec(const std::string& id, const std::string& script, const std::string& backend,
                        const nlohmann::json& extra_run = nlohmann::json::object(),
                        uint64_t ttl = 120) {
  nlohmann::json s = make_spec(id, {"/bin/sh", "-c", script});
  if (!backend.empty()) s["spec"]["run"]["backend"] = backend;
  for (auto& [k, v] : extra_run.items()) s["spec"]["run"][k] = v;
  s["spec"]["lifetime"]["ttlSeconds"] = ttl;
  return s.dump();
}

// Shell lines writing `json` to `path` (a quoted heredoc: nothing in it is expanded).
std::string write_file_lines(const std::string& path, const std::string& json) {
  return "cat > " + path + " <<'CELLOS_EOF'\n" + json + "\nCELLOS_EOF\n";
}

// Shell lines running the nested reactor on `spec_path` and saying its status.
std::string run_inner(const std::string& spec_path, const std::string& name) {
  return "/cellos/bin/cellos-reactor run " + spec_path + " --config /cellos/fleet.toml; echo \"status " +
         name + " $?\"\n";
}

std::vector<nlohmann::json> read_log(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

nlohmann::json data_of(const std::vector<nlohmann::json>& log, const std::string& cell,
                       const std::string& suffix) {
  for (const auto& e : log)
    if (e.value("subject", "") == cell && e.value("type", "").ends_with(suffix)) return e["data"];
  return nullptr;
}

// Where the host keeps its nested cells' sub-logs: below its own log's directory, since a seal
// records the sub-log's path relative to that log.
std::string nested_base(const Fleet& f) {
  return fs::path(f.events_path()).parent_path().string() + "/nested/";
}

// The parent's log verified, its seals followed into every sub-log.
void check_trail(const Fleet& f, int sublogs) {
  auto v = run_process({CELLOS_REACTOR_BIN, "verify", f.events_path()});
  INFO(v.out << v.err);
  CHECK(v.status == 0);
  CHECK(v.out.find("nested trail intact: " + std::to_string(sublogs) + " sub-log") != std::string::npos);
}

// Processes running as a uid of [first, first + count).
std::vector<int> processes_of_uids(uint32_t first, uint32_t count) {
  std::vector<int> out;
  DIR* d = ::opendir("/proc");
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    const int pid = std::atoi(e->d_name);
    if (pid <= 0) continue;
    struct stat st{};
    if (::stat(("/proc/" + std::string(e->d_name)).c_str(), &st) != 0) continue;
    if (st.st_uid >= first && st.st_uid - first < count) out.push_back(pid);
  }
  ::closedir(d);
  return out;
}

// The cell's leaf in every hierarchy the host has, none of which may be left.
std::string leftover_cgroups(const Fleet& f, const std::string& cell) {
  std::string left;
  for (const char* h : {"unified", "memory", "pids", "cpu,cpuacct", ""}) {
    const std::string dir = std::string("/sys/fs/cgroup/") + h + (*h ? "/" : "") + "cellos/" +
                            f.host_id() + "/" + cell;
    if (fs::exists(dir)) left += dir + " ";
  }
  return left;
}

// What the host keeps of a nested cell after its end: its reactor's event log and the public
// key that verifies it, nothing else.
void check_host_files_after(const Fleet& f, const std::string& cell) {
  const std::string base = nested_base(f);
  CHECK(fs::exists(base + cell + "/events.jsonl"));
  CHECK_FALSE(fs::exists(base + cell + "/nested.key"));
  CHECK_FALSE(fs::exists(base + cell + ".toml"));
  std::vector<std::string> left;
  for (const auto& e : fs::directory_iterator(base + cell)) left.push_back(e.path().filename());
  CHECK(left == std::vector<std::string>{"events.jsonl"});
  CHECK(fs::exists(base + cell + ".pub"));
}

bool have_python() { return fs::exists("/usr/bin/python3"); }

}  // namespace

TEST_CASE("nested: a nested reactor runs three cells (ok, OOM-killed inside, refused by the ceiling) and the parent goes on, its verified log kept and nothing else", "[nested]") {
  if (::geteuid() != 0) CELLOS_SKIP("needs root to map a user namespace and delegate cgroups");
  if (!have_python()) CELLOS_SKIP("needs /usr/bin/python3 to allocate memory in the inner cell");
  Fleet f(nested_toml(1));
  const std::string parent = unique_id("nest");
  const std::string ok = script_spec("in-ok", "echo inner-ok; id -u", "", nlohmann::json::object(), 30);
  const std::string oom = script_spec(
      "in-oom", "exec /usr/bin/python3 -c 'b = bytearray(96 << 20); print(len(b))'", "",
      {{"limits", {{"memoryMaxBytes", 33554432}}}}, 30);
  // More memory than the parent cell has: the nested reactor's ceiling refuses it.
  const std::string big = script_spec("in-big", "echo must-not-run", "",
                                      {{"limits", {{"memoryMaxBytes", 536870912}}}}, 30);
  const std::string script = "cd /tmp\n" + write_file_lines("ok.json", ok) +
                             write_file_lines("oom.json", oom) + write_file_lines("big.json", big) +
                             run_inner("ok.json", "in-ok") + run_inner("oom.json", "in-oom") +
                             run_inner("big.json", "in-big") +
                             // The kernel's bound: no depth left, so no user namespace at all.
                             "unshare -U /bin/true 2>/dev/null; echo \"userns $?\"\n"
                             // The nested seccomp filter: a reactor's tools, not the kernel's
                             // (bpf is syscall 321, init_module 175 on x86-64).
                             "/usr/bin/python3 -c 'import ctypes; l = ctypes.CDLL(None, use_errno=True); "
                             "print(\"bpf\", l.syscall(321, 0, 0, 0), ctypes.get_errno()); "
                             "print(\"init_module\", l.syscall(175, 0, 0, 0), ctypes.get_errno())'\n"
                             "echo parent-done\n";
  auto r = f.run(script_spec(parent, script, "nested",
                             {{"limits", {{"memoryMaxBytes", 268435456}}}}, 120),
                 {}, 120);
  INFO(r.out << r.err);
  REQUIRE(r.status == 0);
  CHECK(r.out.find("inner-ok") != std::string::npos);
  CHECK(r.out.find("status in-ok 0") != std::string::npos);
  CHECK(r.out.find("status in-oom 137") != std::string::npos);
  CHECK(r.out.find("status in-big 0") == std::string::npos);
  CHECK(r.out.find("must-not-run") == std::string::npos);
  CHECK(r.err.find("spec.run.limits.memoryMaxBytes: 536870912 exceeds cell " + parent +
                   "'s memory limit of 268435456 (policy.ceiling.memory_max_bytes)") != std::string::npos);
  CHECK(r.out.find("userns 0") == std::string::npos);
#if defined(__x86_64__)
  CHECK(r.out.find("bpf -1 1\n") != std::string::npos);  // EPERM
  CHECK(r.out.find("init_module -1 1\n") != std::string::npos);
#endif
  CHECK(r.out.find("parent-done") != std::string::npos);
  // The host level: the parent cell ran on the nested backend and ended well.
  CHECK(r.event("lifecycle.v1.started")["backend"] == "nested");
  const auto done = r.event("command.v1.completed");
  REQUIRE_FALSE(done.is_null());
  CHECK(done["exitCode"] == 0);

  // The nested level, from the log the host keeps, verified with the key the host made for it.
  const std::string log = nested_base(f) + parent + "/events.jsonl";
  auto v = run_process({CELLOS_REACTOR_BIN, "verify", log, "--public-key",
                        nested_base(f) + parent + ".pub"});
  INFO(v.out << v.err);
  CHECK(v.status == 0);
  CHECK(v.out.find("signatures verified") != std::string::npos);
  const auto inner = read_log(log);
  auto in_ok = data_of(inner, "in-ok", "command.v1.completed");
  REQUIRE_FALSE(in_ok.is_null());
  CHECK(in_ok["exitCode"] == 0);
  auto in_oom = data_of(inner, "in-oom", "command.v1.completed");
  REQUIRE_FALSE(in_oom.is_null());
  CHECK(in_oom["reason"] == "oom");
  auto refused = data_of(inner, "in-big", "rejected");
  REQUIRE_FALSE(refused.is_null());
  CHECK(data_of(inner, "in-big", "lifecycle.v1.started").is_null());

  CHECK(leftover_cgroups(f, parent).empty());
  check_host_files_after(f, parent);
  CHECK(processes_of_uids(blocks_first(), 2 * 1048576).empty());

  // One evidence trail: the sub-log sealed into the host's log at the cell's end, before its
  // destroyed event, and `verify` of the host's log proves both levels.
  const auto sealed = r.event("cell.nested.v1.sealed");
  REQUIRE_FALSE(sealed.is_null());
  CHECK(sealed["verified"] == true);
  CHECK(sealed["path"] == "nested/" + parent + "/events.jsonl");
  size_t events = 0;  // the sub-log's CloudEvents (its manifest lines are not events)
  for (const auto& e : inner) events += e.value("type", "").ends_with("batch_sealed") ? 0 : 1;
  CHECK(events > 0);
  CHECK(sealed["eventCount"].get<uint64_t>() == events);
  check_trail(f, 1);
}

TEST_CASE("nested: depth 2 works where policy allows it, and depth 3 is refused by the reactor and the kernel", "[nested]") {
  if (::geteuid() != 0) CELLOS_SKIP("needs root to map a user namespace and delegate cgroups");
  Fleet f(nested_toml(2));
  const std::string top = unique_id("d2");
  const std::string leaf = script_spec("d2-leaf", "echo depth-2-leaf-ran", "", nlohmann::json::object(), 20);
  const std::string deeper = script_spec("d3", "echo must-not-run", "nested", nlohmann::json::object(), 20);
  const std::string mid_script = "cd /tmp\n" + write_file_lines("leaf.json", leaf) +
                                 write_file_lines("d3.json", deeper) +
                                 run_inner("leaf.json", "d2-leaf") + run_inner("d3.json", "d3") +
                                 "unshare -U /bin/true 2>/dev/null; echo \"userns-at-2 $?\"\n";
  const std::string mid = script_spec("d2-mid", mid_script, "nested", nlohmann::json::object(), 60);
  const std::string script = "cd /tmp\n" + write_file_lines("mid.json", mid) + run_inner("mid.json", "d2-mid");
  auto r = f.run(script_spec(top, script, "nested", nlohmann::json::object(), 120), {}, 120);
  INFO(r.out << r.err);
  REQUIRE(r.status == 0);
  CHECK(r.out.find("depth-2-leaf-ran") != std::string::npos);
  CHECK(r.out.find("status d2-leaf 0") != std::string::npos);
  CHECK(r.out.find("status d2-mid 0") != std::string::npos);
  CHECK(r.out.find("must-not-run") == std::string::npos);
  CHECK(r.err.find("spec.run.backend: \"nested\" is not in policy.allowed_backends (native)") != std::string::npos);
  CHECK(r.out.find("status d3 0") == std::string::npos);
  // At the last level allowed the kernel itself refuses a user namespace.
  CHECK(r.out.find("userns-at-2 0") == std::string::npos);
  CHECK(r.out.find("userns-at-2 ") != std::string::npos);
  CHECK(leftover_cgroups(f, top).empty());
  check_host_files_after(f, top);
  CHECK(processes_of_uids(blocks_first(), 2 * 1048576).empty());
}

TEST_CASE("nested: a spec asking for nested where policy forbids it runs nothing, naming the field", "[nested]") {
  if (::geteuid() != 0) CELLOS_SKIP("needs root to run cells");
  Fleet f;  // native only
  const std::string id = unique_id("nonest");
  auto r = f.run(script_spec(id, "echo must-not-run", "nested"));
  INFO(r.out << r.err);
  CHECK(r.status != 0);
  CHECK(r.err.find("spec.run.backend: \"nested\" is not in policy.allowed_backends (native)") != std::string::npos);
  CHECK(r.out.find("must-not-run") == std::string::npos);
  CHECK(r.event("lifecycle.v1.started").is_null());
}

TEST_CASE("nested: killing the parent mid-run ends every nested cell at every depth and leaves nothing", "[nested]") {
  if (::geteuid() != 0) CELLOS_SKIP("needs root to map a user namespace and delegate cgroups");
  Fleet f(nested_toml(2));
  const std::string top = unique_id("kill");
  // Depth 2: a nested reactor whose nested cell runs a nested reactor whose cell sleeps.
  const std::string sleeper = script_spec("k-sleep", "echo asleep; exec sleep 300", "", nlohmann::json::object(), 40);
  const std::string mid = script_spec("k-mid", "cd /tmp\n" + write_file_lines("s.json", sleeper) +
                                                   run_inner("s.json", "k-sleep"),
                                      "nested", nlohmann::json::object(), 50);
  const std::string script = "cd /tmp\n" + write_file_lines("mid.json", mid) + run_inner("mid.json", "k-mid");
  const pid_t run = f.start_run(script_spec(top, script, "nested", nlohmann::json::object(), 120));
  // Running when the depth-2 reactor's log shows its cell started (bounded, no fixed sleep).
  const std::string mid_log = nested_base(f) + top + "/nested/k-mid/events.jsonl";
  bool started = false;
  for (int i = 0; i < 600 && !started; ++i) {
    for (const auto& e : read_log(mid_log))
      started |= e.value("subject", "") == "k-sleep" && e.value("type", "").ends_with("lifecycle.v1.started");
    if (!started) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  // The sleeper runs as a uid of the top block (its uids map into it at every depth).
  const auto before = processes_of_uids(blocks_first(), 2 * 1048576);
  ::kill(run, SIGTERM);
  int st = 0;
  ::waitpid(run, &st, 0);
  REQUIRE(started);
  CHECK(before.size() >= 3);  // the nested reactors, their inits, the sleeper
  // The host reactor waits for its cell's processes before it exits: nothing of any depth runs.
  CHECK(processes_of_uids(blocks_first(), 2 * 1048576).empty());
  CHECK(leftover_cgroups(f, top).empty());
  check_host_files_after(f, top);
  const auto log = f.events();
  bool destroyed = false;
  for (const auto& e : log)
    destroyed |= e.value("subject", "") == top && e.value("type", "").ends_with("lifecycle.v1.destroyed");
  CHECK(destroyed);
}

TEST_CASE("nested: one nested cell more than policy.nested.max_cells fails its setup naming the key while the others run", "[nested]") {
  if (::geteuid() != 0) CELLOS_SKIP("needs root to map a user namespace and delegate cgroups");
  const uint32_t first = blocks_first();
  Fleet fleet("[policy]\nallowed_backends = [\"native\", \"nested\"]\n[policy.nested]\nmax_depth = 1\n"
              "max_cells = 1\nuid_block_size = 65536\nuid_range = \"" + std::to_string(first) + "-" +
              std::to_string(first + 2 * 65536 - 1) + "\"\n");
  cells::Config config = cells::load_config(fleet.config_path());
  auto host = reactor::Host::create(run_host_options(fleet, config));
  REQUIRE(host.ok());
  std::map<std::string, std::pair<int, std::string>> outcome;
  auto sup = std::make_unique<reactor::Supervisor>(
      **host, reactor::SupervisorOptions{[&](const cells::Cell& c) {
        outcome[c.id()] = {c.outcome().exit_status(), c.outcome().error};
      }});
  const std::string a = unique_id("mc-a"), b = unique_id("mc-b");
  // Both are added at once: the first is still sleeping when the second starts.
  for (const auto& [id, argv] : {std::pair{a, std::vector<std::string>{"/bin/sleep", "3"}},
                                 std::pair{b, std::vector<std::string>{"/bin/true"}}}) {
    cells::CellOptions co;
    co.spec.id = id;
    co.spec.run.argv = argv;
    co.spec.run.backend = "nested";
    co.spec.ttl_seconds = 60;
    co.env = {"PATH=/usr/bin:/bin"};
    co.run_id = id;
    sup->add(std::move(co));
  }
  REQUIRE(sup->run_until_idle().ok());
  sup.reset();
  INFO(outcome[a].second << " / " << outcome[b].second);
  CHECK(outcome[a].first == 0);
  CHECK(outcome[b].first != 0);
  CHECK(outcome[b].second.find("policy.nested.max_cells: 1 nested cells already live on this reactor") !=
        std::string::npos);
  (*host)->cgroups().remove_empty_parents();
}

TEST_CASE("nested: the daemon runs inside a nested cell, rootless, and runs the cells submitted to it", "[nested]") {
  if (::geteuid() != 0) CELLOS_SKIP("needs root to map a user namespace and delegate cgroups");
  Fleet f(nested_toml(1));
  const std::string top = unique_id("dm");
  const std::string inner = script_spec("dm-ok", "echo daemon-cell-ran", "", nlohmann::json::object(), 20);
  const std::string script =
      "cd /tmp\n" + write_file_lines("ok.json", inner) +
      "/cellos/bin/cellos-reactor --config /cellos/fleet.toml > /tmp/daemon.log 2>&1 &\n"
      "D=$!\n"
      // Bounded: the daemon answers status once it serves.
      "i=0; until /cellos/bin/cellos-reactor status --config /cellos/fleet.toml >/dev/null 2>&1; do\n"
      "  i=$((i+1)); [ $i -gt 300 ] && { echo no-daemon; cat /tmp/daemon.log; exit 9; }; sleep 0.1; done\n"
      "/cellos/bin/cellos-reactor submit --wait ok.json --config /cellos/fleet.toml; echo \"status dm-ok $?\"\n"
      "kill -TERM $D; wait $D; echo \"daemon $?\"\n";
  auto r = f.run(script_spec(top, script, "nested", nlohmann::json::object(), 120), {}, 120);
  INFO(r.out << r.err);
  REQUIRE(r.status == 0);
  CHECK(r.out.find("daemon-cell-ran") != std::string::npos);
  CHECK(r.out.find("status dm-ok 0") != std::string::npos);
  CHECK(r.out.find("daemon 0") != std::string::npos);
  const auto inner_log = read_log(nested_base(f) + top + "/events.jsonl");
  auto done = data_of(inner_log, "dm-ok", "command.v1.completed");
  REQUIRE_FALSE(done.is_null());
  CHECK(done["exitCode"] == 0);
  CHECK(leftover_cgroups(f, top).empty());
  check_host_files_after(f, top);
}

TEST_CASE("nested: a nested cell hands its own secrets on to its reactor's cells and no other", "[nested]") {
  if (::geteuid() != 0) CELLOS_SKIP("needs root to map a user namespace and delegate cgroups");
  TempDir secrets;
  write_text(secrets.path() + "/NEST_SECRET", "s3cret-value\n");
  write_text(secrets.path() + "/OTHER_SECRET", "not-for-nested\n");
  Fleet f(nested_toml(1) + "[secrets]\ndir = \"" + secrets.path() +
          "\"\n[secrets.grants]\nNEST_SECRET = [\"*\"]\nOTHER_SECRET = [\"*\"]\n");
  const std::string top = unique_id("sec");
  auto with_secret = [](const std::string& id, const std::string& name) {
    nlohmann::json s = nlohmann::json::parse(
        script_spec(id, "echo \"inner sees ${" + name + ":-nothing}\"", "", nlohmann::json::object(), 20));
    s["spec"]["authority"]["secretRefs"] = {name};
    return s.dump();
  };
  const std::string script = "cd /tmp\n" + write_file_lines("ok.json", with_secret("sec-ok", "NEST_SECRET")) +
                             write_file_lines("other.json", with_secret("sec-other", "OTHER_SECRET")) +
                             run_inner("ok.json", "sec-ok") + run_inner("other.json", "sec-other");
  nlohmann::json parent = nlohmann::json::parse(script_spec(top, script, "nested", nlohmann::json::object(), 120));
  parent["spec"]["authority"]["secretRefs"] = {"NEST_SECRET"};
  auto r = f.run(parent.dump(), {}, 120);
  INFO(r.out << r.err);
  REQUIRE(r.status == 0);
  CHECK(r.out.find("inner sees s3cret-value") != std::string::npos);
  CHECK(r.out.find("status sec-ok 0") != std::string::npos);
  CHECK(r.out.find("not-for-nested") == std::string::npos);
  CHECK(r.out.find("status sec-other 0") == std::string::npos);
  CHECK(r.err.find("spec.authority.secretRefs[0]: secret OTHER_SECRET is not granted to cell sec-other") != std::string::npos);
  // The values lived in the nested state dir only while the cell ran.
  check_host_files_after(f, top);
}

TEST_CASE("nested: a nested cell reaches exactly its parent's egress: its reactor's cells get out through the link or are denied by their own rules, a wider spec is refused, and its root's own traffic beyond the rules never leaves, even after flushing nft", "[nested][net]") {
  if (::geteuid() != 0) CELLOS_SKIP("needs root to map a user namespace and delegate cgroups");
  if (!have_python()) CELLOS_SKIP("needs /usr/bin/python3 for the connects");
  std::string why;
  if (!can_build_test_hosts(&why)) CELLOS_SKIP(why);
  TestHost a(30);
  const int port_ok = a.tcp(), port_other = a.tcp();
  a.start();
  const std::string subnet = "10.214." + std::to_string(::getpid() % 250) + ".0/24";
  Fleet f(nested_toml(1) + "[network]\nuplink = \"nat\"\nsubnet = \"" + subnet + "\"\n");
  const std::string parent = unique_id("nnet");
  const std::string ok_s = std::to_string(port_ok), other_s = std::to_string(port_other);
  // A connect that prints what the greeter says, or why not (exit 1).
  const std::string connect =
      "/usr/bin/python3 -c 'import socket, sys\ntry:\n  s = socket.create_connection((sys.argv[1], "
      "int(sys.argv[2])), 3); print(sys.argv[3], s.recv(5).decode())\nexcept OSError as e:\n  "
      "print(sys.argv[3], \"refused\", type(e).__name__); sys.exit(1)' ";
  // An inner cell declaring `port` and connecting to `to` (its own ruleset denies the rest).
  auto inner = [&](const std::string& id, int port, const std::string& tag, int to = 0) {
    nlohmann::json s = make_spec(id, {"/bin/sh", "-c", connect + a.ip() + " " + std::to_string(to ? to : port) + " " + tag});
    s["spec"]["authority"]["egressRules"] = nlohmann::json::array(
        {{{"host", a.ip()}, {"port", port}, {"protocol", "tcp"}}});
    s["spec"]["lifetime"]["ttlSeconds"] = 30;
    return s.dump();
  };
  const std::string script =
      "cd /tmp\n" + write_file_lines("ok.json", inner("in-net-ok", port_ok, "inner-ok")) +
      write_file_lines("wide.json", inner("in-net-wide", port_other, "inner-wide")) +
      write_file_lines("deny.json", inner("in-net-deny", port_ok, "inner-deny", port_other)) +
      run_inner("ok.json", "in-net-ok") + run_inner("wide.json", "in-net-wide") +
      run_inner("deny.json", "in-net-deny") +
      // The nested cell's root itself: what the parent allows answers, the rest does not,
      // and flushing every ruleset it can see changes nothing.
      connect + a.ip() + " " + ok_s + " direct-ok\n" + connect + a.ip() + " " + other_s +
      " direct-other\n" + "/usr/sbin/nft flush ruleset; echo \"flush $?\"\n" + connect + a.ip() +
      " " + other_s + " flushed-other\n" + "echo parent-done\n";
  nlohmann::json spec = nlohmann::json::parse(script_spec(
      parent, script, "nested", {{"limits", {{"memoryMaxBytes", 268435456}}}}, 120));
  spec["spec"]["authority"]["egressRules"] = nlohmann::json::array(
      {{{"host", a.ip()}, {"port", port_ok}, {"protocol", "tcp"}}});
  auto r = f.run(spec.dump(), {}, 120);
  INFO(r.out << r.err);
  REQUIRE(r.status == 0);
  CHECK(r.out.find("inner-ok hello") != std::string::npos);
  CHECK(r.out.find("status in-net-ok 0") != std::string::npos);
  CHECK(r.err.find("is wider than cell " + parent + "'s egress") != std::string::npos);
  CHECK(r.out.find("inner-wide") == std::string::npos);
  CHECK(r.out.find("inner-deny refused") != std::string::npos);
  CHECK(r.out.find("status in-net-deny 1") != std::string::npos);
  CHECK(r.out.find("direct-ok hello") != std::string::npos);
  CHECK(r.out.find("direct-other refused") != std::string::npos);
  CHECK(r.out.find("flush 0") != std::string::npos);
  CHECK(r.out.find("flushed-other refused") != std::string::npos);
  CHECK(r.out.find("parent-done") != std::string::npos);
  // The parent's log: B's traffic beyond the rules denied in the parent's namespace.
  bool denied = false;
  for (const auto& e : r.events)
    if (e.value("type", "").ends_with("network_flow_decision") && e["data"]["decision"] == "deny" &&
        e["data"]["dstAddr"] == a.ip() && e["data"]["dstPort"] == port_other)
      denied = true;
  CHECK(denied);
  // The nested level: its cell's flow allowed by its own reactor, in the sealed sub-log.
  const auto in_log = read_log(nested_base(f) + parent + "/events.jsonl");
  auto in_ok = data_of(in_log, "in-net-ok", "command.v1.completed");
  REQUIRE_FALSE(in_ok.is_null());
  CHECK(in_ok["exitCode"] == 0);
  CHECK_FALSE(data_of(in_log, "in-net-wide", "rejected").is_null());
  // Denied by the nested reactor's own ruleset for its cell, recorded in the sub-log.
  bool inner_denied = false;
  for (const auto& e : in_log)
    if (e.value("subject", "") == "in-net-deny" && e.value("type", "").ends_with("network_flow_decision") &&
        e["data"]["decision"] == "deny" && e["data"]["dstPort"] == port_other)
      inner_denied = true;
  CHECK(inner_denied);
  check_trail(f, 1);
  CHECK(leftover_cgroups(f, parent).empty());
  check_host_files_after(f, parent);
  CHECK(processes_of_uids(blocks_first(), 2 * 1048576).empty());
}
