// secretDelivery runtimeBroker / runtimeLeasedBroker and spec.identity: what the spec, the
// policy, admission and fleet.toml accept and refuse (each refusal naming its field), what a
// runtime-delivery cell's environment holds, the workload identity token's signature and
// claims, the JWKS, and the events' JSON (names, never values).
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <string>

#include "cells/admission.h"
#include "cells/config.h"
#include "cells/identity.h"
#include "cells/secrets.h"
#include "cells/spec.h"
#include "sinks/cloudevent_json.h"
#include "sinks/events.h"
#include "sinks/signing.h"
#include "tests/support/test_support.h"

namespace cellos::cells {
namespace {

using Catch::Contains;
using Json = nlohmann::json;

std::string spec_text(const Json& spec_body) {
  Json doc = {{"apiVersion", "cellos.io/v1"}, {"kind", "ExecutionCell"}, {"spec", spec_body}};
  return doc.dump();
}

Json body(const std::string& delivery = "env") {
  return {{"id", "build-42"},
          {"authority", {{"secretRefs", {"NPM_TOKEN"}}}},
          {"run", {{"argv", {"/bin/true"}}, {"secretDelivery", delivery}}}};
}

std::string parse_error(const Json& b) {
  auto r = parse_spec(spec_text(b));
  return r.ok() ? std::string("<accepted>") : r.error().message();
}

std::string unbase64url(std::string s) {
  for (char& c : s) c = c == '-' ? '+' : c == '_' ? '/' : c;
  while (s.size() % 4) s += '=';
  std::string out;
  REQUIRE(sinks::unbase64(s, out));
  return out;
}

Config config_with(const std::string& toml) { return parse_config(toml, "fleet.toml"); }

}  // namespace

TEST_CASE("secretDelivery takes env, runtimeBroker and runtimeLeasedBroker", "[spec][secrets]") {
  for (const char* mode : {"env", "runtimeBroker", "runtimeLeasedBroker"}) {
    auto r = parse_spec(spec_text(body(mode)));
    INFO(mode);
    REQUIRE(r.ok());
    CHECK(r->run.secret_delivery == mode);
    CHECK(r->runtime_delivery() == (std::string(mode) != "env"));
  }
  CHECK_THAT(parse_error(body("vault")),
             Contains("spec.run.secretDelivery") && Contains("runtimeLeasedBroker"));
}

TEST_CASE("spec.identity needs one printable audience and nothing else", "[spec][identity]") {
  Json b = body();
  b["identity"] = {{"audience", "https://ci.example/relying-party"}};
  auto r = parse_spec(spec_text(b));
  REQUIRE(r.ok());
  REQUIRE(r->identity);
  CHECK(r->identity->audience == "https://ci.example/relying-party");

  b["identity"] = Json::object();
  CHECK_THAT(parse_error(b), Contains("spec.identity.audience: is required"));
  b["identity"] = {{"audience", ""}};
  CHECK_THAT(parse_error(b), Contains("spec.identity.audience: must be 1..256"));
  b["identity"] = {{"audience", std::string(257, 'a')}};
  CHECK_THAT(parse_error(b), Contains("spec.identity.audience"));
  b["identity"] = {{"audience", "a\nb"}};
  CHECK_THAT(parse_error(b), Contains("spec.identity.audience"));
  b["identity"] = {{"audience", 7}};
  CHECK_THAT(parse_error(b), Contains("spec.identity.audience: must be a string"));
  b["identity"] = {{"audience", "x"}, {"provider", "github"}};
  CHECK_THAT(parse_error(b), Contains("spec.identity.provider: unknown field"));
  b["identity"] = "x";
  CHECK_THAT(parse_error(b), Contains("spec.identity: must be an object"));
}

TEST_CASE("the variables the reactor sets are not the spec's to declare", "[spec][secrets]") {
  Json b = body();
  b["authority"]["secretRefs"] = {"CELLOS_IDENTITY_TOKEN"};
  CHECK_THAT(parse_error(b), Contains("spec.authority.secretRefs[0]") &&
                                 Contains("set by cellos-reactor itself"));
  b = body();
  b["run"]["env"] = {{"CELLOS_SECRET_BROKER", "/tmp/evil.sock"}};
  CHECK_THAT(parse_error(b), Contains("spec.run.env.CELLOS_SECRET_BROKER"));
}

TEST_CASE("require_runtime_secret_delivery refuses env delivery of secrets or identity",
          "[spec][secrets][policy]") {
  PolicyConfig policy;
  policy.secret_grants["NPM_TOKEN"] = {"*"};
  policy.require_runtime_secret_delivery = true;
  auto env_spec = parse_spec(spec_text(body("env")));
  REQUIRE(env_spec.ok());
  auto r = check_policy(*env_spec, policy);
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.error().message(), Contains("spec.run.secretDelivery") &&
                                      Contains("require_runtime_secret_delivery"));

