// spec.identity on real cells: `keygen --name identity` makes the key, the cell gets a JWT (in
// its environment with env delivery, from its broker with runtime delivery), a materialized
// event records its claims but never the token, `jwks` prints the key set, and the `jose`
// library (a relying party's view) accepts the token for its audience and issuer and refuses it
// for another audience and after its expiry. A spec with identity on a host without the key
// runs nothing.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <string>

#include "sinks/signing.h"
#include "tests/support/test_support.h"

namespace cellos::test {
namespace {

using Catch::Contains;
using Json = nlohmann::json;

constexpr const char* kNode = "/usr/bin/node";
constexpr const char* kJose = "/opt/cellos-test/node/node_modules/jose";
constexpr const char* kIssuer = "https://ci.example/cellos";

struct IdentityFleet {
  TempDir keys;
  std::unique_ptr<Fleet> fleet;
  std::string kid;
  IdentityFleet() {
    auto k = run_process({CELLOS_REACTOR_BIN, "keygen", "--out", keys.path(), "--name", "identity"});
    INFO(k.err);
    REQUIRE(k.status == 0);
    REQUIRE(path_exists(keys.path() + "/identity.key"));
    kid = k.out.substr(k.out.find("key id ") + 7, 16);
    fleet = std::make_unique<Fleet>("[identity]\nissuer = \"" + std::string(kIssuer) +
                                    "\"\nsigning_key = \"" + keys.path() + "/identity.key\"\n");
  }
};

Json identity_spec(const std::string& id, const std::string& audience,
                   const std::vector<std::string>& argv) {
  Json s = make_spec(id, argv);
  s["spec"]["identity"] = {{"audience", audience}};
  s["spec"]["lifetime"] = {{"ttlSeconds", 600}};
  return s;
}

std::string token_in(const std::string& out) {
  // A JWS compact token: three base64url parts.
  auto start = out.find("eyJ");
  REQUIRE(start != std::string::npos);
  auto end = out.find_first_of(" \n", start);
  return out.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

Json verify(const std::string& jwks_file, const std::string& token, const std::string& audience,
            long long at = 0) {
  std::vector<std::string> argv{kNode, std::string(CELLOS_SOURCE_DIR) + "/tests/support/jwt_verify.js",
                                kJose, jwks_file, token, audience, kIssuer};
  if (at) argv.push_back(std::to_string(at));
  auto p = run_process(argv);
  INFO(p.err);
  REQUIRE(p.status == 0);
  return Json::parse(p.out);
}

}  // namespace

TEST_CASE("identity: a cell's token verifies with jose against `jwks`, only for its audience "
          "and before its expiry",
          "[identity]") {
  if (::access(kNode, X_OK) != 0)
    CELLOS_SKIP(std::string("no node at ") + kNode + " (scripts/install-deps.sh installs it)");
  if (::access(kJose, R_OK) != 0)
    CELLOS_SKIP(std::string("jose not installed at ") + kJose +
                " (scripts/install-deps.sh installs it; it needs the npm registry)");
  IdentityFleet f;
  auto jwks = run_process({CELLOS_REACTOR_BIN, "jwks", "--config", f.fleet->config_path()});
  INFO(jwks.err);
  REQUIRE(jwks.status == 0);
  Json set = Json::parse(jwks.out);
  REQUIRE(set["keys"].size() == 1);
  CHECK(set["keys"][0]["kid"] == f.kid);
  CHECK(set["keys"][0]["kty"] == "OKP");
  CHECK(set["keys"][0]["crv"] == "Ed25519");
  const std::string jwks_file = f.fleet->dir() + "/jwks.json";
  write_text(jwks_file, jwks.out);

  const std::string id = unique_id("oidc");
  auto r = f.fleet->run(
      identity_spec(id, "aud-deploy", {"/bin/sh", "-c", "echo \"$CELLOS_IDENTITY_TOKEN\""}).dump());
  INFO(r.err);
  REQUIRE(r.status == 0);
  const std::string token = token_in(r.out);

  Json ok = verify(jwks_file, token, "aud-deploy");
  INFO(ok.dump());
  REQUIRE(ok["ok"] == true);
  const Json& claims = ok["payload"];
  CHECK(claims["sub"] == id);
  CHECK(claims["aud"] == "aud-deploy");
  CHECK(claims["iss"] == kIssuer);
  CHECK(ok["header"]["kid"] == f.kid);
  CHECK(ok["header"]["alg"] == "EdDSA");
  // exp at the cell's TTL.
  CHECK(claims["exp"].get<long long>() - claims["iat"].get<long long>() == 600);
  const Json started = r.event("lifecycle.v1.started");
  CHECK(claims["run_id"] == started["runId"]);

  Json issued = r.event("identity.v1.materialized");
  REQUIRE(issued.is_object());
  CHECK(issued["jti"] == claims["jti"]);
  CHECK(issued["audience"] == "aud-deploy");
  CHECK(issued["issuer"] == kIssuer);
  CHECK(issued["keyId"] == f.kid);
  CHECK(issued["delivery"] == "env");
  CHECK(issued["expiresAt"] == claims["exp"]);
  CHECK(read_text(f.fleet->events_path()).find(token) == std::string::npos);

  Json wrong = verify(jwks_file, token, "aud-other");
  CHECK(wrong["ok"] == false);
  CHECK(wrong["code"] == "ERR_JWT_CLAIM_VALIDATION_FAILED");
  CHECK(wrong["claim"] == "aud");
  Json expired = verify(jwks_file, token, "aud-deploy", claims["exp"].get<long long>() + 1);
  CHECK(expired["ok"] == false);
  CHECK(expired["code"] == "ERR_JWT_EXPIRED");
  // A token signed by another key (a second host's) does not verify against this JWKS.
  IdentityFleet other;
  auto r2 = other.fleet->run(
      identity_spec(unique_id("oidc"), "aud-deploy", {"/bin/sh", "-c", "echo \"$CELLOS_IDENTITY_TOKEN\""})
          .dump());
  REQUIRE(r2.status == 0);
  Json foreign = verify(jwks_file, token_in(r2.out), "aud-deploy");
  CHECK(foreign["ok"] == false);
}

TEST_CASE("identity with runtime delivery: the token comes from the broker, not the environment",
          "[identity][broker]") {
  IdentityFleet f;
  const std::string id = unique_id("oidcb");
  Json spec = identity_spec(
      id, "aud-b",
      {"/bin/sh", "-c",
       "env; echo ---; " + f.fleet->probe() +
           " broker-get \"$CELLOS_SECRET_BROKER\" CELLOS_IDENTITY_TOKEN"});
  spec["spec"]["run"]["secretDelivery"] = "runtimeBroker";
  // A run timeout shorter than the TTL: the token expires with it.
  spec["spec"]["run"]["timeoutMs"] = 30500;
  auto r = f.fleet->run(spec.dump());
  INFO(r.err);
  INFO(r.out);
  REQUIRE(r.status == 0);
  const std::string env = r.out.substr(0, r.out.find("---"));
  CHECK(env.find("CELLOS_IDENTITY_TOKEN") == std::string::npos);
  CHECK(env.find("eyJ") == std::string::npos);
  CHECK_THAT(r.out, Contains("CELLOS_IDENTITY_TOKEN = eyJ"));
  const std::string token = token_in(r.out.substr(r.out.find("---")));
  std::string payload = token.substr(token.find('.') + 1);
  payload = payload.substr(0, payload.find('.'));
  for (char& c : payload) c = c == '-' ? '+' : c == '_' ? '/' : c;
  while (payload.size() % 4) payload += '=';
  std::string claims_text;
  REQUIRE(sinks::unbase64(payload, claims_text));
  Json claims = Json::parse(claims_text);
  CHECK(claims["aud"] == "aud-b");
  CHECK(claims["exp"].get<long long>() - claims["iat"].get<long long>() == 31);
  Json issued = r.event("identity.v1.materialized");
  REQUIRE(issued.is_object());
  CHECK(issued["delivery"] == "runtimeBroker");
  Json access = r.event("secrets.v1.access_decision");
  REQUIRE(access.is_object());
  CHECK(access["secretName"] == "CELLOS_IDENTITY_TOKEN");
  CHECK(access["decision"] == "allow");
  CHECK(read_text(f.fleet->events_path()).find(token) == std::string::npos);
}

TEST_CASE("identity: a spec asking for a token on a host without the key runs nothing",
          "[identity]") {
  Fleet fleet;
  const std::string id = unique_id("nokey");
  auto r = fleet.run(identity_spec(id, "aud", {"/bin/true"}).dump());
  CHECK(r.status == 125);
  CHECK_THAT(r.err, Contains("spec.identity") && Contains("[identity] signing_key"));
  CHECK(r.event("lifecycle.v1.started").is_null());
  CHECK(r.event("lifecycle.v1.rejected").is_object());
  // Nor has it a key set to print.
  auto jwks = run_process({CELLOS_REACTOR_BIN, "jwks", "--config", fleet.config_path()});
  CHECK(jwks.status == 1);
  CHECK_THAT(jwks.err, Contains("identity.signing_key"));
  CHECK(jwks.out.empty());
}

TEST_CASE("keygen --name makes a pair of that name and refuses a name that is no file stem",
          "[identity]") {
  TempDir keys;
  auto bad = run_process({CELLOS_REACTOR_BIN, "keygen", "--out", keys.path(), "--name", "../x"});
  CHECK(bad.status != 0);
  CHECK_THAT(bad.err, Contains("--name"));
  CHECK_FALSE(path_exists(keys.path() + "/../x.key"));
  auto ok = run_process({CELLOS_REACTOR_BIN, "keygen", "--out", keys.path(), "--name", "identity"});
  CHECK(ok.status == 0);
  CHECK(path_exists(keys.path() + "/identity.key"));
  CHECK(path_exists(keys.path() + "/identity.pub"));
  CHECK_FALSE(path_exists(keys.path() + "/host.key"));
  // Never over a key a fleet already trusts.
  auto again = run_process({CELLOS_REACTOR_BIN, "keygen", "--out", keys.path(), "--name", "identity"});
  CHECK(again.status != 0);
}

}  // namespace cellos::test
