// netns/nflog.h's pure parts: NFULNL_MSG_PACKET messages built by hand, as the kernel lays them
// out (nfgenmsg, then attributes; big-endian numbers), into DenyRecords; datagram walking;
// sequence-gap accounting.
#include "netns/nflog.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_log.h>
#include <netinet/in.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <string>
#include <vector>

namespace cellos::netns {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::system_clock;

std::vector<uint8_t> ipv4_udp(const char* src, const char* dst, uint16_t sport, uint16_t dport,
                              uint16_t total_len) {
  std::vector<uint8_t> p(28, 0);
  p[0] = 0x45;
  p[2] = total_len >> 8, p[3] = total_len & 0xff;
  p[8] = 64;
  p[9] = IPPROTO_UDP;
  inet_pton(AF_INET, src, &p[12]);
  inet_pton(AF_INET, dst, &p[16]);
  p[20] = sport >> 8, p[21] = sport & 0xff;
  p[22] = dport >> 8, p[23] = dport & 0xff;
  return p;
}

// IPv6 + a hop-by-hop options header (8 bytes) + the start of a TCP header.
std::vector<uint8_t> ipv6_hbh_tcp(const char* src, const char* dst, uint16_t sport, uint16_t dport,
                                  uint16_t payload_len) {
  std::vector<uint8_t> p(40 + 8 + 20, 0);
  p[0] = 0x60;
  p[4] = payload_len >> 8, p[5] = payload_len & 0xff;
  p[6] = IPPROTO_HOPOPTS;
  p[7] = 64;
  inet_pton(AF_INET6, src, &p[8]);
  inet_pton(AF_INET6, dst, &p[24]);
  p[40] = IPPROTO_TCP;  // next header
  p[41] = 0;            // (0 + 1) * 8 bytes
  p[48] = sport >> 8, p[49] = sport & 0xff;
  p[50] = dport >> 8, p[51] = dport & 0xff;
  return p;
}

struct Msg {
  int family = AF_INET;
  uint8_t hook = NF_INET_LOCAL_OUT;
  const char* prefix = "egress_default_deny";
  bool seq_present = true;
  uint32_t seq = 0;
  bool timestamp = false;
  std::vector<uint8_t> payload;
};

// Appends one packet message at `at` in `buf`; returns its length.
size_t put_packet(char* at, const Msg& m) {
  nlmsghdr* nlh = mnl_nlmsg_put_header(at);
  nlh->nlmsg_type = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET;
  auto* g = static_cast<nfgenmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nfgenmsg)));
  g->nfgen_family = static_cast<uint8_t>(m.family);
  g->version = NFNETLINK_V0;
  g->res_id = htons(7);
  nfulnl_msg_packet_hdr ph{htons(m.family == AF_INET ? 0x0800 : 0x86dd), m.hook, 0};
  mnl_attr_put(nlh, NFULA_PACKET_HDR, sizeof ph, &ph);
  mnl_attr_put_u32(nlh, NFULA_IFINDEX_OUTDEV, htonl(2));
  if (m.timestamp) {
    nfulnl_msg_packet_timestamp ts{htobe64(1700000000), htobe64(250000)};
    mnl_attr_put(nlh, NFULA_TIMESTAMP, sizeof ts, &ts);
  }
  if (!m.payload.empty()) mnl_attr_put(nlh, NFULA_PAYLOAD, m.payload.size(), m.payload.data());
  if (m.prefix) mnl_attr_put_strz(nlh, NFULA_PREFIX, m.prefix);
  if (m.seq_present) mnl_attr_put_u32(nlh, NFULA_SEQ, htonl(m.seq));
  return nlh->nlmsg_len;
}

std::string text(int family, const std::array<uint8_t, 16>& a) {
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(family, a.data(), buf, sizeof buf);
  return buf;
}

TEST_CASE("nflog: an IPv4 UDP deny parses into prefix, seq, 5-tuple, length and hook",
          "[nflog]") {
  alignas(4) std::array<char, 1024> buf{};
  Msg m;
  m.seq = 41;
  m.payload = ipv4_udp("172.30.5.1", "172.30.5.2", 34567, 5353, 33);
  put_packet(buf.data(), m);
  const auto now = Clock::now();
  auto r = parse_nflog_packet(reinterpret_cast<const nlmsghdr*>(buf.data()), now);
  INFO((r.ok() ? "" : r.error().message()));
  REQUIRE(r.ok());
  CHECK(r->seq == 41);
  CHECK(r->prefix == "egress_default_deny");
  CHECK(r->family == AF_INET);
  CHECK(r->l4proto == IPPROTO_UDP);
  CHECK(text(AF_INET, r->src) == "172.30.5.1");
  CHECK(text(AF_INET, r->dst) == "172.30.5.2");
  CHECK(r->src_port == 34567);
  CHECK(r->dst_port == 5353);
  CHECK(r->length == 33);
  CHECK(r->hook == NF_INET_LOCAL_OUT);
  CHECK(r->time == now);  // no NFULA_TIMESTAMP: the receive time
  CHECK_FALSE(r->kernel_time);
}

