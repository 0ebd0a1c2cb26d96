// Egress admission (policy.allowed_egress_hosts, policy.forbid_egress), the expansion of rules
// into nft targets, and the netns library against the real kernel (a namespace of its own).
#include <arpa/inet.h>
#include <unistd.h>

#include <net/if.h>

#include <catch2/catch.hpp>

#include "cells/config.h"
#include "cells/egress.h"
#include "cells/spec.h"
#include "netns/cell_net.h"
#include "netns/nft.h"
#include "netns/uplink.h"
#include "tests/support/test_support.h"

using namespace cellos;
using Catch::Contains;

namespace {

cells::Spec with_rules(std::vector<cells::EgressRule> rules) {
  cells::Spec s;
  s.id = "t";
  s.run.argv = {"/bin/true"};
  s.egress_rules = std::move(rules);
  return s;
}

}  // namespace

TEST_CASE("policy.forbid_egress rejects the first egress rule, by index", "[egress]") {
  cells::PolicyConfig policy;
  policy.forbid_egress = true;
  CHECK(cells::check_policy(with_rules({}), policy).ok());
  auto r = cells::check_policy(with_rules({{"10.0.0.1", 443, "tcp", {}}}), policy);
  REQUIRE(!r.ok());
  CHECK_THAT(r.error().message(), Contains("spec.authority.egressRules[0]") &&
                                      Contains("policy.forbid_egress"));
}

TEST_CASE("policy.allowed_egress_hosts: exact names, one leading *., IPs and CIDRs", "[egress]") {
  cells::PolicyConfig policy;
  policy.allowed_egress_hosts = {"registry.npmjs.org", "*.example.com", "10.1.0.0/16",
                                 "192.168.7.7"};
  auto allowed = [&](const std::string& host) {
    return cells::check_policy(with_rules({{host, 443, std::nullopt, {}}}), policy).ok();
  };
  CHECK(allowed("registry.npmjs.org"));
  CHECK(allowed("Registry.NPMJS.org."));
  CHECK(allowed("a.example.com"));
  CHECK(allowed("a.b.example.com"));
  CHECK(allowed("10.1.2.3"));
  CHECK(allowed("10.1.128.0/17"));
  CHECK(allowed("192.168.7.7"));
  CHECK_FALSE(allowed("example.com"));        // "*." is strictly below the suffix
  CHECK_FALSE(allowed("badexample.com"));
  CHECK_FALSE(allowed("npmjs.org"));
  CHECK_FALSE(allowed("10.2.0.1"));
  CHECK_FALSE(allowed("10.0.0.0/8"));         // wider than the entry
  CHECK_FALSE(allowed("192.168.7.8"));
  auto r = cells::check_policy(
      with_rules({{"a.example.com", 1, {}, {}}, {"10.1.0.1", 2, {}, {}}, {"x.y", 3, {}, {}}}),
      policy);
  REQUIRE(!r.ok());
  CHECK(r.error().message() ==
        "spec.authority.egressRules[2].host: \"x.y\" is not in policy.allowed_egress_hosts");
}

TEST_CASE("an empty allow-list admits any declared host", "[egress]") {
  CHECK(cells::check_policy(with_rules({{"anything.example", 1, {}, {}}}), {}).ok());
}

TEST_CASE("egress rules expand to one nft target per address and protocol", "[egress]") {
  auto s = with_rules({{"10.0.0.9", 443, "tcp", {}},
                       {"10.2.0.0/15", 53, std::nullopt, {}},
                       {"pkg.test", 80, "udp", {"172.30.9.1", "fd00::1"}}});
  auto t = cells::egress_targets(s);
  REQUIRE(t.ok());
  REQUIRE(t->size() == 1 + 2 + 2);
  CHECK((*t)[0].tag == "egress[0]");
  CHECK((*t)[0].l4proto == IPPROTO_TCP);
  CHECK((*t)[1].l4proto == IPPROTO_TCP);
  CHECK((*t)[2].l4proto == IPPROTO_UDP);
  CHECK((*t)[1].prefix_len == 15);
  CHECK((*t)[4].family == AF_INET6);
  CHECK((*t)[4].tag == "egress[2]");
  // An unresolved name is an error, never an empty (open or silently closed) rule.
  CHECK_FALSE(cells::egress_targets(with_rules({{"pkg.test", 80, {}, {}}})).ok());
}

