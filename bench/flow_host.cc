#include "bench/flow_host.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "netns/netlink.h"
#include "netns/rtnl.h"

namespace cellos::flowbench {
namespace {

void check(bool ok, const std::string& what) {
  if (!ok) throw std::runtime_error("server host: " + what + (errno ? std::string(": ") + strerrorname_np(errno) : ""));
}

template <typename T>
T must(base::Result<T> r, const std::string& what) {
  if (!r.ok()) throw std::runtime_error("server host: " + what + ": " + r.error().message());
  return std::move(r).value();
}

void must(base::Result<void> r, const std::string& what) {
  if (!r.ok()) throw std::runtime_error("server host: " + what + ": " + r.error().message());
}

bool octet_in_use(int k) {
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return false;
  bool used = false;
  for (ifaddrs* i = list; i; i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET) continue;
    uint32_t a = ntohl(reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr.s_addr);
    if ((a >> 24) == 172 && ((a >> 16) & 0xff) >= 30 && ((a >> 16) & 0xff) <= 31 &&
        static_cast<int>((a >> 8) & 0xff) == k)
      used = true;
  }
  ::freeifaddrs(list);
  return used;
}

}  // namespace

int free_octet() {
  int k = ::getpid() % 250;
  for (int tries = 0; tries < 250 && octet_in_use(k); ++tries) k = (k + 1) % 250;
  return k;
}

ServerHost::ServerHost(const std::string& self_exe, int octet) {
  const std::string net = "172.30." + std::to_string(octet) + ".";
  ip_ = net + "2";
  root_ip_ = net + "1";
  char name[16];
  std::snprintf(name, sizeof name, "fb%x", static_cast<unsigned>(::getpid()));
  veth_ = name;

  // The namespace: unshare in this (single-threaded) process, keep an fd, go home. As in
  // test_hosts: only a netlink socket is opened in there, everything that can throw runs home.
  base::Fd home = must(base::open_at(AT_FDCWD, "/proc/thread-self/ns/net", O_RDONLY), "open netns");
  errno = 0;
  check(::unshare(CLONE_NEWNET) == 0, "unshare(CLONE_NEWNET)");
  netns_ = must(base::open_at(AT_FDCWD, "/proc/thread-self/ns/net", O_RDONLY), "open netns");
  auto inner = netns::NetlinkSocket::open(NETLINK_ROUTE);
  check(::setns(home.get(), CLONE_NEWNET) == 0, "setns(home)");
  if (!inner.ok()) throw std::runtime_error("server host: rtnetlink inside: " + inner.error().message());
  must(netns::rtnl::set_link_up(*inner, must(netns::rtnl::link_index(*inner, "lo"), "lo")), "lo up");

  auto root = must(netns::NetlinkSocket::open(NETLINK_ROUTE), "rtnetlink");
  (void)netns::rtnl::delete_link(root, veth_);  // a leftover of a killed run with our pid
  must(netns::rtnl::create_veth(root, {veth_, "eth0", netns_.get(), 0}), "veth " + veth_);
  in_addr a{};
  ::inet_pton(AF_INET, root_ip_.c_str(), &a);
  must(netns::rtnl::add_address(root, must(netns::rtnl::link_index(root, veth_), "veth index"), a, 24),
       "address " + root_ip_);
  int eth0 = must(netns::rtnl::link_index(*inner, "eth0"), "eth0");
  ::inet_pton(AF_INET, ip_.c_str(), &a);
  must(netns::rtnl::add_address(*inner, eth0, a, 24), "address " + ip_);
  must(netns::rtnl::set_link_up(*inner, eth0), "eth0 up");

  // The sink: this binary again, in the namespace, on two pipes. PDEATHSIG: if the driver dies
  // however it dies, the sink follows, and the namespace (with the veth) goes with the last user.
  base::Pipe in = must(base::make_pipe(), "pipe"), out = must(base::make_pipe(), "pipe");
  pid_t parent = ::getpid();
  pid_ = ::fork();
  check(pid_ >= 0, "fork");
  if (pid_ == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(1);
    if (::setns(netns_.get(), CLONE_NEWNET) != 0) ::_exit(1);
    ::dup2(in.read.get(), 0);
    ::dup2(out.write.get(), 1);
    ::execl(self_exe.c_str(), self_exe.c_str(), "--serve", ip_.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  to_server_ = std::move(in.write);
  from_server_ = std::move(out.read);
  std::string ready = read_line(10000);
  if (std::sscanf(ready.c_str(), "ready %d %d", &tcp_port_, &udp_port_) != 2)
    throw std::runtime_error("server host: the sink did not start (\"" + ready + "\")");
}

ServerHost::~ServerHost() {
  to_server_.reset();  // EOF: the sink exits
  if (pid_ > 0) {
    int st;
    for (int i = 0; i < 200 && ::waitpid(pid_, &st, WNOHANG) == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (::waitpid(pid_, &st, WNOHANG) == 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &st, 0);
    }
  }
  auto root = netns::NetlinkSocket::open(NETLINK_ROUTE);
  if (root.ok()) (void)netns::rtnl::delete_link(*root, veth_);
}

std::string ServerHost::read_line(int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (pending_.find('\n') == std::string::npos) {
    int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                    deadline - std::chrono::steady_clock::now()).count());
    if (left <= 0) return "";
    pollfd p{from_server_.get(), POLLIN, 0};
    if (::poll(&p, 1, left) <= 0) continue;
    char buf[256];
    ssize_t r = ::read(from_server_.get(), buf, sizeof buf);
    if (r <= 0) return "";
    pending_.append(buf, static_cast<size_t>(r));
  }
  std::string line = pending_.substr(0, pending_.find('\n'));
  pending_.erase(0, line.size() + 1);
  return line;
}

bool ServerHost::counts(ServerCounts& c) {
  if (::write(to_server_.get(), "\n", 1) != 1) return false;
  std::string line = read_line(10000);
  return std::sscanf(line.c_str(), "counts %lu %lu %lu %lu", &c.conns, &c.bytes, &c.datagrams,
                     &c.udp_bytes) == 4;
}

}  // namespace cellos::flowbench
