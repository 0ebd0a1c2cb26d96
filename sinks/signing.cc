// The leaf and node hashes use the low-level SHA256_* calls, deprecated in OpenSSL 3 but still
// there: EVP_DigestInit_ex fetches the implementation from the provider under a lock on every
// call, which was a third of the per-event cost (perf, bench/event_bench).
#define OPENSSL_SUPPRESS_DEPRECATED
#include "sinks/signing.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "base/fd.h"
#include "sinks/sha256_many.h"

namespace cellos::sinks {

struct SigningKey::Impl {
  EVP_PKEY* pkey = nullptr;
  // Initialised once and reused for every signature, as `openssl speed` does: Ed25519 is
  // one-shot (EVP_DigestSign), and EVP_DigestSignInit per call (provider fetch, key import)
  // cost a third of the signing rate.
  EVP_MD_CTX* sign_ctx = nullptr;
  EVP_MD_CTX* ctx = nullptr;  // verification
  ~Impl() {
    EVP_MD_CTX_free(sign_ctx);
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(pkey);
  }
};

Digest sha256(std::string_view data) {
  // Not the one-shot SHA256(): in OpenSSL 3 it is EVP_Q_digest, a provider fetch (locks, a
  // hash table lookup, an allocation) per call.
  SHA256_CTX ctx;
  Digest d{};
  SHA256_Init(&ctx);
  SHA256_Update(&ctx, data.data(), data.size());
  SHA256_Final(d.data(), &ctx);
  return d;
}

namespace {

Digest hash_prefixed(uint8_t prefix, const void* a, size_t an, const void* b, size_t bn) {
  SHA256_CTX ctx;
  Digest d{};
  SHA256_Init(&ctx);
  SHA256_Update(&ctx, &prefix, 1);
  SHA256_Update(&ctx, a, an);
  if (bn) SHA256_Update(&ctx, b, bn);
  SHA256_Final(d.data(), &ctx);
  return d;
}

Digest merkle_range(const Digest* leaves, size_t n) {
  if (n == 1) return leaves[0];
  size_t k = 1;
  while (k * 2 < n) k *= 2;
  Digest l = merkle_range(leaves, k);
  Digest r = merkle_range(leaves + k, n - k);
  return hash_prefixed(0x01, l.data(), l.size(), r.data(), r.size());
}

base::Error ssl_error(const std::string& call, const std::string& object) {
  return base::value_error(call + "(" + object + ")", "OpenSSL failure");
}

}  // namespace

Digest merkle_leaf(std::string_view line) {
  return hash_prefixed(0x00, line.data(), line.size(), nullptr, 0);
}

Digest merkle_root(const std::vector<Digest>& leaves) {
  if (leaves.empty()) return sha256("");
  if (leaves.size() < 4 || !sha256_many_is_simd()) return merkle_range(leaves.data(), leaves.size());
  // Level by level, so each level's nodes are hashed together (sha256_many: 16 at a time).
  // Pairing from the left and carrying an odd last node up unchanged builds the same tree as
  // RFC 6962's split at the largest power of two below n (its left part is a perfect tree),
  // which tests/unit/sha256_many_test.cc checks against merkle_range for every n to 1100.
  std::vector<Digest> level = leaves, next;
  std::vector<std::array<uint8_t, 65>> msgs;
  std::vector<std::string_view> views;
  while (level.size() > 1) {
    const size_t pairs = level.size() / 2;
    msgs.resize(pairs);
    views.resize(pairs);
    for (size_t i = 0; i < pairs; ++i) {
      msgs[i][0] = 0x01;
      std::memcpy(msgs[i].data() + 1, level[2 * i].data(), 32);
      std::memcpy(msgs[i].data() + 33, level[2 * i + 1].data(), 32);
      views[i] = std::string_view(reinterpret_cast<const char*>(msgs[i].data()), 65);
    }
    next.resize(pairs);
    sha256_many(views.data(), pairs, next.data());
    if (level.size() % 2) next.push_back(level.back());
    level.swap(next);
  }
  return level[0];
}

Digest merkle_root_recursive(const std::vector<Digest>& leaves) {
  if (leaves.empty()) return sha256("");
  return merkle_range(leaves.data(), leaves.size());
}

std::string to_hex(const uint8_t* p, size_t n) {
  static const char* kHex = "0123456789abcdef";
  std::string s(n * 2, '0');
  for (size_t i = 0; i < n; ++i) {
    s[2 * i] = kHex[p[i] >> 4];
    s[2 * i + 1] = kHex[p[i] & 15];
  }
  return s;
}

bool from_hex(std::string_view hex, std::vector<uint8_t>& out) {
  if (hex.size() % 2) return false;
  out.clear();
  auto nib = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  for (size_t i = 0; i < hex.size(); i += 2) {
    int h = nib(hex[i]), l = nib(hex[i + 1]);
    if (h < 0 || l < 0) return false;
    out.push_back(static_cast<uint8_t>(h * 16 + l));
  }
  return true;
}

std::string base64(std::string_view bytes) {
  static const char* kB = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  auto u = [&](size_t k) { return static_cast<uint32_t>(static_cast<uint8_t>(bytes[k])); };
  for (; i + 3 <= bytes.size(); i += 3) {
    uint32_t v = u(i) << 16 | u(i + 1) << 8 | u(i + 2);
    out += kB[v >> 18];
    out += kB[(v >> 12) & 63];
    out += kB[(v >> 6) & 63];
    out += kB[v & 63];
  }
  if (bytes.size() - i == 1) {
    uint32_t v = u(i) << 16;
    out += kB[v >> 18];
    out += kB[(v >> 12) & 63];
    out += "==";
  } else if (bytes.size() - i == 2) {
    uint32_t v = u(i) << 16 | u(i + 1) << 8;
    out += kB[v >> 18];
    out += kB[(v >> 12) & 63];
    out += kB[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

bool unbase64(std::string_view text, std::string& out) {
  if (text.size() % 4) return false;
  out.clear();
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  for (size_t i = 0; i < text.size(); i += 4) {
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; ++k) {
      char c = text[i + k];
      if (c == '=' && i + 4 == text.size() && k >= 2) {
        v[k] = 0;
        ++pad;
      } else {
        if (pad) return false;
        v[k] = val(c);
        if (v[k] < 0) return false;
      }
    }
    uint32_t w = static_cast<uint32_t>(v[0] << 18 | v[1] << 12 | v[2] << 6 | v[3]);
    out += static_cast<char>(w >> 16);
    if (pad < 2) out += static_cast<char>((w >> 8) & 255);
    if (pad < 1) out += static_cast<char>(w & 255);
  }
  return true;
}

SigningKey::SigningKey(SigningKey&&) noexcept = default;
SigningKey& SigningKey::operator=(SigningKey&&) noexcept = default;
SigningKey::~SigningKey() = default;

std::string SigningKey::raw_public_key() const {
  uint8_t raw[32];
  size_t len = sizeof raw;
  if (!impl_ || EVP_PKEY_get_raw_public_key(impl_->pkey, raw, &len) != 1 || len != 32) return {};
  return std::string(reinterpret_cast<const char*>(raw), len);
}

base::Result<void> SigningKey::init_id() {
  uint8_t raw[32];
  size_t len = sizeof raw;
  if (EVP_PKEY_get_raw_public_key(impl_->pkey, raw, &len) != 1 || len != 32)
    return ssl_error("EVP_PKEY_get_raw_public_key", "ed25519 key");
  Digest d = sha256(std::string_view(reinterpret_cast<const char*>(raw), len));
  key_id_ = to_hex(d.data(), 8);
  impl_->ctx = EVP_MD_CTX_new();
  if (has_private_) {
    impl_->sign_ctx = EVP_MD_CTX_new();
    if (!impl_->sign_ctx ||
        EVP_DigestSignInit(impl_->sign_ctx, nullptr, nullptr, nullptr, impl_->pkey) != 1)
      return ssl_error("EVP_DigestSignInit", "ed25519 key");
  }
  return base::ok();
}

base::Result<SigningKey> SigningKey::generate() {
  SigningKey k;
  k.impl_ = std::make_unique<Impl>();
  EVP_PKEY_CTX* pctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nullptr);
  bool ok = pctx && EVP_PKEY_keygen_init(pctx) == 1 && EVP_PKEY_keygen(pctx, &k.impl_->pkey) == 1;
  EVP_PKEY_CTX_free(pctx);
  if (!ok) return ssl_error("EVP_PKEY_keygen", "ed25519");
  k.has_private_ = true;
  CELLOS_TRY(k.init_id());
  return k;
}

namespace {
base::Result<EVP_PKEY*> read_pem(const std::string& path, bool priv) {
  // A regular file only: a FIFO at events.signing_key hung start-up in open(2), deaf to SIGTERM.
  auto text = base::read_regular_file(path, 64 << 10);
  if (!text) return std::move(text).error().context(priv ? "signing key" : "public key");
  BIO* bio = BIO_new_mem_buf(text->data(), static_cast<int>(text->size()));
  EVP_PKEY* p = priv ? PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr)
                     : PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (!p)
    return base::value_error(priv ? "signing key \"" + path + "\"" : "public key \"" + path + "\"",
                             priv ? "not a PKCS#8 PEM private key" : "not a PEM public key");
  if (EVP_PKEY_get_id(p) != EVP_PKEY_ED25519) {
    EVP_PKEY_free(p);
    return base::value_error("key \"" + path + "\"", "not an Ed25519 key");
  }
  return p;
}
}  // namespace

base::Result<SigningKey> SigningKey::load_private(const std::string& path) {
  auto p = read_pem(path, true);
  if (!p) return std::move(p).error();
  SigningKey k;
  k.impl_ = std::make_unique<Impl>();
  k.impl_->pkey = *p;
  k.has_private_ = true;
  CELLOS_TRY(k.init_id());
  return k;
}

base::Result<SigningKey> SigningKey::load_public(const std::string& path) {
  auto p = read_pem(path, false);
  if (!p) return std::move(p).error();
  SigningKey k;
  k.impl_ = std::make_unique<Impl>();
  k.impl_->pkey = *p;
  CELLOS_TRY(k.init_id());
  return k;
}

base::Result<SigningKey> SigningKey::from_raw_public(std::string_view raw) {
  if (raw.size() != 32) return base::value_error("ed25519 public key", "not 32 bytes");
  EVP_PKEY* pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr,
                                               reinterpret_cast<const unsigned char*>(raw.data()),
                                               raw.size());
  if (!pkey) return ssl_error("EVP_PKEY_new_raw_public_key", "ed25519 public key");
  SigningKey k;
  k.impl_ = std::make_unique<Impl>();
  k.impl_->pkey = pkey;
  CELLOS_TRY(k.init_id());
  return k;
}

