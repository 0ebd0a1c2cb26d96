// Network authority from inside cells: the uplink, the nftables allow-list, the events.
// Every destination is loopback or a test host this test builds (tests/support/test_hosts.h).
#include <dirent.h>
#include <net/if.h>
#include <netinet/in.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "netns/nft.h"
#include "netns/uplink.h"
#include "tests/support/test_hosts.h"
#include "tests/support/test_support.h"

// After netinet/in.h: the kernel's linux/in.h defers to glibc's only in that order.
#include <linux/netfilter.h>

using namespace cellos::test;
using nlohmann::json;

namespace {

// A /24 of its own per test process, so parallel tests never share a subnet or a route.
std::string cell_subnet() { return "10.213." + std::to_string(::getpid() % 250) + ".0/24"; }
std::string gateway() { return "10.213." + std::to_string(::getpid() % 250) + ".1"; }

std::string nat_toml(const std::string& extra = "") {
  return "[network]\nuplink = \"nat\"\nsubnet = \"" + cell_subnet() + "\"\n" + extra;
}

json rule(const std::string& host, int port, const std::string& proto = "") {
  json r = {{"host", host}, {"port", port}};
  if (!proto.empty()) r["protocol"] = proto;
  return r;
}

// One line per probe run, in order.
std::string probes(const Fleet& f, const std::vector<std::string>& cmds) {
  std::string script;
  for (const auto& c : cmds) script += f.probe() + " " + c + "; ";
  return script + "true";
}

json counter(const json& enforcement, const std::string& name) {
  for (const auto& c : enforcement["ruleCounters"])
    if (c["rule"] == name) return c;
  return nullptr;
}

std::vector<std::string> links_with_prefix(const std::string& prefix) {
  std::vector<std::string> out;
  if (DIR* d = opendir("/sys/class/net")) {
    while (dirent* e = readdir(d))
      if (std::string(e->d_name).starts_with(prefix)) out.emplace_back(e->d_name);
    closedir(d);
  }
  return out;
}

void check_no_residue(const Fleet& fleet) {
  using cellos::netns::HostUplink;
  CHECK(if_nametoindex(HostUplink::bridge_name(fleet.host_id()).c_str()) == 0);
  // The kernel deletes a cell's veth pair with its namespace, asynchronously (netns cleanup
  // work): allow it a moment.
  const std::string prefix = HostUplink::veth_prefix(fleet.host_id());
  for (int i = 0; i < 300 && !links_with_prefix(prefix).empty(); ++i) ::usleep(10000);
  CHECK(links_with_prefix(prefix).empty());
  auto nf = cellos::netns::NetlinkSocket::open(NETLINK_NETFILTER);
  REQUIRE(nf.ok());
  auto table = cellos::netns::read_counters(*nf, NFPROTO_INET, HostUplink::table_name(fleet.host_id()));
  CHECK((!table.ok() || table->empty()));
  const std::string routes = read_text("/proc/net/route");
  // The subnet's connected route went with the bridge: "00D50A" style hex of 10.213.K.0.
  char hexnet[16];
  std::snprintf(hexnet, sizeof hexnet, "\t%02X%02X%02X%02X\t", 0, ::getpid() % 250, 213, 10);
  CHECK(routes.find(hexnet) == std::string::npos);
}

}  // namespace

