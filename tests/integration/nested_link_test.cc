// The network of a nested cell (docs/nested.md, "The network of a nested cell"): the outer
// namespace A is a real CellNetwork with the uplink and the parent's ruleset (with
// CellRuleset::forward); the inner namespace B belongs to a child that unshared a user and a
// network namespace (root there, nobody on the host: its uid maps to an unused host uid);
// NestedLink joins them. Everything the child tries is run inside the child, its results
// read back as `key=value` lines. Every destination is a test host this test builds
// (tests/support/test_hosts.h), an address of the host the test owns, or an address of A.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <libnftnl/common.h>
#include <libnftnl/table.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/fd.h"
#include "netns/cell_net.h"
#include "netns/nested_link.h"
#include "netns/nflog.h"
#include "netns/nft.h"
#include "netns/rtnl.h"
#include "netns/uplink.h"
#include "reactor/ring.h"
#include "tests/support/test_hosts.h"
#include "tests/support/test_support.h"

// After netinet/in.h: the kernel's linux/in.h defers to glibc's only in that order.
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>

using namespace cellos;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// A /24 of its own per test process (as tests/integration/egress_test.cc).
std::string cell_subnet() { return "10.213." + std::to_string(::getpid() % 250) + ".0/24"; }
std::string gateway() { return "10.213." + std::to_string(::getpid() % 250) + ".1"; }
constexpr uint16_t kNflogGroup = 9;

template <typename T>
T must(base::Result<T> r) {
  INFO((r.ok() ? std::string() : r.error().message()));
  REQUIRE(r.ok());
  return std::move(r).value();
}
void must(base::Result<void> r) {
  INFO((r.ok() ? std::string() : r.error().message()));
  REQUIRE(r.ok());
}

// Runs `fn` with the calling thread inside the namespace `netns_fd`.
template <typename F>
auto in_netns(int netns_fd, F&& fn) {
  auto home = base::open_at(AT_FDCWD, "/proc/thread-self/ns/net", O_RDONLY);
  REQUIRE(home.ok());
  REQUIRE(::setns(netns_fd, CLONE_NEWNET) == 0);
  struct Back {
    int fd;
    ~Back() {
      if (::setns(fd, CLONE_NEWNET) != 0) std::abort();
    }
  } back{home->get()};
  return fn();
}

std::string sysctl_in(int netns_fd, const std::string& path) {
  return in_netns(netns_fd, [&] {
    auto s = base::read_file_at(AT_FDCWD, path);
    return s.ok() ? s->substr(0, s->find('\n')) : "error: " + s.error().message();
  });
}

netns::EgressTarget target(const std::string& ip, int port, uint8_t proto, const std::string& tag) {
  auto t = must(netns::parse_target(ip));
  t.port = static_cast<uint16_t>(port);
  t.l4proto = proto;
  t.tag = tag;
  return t;
}

std::string text(const std::array<uint8_t, 16>& a) {
  char buf[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, a.data(), buf, sizeof buf);
  return buf;
}

// ---- run inside the child (no Catch2 there: results are lines) ----

sockaddr_in sa(const std::string& ip, int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
  return a;
}

// "ok <greeting>", "timeout" (a dropped SYN), "refused", "blocked" (EPERM: a local ruleset),
// "unreachable", or "error <errno>". A second and a half: two SYNs, no timing judged.
std::string tcp_connect(const std::string& ip, int port, const std::string& src = "") {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return "error socket";
  base::Fd owned(fd);
  if (!src.empty()) {
    sockaddr_in s = sa(src, 0);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&s), sizeof s) != 0)
      return "error bind " + std::to_string(errno);
  }
  sockaddr_in d = sa(ip, port);
  int err = 0;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&d), sizeof d) != 0) {
    if (errno != EINPROGRESS) {
      err = errno;
    } else {
      pollfd p{fd, POLLOUT, 0};
      if (::poll(&p, 1, 1500) == 0) return "timeout";
      socklen_t len = sizeof err;
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    }
  }
  if (err == ECONNREFUSED) return "refused";
  if (err == EPERM) return "blocked";
  if (err == ENETUNREACH || err == EHOSTUNREACH) return "unreachable";
  if (err == ETIMEDOUT) return "timeout";
  if (err != 0) return "error " + std::to_string(err);
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, 1500) <= 0) return "connected, no greeting";
  char buf[16] = {};
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  return n > 0 ? "ok " + std::string(buf, static_cast<size_t>(n)) : "connected, no greeting";
}

