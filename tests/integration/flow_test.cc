// Per-flow observability end to end: real cells, real probes, real nflog, checked against what
// the test itself sent and against the nft counters (an independent count of the same packets).
// Every destination is loopback or a test host this test builds (tests/support/test_hosts.h).
#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <map>
#include <set>

#include "cells/cgroup.h"
#include "ebpf/cgroup_id.h"
#include "netns/uplink.h"
#include "reactor/event_log_config.h"
#include "reactor/host.h"
#include "reactor/supervisor.h"
#include "tests/support/daemon_support.h"
#include "tests/support/test_hosts.h"
#include "tests/support/test_support.h"

using namespace cellos::test;
using nlohmann::json;

namespace {

std::string subnet_octet() { return std::to_string(::getpid() % 250); }
std::string nat_toml(const std::string& enforcement, const std::string& flows = "") {
  return "[network]\nuplink = \"nat\"\nsubnet = \"10.213." + subnet_octet() +
         ".0/24\"\nenforcement = \"" + enforcement + "\"\n[flows]\n" + flows;
}

json rule(const std::string& host, int port, const std::string& proto) {
  return {{"host", host}, {"port", port}, {"protocol", proto}};
}

std::vector<json> of_type(const std::vector<json>& events, const std::string& suffix) {
  std::vector<json> out;
  for (const auto& e : events)
    if (e["type"].get<std::string>().ends_with(suffix)) out.push_back(e["data"]);
  return out;
}

// A flow's reports summed: what it carried over its whole life.
struct FlowTotal {
  uint64_t tx_packets = 0, tx_bytes = 0, rx_packets = 0, rx_bytes = 0;
  int ends = 0, reports = 0;
  std::string reason;
};
using FlowKey = std::tuple<std::string, std::string, int, std::string, int>;  // proto, src, sport, dst, dport

std::map<FlowKey, FlowTotal> allowed_flows(const std::vector<json>& decisions) {
  std::map<FlowKey, FlowTotal> out;
  for (const auto& d : decisions) {
    if (d["decision"] != "allow") continue;
    auto& t = out[{d["protocol"], d["srcAddr"], d["srcPort"], d["dstAddr"], d["dstPort"]}];
    t.tx_packets += d["txPackets"].get<uint64_t>();
    t.tx_bytes += d["txBytes"].get<uint64_t>();
    t.rx_packets += d["rxPackets"].get<uint64_t>();
    t.rx_bytes += d["rxBytes"].get<uint64_t>();
    t.ends += d["phase"] == "end";
    t.reports++;
    t.reason = d["reasonCode"];
  }
  return out;
}

uint64_t counter(const json& enforcement, const std::string& rule, const char* field) {
  for (const auto& c : enforcement["ruleCounters"])
    if (c["rule"] == rule) return c[field].get<uint64_t>();
  return 0;
}

}  // namespace