std::string SigningKey::sign(std::string_view message) const {
  if (!has_private_) return {};
  unsigned char sig[64];
  size_t len = sizeof sig;
  if (EVP_DigestSign(impl_->sign_ctx, sig, &len,
                     reinterpret_cast<const unsigned char*>(message.data()), message.size()) != 1)
    return {};
  return std::string(reinterpret_cast<const char*>(sig), len);
}

bool SigningKey::verify(std::string_view message, std::string_view signature) const {
  if (signature.size() != 64) return false;
  return EVP_DigestVerifyInit(impl_->ctx, nullptr, nullptr, nullptr, impl_->pkey) == 1 &&
         EVP_DigestVerify(impl_->ctx, reinterpret_cast<const unsigned char*>(signature.data()),
                          signature.size(),
                          reinterpret_cast<const unsigned char*>(message.data()),
                          message.size()) == 1;
}

namespace {
std::string bio_string(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string s(data, static_cast<size_t>(n));
  BIO_free(bio);
  return s;
}
}  // namespace

std::string SigningKey::private_pem() const {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, impl_->pkey, nullptr, nullptr, 0, nullptr, nullptr);
  return bio_string(bio);
}

std::string SigningKey::public_pem() const {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PUBKEY(bio, impl_->pkey);
  return bio_string(bio);
}

base::Result<std::string> write_key_pair(const std::string& dir, const std::string& name) {
  CELLOS_TRY(base::make_dirs(dir, 0700));
  auto key = SigningKey::generate();
  if (!key) return std::move(key).error();
  // O_EXCL: keygen never overwrites a key a fleet already trusts.
  auto write = [](const std::string& path, const std::string& text, unsigned mode) -> base::Result<void> {
    auto fd = base::open_at(AT_FDCWD, path, O_WRONLY | O_CREAT | O_EXCL, mode);
    if (!fd) return std::move(fd).error();
    if (::fchmod(fd->get(), mode) != 0) return base::sys_error("fchmod", "\"" + path + "\"");
    if (::write(fd->get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
      return base::sys_error("write", "\"" + path + "\"");
    return base::ok();
  };
  CELLOS_TRY(write(dir + "/" + name + ".key", key->private_pem(), 0600));
  CELLOS_TRY(write(dir + "/" + name + ".pub", key->public_pem(), 0644));
  return key->key_id();
}

}  // namespace cellos::sinks
