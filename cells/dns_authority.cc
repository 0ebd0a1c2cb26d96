#include "cells/dns_authority.h"

#include <arpa/inet.h>

#include <algorithm>
#include <unordered_set>

#include "cells/config.h"
#include "cells/spec.h"
#include "netns/nft.h"

namespace cellos::cells {
namespace {

using base::Json;
using base::Result;
using base::value_error;

bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
bool is_alnum(unsigned char c) {
  return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

// Quoted for a one-line message: JSON escaping keeps control characters out, long text is cut.
std::string quote_text(std::string_view s) {
  constexpr size_t kMax = 64;
  std::string q = Json(std::string(s.substr(0, kMax)))
                      .dump(-1, ' ', /*ensure_ascii=*/true, Json::error_handler_t::replace);
  return s.size() > kMax ? q + "..." : q;
}

std::string element(const std::string& path, size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

bool is_label(std::string_view l) {
  if (l.empty() || l.size() > 63 || l.front() == '-' || l.back() == '-') return false;
  return std::all_of(l.begin(), l.end(), [](unsigned char c) { return is_alnum(c) || c == '-'; });
}

// RFC 1123 host name without a trailing dot; the last label not all digits (that is a mistyped
// address). Returns the number of labels, 0 when `h` is not a host name.
size_t hostname_labels(std::string_view h) {
  if (h.empty() || h.size() > 253) return 0;
  size_t labels = 0, start = 0;
  std::string_view last;
  while (start <= h.size()) {
    size_t end = std::min(h.find('.', start), h.size());
    last = h.substr(start, end - start);
    if (!is_label(last)) return 0;
    ++labels;
    start = end + 1;
  }
  if (std::all_of(last.begin(), last.end(), [](unsigned char c) { return is_digit(c); })) return 0;
  return labels;
}

Result<std::string> parse_allow_entry(const Json& v, const std::string& path) {
  if (!v.is_string()) return value_error(path, "must be a string");
  std::string s = lower(v.get<std::string>());
  if (s.ends_with('.')) s.pop_back();
  std::string_view name = s;
  const bool wild = name.starts_with("*.");
  if (wild) name.remove_prefix(2);
  if (name.find('*') != std::string_view::npos)
    return value_error(path, quote_text(v.get<std::string>()) +
                                 ": only one leading \"*.\" is allowed as a wildcard");
  size_t labels = hostname_labels(name);
  if (labels == 0)
    return value_error(path, quote_text(v.get<std::string>()) +
                                 " must be a host name or \"*.\" and a host name");
  if (wild && labels < 2)
    return value_error(path, quote_text(v.get<std::string>()) +
                                 ": a wildcard needs a suffix of two labels or more (\"*.example.com\")");
  return s;
}

// "ip", "ip:port", "[v6]:port" (a bare v6 address too): an address, never a name, since the
// resolver must not need a resolver.
bool split_endpoint(const std::string& s, std::string& addr, uint16_t& port) {
  std::string host = s, p;
  in_addr a4{};
  in6_addr a6{};
  if (inet_pton(AF_INET6, s.c_str(), &a6) == 1) {
    addr = s;
    port = 53;
    return true;
  }
  if (!s.empty() && s.front() == '[') {
    auto close = s.find(']');
    if (close == std::string::npos) return false;
    host = s.substr(1, close - 1);
    std::string rest = s.substr(close + 1);
    if (rest.empty() || rest.front() != ':') return false;
    p = rest.substr(1);
    if (inet_pton(AF_INET6, host.c_str(), &a6) != 1) return false;
  } else {
    if (auto colon = s.find(':'); colon != std::string::npos) {
      host = s.substr(0, colon);
      p = s.substr(colon + 1);
      if (p.empty()) return false;
    }
    if (inet_pton(AF_INET, host.c_str(), &a4) != 1) return false;
  }
  port = 53;
  if (!p.empty()) {
    if (p.size() > 5 || !std::all_of(p.begin(), p.end(), [](unsigned char c) { return is_digit(c); }))
      return false;
    unsigned long n = std::stoul(p);
    if (n < 1 || n > 65535) return false;
    port = static_cast<uint16_t>(n);
  }
  addr = host;
  return true;
}

Result<DnsResolver> parse_resolver(const Json& v, const std::string& path) {
  if (!v.is_object()) return value_error(path, "must be an object");
  for (const auto& [key, value] : v.items()) {
    (void)value;
    if (key != "resolverId" && key != "endpoint" && key != "protocol")
      return value_error(path + "." + (key.size() <= 64 ? key : key.substr(0, 64)), "unknown field");
  }
  DnsResolver r;
  auto str = [&](const char* key, std::string& out) -> Result<void> {
    auto it = v.find(key);
    if (it == v.end()) return value_error(path + "." + key, "is required");
    if (!it->is_string()) return value_error(path + "." + key, "must be a string");
    out = it->get<std::string>();
    return base::ok();
  };
  CELLOS_TRY(str("resolverId", r.id));
  if (!is_portable_segment(r.id))
    return value_error(path + ".resolverId",
                       "must be 1..128 characters of [A-Za-z0-9._-], not starting with . or -");
  CELLOS_TRY(str("endpoint", r.endpoint));
  if (!split_endpoint(r.endpoint, r.address, r.port))
    return value_error(path + ".endpoint",
                       quote_text(r.endpoint) + " is not \"ip\", \"ip:port\" or \"[v6]:port\"");
  CELLOS_TRY(str("protocol", r.protocol));
  if (r.protocol == "dot" || r.protocol == "doh" || r.protocol == "doq")
    return value_error(path + ".protocol", quote_text(r.protocol) +
                                               ": CellOS protocol not supported by cellos-reactor "
                                               "(\"do53-udp\" or \"do53-tcp\")");
  if (r.protocol != "do53-udp" && r.protocol != "do53-tcp")
    return value_error(path + ".protocol", "must be \"do53-udp\" or \"do53-tcp\"");
  return r;
}

bool is_portable(unsigned char c) { return is_alnum(c) || c == '.' || c == '_' || c == '-'; }

}  // namespace

Result<DnsAuthority> parse_dns_authority(const Json& v, const std::string& path) {
  if (!v.is_object()) return value_error(path, "must be an object");
  for (const auto& [key, value] : v.items()) {
    (void)value;
    if (key == "hostnameAllowlist" || key == "resolvers") continue;
    std::string shown = key.size() <= 64 && std::all_of(key.begin(), key.end(), is_portable)
                            ? path + "." + key
                            : path + "[" + quote_text(key) + "]";
    return value_error(shown, "unknown field");
  }
  DnsAuthority dns;
  const std::string apath = path + ".hostnameAllowlist";
  auto list = v.find("hostnameAllowlist");
  if (list == v.end()) return value_error(apath, "is required");
  if (!list->is_array()) return value_error(apath, "must be an array of strings");
  if (list->empty())
    return value_error(apath, "must not be empty (omit dnsAuthority to resolve nothing)");
  if (list->size() > kMaxDnsAllowlist)
    return value_error(apath, "more than " + std::to_string(kMaxDnsAllowlist) + " entries");
  std::unordered_set<std::string> seen;
  for (size_t i = 0; i < list->size(); ++i) {
    auto entry = parse_allow_entry((*list)[i], element(apath, i));
    if (!entry) return std::move(entry).error();
    if (!seen.insert(*entry).second)
      return value_error(element(apath, i), "duplicate " + quote_text(*entry));
    dns.hostname_allowlist.push_back(std::move(*entry));
  }
  if (auto res = v.find("resolvers"); res != v.end()) {
    const std::string rpath = path + ".resolvers";
    if (!res->is_array()) return value_error(rpath, "must be an array of objects");
    if (res->size() > kMaxDnsResolvers)
      return value_error(rpath, "more than " + std::to_string(kMaxDnsResolvers) + " resolvers");
    std::unordered_set<std::string> ids;
    for (size_t i = 0; i < res->size(); ++i) {
      auto r = parse_resolver((*res)[i], element(rpath, i));
      if (!r) return std::move(r).error();
      if (!ids.insert(r->id).second)
        return value_error(element(rpath, i) + ".resolverId", "duplicate " + quote_text(r->id));
      dns.resolvers.push_back(std::move(*r));
    }
  }
  return dns;
}

bool dns_name_matches(std::string_view pattern, std::string_view name) {
  if (name.ends_with('.')) name.remove_suffix(1);
  const std::string n = lower(name);
  if (pattern.starts_with("*.")) {
    std::string_view suffix = pattern.substr(1);  // ".example.com"
    return n.size() > suffix.size() && std::string_view(n).ends_with(suffix);
  }
  return n == pattern;
}

bool dns_name_allowed(const std::vector<std::string>& allowlist, std::string_view name) {
  return std::any_of(allowlist.begin(), allowlist.end(),
                     [&](const std::string& p) { return dns_name_matches(p, name); });
}

namespace {

// A spec entry (literal or "*.x") inside a policy entry: a literal policy entry covers only
// that literal; "*.s" covers names and wildcards strictly below s.
bool policy_covers(const std::string& policy_entry, const std::string& spec_entry) {
  const std::string p = lower(policy_entry);
  if (!p.starts_with("*.")) return spec_entry == p;
  const std::string_view suffix = std::string_view(p).substr(1);  // ".example.com"
  std::string_view s = spec_entry;
  // "*.x" in the spec is the set of names below x: inside "*.s" when ".x" ends with ".s".
  if (s.starts_with("*.")) return s.substr(1).ends_with(suffix);
  return s.size() > suffix.size() && s.ends_with(suffix);
}

bool within(const netns::EgressTarget& inner, const netns::EgressTarget& outer) {
  if (inner.family != outer.family || inner.prefix_len < outer.prefix_len) return false;
  for (int bit = 0; bit < outer.prefix_len; ++bit) {
    uint8_t m = static_cast<uint8_t>(0x80 >> (bit % 8));
    if ((inner.addr[bit / 8] & m) != (outer.addr[bit / 8] & m)) return false;
  }
  return true;
}

}  // namespace

Result<void> check_dns_policy(const DnsAuthority& dns, const PolicyConfig& policy) {
  const std::string path = "spec.authority.dnsAuthority";
  if (policy.forbid_egress)
    return value_error(path, "DNS authority is refused: policy.forbid_egress is set");
  if (!policy.allowed_dns_names.empty()) {
    for (size_t i = 0; i < dns.hostname_allowlist.size(); ++i) {
      const std::string& e = dns.hostname_allowlist[i];
      bool ok = std::any_of(policy.allowed_dns_names.begin(), policy.allowed_dns_names.end(),
                            [&](const std::string& p) { return policy_covers(p, e); });
      if (!ok)
        return value_error(element(path + ".hostnameAllowlist", i),
                           quote_text(e) + " is not in policy.allowed_dns_names");
    }
  }
  if (!policy.allowed_dns_resolvers.empty()) {
    for (size_t i = 0; i < dns.resolvers.size(); ++i) {
      auto addr = netns::parse_target(dns.resolvers[i].address);
      bool ok = addr.ok() &&
                std::any_of(policy.allowed_dns_resolvers.begin(),
                            policy.allowed_dns_resolvers.end(), [&](const std::string& p) {
                              auto net = netns::parse_target(p);
                              return net.ok() && within(*addr, *net);
                            });
      if (!ok)
        return value_error(element(path + ".resolvers", i) + ".endpoint",
                           quote_text(dns.resolvers[i].endpoint) +
                               " is not in policy.allowed_dns_resolvers");
    }
  }
  return base::ok();
}

}  // namespace cellos::cells
