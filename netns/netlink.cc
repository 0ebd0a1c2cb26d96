#include "netns/netlink.h"

#include <fcntl.h>
#include <libmnl/libmnl.h>
#include <sched.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "base/fd.h"

namespace cellos::netns {
namespace {
// Room for the acks of a 200-rule batch in one recvmsg, and for a dump's multi-part replies.
constexpr size_t kRecvBuf = 64 * 1024;
constexpr int kSockRcvBuf = 1 << 20;
}  // namespace

void NetlinkSocket::Closer::operator()(mnl_socket* s) const { mnl_socket_close(s); }

NetlinkSocket::~NetlinkSocket() = default;

base::Result<NetlinkSocket> NetlinkSocket::open(int protocol) {
  const char* name = protocol == NETLINK_ROUTE ? "rtnetlink" : "nfnetlink";
  mnl_socket* s = mnl_socket_open2(protocol, SOCK_CLOEXEC);
  if (s == nullptr) return base::sys_error("socket", name);
  NetlinkSocket ns;
  ns.sock_.reset(s);
  if (mnl_socket_bind(s, 0, MNL_SOCKET_AUTOPID) < 0) return base::sys_error("bind", name);
  // A batch is answered by one ack per message: a small default buffer would drop them.
  int size = kSockRcvBuf;
  ::setsockopt(mnl_socket_get_fd(s), SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  ns.portid_ = mnl_socket_get_portid(s);
  return ns;
}

int NetlinkSocket::fd() const { return sock_ ? mnl_socket_get_fd(sock_.get()) : -1; }

base::Result<NetlinkSocket> NetlinkSocket::open_in(int netns_fd, int protocol) {
  auto home = base::open_at(AT_FDCWD, "/proc/thread-self/ns/net", O_RDONLY);
  if (!home) return std::move(home).error();
  if (::setns(netns_fd, CLONE_NEWNET) != 0) return base::sys_error("setns", "cell netns");
  auto s = open(protocol);
  // Failing to return would leave the reactor in a cell's namespace: nothing after that could
  // be trusted, so it is the one failure here that ends the process.
  if (::setns(home->get(), CLONE_NEWNET) != 0) {
    std::perror("cellos-reactor: setns back to the host network namespace");
    std::abort();
  }
  return s;
}

base::Result<void> NetlinkSocket::send_and_ack(std::span<const std::byte> buf, int acks,
                                               const std::string& what) {
  if (mnl_socket_sendto(sock_.get(), buf.data(), buf.size()) < 0)
    return base::sys_error("sendmsg", what);
  // Kept for the thread's next batch and not zeroed (the kernel writes what is read): a
  // zero-filled 64 KiB per batch cost page faults and heap trims per install (netlink.h says
  // why nothing here calls back into this socket while it is in use).
  thread_local const auto rx = std::make_unique_for_overwrite<std::byte[]>(kRecvBuf);
  int seen = 0;
  while (seen < acks) {
    ssize_t n = mnl_socket_recvfrom(sock_.get(), rx.get(), kRecvBuf);
    if (n < 0) return base::sys_error("recvmsg", what);
    // Walk the replies ourselves: each NLMSG_ERROR is an ack (error 0) or the failure.
    int len = static_cast<int>(n);
    for (auto* h = reinterpret_cast<const nlmsghdr*>(rx.get()); mnl_nlmsg_ok(h, len);
         h = mnl_nlmsg_next(h, &len)) {
      if (h->nlmsg_type != NLMSG_ERROR) continue;
      auto* e = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(h));
      if (e->error != 0) return base::sys_error("netlink", what, -e->error);
      ++seen;
    }
  }
  return base::ok();
}

base::Result<void> NetlinkSocket::dump(const nlmsghdr* request, const MessageFn& each,
                                       const std::string& what) {
  if (mnl_socket_sendto(sock_.get(), request, request->nlmsg_len) < 0)
    return base::sys_error("sendmsg", what);
  std::vector<std::byte> rx(kRecvBuf);
  for (;;) {
    ssize_t n = mnl_socket_recvfrom(sock_.get(), rx.data(), rx.size());
    if (n < 0) return base::sys_error("recvmsg", what);
    int len = static_cast<int>(n);
    for (auto* h = reinterpret_cast<const nlmsghdr*>(rx.data()); mnl_nlmsg_ok(h, len);
         h = mnl_nlmsg_next(h, &len)) {
      if (h->nlmsg_type == NLMSG_DONE) return base::ok();
      if (h->nlmsg_type == NLMSG_ERROR) {
        auto* e = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(h));
        if (e->error != 0) return base::sys_error("netlink dump", what, -e->error);
        continue;
      }
      each(h);
    }
  }
}

}  // namespace cellos::netns
