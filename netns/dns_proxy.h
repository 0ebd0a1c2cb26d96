// DnsProxy: a cell's only DNS server, on the reactor's ring.
//
// It listens on 127.0.0.1:53 (UDP and TCP) inside the cell's network namespace: the cell's
// loopback is its own, so no other cell and nothing on the host can reach it, and the cell's
// /etc/resolv.conf names it. Each query is looked at before anything leaves the host:
//
//   malformed (ldns cannot parse it, QR set, opcode not QUERY, not one question) or oversized
//   (over kMaxDnsQueryBytes): dropped, counted, never answered
//   class not IN, a name not on the allow-list, a type other than A / AAAA / CNAME: REFUSED,
//   answered by the proxy itself
//   otherwise: forwarded to the upstreams (the spec's resolvers, or the fleet's), with a fresh
//   message id, over the transport it came in on (UDP, or TCP for a client that retried over
//   TCP after a truncated answer); the answer goes back with the client's id.
//
// Upstream answers are matched by id, question and upstream socket (a connected UDP socket per
// upstream: the kernel drops datagrams from any other source), so an off-path answer does not
// reach the cell. A silent upstream costs one ring timeout: after `timeout` the query is sent to
// the next upstream, `tries` times in all, then the client gets SERVFAIL.
//
// No thread and no blocking call: every socket is non-blocking, readiness comes from one-shot
// polls on the ring, and the sockets are read until EAGAIN. Destroying the proxy cancels what is
// in flight; its state is freed by the last completion (the ring must keep running, or be
// destroyed, afterwards).
#pragma once

#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/io.h"
#include "base/result.h"
#include "netns/dns_message.h"

namespace cellos::netns {

// A DNS query is a header and one question: 12 + 255 + 4 bytes, plus an EDNS OPT record with
// room for a cookie and padding. Anything longer is not a question a build asks.
inline constexpr size_t kMaxDnsQueryBytes = 512;

// One query as the proxy decided it. Reasons: "allowlist_match" (forwarded; rcode is the
// upstream's), "hostname_not_allowlisted", "query_type_not_allowed", "query_class_not_allowed",
// "upstream_timeout", "upstream_error" (SERVFAIL sent), "proxy_busy" (SERVFAIL: too many
// queries in flight), "rebind_rejected" (REFUSED: see on_answer).
struct DnsQueryReport {
  std::string name;  // lower case, no trailing dot
  uint16_t qtype = 0;
  std::string transport;  // "udp" | "tcp"
  bool permitted = false;
  std::string reason;
  uint8_t rcode = 0;               // what the client got
  std::vector<std::string> answers;  // A / AAAA addresses and CNAME targets handed to the cell
  std::optional<int64_t> upstream_latency_us;
  std::string upstream;  // "ip:port" that answered
  // Malformed or oversized ("malformed_query", "oversized_query"): dropped, never answered;
  // name and type are unknown.
  bool dropped = false;
};

struct DnsProxyStats {
  uint64_t queries = 0;  // datagrams / TCP messages received, malformed ones included
  uint64_t permitted = 0, refused = 0, failed = 0;  // failed: SERVFAIL (timeout, error, busy)
  uint64_t malformed = 0, oversized = 0;            // dropped, never answered
  uint64_t upstream_retries = 0, upstream_bad_answers = 0;
  uint64_t tcp_connections = 0, tcp_refused = 0;  // tcp_refused: over max_tcp_clients
};

struct DnsProxyOptions {
  // The namespace the listening sockets are opened in (its loopback is brought up); -1: the
  // caller's own (tests).
  int netns_fd = -1;
  std::string listen_address = "127.0.0.1";
  uint16_t listen_port = 53;  // 0: any free port (tests), see udp_port() / tcp_port()
  // Whether the cell may resolve `name` (lower case, no trailing dot).
  std::function<bool(std::string_view name)> allowed;
  // "ip", "ip:port", "[v6]:port"; at least one.
  std::vector<std::string> upstreams;
  std::chrono::milliseconds timeout{2000};  // per try
  int tries = 2;
  size_t max_pending = 256;     // queries in flight upstream; beyond: SERVFAIL
  size_t max_tcp_clients = 16;  // open client connections; beyond: closed at once
  std::chrono::milliseconds tcp_idle{10000};
  // Called with each upstream answer to a permitted query before the cell sees it. Returning
  // a reason ("rebind_rejected") turns it into REFUSED with that reason; nullopt passes it.
  std::function<std::optional<std::string>(const DnsAnswer&)> on_answer;
  std::function<void(const DnsQueryReport&)> on_query;
};

class DnsProxy {
 public:
  static base::Result<std::unique_ptr<DnsProxy>> open(base::IoPort& io, DnsProxyOptions options);
  ~DnsProxy();
  DnsProxy(const DnsProxy&) = delete;
  DnsProxy& operator=(const DnsProxy&) = delete;

  uint16_t udp_port() const;
  uint16_t tcp_port() const;
  const DnsProxyStats& stats() const;
  size_t pending() const;

  struct Core;

 private:
  explicit DnsProxy(Core* core) : core_(core) {}
  Core* core_;  // frees itself once closed and idle
};

// "ip", "ip:port", "[v6]:port" -> a socket address (port 53 when absent).
base::Result<std::pair<sockaddr_storage, socklen_t>> parse_dns_endpoint(const std::string& text);

}  // namespace cellos::netns
