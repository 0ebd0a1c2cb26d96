// DNS authority on real cells: each cell's /etc/resolv.conf names its own proxy, which answers
// the allow-list from a real DNS server (dnsmasq, on the host's loopback, where no cell can
// reach it) and refuses everything else. Destinations: a test host this test builds
// (tests/support/test_hosts.h) and loopback.
#include <catch2/catch.hpp>
#include <sstream>

#include "tests/support/dnsmasq.h"
#include "tests/support/test_hosts.h"
#include "tests/support/test_support.h"

using namespace cellos::test;
using nlohmann::json;

namespace {

std::string cell_subnet() { return "10.213." + std::to_string(::getpid() % 250) + ".0/24"; }

std::vector<json> events_of(const RunResult& r, const std::string& suffix) {
  std::vector<json> out;
  for (const auto& e : r.events)
    if (e["type"].get<std::string>().ends_with(suffix)) out.push_back(e["data"]);
  return out;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

}  // namespace

TEST_CASE("a cell resolves its allow-listed names through its own proxy and reaches them, while "
          "other names, rebinding answers and other resolvers are refused",
          "[net][dns]") {
  std::string why;
  if (!can_build_test_hosts(&why)) CELLOS_SKIP(why);
  TestHost host(30);
  const int port = host.tcp();
  const int dns_port_on_host = host.udp();  // a "resolver" on the test host: must stay unreachable
  host.start();
  std::vector<std::string> records{"--address=/ok.int.cellos.test/" + host.ip(),
                                   "--address=/a.wild.int.cellos.test/" + host.ip(),
                                   "--address=/denied.int.cellos.test/" + host.ip(),
                                   "--address=/rebind.cellos.test/127.0.0.1"};
  // More A records than fit 512 bytes: the UDP answer is truncated, glibc asks again over TCP.
  for (int i = 1; i <= 40; ++i) records.push_back("--address=/big.int.cellos.test/10.77.0." + std::to_string(i));
  Dnsmasq dns(records);
  if (!dns.why().empty()) CELLOS_SKIP(dns.why());

  // The first line lands in the [policy] table Fleet writes last (it keeps its argv0 prefixes).
  Fleet fleet("internal_dns_names = [\"*.int.cellos.test\"]\n[network]\nuplink = \"nat\"\nsubnet = \"" +
              cell_subnet() + "\"\nresolvers = [\"" + dns.upstream() + "\"]\n");
  const std::string p = std::to_string(port);
  const std::string script =
      "cat /etc/resolv.conf | grep nameserver; "
      "getent ahostsv4 ok.int.cellos.test | head -n 1 | cut -d' ' -f1; "
      "getent ahostsv4 a.wild.int.cellos.test >/dev/null && echo wild-ok || echo wild-fail; "
      "getent ahostsv4 denied.int.cellos.test >/dev/null && echo denied-resolved || echo denied-refused; "
      "getent ahostsv4 rebind.cellos.test >/dev/null && echo rebind-resolved || echo rebind-refused; "
      "echo big $(getent ahostsv4 big.int.cellos.test | grep -c STREAM); "
      "ip=$(getent ahostsv4 ok.int.cellos.test | head -n 1 | cut -d' ' -f1); " +
      fleet.probe() + " tcp-connect \"$ip\" " + p + "; " +
      fleet.probe() + " udp-send " + host.ip() + " " + std::to_string(dns_port_on_host) + "; true";
  auto spec = make_spec(unique_id("dns"), {"/bin/sh", "-c", script});
  spec["spec"]["authority"]["dnsAuthority"] = {
      {"hostnameAllowlist",
       {"ok.int.cellos.test", "*.wild.int.cellos.test", "rebind.cellos.test", "big.int.cellos.test"}}};
  spec["spec"]["authority"]["egressRules"] = {{{"host", host.ip()}, {"port", port}, {"protocol", "tcp"}}};
  auto r = fleet.run(spec.dump());
  INFO(r.out << r.err);
  REQUIRE(r.status == 0);
  auto lines = lines_of(r.out);
  REQUIRE(lines.size() == 8);
  CHECK(lines[0] == "nameserver 127.0.0.1");
  CHECK(lines[1] == host.ip());
  CHECK(lines[2] == "wild-ok");
  CHECK(lines[3] == "denied-refused");
  CHECK(lines[4] == "rebind-refused");
  CHECK(lines[5] == "big 40");  // all 40: the TCP retry through the proxy got the whole answer
  CHECK_THAT(lines[6], Catch::EndsWith("ok hello"));
  CHECK_THAT(lines[7], Catch::Contains("blocked"));  // a resolver the spec did not declare

  // Nothing for a refused name left the host; the allowed ones did.
  CHECK(dns.queries_for("denied.int.cellos.test") == 0);
  CHECK(dns.queries_for("ok.int.cellos.test") >= 1);
  CHECK(dns.queries_for("big.int.cellos.test") >= 2);  // UDP, then TCP

  auto permitted = events_of(r, "observability.v1.dns_query_permitted");
  REQUIRE_FALSE(permitted.empty());
  const json& first = permitted[0];
  CHECK(first["queryName"] == "ok.int.cellos.test");
  CHECK(first["queryType"] == "A");
  CHECK(first["decision"] == "permitted");
  CHECK(first["reasonCode"] == "allowlist_match");
  CHECK(first["responseCode"] == "NOERROR");
  CHECK(first["answers"] == json::array({host.ip()}));
  CHECK(first["upstreamLatencyUs"].is_number());
  CHECK(first["count"] == 1);
  bool big_tcp = false;
  for (const auto& e : permitted)
    big_tcp |= e["queryName"] == "big.int.cellos.test" && e["transport"] == "tcp";
  CHECK(big_tcp);
  auto refused = events_of(r, "observability.v1.dns_query_refused");
  REQUIRE(refused.size() >= 1);
  CHECK(refused[0]["queryName"] == "denied.int.cellos.test");
  CHECK(refused[0]["reasonCode"] == "hostname_not_allowlisted");
  CHECK(refused[0]["responseCode"] == "REFUSED");
  auto rebind = events_of(r, "observability.v1.dns_authority_rebind_rejected");
  REQUIRE(rebind.size() >= 1);
  CHECK(rebind[0]["queryName"] == "rebind.cellos.test");
  CHECK(rebind[0]["reasonCode"] == "rebind_rejected");
  // ok.int.cellos.test was asked twice: once reported at once, the repeat aggregated into one
  // more report (count 1) at the cell's end.
  int ok_reports = 0;
  for (const auto& e : permitted) ok_reports += e["queryName"] == "ok.int.cellos.test" && e["queryType"] == "A";
  CHECK(ok_reports == 2);

  auto destroyed = r.event("lifecycle.v1.destroyed");
  REQUIRE(destroyed["dns"].is_object());
  CHECK(destroyed["dns"]["permitted"].get<uint64_t>() >= 4);
  CHECK(destroyed["dns"]["refused"].get<uint64_t>() >= 2);
  CHECK(destroyed["dns"]["rebindRejected"].get<uint64_t>() >= 1);
}

TEST_CASE("a spec's dnsAuthority outside the fleet policy runs nothing", "[dns]") {
  Fleet fleet("[policy]\nallowed_dns_names = [\"*.corp.test\"]\n");
  auto spec = make_spec(unique_id("dnspol"), {"/bin/echo", "ran"});
  spec["spec"]["authority"]["dnsAuthority"] = {{"hostnameAllowlist", {"evil.example.com"}}};
  auto r = fleet.run(spec.dump());
  CHECK(r.status != 0);
  CHECK(r.out.empty());
  CHECK_THAT(r.err, Catch::Contains("spec.authority.dnsAuthority.hostnameAllowlist[0]: "
                                    "\"evil.example.com\" is not in policy.allowed_dns_names"));
}

namespace {

// `enforcement`: "nft" (set elements with timeouts) or "bpf" (the cell's BPF allow-list, its
// entries removed by the reactor at their time). A closed destination times out under nft
// (dropped SYN) and is refused at connect() under BPF: either way, no "ok hello".
void ttl_case(const std::string& enforcement) {
  std::string why;
  if (!can_build_test_hosts(&why)) CELLOS_SKIP(why);
  TestHost host(30), other(31);
  const int port = host.tcp();
  other.tcp(port);
  host.start();
  other.start();
  // TTL 2 s; the fleet clamps no lower than 1 s and gives no grace, so 4 s later it is closed.
  Dnsmasq dns({"--address=/ttl.int.cellos.test/" + host.ip(),
               "--address=/unlisted.int.cellos.test/" + other.ip(),
               "--address=/a.wild.int.cellos.test/" + other.ip()},
              2);
  if (!dns.why().empty()) CELLOS_SKIP(dns.why());
  Fleet fleet("internal_dns_names = [\"*.int.cellos.test\"]\n[network]\nuplink = \"nat\"\nsubnet = \"" +
              cell_subnet() + "\"\nresolvers = [\"" + dns.upstream() +
              "\"]\ndns_min_ttl_seconds = 1\ndns_grace_seconds = 0\nenforcement = \"" +
              enforcement + "\"\n");
  const std::string p = std::to_string(port);
  const std::string connect_host = fleet.probe() + " tcp-connect " + host.ip() + " " + p + "; ";
  const std::string script =
      connect_host +                                          // 0: not resolved yet: closed
      "getent ahostsv4 ttl.int.cellos.test >/dev/null; " +
      connect_host +                                          // 1: open
      "getent ahostsv4 unlisted.int.cellos.test >/dev/null && echo unlisted-resolved; " +  // 2
      fleet.probe() + " tcp-connect " + other.ip() + " " + p + "; " +  // 3: no rule names it
      "getent ahostsv4 a.wild.int.cellos.test >/dev/null; " +
      fleet.probe() + " tcp-connect " + other.ip() + " " + p + "; " +  // 4: the wildcard rule
      "sleep 4; " + connect_host +                            // 5: TTL over: closed again
      "getent ahostsv4 ttl.int.cellos.test >/dev/null; " + connect_host + "true";  // 6: open
  auto spec = make_spec(unique_id("dnsttl"), {"/bin/sh", "-c", script});
  spec["spec"]["authority"]["dnsAuthority"] = {
      {"hostnameAllowlist", {"ttl.int.cellos.test", "unlisted.int.cellos.test", "*.wild.int.cellos.test"}}};
  spec["spec"]["authority"]["egressRules"] = {
      {{"host", "ttl.int.cellos.test"}, {"port", port}, {"protocol", "tcp"}},
      {{"host", "*.wild.int.cellos.test"}, {"port", port}, {"protocol", "tcp"}}};
  auto r = fleet.run(spec.dump());
  INFO(r.out << r.err);
  REQUIRE(r.status == 0);
  auto probes = r.event("host.observability.v1.flow_probes");
  if (enforcement == "bpf" && (!probes.is_object() || probes["enforcement"] != "bpf")) {
    CELLOS_SKIP("BPF enforcement is not available here: " + probes.dump());
  }
  auto lines = lines_of(r.out);
  REQUIRE(lines.size() == 7);
  auto closed = [](const std::string& l) {
    return l.ends_with("timeout") || l.find("blocked") != std::string::npos;
  };
  CHECK(closed(lines[0]));
  CHECK_THAT(lines[1], Catch::EndsWith("ok hello"));
  CHECK(lines[2] == "unlisted-resolved");
  CHECK(closed(lines[3]));
  CHECK_THAT(lines[4], Catch::EndsWith("ok hello"));
  CHECK(closed(lines[5]));
  CHECK_THAT(lines[6], Catch::EndsWith("ok hello"));
  // Nothing was resolved at admission: the policy event has no addresses for the name.
  auto policy = r.event("observability.v1.network_policy");
  CHECK(policy["declaredEgress"][0]["resolvedAddresses"].empty());
  auto destroyed = r.event("lifecycle.v1.destroyed");
  CHECK(destroyed["dns"]["addressesGranted"] == 3);
  if (enforcement != "nft") return;
  auto e = r.event("observability.v1.network_enforcement");
  bool counted = false;
  for (const auto& c : e["ruleCounters"])
    if (c["rule"] == "dns") counted = c["packets"].get<uint64_t>() == 3;  // three SYNs let through
  CHECK(counted);
}

}  // namespace

TEST_CASE("an egress rule naming a host opens exactly the addresses the cell's proxy handed "
          "out, until their TTL runs out (nft sets)",
          "[net][dns]") {
  ttl_case("nft");
}

TEST_CASE("an egress rule naming a host opens exactly the addresses the cell's proxy handed "
          "out, until their TTL runs out (BPF allow-list)",
          "[net][dns][ebpf]") {
  ttl_case("bpf");
}

TEST_CASE("a flow opened while its address was open outlives the answer's TTL, and a new flow "
          "after it is closed (nft sets)",
          "[net][dns]") {
  std::string why;
  if (!can_build_test_hosts(&why)) CELLOS_SKIP(why);
  TestHost host(32);
  const int port = host.udp();
  host.start();
  // TTL 2 s, no lower clamp past 1 s, no grace: 4 s later the address is closed.
  Dnsmasq dns({"--address=/flow.int.cellos.test/" + host.ip()}, 2);
  if (!dns.why().empty()) CELLOS_SKIP(dns.why());
  Fleet fleet("internal_dns_names = [\"*.int.cellos.test\"]\n[network]\nuplink = \"nat\"\nsubnet = \"" +
              cell_subnet() + "\"\nresolvers = [\"" + dns.upstream() +
              "\"]\ndns_min_ttl_seconds = 1\ndns_grace_seconds = 0\nenforcement = \"nft\"\n");
  const std::string p = std::to_string(port);
  const std::string script = "getent ahostsv4 flow.int.cellos.test >/dev/null; " + fleet.probe() +
                             " udp-session " + host.ip() + " " + p + " 4; " + fleet.probe() +
                             " udp-send " + host.ip() + " " + p + "; true";
  auto spec = make_spec(unique_id("dnsflow"), {"/bin/sh", "-c", script});
  spec["spec"]["authority"]["dnsAuthority"] = {{"hostnameAllowlist", {"flow.int.cellos.test"}}};
  spec["spec"]["authority"]["egressRules"] = {
      {{"host", "flow.int.cellos.test"}, {"port", port}, {"protocol", "udp"}}};
  auto r = fleet.run(spec.dump());
  INFO(r.out << r.err);
  REQUIRE(r.status == 0);
  auto lines = lines_of(r.out);
  REQUIRE(lines.size() == 3);
  CHECK_THAT(lines[0], Catch::EndsWith("first pong"));
  // The same flow, after the address expired: conntrack's established state carries it.
  CHECK_THAT(lines[1], Catch::EndsWith("second pong"));
  // A new flow (another source port) after the expiry: closed.
  CHECK((lines[2].ends_with("timeout") || lines[2].find("blocked") != std::string::npos));
}
