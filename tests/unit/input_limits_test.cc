// Hostile specs: whatever a spec holds, parse_spec refuses it in one linear pass with a short,
// one-line message, and check_policy refuses limits and secrets the fleet did not grant.
#include <catch2/catch.hpp>
#include <string>

#include "base/json.h"
#include "base/text.h"
#include "cells/config.h"
#include "cells/spec.h"

namespace cellos::cells {
namespace {

using Catch::Contains;
using Catch::StartsWith;

constexpr size_t kShort = 400;  // "a few hundred bytes": every message below stays under it

std::string head(const std::string& run_extra = "") {
  return R"({"apiVersion":"cellos.io/v1","kind":"ExecutionCell","spec":{"id":"t","run":{"argv":["/bin/true"])" +
         run_extra;
}

std::string error_of(const std::string& json) {
  auto r = parse_spec(json);
  return r.ok() ? std::string("<accepted>") : r.error().message();
}

TEST_CASE("a spec nested deeper than 64 levels is refused naming the depth", "[spec][limits]") {
  std::string deep = head(R"(,"env":)") + std::string(100000, '[') + std::string(100000, ']') + "}}}";
  std::string msg = error_of(deep);
  CHECK_THAT(msg, StartsWith("spec.run.env"));
  CHECK_THAT(msg, Contains("nested deeper than 64 levels"));
  CHECK(msg.size() < kShort);
}

TEST_CASE("deep nesting in a long key path is refused with a clipped path", "[spec][limits]") {
  std::string key(1000, 'k');
  std::string deep;
  for (int i = 0; i < 80; ++i) deep += "{\"" + key + "\":";
  deep += "1" + std::string(80, '}');
  std::string msg = error_of(deep);
  CHECK_THAT(msg, Contains("nested deeper than 64 levels"));
  CHECK(msg.size() < kShort);
}

// 120k distinct keys fit the 1 MiB cap only when short: three characters (a letter first, so each
// is a valid env name), and a number.
std::string key3(size_t i) {
  static constexpr char kChars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  return {kChars[i % 52], kChars[i / 52 % 62], kChars[i / 3224 % 62]};
}

std::string many_keys(size_t n, const std::string& extra = "") {
  std::string obj = "{";
  for (size_t i = 0; i < n; ++i) obj += (i ? ",\"" : "\"") + key3(i) + "\":1";
  return obj + extra + "}";
}

TEST_CASE("120k keys in one object parse in one pass, and a repeat among them is named", "[spec][limits]") {
  const std::string env = many_keys(120000);
  REQUIRE(env.size() < kMaxSpecBytes - 200);
  // The whole object is read (120k hash-set inserts) before the first value is checked.
  // A spec holds at most 16384 values: refused while reading, long before the end.
  CHECK_THAT(error_of(head(",\"env\":" + env + "}}}")),
             StartsWith("spec.run.env.") && Contains(": more than 16384 values in one spec"));
  // Without that cap, the whole object is read (120k hash-table inserts) to the repeat.
  const std::string dup = many_keys(120000, ",\"" + key3(119999) + "\":2");
  auto dup_doc = base::parse_json(dup, {});
  REQUIRE_FALSE(dup_doc.ok());
  CHECK(dup_doc.error().message() == key3(119999) + ": duplicate field");
  auto doc = base::parse_json(env, {});
  REQUIRE(doc.ok());
  CHECK(doc->size() == 120000);
  CHECK(doc->begin().key() == "aaa");  // document order kept
}

TEST_CASE("env, secretRefs, egressRules and argv are capped in length", "[spec][limits]") {
  auto env_of = [](int n) {
    std::string env;
    for (int i = 0; i < n; ++i) env += (i ? ",\"K" : "\"K") + std::to_string(i) + "\":\"v\"";
    return head(",\"env\":{" + env + "}}}}");
  };
  auto r = parse_spec(env_of(4096));
  REQUIRE(r.ok());
  CHECK(r->run.env[7].first == "K7");  // declared order kept
  CHECK(error_of(env_of(4097)) == "spec.run.env: more than 4096 variables");

  auto refs_of = [](int n) {
    std::string refs;
    for (int i = 0; i < n; ++i) refs += (i ? ",\"S" : "\"S") + std::to_string(i) + "\"";
    return R"({"apiVersion":"cellos.io/v1","kind":"ExecutionCell","spec":{"id":"t",)"
           R"("authority":{"secretRefs":[)" + refs + R"(]},"run":{"argv":["/bin/true"]}}})";
  };
  CHECK(parse_spec(refs_of(256)).ok());
  CHECK(error_of(refs_of(257)) == "spec.authority.secretRefs: more than 256 entries");

  std::string rules;
  for (int i = 0; i < 257; ++i) rules += (i ? "," : "") + std::string(R"({"host":"10.0.0.1","port":1})");
  CHECK(error_of(R"({"apiVersion":"cellos.io/v1","kind":"ExecutionCell","spec":{"id":"t",)"
                 R"("authority":{"egressRules":[)" + rules + R"(]},"run":{"argv":["/bin/true"]}}})") ==
        "spec.authority.egressRules: more than 256 rules");

  std::string argv = R"(["/bin/true")";
  for (int i = 0; i < 4096; ++i) argv += ",\"a\"";
  CHECK(error_of(R"({"apiVersion":"cellos.io/v1","kind":"ExecutionCell","spec":{"id":"t",)"
                 R"("run":{"argv":)" + argv + "]}}}") == "spec.run.argv: more than 4096 entries");
}

TEST_CASE("a megabyte of duplicate keys is refused at the first repeat", "[spec][limits]") {
  std::string body = "{";
  while (body.size() < kMaxSpecBytes - 16) body += "\"a\":1,";
  body += "\"a\":1}";
  std::string msg = error_of(body);
  CHECK(msg == "a: duplicate field");
}

TEST_CASE("a spec over the 1 MiB cap is refused by size before parsing", "[spec][limits]") {
  std::string big = head(",\"env\":{\"A\":\"" + std::string(kMaxSpecBytes, 'x') + "\"}}}}");
  std::string msg = error_of(big);
  CHECK_THAT(msg, StartsWith("spec: "));
  CHECK_THAT(msg, Contains("over the 1 MiB a spec may have"));
}

TEST_CASE("messages quoting a long key or argv[0] stay short and on one line", "[spec][limits]") {
  std::string key(500000, 'x');
  std::string msg = error_of(head(",\"" + key + "\":1}}}"));
  CHECK_THAT(msg, Contains("unknown field"));
  CHECK(msg.size() < kShort);
  std::string dup = "{\"" + key + "\\n\":1,\"" + key + "\\n\":2}";
  msg = error_of(dup);
  CHECK_THAT(msg, Contains("duplicate field"));
  CHECK(msg.size() < kShort);
  CHECK(msg.find('\n') == std::string::npos);

  PolicyConfig policy;
  Spec s;
  s.id = "t";
  s.run.argv = {"/opt/" + std::string(800000, 'a')};
  auto r = check_policy(s, policy);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message().size() < kShort);
}

TEST_CASE("clip cuts long text with an ellipsis, escapes control bytes, keeps UTF-8 whole",
          "[base][limits]") {
  CHECK(base::clip("short") == "short");
  CHECK(base::clip(std::string(300, 'a'), 10) == "aaaaaaaaaa...");
  CHECK(base::clip("a\nb\x1b", 10) == "a\\x0ab\\x1b");
  CHECK(base::clip("\xc3\xa9\xc3\xa9", 3) == "\xc3\xa9...");  // never half of an é
  CHECK(base::bounded_line("a\nb\rc") == "a b c");
  CHECK(base::bounded_line(std::string(2000, 'z')).size() == base::kMaxMessageBytes + 3);
}

TEST_CASE("limits the kernel would refuse or that overflow are refused at parse", "[spec][limits]") {
  auto limits = [](const std::string& l) { return error_of(head(",\"limits\":{" + l + "}}}}")); };
  CHECK_THAT(limits("\"pidsMax\":18446744073709551615"),
             StartsWith("spec.run.limits.pidsMax: must be an integer in 1..4194303"));
  CHECK_THAT(limits("\"pidsMax\":4194304"), StartsWith("spec.run.limits.pidsMax:"));
  CHECK_THAT(limits("\"memoryMaxBytes\":9223372036854775807"),
             StartsWith("spec.run.limits.memoryMaxBytes: must be an integer in"));
  CHECK_THAT(limits("\"cpuMax\":{\"quotaMicros\":18446744073709551615}"),
             StartsWith("spec.run.limits.cpuMax.quotaMicros: must be an integer in 1000.."));
  CHECK_THAT(error_of(head("}, \"lifetime\":{\"ttlSeconds\":9223372036854775807}}}")),
             StartsWith("spec.lifetime.ttlSeconds: must be an integer in 1..315360000"));
}

Spec with_limits(Limits l) {
  Spec s;
  s.id = "t";
  s.run.argv = {"/bin/true"};
  s.run.limits = l;
  return s;
}

TEST_CASE("a spec cannot lift its own limits past policy.max_limits", "[spec][limits]") {
  PolicyConfig policy;  // 8 GiB, 4096 pids, 64 CPUs, period <= 1 s
  CHECK(check_policy(with_limits({8ull << 30, 4096, CpuMax{6400000, 100000}}), policy).ok());
  auto msg = [&](Limits l) {
    auto r = check_policy(with_limits(l), policy);
    return r.ok() ? std::string("<accepted>") : r.error().message();
  };
  CHECK(msg({(8ull << 30) + 1, {}, {}}) ==
        "spec.run.limits.memoryMaxBytes: 8589934593 exceeds the policy cap of 8589934592 "
        "(policy.max_limits.memory_max_bytes)");
  CHECK(msg({{}, 4097, {}}) ==
        "spec.run.limits.pidsMax: 4097 exceeds the policy cap of 4096 (policy.max_limits.pids_max)");
  CHECK_THAT(msg({{}, {}, CpuMax{6400001, 100000}}),
             StartsWith("spec.run.limits.cpuMax.quotaMicros: 6400001 per 100000 us is more than "
                        "the policy's 64 CPUs"));
  policy.max_limits.cpu_period_micros = 100000;
  CHECK_THAT(msg({{}, {}, CpuMax{1000, 200000}}),
             StartsWith("spec.run.limits.cpuMax.periodMicros: 200000 exceeds the policy cap"));
}

TEST_CASE("a secret reaches only the cells [secrets.grants] names", "[spec][secrets]") {
  PolicyConfig policy;
  Spec s;
  s.id = "build-42";
  s.run.argv = {"/bin/true"};
  s.secret_refs = {"NPM_TOKEN"};
  // Secure by default: no grant, no secret.
  auto r = check_policy(s, policy);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message() ==
        "spec.authority.secretRefs[0]: secret NPM_TOKEN is not granted to cell build-42 "
        "(fleet.toml [secrets.grants])");
  policy.secret_grants["NPM_TOKEN"] = {"release-*", "build-4?"};
  CHECK(check_policy(s, policy).ok());
  s.id = "build-420";
  CHECK_FALSE(check_policy(s, policy).ok());
  s.id = "release-1";
  s.secret_refs = {"NPM_TOKEN", "GH_TOKEN"};
  r = check_policy(s, policy);
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.error().message(), StartsWith("spec.authority.secretRefs[1]: secret GH_TOKEN"));
}

