// parse_spec, check_policy and the name predicates: every field lands where it should, and every
// rejection names the field by its JSON path in a one-line message.
#include "cells/spec.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cells/config.h"

namespace cellos::cells {
namespace {

using Catch::Contains;
using Json = nlohmann::ordered_json;

// The example of docs/spec.md, with more values in places: every supported field set.
constexpr const char* kFull = R"({"apiVersion":"cellos.io/v1","kind":"ExecutionCell",
 "spec":{"id":"build-42",
   "authority":{"secretRefs":["NPM_TOKEN","GH_TOKEN"],
                "egressRules":[{"host":"10.0.0.1","port":443,"protocol":"tcp"},
                               {"host":"registry.npmjs.org","port":53}]},
   "lifetime":{"ttlSeconds":600},
   "run":{"argv":["/bin/sh","-c","make test"],"workingDirectory":"/work/src",
          "secretDelivery":"env","timeoutMs":300000,
          "env":{"CI":"true","ZED":"z","ALPHA":"a"},
          "limits":{"memoryMaxBytes":1073741824,"pidsMax":512,
                    "cpuMax":{"quotaMicros":50000,"periodMicros":200000}}}}})";

constexpr const char* kMinimal = R"({"apiVersion":"cellos.io/v1","kind":"ExecutionCell",
 "spec":{"id":"t-run","run":{"argv":["/bin/true"]}}})";

Json full() { return Json::parse(kFull); }

// The full document with the value at a JSON pointer replaced (or added).
std::string with(const std::string& pointer, const Json& value) {
  Json doc = full();
  doc[Json::json_pointer(pointer)] = value;
  return doc.dump();
}

// The full document with the member at a JSON pointer removed.
std::string without(const std::string& pointer) {
  Json doc = full();
  Json::json_pointer p(pointer);
  doc[p.parent_pointer()].erase(p.back());
  return doc.dump();
}

std::string error_of(const std::string& json) {
  auto r = parse_spec(json);
  return r.ok() ? std::string("<accepted>") : r.error().message();
}

struct Rejection {
  std::string json;
  std::string expected;  // a substring of the message, starting with the field path
};

void check_rejections(const std::vector<Rejection>& cases) {
  for (const auto& c : cases) {
    INFO("spec: " << c.json);
    std::string msg = error_of(c.json);
    CHECK_THAT(msg, Contains(c.expected));
    CHECK(msg.find('\n') == std::string::npos);
  }
}

TEST_CASE("a full spec fills every field of Spec", "[spec]") {
  auto r = parse_spec(kFull);
  REQUIRE(r.ok());
  const Spec& s = r.value();
  CHECK(s.id == "build-42");
  CHECK(s.secret_refs == std::vector<std::string>{"NPM_TOKEN", "GH_TOKEN"});
  REQUIRE(s.egress_rules.size() == 2);
  CHECK(s.egress_rules[0].host == "10.0.0.1");
  CHECK(s.egress_rules[0].port == 443);
  CHECK(s.egress_rules[0].protocol == std::optional<std::string>("tcp"));
  CHECK(s.egress_rules[1].host == "registry.npmjs.org");
  CHECK(s.egress_rules[1].port == 53);
  CHECK_FALSE(s.egress_rules[1].protocol.has_value());
  CHECK(s.ttl_seconds == std::optional<uint64_t>(600));
  CHECK(s.run.argv == std::vector<std::string>{"/bin/sh", "-c", "make test"});
  CHECK(s.run.working_directory == "/work/src");
  CHECK(s.run.secret_delivery == "env");
  CHECK(s.run.timeout_ms == std::optional<uint64_t>(300000));
  CHECK(s.run.limits.memory_max_bytes == std::optional<uint64_t>(1073741824));
  CHECK(s.run.limits.pids_max == std::optional<uint64_t>(512));
  REQUIRE(s.run.limits.cpu_max.has_value());
  CHECK(s.run.limits.cpu_max->quota_micros == 50000);
  CHECK(s.run.limits.cpu_max->period_micros == 200000);
}

