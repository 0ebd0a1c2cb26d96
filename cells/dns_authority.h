// spec.authority.dnsAuthority (CellOS `DnsAuthority`): the names a cell may resolve, and the
// resolvers its queries go to.
//
//   "dnsAuthority": {
//     "hostnameAllowlist": ["registry.npmjs.org", "*.githubusercontent.com"],
//     "resolvers": [{"resolverId": "corp", "endpoint": "10.0.0.53:53", "protocol": "do53-udp"}]
//   }
//
// An allow-list entry is a literal host name or one leading `*.` over a name of two labels or
// more (`*.example.com` matches every name strictly below example.com, never example.com itself
// and never a bare `*.com`). Names compare case-insensitively, without a trailing dot.
// Resolvers: do53 only (`do53-udp`, `do53-tcp`: plain DNS, which the reactor's proxy speaks over
// UDP and TCP either way); CellOS's `dot`, `doh` and `doq` are refused by name. An endpoint is an
// address, never a name ("ip", "ip:port", "[v6]:port"; port 53 when absent). No resolvers: the
// fleet's `[network] resolvers` (or the host's /etc/resolv.conf) answer the proxy.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/json.h"
#include "base/result.h"

namespace cellos::cells {

struct PolicyConfig;

inline constexpr size_t kMaxDnsAllowlist = 256;
inline constexpr size_t kMaxDnsResolvers = 8;

struct DnsResolver {
  std::string id;        // resolverId
  std::string endpoint;  // as declared
  std::string protocol;  // "do53-udp" | "do53-tcp"
  std::string address;   // the endpoint's address, text ("10.0.0.53", "fd00::53")
  uint16_t port = 53;
};

struct DnsAuthority {
  std::vector<std::string> hostname_allowlist;  // lower case, no trailing dot
  std::vector<DnsResolver> resolvers;
};

// Parses the value of `path` (spec.authority.dnsAuthority). Errors name the field:
// `spec.authority.dnsAuthority.hostnameAllowlist[2]: "*.com" ...`.
base::Result<DnsAuthority> parse_dns_authority(const base::Json& v, const std::string& path);

// True when allow-list entry `pattern` (as parse_dns_authority keeps it) covers `name` (any
// case, with or without a trailing dot).
bool dns_name_matches(std::string_view pattern, std::string_view name);
// True when some entry of `allowlist` covers `name`.
bool dns_name_allowed(const std::vector<std::string>& allowlist, std::string_view name);

// Fleet policy over a spec's dnsAuthority: every allow-list entry inside
// policy.allowed_dns_names (when that is non-empty: an entry "*.x" there covers "*.a.x" and
// "a.x" in the spec), every resolver address inside policy.allowed_dns_resolvers (addresses or
// CIDRs; when non-empty), nothing at all under policy.forbid_egress.
base::Result<void> check_dns_policy(const DnsAuthority& dns, const PolicyConfig& policy);

}  // namespace cellos::cells