TEST_CASE("flows: exact tcp and udp counts, each flow ended once, matching the nft counters",
          "[net][flows]") {
  std::string why;
  if (!can_build_test_hosts(&why)) CELLOS_SKIP(why);
  TestHost host(30);
  const int tcp = host.tcp(), udp = host.udp();
  host.start();
  Fleet fleet(nat_toml("nft"));
  const int kDatagrams = 7, kSize = 100;
  auto spec = make_spec(unique_id("flows"), {"/bin/sh", "-c",
      fleet.probe() + " tcp-connect " + host.ip() + " " + std::to_string(tcp) + "; " +
      fleet.probe() + " udp-burst " + host.ip() + " " + std::to_string(udp) + " " +
      std::to_string(kDatagrams) + " " + std::to_string(kSize)});
  spec["spec"]["authority"]["egressRules"] = {rule(host.ip(), tcp, "tcp"), rule(host.ip(), udp, "udp")};
  auto r = fleet.run(spec.dump());
  INFO(r.out << r.err);
  REQUIRE(r.status == 0);
  REQUIRE_THAT(r.out, Catch::Contains("ok hello"));
  REQUIRE_THAT(r.out, Catch::Contains("udp-burst sent 7 received 7"));

  auto probes = r.event("host.observability.v1.flow_probes");
  REQUIRE(probes.is_object());
  if (probes["active"] != true) CELLOS_SKIP("flow probes off: " + probes["reason"].get<std::string>());

  auto flows = allowed_flows(of_type(r.events, "network_flow_decision"));
  const json enforcement = r.event("network_enforcement");
  const std::string cell_ip = enforcement["cellAddress"];
  uint64_t tx_packets = 0, tx_bytes = 0;
  int tcp_flows = 0, udp_flows = 0;
  for (const auto& [key, t] : flows) {
    const auto& [proto, src, sport, dst, dport] = key;
    INFO(proto << " " << src << ":" << sport << " -> " << dst << ":" << dport);
    CHECK(t.ends == 1);  // every flow's life closes with exactly one end report
    if (dst != host.ip()) continue;
    CHECK(src == cell_ip);
    tx_packets += t.tx_packets;
    tx_bytes += t.tx_bytes;
    if (proto == "udp") {
      ++udp_flows;
      CHECK(dport == udp);
      CHECK(t.reason == "egress[1]");
      // Exactly what the probe sent and got back: IP (20) + UDP (8) + payload.
      CHECK(t.tx_packets == kDatagrams);
      CHECK(t.tx_bytes == kDatagrams * (20 + 8 + kSize));
      CHECK(t.rx_packets == kDatagrams);
      CHECK(t.rx_bytes == kDatagrams * (20 + 8 + 4));  // "pong"
    } else {
      ++tcp_flows;
      CHECK(dport == tcp);
      CHECK(t.reason == "egress[0]");
      CHECK(t.tx_packets >= 3);  // SYN, ACK, FIN at least
      CHECK(t.rx_bytes > 0);
    }
  }
  CHECK(tcp_flows == 1);
  CHECK(udp_flows == 1);
  // The cell's output chain saw the same packets: each flow's first in its egress[i] rule, the
  // rest in `established`. Nothing counted twice, nothing missed.
  CHECK(tx_packets == counter(enforcement, "egress[0]", "packets") +
                          counter(enforcement, "egress[1]", "packets") +
                          counter(enforcement, "established", "packets"));
  CHECK(tx_bytes == counter(enforcement, "egress[0]", "bytes") +
                        counter(enforcement, "egress[1]", "bytes") +
                        counter(enforcement, "established", "bytes"));
  auto destroyed = r.event("lifecycle.v1.destroyed");
  const json& s = destroyed["flows"];
  CHECK(s["probes"] == true);
  CHECK(s["lostRecords"] == 0);
  CHECK(s["nflogGaps"] == 0);
  CHECK(s["evictedFlows"] == 0);
  CHECK(s["deniedFlows"] == 0);
  REQUIRE(!s["topDestinations"].empty());
  CHECK(s["topDestinations"][0]["addr"] == host.ip());
  // Flow reports come before completed, the summary with destroyed.
  std::vector<std::string> order;
  for (const auto& e : r.events) order.push_back(e["type"]);
  CHECK_THAT(order.back(), Catch::EndsWith("lifecycle.v1.destroyed"));
  CHECK_THAT(order[order.size() - 2], Catch::EndsWith("command.v1.completed"));
}