TEST_CASE("run.env keeps the order it was declared in", "[spec]") {
  auto r = parse_spec(kFull);
  REQUIRE(r.ok());
  using Env = std::vector<std::pair<std::string, std::string>>;
  CHECK(r->run.env == Env{{"CI", "true"}, {"ZED", "z"}, {"ALPHA", "a"}});
}

TEST_CASE("a minimal spec gets the documented defaults", "[spec]") {
  auto r = parse_spec(kMinimal);
  REQUIRE(r.ok());
  const Spec& s = r.value();
  CHECK(s.id == "t-run");
  CHECK(s.secret_refs.empty());
  CHECK(s.egress_rules.empty());
  CHECK_FALSE(s.ttl_seconds.has_value());
  CHECK(s.run.argv == std::vector<std::string>{"/bin/true"});
  CHECK(s.run.working_directory == "/work");
  CHECK(s.run.secret_delivery == "env");
  CHECK_FALSE(s.run.timeout_ms.has_value());
  CHECK(s.run.env.empty());
  CHECK_FALSE(s.run.limits.memory_max_bytes.has_value());
  CHECK_FALSE(s.run.limits.pids_max.has_value());
  CHECK_FALSE(s.run.limits.cpu_max.has_value());
}

TEST_CASE("cpuMax without periodMicros gets the CellOS period of 100000", "[spec]") {
  auto r = parse_spec(with("/spec/run/limits/cpuMax", Json{{"quotaMicros", 1000}}));
  REQUIRE(r.ok());
  REQUIRE(r->run.limits.cpu_max.has_value());
  CHECK(r->run.limits.cpu_max->quota_micros == 1000);
  CHECK(r->run.limits.cpu_max->period_micros == 100000);
}

TEST_CASE("egress hosts accept IPs, CIDRs and host names", "[spec]") {
  for (const char* host :
       {"10.0.0.1", "::1", "fd00::1", "10.0.0.0/8", "0.0.0.0/0", "fd00::/8", "::/128",
        "example.com", "example.com.", "a-b.c1.example", "localhost", "xn--bcher-kva.example"}) {
    INFO("host: " << host);
    auto r = parse_spec(with("/spec/authority/egressRules/0/host", host));
    CHECK(r.ok());
    if (r.ok()) CHECK(r->egress_rules[0].host == host);
  }
}

TEST_CASE("boundary values inside the ranges are accepted", "[spec]") {
  for (const auto& [pointer, value] : std::vector<std::pair<std::string, Json>>{
           {"/spec/authority/egressRules/0/port", 1},
           {"/spec/authority/egressRules/0/port", 65535},
           {"/spec/authority/egressRules/0/protocol", "udp"},
           {"/spec/lifetime/ttlSeconds", 1},
           {"/spec/run/timeoutMs", 1},
           {"/spec/run/limits/memoryMaxBytes", 1048576},
           {"/spec/run/limits/memoryMaxBytes", 1ull << 50},
           {"/spec/run/limits/pidsMax", 1},
           {"/spec/run/limits/pidsMax", 4194303},
           {"/spec/lifetime/ttlSeconds", 315360000},
           {"/spec/run/timeoutMs", 315360000000ull},
           {"/spec/run/limits/cpuMax/quotaMicros", 17592186044ull},
           {"/spec/run/limits/cpuMax/periodMicros", 1000},
           {"/spec/run/limits/cpuMax/periodMicros", 1000000},
           {"/spec/run/workingDirectory", "/devices"},  // a sibling of /dev, not inside it
           {"/spec/run/env", Json::object()},
           {"/spec/authority/secretRefs", Json::array()},
           {"/spec/id", std::string(128, 'a')},
           {"/spec/id", "a.b_c-D9"},
       }) {
    INFO(pointer << " = " << value.dump());
    auto r = parse_spec(with(pointer, value));
    CHECK(r.ok());
    if (!r.ok()) FAIL_CHECK(r.error().message());
  }
}

