// HostUplink: the host side of `[network] uplink = "nat"`, owned by the reactor.
//
//   a bridge (named from the host id) holding the gateway address, the first of the subnet ·
//   a host nft table masquerading the subnet, dropping cells' traffic to the host itself and
//   anything that would open a flow into a cell · net.ipv4.ip_forward = 1 ·
//   a pool of per-cell addresses in the subnet (one /N for all, each cell one host address).
//
// Created at reactor start, removed when the reactor ends; a reactor that crashed leaves them,
// and the next start of the same host id removes them first (cleanup_stale). Cells' veth pairs
// die with their network namespaces, so a crash leaves none behind.
#pragma once

#include <netinet/in.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "netns/netlink.h"

namespace cellos::netns {

struct UplinkOptions {
  std::string host_id;
  // Holds uplink.lock (flock): one live owner per host id. A lock nobody holds means the last
  // owner is gone, and only then are its leftovers removed.
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

  // Never-used addresses first, then the longest-released one.
  base::Result<AddressLease> lease();
  void release(const AddressLease& lease);

  // rtnetlink in the root namespace, for the host ends of cells' veth pairs.
  NetlinkSocket& rtnl() { return rtnl_; }

 private:
  HostUplink() = default;
  std::string host_id_, bridge_, table_;
  int bridge_index_ = 0;
  in_addr subnet_{}, gateway_{};
  int prefix_len_ = 16;
  uint32_t next_ = 2, last_ = 0;
  std::deque<uint32_t> free_;  // FIFO: an address is reused as late as possible
  NetlinkSocket rtnl_, nf_;
  base::Fd lock_;
};

}  // namespace cellos::netns