TEST_CASE("flows: nft, bpf and both deny the same destinations with the same reason",
          "[net][flows]") {
  std::string why;
  if (!can_build_test_hosts(&why)) CELLOS_SKIP(why);
  TestHost host(30);
  const int tcp_ok = host.tcp(), tcp_no = host.tcp(), udp_ok = host.udp(), udp_no = host.udp();
  host.start();
  std::map<std::string, std::set<std::string>> denies;
  for (const std::string mode : {"nft", "bpf", "both"}) {
    DYNAMIC_SECTION("mode " << mode) {}
    Fleet fleet(nat_toml(mode));
    auto spec = make_spec(unique_id("deny-" + mode), {"/bin/sh", "-c",
        fleet.probe() + " tcp-connect " + host.ip() + " " + std::to_string(tcp_ok) + "; " +
        fleet.probe() + " tcp-connect " + host.ip() + " " + std::to_string(tcp_no) + "; " +
        fleet.probe() + " udp-send " + host.ip() + " " + std::to_string(udp_ok) + "; " +
        fleet.probe() + " udp-send " + host.ip() + " " + std::to_string(udp_no) + "; true"});
    spec["spec"]["authority"]["egressRules"] = {rule(host.ip(), tcp_ok, "tcp"),
                                                rule(host.ip(), udp_ok, "udp")};
    auto r = fleet.run(spec.dump());
    INFO(mode << "\n" << r.out << r.err);
    REQUIRE(r.status == 0);
    auto probes = r.event("host.observability.v1.flow_probes");
    if (probes["active"] != true) CELLOS_SKIP("flow probes off: " + probes["reason"].get<std::string>());
    CHECK(probes["enforcement"] == mode);
    // The declared destinations answer in every mode; the others never do.
    CHECK_THAT(r.out, Catch::Contains(std::to_string(tcp_ok) + " ok hello"));
    CHECK_THAT(r.out, Catch::Contains(std::to_string(udp_ok) + " ok pong"));
    CHECK_THAT(r.out, !Catch::Contains(std::to_string(tcp_no) + " ok"));
    CHECK_THAT(r.out, !Catch::Contains(std::to_string(udp_no) + " ok"));
    for (const auto& d : of_type(r.events, "network_flow_decision")) {
      if (d["decision"] != "deny") continue;
      denies[mode].insert(d["protocol"].get<std::string>() + " " + d["dstAddr"].get<std::string>() +
                          ":" + std::to_string(d["dstPort"].get<int>()) + " " +
                          d["reasonCode"].get<std::string>() + " srcPort " +
                          std::to_string(d["srcPort"].get<int>()));
    }
    auto enforcement = r.event("network_enforcement");
    CHECK(enforcement["nftRulesApplied"] == (mode != "bpf"));
    CHECK(enforcement["supplementaryEgressFilterActive"] == true);
    const json s = r.event("lifecycle.v1.destroyed")["flows"];
    CHECK(s["deniedFlows"] == 2);
    CHECK(s["nflogGaps"] == 0);
    CHECK(s["lostRecords"] == 0);
    // Under nft every dropped packet was logged: the deny counts equal the drop counter.
    if (mode == "nft") CHECK(s["deniedPackets"] == counter(enforcement, "drop", "packets"));
  }
  const std::set<std::string> expected = {
      "tcp " + host.ip() + ":" + std::to_string(tcp_no) + " egress_default_deny srcPort 0",
      "udp " + host.ip() + ":" + std::to_string(udp_no) + " egress_default_deny srcPort 0"};
  CHECK(denies["nft"] == expected);
  CHECK(denies["bpf"] == expected);
  CHECK(denies["both"] == expected);
}

TEST_CASE("flows: a cell whose only packet is a denied datagram sent as it exits has that deny "
          "recorded and counted, in every mode", "[net][flows]") {
  // The end of a cell skips work when nothing was seen (the flow map is read only once a
  // program made a flow; the keeper leaves the hooks on): the last packet must still count.
  std::string why;
  if (!can_build_test_hosts(&why)) CELLOS_SKIP(why);
  TestHost host(30);
  const int udp_no = host.udp(), udp_ok = host.udp();
  host.start();
  for (const std::string mode : {"nft", "bpf", "both"}) {
    DYNAMIC_SECTION("mode " << mode) {}
    Fleet fleet(nat_toml(mode));
    auto spec = make_spec(unique_id("last-" + mode),
                          {fleet.probe(), "udp-fire", host.ip(), std::to_string(udp_no)});
    spec["spec"]["authority"]["egressRules"] = {rule(host.ip(), udp_ok, "udp")};
    auto r = fleet.run(spec.dump());
    INFO(mode << "\n" << r.out << r.err);
    REQUIRE(r.status == 0);
    auto probes = r.event("host.observability.v1.flow_probes");
    if (probes["active"] != true) CELLOS_SKIP("flow probes off: " + probes["reason"].get<std::string>());
    size_t denies = 0;
    for (const auto& d : of_type(r.events, "network_flow_decision"))
      if (d["decision"] == "deny") {
        ++denies;
        CHECK(d["dstAddr"] == host.ip());
        CHECK(d["dstPort"] == udp_no);
        CHECK(d["reasonCode"] == "egress_default_deny");
      }
    CHECK(denies >= 1);
    const json s = r.event("lifecycle.v1.destroyed")["flows"];
    CHECK(s["deniedFlows"] == 1);
    CHECK(s["nflogGaps"] == 0);
    CHECK(s["lostRecords"] == 0);
    if (mode != "bpf") CHECK(counter(r.event("network_enforcement"), "drop", "packets") >= 1);
  }
}