TEST_CASE("a cell reaches exactly its declared host:port over tcp and udp, and nothing else",
          "[net][egress]") {
  std::string why;
  if (!can_build_test_hosts(&why)) CELLOS_SKIP(why);
  TestHost a(30), b(31);
  const int tcp_ok = a.tcp(), tcp_other = a.tcp(), udp_ok = a.udp(), udp_other = a.udp();
  b.tcp(tcp_ok);
  b.udp(udp_ok);
  a.start();
  b.start();
  // The host's own addresses and its loopback, listening on every address of the root ns.
  Greeter host;
  const int host_port = host.listen_tcp("0.0.0.0");
  host.start();
  // Sanity: from the host, the "other" destinations answer, so a refusal below is the cell's.
  REQUIRE_THAT(run_process({probe_path(), "tcp-connect", b.ip(), std::to_string(tcp_ok)}).out,
               Catch::Contains("ok hello"));
  REQUIRE_THAT(run_process({probe_path(), "udp-send", a.ip(), std::to_string(udp_other)}).out,
               Catch::Contains("ok pong"));

  Fleet fleet(nat_toml());
  const std::string t = std::to_string(tcp_ok), u = std::to_string(udp_ok),
                    hp = std::to_string(host_port);
  auto spec = make_spec(unique_id("egress"), {"/bin/sh", "-c", probes(fleet, {
      "tcp-connect " + a.ip() + " " + t,
      "tcp-connect " + a.ip() + " " + std::to_string(tcp_other),
      "tcp-connect " + b.ip() + " " + t,
      "udp-send " + a.ip() + " " + u,
      "udp-send " + a.ip() + " " + std::to_string(udp_other),
      "udp-send " + b.ip() + " " + u,
      "tcp-connect " + a.root_ip() + " " + hp,
      "tcp-connect " + gateway() + " " + hp,
      "tcp-connect 127.0.0.1 " + hp,
  })});
  // The host's own address, the gateway and loopback are even declared: the host table, not
  // the cell's ruleset, is what keeps the cell off the host.
  spec["spec"]["authority"]["egressRules"] = {
      rule(a.ip(), tcp_ok, "tcp"), rule(a.ip(), udp_ok, "udp"), rule(a.root_ip(), host_port, "tcp"),
      rule(gateway(), host_port, "tcp"), rule("127.0.0.1", host_port, "tcp")};
  auto r = fleet.run(spec.dump());
  INFO(r.out << r.err);
  REQUIRE(r.status == 0);
  std::vector<std::string> lines;
  for (size_t s = 0, e; (e = r.out.find('\n', s)) != std::string::npos; s = e + 1)
    lines.push_back(r.out.substr(s, e - s));
  REQUIRE(lines.size() == 9);
  CHECK_THAT(lines[0], Catch::EndsWith("ok hello"));
  // A dropped SYN: connect() waits (the nflog counter below proves the cell's ruleset did it).
  CHECK_THAT(lines[1], Catch::EndsWith("timeout"));  // same host, other port
  CHECK_THAT(lines[2], Catch::EndsWith("timeout"));  // other test host, same port
  CHECK_THAT(lines[3], Catch::EndsWith("ok pong"));
  CHECK_THAT(lines[4], Catch::Contains("blocked"));
  CHECK_THAT(lines[5], Catch::Contains("blocked"));
  CHECK_THAT(lines[6], Catch::Contains("timeout"));  // the host's own address: dropped on input
  CHECK_THAT(lines[7], Catch::Contains("timeout"));  // the gateway: the host too
  CHECK_THAT(lines[8], Catch::Contains("refused"));  // 127.0.0.1 is the cell's own loopback

  auto e = r.event("observability.v1.network_enforcement");
  REQUIRE(e.is_object());
  CHECK(e["declaredEgressRuleCount"] == 5);
  CHECK(e["nftRulesApplied"] == true);
  CHECK(e["supplementaryEgressFilterActive"] == true);
  CHECK(e["commandExitCode"] == 0);
  CHECK(e["nftRuleCount"] == 4 + 5);
  CHECK_THAT(e["cellAddress"].get<std::string>(), Catch::StartsWith("10.213."));
  // Rules count new flows (replies and the rest of a flow match "established" first): one
  // 60-byte SYN for the tcp connection, one 32-byte datagram (20 + 8 + "ping") for udp.
  CHECK(counter(e, "egress[0]")["packets"] == 1);
  CHECK(counter(e, "egress[0]")["bytes"].get<uint64_t>() >= 40);  // 60 with the usual options
  CHECK(counter(e, "established")["packets"].get<uint64_t>() >= 2);
  CHECK(counter(e, "egress[1]")["packets"] == 1);
  CHECK(counter(e, "egress[1]")["bytes"] == 32);
  CHECK(counter(e, "egress[2]")["packets"].get<uint64_t>() >= 1);
  // Four refused attempts (two tcp SYNs, two datagrams), each logged then dropped.
  CHECK(counter(e, "nflog")["packets"].get<uint64_t>() >= 4);
  CHECK(counter(e, "drop")["packets"] == counter(e, "nflog")["packets"]);
  // The lifecycle and enforcement events, in order (flow reports and the reactor's flow_probes
  // event interleave with them: tests/integration/flow_test.cc checks those).
  auto order = std::vector<std::string>{};
  for (const auto& ev : r.events) {
    const std::string type = ev["type"];
    if (!type.ends_with("network_flow_decision") && !type.ends_with("flow_probes"))
      order.push_back(type);
  }
  REQUIRE(order.size() == 5);
  CHECK_THAT(order[2], Catch::EndsWith("network_enforcement"));
  CHECK_THAT(order[3], Catch::EndsWith("command.v1.completed"));

  check_no_residue(fleet);
}

