// What the ruleset's install (nft.cc) and the read-back of its counters (nft_counters.cc)
// share: the cell table's set names (why targets and hits are sets: nft.cc) and the owner of a
// libnftnl rule.
#pragma once

#include <libnftnl/rule.h>

#include <memory>

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

}  // namespace cellos::netns