// "ok pong", "blocked", "timeout" or "error <errno>".
std::string udp_ping(const std::string& ip, int port, const std::string& src = "") {
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "error socket";
  base::Fd owned(fd);
  if (!src.empty()) {
    sockaddr_in s = sa(src, 0);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&s), sizeof s) != 0)
      return "error bind " + std::to_string(errno);
  }
  sockaddr_in d = sa(ip, port);
  if (::sendto(fd, "ping", 4, 0, reinterpret_cast<sockaddr*>(&d), sizeof d) < 0)
    return errno == EPERM ? "blocked" : "error " + std::to_string(errno);
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, 1500) <= 0) return "timeout";
  char buf[16] = {};
  ssize_t n = ::recv(fd, buf, sizeof buf - 1, 0);
  return n > 0 ? "ok " + std::string(buf, static_cast<size_t>(n)) : "error recv";
}

// `nft flush ruleset` as root of whatever namespace the socket is in: every table it can list,
// of every family, deleted. Returns how many it deleted, or -errno.
int flush_every_table(netns::NetlinkSocket& nf) {
  std::vector<std::pair<int, std::string>> tables;
  std::array<char, 512> req{};
  nlmsghdr* h = nftnl_nlmsg_build_hdr(req.data(), NFT_MSG_GETTABLE, NFPROTO_UNSPEC, NLM_F_DUMP,
                                      nf.next_seq());
  auto r = nf.dump(h, [&](const nlmsghdr* m) {
    nftnl_table* t = nftnl_table_alloc();
    if (nftnl_table_nlmsg_parse(m, t) == 0)
      tables.emplace_back(static_cast<int>(nftnl_table_get_u32(t, NFTNL_TABLE_FAMILY)),
                          nftnl_table_get_str(t, NFTNL_TABLE_NAME));
    nftnl_table_free(t);
  }, "nft list tables");
  if (!r.ok()) return -r.error().err;
  int deleted = 0;
  for (const auto& [family, name] : tables) {
    auto d = netns::delete_table(nf, family, name);
    if (!d.ok()) return -d.error().err;
    ++deleted;
  }
  return deleted;
}

using Results = std::map<std::string, std::string>;

