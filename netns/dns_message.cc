#include "netns/dns_message.h"

#include <arpa/inet.h>
#include <ldns/ldns.h>

#include <cstdlib>
#include <memory>

namespace cellos::netns {
namespace {

struct PktFree {
  void operator()(ldns_pkt* p) const { ldns_pkt_free(p); }
};
using Pkt = std::unique_ptr<ldns_pkt, PktFree>;

base::Result<Pkt> wire_to_pkt(std::span<const uint8_t> wire, const char* what) {
  ldns_pkt* p = nullptr;
  ldns_status st = ldns_wire2pkt(&p, wire.data(), wire.size());
  if (st != LDNS_STATUS_OK) return base::value_error(what, ldns_get_errorstr_by_id(st));
  return Pkt(p);
}

// "Example.COM." -> "example.com"
std::string dname_text(const ldns_rdf* rdf) {
  char* s = ldns_rdf2str(rdf);
  if (!s) return {};
  std::string out(s);
  std::free(s);
  if (out.ends_with('.')) out.pop_back();
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

base::Result<DnsQuestion> question_of(const ldns_pkt* p, const char* what) {
  if (ldns_pkt_qdcount(p) != 1 || ldns_rr_list_rr_count(ldns_pkt_question(p)) != 1)
    return base::value_error(what, "not exactly one question");
  const ldns_rr* q = ldns_rr_list_rr(ldns_pkt_question(p), 0);
  DnsQuestion out;
  out.id = ldns_pkt_id(p);
  out.name = dname_text(ldns_rr_owner(q));
  out.qtype = static_cast<uint16_t>(ldns_rr_get_type(q));
  out.qclass = static_cast<uint16_t>(ldns_rr_get_class(q));
  return out;
}

}  // namespace

base::Result<DnsQuestion> parse_query(std::span<const uint8_t> wire) {
  auto p = wire_to_pkt(wire, "dns query");
  if (!p) return std::move(p).error();
  if (ldns_pkt_qr(p->get())) return base::value_error("dns query", "QR set (an answer)");
  if (ldns_pkt_get_opcode(p->get()) != LDNS_PACKET_QUERY)
    return base::value_error("dns query", "opcode is not QUERY");
  if (ldns_pkt_ancount(p->get()) != 0 || ldns_pkt_nscount(p->get()) != 0)
    return base::value_error("dns query", "carries answer or authority records");
  return question_of(p->get(), "dns query");
}

base::Result<std::vector<uint8_t>> empty_answer(std::span<const uint8_t> query, uint8_t rcode) {
  auto p = wire_to_pkt(query, "dns query");
  if (!p) return std::move(p).error();
  ldns_pkt* pkt = p->get();
  ldns_pkt_set_qr(pkt, true);
  ldns_pkt_set_ra(pkt, true);
  ldns_pkt_set_aa(pkt, false);
  ldns_pkt_set_rcode(pkt, rcode);
  // Whatever the query carried besides its question (an EDNS OPT record is kept apart by ldns
  // and written back as the answer's own) goes.
  ldns_rr_list_deep_free(ldns_pkt_answer(pkt));
  ldns_pkt_set_answer(pkt, ldns_rr_list_new());
  ldns_pkt_set_ancount(pkt, 0);
  ldns_rr_list_deep_free(ldns_pkt_authority(pkt));
  ldns_pkt_set_authority(pkt, ldns_rr_list_new());
  ldns_pkt_set_nscount(pkt, 0);
  ldns_rr_list_deep_free(ldns_pkt_additional(pkt));
  ldns_pkt_set_additional(pkt, ldns_rr_list_new());
  ldns_pkt_set_arcount(pkt, 0);
  ldns_pkt_set_tc(pkt, false);
  uint8_t* buf = nullptr;
  size_t size = 0;
  ldns_status st = ldns_pkt2wire(&buf, pkt, &size);
  if (st != LDNS_STATUS_OK) return base::value_error("dns answer", ldns_get_errorstr_by_id(st));
  std::vector<uint8_t> out(buf, buf + size);
  std::free(buf);
  return out;
}

base::Result<DnsAnswer> parse_answer(std::span<const uint8_t> wire) {
  auto p = wire_to_pkt(wire, "dns answer");
  if (!p) return std::move(p).error();
  const ldns_pkt* pkt = p->get();
  if (!ldns_pkt_qr(pkt)) return base::value_error("dns answer", "QR clear (a query)");
  auto q = question_of(pkt, "dns answer");
  if (!q) return std::move(q).error();
  DnsAnswer a;
  a.id = ldns_pkt_id(pkt);
  a.rcode = static_cast<uint8_t>(ldns_pkt_get_rcode(pkt));
  a.truncated = ldns_pkt_tc(pkt);
  a.question = std::move(*q);
  const ldns_rr_list* list = ldns_pkt_answer(pkt);
  for (size_t i = 0; i < ldns_rr_list_rr_count(list); ++i) {
    const ldns_rr* rr = ldns_rr_list_rr(list, i);
    if (ldns_rr_get_class(rr) != LDNS_RR_CLASS_IN || ldns_rr_rd_count(rr) < 1) continue;
    const ldns_rdf* rd = ldns_rr_rdf(rr, 0);
    DnsRecord r;
    r.owner = dname_text(ldns_rr_owner(rr));
    r.ttl = ldns_rr_ttl(rr);
    char text[INET6_ADDRSTRLEN] = {};
    switch (ldns_rr_get_type(rr)) {
      case LDNS_RR_TYPE_A:
        if (ldns_rdf_size(rd) != 4) continue;
        inet_ntop(AF_INET, ldns_rdf_data(rd), text, sizeof text);
        r.type = kDnsTypeA;
        r.data = text;
        break;
      case LDNS_RR_TYPE_AAAA:
        if (ldns_rdf_size(rd) != 16) continue;
        inet_ntop(AF_INET6, ldns_rdf_data(rd), text, sizeof text);
        r.type = kDnsTypeAaaa;
        r.data = text;
        break;
      case LDNS_RR_TYPE_CNAME:
        r.type = kDnsTypeCname;
        r.data = dname_text(rd);
        break;
      default:
        continue;
    }
    a.records.push_back(std::move(r));
  }
  return a;
}

std::string dns_type_name(uint16_t type) {
  char* s = ldns_rr_type2str(static_cast<ldns_rr_type>(type));
  if (!s) return "TYPE" + std::to_string(type);
  std::string out(s);
  std::free(s);
  return out;
}

}  // namespace cellos::netns
