// The DNS wire format, as much as the per-cell DNS proxy needs: the one question of a query, a
// REFUSED / SERVFAIL answer to it, and the A / AAAA / CNAME records of an upstream answer.
//
// Parsing and writing are ldns's (NLnet Labs, Debian's libldns): a DNS message is hostile input
// (compression pointers, counts that lie) and deserves a parser that has been fuzzed for years.
// The one thing done by hand is the 16-bit message id at offset 0 (RFC 1035 4.1.1), which the
// proxy rewrites on every forwarded query and answer: copying a whole message through ldns for
// two bytes would cost more than the rest of the proxy's work.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"

namespace cellos::netns {

inline constexpr uint16_t kDnsTypeA = 1;
inline constexpr uint16_t kDnsTypeCname = 5;
inline constexpr uint16_t kDnsTypeAaaa = 28;
inline constexpr uint16_t kDnsClassIn = 1;
inline constexpr uint8_t kRcodeNoError = 0;
inline constexpr uint8_t kRcodeServfail = 2;
inline constexpr uint8_t kRcodeNxdomain = 3;
inline constexpr uint8_t kRcodeRefused = 5;

struct DnsQuestion {
  uint16_t id = 0;
  std::string name;  // lower case, no trailing dot ("" for the root)
  uint16_t qtype = 0;
  uint16_t qclass = 0;
};

// A query the proxy will look at: parses, QR clear, opcode QUERY, exactly one question, no
// answer or authority records. Anything else is an error (the proxy drops it and counts it).
base::Result<DnsQuestion> parse_query(std::span<const uint8_t> wire);

// An answer to `query` (which parse_query accepted; or an upstream answer, whose records go)
// with no records and `rcode`: same id and question, QR and RA set, RD copied, TC clear.
base::Result<std::vector<uint8_t>> empty_answer(std::span<const uint8_t> query, uint8_t rcode);

struct DnsRecord {
  std::string owner;  // lower case, no trailing dot
  uint16_t type = 0;  // A, AAAA or CNAME (others are skipped)
  uint32_t ttl = 0;
  std::string data;   // the address as text, or the CNAME's target (lower case, no dot)
};

struct DnsAnswer {
  uint16_t id = 0;
  uint8_t rcode = 0;
  bool truncated = false;  // TC: the client should ask again over TCP
  DnsQuestion question;    // the question it answers (id copied)
  std::vector<DnsRecord> records;  // answer section, A / AAAA / CNAME only
};

// An upstream answer: parses, QR set, one question.
base::Result<DnsAnswer> parse_answer(std::span<const uint8_t> wire);

inline uint16_t message_id(std::span<const uint8_t> wire) {
  return wire.size() < 2 ? 0 : static_cast<uint16_t>(wire[0] << 8 | wire[1]);
}
inline void set_message_id(std::span<uint8_t> wire, uint16_t id) {
  if (wire.size() < 2) return;
  wire[0] = static_cast<uint8_t>(id >> 8);
  wire[1] = static_cast<uint8_t>(id);
}

// "A", "AAAA", "TXT", "TYPE65534": for events.
std::string dns_type_name(uint16_t type);

}  // namespace cellos::netns