// A child in a user and network namespace of its own (B), mapped to `host_uid` (unused on
// the host: the child is nobody there, root in B). Construction returns once it has
// unshared and its maps are written; go() lets it run `body`; finish() waits for it. The
// body's second argument, sync(), stops it until the test has seen it (wait_sync()) and
// called go() again.
class InnerCell {
 public:
  using Put = std::function<void(const std::string&, const std::string&)>;
  using Body = std::function<void(Put, std::function<void()>)>;
  explicit InnerCell(Body body) {
    auto ready = must(base::make_pipe()), go = must(base::make_pipe()),
         out = must(base::make_pipe());
    auto home = must(base::open_at(AT_FDCWD, "/proc/self/ns/net", O_RDONLY));
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      ready.read.reset();
      go.write.reset();
      out.read.reset();
      auto put = [fd = out.write.get()](const std::string& k, const std::string& v) {
        const std::string line = k + "=" + v + "\n";
        (void)!::write(fd, line.data(), line.size());
      };
      if (::unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0) ::_exit(20);
      (void)!::write(ready.write.get(), "u", 1);
      char c = 0;
      if (::read(go.read.get(), &c, 1) != 1 || c != 'g') ::_exit(21);
      // Become the namespace's root (the host uid the map gives it) and nothing more.
      if (::setgroups(0, nullptr) != 0 || ::setresgid(0, 0, 0) != 0 || ::setresuid(0, 0, 0) != 0)
        ::_exit(22);
      put("uid_in_b", std::to_string(::getuid()));
      // Even holding descriptors of the host's namespace and of A, it cannot join either.
      put("join_host", ::setns(home.get(), CLONE_NEWNET) == 0 ? "joined" : std::to_string(errno));
      auto sync = [&] {
        put("sync", "");
        char again = 0;
        if (::read(go.read.get(), &again, 1) != 1 || again != 'g') ::_exit(23);
      };
      body(put, sync);
      ::_exit(0);
    }
    ready.write.reset();
    go.read.reset();
    out.write.reset();
    go_ = std::move(go.write);
    out_ = std::move(out.read);
    char c = 0;
    REQUIRE(::read(ready.read.get(), &c, 1) == 1);
    const std::string map = "0 " + std::to_string(host_uid()) + " 1\n";
    must(base::write_file_at(AT_FDCWD, "/proc/" + std::to_string(pid_) + "/uid_map", map));
    must(base::write_file_at(AT_FDCWD, "/proc/" + std::to_string(pid_) + "/gid_map", map));
  }
  ~InnerCell() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  static uint32_t host_uid() { return 2100000000u + static_cast<uint32_t>(::getpid() % 100000); }
  pid_t pid() const { return pid_; }
  void go() { REQUIRE(::write(go_.get(), "g", 1) == 1); }
  // Reads the child's lines up to its sync().
  void wait_sync() {
    for (char c = 0; !text_.ends_with("sync=\n");) {
      REQUIRE(::read(out_.get(), &c, 1) == 1);
      text_ += c;
    }
  }
  Results finish() {
    auto text = text_ + must(base::read_fd(out_.get(), "child results"));
    int status = 0;
    REQUIRE(::waitpid(pid_, &status, 0) == pid_);
    pid_ = 0;
    INFO("child status " << status << ", said:\n" << text);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
    Results r;
    for (size_t s = 0, e; (e = text.find('\n', s)) != std::string::npos; s = e + 1) {
      const std::string line = text.substr(s, e - s);
      const auto eq = line.find('=');
      r[line.substr(0, eq)] = line.substr(eq + 1);
    }
    return r;
  }

 private:
  pid_t pid_ = 0;
  base::Fd go_, out_;
  std::string text_;
};

struct Tick final : base::Completion {
  bool done = false;
  void complete(int) override { done = true; }
};

bool run_until(reactor::Ring& ring, const std::function<bool()>& done,
               std::chrono::milliseconds limit = 10s) {
  const auto end = Clock::now() + limit;
  while (!done() && Clock::now() < end) {
    Tick t;
    ring.timeout(10ms, t);
    while (!t.done) REQUIRE(ring.run_once().ok());
  }
  return done();
}

std::vector<std::string> links_with_prefix(const std::string& prefix) {
  std::vector<std::string> out;
  if (DIR* d = opendir("/sys/class/net")) {
    while (dirent* e = readdir(d))
      if (std::string(e->d_name).starts_with(prefix)) out.emplace_back(e->d_name);
    closedir(d);
  }
  return out;
}

uint64_t packets(const std::vector<netns::RuleCounter>& counters, const std::string& tag) {
  uint64_t n = 0;
  for (const auto& c : counters)
    if (c.tag == tag) n += c.packets;
  return n;
}

// The host side of the uplink (as a reactor with `uplink = "nat"` makes it) and a cell's
// outer namespace A on it, with the parent's ruleset over `targets` and the forward chains.
struct Parent {
  std::string host_id = "nl" + std::to_string(::getpid());
  std::unique_ptr<netns::HostUplink> uplink;
  std::unique_ptr<netns::CellNetwork> net;
  explicit Parent(std::vector<netns::EgressTarget> targets, bool dns_sets = false) {
    uplink = must(netns::HostUplink::create({host_id, "", cell_subnet()}));
    netns::CellNetOptions o;
    o.ruleset.targets = std::move(targets);
    o.ruleset.nflog_group = kNflogGroup;
    o.ruleset.forward = true;
    o.ruleset.dns_sets = dns_sets;
    o.uplink = uplink.get();
    net = must(netns::CellNetwork::create(o));
  }
  // Nothing of the uplink or the cell left on the host (egress_test.cc's check_no_residue).
  void check_gone() {
    using netns::HostUplink;
    net.reset();
    uplink.reset();
    CHECK(if_nametoindex(HostUplink::bridge_name(host_id).c_str()) == 0);
    const std::string prefix = HostUplink::veth_prefix(host_id);
    for (int i = 0; i < 300 && !links_with_prefix(prefix).empty(); ++i) ::usleep(10000);
    CHECK(links_with_prefix(prefix).empty());
    auto nf = must(netns::NetlinkSocket::open(NETLINK_NETFILTER));
    auto table = netns::read_counters(nf, NFPROTO_INET, HostUplink::table_name(host_id));
    CHECK((!table.ok() || table->empty()));
  }
};

}  // namespace

