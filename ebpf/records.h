// What the flow probes report, as C++ values: a flow (key + counters), and the ring buffer
// records (births, ends, connects, denials). Decoded from the kernel ABI (flow_abi.h) in one
// place so no caller reads the raw structs.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace cellos::ebpf {

// One connection as the cell sees it: `local` is the cell's side, whichever side opened it.
struct FlowKey {
  uint64_t cgroup_id = 0;
  int family = 0;                      // AF_INET | AF_INET6
  uint8_t l4proto = 0;                 // IPPROTO_TCP, IPPROTO_UDP, ...
  std::array<uint8_t, 16> local_addr{};  // network byte order; IPv4 in the first 4 bytes
  std::array<uint8_t, 16> remote_addr{};
  uint16_t local_port = 0;             // host byte order
  uint16_t remote_port = 0;
  bool operator==(const FlowKey&) const = default;
};

enum class DenyReason : uint8_t {
  none = 0,
  egress_default_deny = 1,   // cgroup_skb egress dropped packets to a destination not allowed
  connect_default_deny = 2,  // connect() to a destination not allowed failed with EPERM
};
// "egress_default_deny", ... (the CloudEvents reasonCode).
std::string_view reason_code(DenyReason r);

// Bytes are IP packet lengths (skb->len at the cgroup_skb hooks: IP header + L4 header +
// payload). Times are CLOCK_MONOTONIC nanoseconds; packet times have the kernel tick's grain
// (bpf_ktime_get_coarse_ns: 4 ms at HZ=250), connect times are precise.
struct FlowCounters {
  uint64_t tx_packets = 0, tx_bytes = 0;  // sent by the cell (dropped ones, if denied)
  uint64_t rx_packets = 0, rx_bytes = 0;  // received by the cell
  uint64_t first_seen_ns = 0, last_seen_ns = 0;
  uint32_t tcp_flags = 0;  // OR of the TCP flags bytes seen
  uint32_t flags = 0;      // CELLOS_FLOW_F_* (flow_abi.h); the accessors below name them
  uint32_t connects = 0;   // refused connect() calls folded into a denied-connect entry
  DenyReason reason = DenyReason::none;

  bool origin_ingress() const;  // the remote side sent the first packet
  bool birth_sent() const;      // false: accounting was off or the birth record was lost
  bool ended() const;           // RST, or FIN both ways
  bool denied() const;
  bool denied_connect() const;  // the entry stands for refused connect() calls
};

struct Flow {
  FlowKey key;
  FlowCounters counters;
};

enum class RecordKind : uint8_t { birth = 1, end = 2, connect = 3, deny = 4 };
std::string_view record_kind_name(RecordKind k);

// One ring buffer record. For `connect` (and a connect's `deny`) the key's remote side is the
// destination and the local side is zero; `pid` is the caller's.
struct FlowRecord {
  RecordKind kind = RecordKind::birth;
  uint32_t pid = 0;
  uint64_t time_ns = 0;
  Flow flow;
};

// "tcp 127.0.0.1:40000 -> 127.0.0.1:8080" for logs and test failures.
std::string describe(const FlowKey& k);

}  // namespace cellos::ebpf
