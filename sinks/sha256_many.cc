// 16 SHA-256 computations side by side in AVX-512 registers (lane l of every vector belongs to
// message l). Why not more SHA-NI: OpenSSL already uses it at the rate the CPU gives (two
// streams interleaved by hand gained nothing, see bench/README.md); sixteen lanes of plain
// integer work on the vector units take about half the time per event (bench/README.md,
// events, 2026-12-07). The project builds for plain x86-64, so the vector code is compiled for
// AVX-512 by function attribute and only called after the CPU (and the kernel's saving of its
// registers) said it is there.
#define OPENSSL_SUPPRESS_DEPRECATED
#include "sinks/sha256_many.h"

#include <openssl/sha.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#if defined(__x86_64__)
// GCC 12 at -O3 reports the intrinsics' own _mm512_undefined_epi32() pass-through operands as
// "maybe uninitialized" (a false positive inside <immintrin.h>, fixed in later GCC).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#define CELLOS_SHA_X16 1
#endif

namespace cellos::sinks {

void sha256_many_scalar(const std::string_view* msgs, size_t n, Digest* out) {
  for (size_t i = 0; i < n; ++i) {
    SHA256_CTX ctx;
    SHA256_Init(&ctx);
    SHA256_Update(&ctx, msgs[i].data(), msgs[i].size());
    SHA256_Final(out[i].data(), &ctx);
  }
}

#if CELLOS_SHA_X16
namespace {

constexpr uint32_t kK[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
constexpr uint32_t kH0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                             0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

// One message as blocks: its whole 64-byte blocks are read where they are; the last one or two
// (the rest of the message, 0x80, zeros, the length in bits, big-endian) from a padded copy.
struct Lane {
  const uint8_t* data = nullptr;
  size_t full = 0;    // whole blocks of the message itself
  size_t blocks = 0;  // all blocks, padding included (0: an unused lane)
  alignas(64) uint8_t tail[128];

  void set(std::string_view m) {
    data = reinterpret_cast<const uint8_t*>(m.data());
    full = m.size() / 64;
    blocks = (m.size() + 9 + 63) / 64;
    const size_t rem = m.size() % 64, tail_len = (blocks - full) * 64;
    std::memset(tail, 0, tail_len);
    std::memcpy(tail, m.data() + full * 64, rem);
    tail[rem] = 0x80;
    const uint64_t bits = static_cast<uint64_t>(m.size()) * 8;
    for (size_t k = 0; k < 8; ++k) tail[tail_len - 1 - k] = static_cast<uint8_t>(bits >> (8 * k));
  }
  const uint8_t* block(size_t b) const { return b < full ? data + b * 64 : tail + (b - full) * 64; }
};

#define CELLOS_AVX512 __attribute__((target("avx512f,avx512bw")))

template <int N>
CELLOS_AVX512 inline __m512i ror(__m512i x) {
  return _mm512_ror_epi32(x, N);
}
// ternarylogic immediates: 0x96 = a^b^c, 0xca = a ? b : c (Ch), 0xe8 = majority (Maj).
CELLOS_AVX512 inline __m512i xor3(__m512i a, __m512i b, __m512i c) {
  return _mm512_ternarylogic_epi32(a, b, c, 0x96);
}
CELLOS_AVX512 inline __m512i big_sigma0(__m512i a) { return xor3(ror<2>(a), ror<13>(a), ror<22>(a)); }
CELLOS_AVX512 inline __m512i big_sigma1(__m512i e) { return xor3(ror<6>(e), ror<11>(e), ror<25>(e)); }
CELLOS_AVX512 inline __m512i small_sigma0(__m512i w) {
  return xor3(ror<7>(w), ror<18>(w), _mm512_srli_epi32(w, 3));
}
CELLOS_AVX512 inline __m512i small_sigma1(__m512i w) {
  return xor3(ror<17>(w), ror<19>(w), _mm512_srli_epi32(w, 10));
}

// Up to 16 messages (lanes[l].blocks == 0 for the unused ones) into out[0, count).
CELLOS_AVX512 void hash16(const Lane* lanes, size_t count, Digest* out) {
  size_t max_blocks = 0;
  for (size_t l = 0; l < 16; ++l) max_blocks = std::max(max_blocks, lanes[l].blocks);
  __m512i s[8];
  for (int i = 0; i < 8; ++i) s[i] = _mm512_set1_epi32(static_cast<int>(kH0[i]));
  // Word t of all 16 lanes' current blocks is two gathers from the lanes' block addresses
  // (a 16x16 transpose of 32-bit words); an ended lane points at a block of zeros.
  alignas(64) static const uint8_t kZero[64] = {};
  // Each 32-bit word is big-endian in the message.
  const __m512i bswap = _mm512_set4_epi32(0x0c0d0e0f, 0x08090a0b, 0x04050607, 0x00010203);
  for (size_t b = 0; b < max_blocks; ++b) {
    __mmask16 active = 0;
    alignas(64) const uint8_t* ptr[16];
    for (size_t l = 0; l < 16; ++l) {
      if (b >= lanes[l].blocks) {
        ptr[l] = kZero;
        continue;
      }
      active = static_cast<__mmask16>(active | (1u << l));
      ptr[l] = lanes[l].block(b);
    }
    const __m512i lo = _mm512_load_si512(ptr), hi = _mm512_load_si512(ptr + 8);
    __m512i w[16];
    for (int t = 0; t < 16; ++t) {
      const __m512i v = _mm512_inserti64x4(
          _mm512_castsi256_si512(_mm512_i64gather_epi32(_mm512_add_epi64(lo, _mm512_set1_epi64(4 * t)), nullptr, 1)),
          _mm512_i64gather_epi32(_mm512_add_epi64(hi, _mm512_set1_epi64(4 * t)), nullptr, 1), 1);
      w[t] = _mm512_shuffle_epi8(v, bswap);
    }
    __m512i a = s[0], bb = s[1], c = s[2], d = s[3], e = s[4], f = s[5], g = s[6], h = s[7];
#pragma GCC unroll 64
    for (int t = 0; t < 64; ++t) {
      if (t >= 16)
        w[t & 15] = _mm512_add_epi32(
            _mm512_add_epi32(small_sigma1(w[(t - 2) & 15]), w[(t - 7) & 15]),
            _mm512_add_epi32(small_sigma0(w[(t - 15) & 15]), w[t & 15]));
      // Summed so the chain from e to the next e is short: h + K + W does not depend on this
      // round's e, Ch is one step from it, Sigma1 two.
      const __m512i x = _mm512_add_epi32(
          _mm512_add_epi32(h, _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(kK[t])), w[t & 15])),
          _mm512_ternarylogic_epi32(e, f, g, 0xca));
      const __m512i s1 = big_sigma1(e);
      const __m512i t1 = _mm512_add_epi32(x, s1);
      const __m512i t2 =
          _mm512_add_epi32(big_sigma0(a), _mm512_ternarylogic_epi32(a, bb, c, 0xe8));
      const __m512i e_next = _mm512_add_epi32(_mm512_add_epi32(d, x), s1);
      h = g;
      g = f;
      f = e;
      e = e_next;
      d = c;
      c = bb;
      bb = a;
      a = _mm512_add_epi32(t1, t2);
    }
    // Lanes whose message has ended keep their state.
    s[0] = _mm512_mask_add_epi32(s[0], active, s[0], a);
    s[1] = _mm512_mask_add_epi32(s[1], active, s[1], bb);
    s[2] = _mm512_mask_add_epi32(s[2], active, s[2], c);
    s[3] = _mm512_mask_add_epi32(s[3], active, s[3], d);
    s[4] = _mm512_mask_add_epi32(s[4], active, s[4], e);
    s[5] = _mm512_mask_add_epi32(s[5], active, s[5], f);
    s[6] = _mm512_mask_add_epi32(s[6], active, s[6], g);
    s[7] = _mm512_mask_add_epi32(s[7], active, s[7], h);
  }
  alignas(64) uint32_t words[8][16];
  for (int i = 0; i < 8; ++i) _mm512_store_si512(words[i], _mm512_shuffle_epi8(s[i], bswap));
  for (size_t l = 0; l < count; ++l)
    for (int i = 0; i < 8; ++i) std::memcpy(out[l].data() + 4 * i, &words[i][l], 4);
}

bool detect() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
}

