#include "netns/nested_link.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/netfilter.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "netns/nft.h"
#include "netns/rtnl.h"

namespace cellos::netns {
namespace {

constexpr const char* kThreadNetns = "/proc/thread-self/ns/net";
constexpr const char* kIpForward = "/proc/sys/net/ipv4/ip_forward";

// Runs the reactor's thread inside an existing network namespace for its lifetime (sysctls
// under /proc/sys/net are those of the opening thread's namespace), then returns it home.
class NetnsScope {
 public:
  static base::Result<NetnsScope> enter(int netns_fd, const char* what) {
    NetnsScope s;
    auto home = base::open_at(AT_FDCWD, kThreadNetns, O_RDONLY);
    if (!home) return std::move(home).error();
    s.home_ = std::move(*home);
    if (::setns(netns_fd, CLONE_NEWNET) != 0) return base::sys_error("setns", what);
    s.entered_ = true;
    return s;
  }
  NetnsScope() = default;
  NetnsScope(NetnsScope&& o) noexcept
      : home_(std::move(o.home_)), entered_(std::exchange(o.entered_, false)) {}
  ~NetnsScope() {
    // As in cell_net.cc: a reactor left in a cell's namespace could trust nothing after.
    if (entered_ && ::setns(home_.get(), CLONE_NEWNET) != 0) {
      std::perror("cellos-reactor: setns back to the host network namespace");
      std::abort();
    }
  }

