// spec.correlation.correlationId and a bare argv[0]: what parse_spec accepts and refuses, how
// check_policy treats a program found through the cell's PATH, and that the correlation id
// becomes the `correlationid` attribute of the CloudEvent line.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <string>

#include "cells/config.h"
#include "cells/program_path.h"
#include "cells/spec.h"
#include "sinks/cloudevent_json.h"
#include "sinks/events.h"

namespace cellos::cells {
namespace {

using Catch::Contains;
using Json = nlohmann::ordered_json;

Json doc(const Json& correlation) {
  Json d = Json::parse(R"({"apiVersion":"cellos.io/v1","kind":"ExecutionCell",
    "spec":{"id":"c-1","run":{"argv":["/bin/true"]}}})");
  d["spec"]["correlation"] = correlation;
  return d;
}

std::string error_of(const Json& d) {
  auto r = parse_spec(d.dump());
  return r.ok() ? std::string("<accepted>") : r.error().message();
}

TEST_CASE("spec.correlation.correlationId is parsed and validated", "[spec][correlation]") {
  for (const char* id : {"github:octo/repo/run/42/attempt/1", "7f3d7c1b-1a2b-4c3d-9e8f-0a1b2c3d4e5f",
                         "gitlab#pipeline=99", "a"}) {
    auto r = parse_spec(doc({{"correlationId", id}}).dump());
    REQUIRE(r.ok());
    CHECK(r->correlation_id == std::string(id));
  }
  auto none = parse_spec(R"({"apiVersion":"cellos.io/v1","kind":"ExecutionCell",
    "spec":{"id":"c-1","run":{"argv":["/bin/true"]}}})");
  REQUIRE(none.ok());
  CHECK_FALSE(none->correlation_id.has_value());

  const std::string field = "spec.correlation.correlationId: must be 1..256 characters";
  CHECK_THAT(error_of(doc({{"correlationId", ""}})), Contains(field));
  CHECK_THAT(error_of(doc({{"correlationId", std::string(257, 'a')}})), Contains(field));
  CHECK_THAT(error_of(doc({{"correlationId", "two words"}})), Contains(field));
  CHECK_THAT(error_of(doc({{"correlationId", "a\"b"}})), Contains(field));
  CHECK_THAT(error_of(doc({{"correlationId", "line\nbreak"}})), Contains(field));
  CHECK_THAT(error_of(doc({{"correlationId", "caf\xc3\xa9"}})), Contains(field));
  CHECK(error_of(doc({{"correlationId", std::string(256, 'a')}})) == "<accepted>");
  CHECK_THAT(error_of(doc({{"correlationId", 42}})),
             Contains("spec.correlation.correlationId: must be a string"));
  CHECK_THAT(error_of(doc(Json::object())), Contains("spec.correlation.correlationId: is required"));
  CHECK_THAT(error_of(doc("run-1")), Contains("spec.correlation: must be an object"));
  CHECK_THAT(error_of(doc({{"correlationId", "x"}, {"formationId", "f"}})),
             Contains("spec.correlation.formationId: unknown field"));
  // Every message stays on one line, whatever the value held.
  CHECK(error_of(doc({{"correlationId", "line\nbreak"}})).find('\n') == std::string::npos);
}

TEST_CASE("the correlation id is the CloudEvents attribute correlationid", "[events][correlation]") {
  sinks::CloudEventEnvelope env{"/cellos-reactor/h", "id-1"};
  auto e = sinks::make_event(sinks::StartedData{"c-1", "r", "h", "ci:run/7", "/usr/bin/true"});
  e.correlation_id = "ci:run/7";
  auto line = Json::parse(sinks::encode_cloudevent(e, env));
  CHECK(line["correlationid"] == "ci:run/7");
  CHECK(line["data"]["correlationId"] == "ci:run/7");
  CHECK(line["data"]["argv0Path"] == "/usr/bin/true");
  auto plain = Json::parse(sinks::encode_cloudevent(sinks::make_event(sinks::DestroyedData{"c-1"}), env));
  CHECK_FALSE(plain.contains("correlationid"));
}

Spec bare(const std::string& name, const std::string& path = "") {
  Spec s;
  s.id = "bare";
  s.run.argv = {name};
  if (!path.empty()) s.run.env.emplace_back("PATH", path);
  return s;
}

TEST_CASE("a bare argv[0] is parsed and a relative path with a slash is refused", "[spec][argv0]") {
  auto ok = parse_spec(R"({"apiVersion":"cellos.io/v1","kind":"ExecutionCell",
    "spec":{"id":"t-run","run":{"argv":["true"]}}})");
  REQUIRE(ok.ok());
  CHECK(ok->run.argv[0] == "true");
  CHECK(ok->run.program.empty());  // filled at admission
  auto rel = parse_spec(R"({"apiVersion":"cellos.io/v1","kind":"ExecutionCell",
    "spec":{"id":"t-run","run":{"argv":["./build.sh"]}}})");
  REQUIRE_FALSE(rel.ok());
  CHECK_THAT(rel.error().message(), Contains("spec.run.argv[0]: \"./build.sh\" is a relative path"));
  CHECK_THAT(rel.error().message(), Contains("/usr/bin/env"));
}

TEST_CASE("a bare argv[0] resolves through the cell's PATH, in its view only", "[argv0]") {
  Config config;
  // The default PATH: /usr/local/bin:/usr/bin:/bin; sh is in one of them on every host.
  auto sh = resolve_program(bare("sh"), config);
  REQUIRE(sh.has_value());
  CHECK((*sh == "/usr/bin/sh" || *sh == "/bin/sh" || *sh == "/usr/local/bin/sh"));
  CHECK_FALSE(resolve_program(bare("cellos-no-such-program"), config).has_value());
  // The spec's own PATH replaces the default, and is searched in order.
  CHECK(resolve_program(bare("sh", "/bin:/usr/bin"), config) == std::optional<std::string>("/bin/sh"));
  // Directories the view does not hold (or the cell's own /tmp, or a relative entry: the
  // workspace) are never searched, even when the host has the file there.
  CHECK_FALSE(resolve_program(bare("sh", "/tmp:.:bin:/proc"), config).has_value());
  config.policy.host_paths = {"/etc"};
  config.policy.argv0_allow_prefixes = {"/opt/tools"};
  CHECK_FALSE(resolve_program(bare("sh"), config).has_value());
}

TEST_CASE("policy checks the program a bare argv[0] resolved to", "[argv0]") {
  PolicyConfig policy;
  policy.argv0_allow_prefixes = {"/usr/bin"};
  Spec s = bare("sh");
  s.run.program = "/usr/bin/sh";
  CHECK(check_policy(s, policy).ok());
  s.run.program = "/bin/sh";
  auto r = check_policy(s, policy);
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.error().message(),
             Contains("spec.run.argv[0]: sh (found in the cell's PATH as /bin/sh) is not under an "
                      "allowed prefix (/usr/bin)"));
  // Not found: nothing to check here; the cell fails as a missing program (127).
  s.run.program.clear();
  CHECK(check_policy(s, policy).ok());
}

}  // namespace
}  // namespace cellos::cells