TEST_CASE("teardown of a nat cell leaves no veth, bridge, nft table or route", "[net][egress]") {
  std::string why;
  if (!can_build_test_hosts(&why)) CELLOS_SKIP(why);
  Fleet fleet(nat_toml());
  auto spec = make_spec(unique_id("residue"),
                        {"/bin/sh", "-c", "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '"});
  spec["spec"]["authority"]["egressRules"] = {rule("10.213.254.254", 9)};
  auto r = fleet.run(spec.dump());
  REQUIRE(r.status == 0);
  CHECK_THAT(r.out, Catch::Contains("eth0"));
  check_no_residue(fleet);
}

TEST_CASE("a ruleset that fails to apply runs nothing", "[net][egress]") {
  std::string why;
  if (!can_build_test_hosts(&why)) CELLOS_SKIP(why);
  Fleet fleet(nat_toml("test_fault_ruleset = true\n"));
  auto spec = make_spec(unique_id("fault"), {"/bin/echo", "ran"});
  spec["spec"]["authority"]["egressRules"] = {rule("10.213.254.254", 9)};
  auto r = fleet.run(spec.dump());
  CHECK(r.status == 125);
  CHECK(r.out.empty());
  CHECK_THAT(r.err, Catch::Contains("nft"));
  auto c = r.event("command.v1.completed");
  CHECK(c["reason"] == "setup_failed");
  auto e = r.event("observability.v1.network_enforcement");
  CHECK(e["nftRulesApplied"] == false);
  CHECK(e["commandExitCode"].is_null());
  check_no_residue(fleet);
}

TEST_CASE("without an uplink a cell with egress rules gets its ruleset but no route",
          "[net][egress]") {
  std::string why;
  if (!can_build_test_hosts(&why)) CELLOS_SKIP(why);
  TestHost a(30);
  const int port = a.tcp();
  a.start();
  Fleet fleet;
  auto spec = make_spec(unique_id("noup"), {"/bin/sh", "-c", probes(fleet, {
      "tcp-connect " + a.ip() + " " + std::to_string(port)})});
  spec["spec"]["authority"]["egressRules"] = {rule(a.ip(), port, "tcp")};
  auto r = fleet.run(spec.dump());
  REQUIRE(r.status == 0);
  CHECK_THAT(r.out, Catch::Contains("Network is unreachable"));
  auto e = r.event("observability.v1.network_enforcement");
  CHECK(e["nftRulesApplied"] == true);
  CHECK(e["cellAddress"].is_null());
}

TEST_CASE("a hostname egress rule is resolved at admission and recorded", "[net][egress]") {
  Fleet fleet;
  auto spec = make_spec(unique_id("resolve"), {"/bin/true"});
  spec["spec"]["authority"]["egressRules"] = {rule("localhost", 8080, "tcp")};
  auto r = fleet.run(spec.dump());
  REQUIRE(r.status == 0);
  auto p = r.event("observability.v1.network_policy");
  CHECK_THAT(p["declaredEgress"][0]["resolvedAddresses"].dump(), Catch::Contains("127.0.0.1"));
}

TEST_CASE("a crashed reactor's bridge and host table are removed by the next start",
          "[net][egress]") {
  std::string why;
  if (!can_build_test_hosts(&why)) CELLOS_SKIP(why);
  Fleet fleet(nat_toml());
  using cellos::netns::HostUplink;
  // A reactor that died without its destructors: the uplink is leaked, not torn down (no lock
  // file, as a dead process holds none).
  auto crashed = HostUplink::create({fleet.host_id(), "", cell_subnet()});
  REQUIRE(crashed.ok());
  (void)crashed->release();
  REQUIRE(if_nametoindex(HostUplink::bridge_name(fleet.host_id()).c_str()) != 0);
  auto spec = make_spec(unique_id("after-crash"), {"/bin/true"});
  spec["spec"]["authority"]["egressRules"] = {rule("10.213.254.254", 9)};
  auto r = fleet.run(spec.dump());
  INFO(r.err);
  CHECK(r.status == 0);
  check_no_residue(fleet);
}