TEST_CASE("nested link: without the forward chains a ruleset is what it always was, and a link "
          "is refused", "[net][nested]") {
  std::string why;
  if (!test::can_build_test_hosts(&why)) CELLOS_SKIP(why);
  netns::CellRuleset plain;
  plain.targets = {target("172.30.1.2", 80, IPPROTO_TCP, "egress[0]")};
  netns::CellRuleset fwd = plain;
  fwd.forward = true;
  CHECK(netns::cell_rule_count(fwd) == netns::cell_rule_count(plain) + 7);
  // Off: the same counted rules, in the same order, as before the option existed.
  auto off = must(netns::CellNetwork::create({plain, nullptr, true}));
  std::vector<std::string> tags;
  for (const auto& c : must(off->counters())) tags.push_back(c.tag);
  CHECK(tags == std::vector<std::string>{"loopback", "established", "egress[0]", "nflog", "drop"});
  // On: each counter once, the shared allow-list included (two base chains jump to it).
  auto on = must(netns::CellNetwork::create({fwd, nullptr, true}));
  tags.clear();
  for (const auto& c : must(on->counters())) tags.push_back(c.tag);
  CHECK(tags == std::vector<std::string>{"loopback", "established", "egress[0]", "nflog", "drop",
                                         "forward-established", "forward-inbound",
                                         "forward-nflog", "forward-drop", "input-nflog",
                                         "input-drop", "forward-masquerade"});
  // A namespace whose ruleset has no forward chain gets no link, and its sysctls are left as
  // they were (a new namespace's IPv4 ones start as the host's: devconf_inherit_init_net).
  const std::string forwarding = sysctl_in(off->netns_fd(), "/proc/sys/net/ipv4/ip_forward");
  InnerCell child([](auto put, auto) { put("ran", "yes"); });
  auto refused = netns::NestedLink::create({off->netns_fd(), child.pid(), -1});
  REQUIRE_FALSE(refused.ok());
  CHECK_THAT(refused.error().message(), Catch::Contains("no forward chain"));
  CHECK(sysctl_in(off->netns_fd(), "/proc/sys/net/ipv4/ip_forward") == forwarding);
  CHECK(in_netns(off->netns_fd(), [] { return if_nametoindex(netns::kNestedLinkIfname); }) == 0);
  // Nor a link to the outer namespace itself, or to the reactor's own.
  auto self = netns::NestedLink::create({on->netns_fd(), 0, on->netns_fd()});
  REQUIRE_FALSE(self.ok());
  CHECK(self.error().err == EINVAL);
  auto home = must(base::open_at(AT_FDCWD, "/proc/self/ns/net", O_RDONLY));
  auto host = netns::NestedLink::create({on->netns_fd(), 0, home.get()});
  REQUIRE_FALSE(host.ok());
  CHECK(host.error().err == EINVAL);
  child.go();
  CHECK(child.finish()["ran"] == "yes");
}

