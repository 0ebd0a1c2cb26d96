// Ed25519 keys (OpenSSL EVP), SHA-256 and the RFC 6962 Merkle tree the event log commits to.
//
// A key id is the first 8 bytes of SHA-256 over the raw 32-byte public key, in hex: short
// enough for every manifest, long enough that "signed by another key" is named, not guessed.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace cellos::sinks {

using Digest = std::array<uint8_t, 32>;

Digest sha256(std::string_view data);
// RFC 6962: leaf = SHA-256(0x00 || bytes).
Digest merkle_leaf(std::string_view line);
// RFC 6962 root over leaf hashes (node = SHA-256(0x01 || left || right); the split is the
// largest power of two below n). The empty tree's root is SHA-256("").
Digest merkle_root(const std::vector<Digest>& leaves);
// The same root by RFC 6962's recursive definition, one node at a time (for tests).
Digest merkle_root_recursive(const std::vector<Digest>& leaves);

std::string to_hex(const uint8_t* p, size_t n);
inline std::string to_hex(const Digest& d) { return to_hex(d.data(), d.size()); }
bool from_hex(std::string_view hex, std::vector<uint8_t>& out);
std::string base64(std::string_view bytes);
bool unbase64(std::string_view text, std::string& out);

// An Ed25519 key pair (or just its public half). Move-only; owns the EVP_PKEY.
class SigningKey {
 public:
  static base::Result<SigningKey> generate();
  // PKCS#8 PEM private key.
  static base::Result<SigningKey> load_private(const std::string& path);
  // SubjectPublicKeyInfo PEM public key.
  static base::Result<SigningKey> load_public(const std::string& path);
  // The public half from its 32 raw bytes (a sealed sub-log records its key this way).
  static base::Result<SigningKey> from_raw_public(std::string_view raw);

  SigningKey(SigningKey&&) noexcept;
  SigningKey& operator=(SigningKey&&) noexcept;
  ~SigningKey();

  bool has_private() const { return has_private_; }
  const std::string& key_id() const { return key_id_; }
  // 64-byte signature; empty if the key has no private half.
  std::string sign(std::string_view message) const;
  bool verify(std::string_view message, std::string_view signature) const;

  std::string private_pem() const;
  std::string public_pem() const;
  // The 32 raw public key bytes (a JWK's "x", before base64url).
  std::string raw_public_key() const;

 private:
  SigningKey() = default;
  base::Result<void> init_id();
  struct Impl;
  std::unique_ptr<Impl> impl_;
  bool has_private_ = false;
  std::string key_id_;
};

// keygen: DIR/NAME.key (PKCS#8 PEM, 0600, created exclusively) and DIR/NAME.pub; NAME is
// "host" for the event log's key, "identity" for workload identity tokens.
base::Result<std::string> write_key_pair(const std::string& dir, const std::string& name = "host");

}  // namespace cellos::sinks
