// CellAttachment: one cell's probes. Holds the four links (cgroup_skb ingress/egress,
// connect4/6) on the cell's cgroup2 directory; destroying it detaches them and then removes the
// cell's config, allow-list and flow entries from the shared maps.
#pragma once

#include <netinet/in.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"
#include "ebpf/bpf_link.h"

namespace cellos::ebpf {

class FlowProbes;

// One allowed destination: an address or prefix, one port, one protocol. The same shape as
// netns::EgressTarget (the caller converts; ebpf does not depend on netns).
struct AllowRule {
  int family = AF_INET;            // AF_INET | AF_INET6
  std::array<uint8_t, 16> addr{};  // network byte order; IPv4 in the first 4 bytes
  int prefix_len = 32;
  uint16_t port = 0;               // host byte order; exact (no port 0 wildcard)
  uint8_t l4proto = IPPROTO_TCP;   // IPPROTO_TCP | IPPROTO_UDP
};

struct CellAttachOptions {
  int cgroup_fd = -1;      // the cell's cgroup2 directory, borrowed for the call
  uint64_t cgroup_id = 0;  // cgroup_id_of(cgroup_fd)
  bool account = true;     // flow counters, births/ends, connect records
  bool enforce = false;    // [network] enforcement = bpf: refuse/drop what `allow` misses
  bool allow_loopback = true;  // with enforce: connects to loopback and packets via lo pass
  std::vector<AllowRule> allow;
  // A cgroup2 directory to keep the hooks switched on from (hook_keeper.h), made if missing;
  // only used when the object is pinned. Empty: none (each cell's attach switches them).
  std::string keeper_cgroup = {};
};

class CellAttachment {
 public:
  CellAttachment() = default;
  CellAttachment(const CellAttachment&) = delete;
  CellAttachment& operator=(const CellAttachment&) = delete;
  CellAttachment(CellAttachment&& o) noexcept;
  CellAttachment& operator=(CellAttachment&& o) noexcept;
  ~CellAttachment() { reset(); }

  bool attached() const { return probes_ != nullptr; }
  uint64_t cgroup_id() const { return cgroup_id_; }

  // Detach (links first, so no program can re-create an entry), then delete the cell's map
  // entries. Drain the cell's flows before this: what is left is discarded.
  void reset();

  // An allow-list entry added / removed while the cell runs (FlowProbes::add_allow); what is
  // added is deleted by reset() like the rest.
  base::Result<void> allow(const AllowRule& r);
  void disallow(const AllowRule& r);

 private:
  friend class FlowProbes;
  FlowProbes* probes_ = nullptr;  // not owned; FlowProbes must outlive its attachments
  uint64_t cgroup_id_ = 0;
  std::vector<BpfLink> links_;
  std::vector<AllowRule> allow_;  // to delete exactly the keys inserted
};

}  // namespace cellos::ebpf
