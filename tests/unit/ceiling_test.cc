// The authority ceiling ([policy.ceiling], cells/ceiling.h): a reactor running inside a cell
// admits nothing wider than that cell's own authority, each refusal one line naming the field.
// Also the rootless helpers' pure parts (cells/rootless.h).
#include <catch2/catch.hpp>

#include "cells/admission.h"
#include "cells/ceiling.h"
#include "cells/config.h"
#include "cells/rootless.h"
#include "cells/spec.h"

using namespace cellos;
using Catch::Contains;

namespace {

constexpr int64_t kNow = 1800000000;

cells::Config nested_config(const std::string& ceiling) {
  return cells::parse_config(
      "[policy]\nargv0_allow_prefixes = [\"/bin\"]\ndefault_ttl_seconds = 60\n"
      "[policy.default_limits]\nmemory_max_bytes = 33554432\npids_max = 64\n"
      "[policy.ceiling]\nparent = \"cell ci-7\"\n" + ceiling,
      "nested.toml");
}

cells::Spec spec_of(const std::string& spec_fields, const std::string& run_fields = "") {
  auto s = cells::parse_spec(
      R"({"apiVersion":"cellos.io/v1","kind":"ExecutionCell","spec":{"id":"n1")" + spec_fields +
      R"(,"run":{"argv":["/bin/true"])" + run_fields + "}}}");
  REQUIRE(s.ok());
  return *s;
}

std::string refusal(const cells::Config& c, const cells::Spec& s, int64_t now = kNow) {
  auto r = cells::check_ceiling(s, c.policy, *c.policy.ceiling, now);
  return r.ok() ? "" : r.error().message();
}

}  // namespace

TEST_CASE("ceiling: egress inside the parent's rules is admitted, wider is refused naming the rule", "[ceiling]") {
  auto c = nested_config(
      "egress = [\"172.31.0.0/16:7070/tcp\", \"api.example.test:443\", \"[fd00::]:53/udp\"]\n");
  auto rules = [](const std::string& r) { return spec_of(R"(,"authority":{"egressRules":[)" + r + "]}"); };
  CHECK(refusal(c, rules(R"({"host":"172.31.77.2","port":7070,"protocol":"tcp"})")).empty());
  CHECK(refusal(c, rules(R"({"host":"172.31.77.0/24","port":7070,"protocol":"tcp"})")).empty());
  CHECK(refusal(c, rules(R"({"host":"API.example.test","port":443})")).empty());
  CHECK(refusal(c, rules(R"({"host":"api.example.test","port":443,"protocol":"udp"})")).empty());
  CHECK(refusal(c, rules(R"({"host":"fd00::","port":53,"protocol":"udp"})")).empty());
  // Another port, another protocol, a wider prefix, a host outside, a name under an address.
  CHECK_THAT(refusal(c, rules(R"({"host":"172.31.77.2","port":7071,"protocol":"tcp"})")),
             Contains("spec.authority.egressRules[0]: 172.31.77.2:7071/tcp is wider than cell ci-7's egress (policy.ceiling.egress: 172.31.0.0/16:7070/tcp, api.example.test:443, [fd00::]:53/udp)"));
  CHECK_THAT(refusal(c, rules(R"({"host":"172.31.77.2","port":7070})")),
             Contains("egressRules[0]: 172.31.77.2:7070 is wider"));
  CHECK_THAT(refusal(c, rules(R"({"host":"172.0.0.0/8","port":7070,"protocol":"tcp"})")),
             Contains("egressRules[0]"));
  CHECK_THAT(refusal(c, rules(R"({"host":"10.0.0.1","port":7070,"protocol":"tcp"})")),
             Contains("egressRules[0]"));
  CHECK_THAT(refusal(c, rules(R"({"host":"other.example.test","port":443})")),
             Contains("egressRules[0]"));
  CHECK_THAT(refusal(c, rules(R"({"host":"172.31.77.2","port":7070,"protocol":"tcp"},{"host":"fd01::1","port":53,"protocol":"udp"})")),
             Contains("egressRules[1]: [fd01::1]:53/udp is wider"));
  // A parent without egress: no rule at all.
  auto none = nested_config("");
  CHECK_THAT(refusal(none, rules(R"({"host":"172.31.77.2","port":7070,"protocol":"tcp"})")),
             Contains("(policy.ceiling.egress: none)"));
}