TEST_CASE("parse_target clears host bits and refuses bad prefixes", "[egress]") {
  auto t = netns::parse_target("10.1.2.3/8");
  REQUIRE(t.ok());
  char buf[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, t->addr.data(), buf, sizeof buf);
  CHECK(std::string(buf) == "10.0.0.0");
  CHECK_FALSE(netns::parse_target("10.0.0.0/33").ok());
  CHECK_FALSE(netns::parse_target("10.0.0.0/").ok());
  CHECK_FALSE(netns::parse_target("host.name").ok());
  CHECK(netns::parse_target("fd00::/8").ok());
}

TEST_CASE("network.test_fault_ruleset is a boolean key of [network]", "[egress]") {
  auto c = cells::parse_config("[network]\ntest_fault_ruleset = true\n", "fleet.toml");
  CHECK(c.network.test_fault_ruleset);
  CHECK_FALSE(cells::default_config().network.test_fault_ruleset);
}

TEST_CASE("a 200-rule cell ruleset installs in one batch and every counter reads back",
          "[egress][kernel]") {
  if (::geteuid() != 0) CELLOS_SKIP("needs root for a network namespace");
  netns::CellNetOptions o;
  for (int i = 0; i < 200; ++i) {
    auto t = netns::parse_target("10.9." + std::to_string(i) + ".1");
    REQUIRE(t.ok());
    t->port = static_cast<uint16_t>(1000 + i);
    t->tag = "egress[" + std::to_string(i) + "]";
    o.ruleset.targets.push_back(*t);
  }
  auto net = netns::CellNetwork::create(o);
  REQUIRE(net.ok());
  CHECK((*net)->rules_applied() == 204);
  CHECK_FALSE((*net)->address().has_value());
  auto c = (*net)->counters();
  REQUIRE(c.ok());
  REQUIRE(c->size() == 204);
  CHECK((*c)[0].tag == "loopback");
  CHECK((*c)[1].tag == "established");
  CHECK((*c)[2].tag == "egress[0]");
  CHECK((*c)[201].tag == "egress[199]");
  CHECK((*c)[203].tag == "drop");
}

TEST_CASE("a batch the kernel refuses leaves the namespace without a table", "[egress][kernel]") {
  if (::geteuid() != 0) CELLOS_SKIP("needs root for a network namespace");
  netns::CellNetOptions o;
  o.ruleset.append_invalid_rule = true;
  auto net = netns::CellNetwork::create(o);
  REQUIRE_FALSE(net.ok());
  CHECK(net.error().err == ENOENT);
  CHECK_THAT(net.error().message(), Contains("nft table inet cellos"));
}

TEST_CASE("the uplink's address pool hands out fresh addresses first, then the oldest released, "
          "and never an address another reactor of the host holds",
          "[egress][kernel]") {
  if (::geteuid() != 0) CELLOS_SKIP("needs root for a bridge");
  test::TempDir dir;
  const std::string id = "pool" + std::to_string(::getpid());
  const std::string subnet = "10.214." + std::to_string(::getpid() % 250) + ".0/24";
  auto up = netns::HostUplink::create({id, dir.path(), subnet});
  REQUIRE(up.ok());
  // A second reactor of the same host id (a concurrent `run`) joins the same bridge.
  auto second = netns::HostUplink::create({id, dir.path(), subnet});
  REQUIRE(second.ok());
  CHECK((*second)->bridge_index() == (*up)->bridge_index());
  std::vector<netns::AddressLease> leases;
  for (int i = 0; i < 253; ++i) {  // .2 .. .254
    auto l = (*up)->lease();
    REQUIRE(l.ok());
    leases.push_back(*l);
  }
  CHECK_FALSE((*up)->lease().ok());
  CHECK_FALSE((*second)->lease().ok());  // every address is held by the first
  (*up)->release(leases[7]);
  (*up)->release(leases[3]);
  auto again = (*up)->lease();
  REQUIRE(again.ok());
  CHECK(again->index == leases[7].index);  // the longest-released first
  auto theirs = (*second)->lease();
  REQUIRE(theirs.ok());
  CHECK(theirs->index == leases[3].index);  // the one left
  CHECK(leases.front().index == 2);
  CHECK(leases.back().index == 254);
  const std::string bridge = netns::HostUplink::bridge_name(id);
  second->reset();  // not the last: the bridge stays for the first
  CHECK(::if_nametoindex(bridge.c_str()) != 0);
  up->reset();  // the last one out removes it
  CHECK(::if_nametoindex(bridge.c_str()) == 0);
}
