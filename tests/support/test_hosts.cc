#include "tests/support/test_hosts.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <stdexcept>

#include "netns/netlink.h"
#include "netns/rtnl.h"

namespace cellos::test {
namespace {

void check(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error("test host: " + what);
}

template <typename T>
T must(base::Result<T> r, const std::string& what) {
  check(r.ok(), what + ": " + (r.ok() ? "" : r.error().message()));
  return std::move(r).value();
}

void must(base::Result<void> r, const std::string& what) {
  check(r.ok(), what + ": " + (r.ok() ? "" : r.error().message()));
}

int bound_socket(int type, const std::string& ip, int port) {
  int fd = ::socket(AF_INET, type | SOCK_CLOEXEC, 0);
  check(fd >= 0, "socket");
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  check(inet_pton(AF_INET, ip.c_str(), &a.sin_addr) == 1, "address " + ip);
  check(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0, "bind " + ip);
  if (type == SOCK_STREAM) check(::listen(fd, 16) == 0, "listen");
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return fd;
}

int port_of(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

}  // namespace

Greeter::~Greeter() {
  if (thread_.joinable()) {
    (void)!::write(stop_.write.get(), "x", 1);
    thread_.join();
  }
}

int Greeter::listen_tcp(const std::string& ip, int port) {
  tcp_.emplace_back(bound_socket(SOCK_STREAM, ip, port));
  return port_of(tcp_.back().get());
}

int Greeter::listen_udp(const std::string& ip, int port) {
  udp_.emplace_back(bound_socket(SOCK_DGRAM, ip, port));
  return port_of(udp_.back().get());
}

void Greeter::start() {
  stop_ = must(base::make_pipe(), "pipe");
  thread_ = std::thread([this] { serve(); });
}

void Greeter::serve() {
  std::vector<pollfd> fds;
  fds.push_back({stop_.read.get(), POLLIN, 0});
  for (auto& f : tcp_) fds.push_back({f.get(), POLLIN, 0});
  for (auto& f : udp_) fds.push_back({f.get(), POLLIN, 0});
  for (;;) {
    if (::poll(fds.data(), fds.size(), 10000) < 0) return;
    if (fds[0].revents) return;
    for (size_t i = 1; i < fds.size(); ++i) {
      if (!fds[i].revents) continue;
      if (i <= tcp_.size()) {
        int c = ::accept4(fds[i].fd, nullptr, nullptr, SOCK_CLOEXEC);
        if (c >= 0) {
          (void)!::write(c, "hello", 5);
          ::close(c);
        }
      } else {
        char buf[64];
        sockaddr_in from{};
        socklen_t len = sizeof from;
        if (::recvfrom(fds[i].fd, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len) >= 0)
          ::sendto(fds[i].fd, "pong", 4, 0, reinterpret_cast<sockaddr*>(&from), len);
      }
    }
  }
}

TestHost::TestHost(int octet2) {
  const int k = ::getpid() % 250;
  const std::string net = "172." + std::to_string(octet2) + "." + std::to_string(k) + ".";
  ip_ = net + "2";
  root_ip_ = net + "1";
  char name[16];
  std::snprintf(name, sizeof name, "th%x%c", static_cast<unsigned>(::getpid()), 'a' + octet2 % 26);
  veth_ = name;

  home_ = must(base::open_at(AT_FDCWD, "/proc/thread-self/ns/net", O_RDONLY), "open netns");
  check(::unshare(CLONE_NEWNET) == 0, "unshare");
  netns_ = must(base::open_at(AT_FDCWD, "/proc/thread-self/ns/net", O_RDONLY), "open netns");
  // Only a socket is opened in there; everything that can throw happens back home.
  auto inner = netns::NetlinkSocket::open(NETLINK_ROUTE);
  check(::setns(home_.get(), CLONE_NEWNET) == 0, "setns home");
  check(inner.ok(), "rtnetlink in the test host");
  must(netns::rtnl::set_link_up(*inner, must(netns::rtnl::link_index(*inner, "lo"), "lo")), "lo up");

  auto root = must(netns::NetlinkSocket::open(NETLINK_ROUTE), "rtnetlink");
  (void)netns::rtnl::delete_link(root, veth_);  // a leftover of a crashed run with our pid
  must(netns::rtnl::create_veth(root, {veth_, "eth0", netns_.get(), 0}), "veth");
  int root_end = must(netns::rtnl::link_index(root, veth_), "veth index");
  in_addr a{};
  inet_pton(AF_INET, root_ip_.c_str(), &a);
  must(netns::rtnl::add_address(root, root_end, a, 24), "root address");
  int eth0 = must(netns::rtnl::link_index(*inner, "eth0"), "eth0");
  inet_pton(AF_INET, ip_.c_str(), &a);
  must(netns::rtnl::add_address(*inner, eth0, a, 24), "host address");
  must(netns::rtnl::set_link_up(*inner, eth0), "eth0 up");
}

TestHost::~TestHost() {
  auto root = netns::NetlinkSocket::open(NETLINK_ROUTE);
  if (root.ok()) (void)netns::rtnl::delete_link(*root, veth_);
}

int TestHost::tcp(int port) {
  check(::setns(netns_.get(), CLONE_NEWNET) == 0, "setns test host");
  int p = greeter_.listen_tcp(ip_, port);
  check(::setns(home_.get(), CLONE_NEWNET) == 0, "setns home");
  return p;
}

int TestHost::udp(int port) {
  check(::setns(netns_.get(), CLONE_NEWNET) == 0, "setns test host");
  int p = greeter_.listen_udp(ip_, port);
  check(::setns(home_.get(), CLONE_NEWNET) == 0, "setns home");
  return p;
}

bool can_build_test_hosts(std::string* why) {
  if (::geteuid() != 0) {
    *why = "network tests need root (netns, veth, nftables)";
    return false;
  }
  return true;
}

}  // namespace cellos::test
