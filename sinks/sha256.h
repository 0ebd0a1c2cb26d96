// SHA-256 for the event log's hashes (a Merkle leaf per line, a node per pair, the chain):
// x86's SHA extensions (SHA-NI) called directly when the CPU has them, OpenSSL's block
// function otherwise. The same digests as any SHA-256 (tests/unit/sha256_test.cc checks them
// against OpenSSL's one-shot), without what OpenSSL's SHA256_Init/Update/Final add around the
// compression: the context's bookkeeping, a buffered copy per call and its cleanse. A node of
// the tree is two compressions, and the calls around them cost about as much as the
// compressions did (perf of bench/event_bench: the tree took 10% of the writer's time).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace cellos::sinks {

using Digest = std::array<uint8_t, 32>;

Digest sha256_of(const void* data, size_t len);
// SHA-256 of one byte, then data (RFC 6962's leaf: prefix 0x00).
Digest sha256_prefixed(uint8_t prefix, const void* data, size_t len);
// RFC 6962 node: SHA-256(0x01 || left || right), two compressions.
Digest sha256_node(const Digest& left, const Digest& right);

// Which compression runs here: "sha-ni" or "openssl".
const char* sha256_engine();
// Tests only: use OpenSSL's block function even where SHA-NI is there (true), or go back to
// the CPU's best (false).
void sha256_force_portable(bool on);

}  // namespace cellos::sinks
