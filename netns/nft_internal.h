// What the ruleset's install (nft.cc) and the read-back of its counters (nft_counters.cc)
// share: the cell table's set names (why targets and hits are sets: nft.cc), the key of a
// host target's element, which targets are elements, and the owner of a libnftnl rule.
#pragma once

#include <libnftnl/rule.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "netns/nft.h"

namespace cellos::netns {

struct RuleFree {
  void operator()(nftnl_rule* r) const { nftnl_rule_free(r); }
};
using RulePtr = std::unique_ptr<nftnl_rule, RuleFree>;

// The host targets of the egress allow-list, one hashed set per family.
inline constexpr const char* kTargets4 = "targets4";
inline constexpr const char* kTargets6 = "targets6";
// Their counters: dynamic sets whose elements a target's first packet makes.
inline constexpr const char* kHits4 = "hits4";
inline constexpr const char* kHits6 = "hits6";

// A set element's key: address . l4proto . port, each field in the 32-bit registers the rules
// load them into (4 + 4 + 4 bytes for IPv4, 16 + 4 + 4 for IPv6). Fixed-size: no allocation
// per element.
struct SetKey {
  std::array<uint8_t, 24> bytes{};
  uint32_t len = 0;
  std::string_view view() const { return {reinterpret_cast<const char*>(bytes.data()), len}; }
};
SetKey set_key(const EgressTarget& t);

// Per target: whether it is an element of its family's targets set (nft.cc says when that
// keeps the declared order's first match). The install and the counter read-back both use it,
// so an element's key names exactly one target: the tags are not stored in the kernel.
std::vector<bool> target_set_members(const std::vector<EgressTarget>& targets);

}  // namespace cellos::netns
