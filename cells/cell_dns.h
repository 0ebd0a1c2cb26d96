// A cell's DNS authority at run time: its proxy (netns/dns_proxy.h) inside the cell's network
// namespace, the rebind check on every answer, and the dns_* events, aggregated.
//
// Aggregation: the first query of a kind (name, type, decision, reason) is reported at once
// (count 1); identical ones in the next `aggregate_window` are counted and reported as one more
// event (count N, the latest answers and latency) when the window ends, and at the cell's end.
// A cell that asks for the same name a thousand times a second costs two events per window.
//
// Answers open the allow-list: an egress rule whose host is a name allows, on its port and
// protocol(s), exactly the addresses the proxy handed this cell for that name, as elements of
// the cell's nft sets dns4/dns6 with a timeout of the answer's TTL clamped to [min_ttl,
// max_ttl] plus `grace` (for clients that connect again shortly after the TTL). A repeated
// answer refreshes an address's timeout. Each name keeps at most max_addresses_per_name
// addresses; past that the oldest is taken out of the set (counted as evicted). The sets are
// updated before the cell sees the answer, so its connect() right after never races them.
//
// Rebind protection: an answer for an allow-listed name holding a private (RFC 1918, CGNAT
// 100.64/10, ULA fc00::/7), loopback, link-local, unspecified or the host's own address is
// REFUSED (`dns_authority_rebind_rejected`), unless the name matches policy.internal_dns_names.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/io.h"
#include "base/result.h"
#include "cells/dns_authority.h"
#include "cells/spec.h"
#include "netns/nft.h"
#include "sinks/events.h"

namespace cellos::netns {
class DnsProxy;
}

namespace cellos::cells {

struct CellDnsOptions {
  std::string cell_id;
  DnsAuthority authority;
  int netns_fd = -1;
  // "ip", "ip:port", "[v6]:port": the spec's resolvers, else [network] resolvers, else the
  // host's /etc/resolv.conf (upstreams_for()).
  std::vector<std::string> upstreams;
  std::chrono::milliseconds timeout{2500};
  int tries = 2;
  std::vector<std::string> internal_names;  // policy.internal_dns_names
  std::chrono::milliseconds aggregate_window{10000};
  uint16_t listen_port = 53;  // tests: 0
  // Egress rules whose host is a name: an answer for that name opens its addresses on the
  // rule's port and protocol(s), for the TTL clamped to [min_ttl, max_ttl] plus `grace`.
  std::vector<EgressRule> named_rules;
  std::chrono::seconds min_ttl{30}, max_ttl{3600}, grace{60};
  size_t max_addresses_per_name = 64;
  std::function<base::Result<void>(const std::vector<netns::DnsSetElement>&,
                                   const std::vector<netns::EgressTarget>&)>
      update_sets;
  // BPF enforcement: the same additions and every removal (BPF entries have no timeout, so
  // the cell's elements past their time are removed here too, within a second).
  std::function<base::Result<void>(const std::vector<netns::EgressTarget>&,
                                   const std::vector<netns::EgressTarget>&)>
      update_bpf;
  std::function<void(sinks::EventData)> emit;
};

class CellDns {
 public:
  static base::Result<std::unique_ptr<CellDns>> open(base::IoPort& io, CellDnsOptions options);
  ~CellDns();
  CellDns(const CellDns&) = delete;
  CellDns& operator=(const CellDns&) = delete;

  // Reports what is still aggregated, closes the proxy, and returns the cell's totals.
  sinks::DnsSummaryData finish();
  uint16_t port() const;

  struct Impl;

 private:
  explicit CellDns(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The upstreams a cell's proxy forwards to: the spec's resolvers, else `fleet` ([network]
// resolvers), else the nameservers of /etc/resolv.conf. An error when there are none.
base::Result<std::vector<std::string>> dns_upstreams(const DnsAuthority& dns,
                                                     const std::vector<std::string>& fleet);

// True for an address an allow-listed public name must not resolve to (see above), given the
// host's own addresses.
bool is_rebind_address(const std::string& address, const std::vector<std::string>& host_addresses);

// <state_dir>/dns/resolv.conf, written once ("nameserver 127.0.0.1"): bound read-only over
// each such cell's /etc/resolv.conf. One file serves every cell: each cell's 127.0.0.1 is its own.
base::Result<std::string> cell_resolv_conf(const std::string& state_dir);

}  // namespace cellos::cells
