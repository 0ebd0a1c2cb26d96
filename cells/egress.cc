#include "cells/egress.h"

#include <algorithm>
#include <memory>
#include <optional>

namespace cellos::cells {

bool is_literal_egress_host(const std::string& host) {
  return netns::parse_target(host).ok();
}

bool needs_resolution(const Spec& spec) {
  // Under a dnsAuthority a named host's addresses are what the cell's DNS proxy hands it, at
  // run time (cells/cell_dns.h): nothing is resolved at admission.
  if (spec.dns_authority) return false;
  return std::any_of(spec.egress_rules.begin(), spec.egress_rules.end(), [](const EgressRule& r) {
    return r.resolved.empty() && !is_literal_egress_host(r.host);
  });
}

void resolve_egress(Spec& spec, netns::Resolver& resolver,
                    std::function<void(base::Result<void>)> done) {
  struct Pending {
    size_t left = 0;
    std::optional<base::Error> failed;
    std::function<void(base::Result<void>)> done;
  };
  auto p = std::make_shared<Pending>();
  p->done = std::move(done);
  std::vector<size_t> rules;
  for (size_t i = 0; i < spec.egress_rules.size(); ++i) {
    const EgressRule& rule = spec.egress_rules[i];
    if (rule.resolved.empty() && !is_literal_egress_host(rule.host)) rules.push_back(i);
  }
  p->left = rules.size();
  for (size_t i : rules) {
    resolver.resolve(spec.egress_rules[i].host, [p, &spec, i](auto r) {
      EgressRule& rule = spec.egress_rules[i];
      const std::string where = "spec.authority.egressRules[" + std::to_string(i) + "].host";
      if (!r) {
        if (!p->failed)
          p->failed = base::Error{r.error().err, where, {},
                                  "\"" + rule.host + "\": cannot resolve: " + r.error().detail, {}};
      } else if (r->empty()) {
        if (!p->failed)
          p->failed = base::value_error(where, "\"" + rule.host + "\": resolved to no IP address");
      } else {
        rule.resolved = std::move(*r);
      }
      if (--p->left == 0)
        p->done(p->failed ? base::Result<void>(*p->failed) : base::Result<void>());
    });
  }
}

base::Result<std::vector<netns::EgressTarget>> egress_targets(const Spec& spec) {
  std::vector<netns::EgressTarget> out;
  for (size_t i = 0; i < spec.egress_rules.size(); ++i) {
    const EgressRule& rule = spec.egress_rules[i];
    std::vector<std::string> hosts = rule.resolved;
    if (is_literal_egress_host(rule.host)) hosts = {rule.host};
    else if (spec.dns_authority) continue;  // the dns4/dns6 sets, filled by the cell's proxy
    if (hosts.empty())
      return base::value_error("spec.authority.egressRules[" + std::to_string(i) + "].host",
                               "\"" + rule.host + "\" was not resolved");
    std::vector<uint8_t> protos;
    if (!rule.protocol || *rule.protocol == "tcp") protos.push_back(IPPROTO_TCP);
    if (!rule.protocol || *rule.protocol == "udp") protos.push_back(IPPROTO_UDP);
    for (const auto& h : hosts) {
      auto t = netns::parse_target(h);
      if (!t) return std::move(t).error();
      for (uint8_t p : protos) {
        netns::EgressTarget target = *t;
        target.port = rule.port;
        target.l4proto = p;
        target.tag = "egress[" + std::to_string(i) + "]";
        out.push_back(std::move(target));
      }
    }
  }
  return out;
}

}  // namespace cellos::cells
