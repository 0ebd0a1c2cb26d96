#include "cells/egress.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>

namespace cellos::cells {

bool is_literal_egress_host(const std::string& host) {
  return netns::parse_target(host).ok();
}

base::Result<void> resolve_egress(Spec& spec) {
  for (size_t i = 0; i < spec.egress_rules.size(); ++i) {
    EgressRule& rule = spec.egress_rules[i];
    if (is_literal_egress_host(rule.host) || !rule.resolved.empty()) continue;
    const std::string where = "spec.authority.egressRules[" + std::to_string(i) + "].host";
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;  // one entry per address, not one per socket type
    addrinfo* res = nullptr;
    // The reactor is static: glibc (>= 2.34) answers from its built-in "files" and "dns"
    // sources; other NSS modules (mdns, systemd's "resolve") cannot be loaded and are skipped.
    int rc = ::getaddrinfo(rule.host.c_str(), nullptr, &hints, &res);
    if (rc != 0)
      return base::value_error(where, "\"" + rule.host + "\": cannot resolve: " + gai_strerror(rc));
    for (addrinfo* a = res; a; a = a->ai_next) {
      char buf[INET6_ADDRSTRLEN] = {};
      const void* src = a->ai_family == AF_INET
                            ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_addr)
                            : static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_addr);
      if (a->ai_family != AF_INET && a->ai_family != AF_INET6) continue;
      inet_ntop(a->ai_family, src, buf, sizeof buf);
      if (std::find(rule.resolved.begin(), rule.resolved.end(), buf) == rule.resolved.end())
        rule.resolved.emplace_back(buf);
    }
    ::freeaddrinfo(res);
    if (rule.resolved.empty())
      return base::value_error(where, "\"" + rule.host + "\": resolved to no IP address");
  }
  return base::ok();
}

base::Result<std::vector<netns::EgressTarget>> egress_targets(const Spec& spec) {
  std::vector<netns::EgressTarget> out;
  for (size_t i = 0; i < spec.egress_rules.size(); ++i) {
    const EgressRule& rule = spec.egress_rules[i];
    std::vector<std::string> hosts = rule.resolved;
    if (is_literal_egress_host(rule.host)) hosts = {rule.host};
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
