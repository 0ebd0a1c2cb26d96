// NetlinkSocket: one netlink socket (rtnetlink or nfnetlink), the one owner of its descriptor.
//
// A netlink socket stays bound to the network namespace it was opened in, whatever namespace
// its user is in later: that is how the reactor configures a cell's namespace from the root
// one (open while setns'ed into the cell's namespace, setns back, keep the socket).
#pragma once

#include <linux/netlink.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"

struct mnl_socket;

namespace cellos::netns {

class NetlinkSocket {
 public:
  // socket(AF_NETLINK, NETLINK_ROUTE | NETLINK_NETFILTER) in the calling thread's namespace,
  // bound, with a receive buffer large enough for the acks of a whole ruleset batch.
  static base::Result<NetlinkSocket> open(int protocol);
  // The same, opened inside the network namespace `netns_fd`: the calling thread joins it for
  // the socket() and bind() calls only, then returns to its own.
  static base::Result<NetlinkSocket> open_in(int netns_fd, int protocol);

  NetlinkSocket() = default;
  NetlinkSocket(NetlinkSocket&&) noexcept = default;
  NetlinkSocket& operator=(NetlinkSocket&&) noexcept = default;
  ~NetlinkSocket();

  bool valid() const { return sock_ != nullptr; }
  uint32_t next_seq() { return ++seq_; }
  mnl_socket* raw() const { return sock_.get(); }
  int fd() const;

  // Sends `buf` (one message or a batch) and reads replies until `acks` acknowledgements have
  // arrived, or the first error, which becomes the Result's errno. `what` names the object.
  // Reads into a buffer the calling thread keeps between calls (no call back, so no call
  // of it can begin while another runs on the thread).
  base::Result<void> send_and_ack(std::span<const std::byte> buf, int acks,
                                  const std::string& what);

  // Sends one dump request and hands every reply message to `each` until NLMSG_DONE.
  using MessageFn = std::function<void(const nlmsghdr*)>;
  base::Result<void> dump(const nlmsghdr* request, const MessageFn& each,
                          const std::string& what);

 private:
  struct Closer {
    void operator()(mnl_socket* s) const;
  };
  std::unique_ptr<mnl_socket, Closer> sock_;
  uint32_t portid_ = 0;
  uint32_t seq_ = 0;
};

}  // namespace cellos::netns