  for (const char* mode : {"runtimeBroker", "runtimeLeasedBroker"}) {
    auto s = parse_spec(spec_text(body(mode)));
    REQUIRE(s.ok());
    CHECK(check_policy(*s, policy).ok());
  }
  // Nothing secret declared: env delivery has nothing to leak.
  Json plain = body("env");
  plain["authority"]["secretRefs"] = Json::array();
  auto p = parse_spec(spec_text(plain));
  REQUIRE(p.ok());
  CHECK(check_policy(*p, policy).ok());
  // The identity token is a secret too.
  plain["identity"] = {{"audience", "aud"}};
  p = parse_spec(spec_text(plain));
  REQUIRE(p.ok());
  CHECK_FALSE(check_policy(*p, policy).ok());
  // Off by default.
  policy.require_runtime_secret_delivery = false;
  CHECK(check_policy(*env_spec, policy).ok());
}

TEST_CASE("admission refuses spec.identity on a host without an identity key",
          "[admission][identity]") {
  Config c = config_with("");
  Json b = body();
  b["authority"]["secretRefs"] = Json::array();
  b["identity"] = {{"audience", "aud"}};
  auto a = admit(spec_text(b), {&c, nullptr});
  REQUIRE_FALSE(a.admitted());
  CHECK_THAT(a.refusal.message(), Contains("spec.identity") && Contains("[identity] signing_key"));
  c.identity.signing_key = "/etc/cellos/identity.key";
  CHECK(admit(spec_text(b), {&c, nullptr}).admitted());
}