TEST_CASE("flows: a BPF object that cannot load leaves probes off, said once, nft still enforcing",
          "[net][flows]") {
  std::string why;
  if (!can_build_test_hosts(&why)) CELLOS_SKIP(why);
  TestHost host(30);
  const int tcp_ok = host.tcp(), tcp_no = host.tcp();
  host.start();
  // A flow map the kernel refuses to create (2^31 entries): a real load failure.
  Fleet fleet(nat_toml("bpf", "max_flows = 2147483647\n"));
  auto spec = make_spec(unique_id("noprobe"), {"/bin/sh", "-c",
      fleet.probe() + " tcp-connect " + host.ip() + " " + std::to_string(tcp_ok) + "; " +
      fleet.probe() + " tcp-connect " + host.ip() + " " + std::to_string(tcp_no) + "; true"});
  spec["spec"]["authority"]["egressRules"] = {rule(host.ip(), tcp_ok, "tcp")};
  auto r = fleet.run(spec.dump());
  INFO(r.out << r.err);
  REQUIRE(r.status == 0);
  CHECK_THAT(r.out, Catch::Contains(std::to_string(tcp_ok) + " ok hello"));
  CHECK_THAT(r.out, Catch::Contains(std::to_string(tcp_no) + " timeout"));  // nft dropped it
  auto probes = of_type(r.events, "host.observability.v1.flow_probes");
  REQUIRE(probes.size() == 1);
  CHECK(probes[0]["active"] == false);
  CHECK(probes[0]["enforcement"] == "nft");
  CHECK_THAT(probes[0]["reason"].get<std::string>(), Catch::Contains("flows"));
  // One line on stderr, naming the fallback.
  CHECK_THAT(r.err, Catch::Contains("flow probes off"));
  CHECK_THAT(r.err, Catch::Contains("falls back to \"nft\""));
  CHECK(r.event("network_enforcement")["nftRulesApplied"] == true);
  // Denies still come from nflog.
  const json s = r.event("lifecycle.v1.destroyed")["flows"];
  CHECK(s["probes"] == false);
  CHECK(s["deniedFlows"] == 1);
}

TEST_CASE("flows: 200 concurrent cells each see exactly their own flow",
          "[net][flows][daemon]") {
  std::string why;
  if (!can_build_test_hosts(&why)) CELLOS_SKIP(why);
  TestHost host(31);
  const int udp = host.udp();
  host.start();
  const int kCells = 200, kDatagrams = 5, kSize = 64;
  Fleet fleet(nat_toml("nft", "report_interval_ms = 200\n"), "",
              "max_concurrent_cells = " + std::to_string(kCells) + "\n");
  DaemonProcess daemon(fleet);
  std::map<std::string, int> want;  // cell id -> nothing, just the set
  for (int i = 0; i < kCells; ++i) {
    const std::string id = unique_id("many" + std::to_string(i));
    // Sleep first, so all 200 hold their namespaces and probes at once.
    auto spec = make_spec(id, {"/bin/sh", "-c", "sleep 2; " + fleet.probe() + " udp-burst " + host.ip() +
                                                    " " + std::to_string(udp) + " " +
                                                    std::to_string(kDatagrams) + " " +
                                                    std::to_string(kSize)});
    spec["spec"]["authority"]["egressRules"] = {rule(host.ip(), udp, "udp")};
    spool(fleet, spec);
    want[id] = 0;
  }
  REQUIRE(eventually([&] { return events_of(fleet, "lifecycle.v1.destroyed").size() == kCells; },
                     std::chrono::seconds(100)));
  daemon.signal(SIGTERM);
  CHECK(daemon.wait() == 0);

  auto events = fleet.events();
  // Peak concurrency from the log: started minus destroyed, in order.
  int running = 0, peak = 0;
  std::map<std::string, std::string> address;  // cell -> its address
  for (const auto& e : events) {
    const std::string type = e["type"];
    if (type.ends_with("lifecycle.v1.started")) peak = std::max(peak, ++running);
    if (type.ends_with("lifecycle.v1.destroyed")) --running;
    if (type.ends_with("network_enforcement"))
      address[e["data"]["cellId"]] = e["data"]["cellAddress"];
  }
  CHECK(peak > kCells / 2);
  std::map<std::string, FlowTotal> per_cell;
  for (const auto& e : events) {
    if (!e["type"].get<std::string>().ends_with("network_flow_decision")) continue;
    const json& d = e["data"];
    const std::string cell = d["cellId"];
    REQUIRE(want.count(cell));
    // Another cell's address or destination here would be a flow attributed to the wrong cell.
    CHECK(d["srcAddr"] == address[cell]);
    CHECK(d["dstAddr"] == host.ip());
    CHECK(d["decision"] == "allow");
    per_cell[cell].tx_packets += d["txPackets"].get<uint64_t>();
    per_cell[cell].tx_bytes += d["txBytes"].get<uint64_t>();
    per_cell[cell].rx_packets += d["rxPackets"].get<uint64_t>();
    per_cell[cell].ends += d["phase"] == "end";
  }
  CHECK(per_cell.size() == kCells);
  for (const auto& [cell, t] : per_cell) {
    // What the cell itself counted: the test host's single thread may drop replies under 200
    // cells at once, and the flow must say exactly what arrived.
    const std::string out = read_text(fleet.state_dir() + "/logs/" + cell + "/stdout");
    INFO(cell << ": " << out);
    int sent = -1, received = -1;
    REQUIRE(std::sscanf(out.c_str(), "udp-burst sent %d received %d", &sent, &received) == 2);
    CHECK(sent == kDatagrams);
    CHECK(t.tx_packets == static_cast<uint64_t>(sent));
    CHECK(t.tx_bytes == static_cast<uint64_t>(sent) * (20 + 8 + kSize));
    CHECK(t.rx_packets == static_cast<uint64_t>(received));
    CHECK(t.ends == 1);
  }
  for (const auto& d : events_of(fleet, "lifecycle.v1.destroyed")) {
    CHECK(d["data"]["outcome"] == "succeeded");
    const json& s = d["data"]["flows"];
    CHECK(s["lostRecords"] == 0);
    CHECK(s["evictedFlows"] == 0);
    CHECK(s["txPackets"] == kDatagrams);
  }
}

