#include "cells/ceiling.h"

#include <algorithm>
#include <cstring>

#include "base/text.h"
#include "cells/config.h"
#include "cells/spec.h"
#include "netns/nft.h"

namespace cellos::cells {
namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// `inner` (IP or CIDR) inside `outer` (IP or CIDR): same family, outer's prefix no longer,
// and the first outer.prefix_len bits equal.
bool prefix_within(const netns::EgressTarget& inner, const netns::EgressTarget& outer) {
  if (inner.family != outer.family || inner.prefix_len < outer.prefix_len) return false;
  int bits = outer.prefix_len;
  for (int i = 0; bits > 0; ++i, bits -= 8) {
    uint8_t mask = bits >= 8 ? 0xff : static_cast<uint8_t>(0xff << (8 - bits));
    if ((inner.addr[i] & mask) != (outer.addr[i] & mask)) return false;
  }
  return true;
}

std::string rule_text(const EgressRule& r) {
  const bool v6 = r.host.find(':') != std::string::npos;
  return (v6 ? "[" + r.host + "]" : r.host) + ":" + std::to_string(r.port) +
         (r.protocol ? "/" + *r.protocol : "");
}

std::string ceiling_list(const AuthorityCeiling& c) {
  std::string out;
  for (const auto& e : c.egress) out += (out.empty() ? "" : ", ") + e.text;
  return out.empty() ? "none" : out;
}

std::string who(const AuthorityCeiling& c) {
  return c.parent.empty() ? "the parent" : c.parent;
}

}  // namespace

base::Result<CeilingEgress> parse_ceiling_egress(std::string_view text) {
  CeilingEgress e;
  e.text = std::string(text);
  std::string s(text);
  const auto bad = [&](const std::string& why) {
    return base::value_error("policy.ceiling.egress", "\"" + e.text + "\": " + why);
  };
  if (size_t slash = s.rfind('/'); slash != std::string::npos && slash > s.rfind(':')) {
    std::string proto = s.substr(slash + 1);
    if (proto == "tcp" || proto == "udp") {
      e.protocol = proto;
      s.resize(slash);
    }
  }
  size_t colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0) return bad("must be host:port[/tcp|/udp]");
  std::string host = s.substr(0, colon);
  if (host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const std::string port = s.substr(colon + 1);
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos)
    return bad("the port must be 1..65535");
  const unsigned long p = std::stoul(port);
  if (p < 1 || p > 65535) return bad("the port must be 1..65535");
  if (host.empty()) return bad("must name a host");
  e.host = host;
  e.port = static_cast<uint16_t>(p);
  return e;
}

bool egress_within(const std::string& host, uint16_t port,
                   const std::optional<std::string>& protocol, const CeilingEgress& parent) {
  if (port != parent.port) return false;
  if (parent.protocol && protocol != parent.protocol) return false;
  auto inner = netns::parse_target(host);
  auto outer = netns::parse_target(parent.host);
  if (inner.ok() != outer.ok()) return false;  // a name is covered only by the same name
  if (!inner.ok()) return lower(host) == lower(parent.host);
  return prefix_within(*inner, *outer);
}

base::Result<void> check_ceiling(const Spec& spec, const PolicyConfig& policy,
                                 const AuthorityCeiling& c, int64_t now_unix) {
  for (size_t i = 0; i < spec.egress_rules.size(); ++i) {
    const auto& r = spec.egress_rules[i];
    const bool inside = std::any_of(c.egress.begin(), c.egress.end(), [&](const CeilingEgress& p) {
      return egress_within(r.host, r.port, r.protocol, p);
    });
    if (!inside)
      return base::value_error(
          "spec.authority.egressRules[" + std::to_string(i) + "]",
          rule_text(r) + " is wider than " + who(c) + "'s egress (policy.ceiling.egress: " +
              ceiling_list(c) + ")");
  }
  const uint64_t memory = spec.run.limits.memory_max_bytes.value_or(policy.default_limits.memory_max_bytes);
  if (c.memory_max_bytes && memory > *c.memory_max_bytes)
    return base::value_error(
        spec.run.limits.memory_max_bytes ? "spec.run.limits.memoryMaxBytes"
                                         : "policy.default_limits.memory_max_bytes",
        std::to_string(memory) + " exceeds " + who(c) + "'s memory limit of " +
            std::to_string(*c.memory_max_bytes) + " (policy.ceiling.memory_max_bytes)");
  const uint64_t pids = spec.run.limits.pids_max.value_or(policy.default_limits.pids_max);
  if (c.pids_max && pids > *c.pids_max)
    return base::value_error(
        spec.run.limits.pids_max ? "spec.run.limits.pidsMax" : "policy.default_limits.pids_max",
        std::to_string(pids) + " exceeds " + who(c) + "'s pids limit of " +
            std::to_string(*c.pids_max) + " (policy.ceiling.pids_max)");
  for (size_t i = 0; i < spec.secret_refs.size(); ++i)
    if (std::find(c.secrets.begin(), c.secrets.end(), spec.secret_refs[i]) == c.secrets.end())
      return base::value_error("spec.authority.secretRefs[" + std::to_string(i) + "]",
                               "\"" + spec.secret_refs[i] + "\" was not granted to " + who(c) +
                                   " (policy.ceiling.secrets)");
  if (c.deadline_unix_seconds) {
    const int64_t left = *c.deadline_unix_seconds - now_unix;
    const uint64_t ttl = spec.ttl_seconds.value_or(policy.default_ttl_seconds);
    if (left <= 0)
      return base::value_error("spec.lifetime.ttlSeconds",
                               who(c) + "'s life has ended (policy.ceiling.deadline_unix_seconds)");
    if (ttl > static_cast<uint64_t>(left))
      return base::value_error(
          spec.ttl_seconds ? "spec.lifetime.ttlSeconds" : "policy.default_ttl_seconds",
          std::to_string(ttl) + " s outlives " + who(c) + ", which has " + std::to_string(left) +
              " s left (policy.ceiling.deadline_unix_seconds)");
    if (spec.run.timeout_ms && *spec.run.timeout_ms / 1000 > static_cast<uint64_t>(left))
      return base::value_error("spec.run.timeoutMs",
                               std::to_string(*spec.run.timeout_ms) + " ms outlives " + who(c) +
                                   ", which has " + std::to_string(left) + " s left");
  }
  return base::ok();
}

}  // namespace cellos::cells
