// Workload identity: a short-lived JWT the reactor mints for a cell whose spec declares
// spec.identity {audience}, the way CI providers hand jobs an OIDC token. A relying party that
// trusts this host's issuer checks it against `cellos-reactor jwks`.
//
// The token (JWS compact, alg EdDSA, Ed25519, kid = the key id):
//   iss  [identity] issuer (default "cellos-reactor:<host.id>")
//   sub  the cell id            aud  spec.identity.audience
//   iat  the cell's start       nbf  the same
//   exp  iat + the cell's deadline (lifetime.ttlSeconds, or run.timeoutMs when shorter)
//   jti  128 random bits, hex  run_id, host_id: the run and host that ran it
// Delivered like the spec's secrets: CELLOS_IDENTITY_TOKEN in the environment with
// secretDelivery env, otherwise served by the broker under that name (secret_broker.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "base/result.h"
#include "cells/config.h"
#include "sinks/signing.h"

namespace cellos::cells {

struct TokenRequest {
  std::string subject, audience, run_id;
  int64_t issued_at = 0;      // seconds since the epoch
  uint64_t lifetime_s = 0;    // exp = issued_at + lifetime_s
};

struct Token {
  std::string jwt;
  std::string jti;
  int64_t issued_at = 0, expires_at = 0;
};

class IdentityIssuer {
 public:
  // Loads [identity] signing_key; fails naming identity.signing_key.
  static base::Result<std::unique_ptr<IdentityIssuer>> load(const Config& config);

  const std::string& issuer() const { return issuer_; }
  const std::string& key_id() const { return key_.key_id(); }
  base::Result<Token> mint(const TokenRequest& r) const;
  // {"keys":[{"kty":"OKP","crv":"Ed25519","x":...,"kid":...,"alg":"EdDSA","use":"sig"}]}
  std::string jwks() const;

 private:
  IdentityIssuer(std::string issuer, std::string host_id, sinks::SigningKey key)
      : issuer_(std::move(issuer)), host_id_(std::move(host_id)), key_(std::move(key)) {}
  std::string issuer_, host_id_;
  sinks::SigningKey key_;
};

// RFC 4648 §5, without padding (JWS).
std::string base64url(std::string_view bytes);

}  // namespace cellos::cells
