// A cell's DNS authority at run time (cells/cell_dns.h) on a real ring with real DNS servers
// (two dnsmasq on loopback, answering one name with different addresses, so the proxy's
// round-robin over them makes a name "rotate"): what answers add to and take from the cell's
// nft sets, the per-name cap, rebind addresses, and event aggregation. Traffic: loopback only.
#include "cells/cell_dns.h"

#include <arpa/inet.h>
#include <ldns/ldns.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>

#include "base/completion.h"
#include "base/fd.h"
#include "reactor/ring.h"
#include "tests/support/dnsmasq.h"
#include "tests/support/test_support.h"

namespace cellos::cells {
namespace {

using namespace std::chrono_literals;

std::vector<uint8_t> query(const std::string& name, uint16_t id) {
  ldns_pkt* p = nullptr;
  REQUIRE(ldns_pkt_query_new_frm_str(&p, name.c_str(), LDNS_RR_TYPE_A, LDNS_RR_CLASS_IN, LDNS_RD) ==
          LDNS_STATUS_OK);
  ldns_pkt_set_id(p, id);
  uint8_t* buf = nullptr;
  size_t size = 0;
  REQUIRE(ldns_pkt2wire(&buf, p, &size) == LDNS_STATUS_OK);
  std::vector<uint8_t> out(buf, buf + size);
  std::free(buf);
  ldns_pkt_free(p);
  return out;
}

// Sends one query to the proxy and runs the ring until its answer arrives.
void ask(reactor::Ring& ring, uint16_t port, const std::string& name, uint16_t id) {
  base::Fd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  auto q = query(name, id);
  REQUIRE(::sendto(s.get(), q.data(), q.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof a) > 0);
  bool expired = false;
  base::Timer guard(&ring);
  guard.start(10s, [&](int res) { expired = res == -ETIME; });
  pollfd p{s.get(), POLLIN, 0};
  while (::poll(&p, 1, 0) != 1 && !expired) REQUIRE(ring.run_once().ok());
  guard.cancel();
  while (guard.armed()) REQUIRE(ring.run_once().ok());
  REQUIRE_FALSE(expired);
}

std::string addr_of(const netns::EgressTarget& t) {
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(t.family, t.addr.data(), buf, sizeof buf);
  return buf;
}

TEST_CASE("rebind addresses: private, loopback, link-local, unspecified and the host's own",
          "[dns]") {
  for (const char* a : {"10.1.2.3", "127.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.1.1",
                        "169.254.169.254", "100.64.0.1", "0.0.0.0", "::1", "::", "fe80::1",
                        "fd00::1", "::ffff:10.0.0.1", "::ffff:127.0.0.1"})
    CHECK(is_rebind_address(a, {}));
  // Only classified, never contacted: the first address past each private range's edge.
  for (const char* a : {"11.0.0.1", "172.32.0.1", "192.169.0.1", "100.128.0.1", "fe00::1",
                        "::ffff:172.32.0.1"})
    CHECK_FALSE(is_rebind_address(a, {}));
  CHECK(is_rebind_address("172.32.0.1", {"172.32.0.1"}));  // the host's own address
}

TEST_CASE("dns upstreams: the spec's resolvers, else the fleet's", "[dns]") {
  DnsAuthority d;
  d.resolvers = {{"a", "10.0.0.53", "do53-udp", "10.0.0.53", 53},
                 {"b", "[fd00::53]:5353", "do53-tcp", "fd00::53", 5353}};
  auto u = dns_upstreams(d, {"127.0.0.1:53"});
  REQUIRE(u.ok());
  CHECK(*u == std::vector<std::string>{"10.0.0.53:53", "[fd00::53]:5353"});
  d.resolvers.clear();
  u = dns_upstreams(d, {"127.0.0.1:53"});
  REQUIRE(u.ok());
  CHECK(*u == std::vector<std::string>{"127.0.0.1:53"});
}

TEST_CASE("answers add their addresses to the cell's sets on the named rule's port, and a rotating "
          "name keeps at most the cap, the oldest evicted",
          "[dns][cell_dns]") {
  test::Dnsmasq one({"--address=/cdn.cellos.test/10.99.0.1"}, 120);
  test::Dnsmasq two({"--address=/cdn.cellos.test/10.99.0.2"}, 120);
  if (!one.why().empty()) CELLOS_SKIP(one.why());
  auto r = reactor::Ring::create({});
  REQUIRE(r.ok());
  auto& ring = **r;

  struct Call {
    std::vector<netns::DnsSetElement> add;
    std::vector<netns::EgressTarget> del;
  };
  std::vector<Call> calls;
  std::vector<sinks::EventData> events;
  CellDnsOptions o;
  o.cell_id = "c1";
  o.authority.hostname_allowlist = {"cdn.cellos.test", "other.cellos.test"};
  o.internal_names = {"*.cellos.test"};  // its test addresses are private ones
  o.upstreams = {one.upstream(), two.upstream()};
  o.listen_port = 0;
  o.named_rules = {EgressRule{"cdn.cellos.test", 443, std::string("tcp"), {}}};
  o.min_ttl = 30s;
  o.max_ttl = 60s;  // 120 s answers are clamped to 60
  o.grace = 5s;
  o.max_addresses_per_name = 1;
  o.update_sets = [&](const std::vector<netns::DnsSetElement>& add,
                      const std::vector<netns::EgressTarget>& del) -> base::Result<void> {
    calls.push_back({add, del});
    return base::ok();
  };
  o.emit = [&](sinks::EventData d) { events.push_back(std::move(d)); };
  auto dns = CellDns::open(ring, std::move(o));
  REQUIRE(dns.ok());
  const uint16_t port = (*dns)->port();

  ask(ring, port, "cdn.cellos.test", 1);  // first upstream: .1
  REQUIRE(calls.size() == 1);
  REQUIRE(calls[0].add.size() == 1);
  CHECK(addr_of(calls[0].add[0].target) == "10.99.0.1");
  CHECK(calls[0].add[0].target.port == 443);
  CHECK(calls[0].add[0].target.l4proto == IPPROTO_TCP);
  CHECK(calls[0].add[0].timeout_ms == 65000);  // min(120, 60) + 5
  CHECK(calls[0].del.empty());

  ask(ring, port, "cdn.cellos.test", 2);  // second upstream: .2 pushes .1 out
  REQUIRE(calls.size() == 2);
  REQUIRE(calls[1].add.size() == 1);
  CHECK(addr_of(calls[1].add[0].target) == "10.99.0.2");
  REQUIRE(calls[1].del.size() == 1);
  CHECK(addr_of(calls[1].del[0]) == "10.99.0.1");

  ask(ring, port, "cdn.cellos.test", 3);  // .1 again: new, and .2 goes
  REQUIRE(calls.size() == 3);
  CHECK(addr_of(calls[2].add.at(0).target) == "10.99.0.1");
  CHECK(addr_of(calls[2].del.at(0)) == "10.99.0.2");

  // A name no egress rule names opens nothing.
  ask(ring, port, "other.cellos.test", 4);
  CHECK(calls.size() == 3);

  auto summary = (*dns)->finish();
  CHECK(summary.queries == 4);
  CHECK(summary.permitted == 4);
  CHECK(summary.addresses_granted == 3);
  CHECK(summary.addresses_evicted == 2);
  // Aggregation: cdn.cellos.test A permitted three times: one event at once, one at the end
  // counting the two repeats; other.cellos.test once.
  std::vector<uint64_t> cdn_counts;
  for (const auto& e : events) {
    const auto* q = std::get_if<sinks::DnsQueryData>(&e);
    REQUIRE(q);
    if (q->query_name == "cdn.cellos.test") cdn_counts.push_back(q->count);
  }
  CHECK(cdn_counts == std::vector<uint64_t>{1, 2});
  CHECK(events.size() == 3);
}

}  // namespace
}  // namespace cellos::cells
