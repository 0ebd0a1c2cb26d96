#include "netns/uplink.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/netfilter.h>
#include <sys/file.h>
#include <sys/random.h>

#include <cstdio>

#include "base/fd.h"
#include "netns/nft.h"
#include "netns/rtnl.h"

namespace cellos::netns {
namespace {

uint32_t fnv1a(const std::string& s) {
  uint32_t h = 2166136261u;
  for (unsigned char c : s) h = (h ^ c) * 16777619u;
  return h;
}

std::string hex(uint32_t v, int digits) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%0*x", digits, v);
  return buf;
}

base::Result<void> ignore_absent(base::Result<void> r, int absent) {
  if (!r.ok() && r.error().err != absent) return r;
  return base::ok();
}

}  // namespace

std::string HostUplink::bridge_name(const std::string& host_id) {
  return "cbr" + hex(fnv1a(host_id), 8);
}

std::string HostUplink::table_name(const std::string& host_id) { return "cellos-" + host_id; }

std::string HostUplink::veth_prefix(const std::string& host_id) {
  return "cv" + hex(fnv1a(host_id) & 0xffff, 4);
}

std::string HostUplink::veth_name(const AddressLease& lease) const {
  return veth_prefix(host_id_) + hex(lease.index, 1);
}

base::Result<void> HostUplink::cleanup_stale(const std::string& host_id) {
  auto rt = NetlinkSocket::open(NETLINK_ROUTE);
  if (!rt) return std::move(rt).error();
  CELLOS_TRY(ignore_absent(rtnl::delete_link(*rt, bridge_name(host_id)), ENODEV));
  auto nf = NetlinkSocket::open(NETLINK_NETFILTER);
  if (!nf) return std::move(nf).error();
  return ignore_absent(delete_table(*nf, NFPROTO_INET, table_name(host_id)), ENOENT);
}

base::Result<std::unique_ptr<HostUplink>> HostUplink::create(const UplinkOptions& o) {
  std::unique_ptr<HostUplink> u(new HostUplink);
  u->host_id_ = o.host_id;
  u->bridge_ = bridge_name(o.host_id);
  u->table_ = table_name(o.host_id);
  auto slash = o.subnet.find('/');
  if (slash == std::string::npos ||
      inet_pton(AF_INET, o.subnet.substr(0, slash).c_str(), &u->subnet_) != 1)
    return base::value_error("network.subnet", "\"" + o.subnet + "\" is not an IPv4 CIDR");
  u->prefix_len_ = std::atoi(o.subnet.c_str() + slash + 1);
  if (u->prefix_len_ < 8 || u->prefix_len_ > 24)
    return base::value_error("network.subnet", "prefix must be /8../24");
  uint32_t mask = ~0u << (32 - u->prefix_len_);
  if ((ntohl(u->subnet_.s_addr) & ~mask) != 0)
    return base::value_error("network.subnet", "\"" + o.subnet + "\" has host bits set");
  u->gateway_.s_addr = htonl(ntohl(u->subnet_.s_addr) + 1);
  u->last_ = ~mask - 1;  // the broadcast address is not handed out

  if (!o.state_dir.empty()) CELLOS_TRY(u->lock_dirs(o.state_dir));
  // setup.lock is held from here to the end of create(): nobody else creates, joins or leaves.
  const bool alone = !u->users_.valid() || ::flock(u->users_.get(), LOCK_EX | LOCK_NB) == 0;
  if (u->users_.valid() && !alone && errno != EWOULDBLOCK)
    return base::sys_error("flock", "\"" + o.state_dir + "/uplink/users.lock\"");
  if (!alone) {
    // Others use the uplink: join what they made.
    if (::flock(u->users_.get(), LOCK_SH) != 0)
      return base::sys_error("flock", "\"" + o.state_dir + "/uplink/users.lock\"");
    auto rt = NetlinkSocket::open(NETLINK_ROUTE);
    if (!rt) return std::move(rt).error();
    u->rtnl_ = std::move(*rt);
    auto index = rtnl::link_index(u->rtnl_, u->bridge_);
    if (!index) return std::move(index).error().context("joining the uplink of host " + o.host_id);
    u->bridge_index_ = *index;
    // Start the search for free addresses somewhere random, so concurrent runs rarely try the
    // same index first (a taken one is skipped anyway).
    uint32_t r = 0;
    if (::getrandom(&r, sizeof r, 0) == sizeof r && u->last_ > 2) u->next_ = 2 + r % (u->last_ - 1);
    u->setup_.reset();
    return u;
  }
  u->owner_ = true;
  CELLOS_TRY(cleanup_stale(o.host_id));
  auto rt = NetlinkSocket::open(NETLINK_ROUTE);
  if (!rt) return std::move(rt).error();
  u->rtnl_ = std::move(*rt);
  auto nf = NetlinkSocket::open(NETLINK_NETFILTER);
  if (!nf) return std::move(nf).error();
  u->nf_ = std::move(*nf);

  // From here the destructor removes whatever was made, should a later step fail.
  CELLOS_TRY(rtnl::create_bridge(u->rtnl_, u->bridge_));
  auto index = rtnl::link_index(u->rtnl_, u->bridge_);
  if (!index) return std::move(index).error();
  u->bridge_index_ = *index;
  CELLOS_TRY(rtnl::add_address(u->rtnl_, u->bridge_index_, u->gateway_, u->prefix_len_));
  CELLOS_TRY(install_host_ruleset(u->nf_, HostRuleset{u->table_, u->subnet_, u->prefix_len_,
                                                      u->bridge_index_}));
  // NAT needs forwarding. A host-wide switch: the reactor turns it on and leaves it on (other
  // services may rely on it once on); the host table above confines what cells can forward.
  CELLOS_TRY(base::write_file_at(AT_FDCWD, "/proc/sys/net/ipv4/ip_forward", "1"));
  if (u->users_.valid() && ::flock(u->users_.get(), LOCK_SH) != 0)
    return base::sys_error("flock", "uplink users.lock");
  u->setup_.reset();
  return u;
}