TEST_CASE("a spec outside policy.allowed_egress_hosts is rejected naming the rule",
          "[net][egress]") {
  Fleet fleet("[policy]\nargv0_allow_prefixes = [\"/bin\"]\n"
              "allowed_egress_hosts = [\"*.internal.test\", \"10.0.0.0/8\"]\n");
  auto spec = make_spec(unique_id("deny"), {"/bin/echo", "ran"});
  spec["spec"]["authority"]["egressRules"] = {rule("10.1.2.3", 443), rule("pkg.internal.test", 80),
                                               rule("192.168.1.1", 53, "udp")};
  auto r = fleet.run(spec.dump());
  CHECK(r.status == 125);
  CHECK(r.out.empty());
  CHECK_THAT(r.err, Catch::Contains("spec.authority.egressRules[2].host: \"192.168.1.1\" is not "
                                    "in policy.allowed_egress_hosts"));
  CHECK(r.event("lifecycle.v1.rejected").is_object());
  CHECK(r.event("lifecycle.v1.started").is_null());
}

TEST_CASE("eight runs with egress at once share the host's uplink, each reaches exactly its own "
          "destination, and the last one out removes it",
          "[net][egress][uplink]") {
  std::string why;
  if (!can_build_test_hosts(&why)) CELLOS_SKIP(why);
  constexpr int kRuns = 8;
  TestHost a(30);
  std::vector<int> ports;
  for (int i = 0; i < kRuns; ++i) ports.push_back(a.tcp());
  a.start();
  Fleet fleet(nat_toml());
  std::vector<cellos::test::RunResult> results(kRuns);
  std::vector<std::thread> runs;
  for (int i = 0; i < kRuns; ++i) {
    const int mine = ports[i], other = ports[(i + 1) % kRuns];
    // Each cell waits before it probes, so all eight hold their addresses at once.
    auto spec = make_spec(unique_id("shared" + std::to_string(i)),
                          {"/bin/sh", "-c", "sleep 3; " + probes(fleet, {
                              "tcp-connect " + a.ip() + " " + std::to_string(mine),
                              "tcp-connect " + a.ip() + " " + std::to_string(other)})});
    spec["spec"]["authority"]["egressRules"] = {rule(a.ip(), mine, "tcp")};
    // Catch2 is not thread-safe: each thread only runs its reactor; checks come after. Each
    // run writes its own log (one writer per log).
    runs.emplace_back([&, i, text = spec.dump()] {
      results[i] = fleet.run(text, {"--events", fleet.dir() + "/run" + std::to_string(i) + ".jsonl"});
    });
  }
  for (auto& t : runs) t.join();
  for (int i = 0; i < kRuns; ++i) {
    const auto& r = results[i];
    INFO("run " << i << ": " << r.out << r.err);
    REQUIRE(r.status == 0);
    const auto nl = r.out.find('\n');
    REQUIRE(nl != std::string::npos);
    CHECK_THAT(r.out.substr(0, nl), Catch::EndsWith("ok hello"));   // its own destination
    CHECK_THAT(r.out.substr(nl + 1), Catch::Contains("timeout"));    // the next run's
  }
  // Every run had its own address, from its own log.
  std::set<std::string> addresses;
  for (int i = 0; i < kRuns; ++i) {
    std::istringstream log(read_text(fleet.dir() + "/run" + std::to_string(i) + ".jsonl"));
    for (std::string line; std::getline(log, line);) {
      auto e = json::parse(line, nullptr, false);
      if (e.is_object() && e.value("type", "").ends_with("network_enforcement"))
        addresses.insert(e["data"]["cellAddress"].get<std::string>());
    }
  }
  INFO("addresses: " << [&] { std::string s; for (auto& a : addresses) s += a + " "; return s; }());
  CHECK(addresses.size() == kRuns);
  check_no_residue(fleet);
}