TEST_CASE("the document itself must be JSON, an object and an ExecutionCell", "[spec]") {
  check_rejections({
      {"", "spec: invalid JSON: "},
      {"{", "spec: invalid JSON: "},
      {"{\"apiVersion\": cellos}", "spec: invalid JSON: "},
      {"[]", "spec: the document must be a JSON object"},
      {"\"spec\"", "spec: the document must be a JSON object"},
      {without("/apiVersion"), "apiVersion: is required"},
      {with("/apiVersion", 1), "apiVersion: must be a string"},
      {with("/apiVersion", "cellos.dev/v1"), "apiVersion: must be \"cellos.io/v1\""},
      {without("/kind"), "kind: is required"},
      {with("/kind", Json::array()), "kind: must be a string"},
      {with("/kind", "Formation"), "kind: must be \"ExecutionCell\""},
      {without("/spec"), "spec: is required"},
      {with("/spec", "x"), "spec: must be an object"},
      {with("/metadata", Json::object()), "metadata: unknown field"},
  });
}

TEST_CASE("a field given twice is refused, not silently replaced", "[spec]") {
  std::string base = full().dump();
  auto insert_after = [&](const std::string& anchor, const std::string& text) {
    std::string s = base;
    s.insert(s.find(anchor) + anchor.size(), text);
    return s;
  };
  check_rejections({
      {insert_after("{", "\"apiVersion\":\"cellos.io/v1\","), "apiVersion: duplicate field"},
      {insert_after("\"limits\":{", "\"pidsMax\":1,"), "spec.run.limits.pidsMax: duplicate field"},
      {insert_after("\"env\":{", "\"ALPHA\":\"x\","), "spec.run.env.ALPHA: duplicate field"},
      {insert_after("\"port\":53", ",\"port\":54"),
       "spec.authority.egressRules[1].port: duplicate field"},
  });
}

TEST_CASE("unknown fields are refused at every level", "[spec]") {
  check_rejections({
      {with("/extra", 1), "extra: unknown field"},
      {with("/spec/extra", 1), "spec.extra: unknown field"},
      {with("/spec/authority/extra", 1), "spec.authority.extra: unknown field"},
      {with("/spec/authority/egressRules/1/hostname", "x"),
       "spec.authority.egressRules[1].hostname: unknown field"},
      {with("/spec/lifetime/ttl", 1), "spec.lifetime.ttl: unknown field"},
      {with("/spec/run/limts", Json::object()), "spec.run.limts: unknown field"},
      {with("/spec/run/limits/memoryMax", 1), "spec.run.limits.memoryMax: unknown field"},
      {with("/spec/run/limits/cpuMax/quota", 1), "spec.run.limits.cpuMax.quota: unknown field"},
      // A name that is not a plain word is quoted, and its newline escaped onto the one line.
      {with("/spec/run/a\nb", 1), "spec.run[\"a\\nb\"]: unknown field"},
  });
}

TEST_CASE("CellOS fields cellos-reactor does not support say so", "[spec]") {
  const std::string reason = ": CellOS field not supported by cellos-reactor";
  check_rejections({
      {with("/spec/policy", Json::object()), "spec.policy" + reason},
  });
}

TEST_CASE("gracefulShutdownSeconds is a whole number of seconds up to a day", "[spec]") {
  check_rejections({
      {with("/spec/run/limits/gracefulShutdownSeconds", -1),
       "spec.run.limits.gracefulShutdownSeconds: must be"},
      {with("/spec/run/limits/gracefulShutdownSeconds", "5"),
       "spec.run.limits.gracefulShutdownSeconds: must be"},
      {with("/spec/run/limits/gracefulShutdownSeconds", 86401),
       "spec.run.limits.gracefulShutdownSeconds: must be"},
  });
}

TEST_CASE("spec.id must be one portable path segment", "[spec]") {
  const std::string reason = "spec.id: must be 1..128 characters";
  check_rejections({
      {without("/spec/id"), "spec.id: is required"},
      {with("/spec/id", 42), "spec.id: must be a string"},
      {with("/spec/id", ""), reason},
      {with("/spec/id", ".hidden"), reason},
      {with("/spec/id", ".."), reason},
      {with("/spec/id", "-rf"), reason},
      {with("/spec/id", "a/b"), reason},
      {with("/spec/id", "a b"), reason},
      {with("/spec/id", std::string(129, 'a')), reason},
  });
}

