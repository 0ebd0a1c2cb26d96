// Rootless mode (cells/rootless.h, docs/nested.md): `cellos-reactor run` as root of a user
// namespace the test hands it (a uid range of its own, a delegated cgroup subtree, namespaces
// owned by that user namespace), as a parent cell or a service manager would.
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "tests/support/test_support.h"
#include "tests/support/userns_support.h"

using namespace cellos::test;
namespace fs = std::filesystem;

namespace {

// A host uid range no other test uses: 64Ki uids per process, far above the default
// policy.uid_range.
uid_t outer_first() { return 2000000u + static_cast<uid_t>(::getpid() % 1000) * 65536u; }

// The test host: a network namespace the script makes inside the reactor's own, behind a veth,
// with addresses it assigns, and a greeter ("hello" to each TCP connection) on it.
constexpr const char* kGreeter = R"(import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(8)
while True:
    c, _ = s.accept(); c.sendall(b"hello"); c.close()
)";

struct RootlessFleet {
  TempDir dir;
  std::string host_id = unique_id("rl");
  std::string config, events, probe;
  explicit RootlessFleet(const std::string& extra) {
    const std::string d = dir.path();
    ::chmod(d.c_str(), 0755);
    fs::create_directories(d + "/bin");
    fs::create_directories(d + "/state");
    fs::copy_file(CELLOS_PROBE_BIN, d + "/bin/cell_probe");
    probe = d + "/bin/cell_probe";
    config = d + "/fleet.toml";
    events = d + "/events.jsonl";
    write_text(config, "[host]\nid = \"" + host_id + "\"\nstate_dir = \"" + d + "/state\"\n" +
                           "[events]\njsonl = \"" + events + "\"\n" +
                           "[policy]\nargv0_allow_prefixes = [\"/usr/bin\", \"/bin\", \"" + d +
                           "/bin\"]\n" + extra);
    write_text(d + "/greet.py", kGreeter);
  }
  std::string spec_file(const std::string& id, const std::string& authority,
                        const std::string& run) {
    const std::string path = dir.path() + "/" + id + ".json";
    write_text(path, R"({"apiVersion":"cellos.io/v1","kind":"ExecutionCell","spec":{"id":")" +
                         id + "\"" + (authority.empty() ? "" : ",\"authority\":" + authority) +
                         ",\"run\":" + run + "}}");
    return path;
  }
  std::vector<nlohmann::json> records() const {
    std::vector<nlohmann::json> out;
    std::ifstream in(events);
    std::string line;
    while (std::getline(in, line))
      if (!line.empty()) out.push_back(nlohmann::json::parse(line));
    return out;
  }
  std::vector<nlohmann::json> data_of(const std::string& cell, const std::string& suffix) const {
    std::vector<nlohmann::json> out;
    for (const auto& e : records())
      if (e.value("subject", "") == cell && e.value("type", "").ends_with(suffix))
        out.push_back(e["data"]);
    return out;
  }
};

}  // namespace