TEST_CASE("nested link: the inner namespace reaches exactly the parent's allow-list, denials "
          "are nflog records in A, its root's flush widens nothing, nothing is left",
          "[net][nested]") {
  std::string why;
  if (!test::can_build_test_hosts(&why)) CELLOS_SKIP(why);
  test::TestHost a(30);
  const int tcp_ok = a.tcp(), tcp_other = a.tcp(), udp_ok = a.udp();
  a.start();
  // The host's own addresses (and the gateway), listening on every address of the root ns.
  test::Greeter host;
  const int host_port = host.listen_tcp("0.0.0.0");
  host.start();
  // Sanity: from the host, the denied destinations answer, so a timeout below is a drop.
  REQUIRE_THAT(test::run_process({test::probe_path(), "tcp-connect", a.ip(),
                                  std::to_string(tcp_other)}).out, Catch::Contains("ok hello"));

  // The parent's declared egress. A's own link address is even declared: A's input chain,
  // not the allow-list, keeps B off A. The gateway is declared too: the host table keeps it.
  const int a_port = 7077;
  Parent parent({target(a.ip(), tcp_ok, IPPROTO_TCP, "egress[0]"),
                 target(a.ip(), udp_ok, IPPROTO_UDP, "egress[1]"),
                 target(netns::NestedLink::kOuterAddress, a_port, IPPROTO_TCP, "egress[2]"),
                 target(gateway(), host_port, IPPROTO_TCP, "egress[3]")});
  const int A = parent.net->netns_fd();
  const std::string a_uplink_ip = parent.net->address().value();
  const std::string gw = gateway();  // here: the child has a pid of its own
  // Services of A itself, on every address of A.
  auto a_service = std::make_unique<test::Greeter>();
  in_netns(A, [&] { return a_service->listen_tcp("0.0.0.0", a_port); });
  a_service->start();
  auto ring = must(reactor::Ring::create({}));
  std::vector<netns::DenyRecord> denied;
  netns::NflogOptions lo;
  lo.on_record = [&](const netns::DenyRecord& r) { denied.push_back(r); };
  auto listener = must(parent.net->open_nflog(*ring, lo));
  // An nfnetlink socket of A, which the child inherits: opened by the host's root, but the
  // kernel checks the sender's capabilities too.
  auto a_nf = must(netns::NetlinkSocket::open_in(A, NETLINK_NETFILTER));

  InnerCell child([&](auto put, auto) {
    put("join_outer", ::setns(A, CLONE_NEWNET) == 0 ? "joined" : std::to_string(errno));
    auto del = netns::delete_table(a_nf, NFPROTO_INET, netns::kCellTable);
    put("delete_outer_table", del.ok() ? "deleted" : std::to_string(del.error().err));
    put("allowed_tcp", tcp_connect(a.ip(), tcp_ok));
    put("allowed_udp", udp_ping(a.ip(), udp_ok));
    put("denied_port", tcp_connect(a.ip(), tcp_other));
    put("host_address", tcp_connect(a.root_ip(), host_port));
    put("gateway", tcp_connect(gw, host_port));
    put("outer_link_address", tcp_connect(netns::NestedLink::kOuterAddress, a_port));
    put("outer_uplink_address", tcp_connect(a_uplink_ip, a_port));
    // Root of B: a table of its own, then every table it can see flushed, then the same.
    auto nf = netns::NetlinkSocket::open(NETLINK_NETFILTER);
    if (!nf.ok()) return put("nfnetlink", nf.error().message());
    netns::CellRuleset own;  // a table named like A's, in B
    auto made = netns::install_cell_ruleset(*nf, own);
    put("own_table", made.ok() ? "made" : made.error().message());
    put("flushed", std::to_string(flush_every_table(*nf)));
    put("denied_port_after_flush", tcp_connect(a.ip(), tcp_other));
    put("allowed_tcp_after_flush", tcp_connect(a.ip(), tcp_ok));
    // A source address of its choosing (the gateway's) is dropped on arrival in A.
    auto rt = netns::NetlinkSocket::open(NETLINK_ROUTE);
    auto eth0 = rt.ok() ? netns::rtnl::link_index(*rt, "eth0") : base::Result<int>(rt.error());
    in_addr spoof{};
    inet_pton(AF_INET, gw.c_str(), &spoof);
    auto added = eth0.ok() ? netns::rtnl::add_address(*rt, *eth0, spoof, 32)
                           : base::Result<void>(eth0.error());
    put("spoof_address", added.ok() ? "added" : added.error().message());
    // udp, to a counted destination, so the count shows it never reached the forward hook
    put("spoofed_source", udp_ping(a.ip(), udp_ok, gw));
  });
  // Off first, to see it turned on and put back (a new namespace starts with the host's).
  must(in_netns(A, [] { return base::write_file_at(AT_FDCWD, "/proc/sys/net/ipv4/ip_forward", "0"); }));
  auto link = must(netns::NestedLink::create({A, child.pid(), -1}));
  CHECK(sysctl_in(A, "/proc/sys/net/ipv4/ip_forward") == "1");
  CHECK(sysctl_in(A, std::string("/proc/sys/net/ipv4/conf/") + netns::kNestedLinkIfname +
                         "/rp_filter") == "1");
  CHECK(sysctl_in(A, std::string("/proc/sys/net/ipv6/conf/") + netns::kNestedLinkIfname +
                         "/disable_ipv6") == "1");
  child.go();
  auto r = child.finish();
  for (const auto& [k, v] : r) UNSCOPED_INFO(k << " = " << v);

  CHECK(r["uid_in_b"] == "0");  // root in B (the host sees InnerCell::host_uid())
  CHECK(r["join_host"] == std::to_string(EPERM));
  CHECK(r["join_outer"] == std::to_string(EPERM));
  CHECK(r["delete_outer_table"] == std::to_string(EPERM));
  CHECK(r["allowed_tcp"] == "ok hello");
  CHECK(r["allowed_udp"] == "ok pong");
  CHECK(r["denied_port"] == "timeout");
  CHECK(r["host_address"] == "timeout");
  CHECK(r["gateway"] == "timeout");
  CHECK(r["outer_link_address"] == "timeout");
  CHECK(r["outer_uplink_address"] == "timeout");
  CHECK(r["own_table"] == "made");
  CHECK(r["flushed"] == "1");  // its own table: A's are not in its view
  CHECK(r["denied_port_after_flush"] == "timeout");
  CHECK(r["allowed_tcp_after_flush"] == "ok hello");
  CHECK(r["spoof_address"] == "added");
  CHECK(r["spoofed_source"] == "timeout");

  // A's counters: the allow-list counted forwarded flows; each denial logged, then dropped.
  auto counters = must(parent.net->counters());
  std::string all;
  for (const auto& c : counters) all += c.tag + "=" + std::to_string(c.packets) + " ";
  for (const auto& [k, v] : r) all += "\n" + k + ": " + v;
  INFO("A's counters: " << all);
  CHECK(packets(counters, "egress[0]") >= 2);  // the two allowed connections' SYNs
  CHECK(packets(counters, "egress[1]") == 1);  // the spoofed datagram never got this far
  CHECK(packets(counters, "egress[2]") == 0);  // declared, but input from the link is dropped
  CHECK(packets(counters, "egress[3]") >= 1);  // A let it go; the host table dropped it
  CHECK(packets(counters, "forward-established") >= 4);
  CHECK(packets(counters, "forward-nflog") >= 3);  // denied port twice, the host's address
  CHECK(packets(counters, "forward-drop") == packets(counters, "forward-nflog"));
  CHECK(packets(counters, "input-nflog") >= 2);  // A's two addresses
  CHECK(packets(counters, "input-drop") == packets(counters, "input-nflog"));
  CHECK(packets(counters, "forward-inbound") == 0);
  CHECK(packets(counters, "nflog") == 0);  // A itself sent nothing
  // B's new flows that left A: allowed tcp twice, udp, the gateway.
  CHECK(packets(counters, "forward-masquerade") >= 4);

  // The deny records A's listener received: B's address (before A masquerades it) to each.
  REQUIRE(run_until(*ring, [&] {
    return denied.size() >= packets(counters, "forward-nflog") + packets(counters, "input-nflog");
  }));
  std::map<std::string, int> seen;  // "hook dst:port"
  for (const auto& d : denied) {
    CHECK(d.prefix == netns::kDenyPrefix);
    CHECK(text(d.src) == netns::NestedLink::kInnerAddress);
    seen[std::to_string(d.hook) + " " + text(d.dst) + ":" + std::to_string(d.dst_port)]++;
  }
  for (const auto& [k, n] : seen) UNSCOPED_INFO("denied " << k << " x" << n);
  const std::string fwd = std::to_string(NF_INET_FORWARD) + " ", in = std::to_string(NF_INET_LOCAL_IN) + " ";
  CHECK(seen[fwd + a.ip() + ":" + std::to_string(tcp_other)] >= 2);
  CHECK(seen[fwd + a.root_ip() + ":" + std::to_string(host_port)] >= 1);
  CHECK(seen[in + netns::NestedLink::kOuterAddress + ":" + std::to_string(a_port)] >= 1);
  CHECK(seen[in + a_uplink_ip + ":" + std::to_string(a_port)] >= 1);
  CHECK(seen[fwd + a.ip() + ":" + std::to_string(tcp_ok)] == 0);
  listener->stop();
  REQUIRE(run_until(*ring, [&] { return !listener->in_flight(); }));

  // Teardown: B died with the child, and its veth end took A's with it.
  bool link_gone = false;
  for (int i = 0; i < 300 && !link_gone; ++i) {
    link_gone = in_netns(A, [] { return if_nametoindex(netns::kNestedLinkIfname); }) == 0;
    if (!link_gone) ::usleep(10000);
  }
  CHECK(link_gone);
  link.reset();
  CHECK(sysctl_in(A, "/proc/sys/net/ipv4/ip_forward") == "0");
  // Every socket in A holds A: the uplink's veth goes only once A does.
  listener.reset();
  a_service.reset();
  a_nf = netns::NetlinkSocket();
  parent.check_gone();
}