TEST_CASE("nflog: an IPv6 TCP deny behind a hop-by-hop header finds the ports, and a kernel "
          "timestamp wins over the receive time", "[nflog]") {
  alignas(4) std::array<char, 1024> buf{};
  Msg m;
  m.family = AF_INET6;
  m.timestamp = true;
  m.payload = ipv6_hbh_tcp("fd00::1", "fd00::2", 40000, 443, 48);
  put_packet(buf.data(), m);
  auto r = parse_nflog_packet(reinterpret_cast<const nlmsghdr*>(buf.data()), Clock::now());
  REQUIRE(r.ok());
  CHECK(r->family == AF_INET6);
  CHECK(r->l4proto == IPPROTO_TCP);
  CHECK(text(AF_INET6, r->src) == "fd00::1");
  CHECK(text(AF_INET6, r->dst) == "fd00::2");
  CHECK(r->src_port == 40000);
  CHECK(r->dst_port == 443);
  CHECK(r->length == 88);
  CHECK(r->kernel_time);
  CHECK(r->time == Clock::time_point(1700000000s + 250000us));
}

TEST_CASE("nflog: a packet without payload, without seq or with a payload of the wrong IP "
          "version is an error, never a half-filled record", "[nflog]") {
  alignas(4) std::array<char, 1024> buf{};
  const auto* nlh = reinterpret_cast<const nlmsghdr*>(buf.data());
  Msg no_payload;
  put_packet(buf.data(), no_payload);
  CHECK_FALSE(parse_nflog_packet(nlh, Clock::now()).ok());

  Msg no_seq;
  no_seq.seq_present = false;
  no_seq.payload = ipv4_udp("172.30.5.1", "172.30.5.2", 1, 2, 28);
  put_packet(buf.data(), no_seq);
  CHECK_FALSE(parse_nflog_packet(nlh, Clock::now()).ok());

  Msg wrong;
  wrong.family = AF_INET6;
  wrong.payload = ipv4_udp("172.30.5.1", "172.30.5.2", 1, 2, 28);
  put_packet(buf.data(), wrong);
  CHECK_FALSE(parse_nflog_packet(nlh, Clock::now()).ok());
}

TEST_CASE("nflog: a datagram of several messages yields each record in order, and a cut last "
          "message is reported as truncated", "[nflog]") {
  alignas(4) std::array<char, 4096> buf{};
  size_t len = 0;
  for (uint32_t i = 0; i < 3; ++i) {
    Msg m;
    m.seq = i;
    m.payload = ipv4_udp("172.30.5.1", "172.30.5.2", static_cast<uint16_t>(1000 + i), 53, 28);
    len += put_packet(buf.data() + len, m);
  }
  std::vector<DenyRecord> got;
  auto scan = scan_nflog_datagram(std::as_bytes(std::span(buf.data(), len)), Clock::now(),
                                  [&](const DenyRecord& r) { got.push_back(r); });
  CHECK(scan.records == 3);
  CHECK(scan.parse_errors == 0);
  CHECK_FALSE(scan.truncated);
  REQUIRE(got.size() == 3);
  for (uint32_t i = 0; i < 3; ++i) {
    CHECK(got[i].seq == i);
    CHECK(got[i].src_port == static_cast<uint16_t>(1000 + i));
  }

  got.clear();
  scan = scan_nflog_datagram(std::as_bytes(std::span(buf.data(), len - 10)), Clock::now(),
                             [&](const DenyRecord& r) { got.push_back(r); });
  CHECK(scan.records == 2);
  CHECK(scan.truncated);
}

TEST_CASE("nflog: a message length of 2^32-1 ends the scan instead of looping forever",
          "[nflog][limits]") {
  alignas(4) std::array<char, 1024> buf{};
  Msg m;
  m.payload = ipv4_udp("172.30.5.1", "172.30.5.2", 1000, 53, 28);
  size_t len = put_packet(buf.data(), m);
  // A second header claiming 0xffffffff bytes: as an int it passed the length check, and its
  // aligned length wrapped to 0, so the walk never advanced.
  nlmsghdr bad{};
  bad.nlmsg_len = 0xffffffffu;
  std::memcpy(buf.data() + len, &bad, sizeof bad);
  len += sizeof bad + 16;
  std::vector<DenyRecord> got;
  auto scan = scan_nflog_datagram(std::as_bytes(std::span(buf.data(), len)), Clock::now(),
                                  [&](const DenyRecord& r) { got.push_back(r); });
  CHECK(scan.records == 1);
  CHECK(scan.truncated);
}

TEST_CASE("nflog: SeqTracker counts every skipped number, treats u32 wrap as a step and an old "
          "number as out of order", "[nflog]") {
  SeqTracker t;
  CHECK(t.observe(0) == 0);
  CHECK(t.observe(1) == 0);
  CHECK(t.observe(5) == 3);  // 2, 3, 4 lost
  CHECK(t.gaps() == 3);
  CHECK(t.observe(3) == 0);
  CHECK(t.out_of_order() == 1);
  CHECK(t.gaps() == 3);

  SeqTracker first_lost;
  CHECK(first_lost.observe(2) == 2);  // a fresh instance starts at 0: 0 and 1 were lost

  SeqTracker wrap;
  wrap.observe(0x7fffffff);  // steps under 2^31 are forward; the tracker reaches the top
  wrap.observe(0xfffffffe);
  CHECK(wrap.observe(0xffffffff) == 0);
  CHECK(wrap.observe(0) == 0);
  CHECK(wrap.observe(2) == 1);
}

}  // namespace
}  // namespace cellos::netns