TEST_CASE("rootless: a reactor that is root of a user namespace runs isolated cells in its delegated cgroup subtree, nft enforcing and no BPF", "[rootless]") {
  if (::geteuid() != 0) CELLOS_SKIP("needs root to hand out a user namespace and a cgroup subtree");
  if (!fs::exists("/usr/bin/python3")) CELLOS_SKIP("needs /usr/bin/python3 for the test host's greeter");
  const uid_t u = outer_first();
  // enforcement = "both": BPF is asked for and cannot be had, so nft alone must enforce.
  RootlessFleet f("uid_range = \"1000-1999\"\n[network]\nuplink = \"nat\"\nenforcement = \"both\"\n");
  const std::string tcp = R"({"argv":[")" + f.probe + R"(","tcp-connect","172.31.77.2","7070"]})";
  const std::string allow = f.spec_file("rl-allow", R"({"egressRules":[{"host":"172.31.77.2","port":7070,"protocol":"tcp"}]})", tcp);
  const std::string deny = f.spec_file("rl-deny", R"({"egressRules":[{"host":"172.31.77.2","port":7071,"protocol":"tcp"}]})", tcp);
  const std::string oom = f.spec_file("rl-oom", "",
      R"({"argv":[")" + f.probe + R"(","alloc","64"],"limits":{"memoryMaxBytes":16777216}})");
  const std::string d = f.dir.path();
  write_text(d + "/inner.sh",
             // No sleeps on a loaded machine: the host waits for its veth end, the script for
             // the greeter's answer (the probe, run in the reactor's namespace).
             "unshare -n sh -c 'until ip link show th1 >/dev/null 2>&1; do sleep 0.05; done; "
             "ip link set lo up; ip addr add 172.31.77.2/24 dev th1; "
             "ip link set th1 up; exec python3 " + d + "/greet.py 172.31.77.2 7070' &\n"
             "P=$!\n"
             // The peer goes to P's namespace only once P has unshared it.
             "until [ \"$(readlink /proc/$P/ns/net)\" != \"$(readlink /proc/self/ns/net)\" ]; do sleep 0.05; done\n"
             "ip link add th0 type veth peer name th1 netns $P || exit 99\n"
             "ip addr add 172.31.77.1/24 dev th0 && ip link set th0 up || exit 99\n"
             "i=0; until " + f.probe + " tcp-connect 172.31.77.2 7070 | grep -q hello; do\n"
             "  i=$((i+1)); [ $i -gt 100 ] && exit 98; sleep 0.1; done\n"
             "for s in " + allow + " " + deny + " " + oom + "; do\n"
             "  " CELLOS_REACTOR_BIN " run $s --config " + f.config + "; echo \"status $(basename $s .json) $?\"\n"
             "done\n"
             "kill $P\n");
  chown_tree(d, u);
  DelegatedSubtree sub(unique_id("rootless"), u);
  auto r = run_rootless({.outer_first = u, .count = 65536, .subtree = &sub, .input = "", .timeout_s = 60}, {"/bin/sh", d + "/inner.sh"});
  INFO(r.out << r.err);
  REQUIRE(r.status == 0);
  CHECK(r.out.find("tcp 172.31.77.2:7070 ok hello") != std::string::npos);
  CHECK(r.out.find("status rl-allow 0") != std::string::npos);
  CHECK(r.out.find("status rl-deny 1") != std::string::npos);
  CHECK(r.out.find("status rl-oom 137") != std::string::npos);

  // Said once per run: no probes, and why; nft took over the BPF half of "both".
  bool probes_said = false;
  for (const auto& e : f.records())
    if (e.value("type", "").ends_with("flow_probes")) {
      probes_said = true;
      CHECK(e["data"]["active"] == false);
      CHECK(e["data"]["enforcement"] == "nft");
      CHECK(e["data"]["reason"].get<std::string>().starts_with("rootless:"));
    }
  CHECK(probes_said);
  bool denied = false;
  for (const auto& d : f.data_of("rl-deny", "network_flow_decision"))
    denied |= d["decision"] == "deny" && d["dstAddr"] == "172.31.77.2" && d["dstPort"] == 7070;
  CHECK(denied);
  auto oomed = f.data_of("rl-oom", "command.v1.completed");
  REQUIRE(oomed.size() == 1);
  CHECK(oomed[0]["reason"] == "oom");
  // Leases lived in the state dir (the host-wide file belongs to the host's root).
  CHECK(fs::exists(d + "/state/uids.lock"));
  // Every cell's leaf is gone; only the run's shared parents (cellos/<host>) remain, inside
  // the delegated subtree.
  for (const auto& top : sub.dirs()) {
    CHECK_FALSE(fs::exists(top + "/cellos/" + f.host_id + "/rl-allow"));
    CHECK_FALSE(fs::exists(top + "/cellos/" + f.host_id + "/rl-oom"));
    CHECK_FALSE(fs::exists(std::string("/sys/fs/cgroup/") + fs::path(top).parent_path().filename().string() + "/cellos/" + f.host_id));
  }
  CHECK(fs::exists(sub.dirs()[0] + "/cellos/" + f.host_id));
  auto v = run_process({CELLOS_REACTOR_BIN, "verify", f.events});
  CHECK(v.status == 0);
}

