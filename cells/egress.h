// A spec's egress rules as the network layer needs them: hostnames resolved at admission
// through the host's resolver (the addresses recorded in the spec and in network_policy), then
// every rule expanded into nft targets (address x protocol).
#pragma once

#include <functional>
#include <vector>

#include "base/result.h"
#include "cells/spec.h"
#include "netns/nft.h"
#include "netns/resolver.h"

namespace cellos::cells {

// True when some hostname rule has no addresses yet.
bool needs_resolution(const Spec& spec);

// Looks up every hostname rule not resolved yet through `resolver` (on the ring: never a
// blocking call); IPs and CIDRs are left as they are. `done` runs once, from a completion, with
// ok or the first failure naming the rule:
// `spec.authority.egressRules[1].host: "x.invalid": cannot resolve: Domain name not found`.
// `spec` must stay where it is until then. Call it only when needs_resolution(spec).
void resolve_egress(Spec& spec, netns::Resolver& resolver,
                    std::function<void(base::Result<void>)> done);

// One target per (address, protocol) of each rule, tagged "egress[i]"; a rule without a
// protocol allows both tcp and udp.
base::Result<std::vector<netns::EgressTarget>> egress_targets(const Spec& spec);

// True for a host that is an IP address or a CIDR rather than a name.
bool is_literal_egress_host(const std::string& host);

}  // namespace cellos::cells