 private:
  base::Fd home_;
  bool entered_ = false;
};

in_addr ip(const char* text) {
  in_addr a{};
  inet_pton(AF_INET, text, &a);
  return a;
}

base::Result<struct stat> stat_fd(int fd, const std::string& what) {
  struct stat st{};
  if (::fstat(fd, &st) != 0) return base::sys_error("fstat", what);
  return st;
}

bool same(const struct stat& a, const struct stat& b) {
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

// Without the cell's forward chain A would forward whatever B sends, and the parent's
// allow-list would not apply to it: the one wiring mistake this refuses.
base::Result<void> check_forward_filter(NetlinkSocket& nf) {
  auto counters = read_counters(nf, NFPROTO_INET, kCellTable);
  if (!counters)
    return std::move(counters).error().context("nested link: the outer namespace's ruleset");
  const bool has = std::any_of(counters->begin(), counters->end(),
                               [](const RuleCounter& c) { return c.tag == "forward-drop"; });
  if (!has)
    return base::value_error("nested link",
                             "the outer namespace's table inet cellos has no forward chain "
                             "(install its ruleset with CellRuleset::forward)");
  return base::ok();
}

}  // namespace

base::Result<std::unique_ptr<NestedLink>> NestedLink::create(const NestedLinkOptions& o) {
  if (o.outer_netns_fd < 0) return base::value_error("nested link", "no outer namespace");
  base::Fd inner_owned;
  int inner = o.inner_netns_fd;
  const std::string inner_what =
      inner >= 0 ? std::string("inner netns") : "/proc/" + std::to_string(o.inner_pid) + "/ns/net";
  if (inner < 0) {
    if (o.inner_pid <= 0) return base::value_error("nested link", "no inner namespace or pid");
    auto fd = base::open_at(AT_FDCWD, inner_what, O_RDONLY);
    if (!fd) return std::move(fd).error().context("nested link");
    inner_owned = std::move(*fd);
    inner = inner_owned.get();
  }
  // A wrong pid (one that never left the reactor's or the cell's namespace) would put the
  // link, and forwarding, where it must never be.
  {
    auto a = stat_fd(o.outer_netns_fd, "outer netns");
    if (!a) return std::move(a).error();
    auto b = stat_fd(inner, inner_what);
    if (!b) return std::move(b).error();
    auto home = base::open_at(AT_FDCWD, kThreadNetns, O_RDONLY);
    if (!home) return std::move(home).error();
    auto h = stat_fd(home->get(), kThreadNetns);
    if (!h) return std::move(h).error();
    if (same(*a, *b) || same(*b, *h))
      return base::sys_error("nested link", inner_what + " is not a network namespace of its own",
                             EINVAL);
  }

  std::unique_ptr<NestedLink> l(new NestedLink);
  const int outer_dup = ::fcntl(o.outer_netns_fd, F_DUPFD_CLOEXEC, 0);
  if (outer_dup < 0) return base::sys_error("fcntl F_DUPFD_CLOEXEC", "outer netns");
  l->outer_.reset(outer_dup);
  {
    auto nf = NetlinkSocket::open_in(o.outer_netns_fd, NETLINK_NETFILTER);
    if (!nf) return std::move(nf).error().context("nested link: outer netns");
    CELLOS_TRY(check_forward_filter(*nf));
  }
  auto rt_a = NetlinkSocket::open_in(o.outer_netns_fd, NETLINK_ROUTE);
  if (!rt_a) return std::move(rt_a).error().context("nested link: outer netns");
  auto rt_b = NetlinkSocket::open_in(inner, NETLINK_ROUTE);
  if (!rt_b) return std::move(rt_b).error().context("nested link: " + inner_what);

  {
    // A's sysctls, before nest0 exists so it is born with them: no IPv6 on the link (the
    // uplink routes IPv4 only; B's IPv6 is dropped on arrival, before any hook, instead of
    // being denied and logged); strict reverse-path filtering (B can only send from its link
    // address: anything it spoofs is dropped before the forward hook); forwarding.
    auto scope = NetnsScope::enter(o.outer_netns_fd, "outer netns");
    if (!scope) return std::move(scope).error().context("nested link");
    CELLOS_TRY(base::write_file_at(AT_FDCWD, "/proc/sys/net/ipv6/conf/default/disable_ipv6", "1"));
    CELLOS_TRY(base::write_file_at(AT_FDCWD, "/proc/sys/net/ipv4/conf/default/rp_filter", "1"));
    // A new namespace's IPv4 settings start as the host's (net.core.devconf_inherit_init_net
    // = 0), so forwarding may be on already: the destructor puts back what was there.
    auto was = base::read_file_at(AT_FDCWD, kIpForward);
    if (!was) return std::move(was).error().context("nested link");
    l->forwarding_was_ = was->substr(0, 1) == "1" ? "1" : "0";
    CELLOS_TRY(base::write_file_at(AT_FDCWD, kIpForward, "1"));
  }

  // The pair, made in A with its peer created directly in B: nest0 is up at once, eth0 waits
  // for its address. It goes with B (see ~NestedLink). The masquerade of the link subnet is
  // the cell's ruleset's (CellRuleset::forward), there before the link.
  CELLOS_TRY(rtnl::create_veth(*rt_a, {kNestedLinkIfname, "eth0", inner, 0}));
  auto outer_end = rtnl::link_index(*rt_a, kNestedLinkIfname);
  if (!outer_end) return std::move(outer_end).error();
  CELLOS_TRY(rtnl::add_address(*rt_a, *outer_end, ip(kOuterAddress), kNestedLinkPrefixLen));

  auto inner_end = rtnl::link_index(*rt_b, "eth0");
  if (!inner_end) return std::move(inner_end).error().context("nested link: " + inner_what);
  CELLOS_TRY(rtnl::add_address(*rt_b, *inner_end, ip(kInnerAddress), kNestedLinkPrefixLen));
  CELLOS_TRY(rtnl::set_link_up(*rt_b, *inner_end));
  CELLOS_TRY(rtnl::add_default_route(*rt_b, ip(kOuterAddress)));
  return l;
}

NestedLink::~NestedLink() {
  if (forwarding_was_.empty() || !outer_.valid()) return;
  auto scope = NetnsScope::enter(outer_.get(), "outer netns");
  auto r = scope ? base::write_file_at(AT_FDCWD, kIpForward, forwarding_was_)
                 : base::Result<void>(std::move(scope).error());
  if (!r.ok())
    std::fprintf(stderr, "cellos-reactor: nested link: %s\n", r.error().message().c_str());
}

}  // namespace cellos::netns
