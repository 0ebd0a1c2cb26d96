// CellNetwork: the network namespace of a cell that declares egress, prepared by the reactor
// before the cell is cloned.
//
//   unshare(CLONE_NEWNET) on the reactor's thread, keep the new namespace's fd and a
//   NETLINK_NETFILTER socket opened inside it, setns back · install the egress ruleset (one
//   batch) · with an uplink: a veth pair, host end on the bridge (isolated port), cell end
//   `eth0` moved in by fd, addressed from the pool, default route via the bridge.
//
// The ruleset goes in before any interface exists, so the namespace is never open. The cell's
// child joins the namespace with setns(netns_fd) instead of CLONE_NEWNET. Destroying the
// CellNetwork closes the namespace's fd and socket and returns the address; once the cell's
// processes are gone too, the kernel removes the namespace and its veth pair (see ~CellNetwork).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "netns/netlink.h"
#include "netns/nflog.h"
#include "netns/nft.h"
#include "netns/uplink.h"

namespace cellos::netns {

struct CellNetOptions {
  CellRuleset ruleset;
  HostUplink* uplink = nullptr;  // null: the ruleset only, no interface but lo, no route
  // False when nft does not enforce ([network] enforcement = "bpf" or "none"): no table at all.
  bool install_ruleset = true;
};

class CellNetwork {
 public:
  static base::Result<std::unique_ptr<CellNetwork>> create(const CellNetOptions& options);
  ~CellNetwork();
  CellNetwork(const CellNetwork&) = delete;
  CellNetwork& operator=(const CellNetwork&) = delete;

  int netns_fd() const { return netns_.get(); }
  size_t rules_applied() const { return rules_applied_; }
  // The NFLOG group the ruleset logs denied packets to, inside this namespace: a listener
  // binds it on a NETLINK_NETFILTER socket opened while setns'ed into netns_fd().
  uint16_t nflog_group() const { return nflog_group_; }
  // The cell's deny records: a listener whose socket is opened inside this namespace and bound
  // to nflog_group() (options.group is overridden), receiving on `io`.
  base::Result<std::unique_ptr<NflogListener>> open_nflog(base::IoPort& io, NflogOptions options);
  // The cell's address ("10.213.0.2") when it has an uplink.
  std::optional<std::string> address() const;
  const std::string& veth() const { return veth_; }
  // Adds / refreshes / removes elements of the cell's dns4/dns6 sets (CellRuleset::dns_sets),
  // one batch. A no-op when no ruleset was installed (nft does not enforce).
  base::Result<void> update_dns_sets(const std::vector<DnsSetElement>& add,
                                     const std::vector<EgressTarget>& del);
  // Every rule's counter, in one netlink dump of the cell's table.
  base::Result<std::vector<RuleCounter>> counters();

 private:
  CellNetwork() = default;
  base::Fd netns_;
  NetlinkSocket nf_;
  HostUplink* uplink_ = nullptr;
  std::optional<AddressLease> lease_;
  std::string veth_;
  size_t rules_applied_ = 0;
  uint16_t nflog_group_ = 0;
  std::vector<EgressTarget> targets_;  // the installed ruleset's
};

}  // namespace cellos::netns