base::Result<void> HostUplink::lock_dirs(const std::string& state_dir) {
  const std::string dir = state_dir + "/uplink";
  lease_dir_ = dir + "/leases";
  CELLOS_TRY(base::make_dirs(lease_dir_));
  auto setup = base::open_at(AT_FDCWD, dir + "/setup.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (!setup) return std::move(setup).error();
  // Blocking: another reactor holds it only for the few netlink requests of a create or leave.
  if (::flock(setup->get(), LOCK_EX) != 0)
    return base::sys_error("flock", "\"" + dir + "/setup.lock\"");
  setup_ = std::move(*setup);
  auto users = base::open_at(AT_FDCWD, dir + "/users.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (!users) return std::move(users).error();
  users_ = std::move(*users);
  return base::ok();
}

bool HostUplink::try_hold(uint32_t index) {
  if (lease_dir_.empty()) return true;
  const std::string path = lease_dir_ + "/" + std::to_string(index);
  auto fd = base::open_at(AT_FDCWD, path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (!fd) return false;
  if (::flock(fd->get(), LOCK_EX | LOCK_NB) != 0) return false;
  held_[index] = std::move(*fd);
  return true;
}

HostUplink::~HostUplink() {
  if (users_.valid()) {
    // Leaving: under setup.lock, the bridge and table go only if no other reactor uses them.
    // (A failed flock leaves them: the next creator removes leftovers first.)
    if (!setup_.valid()) {
      auto dir = lease_dir_.substr(0, lease_dir_.rfind('/'));
      auto setup = base::open_at(AT_FDCWD, dir + "/setup.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
      if (setup && ::flock(setup->get(), LOCK_EX) == 0) setup_ = std::move(*setup);
    }
    const bool last = setup_.valid() && ::flock(users_.get(), LOCK_EX | LOCK_NB) == 0;
    users_.reset();
    if (!last) return;  // others still use it (or we cannot tell): leave it to them
  } else if (!owner_) {
    return;
  }
  if (!nf_.valid()) {
    if (auto nf = NetlinkSocket::open(NETLINK_NETFILTER)) nf_ = std::move(*nf);
  }
  if (!bridge_index_ && rtnl_.valid()) {
    if (auto index = rtnl::link_index(rtnl_, bridge_)) bridge_index_ = *index;
  }
  if (rtnl_.valid() && bridge_index_ > 0) {
    auto r = rtnl::delete_link(rtnl_, bridge_);
    if (!r.ok()) std::fprintf(stderr, "cellos-reactor: uplink: %s\n", r.error().message().c_str());
  }
  if (nf_.valid()) {
    auto r = delete_table(nf_, NFPROTO_INET, table_);
    if (!r.ok() && r.error().err != ENOENT)
      std::fprintf(stderr, "cellos-reactor: uplink: %s\n", r.error().message().c_str());
  }
}

base::Result<AddressLease> HostUplink::lease() {
  AddressLease l;
  // Never-used indexes first, one pass over the whole range from next_; then released ones.
  const uint32_t span = last_ >= 2 ? last_ - 1 : 0;
  while (tried_ < span) {
    uint32_t index = next_;
    next_ = next_ >= last_ ? 2 : next_ + 1;
    ++tried_;
    if (try_hold(index)) {
      l.index = index;
      break;
    }
    free_.push_back(index);  // another reactor's cell has it: try again when it may be free
  }
  for (size_t n = free_.size(); l.index == 0 && n > 0; --n) {
    uint32_t index = free_.front();
    free_.pop_front();
    if (try_hold(index)) l.index = index;
    else free_.push_back(index);  // another reactor's cell has it: later
  }
  if (l.index == 0) return base::sys_error("address pool", bridge_, EADDRNOTAVAIL);
  l.addr.s_addr = htonl(ntohl(subnet_.s_addr) + l.index);
  return l;
}

void HostUplink::release(const AddressLease& lease) {
  held_.erase(lease.index);
  free_.push_back(lease.index);
}

}  // namespace cellos::netns
