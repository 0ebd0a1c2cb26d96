// HostUplink: the host side of `[network] uplink = "nat"`, owned by the reactor.
//
//   a bridge (named from the host id) holding the gateway address, the first of the subnet ·
//   a host nft table masquerading the subnet, dropping cells' traffic to the host itself and
//   anything that would open a flow into a cell · net.ipv4.ip_forward = 1 ·
//   a pool of per-cell addresses in the subnet (one /N for all, each cell one host address).
//
// Shared by every reactor of one host id: the fleet daemon and any number of `run`s at once
// (CI hosts run many jobs, each calling `run`). The first to come creates the bridge and the
// host table, later ones join them, the last to leave removes them. Three kinds of flock under
// <state_dir>/uplink/ make that hold through crashes, because a lock dies with its holder:
//
//   setup.lock      held (exclusive) only while one reactor creates, joins or leaves
//   users.lock      held shared by every reactor using the uplink; whoever can take it
//                   exclusively (under setup.lock) is alone: it creates after removing what a
//                   crashed predecessor left (cleanup_stale), or removes when it leaves
//   leases/<index>  held by the reactor whose cell has that address, so no two processes ever
//                   hand out the same address (or veth name)
//
// Cells' veth pairs die with their network namespaces, so a crash leaves none behind.
#pragma once

#include <netinet/in.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "netns/netlink.h"

namespace cellos::netns {

struct UplinkOptions {
  std::string host_id;
  // Where the locks live (<state_dir>/uplink/, see above); every reactor of the host id must
  // use the same one. Empty: no locks (tests of a single process only).
  std::string state_dir;
  std::string subnet = "10.213.0.0/16";  // IPv4, /8../24 (config.cc checks the shape)
};

// One cell's address, returned to the pool when the cell's network is torn down.
struct AddressLease {
  uint32_t index = 0;  // host part: 2.. (1 is the gateway)
  in_addr addr{};
};

class HostUplink {
 public:
  static base::Result<std::unique_ptr<HostUplink>> create(const UplinkOptions& options);
  // Removes the bridge and host table a previous reactor of `host_id` left; absent is fine.
  static base::Result<void> cleanup_stale(const std::string& host_id);
  // Names the uplink of `host_id` uses (tests look for leftovers by them).
  static std::string bridge_name(const std::string& host_id);
  static std::string table_name(const std::string& host_id);
  // Every cell veth of `host_id` starts with this.
  static std::string veth_prefix(const std::string& host_id);

  ~HostUplink();
  HostUplink(const HostUplink&) = delete;
  HostUplink& operator=(const HostUplink&) = delete;

  const std::string& bridge() const { return bridge_; }
  int bridge_index() const { return bridge_index_; }
  in_addr gateway() const { return gateway_; }
  int prefix_len() const { return prefix_len_; }
  // "cv" + host hash + lease index: unique on the host, within IFNAMSIZ.
  std::string veth_name(const AddressLease& lease) const;

  // An address no cell of any reactor of the host id holds: never-used ones first (from where
  // this reactor starts: the creator at the first, a joiner at a random one, so processes
  // rarely race for the same), then the longest-released one.
  base::Result<AddressLease> lease();
  void release(const AddressLease& lease);

  // rtnetlink in the root namespace, for the host ends of cells' veth pairs.
  NetlinkSocket& rtnl() { return rtnl_; }

 private:
  HostUplink() = default;
  base::Result<void> lock_dirs(const std::string& state_dir);
  // Takes the lease lock of `index`; false when another reactor holds it.
  bool try_hold(uint32_t index);
  std::string host_id_, bridge_, table_, lease_dir_;
  int bridge_index_ = 0;
  in_addr subnet_{}, gateway_{};
  int prefix_len_ = 16;
  uint32_t next_ = 2, last_ = 0, tried_ = 0;  // tried_: never-used indexes tried so far
  std::deque<uint32_t> free_;  // FIFO: an address is reused as late as possible
  std::unordered_map<uint32_t, base::Fd> held_;  // lease locks of this reactor's cells
  NetlinkSocket rtnl_, nf_;
  base::Fd setup_, users_;
  bool owner_ = false;  // created the bridge (else joined it)
};

}  // namespace cellos::netns