TEST_CASE("secretRefs are distinct environment variable names", "[spec]") {
  const std::string path = "spec.authority.secretRefs";
  check_rejections({
      {with("/spec/authority", "x"), "spec.authority: must be an object"},
      {with("/spec/authority/secretRefs", "NPM_TOKEN"), path + ": must be an array of strings"},
      {with("/spec/authority/secretRefs/1", 7), path + "[1]: must be a string"},
      {with("/spec/authority/secretRefs/1", "1BAD"), path + "[1]: must be an environment"},
      {with("/spec/authority/secretRefs/1", "A-B"), path + "[1]: must be an environment"},
      {with("/spec/authority/secretRefs/1", ""), path + "[1]: must be an environment"},
      {with("/spec/authority/secretRefs", Json::array({"A", "B", "A"})), path + "[2]: duplicate A"},
  });
}

TEST_CASE("egress rules need a valid host, a port and at most tcp or udp", "[spec]") {
  const std::string rule = "spec.authority.egressRules[0]";
  const std::string bad_host = rule + ".host: must be an IP address, a CIDR or a host name";
  auto host = [](const std::string& h) { return with("/spec/authority/egressRules/0/host", h); };
  auto port = [](const Json& p) { return with("/spec/authority/egressRules/0/port", p); };
  check_rejections({
      {with("/spec/authority/egressRules", Json::object()),
       "spec.authority.egressRules: must be an array"},
      {with("/spec/authority/egressRules/0", "10.0.0.1"), rule + ": must be an object"},
      {without("/spec/authority/egressRules/0/host"), rule + ".host: is required"},
      {with("/spec/authority/egressRules/0/host", 10), rule + ".host: must be a string"},
      {host(""), rule + ".host: must not be empty"},
      {host("*.example.com"), rule + ".host: wildcard hosts need spec.authority.dnsAuthority"},
      {host("*.com"), rule + ".host: a wildcard host must be"},
      {host("10.0.0.1/33"), bad_host},
      {host("::1/129"), bad_host},
      {host("10.0.0.1/"), bad_host},
      {host("10.0.0.1/x"), bad_host},
      {host("10.0.0.1/-1"), bad_host},
      {host("10.0.0.256"), bad_host},
      {host("1.2.3"), bad_host},
      {host("fe80::1%eth0"), bad_host},
      {host("-bad.example"), bad_host},
      {host("bad-.example"), bad_host},
      {host("a..b"), bad_host},
      {host("exa mple.com"), bad_host},
      {host("under_score.example"), bad_host},
      {host(std::string(64, 'a') + ".example"), bad_host},
      {host(std::string(63, 'a') + "." + std::string(63, 'b') + "." + std::string(63, 'c') + "." +
            std::string(63, 'd') + ".example"),  // 263 characters
       bad_host},
      {without("/spec/authority/egressRules/0/port"), rule + ".port: is required"},
      {port(0), rule + ".port: must be an integer in 1..65535"},
      {port(65536), rule + ".port: must be an integer in 1..65535"},
      {port(-443), rule + ".port: must be an integer in 1..65535"},
      {port("443"), rule + ".port: must be an integer"},
      {port(443.0), rule + ".port: must be an integer"},
      {port(true), rule + ".port: must be an integer"},
      {with("/spec/authority/egressRules/0/protocol", "icmp"),
       rule + ".protocol: must be \"tcp\" or \"udp\""},
      {with("/spec/authority/egressRules/0/protocol", 6), rule + ".protocol: must be a string"},
  });
}

