// SHA256_Transform (the fallback's block function) is deprecated in OpenSSL 3, still there.
#define OPENSSL_SUPPRESS_DEPRECATED
#include "sinks/sha256.h"

#include <cpuid.h>
#include <immintrin.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cstring>

namespace cellos::sinks {
namespace {

constexpr uint32_t kInit[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                               0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

alignas(16) constexpr uint32_t kRound[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

// `blocks` 64-byte blocks into `h` with the SHA extensions: the message schedule four words
// at a time (sha256msg1/msg2), two rounds per sha256rnds2, the state kept as ABEF / CDGH.
__attribute__((target("sha,sse4.1,ssse3"))) void compress_ni(uint32_t h[8], const uint8_t* p,
                                                              size_t blocks) {
  const __m128i swap = _mm_set_epi64x(0x0c0d0e0f08090a0bll, 0x0405060700010203ll);
  __m128i tmp = _mm_shuffle_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h)), 0xb1);
  __m128i s1 = _mm_shuffle_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + 4)), 0x1b);
  __m128i s0 = _mm_alignr_epi8(tmp, s1, 8);   // ABEF
  s1 = _mm_blend_epi16(s1, tmp, 0xf0);        // CDGH
  for (; blocks; --blocks, p += 64) {
    const __m128i abef = s0, cdgh = s1;
    __m128i m[4];
#pragma GCC unroll 16
    for (int g = 0; g < 16; ++g) {  // rounds 4g .. 4g+3
      if (g < 4)
        m[g] = _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * g)), swap);
      __m128i msg = _mm_add_epi32(m[g % 4], _mm_load_si128(reinterpret_cast<const __m128i*>(kRound + 4 * g)));
      s1 = _mm_sha256rnds2_epu32(s1, s0, msg);
      if (g >= 3 && g <= 14) {  // words 4(g+1) .. 4(g+1)+3
        const __m128i t = _mm_alignr_epi8(m[g % 4], m[(g + 3) % 4], 4);
        m[(g + 1) % 4] = _mm_sha256msg2_epu32(_mm_add_epi32(m[(g + 1) % 4], t), m[g % 4]);
      }
      msg = _mm_shuffle_epi32(msg, 0x0e);
      s0 = _mm_sha256rnds2_epu32(s0, s1, msg);
      if (g >= 1 && g <= 12) m[(g + 3) % 4] = _mm_sha256msg1_epu32(m[(g + 3) % 4], m[g % 4]);
    }
    s0 = _mm_add_epi32(s0, abef);
    s1 = _mm_add_epi32(s1, cdgh);
  }
  tmp = _mm_shuffle_epi32(s0, 0x1b);       // FEBA
  s1 = _mm_shuffle_epi32(s1, 0xb1);        // DCHG
  s0 = _mm_blend_epi16(tmp, s1, 0xf0);     // DCBA
  s1 = _mm_alignr_epi8(s1, tmp, 8);        // HGFE
  _mm_storeu_si128(reinterpret_cast<__m128i*>(h), s0);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(h + 4), s1);
}

// OpenSSL's block function, through the (deprecated, still exported) SHA256_Transform.
void compress_openssl(uint32_t h[8], const uint8_t* p, size_t blocks) {
  SHA256_CTX ctx;
  std::memcpy(ctx.h, h, sizeof ctx.h);
  for (; blocks; --blocks, p += 64) SHA256_Transform(&ctx, p);
  std::memcpy(h, ctx.h, sizeof ctx.h);
}

bool cpu_has_sha_ni() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
  const bool ssse3 = c & (1u << 9), sse41 = c & (1u << 19);
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  return ssse3 && sse41 && (b & (1u << 29));  // CPUID.7.0:EBX.SHA
}

using Compress = void (*)(uint32_t*, const uint8_t*, size_t);
// Chosen on first use (not by a static initializer, which another one could run before).
Compress chosen = nullptr;
bool force_portable = false;

void compress(uint32_t h[8], const uint8_t* p, size_t blocks) {
  if (!chosen) chosen = !force_portable && cpu_has_sha_ni() ? compress_ni : compress_openssl;
  chosen(h, p, blocks);
}

Digest finish(uint32_t h[8]) {
  Digest d;
  for (int i = 0; i < 8; ++i) {
    d[4 * i] = static_cast<uint8_t>(h[i] >> 24);
    d[4 * i + 1] = static_cast<uint8_t>(h[i] >> 16);
    d[4 * i + 2] = static_cast<uint8_t>(h[i] >> 8);
    d[4 * i + 3] = static_cast<uint8_t>(h[i]);
  }
  return d;
}

}  // namespace

namespace {

// SHA-256 of [prefix byte] || data: whole blocks hashed where they lie, the tail (and the
// prefix's first block) through a stack block.
Digest hash(const uint8_t* prefix, const uint8_t* p, size_t len) {
  uint32_t h[8];
  std::memcpy(h, kInit, sizeof h);
  const uint64_t bits = (static_cast<uint64_t>(len) + (prefix ? 1 : 0)) * 8;
  alignas(16) uint8_t block[128];
  size_t fill = 0;  // bytes waiting in block
  if (prefix) {
    block[0] = *prefix;
    // With a prefix every block of the data is shifted by one: each goes through `block`.
    for (fill = 1; fill + len >= 64;) {
      const size_t take = 64 - fill;
      std::memcpy(block + fill, p, take);
      compress(h, block, 1);
      p += take;
      len -= take;
      fill = 0;
    }
  } else if (len >= 64) {
    compress(h, p, len / 64);
    p += len / 64 * 64;
    len %= 64;
  }
  // Under 64 bytes left, after `fill` bytes already in block: the tail, 0x80, zeros, length.
  std::memcpy(block + fill, p, len);
  fill += len;
  block[fill++] = 0x80;
  const size_t total = fill + 8 <= 64 ? 64 : 128;
  std::memset(block + fill, 0, total - fill - 8);
  for (int i = 0; i < 8; ++i) block[total - 1 - i] = static_cast<uint8_t>(bits >> (8 * i));
  compress(h, block, total / 64);
  return finish(h);
}

}  // namespace

Digest sha256_of(const void* data, size_t len) {
  return hash(nullptr, static_cast<const uint8_t*>(data), len);
}

Digest sha256_prefixed(uint8_t prefix, const void* data, size_t len) {
  return hash(&prefix, static_cast<const uint8_t*>(data), len);
}

Digest sha256_node(const Digest& left, const Digest& right) {
  // 0x01 || left || right is 65 bytes: the first block and one byte of the second, which
  // then holds the padding and the length (520 bits).
  alignas(16) uint8_t block[128] = {};
  block[0] = 0x01;
  std::memcpy(block + 1, left.data(), 32);
  std::memcpy(block + 33, right.data(), 32);
  block[65] = 0x80;
  block[126] = 520 >> 8;
  block[127] = 520 & 0xff;
  uint32_t h[8];
  std::memcpy(h, kInit, sizeof h);
  compress(h, block, 2);
  return finish(h);
}

const char* sha256_engine() {
  if (!chosen) chosen = !force_portable && cpu_has_sha_ni() ? compress_ni : compress_openssl;
  return chosen == compress_ni ? "sha-ni" : "openssl";
}

void sha256_force_portable(bool on) {
  force_portable = on;
  chosen = nullptr;
}

}  // namespace cellos::sinks