TEST_CASE("rootless: a uid_range the user namespace does not map is refused at start, naming the key", "[rootless]") {
  if (::geteuid() != 0) CELLOS_SKIP("needs root to hand out a user namespace and a cgroup subtree");
  const uid_t u = outer_first();
  RootlessFleet f("uid_range = \"200000-265535\"\n");
  const std::string s = f.spec_file("rl-unmapped", "", R"({"argv":["/bin/true"]})");
  chown_tree(f.dir.path(), u);
  DelegatedSubtree sub(unique_id("rootless"), u);
  auto r = run_rootless({.outer_first = u, .count = 65536, .subtree = &sub, .input = "", .timeout_s = 90},
                        {CELLOS_REACTOR_BIN, "run", s, "--config", f.config});
  CHECK(r.status != 0);
  CHECK(r.err.find("policy.uid_range: 200000-265535 is not inside this user namespace's mapped uids (0-65535)") != std::string::npos);
  CHECK(sub.leftovers().empty());
}

TEST_CASE("rootless: the daemon, root of a user namespace, runs submitted cells in its delegated subtree and leaves nothing", "[rootless]") {
  if (::geteuid() != 0) CELLOS_SKIP("needs root to hand out a user namespace and a cgroup subtree");
  const uid_t u = outer_first();
  RootlessFleet f("uid_range = \"1000-1999\"\n");
  const std::string ok = f.spec_file("rld-ok", "", R"({"argv":[")" + f.probe + R"(","write","/tmp/x"]})");
  const std::string oom = f.spec_file("rld-oom", "",
      R"({"argv":[")" + f.probe + R"(","alloc","64"],"limits":{"memoryMaxBytes":16777216}})");
  const std::string d = f.dir.path();
  const std::string cfg = " --config " + f.config;
  write_text(d + "/inner.sh",
             CELLOS_REACTOR_BIN + cfg + " >" + d + "/daemon.out 2>&1 &\n"
             "D=$!\n"
             // The daemon is up once its status socket answers.
             "i=0; until " CELLOS_REACTOR_BIN " status" + cfg + " >/dev/null 2>&1; do\n"
             "  i=$((i+1)); [ $i -gt 300 ] && exit 97; sleep 0.1; done\n"
             "for s in " + ok + " " + oom + "; do\n"
             "  " CELLOS_REACTOR_BIN " submit $s" + cfg + " --wait >/dev/null; echo \"status $(basename $s .json) $?\"\n"
             "done\n"
             "kill -TERM $D; wait $D; echo \"daemon $?\"\n");
  chown_tree(d, u);
  DelegatedSubtree sub(unique_id("rootless"), u);
  auto r = run_rootless({.outer_first = u, .count = 65536, .subtree = &sub, .input = "", .timeout_s = 90},
                        {"/bin/sh", d + "/inner.sh"});
  INFO(r.out << r.err << read_text(d + "/daemon.out"));
  REQUIRE(r.status == 0);
  CHECK(r.out.find("status rld-ok 0") != std::string::npos);
  CHECK(r.out.find("status rld-oom 137") != std::string::npos);
  CHECK(r.out.find("daemon 0") != std::string::npos);
  auto oomed = f.data_of("rld-oom", "command.v1.completed");
  REQUIRE(oomed.size() == 1);
  CHECK(oomed[0]["reason"] == "oom");
  REQUIRE(f.data_of("rld-ok", "command.v1.completed").size() == 1);
  CHECK(f.data_of("rld-ok", "command.v1.completed")[0]["exitCode"] == 0);
  CHECK(fs::exists(d + "/state/uids.lock"));
  for (const auto& top : sub.dirs()) {
    CHECK_FALSE(fs::exists(top + "/cellos/" + f.host_id + "/rld-ok"));
    CHECK_FALSE(fs::exists(top + "/cellos/" + f.host_id + "/rld-oom"));
  }
  auto v = run_process({CELLOS_REACTOR_BIN, "verify", f.events});
  CHECK(v.status == 0);
}