TEST_CASE("integers must be JSON integers within their range", "[spec]") {
  const std::string ttl = "spec.lifetime.ttlSeconds: must be an integer in 1..315360000";
  const std::string cpu = "spec.run.limits.cpuMax";
  check_rejections({
      {with("/spec/lifetime", 600), "spec.lifetime: must be an object"},
      {with("/spec/lifetime/ttlSeconds", 0), ttl},
      {with("/spec/lifetime/ttlSeconds", -5), ttl},
      {with("/spec/lifetime/ttlSeconds", 1.5), ttl},
      {with("/spec/lifetime/ttlSeconds", 600.0), ttl},
      {with("/spec/lifetime/ttlSeconds", "600"), ttl},
      {with("/spec/lifetime/ttlSeconds", true), ttl},
      {with("/spec/lifetime/ttlSeconds", nullptr), ttl},
      {with("/spec/lifetime/ttlSeconds", 1e300), ttl},
      {with("/spec/run/timeoutMs", 0), "spec.run.timeoutMs: must be an integer in 1..315360000000"},
      {with("/spec/run/timeoutMs", "1s"), "spec.run.timeoutMs: must be an integer in 1.."},
      {with("/spec/run/limits", 1), "spec.run.limits: must be an object"},
      {with("/spec/run/limits/memoryMaxBytes", 1048575),
       "spec.run.limits.memoryMaxBytes: must be an integer in 1048576..1125899906842624"},
      {with("/spec/run/limits/memoryMaxBytes", "1G"),
       "spec.run.limits.memoryMaxBytes: must be an integer in 1048576.."},
      {with("/spec/run/limits/pidsMax", 0),
       "spec.run.limits.pidsMax: must be an integer in 1..4194303"},
      {with("/spec/run/limits/pidsMax", -1),
       "spec.run.limits.pidsMax: must be an integer in 1..4194303"},
      {with("/spec/run/limits/cpuMax", 100000), cpu + ": must be an object"},
      {without("/spec/run/limits/cpuMax/quotaMicros"), cpu + ".quotaMicros: is required"},
      {with("/spec/run/limits/cpuMax/quotaMicros", 999),
       cpu + ".quotaMicros: must be an integer in 1000..17592186044"},
      {with("/spec/run/limits/cpuMax/periodMicros", 999),
       cpu + ".periodMicros: must be an integer in 1000..1000000"},
      {with("/spec/run/limits/cpuMax/periodMicros", 1000001),
       cpu + ".periodMicros: must be an integer in 1000..1000000"},
  });
}

TEST_CASE("run needs a normalized absolute argv[0]", "[spec]") {
  const std::string normalized = "spec.run.argv[0]: must be a normalized absolute path";
  auto argv = [](const Json& a) { return with("/spec/run/argv", a); };
  check_rejections({
      {without("/spec/run"), "spec.run: is required"},
      {with("/spec/run", Json::array()), "spec.run: must be an object"},
      {without("/spec/run/argv"), "spec.run.argv: is required"},
      {argv("/bin/sh -c true"), "spec.run.argv: must be an array of strings"},
      {argv(Json::array()), "spec.run.argv: must not be empty"},
      {argv(Json::array({"/bin/sh", 1})), "spec.run.argv[1]: must be a string"},
      {argv(Json::array({"/bin/sh", std::string("a\0b", 3)})),
       "spec.run.argv[1]: must not contain NUL"},
      {argv(Json::array({"bin/sh"})), "spec.run.argv[0]: \"bin/sh\" is a relative path"},
      {argv(Json::array({"./sh"})), "spec.run.argv[0]: \"./sh\" is a relative path"},
      {argv(Json::array({".."})), "spec.run.argv[0]: must be an absolute path or a program name"},
      {argv(Json::array({""})), "spec.run.argv[0]: must not be empty"},
      {argv(Json::array({"/"})), normalized},
      {argv(Json::array({"/bin/../sh"})), normalized},
      {argv(Json::array({"/bin/./sh"})), normalized},
      {argv(Json::array({"/bin//sh"})), normalized},
      {argv(Json::array({"/bin/sh/"})), normalized},
      {argv(Json::array({"/bin/.."})), normalized},
  });
}