TEST_CASE("fleet.toml: [identity] and policy.require_runtime_secret_delivery", "[config]") {
  Config c = config_with(
      "[identity]\nissuer = \"https://ci.example\"\nsigning_key = \"/etc/cellos/identity.key\"\n"
      "[policy]\nrequire_runtime_secret_delivery = true\n");
  CHECK(c.identity.issuer == "https://ci.example");
  CHECK(c.identity.signing_key == "/etc/cellos/identity.key");
  CHECK(c.policy.require_runtime_secret_delivery);
  CHECK_FALSE(config_with("").policy.require_runtime_secret_delivery);
  auto error = [](const std::string& toml) {
    try {
      parse_config(toml, "fleet.toml");
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("<accepted>");
  };
  CHECK_THAT(error("[identity]\nsigning_key = \"identity.key\"\n"),
             Contains("identity.signing_key"));
  CHECK_THAT(error("[identity]\nissuer = \"\"\n"), Contains("identity.issuer"));
  CHECK_THAT(error("[identity]\nissuer = \"a\\u0001b\"\n"), Contains("identity.issuer"));
  CHECK_THAT(error("[identity]\naudience = \"x\"\n"), Contains("identity.audience: unknown key"));
  CHECK_THAT(error("[policy]\nrequire_runtime_secret_delivery = \"yes\"\n"),
             Contains("policy.require_runtime_secret_delivery"));
}

TEST_CASE("a runtime-delivery cell's environment names the broker and holds no secret",
          "[secrets]") {
  test::TempDir dir;
  test::write_text(dir.path() + "/NPM_TOKEN", "s3cr3t-value\n");
  SecretsConfig secrets{dir.path()};
  auto spec = parse_spec(spec_text(body("runtimeBroker")));
  REQUIRE(spec.ok());
  auto env = build_environment(*spec, secrets);
  REQUIRE(env.ok());
  for (const auto& kv : *env) CHECK(kv.find("s3cr3t") == std::string::npos);
  CHECK(std::find(env->begin(), env->end(), "CELLOS_SECRET_BROKER=/run/cellos/secrets.sock") !=
        env->end());
  auto brokered = read_brokered_secrets(*spec, secrets);
  REQUIRE(brokered.ok());
  REQUIRE(brokered->size() == 1);
  CHECK((*brokered)[0].first == "NPM_TOKEN");
  CHECK((*brokered)[0].second == "s3cr3t-value");

  // env delivery: the value in the environment, nothing for a broker.
  auto env_spec = parse_spec(spec_text(body("env")));
  REQUIRE(env_spec.ok());
  auto e = build_environment(*env_spec, secrets);
  REQUIRE(e.ok());
  CHECK(std::find(e->begin(), e->end(), "NPM_TOKEN=s3cr3t-value") != e->end());
  CHECK(read_brokered_secrets(*env_spec, secrets)->empty());
  // A missing secret fails naming the secretRef, in both modes.
  SecretsConfig empty_dir{dir.path() + "/nothing"};
  auto missing = read_brokered_secrets(*spec, empty_dir);
  REQUIRE_FALSE(missing.ok());
  CHECK_THAT(missing.error().message(), Contains("spec.authority.secretRefs[0]"));
}

TEST_CASE("identity tokens are EdDSA JWTs with the documented claims, checked by the JWKS key",
          "[identity]") {
  test::TempDir dir;
  auto kid = sinks::write_key_pair(dir.path(), "identity");
  REQUIRE(kid.ok());
  Config c = config_with("[host]\nid = \"h1\"\n[identity]\nsigning_key = \"" + dir.path() +
                         "/identity.key\"\n");
  auto issuer = IdentityIssuer::load(c);
  REQUIRE(issuer.ok());
  CHECK((*issuer)->issuer() == "cellos-reactor:h1");
  auto t = (*issuer)->mint({"build-42", "aud-1", "run-9", 1700000000, 600});
  REQUIRE(t.ok());
  const std::string& jwt = t->jwt;
  size_t d1 = jwt.find('.'), d2 = jwt.rfind('.');
  REQUIRE(d1 != d2);
  Json header = Json::parse(unbase64url(jwt.substr(0, d1)));
  Json claims = Json::parse(unbase64url(jwt.substr(d1 + 1, d2 - d1 - 1)));
  CHECK(header["alg"] == "EdDSA");
  CHECK(header["typ"] == "JWT");
  CHECK(header["kid"] == *kid);
  CHECK(claims["iss"] == "cellos-reactor:h1");
  CHECK(claims["sub"] == "build-42");
  CHECK(claims["aud"] == "aud-1");
  CHECK(claims["iat"] == 1700000000);
  CHECK(claims["nbf"] == 1700000000);
  CHECK(claims["exp"] == 1700000600);
  CHECK(claims["run_id"] == "run-9");
  CHECK(claims["host_id"] == "h1");
  CHECK(claims["jti"].get<std::string>().size() == 32);
  CHECK(claims["jti"] == t->jti);

  // The JWKS key verifies the signature; a changed claim does not.
  Json jwks = Json::parse((*issuer)->jwks());
  REQUIRE(jwks["keys"].size() == 1);
  const Json& k = jwks["keys"][0];
  CHECK(k["kty"] == "OKP");
  CHECK(k["crv"] == "Ed25519");
  CHECK(k["kid"] == *kid);
  auto pub = sinks::SigningKey::load_public(dir.path() + "/identity.pub");
  REQUIRE(pub.ok());
  CHECK(unbase64url(k["x"].get<std::string>()) == pub->raw_public_key());
  const std::string sig = unbase64url(jwt.substr(d2 + 1));
  CHECK(pub->verify(jwt.substr(0, d2), sig));
  std::string forged = jwt.substr(0, d2);
  forged[d1 + 3] ^= 1;
  CHECK_FALSE(pub->verify(forged, sig));

  // Two tokens never share a jti.
  auto t2 = (*issuer)->mint({"build-42", "aud-1", "run-9", 1700000000, 600});
  REQUIRE(t2.ok());
  CHECK(t2->jti != t->jti);

  Config none = config_with("");
  auto refused = IdentityIssuer::load(none);
  REQUIRE_FALSE(refused.ok());
  CHECK_THAT(refused.error().message(), Contains("identity.signing_key"));
}

TEST_CASE("events: secret access, revocation and identity carry names, never values",
          "[events][secrets][identity]") {
  auto encode = [](sinks::EventData d) {
    return Json::parse(
        sinks::encode_cloudevent(sinks::make_event(std::move(d)), {"/cellos-reactor/h", "id-1"}));
  };
  Json a = encode(sinks::SecretAccessData{"c1", "r1", "NPM_TOKEN", false, "not_declared",
                                          "runtimeBroker", 4242, 200001});
  CHECK(a["type"] == "dev.cellos.events.cell.secrets.v1.access_decision");
  CHECK(a["subject"] == "c1");
  CHECK(a["data"] == Json{{"cellId", "c1"},      {"runId", "r1"},
                          {"secretName", "NPM_TOKEN"}, {"decision", "deny"},
                          {"reasonCode", "not_declared"}, {"delivery", "runtimeBroker"},
                          {"peerPid", 4242},     {"peerUid", 200001}});
  Json r = encode(sinks::SecretsRevokedData{"c1", "r1", "runtimeLeasedBroker", {"A", "B"}, 2, 1,
                                            "command_exited"});
  CHECK(r["type"] == "dev.cellos.events.cell.secrets.v1.revoked");
  CHECK(r["data"]["secretNames"] == Json{"A", "B"});
  CHECK(r["data"]["served"] == 2);
  CHECK(r["data"]["refused"] == 1);
  CHECK(r["data"]["reason"] == "command_exited");
  Json i = encode(sinks::IdentityIssuedData{"c1", "r1", "iss", "c1", "aud", "kid1", "jti1", "env",
                                            100, 700});
  CHECK(i["type"] == "dev.cellos.events.cell.identity.v1.materialized");
  CHECK(i["data"]["audience"] == "aud");
  CHECK(i["data"]["issuedAt"] == 100);
  CHECK(i["data"]["expiresAt"] == 700);
  CHECK(i["data"]["jti"] == "jti1");
  CHECK_FALSE(i["data"].contains("token"));
}

}  // namespace cellos::cells
