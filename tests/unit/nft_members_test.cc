// Which host targets are elements of a cell table's targets set (netns/nft_internal.h,
// target_set_members): the install puts exactly these in the set, and the counter read-back
// names each element by the target of its key, so both must agree with the declared-order
// rule: a host no earlier target covers.
#include <arpa/inet.h>

#include <catch2/catch.hpp>
#include <stdexcept>

#include "netns/nft.h"
#include "netns/nft_internal.h"

using namespace cellos;

namespace {

netns::EgressTarget target(const std::string& addr, uint16_t port, uint8_t proto) {
  auto t = netns::parse_target(addr);
  if (!t) throw std::runtime_error(t.error().message());
  t->port = port;
  t->l4proto = proto;
  return *t;
}

}  // namespace

TEST_CASE("target set members: hosts no earlier target covers, each key once", "[egress]") {
  const std::vector<netns::EgressTarget> targets = {
      target("10.0.0.0/24", 80, IPPROTO_TCP),  // 0 prefix: a rule
      target("10.0.0.5", 80, IPPROTO_TCP),     // 1 covered by 0: a rule
      target("10.0.0.5", 81, IPPROTO_TCP),     // 2 another port: member
      target("10.0.0.5", 81, IPPROTO_TCP),     // 3 the same as 2: a rule
      target("10.0.0.5", 81, IPPROTO_UDP),     // 4 another protocol: member
      target("10.0.1.5", 80, IPPROTO_TCP),     // 5 outside 0: member
      target("::a00:5", 81, IPPROTO_TCP),      // 6 IPv6, its first bytes zero: member
      target("fd00::/64", 443, IPPROTO_TCP),   // 7 prefix: a rule
      target("fd00::1", 443, IPPROTO_TCP),     // 8 covered by 7: a rule
      target("10.0.0.9", 80, IPPROTO_TCP),     // 9 covered by 0, declared after 7: a rule
  };
  const std::vector<bool> want = {false, false, true, false, true, true, true, false, false, false};
  CHECK(netns::target_set_members(targets) == want);
  // A later prefix covers nothing declared before it.
  const std::vector<netns::EgressTarget> later = {target("10.0.0.5", 80, IPPROTO_TCP),
                                                  target("10.0.0.0/8", 80, IPPROTO_TCP)};
  CHECK(netns::target_set_members(later) == std::vector<bool>{true, false});
  CHECK(netns::target_set_members({}).empty());
}

TEST_CASE("target set keys: address . protocol . port in 32-bit registers, per family", "[egress]") {
  const auto v4 = netns::set_key(target("10.1.2.3", 443, IPPROTO_TCP));
  REQUIRE(v4.len == 12);
  const std::vector<uint8_t> want4 = {10, 1, 2, 3, IPPROTO_TCP, 0, 0, 0, 0x01, 0xbb, 0, 0};
  CHECK(std::vector<uint8_t>(v4.bytes.begin(), v4.bytes.begin() + v4.len) == want4);
  const auto v6 = netns::set_key(target("fd00::1", 53, IPPROTO_UDP));
  REQUIRE(v6.len == 24);
  CHECK(v6.bytes[0] == 0xfd);
  CHECK(v6.bytes[15] == 1);
  CHECK(v6.bytes[16] == IPPROTO_UDP);
  CHECK(v6.bytes[20] == 0);
  CHECK(v6.bytes[21] == 53);
}
