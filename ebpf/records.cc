#include "ebpf/records.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include "ebpf/abi.h"

namespace cellos::ebpf {

std::string_view reason_code(DenyReason r) {
  switch (r) {
    case DenyReason::none: return "none";
    case DenyReason::egress_default_deny: return "egress_default_deny";
    case DenyReason::connect_default_deny: return "connect_default_deny";
  }
  return "unknown";
}

std::string_view record_kind_name(RecordKind k) {
  switch (k) {
    case RecordKind::birth: return "birth";
    case RecordKind::end: return "end";
    case RecordKind::connect: return "connect";
    case RecordKind::deny: return "deny";
  }
  return "unknown";
}

bool FlowCounters::origin_ingress() const { return flags & CELLOS_FLOW_F_ORIGIN_INGRESS; }
bool FlowCounters::birth_sent() const { return flags & CELLOS_FLOW_F_BIRTH_SENT; }
bool FlowCounters::ended() const { return flags & CELLOS_FLOW_F_ENDED; }
bool FlowCounters::denied() const { return flags & CELLOS_FLOW_F_DENIED; }
bool FlowCounters::denied_connect() const { return flags & CELLOS_FLOW_F_CONNECT; }

std::string describe(const FlowKey& k) {
  char local[INET6_ADDRSTRLEN] = "?", remote[INET6_ADDRSTRLEN] = "?";
  ::inet_ntop(k.family, k.local_addr.data(), local, sizeof(local));
  ::inet_ntop(k.family, k.remote_addr.data(), remote, sizeof(remote));
  const char* proto = k.l4proto == IPPROTO_TCP ? "tcp" : k.l4proto == IPPROTO_UDP ? "udp" : "ip";
  const bool v6 = k.family == AF_INET6;
  std::string out = std::string(proto) + " " + (v6 ? "[" : "") + local + (v6 ? "]:" : ":") +
                    std::to_string(k.local_port) + " -> " + (v6 ? "[" : "") + remote +
                    (v6 ? "]:" : ":") + std::to_string(k.remote_port);
  if (k.l4proto != IPPROTO_TCP && k.l4proto != IPPROTO_UDP) out += " proto " + std::to_string(k.l4proto);
  return out + " cgroup " + std::to_string(k.cgroup_id);
}

namespace abi {

Flow decode(const cellos_flow_key& k, const cellos_flow_value& v) {
  Flow f;
  f.key.cgroup_id = k.cgroup_id;
  f.key.family = k.family;
  f.key.l4proto = k.l4proto;
  std::memcpy(f.key.local_addr.data(), k.local_addr, 16);
  std::memcpy(f.key.remote_addr.data(), k.remote_addr, 16);
  f.key.local_port = k.local_port;
  f.key.remote_port = k.remote_port;
  FlowCounters& c = f.counters;
  c.tx_packets = v.tx_packets;
  c.tx_bytes = v.tx_bytes;
  c.rx_packets = v.rx_packets;
  c.rx_bytes = v.rx_bytes;
  c.first_seen_ns = v.first_seen_ns;
  c.last_seen_ns = v.last_seen_ns;
  c.tcp_flags = v.tcp_flags;
  c.flags = v.flags;
  c.connects = v.connects;
  c.reason = static_cast<DenyReason>(v.reason);
  return f;
}

cellos_flow_key encode(const FlowKey& f) {
  cellos_flow_key k;
  std::memset(&k, 0, sizeof(k));  // the hash covers the padding too
  k.cgroup_id = f.cgroup_id;
  k.family = static_cast<__u8>(f.family);
  k.l4proto = f.l4proto;
  k.local_port = f.local_port;
  k.remote_port = f.remote_port;
  std::memcpy(k.local_addr, f.local_addr.data(), 16);
  std::memcpy(k.remote_addr, f.remote_addr.data(), 16);
  return k;
}

cellos_allow_key allow_key(uint64_t cgroup_id, const AllowRule& r) {
  cellos_allow_key k;
  std::memset(&k, 0, sizeof(k));  // the trie compares the whole key: no stray bytes
  const int width = r.family == AF_INET ? 32 : 128;
  const int len = std::clamp(r.prefix_len, 0, width);
  k.prefixlen = CELLOS_ALLOW_FIXED_BITS + static_cast<uint32_t>(len);
  k.cgroup_id = cgroup_id;
  k.l4proto = r.l4proto;
  k.family = static_cast<uint8_t>(r.family == AF_INET ? CELLOS_AF_INET : CELLOS_AF_INET6);
  k.port = r.port;
  // Only the prefix's bits: two rules differing past the prefix are one entry in the trie.
  for (int i = 0; i < width / 8; i++) {
    const int bits = std::clamp(len - i * 8, 0, 8);
    k.addr[i] = static_cast<uint8_t>(r.addr[i] & (0xff00 >> bits));
  }
  return k;
}

}  // namespace abi
}  // namespace cellos::ebpf
