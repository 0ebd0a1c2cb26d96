// The nft-language form of a cell ruleset of host targets: what `nft -f` installs as the peer
// in bench/nft_bench.cc, and what tests/unit/nft_hits_test.cc checks lists the same as the
// reactor's libnftnl batch (netns/nft.cc). Host targets only (a full-length prefix each, no
// two alike): every one is an element of its family's targets set, as install_cell_ruleset
// puts it; prefixes would be rules after the lookup, which this form does not write.
#pragma once

#include <arpa/inet.h>

#include <stdexcept>
#include <string>

#include "netns/nft.h"

namespace cellos::bench {

inline std::string nft_text(const netns::CellRuleset& r) {
  std::string elems[2];
  size_t count[2] = {0, 0};
  for (const auto& t : r.targets) {
    const bool v4 = t.family == AF_INET;
    if (t.prefix_len != (v4 ? 32 : 128)) throw std::invalid_argument("nft_text: host targets only");
    char ip[INET6_ADDRSTRLEN];
    inet_ntop(t.family, t.addr.data(), ip, sizeof ip);
    std::string& e = elems[v4 ? 0 : 1];
    e += std::string(e.empty() ? "" : ", ") + ip + " . " +
         (t.l4proto == IPPROTO_TCP ? "tcp" : "udp") + " . " + std::to_string(t.port);
    ++count[v4 ? 0 : 1];
  }
  std::string s = "table inet cellos {\n";
  std::string jumps;
  for (int f = 0; f < 2; ++f) {
    if (count[f] == 0) continue;
    const std::string n = f == 0 ? "4" : "6";
    const std::string type = std::string(f == 0 ? "ipv4_addr" : "ipv6_addr") +
                             " . inet_proto . inet_service";
    const std::string key = std::string(f == 0 ? "ip" : "ip6") + " daddr . meta l4proto . th dport";
    const std::string size = std::to_string(count[f]);
    // The targets, and their counters: an element of hits<n> is made, with its counter, by
    // the first packet to its target (docs/network.md).
    s += " set targets" + n + " {\n  type " + type + "\n  size " + size + "\n  elements = { " +
         elems[f] + " }\n }\n";
    s += " set hits" + n + " {\n  type " + type + "\n  size " + size +
         "\n  flags dynamic\n  counter\n }\n";
    s += " chain egress" + n + " {\n  " + key + " @targets" + n + " add @hits" + n + " { " + key +
         " } accept\n  " + key + " @targets" + n + " accept\n }\n";
    jumps += "  meta nfproto ipv" + n + " jump egress" + n + "\n";
  }
  s += " chain output {\n  type filter hook output priority 0; policy drop;\n"
       "  oif \"lo\" counter accept\n  ct state established,related counter accept\n" +
       jumps + "  counter log group " + std::to_string(r.nflog_group) + " prefix \"" +
       netns::kDenyPrefix + "\"\n  counter drop\n }\n}\n";
  return s;
}

}  // namespace cellos::bench