TEST_CASE("flows: a finished cell leaves no probe attached and no entry in the flow maps",
          "[net][flows]") {
  std::string why;
  if (!can_build_test_hosts(&why)) CELLOS_SKIP(why);
  TestHost host(30);
  const int udp = host.udp();
  host.start();
  Fleet fleet(nat_toml("both"));
  cellos::cells::Config config = cellos::cells::load_config(fleet.config_path());
  REQUIRE(cellos::base::make_dirs(config.host.state_dir).ok());
  cellos::reactor::HostOptions ho;
  ho.config = &config;
  ho.events_path = fleet.events_path();
  ho.uplink = true;
  ho.cgroups = cellos::reactor::cgroup_placement_for_run(config);
  auto rhost = cellos::reactor::Host::create(std::move(ho));
  REQUIRE(rhost.ok());
  auto sup = std::make_unique<cellos::reactor::Supervisor>(**rhost,
                                                           cellos::reactor::SupervisorOptions{});
  cellos::flows::FlowMonitor& mon = (*rhost)->flows();
  mon.announce();
  if (!mon.probes_active()) CELLOS_SKIP("flow probes off on this machine");
  cellos::ebpf::FlowProbes& probes = *mon.probes();

  // The cell's cgroup id, taken while it runs: its leaf is the one cgroup2 dir of this fleet.
  uint64_t cgroup_id = 0;
  cellos::cells::CellOptions co;
  co.spec.id = unique_id("teardown");
  co.spec.run.argv = {"/bin/sh", "-c", "sleep 0.5; " + fleet.probe() + " udp-burst " + host.ip() +
                                           " " + std::to_string(udp) + " 3 10; sleep 0.5"};
  co.spec.egress_rules = {{host.ip(), static_cast<uint16_t>(udp), std::string("udp"), {}}};
  co.env = {"PATH=/usr/bin:/bin"};
  co.run_id = co.spec.id;
  co.stdout_fd = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  sup->add(std::move(co));
  CHECK(mon.watched_cells() == 1);
  const std::string leaf = "/sys/fs/cgroup/unified/cellos/" + config.host.id;
  for (const auto& name : dir_entries(leaf)) {
    int fd = ::open((leaf + "/" + name).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) continue;
    if (auto id = cellos::ebpf::cgroup_id_of(fd); id.ok()) cgroup_id = *id;
    ::close(fd);
  }
  REQUIRE(cgroup_id != 0);
  auto during = probes.entries_of(cgroup_id);
  REQUIRE(during.ok());
  CHECK(during->config);
  CHECK(during->allow_rules == 1);
  REQUIRE(sup->run_until_idle().ok());

  auto after = probes.entries_of(cgroup_id);
  REQUIRE(after.ok());
  CHECK(after->flows == 0);
  CHECK(after->allow_rules == 0);
  CHECK_FALSE(after->config);
  CHECK(mon.watched_cells() == 0);
  auto st = probes.stats();
  REQUIRE(st.ok());
  CHECK(st->flows_present == 0);
  auto destroyed = events_of(fleet, "lifecycle.v1.destroyed");
  REQUIRE(destroyed.size() == 1);
  CHECK(destroyed[0]["data"]["flows"]["txPackets"] == 3);
  sup.reset();
  (*rhost)->cgroups().remove_empty_parents();
}
