// The cell ruleset's host targets (netns/nft.cc): a targets set per family and a dynamic
// `hits` set whose elements, with their counters, the first packet to each target makes.
// Against the real kernel: traffic from a cell's namespace to a test host in a namespace of
// the test's own (addresses it assigns), then the counters read back per target; and the
// bench's `nft -f` peer (bench/nft_text.h) lists as the same ruleset as the libnftnl batch.
#include <arpa/inet.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "base/fd.h"
#include "bench/nft_text.h"
#include "netns/cell_net.h"
#include "netns/nft.h"
#include "netns/rtnl.h"
#include "tests/support/test_support.h"

using namespace cellos;
using Json = nlohmann::json;

namespace {

void check(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error(what + ": " + std::strerror(errno));
}

// The calling thread inside a namespace for a scope: sockets opened and processes forked
// meanwhile belong to it.
struct InNetns {
  base::Fd home;
  explicit InNetns(int fd) {
    home = base::Fd(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    check(home.get() >= 0 && ::setns(fd, CLONE_NEWNET) == 0, "setns");
  }
  ~InNetns() { (void)::setns(home.get(), CLONE_NEWNET); }
};

// A fresh namespace of the test's own, kept by fd (the calling thread stays home).
base::Fd fresh_netns() {
  base::Fd home(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  check(home.get() >= 0 && ::unshare(CLONE_NEWNET) == 0, "unshare(CLONE_NEWNET)");
  base::Fd ns(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  check(::setns(home.get(), CLONE_NEWNET) == 0, "setns home");
  return ns;
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  f << text;
  check(f.good(), "write " + path);
}

netns::EgressTarget target(const std::string& addr, uint16_t port, uint8_t proto, int index) {
  auto t = netns::parse_target(addr);
  if (!t) throw std::runtime_error(t.error().message());
  t->port = port;
  t->l4proto = proto;
  t->tag = "egress[" + std::to_string(index) + "]";
  return *t;
}

// One UDP datagram (1 byte of payload: 29 bytes of IPv4) from a socket of its own, so each is
// the first packet of a flow of its own and passes the egress rules.
void send_udp(const std::string& ip, uint16_t port) {
  base::Fd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  check(s.get() >= 0, "socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
  // A denied datagram fails with EPERM (the output chain drops it); an allowed one is sent.
  (void)::sendto(s.get(), "x", 1, 0, reinterpret_cast<sockaddr*>(&a), sizeof a);
}

// What two installs may differ in without being different rulesets, made the same:
// - nft's own `ip daddr` in a family chain carries a `meta nfproto` check nft hides from the
//   listing and lists as `ip daddr`; the reactor's rule relies on the jump into the family
//   chain for that check, so nft lists its load as the raw `@nh,128,32` (`@nh,192,128`).
// - the reactor's element userdata (the target's position and tag) is not nft's comment TLV;
//   nft shows what it makes of it as a comment, sometimes.
void normalize(Json& j) {
  if (j.is_object()) {
    if (j.contains("payload") && j["payload"].value("field", "") == "daddr") {
      const bool v6 = j["payload"].value("protocol", "") == "ip6";
      j["payload"] = Json{{"base", "nh"}, {"len", v6 ? 128 : 32}, {"offset", v6 ? 192 : 128}};
    }
    if (j.contains("elem") && j["elem"].is_object() && j["elem"].contains("val")) {
      Json v = j["elem"]["val"];
      j = v;
    }
  }
  if (j.is_object() || j.is_array())
    for (auto& v : j) normalize(v);
}

// `nft -j list table inet cellos` inside a namespace, without handles, every set's elements
// sorted: what the table holds, in a form two installs can be compared by.
Json listing(int netns_fd) {
  test::ProcessResult p;
  {
    InNetns in(netns_fd);
    p = test::run_process({"/usr/sbin/nft", "-j", "list", "table", "inet", "cellos"});
  }
  if (p.status != 0) throw std::runtime_error("nft list: " + p.err);
  Json out = Json::array();
  const Json doc = Json::parse(p.out);  // kept: a range-for over a member of a temporary dangles
  for (Json item : doc.at("nftables")) {
    if (item.contains("metainfo")) continue;
    normalize(item);
    for (auto& [kind, obj] : item.items()) {
      obj.erase("handle");
      if (obj.contains("elem") && obj["elem"].is_array())
        std::sort(obj["elem"].begin(), obj["elem"].end(),
                  [](const Json& a, const Json& b) { return a.dump() < b.dump(); });
    }
    out.push_back(item);
  }
  if (out.empty()) throw std::runtime_error("nft listed nothing: " + p.out);
  return out;
}

}  // namespace

TEST_CASE("host targets count on hits elements their first packet makes, read back per target",
          "[egress][kernel]") {
  if (::geteuid() != 0) CELLOS_SKIP("needs root for network namespaces");
  const std::string net = "172.31." + std::to_string(::getpid() % 250) + ".";
  netns::CellNetOptions o;
  o.ruleset.targets = {
      target(net + "1", 7001, IPPROTO_UDP, 0),   // host: in targets4
      target(net + "0/24", 7002, IPPROTO_UDP, 1),  // prefix: a rule after the lookup
      target(net + "2", 7003, IPPROTO_UDP, 2),   // host
      target(net + "1", 7001, IPPROTO_UDP, 3),   // shadowed by [0]: a rule, never matched
      target("fd00::1", 53, IPPROTO_UDP, 4),     // host: in targets6
      target(net + "3", 7004, IPPROTO_UDP, 5),   // host, sent nothing
  };
  auto cell = netns::CellNetwork::create(o);
  REQUIRE(cell.ok());
  const int cell_ns = (*cell)->netns_fd();

  // The test host: a namespace of its own, holding .1 .2 .3, a veth away from the cell's
  // .254. No IPv6 on either end: no neighbour discovery from the cell hits the deny rules.
  base::Fd host = fresh_netns();
  {
    InNetns in(cell_ns);
    write_file("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
  }
  {
    InNetns in(host.get());
    write_file("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
  }
  netns::NetlinkSocket cell_rt, host_rt;
  {
    InNetns in(cell_ns);
    auto s = netns::NetlinkSocket::open(NETLINK_ROUTE);
    REQUIRE(s.ok());
    cell_rt = std::move(*s);
  }
  {
    InNetns in(host.get());
    auto s = netns::NetlinkSocket::open(NETLINK_ROUTE);
    REQUIRE(s.ok());
    host_rt = std::move(*s);
  }
  REQUIRE(netns::rtnl::create_veth(cell_rt, {"c0", "h0", host.get(), 0}).ok());
  auto c0 = netns::rtnl::link_index(cell_rt, "c0");
  auto h0 = netns::rtnl::link_index(host_rt, "h0");
  REQUIRE(c0.ok());
  REQUIRE(h0.ok());
  in_addr a{};
  inet_pton(AF_INET, (net + "254").c_str(), &a);
  REQUIRE(netns::rtnl::add_address(cell_rt, *c0, a, 24).ok());
  for (const char* last : {"1", "2", "3"}) {
    inet_pton(AF_INET, (net + last).c_str(), &a);
    REQUIRE(netns::rtnl::add_address(host_rt, *h0, a, 24).ok());
  }
  REQUIRE(netns::rtnl::set_link_up(cell_rt, *c0).ok());
  REQUIRE(netns::rtnl::set_link_up(host_rt, *h0).ok());

  // Before any packet: every target reads back, at 0, without a hits element.
  auto before = (*cell)->counters();
  REQUIRE(before.ok());
  REQUIRE(before->size() == 10);
  for (const auto& c : *before) CHECK(c.packets == 0);

  {
    InNetns in(cell_ns);
    for (int i = 0; i < 3; ++i) send_udp(net + "1", 7001);  // [0] (not [3], its shadow)
    for (int i = 0; i < 2; ++i) send_udp(net + "3", 7002);  // [1], the prefix
    send_udp(net + "2", 7003);                              // [2]
    send_udp(net + "2", 9999);                              // no target: logged, dropped
  }
  auto c = (*cell)->counters();
  REQUIRE(c.ok());
  std::vector<std::string> tags;
  std::map<std::string, netns::RuleCounter> by_tag;
  for (const auto& r : *c) {
    tags.push_back(r.tag);
    by_tag[r.tag] = r;
  }
  // Evaluation order: the set's targets in declared order in the lookup's place, then the
  // rules after it, then the IPv6 chain.
  CHECK(tags == std::vector<std::string>{"loopback", "established", "egress[0]", "egress[2]",
                                         "egress[5]", "egress[1]", "egress[3]", "egress[4]",
                                         "nflog", "drop"});
  CHECK(by_tag["egress[0]"].packets == 3);
  CHECK(by_tag["egress[0]"].bytes == 3 * 29);
  CHECK(by_tag["egress[1]"].packets == 2);
  CHECK(by_tag["egress[2]"].packets == 1);
  CHECK(by_tag["egress[2]"].bytes == 29);
  CHECK(by_tag["egress[3]"].packets == 0);
  CHECK(by_tag["egress[4]"].packets == 0);
  CHECK(by_tag["egress[5]"].packets == 0);
  CHECK(by_tag["nflog"].packets == 1);
  CHECK(by_tag["drop"].packets == 1);
}

TEST_CASE("the bench's nft -f peer lists as the same ruleset as the libnftnl batch",
          "[egress][kernel]") {
  if (::geteuid() != 0) CELLOS_SKIP("needs root for network namespaces");
  if (::access("/usr/sbin/nft", X_OK) != 0) CELLOS_SKIP("no /usr/sbin/nft (package nftables)");
  netns::CellNetOptions o;
  for (int i = 0; i < 5; ++i)
    o.ruleset.targets.push_back(target("10.9.0." + std::to_string(i + 1),
                                       static_cast<uint16_t>(1000 + i),
                                       i % 2 ? IPPROTO_UDP : IPPROTO_TCP, i));
  o.ruleset.targets.push_back(target("fd00::7", 443, IPPROTO_TCP, 5));
  auto cell = netns::CellNetwork::create(o);
  REQUIRE(cell.ok());

  test::TempDir dir;
  const std::string file = dir.path() + "/ruleset.nft";
  write_file(file, bench::nft_text(o.ruleset));
  base::Fd peer = fresh_netns();
  {
    InNetns in(peer.get());
    auto p = test::run_process({"/usr/sbin/nft", "-f", file});
    INFO(p.err);
    REQUIRE(p.status == 0);
  }
  Json ours = listing((*cell)->netns_fd()), theirs = listing(peer.get());
  INFO("libnftnl: " << ours.dump(1) << "\nnft -f: " << theirs.dump(1));
  CHECK(ours == theirs);
  // Not two empty listings: both sets of each family, with the targets as elements.
  std::map<std::string, size_t> elements;
  for (const Json& item : ours)
    if (item.contains("set")) elements[item["set"]["name"]] = item["set"].value("elem", Json::array()).size();
  CHECK(elements == std::map<std::string, size_t>{{"targets4", 5}, {"hits4", 0}, {"targets6", 1}, {"hits6", 0}});
}