// Messages longer than long_limit are hashed one by one (OpenSSL): a group of lanes runs for
// as many blocks as its longest message, so one long line among short ones would cost sixteen
// times its own hash.
void many_x16(const std::string_view* msgs, size_t n, Digest* out, size_t long_limit) {
  Lane lanes[16];
  size_t index[16];
  Digest digests[16];
  size_t k = 0;
  auto run = [&] {
    for (size_t l = k; l < 16; ++l) lanes[l].blocks = 0;
    hash16(lanes, k, digests);
    for (size_t l = 0; l < k; ++l) out[index[l]] = digests[l];
    k = 0;
  };
  for (size_t i = 0; i < n; ++i) {
    if (msgs[i].size() > long_limit) {
      sha256_many_scalar(msgs + i, 1, out + i);
      continue;
    }
    lanes[k].set(msgs[i]);
    index[k++] = i;
    if (k == 16) run();
  }
  if (k) run();
}

}  // namespace

bool sha256_many_is_simd() {
  static const bool yes = detect();
  return yes;
}

void sha256_many_simd(const std::string_view* msgs, size_t n, Digest* out) {
  many_x16(msgs, n, out, SIZE_MAX);
}

void sha256_many(const std::string_view* msgs, size_t n, Digest* out) {
  // A lone message gains nothing from 16 lanes.
  if (n > 1 && sha256_many_is_simd())
    many_x16(msgs, n, out, kLongMessage);
  else
    sha256_many_scalar(msgs, n, out);
}

#else
bool sha256_many_is_simd() { return false; }
void sha256_many_simd(const std::string_view* msgs, size_t n, Digest* out) {
  sha256_many_scalar(msgs, n, out);
}
void sha256_many(const std::string_view* msgs, size_t n, Digest* out) {
  sha256_many_scalar(msgs, n, out);
}
#endif

}  // namespace cellos::sinks
