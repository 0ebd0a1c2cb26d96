// A spec's egress rules as the network layer needs them: hostnames resolved at admission
// through the host's resolver (the addresses recorded in the spec and in network_policy), then
// every rule expanded into nft targets (address x protocol).
#pragma once

#include <vector>

#include "base/result.h"
#include "cells/spec.h"
#include "netns/nft.h"

namespace cellos::cells {

// getaddrinfo for every hostname rule not resolved yet; IPs and CIDRs are left as they are.
// Fails naming the rule: `spec.authority.egressRules[1].host: "x.invalid": cannot resolve: ...`.
// Blocking: called at admission, never with cells running on the same thread in `run`.
base::Result<void> resolve_egress(Spec& spec);

// One target per (address, protocol) of each rule, tagged "egress[i]"; a rule without a
// protocol allows both tcp and udp.
base::Result<std::vector<netns::EgressTarget>> egress_targets(const Spec& spec);

// True for a host that is an IP address or a CIDR rather than a name.
bool is_literal_egress_host(const std::string& host);

}  // namespace cellos::cells