TEST_CASE("nested link: a nested reactor's bridge, NAT and cell behind B: the nested cell's "
          "allowed traffic passes both rulesets, what either denies never leaves",
          "[net][nested]") {
  std::string why;
  if (!test::can_build_test_hosts(&why)) CELLOS_SKIP(why);
  test::TestHost a(31);
  const int tcp_ok = a.tcp(), tcp_other = a.tcp(), udp_ok = a.udp();
  a.start();
  // The parent allows tcp_ok and udp_ok; the nested cell's own ruleset allows tcp_ok and
  // tcp_other (wider than its parent on one port, narrower on udp).
  Parent parent({target(a.ip(), tcp_ok, IPPROTO_TCP, "egress[0]"),
                 target(a.ip(), udp_ok, IPPROTO_UDP, "egress[1]")});
  const int A = parent.net->netns_fd();
  auto ring = must(reactor::Ring::create({}));
  std::vector<netns::DenyRecord> denied;
  netns::NflogOptions lo;
  lo.on_record = [&](const netns::DenyRecord& r) { denied.push_back(r); };
  auto listener = must(parent.net->open_nflog(*ring, lo));

  InnerCell child([&](auto put, auto) {
    // What a nested reactor with `[network] uplink = "nat"` makes in B, with the same code,
    // and its cell's namespace C (with the nested cell's own ruleset) on it.
    auto uplink = netns::HostUplink::create({"nested", "", "10.213.0.0/24"});
    if (!uplink.ok()) return put("nested_uplink", uplink.error().message());
    netns::CellNetOptions o;
    o.ruleset.targets = {target(a.ip(), tcp_ok, IPPROTO_TCP, "egress[0]"),
                         target(a.ip(), tcp_other, IPPROTO_TCP, "egress[1]")};
    o.uplink = uplink->get();
    auto cell = netns::CellNetwork::create(o);
    if (!cell.ok()) return put("nested_cell", cell.error().message());
    put("nested_cell", (*cell)->address().value_or("none"));
    const int C = (*cell)->netns_fd();
    // The child's thread moves between B and C; B's fd taken first to come back.
    auto home = base::open_at(AT_FDCWD, "/proc/thread-self/ns/net", O_RDONLY);
    if (!home.ok()) return put("home", home.error().message());
    auto in_c = [&](const std::string& key, auto&& probe) {
      if (::setns(C, CLONE_NEWNET) != 0) return put(key, "setns " + std::to_string(errno));
      put(key, probe());
      if (::setns(home->get(), CLONE_NEWNET) != 0) ::_exit(30);
    };
    in_c("allowed_by_both", [&] { return tcp_connect(a.ip(), tcp_ok); });
    in_c("denied_by_parent", [&] { return tcp_connect(a.ip(), tcp_other); });
    in_c("denied_by_nested", [&] { return udp_ping(a.ip(), udp_ok); });
    // Root of B and C flushes every table in both: C's ruleset and B's NAT are gone, A's
    // rules are not, and what the parent denies still never leaves.
    auto nf_b = netns::NetlinkSocket::open(NETLINK_NETFILTER);
    auto nf_c = netns::NetlinkSocket::open_in(C, NETLINK_NETFILTER);
    if (!nf_b.ok() || !nf_c.ok()) return put("nfnetlink", "failed");
    put("flushed_b", std::to_string(flush_every_table(*nf_b)));
    put("flushed_c", std::to_string(flush_every_table(*nf_c)));
    in_c("denied_by_parent_after_flush", [&] { return tcp_connect(a.ip(), tcp_other); });
  });
  auto link = must(netns::NestedLink::create({A, child.pid(), -1}));
  child.go();
  auto r = child.finish();
  for (const auto& [k, v] : r) UNSCOPED_INFO(k << " = " << v);
  CHECK_THAT(r["nested_cell"], Catch::StartsWith("10.213.0."));
  CHECK(r["allowed_by_both"] == "ok hello");
  CHECK(r["denied_by_parent"] == "timeout");  // left C and B, dropped in A
  CHECK(r["denied_by_nested"] == "blocked");  // C's own output chain: EPERM
  CHECK(r["flushed_b"] == "1");               // the nested uplink's table
  CHECK(r["flushed_c"] == "1");               // the nested cell's table
  CHECK(r["denied_by_parent_after_flush"] == "timeout");

  auto counters = must(parent.net->counters());
  CHECK(packets(counters, "egress[0]") >= 1);
  CHECK(packets(counters, "egress[1]") == 0);  // C denied its udp before it left C
  CHECK(packets(counters, "forward-nflog") >= 1);
  REQUIRE(run_until(*ring, [&] { return denied.size() >= packets(counters, "forward-nflog"); }));
  int to_other = 0;
  for (const auto& d : denied) {
    CHECK(d.hook == NF_INET_FORWARD);
    CHECK(text(d.src) == netns::NestedLink::kInnerAddress);  // B masqueraded C
    if (text(d.dst) == a.ip() && d.dst_port == tcp_other) ++to_other;
  }
  // The first attempt. After the flush B no longer masquerades C, and A's reverse-path
  // filter drops C's own source address on arrival, before any hook: no record, no exit.
  CHECK(to_other >= 1);
  listener->stop();
  REQUIRE(run_until(*ring, [&] { return !listener->in_flight(); }));
  link.reset();
  listener.reset();
  parent.check_gone();
}

