// spec.authority.dnsAuthority: what is accepted, every rejection naming its field on one line,
// the name matching the proxy uses, and fleet policy over names and resolvers.
#include "cells/dns_authority.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cells/config.h"
#include "cells/spec.h"

namespace cellos::cells {
namespace {

using Catch::Contains;
using Json = nlohmann::ordered_json;

Json base_spec() {
  return Json::parse(R"({"apiVersion":"cellos.io/v1","kind":"ExecutionCell",
    "spec":{"id":"dns-1","run":{"argv":["/bin/true"]},
      "authority":{"dnsAuthority":{
        "hostnameAllowlist":["Registry.NPMjs.org.","*.githubusercontent.com"],
        "resolvers":[{"resolverId":"corp","endpoint":"10.0.0.53","protocol":"do53-udp"},
                     {"resolverId":"v6","endpoint":"[fd00::53]:5353","protocol":"do53-tcp"}]}}}})");
}

std::string with(const std::string& pointer, const Json& value) {
  Json doc = base_spec();
  doc[Json::json_pointer(pointer)] = value;
  return doc.dump();
}

std::string error_of(const std::string& json) {
  auto r = parse_spec(json);
  return r.ok() ? std::string("<accepted>") : r.error().message();
}

const std::string kDns = "/spec/authority/dnsAuthority";
const std::string kPath = "spec.authority.dnsAuthority";

TEST_CASE("a dnsAuthority is parsed into lower-case names and resolver addresses", "[spec][dns]") {
  auto r = parse_spec(base_spec().dump());
  REQUIRE(r.ok());
  REQUIRE(r->dns_authority.has_value());
  const DnsAuthority& d = *r->dns_authority;
  CHECK(d.hostname_allowlist ==
        std::vector<std::string>{"registry.npmjs.org", "*.githubusercontent.com"});
  REQUIRE(d.resolvers.size() == 2);
  CHECK(d.resolvers[0].id == "corp");
  CHECK(d.resolvers[0].address == "10.0.0.53");
  CHECK(d.resolvers[0].port == 53);
  CHECK(d.resolvers[0].protocol == "do53-udp");
  CHECK(d.resolvers[1].address == "fd00::53");
  CHECK(d.resolvers[1].port == 5353);
  // Resolvers are optional: the fleet's upstream answers.
  Json doc = base_spec();
  doc[Json::json_pointer(kDns)].erase("resolvers");
  auto no_resolvers = parse_spec(doc.dump());
  REQUIRE(no_resolvers.ok());
  CHECK(no_resolvers->dns_authority->resolvers.empty());
  // A spec without the field has none.
  doc["spec"].erase("authority");
  CHECK_FALSE(parse_spec(doc.dump())->dns_authority.has_value());
}

TEST_CASE("every bad dnsAuthority value is refused naming its field", "[spec][dns]") {
  struct Case {
    std::string json, expected;
  };
  const std::string al = kPath + ".hostnameAllowlist";
  const std::string rs = kPath + ".resolvers";
  std::vector<Case> cases = {
      {with(kDns, Json::array()), kPath + ": must be an object"},
      {with(kDns, Json::object()), al + ": is required"},
      {with(kDns + "/extra", 1), kPath + ".extra: unknown field"},
      {with(kDns + "/hostnameAllowlist", "a.com"), al + ": must be an array of strings"},
      {with(kDns + "/hostnameAllowlist", Json::array()), al + ": must not be empty"},
      {with(kDns + "/hostnameAllowlist/1", 7), al + "[1]: must be a string"},
      {with(kDns + "/hostnameAllowlist/1", "*"), al + "[1]: \"*\": only one leading"},
      {with(kDns + "/hostnameAllowlist/1", "*.com"), al + "[1]: \"*.com\": a wildcard needs"},
      {with(kDns + "/hostnameAllowlist/1", "a.*.com"), al + "[1]: \"a.*.com\": only one leading"},
      {with(kDns + "/hostnameAllowlist/1", "*.*.a.com"), al + "[1]: \"*.*.a.com\": only one"},
      {with(kDns + "/hostnameAllowlist/1", "10.0.0.1"), al + "[1]: \"10.0.0.1\" must be a host"},
      {with(kDns + "/hostnameAllowlist/1", "a_b.com"), al + "[1]: \"a_b.com\" must be a host"},
      {with(kDns + "/hostnameAllowlist/1", "-a.com"), al + "[1]: \"-a.com\" must be a host"},
      {with(kDns + "/hostnameAllowlist/1", "REGISTRY.npmjs.org"),
       al + "[1]: duplicate \"registry.npmjs.org\""},
      {with(kDns + "/hostnameAllowlist/1", std::string(300, 'a')), al + "[1]: \"aaaa"},
      {with(kDns + "/resolvers", Json::object()), rs + ": must be an array of objects"},
      {with(kDns + "/resolvers/0", "10.0.0.53"), rs + "[0]: must be an object"},
      {with(kDns + "/resolvers/0/port", 53), rs + "[0].port: unknown field"},
      {with(kDns + "/resolvers/0/resolverId", "a/b"), rs + "[0].resolverId: must be 1..128"},
      {with(kDns + "/resolvers/1/resolverId", "corp"), rs + "[1].resolverId: duplicate \"corp\""},
      {with(kDns + "/resolvers/0/endpoint", "dns.example.com"),
       rs + "[0].endpoint: \"dns.example.com\" is not \"ip\""},
      {with(kDns + "/resolvers/0/endpoint", "10.0.0.53:0"), rs + "[0].endpoint:"},
      {with(kDns + "/resolvers/0/endpoint", "10.0.0.53:65536"), rs + "[0].endpoint:"},
      {with(kDns + "/resolvers/0/endpoint", "10.0.0.53:"), rs + "[0].endpoint:"},
      {with(kDns + "/resolvers/0/endpoint", "[10.0.0.53]:53"), rs + "[0].endpoint:"},
      {with(kDns + "/resolvers/0/protocol", "doh"),
       rs + "[0].protocol: \"doh\": CellOS protocol not supported by cellos-reactor"},
      {with(kDns + "/resolvers/0/protocol", "udp"),
       rs + "[0].protocol: must be \"do53-udp\" or \"do53-tcp\""},
      {with(kDns + "/resolvers/0/protocol", nullptr), rs + "[0].protocol: must be a string"},
  };
  Json nine = base_spec();
  for (int i = 0; i < 9; ++i)
    nine[Json::json_pointer(kDns + "/resolvers/" + std::to_string(i))] = {
        {"resolverId", "r" + std::to_string(i)}, {"endpoint", "10.0.0.53"}, {"protocol", "do53-udp"}};
  cases.push_back({nine.dump(), rs + ": more than 8 resolvers"});
  Json many = base_spec();
  for (int i = 0; i < 257; ++i)
    many[Json::json_pointer(kDns + "/hostnameAllowlist/" + std::to_string(i))] =
        "h" + std::to_string(i) + ".example.com";
  cases.push_back({many.dump(), al + ": more than 256 entries"});
  // An egress rule naming a host the cell may not resolve.
  Json uncovered = base_spec();
  uncovered["spec"]["authority"]["egressRules"] = {{{"host", "10.0.0.9"}, {"port", 443}},
                                                   {{"host", "evil.example"}, {"port", 443}}};
  cases.push_back({uncovered.dump(),
                   "spec.authority.egressRules[1].host: \"evil.example\" is not covered by "
                   "spec.authority.dnsAuthority.hostnameAllowlist"});
  for (const auto& c : cases) {
    INFO("spec: " << c.json.substr(0, 400));
    std::string msg = error_of(c.json);
    CHECK_THAT(msg, Contains(c.expected));
    CHECK(msg.find('\n') == std::string::npos);
  }
  // Covered egress hosts are fine, by a literal or a wildcard.
  Json covered = base_spec();
  covered["spec"]["authority"]["egressRules"] = {
      {{"host", "registry.npmjs.org"}, {"port", 443}},
      {{"host", "raw.githubusercontent.com"}, {"port", 443}}};
  CHECK(error_of(covered.dump()) == "<accepted>");
  // Under a dnsAuthority an egress host may be a wildcard, covered by a wildcard entry.
  Json wild = base_spec();
  wild["spec"]["authority"]["egressRules"] = {{{"host", "*.githubusercontent.com"}, {"port", 443}},
                                              {{"host", "*.a.githubusercontent.com"}, {"port", 443}}};
  CHECK(error_of(wild.dump()) == "<accepted>");
  wild["spec"]["authority"]["egressRules"] = {{{"host", "*.npmjs.org"}, {"port", 443}}};
  CHECK_THAT(error_of(wild.dump()),
             Contains("spec.authority.egressRules[0].host: \"*.npmjs.org\" is not covered by"));
}

TEST_CASE("allow-list entries match names the way the proxy compares them", "[dns]") {
  CHECK(dns_name_matches("registry.npmjs.org", "registry.npmjs.org"));
  CHECK(dns_name_matches("registry.npmjs.org", "REGISTRY.npmjs.org."));
  CHECK_FALSE(dns_name_matches("registry.npmjs.org", "x.registry.npmjs.org"));
  CHECK_FALSE(dns_name_matches("registry.npmjs.org", "npmjs.org"));
  CHECK(dns_name_matches("*.example.com", "a.example.com"));
  CHECK(dns_name_matches("*.example.com", "b.a.Example.COM."));
  CHECK_FALSE(dns_name_matches("*.example.com", "example.com"));
  CHECK_FALSE(dns_name_matches("*.example.com", "aexample.com"));
  CHECK_FALSE(dns_name_matches("*.example.com", "example.com.evil"));
  CHECK(dns_name_allowed({"a.test", "*.b.test"}, "x.b.test"));
  CHECK_FALSE(dns_name_allowed({"a.test", "*.b.test"}, "c.test"));
}

TEST_CASE("fleet policy restricts the names and resolvers a spec may declare", "[spec][dns]") {
  auto spec = parse_spec(base_spec().dump());
  REQUIRE(spec.ok());
  PolicyConfig open;
  CHECK(check_policy(*spec, open).ok());

  PolicyConfig names;
  names.allowed_dns_names = {"registry.npmjs.org", "*.githubusercontent.com"};
  CHECK(check_policy(*spec, names).ok());
  names.allowed_dns_names = {"*.npmjs.org", "*.com"};  // "*.com" covers "*.githubusercontent.com"
  CHECK(check_policy(*spec, names).ok());
  names.allowed_dns_names = {"registry.npmjs.org", "raw.githubusercontent.com"};
  auto r = check_policy(*spec, names);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message() == "spec.authority.dnsAuthority.hostnameAllowlist[1]: "
                               "\"*.githubusercontent.com\" is not in policy.allowed_dns_names");
  names.allowed_dns_names = {"*.registry.npmjs.org", "*.githubusercontent.com"};
  r = check_policy(*spec, names);
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.error().message(), Contains("hostnameAllowlist[0]: \"registry.npmjs.org\""));

  PolicyConfig resolvers;
  resolvers.allowed_dns_resolvers = {"10.0.0.0/24", "fd00::53"};
  CHECK(check_policy(*spec, resolvers).ok());
  resolvers.allowed_dns_resolvers = {"10.0.0.0/24"};
  r = check_policy(*spec, resolvers);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message() == "spec.authority.dnsAuthority.resolvers[1].endpoint: "
                               "\"[fd00::53]:5353\" is not in policy.allowed_dns_resolvers");

  PolicyConfig forbid;
  forbid.forbid_egress = true;
  r = check_policy(*spec, forbid);
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.error().message(), Contains("spec.authority.dnsAuthority: DNS authority is refused"));
}

