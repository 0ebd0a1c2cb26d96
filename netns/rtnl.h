// rtnetlink requests the uplink needs: bridge, veth pair, addresses, routes. Each is one
// request answered by one ack over a NetlinkSocket, which may be bound to a cell's namespace.
// No `ip` is ever executed.
#pragma once

#include <netinet/in.h>

#include <string>

#include "base/result.h"
#include "netns/netlink.h"

namespace cellos::netns::rtnl {

// ip link add NAME type bridge (fails with EEXIST if it is there).
base::Result<void> create_bridge(NetlinkSocket& s, const std::string& name);

struct VethOptions {
  std::string host_name;   // stays in the socket's namespace
  std::string peer_name;   // moved at creation into peer_netns_fd
  int peer_netns_fd = -1;
  int master_index = 0;    // the bridge the host end joins (0: none)
};
// ip link add HOST up master BR type veth peer name PEER netns FD
base::Result<void> create_veth(NetlinkSocket& s, const VethOptions& o);

// bridge link set dev IF isolated on: isolated ports never forward to each other.
base::Result<void> set_port_isolated(NetlinkSocket& s, int ifindex);

base::Result<void> set_link_up(NetlinkSocket& s, int ifindex);
// ip link del NAME; ENODEV when absent.
base::Result<void> delete_link(NetlinkSocket& s, const std::string& name);
// The ifindex of NAME in the socket's namespace.
base::Result<int> link_index(NetlinkSocket& s, const std::string& name);

base::Result<void> add_address(NetlinkSocket& s, int ifindex, in_addr addr, int prefix_len);
// ip route add default via GW
base::Result<void> add_default_route(NetlinkSocket& s, in_addr gateway);

}  // namespace cellos::netns::rtnl