TEST_CASE("nested link: an address the parent's DNS authority opens is open to the inner "
          "namespace too, through the same set and counter", "[net][nested]") {
  std::string why;
  if (!test::can_build_test_hosts(&why)) CELLOS_SKIP(why);
  test::TestHost a(30);
  const int port = a.tcp();
  a.start();
  // No target at all: only the dns4/dns6 sets, which the parent's proxy fills.
  Parent parent({}, /*dns_sets=*/true);
  const int A = parent.net->netns_fd();
  InnerCell child([&](auto put, auto sync) {
    put("before", tcp_connect(a.ip(), port));
    sync();
    put("after", tcp_connect(a.ip(), port));
  });
  auto link = must(netns::NestedLink::create({A, child.pid(), -1}));
  child.go();
  child.wait_sync();
  // What CellDns does when it hands out an answer for a named egress rule.
  netns::DnsSetElement e{target(a.ip(), port, IPPROTO_TCP, ""), 60000};
  must(parent.net->update_dns_sets({e}, {}));
  child.go();
  auto r = child.finish();
  CHECK(r["before"] == "timeout");
  CHECK(r["after"] == "ok hello");
  auto counters = must(parent.net->counters());
  CHECK(packets(counters, "dns") == 1);  // the one SYN of the connection it opened
  CHECK(packets(counters, "forward-nflog") >= 1);
  link.reset();
  parent.check_gone();
}
