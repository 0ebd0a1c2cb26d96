// The loader's pure parts: allow-list trie keys and the names records carry.
#include <arpa/inet.h>

#include <catch2/catch.hpp>
#include <cstring>

#include "ebpf/abi.h"

using namespace cellos::ebpf;

namespace {

AllowRule rule4(const char* addr, int prefix, uint16_t port, uint8_t proto) {
  AllowRule r;
  r.family = AF_INET;
  REQUIRE(inet_pton(AF_INET, addr, r.addr.data()) == 1);
  r.prefix_len = prefix;
  r.port = port;
  r.l4proto = proto;
  return r;
}

}  // namespace

TEST_CASE("an allow rule's trie key covers the fixed fields and the prefix, host bits cleared") {
  const cellos_allow_key k = abi::allow_key(42, rule4("172.30.7.9", 20, 443, IPPROTO_TCP));
  CHECK(k.prefixlen == CELLOS_ALLOW_FIXED_BITS + 20);
  CHECK(k.cgroup_id == 42);
  CHECK(k.port == 443);
  CHECK(k.l4proto == IPPROTO_TCP);
  CHECK(k.family == CELLOS_AF_INET);
  const uint8_t want[16] = {172, 30, 0, 0};  // /20 keeps 172.30.0000xxxx: .7 -> .0
  CHECK(std::memcmp(k.addr, want, 16) == 0);
  // The trie reads the data right after prefixlen: the key must be packed.
  CHECK(sizeof(cellos_allow_key) == 4 + CELLOS_ALLOW_FIXED_BITS / 8 + 16);
}

TEST_CASE("an IPv6 allow rule keeps 128 address bits and a host rule the whole address") {
  AllowRule r;
  r.family = AF_INET6;
  REQUIRE(inet_pton(AF_INET6, "fd00::1", r.addr.data()) == 1);
  r.prefix_len = 128;
  r.port = 53;
  r.l4proto = IPPROTO_UDP;
  const cellos_allow_key k = abi::allow_key(7, r);
  CHECK(k.prefixlen == CELLOS_ALLOW_FIXED_BITS + 128);
  CHECK(k.family == CELLOS_AF_INET6);
  CHECK(std::memcmp(k.addr, r.addr.data(), 16) == 0);
}

TEST_CASE("flow keys decode with the cell's side as local and reasons have their event names") {
  cellos_flow_key k{};
  k.cgroup_id = 9;
  k.family = CELLOS_AF_INET;
  k.l4proto = IPPROTO_UDP;
  k.local_port = 40000;
  k.remote_port = 53;
  const uint8_t lo[4] = {127, 0, 0, 1};
  std::memcpy(k.local_addr, lo, 4);
  std::memcpy(k.remote_addr, lo, 4);
  cellos_flow_value v{};
  v.flags = CELLOS_FLOW_F_DENIED;
  v.reason = CELLOS_REASON_EGRESS_DEFAULT_DENY;
  const Flow f = abi::decode(k, v);
  CHECK(describe(f.key) == "udp 127.0.0.1:40000 -> 127.0.0.1:53 cgroup 9");
  CHECK(f.counters.denied());
  CHECK(reason_code(f.counters.reason) == "egress_default_deny");
  CHECK(reason_code(DenyReason::connect_default_deny) == "connect_default_deny");
  const cellos_flow_key back = abi::encode(f.key);
  CHECK(std::memcmp(&back, &k, sizeof k) == 0);  // drain's keys delete the entries they name
  CHECK(sizeof(cellos_flow_key) == 48);
  CHECK(sizeof(cellos_flow_record) == 128);
}
