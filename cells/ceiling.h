// The authority ceiling: what a reactor's parent may give it, so that a reactor running inside
// a cell (docs/nested.md) never admits a cell with more authority than that parent cell holds.
//
// A parent writes it into the nested reactor's fleet.toml as [policy.ceiling] (read-only in the
// nested view); admission then refuses, with one line naming the field, any spec asking for
//   - an egress rule not inside one of the parent's declared rules (same port; the parent's
//     protocol absent or the same; an IP or CIDR inside the parent's IP or CIDR, or the same
//     hostname) — and the parent's nft ruleset still drops anything else on the way out;
//   - a memory or pids limit (the spec's, or the policy default it would get) above the
//     parent's, whose cgroup bounds the nested cells' cgroups anyway;
//   - a secretRef the parent was not granted;
//   - a TTL (the spec's or the policy default) or run timeout beyond the parent's deadline.
// These checks come on top of the nested reactor's own policy: either may refuse.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace cellos::cells {

struct Spec;
struct PolicyConfig;

// One of the parent's egress rules: "host:port" or "host:port/tcp" ("[v6]:port" for IPv6).
struct CeilingEgress {
  std::string host;  // IP, CIDR or hostname, as the parent declared it
  uint16_t port = 0;
  std::optional<std::string> protocol;  // "tcp" | "udp"; absent: both
  std::string text;  // as written, for messages
};

struct AuthorityCeiling {
  std::string parent;  // who set it ("cell ci-42 at depth 1"), for messages
  std::vector<CeilingEgress> egress;  // empty: the parent may not reach anything
  std::optional<uint64_t> memory_max_bytes, pids_max;
  std::vector<std::string> secrets;  // the secret names the parent was granted
  std::optional<int64_t> deadline_unix_seconds;  // when the parent cell's life ends
};

base::Result<CeilingEgress> parse_ceiling_egress(std::string_view text);

// Whether `rule` (host, port, protocol as a spec declares them) lies inside `parent`.
bool egress_within(const std::string& host, uint16_t port,
                   const std::optional<std::string>& protocol, const CeilingEgress& parent);

// The checks above; `now_unix` is the wall clock in seconds (injected for tests).
base::Result<void> check_ceiling(const Spec& spec, const PolicyConfig& policy,
                                 const AuthorityCeiling& ceiling, int64_t now_unix);

}  // namespace cellos::cells
