#include "cells/identity.h"

#include <openssl/rand.h>

#include <nlohmann/json.hpp>

namespace cellos::cells {

std::string base64url(std::string_view bytes) {
  std::string s = sinks::base64(bytes);
  for (char& c : s) {
    if (c == '+') c = '-';
    else if (c == '/') c = '_';
  }
  while (!s.empty() && s.back() == '=') s.pop_back();
  return s;
}

base::Result<std::unique_ptr<IdentityIssuer>> IdentityIssuer::load(const Config& config) {
  const IdentityConfig& c = config.identity;
  if (c.signing_key.empty())
    return base::value_error("identity.signing_key", "is not configured");
  auto key = sinks::SigningKey::load_private(c.signing_key);
  if (!key) return std::move(key).error().context("identity.signing_key");
  std::string issuer = c.issuer.empty() ? "cellos-reactor:" + config.host.id : c.issuer;
  return std::unique_ptr<IdentityIssuer>(
      new IdentityIssuer(std::move(issuer), config.host.id, std::move(*key)));
}

base::Result<Token> IdentityIssuer::mint(const TokenRequest& r) const {
  unsigned char rnd[16];
  if (RAND_bytes(rnd, sizeof rnd) != 1) return base::value_error("RAND_bytes", "no randomness for jti");
  Token t;
  t.jti = sinks::to_hex(rnd, sizeof rnd);
  t.issued_at = r.issued_at;
  t.expires_at = r.issued_at + static_cast<int64_t>(r.lifetime_s);
  // Key order fixed (ordered_json): the same claims always make the same bytes.
  nlohmann::ordered_json header = {{"alg", "EdDSA"}, {"typ", "JWT"}, {"kid", key_.key_id()}};
  nlohmann::ordered_json claims = {{"iss", issuer_},       {"sub", r.subject},
                                   {"aud", r.audience},    {"iat", t.issued_at},
                                   {"nbf", t.issued_at},   {"exp", t.expires_at},
                                   {"jti", t.jti},         {"run_id", r.run_id},
                                   {"host_id", host_id_}};
  const std::string input = base64url(header.dump()) + "." + base64url(claims.dump());
  const std::string sig = key_.sign(input);
  if (sig.size() != 64) return base::value_error("identity.signing_key", "signing failed");
  t.jwt = input + "." + base64url(sig);
  return t;
}

std::string IdentityIssuer::jwks() const {
  nlohmann::ordered_json k = {{"kty", "OKP"},
                              {"crv", "Ed25519"},
                              {"x", base64url(key_.raw_public_key())},
                              {"kid", key_.key_id()},
                              {"alg", "EdDSA"},
                              {"use", "sig"}};
  return nlohmann::ordered_json{{"keys", nlohmann::ordered_json::array({k})}}.dump();
}

}  // namespace cellos::cells
