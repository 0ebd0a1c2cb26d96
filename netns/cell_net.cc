#include "netns/cell_net.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/netfilter.h>
#include <sched.h>

#include <cstdio>

#include "netns/rtnl.h"

namespace cellos::netns {
namespace {

constexpr const char* kThreadNetns = "/proc/thread-self/ns/net";

// Runs the reactor's thread in a brand-new network namespace for its lifetime, then returns it
// to the namespace it came from. Sockets opened meanwhile stay bound to the new namespace.
class NewNetnsScope {
 public:
  static base::Result<NewNetnsScope> enter() {
    NewNetnsScope s;
    auto home = base::open_at(AT_FDCWD, kThreadNetns, O_RDONLY);
    if (!home) return std::move(home).error();
    s.home_ = std::move(*home);
    if (::unshare(CLONE_NEWNET) != 0) return base::sys_error("unshare", "CLONE_NEWNET");
    s.entered_ = true;
    auto self = base::open_at(AT_FDCWD, kThreadNetns, O_RDONLY);
    if (!self) return std::move(self).error();
    s.netns_ = std::move(*self);
    return s;
  }
  NewNetnsScope() = default;
  NewNetnsScope(NewNetnsScope&& o) noexcept
      : home_(std::move(o.home_)), netns_(std::move(o.netns_)),
        entered_(std::exchange(o.entered_, false)) {}
  ~NewNetnsScope() {
    // Failing to return would leave the reactor itself in a cell's namespace: nothing after
    // that could be trusted, so it is the one failure here that ends the process.
    if (entered_ && ::setns(home_.get(), CLONE_NEWNET) != 0) {
      std::perror("cellos-reactor: setns back to the host network namespace");
      std::abort();
    }
  }
  base::Fd take_netns() { return std::move(netns_); }

 private:
  base::Fd home_, netns_;
  bool entered_ = false;
};

std::string text(in_addr a) {
  char buf[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &a, buf, sizeof buf);
  return buf;
}

}  // namespace

base::Result<std::unique_ptr<CellNetwork>> CellNetwork::create(const CellNetOptions& o) {
  std::unique_ptr<CellNetwork> n(new CellNetwork);
  NetlinkSocket rt;
  {
    auto scope = NewNetnsScope::enter();
    if (!scope) return std::move(scope).error();
    auto nf = NetlinkSocket::open(NETLINK_NETFILTER);
    if (!nf) return std::move(nf).error();
    n->nf_ = std::move(*nf);
    if (o.uplink) {
      // The uplink routes IPv4 only: without this, eth0 would autoconfigure a link-local
      // address and send MLD/DAD packets the cell never asked for (each a "denied flow").
      // Interfaces that arrive later (eth0, moved in by fd) take the namespace's default.
      CELLOS_TRY(base::write_file_at(AT_FDCWD, "/proc/sys/net/ipv6/conf/default/disable_ipv6", "1"));
      auto r = NetlinkSocket::open(NETLINK_ROUTE);
      if (!r) return std::move(r).error();
      rt = std::move(*r);
    }
    n->netns_ = scope->take_netns();
  }  // back in the host namespace

  if (o.install_ruleset) {
    CELLOS_TRY(install_cell_ruleset(n->nf_, o.ruleset));
    n->rules_applied_ = cell_rule_count(o.ruleset);
    n->nflog_group_ = o.ruleset.nflog_group;
    n->targets_ = o.ruleset.targets;  // names the set elements' counters (read_counters)
  }
  if (!o.uplink) return n;

  HostUplink& up = *o.uplink;
  auto lease = up.lease();
  if (!lease) return std::move(lease).error();
  n->uplink_ = &up;
  n->lease_ = *lease;
  n->veth_ = up.veth_name(*lease);
  rtnl::VethOptions vo{n->veth_, "eth0", n->netns_.get(), up.bridge_index()};
  auto made = rtnl::create_veth(up.rtnl(), vo);
  if (!made.ok() && made.error().err == EEXIST) {
    // Left by a cell whose namespace outlived it: the name is ours, take it back.
    (void)rtnl::delete_link(up.rtnl(), n->veth_);
    made = rtnl::create_veth(up.rtnl(), vo);
  }
  if (!made) {
    n->veth_.clear();
    return std::move(made).error();
  }
  auto host_end = rtnl::link_index(up.rtnl(), n->veth_);
  if (!host_end) return std::move(host_end).error();
  CELLOS_TRY(rtnl::set_port_isolated(up.rtnl(), *host_end));
  auto eth0 = rtnl::link_index(rt, "eth0");
  if (!eth0) return std::move(eth0).error();
  CELLOS_TRY(rtnl::add_address(rt, *eth0, lease->addr, up.prefix_len()));
  CELLOS_TRY(rtnl::set_link_up(rt, *eth0));
  CELLOS_TRY(rtnl::add_default_route(rt, up.gateway()));
  return n;
}

CellNetwork::~CellNetwork() {
  // No RTM_DELLINK here: unregistering a device waits for RCU grace periods, 20-27 ms on our
  // VMs, on the reactor's thread. The pair goes with the namespace instead: once the cell's
  // processes are gone and the fds below close, the kernel's namespace cleanup deletes the
  // cell end (and so the host end, its address and route) asynchronously, batched with other
  // dying namespaces. The lease returns to the pool, which hands out the longest-free address
  // last; a veth name still present when its index comes back is deleted then (create()).
  if (uplink_ && lease_) uplink_->release(*lease_);
}

std::optional<std::string> CellNetwork::address() const {
  if (!lease_) return std::nullopt;
  return text(lease_->addr);
}

base::Result<std::unique_ptr<NflogListener>> CellNetwork::open_nflog(base::IoPort& io,
                                                                     NflogOptions options) {
  options.group = nflog_group_;
  return NflogListener::open(io, netns_.get(), std::move(options));
}

base::Result<void> CellNetwork::update_dns_sets(const std::vector<DnsSetElement>& add,
                                                const std::vector<EgressTarget>& del) {
  if (rules_applied_ == 0) return base::ok();
  return netns::update_dns_sets(nf_, add, del);
}

base::Result<std::vector<RuleCounter>> CellNetwork::counters() {
  return read_counters(nf_, NFPROTO_INET, kCellTable, targets_);
}

}  // namespace cellos::netns