TEST_CASE("glob_matches: * any run, ? one character, the rest literal", "[spec][secrets]") {
  CHECK(glob_matches("*", "anything"));
  CHECK(glob_matches("build-*", "build-"));
  CHECK(glob_matches("build-*", "build-42"));
  CHECK(glob_matches("*-42", "release-42"));
  CHECK(glob_matches("a*b*c", "aXbYbZc"));
  CHECK(glob_matches("b?ild", "build"));
  CHECK_FALSE(glob_matches("build-*", "rebuild-1"));
  CHECK_FALSE(glob_matches("build", "build-1"));
  CHECK_FALSE(glob_matches("b?ild", "bld"));
  CHECK_FALSE(glob_matches("", "x"));
  CHECK(glob_matches(std::string(60, '*') + "b", std::string(128, 'a') + "b"));
}

TEST_CASE("a repeated secretRef is named by its index", "[spec][limits]") {
  std::string refs;
  for (int i = 0; i < 255; ++i) refs += (i ? ",\"S" : "\"S") + std::to_string(i) + "\"";
  refs += ",\"S254\"";
  CHECK(error_of(R"({"apiVersion":"cellos.io/v1","kind":"ExecutionCell","spec":{"id":"t",)"
                 R"("authority":{"secretRefs":[)" + refs + R"(]},"run":{"argv":["/bin/true"]}}})") ==
        "spec.authority.secretRefs[255]: duplicate S254");
}

}  // namespace
}  // namespace cellos::cells
