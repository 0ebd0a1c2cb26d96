// SHA-256 of many independent messages at once, for the event log's Merkle tree: the leaves of a
// batch (one per line) and each level of its nodes are independent hashes, and hashing was two
// thirds of the writer's CPU per event (bench/event_bench, perf). On a CPU with AVX-512 the
// messages go 16 at a time, one per 32-bit lane of a vector register; elsewhere each is hashed
// with OpenSSL's SHA256_*, as before. The digests are SHA-256's either way (FIPS 180-4); the
// unit test checks them against OpenSSL for every length around the block boundaries.
#pragma once

#include <cstddef>
#include <string_view>

#include "sinks/signing.h"

namespace cellos::sinks {

// out[i] = SHA-256(msgs[i]) for i < n. Messages over kLongMessage bytes are hashed one by one.
inline constexpr size_t kLongMessage = 4096;
void sha256_many(const std::string_view* msgs, size_t n, Digest* out);

// Whether sha256_many takes the 16-lane path on this CPU (AVX-512 F and BW).
bool sha256_many_is_simd();

// For tests: the same, every message through the 16-lane path (the caller checked is_simd),
// or every message through OpenSSL.
void sha256_many_simd(const std::string_view* msgs, size_t n, Digest* out);
void sha256_many_scalar(const std::string_view* msgs, size_t n, Digest* out);

}  // namespace cellos::sinks