TEST_CASE("ceiling: limits above the parent's are refused, the spec's or the default it would get", "[ceiling]") {
  auto c = nested_config("memory_max_bytes = 67108864\npids_max = 100\n");
  CHECK(refusal(c, spec_of("", R"(,"limits":{"memoryMaxBytes":67108864,"pidsMax":100})")).empty());
  CHECK(refusal(c, spec_of("")).empty());  // defaults 32 MiB, 64 pids
  CHECK_THAT(refusal(c, spec_of("", R"(,"limits":{"memoryMaxBytes":67108865})")),
             Contains("spec.run.limits.memoryMaxBytes: 67108865 exceeds cell ci-7's memory limit of 67108864"));
  CHECK_THAT(refusal(c, spec_of("", R"(,"limits":{"pidsMax":101})")),
             Contains("spec.run.limits.pidsMax: 101 exceeds cell ci-7's pids limit of 100"));
  auto small = nested_config("memory_max_bytes = 16777216\n");
  CHECK_THAT(refusal(small, spec_of("")),
             Contains("policy.default_limits.memory_max_bytes: 33554432 exceeds"));
}

TEST_CASE("ceiling: secrets the parent was not granted are refused", "[ceiling]") {
  auto c = nested_config("secrets = [\"DB_PASSWORD\"]\n");
  CHECK(refusal(c, spec_of(R"(,"authority":{"secretRefs":["DB_PASSWORD"]})")).empty());
  CHECK_THAT(refusal(c, spec_of(R"(,"authority":{"secretRefs":["DB_PASSWORD","DEPLOY_KEY"]})")),
             Contains("spec.authority.secretRefs[1]: \"DEPLOY_KEY\" was not granted to cell ci-7"));
}

TEST_CASE("ceiling: a TTL or timeout beyond the parent's remaining life is refused", "[ceiling]") {
  auto c = nested_config("deadline_unix_seconds = " + std::to_string(kNow + 100) + "\n");
  CHECK(refusal(c, spec_of(R"(,"lifetime":{"ttlSeconds":100})")).empty());
  CHECK(refusal(c, spec_of("")).empty());  // default 60 s
  CHECK_THAT(refusal(c, spec_of(R"(,"lifetime":{"ttlSeconds":101})")),
             Contains("spec.lifetime.ttlSeconds: 101 s outlives cell ci-7, which has 100 s left"));
  CHECK_THAT(refusal(c, spec_of("", R"(,"timeoutMs":200000)"), kNow),
             Contains("spec.run.timeoutMs"));
  CHECK_THAT(refusal(c, spec_of(""), kNow + 50),
             Contains("policy.default_ttl_seconds: 60 s outlives cell ci-7, which has 50 s left"));
  CHECK_THAT(refusal(c, spec_of(""), kNow + 100), Contains("cell ci-7's life has ended"));
}

TEST_CASE("ceiling: admission applies it (a spec asking for more runs nothing)", "[ceiling]") {
  auto c = nested_config("egress = [\"172.31.77.2:7070/tcp\"]\n");
  auto a = cells::admit(
      R"({"apiVersion":"cellos.io/v1","kind":"ExecutionCell","spec":{"id":"n2","authority":{"egressRules":[{"host":"172.31.77.2","port":7071}]},"run":{"argv":["/bin/true"]}}})",
      cells::AdmissionOptions{&c, {}});
  REQUIRE_FALSE(a.admitted());
  CHECK_THAT(a.refusal.message(), Contains("spec.authority.egressRules[0]: 172.31.77.2:7071 is wider than cell ci-7's egress"));
}

TEST_CASE("ceiling: fleet.toml errors name the key", "[ceiling]") {
  auto bad = [](const std::string& body) {
    try {
      nested_config(body);
    } catch (const cells::ConfigError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  CHECK_THAT(bad("egress = [\"172.31.77.2\"]\n"), Contains("policy.ceiling.egress") && Contains("host:port"));
  CHECK_THAT(bad("egress = [\"172.31.77.2:0\"]\n"), Contains("1..65535"));
  CHECK_THAT(bad("pids_max = 0\n"), Contains("policy.ceiling.pids_max"));
  CHECK_THAT(bad("depth = 2\n"), Contains("policy.ceiling") && Contains("depth"));
}

TEST_CASE("rootless: uid maps, and a uid_range checked against them", "[rootless]") {
  auto identity = cells::parse_id_map("         0          0 4294967295\n");
  REQUIRE(identity.ok());
  CHECK_FALSE(cells::is_rootless_map(*identity));
  auto given = cells::parse_id_map("0 2000000 65536\n");
  REQUIRE(given.ok());
  CHECK(cells::is_rootless_map(*given));
  CHECK(cells::check_uid_range_mapped(1000, 1999, *given).ok());
  CHECK(cells::check_uid_range_mapped(0, 65535, *given).ok());
  auto r = cells::check_uid_range_mapped(200000, 265535, *given);
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.error().message(), Contains("policy.uid_range: 200000-265535 is not inside this user namespace's mapped uids (0-65535)"));
  auto split = cells::parse_id_map("0 5000 10\n10 9000 10\n");
  REQUIRE(split.ok());
  CHECK(cells::check_uid_range_mapped(5, 15, *split).ok());
  CHECK_FALSE(cells::check_uid_range_mapped(5, 20, *split).ok());
  CHECK_FALSE(cells::parse_id_map("0 x 1\n").ok());
}