TEST_CASE("workingDirectory is a normalized absolute path outside kernel filesystems", "[spec]") {
  const std::string path = "spec.run.workingDirectory";
  auto wd = [](const Json& d) { return with("/spec/run/workingDirectory", d); };
  check_rejections({
      {wd(1), path + ": must be a string"},
      {wd("work"), path + ": must be an absolute path"},
      {wd(""), path + ": must be an absolute path"},
      {wd("/"), path + ": must not be \"/\""},
      {wd("/work/../etc"), path + ": must be a normalized absolute path"},
      {wd("/work/"), path + ": must be a normalized absolute path"},
      {wd("/work//x"), path + ": must be a normalized absolute path"},
      {wd("/proc"), path + ": must not be in /proc"},
      {wd("/proc/self"), path + ": must not be in /proc"},
      {wd("/sys/fs/cgroup"), path + ": must not be in /sys"},
      {wd("/dev"), path + ": must not be in /dev"},
      {wd("/dev/shm"), path + ": must not be in /dev"},
  });
}

TEST_CASE("secretDelivery accepts only env, runtimeBroker and runtimeLeasedBroker", "[spec]") {
  const std::string path = "spec.run.secretDelivery";
  const std::string modes = ": must be \"env\", \"runtimeBroker\" or \"runtimeLeasedBroker\"";
  check_rejections({
      {with("/spec/run/secretDelivery", 1), path + ": must be a string"},
      {with("/spec/run/secretDelivery", "file"), path + modes},
      {with("/spec/run/secretDelivery", "ENV"), path + modes},
  });
}

TEST_CASE("run.env maps variable names to strings and does not shadow secrets", "[spec]") {
  check_rejections({
      {with("/spec/run/env", Json::array()), "spec.run.env: must be an object"},
      {with("/spec/run/env/1X", "v"), "spec.run.env.1X: must be an environment variable name"},
      {with("/spec/run/env/A=B", "v"), "spec.run.env[\"A=B\"]: must be an environment variable"},
      {with("/spec/run/env/", "v"), "spec.run.env[\"\"]: must be an environment variable name"},
      {with("/spec/run/env/N", 5), "spec.run.env.N: must be a string"},
      {with("/spec/run/env/N", Json::object()), "spec.run.env.N: must be a string"},
      {with("/spec/run/env/N", std::string("a\0b", 3)), "spec.run.env.N: must not contain NUL"},
      {with("/spec/run/env/NPM_TOKEN", "x"),
       "spec.run.env.NPM_TOKEN: also named in spec.authority.secretRefs"},
  });
}

TEST_CASE("a run.env value never appears in an error message", "[spec]") {
  const std::string secret = "s3cr3t-VALUE";
  std::string full_text = with("/spec/run/env/TOKEN", secret);
  std::vector<std::string> docs = {
      with("/spec/run/env/NPM_TOKEN", secret),                      // shadows a secretRef
      with("/spec/run/env/NUL", secret + std::string(1, '\0')),     // NUL in the value
      with("/spec/run/env/1X", secret),                             // bad key, value alongside
      full_text.substr(0, full_text.find(secret) + secret.size()),  // cut inside it
      full_text.substr(0, full_text.find(secret) + secret.size() + 1) + "x",  // garbage after it
  };
  std::string bad_escape = full_text;
  bad_escape.insert(bad_escape.find(secret) + 3, "\\q");
  docs.push_back(bad_escape);
  for (const auto& doc : docs) {
    INFO("spec: " << doc);
    auto r = parse_spec(doc);
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error().message(), !Contains("s3cr3t") && !Contains("VALUE"));
  }
}

Spec spec_running(const std::string& argv0) {
  Spec s;
  s.id = "t";
  s.run.argv = {argv0};
  return s;
}