TEST_CASE("fleet.toml takes the DNS policy keys and refuses bad values", "[config][dns]") {
  Config c = parse_config(
      "[policy]\nallowed_dns_names = [\"*.example.com\", \"a.test\"]\n"
      "allowed_dns_resolvers = [\"10.0.0.53\", \"fd00::/64\"]\n",
      "fleet.toml");
  CHECK(c.policy.allowed_dns_names == std::vector<std::string>{"*.example.com", "a.test"});
  CHECK(c.policy.allowed_dns_resolvers == std::vector<std::string>{"10.0.0.53", "fd00::/64"});
  auto error_of_toml = [](const std::string& toml) -> std::string {
    try {
      parse_config(toml, "fleet.toml");
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "<accepted>";
  };
  CHECK_THAT(error_of_toml("[policy]\nallowed_dns_names = [\"10.0.0.1\"]\n"),
             Contains("fleet.toml: policy.allowed_dns_names[0]: must be a host name"));
  CHECK_THAT(error_of_toml("[policy]\nallowed_dns_names = [\"a.*.com\"]\n"),
             Contains("fleet.toml: policy.allowed_dns_names[0]: must be"));
  CHECK_THAT(error_of_toml("[policy]\nallowed_dns_resolvers = [\"dns.test\"]\n"),
             Contains("fleet.toml: policy.allowed_dns_resolvers[0]: must be an IP address or CIDR"));
  CHECK_THAT(error_of_toml("[policy]\nallowed_dns_resolvers = \"10.0.0.1\"\n"),
             Contains("fleet.toml: policy.allowed_dns_resolvers: must be an array"));
}

}  // namespace
}  // namespace cellos::cells
