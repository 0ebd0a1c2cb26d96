#include "netns/rtnl.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>

#include <array>
#include <cstring>

namespace cellos::netns::rtnl {
namespace {

// One request: a header, its fixed part and attributes, all in a stack buffer.
struct Request {
  alignas(4) std::array<std::byte, 1024> buf{};
  nlmsghdr* nlh;
  Request(NetlinkSocket& s, uint16_t type, uint16_t flags) {
    nlh = mnl_nlmsg_put_header(buf.data());
    nlh->nlmsg_type = type;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    nlh->nlmsg_seq = s.next_seq();
  }
  ifinfomsg* link(int index = 0, unsigned char family = AF_UNSPEC) {
    auto* ifi = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
    ifi->ifi_family = family;
    ifi->ifi_index = index;
    return ifi;
  }
  std::span<const std::byte> bytes() const { return {buf.data(), nlh->nlmsg_len}; }
};

std::string quoted(const std::string& s) { return "\"" + s + "\""; }

}  // namespace

base::Result<void> create_bridge(NetlinkSocket& s, const std::string& name) {
  Request r(s, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
  ifinfomsg* ifi = r.link();
  ifi->ifi_flags = IFF_UP;
  ifi->ifi_change = IFF_UP;
  mnl_attr_put_strz(r.nlh, IFLA_IFNAME, name.c_str());
  nlattr* info = mnl_attr_nest_start(r.nlh, IFLA_LINKINFO);
  mnl_attr_put_strz(r.nlh, IFLA_INFO_KIND, "bridge");
  mnl_attr_nest_end(r.nlh, info);
  return s.send_and_ack(r.bytes(), 1, "RTM_NEWLINK bridge " + quoted(name));
}

base::Result<void> create_veth(NetlinkSocket& s, const VethOptions& o) {
  Request r(s, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
  ifinfomsg* ifi = r.link();
  ifi->ifi_flags = IFF_UP;
  ifi->ifi_change = IFF_UP;
  mnl_attr_put_strz(r.nlh, IFLA_IFNAME, o.host_name.c_str());
  if (o.master_index > 0) mnl_attr_put_u32(r.nlh, IFLA_MASTER, static_cast<uint32_t>(o.master_index));
  nlattr* info = mnl_attr_nest_start(r.nlh, IFLA_LINKINFO);
  mnl_attr_put_strz(r.nlh, IFLA_INFO_KIND, "veth");
  nlattr* data = mnl_attr_nest_start(r.nlh, IFLA_INFO_DATA);
  nlattr* peer = mnl_attr_nest_start(r.nlh, VETH_INFO_PEER);
  // The peer's attributes follow its own ifinfomsg, inside the nest.
  auto* pifi = static_cast<ifinfomsg*>(mnl_nlmsg_get_payload_tail(r.nlh));
  std::memset(pifi, 0, sizeof *pifi);
  r.nlh->nlmsg_len += MNL_ALIGN(sizeof(ifinfomsg));
  mnl_attr_put_strz(r.nlh, IFLA_IFNAME, o.peer_name.c_str());
  mnl_attr_put_u32(r.nlh, IFLA_NET_NS_FD, static_cast<uint32_t>(o.peer_netns_fd));
  mnl_attr_nest_end(r.nlh, peer);
  mnl_attr_nest_end(r.nlh, data);
  mnl_attr_nest_end(r.nlh, info);
  return s.send_and_ack(r.bytes(), 1, "RTM_NEWLINK veth " + quoted(o.host_name));
}

base::Result<void> set_port_isolated(NetlinkSocket& s, int ifindex) {
  Request r(s, RTM_SETLINK, 0);
  r.link(ifindex, AF_BRIDGE);
  nlattr* prot = mnl_attr_nest_start(r.nlh, IFLA_PROTINFO);
  mnl_attr_put_u8(r.nlh, IFLA_BRPORT_ISOLATED, 1);
  mnl_attr_nest_end(r.nlh, prot);
  return s.send_and_ack(r.bytes(), 1, "RTM_SETLINK isolated ifindex " + std::to_string(ifindex));
}

base::Result<void> set_link_up(NetlinkSocket& s, int ifindex) {
  Request r(s, RTM_NEWLINK, 0);
  ifinfomsg* ifi = r.link(ifindex);
  ifi->ifi_flags = IFF_UP;
  ifi->ifi_change = IFF_UP;
  return s.send_and_ack(r.bytes(), 1, "RTM_NEWLINK up ifindex " + std::to_string(ifindex));
}

base::Result<void> delete_link(NetlinkSocket& s, const std::string& name) {
  Request r(s, RTM_DELLINK, 0);
  r.link();
  mnl_attr_put_strz(r.nlh, IFLA_IFNAME, name.c_str());
  return s.send_and_ack(r.bytes(), 1, "RTM_DELLINK " + quoted(name));
}

base::Result<int> link_index(NetlinkSocket& s, const std::string& name) {
  Request r(s, RTM_GETLINK, 0);
  r.nlh->nlmsg_flags = NLM_F_REQUEST;  // the reply is the link itself, or an error
  r.link();
  mnl_attr_put_strz(r.nlh, IFLA_IFNAME, name.c_str());
  int index = 0;
  // A get is answered like a one-message dump without NLMSG_DONE: read one reply.
  if (mnl_socket_sendto(s.raw(), r.nlh, r.nlh->nlmsg_len) < 0)
    return base::sys_error("sendmsg", "RTM_GETLINK " + quoted(name));
  std::array<std::byte, 8192> rx;
  ssize_t n = mnl_socket_recvfrom(s.raw(), rx.data(), rx.size());
  if (n < 0) return base::sys_error("recvmsg", "RTM_GETLINK " + quoted(name));
  auto* h = reinterpret_cast<const nlmsghdr*>(rx.data());
  if (h->nlmsg_type == NLMSG_ERROR) {
    auto* e = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(h));
    return base::sys_error("RTM_GETLINK", quoted(name), e->error ? -e->error : ENODEV);
  }
  index = static_cast<const ifinfomsg*>(mnl_nlmsg_get_payload(h))->ifi_index;
  return index;
}

base::Result<void> add_address(NetlinkSocket& s, int ifindex, in_addr addr, int prefix_len) {
  Request r(s, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
  auto* ifa = static_cast<ifaddrmsg*>(mnl_nlmsg_put_extra_header(r.nlh, sizeof(ifaddrmsg)));
  ifa->ifa_family = AF_INET;
  ifa->ifa_prefixlen = static_cast<unsigned char>(prefix_len);
  ifa->ifa_index = static_cast<unsigned>(ifindex);
  ifa->ifa_scope = RT_SCOPE_UNIVERSE;
  mnl_attr_put(r.nlh, IFA_LOCAL, sizeof addr, &addr);
  mnl_attr_put(r.nlh, IFA_ADDRESS, sizeof addr, &addr);
  char text[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &addr, text, sizeof text);
  return s.send_and_ack(r.bytes(), 1, std::string("RTM_NEWADDR ") + text);
}

base::Result<void> add_default_route(NetlinkSocket& s, in_addr gateway) {
  Request r(s, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
  auto* rt = static_cast<rtmsg*>(mnl_nlmsg_put_extra_header(r.nlh, sizeof(rtmsg)));
  rt->rtm_family = AF_INET;
  rt->rtm_dst_len = 0;
  rt->rtm_table = RT_TABLE_MAIN;
  rt->rtm_protocol = RTPROT_STATIC;
  rt->rtm_scope = RT_SCOPE_UNIVERSE;
  rt->rtm_type = RTN_UNICAST;
  mnl_attr_put(r.nlh, RTA_GATEWAY, sizeof gateway, &gateway);
  char text[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &gateway, text, sizeof text);
  return s.send_and_ack(r.bytes(), 1, std::string("RTM_NEWROUTE default via ") + text);
}

}  // namespace cellos::netns::rtnl
