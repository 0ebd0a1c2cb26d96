// A parsed spec against the fleet's policy (fleet.toml [policy]): argv[0] prefixes, TTL and
// limits caps, secret grants, delivery, backend, DNS authority and egress. Parsing (spec.cc)
// only checks what the spec says; everything here depends on the host it would run on.
#include <time.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "base/text.h"
#include "cells/config.h"
#include "cells/dns_authority.h"
#include "cells/spec.h"
#include "cells/spec_text.h"
#include "netns/nft.h"

namespace cellos::cells {
namespace {

using base::Result;
using base::value_error;
using namespace spec_text;

constexpr uint64_t kNoMax = std::numeric_limits<uint64_t>::max();

// `inner` (an address or CIDR) lies inside `outer`: same family, at least as long a prefix,
// equal under outer's mask.
bool within_network(const netns::EgressTarget& inner, const netns::EgressTarget& outer) {
  if (inner.family != outer.family || inner.prefix_len < outer.prefix_len) return false;
  for (int bit = 0; bit < outer.prefix_len; ++bit) {
    uint8_t m = static_cast<uint8_t>(0x80 >> (bit % 8));
    if ((inner.addr[bit / 8] & m) != (outer.addr[bit / 8] & m)) return false;
  }
  return true;
}

// An entry of policy.allowed_egress_hosts: a name (exact, case-insensitive), "*.suffix" (any
// name strictly below suffix), or an IP/CIDR (any rule address or network inside it).
bool egress_host_allowed(const std::string& host, const std::string& entry) {
  auto host_net = netns::parse_target(host);
  auto entry_net = netns::parse_target(entry);
  if (host_net.ok() || entry_net.ok())
    return host_net.ok() && entry_net.ok() && within_network(*host_net, *entry_net);
  const std::string h = lower(host);
  if (entry.starts_with("*.")) {
    const std::string suffix = lower(std::string_view(entry).substr(1));  // ".example.com"
    return h.size() > suffix.size() && h.ends_with(suffix);
  }
  return h == lower(entry);
}

Result<void> check_egress_policy(const Spec& spec, const PolicyConfig& policy) {
  for (size_t i = 0; i < spec.egress_rules.size(); ++i) {
    const std::string path = "spec.authority.egressRules[" + std::to_string(i) + "]";
    const std::string& host = spec.egress_rules[i].host;
    if (policy.forbid_egress)
      return value_error(path, "egress to " + json_quoted(host) +
                                   " is refused: policy.forbid_egress is set");
    if (policy.allowed_egress_hosts.empty()) continue;
    bool ok = std::any_of(policy.allowed_egress_hosts.begin(), policy.allowed_egress_hosts.end(),
                          [&](const std::string& e) { return egress_host_allowed(host, e); });
    if (!ok)
      return value_error(path + ".host",
                         json_quoted(host) + " is not in policy.allowed_egress_hosts");
  }
  return base::ok();
}

Result<void> over_policy(const std::string& field, uint64_t value, const std::string& key,
                         uint64_t cap) {
  return value_error(field, std::to_string(value) + " exceeds the policy cap of " +
                                std::to_string(cap) + " (policy.max_limits." + key + ")");
}

// A spec's limits may only lower what the host allows: a spec that could lift its own limits
// would make them advice.
Result<void> check_limits_policy(const Limits& l, const MaxLimits& max) {
  const std::string path = "spec.run.limits";
  if (l.memory_max_bytes && *l.memory_max_bytes > max.memory_max_bytes)
    return over_policy(path + ".memoryMaxBytes", *l.memory_max_bytes, "memory_max_bytes",
                       max.memory_max_bytes);
  if (l.pids_max && *l.pids_max > max.pids_max)
    return over_policy(path + ".pidsMax", *l.pids_max, "pids_max", max.pids_max);
  if (l.graceful_shutdown_seconds && *l.graceful_shutdown_seconds > max.graceful_shutdown_seconds)
    return over_policy(path + ".gracefulShutdownSeconds", *l.graceful_shutdown_seconds,
                       "graceful_shutdown_seconds", max.graceful_shutdown_seconds);
  if (l.cpu_max) {
    const CpuMax& c = *l.cpu_max;
    // Re-checked for a Spec built in code: the kernel's ranges, and no division by zero below.
    if (c.period_micros < kMinCpuMicros || c.period_micros > kMaxCpuPeriodMicros ||
        c.quota_micros < kMinCpuMicros || c.quota_micros > kMaxCpuQuotaMicros)
      return value_error(path + ".cpuMax", "outside the kernel's CFS bandwidth ranges");
    if (c.period_micros > max.cpu_period_micros)
      return over_policy(path + ".cpuMax.periodMicros", c.period_micros, "cpu_period_micros",
                         max.cpu_period_micros);
    // quota / period <= cpus, compared without a product that could wrap.
    const uint64_t whole = c.quota_micros / c.period_micros;
    if (whole > max.cpus || (whole == max.cpus && c.quota_micros % c.period_micros != 0))
      return value_error(path + ".cpuMax.quotaMicros",
                         std::to_string(c.quota_micros) + " per " + std::to_string(c.period_micros) +
                             " us is more than the policy's " + std::to_string(max.cpus) +
                             " CPUs (policy.max_limits.cpus)");
  }
  return base::ok();
}

// Secure by default: a secret reaches a cell only when [secrets.grants] names it with a glob
// matching the cell id. Checked at admission, so an ungranted spec never runs.
Result<void> check_secret_grants(const Spec& spec, const PolicyConfig& policy) {
  for (size_t i = 0; i < spec.secret_refs.size(); ++i) {
    const std::string& name = spec.secret_refs[i];
    auto it = policy.secret_grants.find(name);
    bool granted = it != policy.secret_grants.end() &&
                   std::any_of(it->second.begin(), it->second.end(), [&](const std::string& g) {
                     return glob_matches(g, spec.id);
                   });
    if (!granted)
      return value_error("spec.authority.secretRefs[" + std::to_string(i) + "]",
                         "secret " + base::clip(name) + " is not granted to cell " +
                             base::clip(spec.id) + " (fleet.toml [secrets.grants])");
  }
  return base::ok();
}

}  // namespace

Result<void> check_policy(const Spec& spec, const PolicyConfig& policy) {
  // Re-checked here because a Spec can be built in code: the prefix test is only sound on a
  // normalized path.
  if (spec.run.argv.empty()) return value_error("spec.run.argv", "must not be empty");
  // A bare argv[0] is checked by the program its PATH lookup found (program_path.h); one the
  // lookup did not find runs nothing and fails as a missing program (127).
  const bool bare = spec.run.argv[0].find('/') == std::string::npos;
  const std::string& argv0 = spec.run.program.empty() ? spec.run.argv[0] : spec.run.program;
  const bool unresolved = bare && spec.run.program.empty();
  if (!unresolved && !is_normalized_absolute(argv0))
    return value_error("spec.run.argv[0]", "must be a normalized absolute path");
  bool allowed =
      unresolved ||
      std::any_of(policy.argv0_allow_prefixes.begin(), policy.argv0_allow_prefixes.end(),
                  [&](const std::string& prefix) { return is_below(argv0, prefix); });
  if (!allowed)
    return value_error("spec.run.argv[0]",
                       (bare ? printable(spec.run.argv[0]) + " (found in the cell's PATH as " +
                                   printable(argv0) + ")"
                             : printable(argv0)) +
                           " is not under an allowed prefix (" +
                           join(policy.argv0_allow_prefixes) + ")");
  if (spec.ttl_seconds && *spec.ttl_seconds > policy.max_ttl_seconds)
    return value_error("spec.lifetime.ttlSeconds", std::to_string(*spec.ttl_seconds) +
                                                       " exceeds the policy cap of " +
                                                       std::to_string(policy.max_ttl_seconds));
  // The run timeout shares the TTL cap; saturate so a huge cap cannot wrap to a small one (config
  // holds max_ttl_seconds to kMaxTtlSeconds, but a PolicyConfig can be built in code).
  uint64_t cap_ms = policy.max_ttl_seconds > kNoMax / 1000 ? kNoMax : policy.max_ttl_seconds * 1000;
  if (spec.run.timeout_ms && *spec.run.timeout_ms > cap_ms)
    return value_error("spec.run.timeoutMs", std::to_string(*spec.run.timeout_ms) +
                                                 " exceeds the policy cap of " +
                                                 std::to_string(cap_ms));
  CELLOS_TRY(check_limits_policy(spec.run.limits, policy.max_limits));
  CELLOS_TRY(check_secret_grants(spec, policy));
  // CellOS's require_runtime_secret_delivery: secrets (and the identity token, which is one)
  // never in the environment.
  if (policy.require_runtime_secret_delivery && !spec.runtime_delivery() &&
      (!spec.secret_refs.empty() || spec.identity))
    return value_error("spec.run.secretDelivery",
                       "\"env\" is refused by the fleet policy for a spec with secretRefs or "
                       "identity (policy.require_runtime_secret_delivery): use \"runtimeBroker\" "
                       "or \"runtimeLeasedBroker\"");
  if (spec.run.backend &&
      std::find(policy.allowed_backends.begin(), policy.allowed_backends.end(),
                *spec.run.backend) == policy.allowed_backends.end())
    return value_error("spec.run.backend", json_quoted(*spec.run.backend) +
                                               " is not in policy.allowed_backends (" +
                                               join(policy.allowed_backends) + ")");
  if (spec.dns_authority) CELLOS_TRY(check_dns_policy(*spec.dns_authority, policy));
  CELLOS_TRY(check_egress_policy(spec, policy));
  // A reactor inside a cell: nothing wider than that cell's own authority (cells/ceiling.h).
  if (policy.ceiling) return check_ceiling(spec, policy, *policy.ceiling, ::time(nullptr));
  return base::ok();
}

}  // namespace cellos::cells