TEST_CASE("policy allows argv[0] only under an allowed prefix, by whole components", "[spec]") {
  PolicyConfig policy;  // /usr/bin, /bin, /usr/local/bin
  CHECK(check_policy(spec_running("/usr/bin/env"), policy).ok());
  CHECK(check_policy(spec_running("/bin/sh"), policy).ok());
  CHECK(check_policy(spec_running("/usr/local/bin/x/y"), policy).ok());
  auto rejected = [&](const std::string& argv0) {
    auto r = check_policy(spec_running(argv0), policy);
    return r.ok() ? std::string("<accepted>") : r.error().message();
  };
  CHECK(rejected("/opt/x") ==
        "spec.run.argv[0]: /opt/x is not under an allowed prefix (/usr/bin, /bin, /usr/local/bin)");
  CHECK_THAT(rejected("/usr/binx/y"), Contains("spec.run.argv[0]: /usr/binx/y is not under"));
  CHECK_THAT(rejected("/usr/bin"), Contains("spec.run.argv[0]: /usr/bin is not under"));
  // A Spec built in code skipped parse_spec: `..` must not climb out of a prefix.
  CHECK_THAT(rejected("/usr/bin/../../opt/x"),
             Contains("spec.run.argv[0]: must be a normalized absolute path"));
  CHECK_THAT(rejected("/usr/bin/x\ny"), !Contains("\n"));
  Spec empty;
  CHECK_THAT(check_policy(empty, policy).error().message(),
             Contains("spec.run.argv: must not be empty"));
}

TEST_CASE("policy prefix / allows every absolute argv[0]", "[spec]") {
  PolicyConfig policy;
  policy.argv0_allow_prefixes = {"/"};
  CHECK(check_policy(spec_running("/opt/tool/bin/x"), policy).ok());
  CHECK(check_policy(spec_running("/x"), policy).ok());
}

TEST_CASE("policy caps ttlSeconds and timeoutMs at max_ttl_seconds", "[spec]") {
  PolicyConfig policy;  // max_ttl_seconds 86400
  Spec s = spec_running("/bin/true");
  s.ttl_seconds = 86400;
  s.run.timeout_ms = 86400000;
  CHECK(check_policy(s, policy).ok());

  s.ttl_seconds = 90000;
  auto r = check_policy(s, policy);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message() == "spec.lifetime.ttlSeconds: 90000 exceeds the policy cap of 86400");

  s.ttl_seconds.reset();
  s.run.timeout_ms = 86400001;
  r = check_policy(s, policy);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message() == "spec.run.timeoutMs: 86400001 exceeds the policy cap of 86400000");

  // A cap too large to express in milliseconds saturates instead of wrapping to a small one.
  policy.max_ttl_seconds = UINT64_MAX;
  s.run.timeout_ms = UINT64_MAX;
  CHECK(check_policy(s, policy).ok());
}

TEST_CASE("a parsed spec passes the default policy once its secrets are granted", "[spec]") {
  auto r = parse_spec(kFull);
  REQUIRE(r.ok());
  PolicyConfig policy;
  policy.secret_grants = {{"NPM_TOKEN", {"build-*"}}, {"GH_TOKEN", {"build-42"}}};
  CHECK(check_policy(r.value(), policy).ok());
}

TEST_CASE("is_portable_segment accepts one directory-name-safe segment", "[spec]") {
  for (const char* ok : {"a", "build-42", "A.b_c-9", "x..y", "9"}) CHECK(is_portable_segment(ok));
  CHECK(is_portable_segment(std::string(128, 'x')));
  for (const char* bad : {"", ".", "..", ".x", "-x", "a/b", "a b", "a\\b", "~x", "é"})
    CHECK_FALSE(is_portable_segment(bad));
  CHECK_FALSE(is_portable_segment(std::string(129, 'x')));
  CHECK_FALSE(is_portable_segment(std::string("a\0b", 3)));
}

TEST_CASE("is_env_name accepts [A-Za-z_][A-Za-z0-9_]*", "[spec]") {
  for (const char* ok : {"A", "_", "_X1", "npm_token", "PATH"}) CHECK(is_env_name(ok));
  for (const char* bad : {"", "1A", "A-B", "A=B", "A B", "A.B", "É"}) CHECK_FALSE(is_env_name(bad));
  CHECK_FALSE(is_env_name(std::string("A\0B", 3)));
}

}  // namespace
}  // namespace cellos::cells
