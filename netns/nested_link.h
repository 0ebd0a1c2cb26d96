// NestedLink: the link from a nested cell's outer network namespace to its inner one
// (docs/nested.md, "The network of a nested cell").
//
//   outer (A): the cell's CellNetwork, owned by the host's user namespace: the uplink veth
//              `eth0`, the cell's ruleset (with CellRuleset::forward: the forward and input
//              filters and the link's masquerade), and what this adds: veth end `nest0`
//              169.254.77.1/30, forwarding on, strict reverse-path filter on nest0
//   inner (B): owned by the nested cell's user namespace, where the nested reactor is root:
//              veth end `eth0` 169.254.77.2/30, default route via 169.254.77.1
//
// B's root can flush any nft table, change any address or route in B: none of that reaches
// A, whose rules see every packet B sends (forward hook) or addresses to A (input hook).
//
// The link subnet is the same in every cell (each A is private to its cell) and is
// link-local (RFC 3927), because that is what it is: addresses meaningful on one link only.
// Nothing carrying them ever leaves A (masqueraded to A's uplink address), they are outside
// the uplink pool (10.213.0.0/16 by default, and whatever [network] subnet the nested
// reactor picks for its own bridge in B), and a /30 takes only four addresses out of what B
// can reach (169.254.169.254, the cloud metadata address, is not one of them).
#pragma once

#include <netinet/in.h>
#include <sys/types.h>

#include <memory>
#include <string>

#include "base/fd.h"
#include "base/result.h"
#include "netns/nft.h"

namespace cellos::netns {

struct NestedLinkOptions {
  // A: the nested cell's CellNetwork::netns_fd(). Its ruleset must have been installed with
  // CellRuleset::forward: create() refuses a namespace without the forward filter.
  int outer_netns_fd = -1;
  // B: the network namespace of `inner_pid` (/proc/<pid>/ns/net), a process the caller made
  // with CLONE_NEWUSER | CLONE_NEWNET and keeps waiting (unreaped, so the pid is not reused)
  // until create() returns. Or B itself as `inner_netns_fd` (used when >= 0; not kept).
  pid_t inner_pid = 0;
  int inner_netns_fd = -1;
};

class NestedLink {
 public:
  // In kNestedLinkNetwork / kNestedLinkPrefixLen (netns/nft.h).
  static constexpr const char* kOuterAddress = "169.254.77.1";
  static constexpr const char* kInnerAddress = "169.254.77.2";

  // From the reactor's thread, which ends in the namespace it started in. On failure A's
  // forwarding is back as it was; a pair already made goes with B, whose process the caller ends.
  static base::Result<std::unique_ptr<NestedLink>> create(const NestedLinkOptions& options);
  // Puts A's forwarding back as it was. The veth pair is not deleted here (that
  // waits for RCU grace periods, 20-27 ms, on the reactor's thread): it goes with B, whose
  // last process ending makes the kernel delete B's end and with it A's.
  ~NestedLink();
  NestedLink(const NestedLink&) = delete;
  NestedLink& operator=(const NestedLink&) = delete;

 private:
  NestedLink() = default;
  base::Fd outer_;              // a dup of A, for the destructor
  std::string forwarding_was_;  // A's ip_forward before create() ("0" / "1"); empty: untouched
};

}  // namespace cellos::netns
