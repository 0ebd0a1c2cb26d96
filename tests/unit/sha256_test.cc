// sinks/sha256.h against OpenSSL's EVP one-shot, on both of its engines (SHA-NI where the CPU
// has it, OpenSSL's block function everywhere): every length across the block and padding
// boundaries, with and without the leaf prefix, and the Merkle node.
#include <openssl/evp.h>

#include <catch2/catch.hpp>
#include <random>
#include <string>

#include "sinks/sha256.h"
#include "sinks/signing.h"

using namespace cellos;

namespace {

sinks::Digest reference(const std::string& bytes) {
  sinks::Digest d{};
  unsigned int n = 0;
  REQUIRE(EVP_Digest(bytes.data(), bytes.size(), d.data(), &n, EVP_sha256(), nullptr) == 1);
  REQUIRE(n == 32);
  return d;
}

struct Engine {
  explicit Engine(bool portable) { sinks::sha256_force_portable(portable); }
  ~Engine() { sinks::sha256_force_portable(false); }
};

}  // namespace

TEST_CASE("sha256: the same digests as OpenSSL on every length up to 300 bytes, on both engines",
          "[sha256]") {
  const bool portable = GENERATE(false, true);
  Engine engine(portable);
  INFO("engine " << sinks::sha256_engine());
  CHECK(sinks::to_hex(sinks::sha256("abc")) ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  std::mt19937 rng(19);
  std::string data;
  for (size_t len = 0; len <= 300; ++len) {
    INFO("length " << len);
    CHECK(sinks::sha256_of(data.data(), data.size()) == reference(data));
    CHECK(sinks::sha256_prefixed(0x00, data.data(), data.size()) == reference('\0' + data));
    CHECK(sinks::merkle_leaf(data) == reference('\0' + data));
    data += static_cast<char>(rng());
  }
  sinks::Digest l{}, r{};
  for (auto& b : l) b = static_cast<uint8_t>(rng());
  for (auto& b : r) b = static_cast<uint8_t>(rng());
  const std::string node = std::string(1, '\x01') +
                           std::string(reinterpret_cast<const char*>(l.data()), 32) +
                           std::string(reinterpret_cast<const char*>(r.data()), 32);
  CHECK(sinks::sha256_node(l, r) == reference(node));
  CHECK(sinks::merkle_root({l, r}) == reference(node));
}

TEST_CASE("sha256: the portable engine can be forced, and SHA-NI is named where it runs",
          "[sha256]") {
  // Which engine runs decides the event log's speed, not its bytes: printed for the record.
  std::printf("sha256 engine here: %s\n", sinks::sha256_engine());
  sinks::sha256_force_portable(true);
  CHECK(std::string(sinks::sha256_engine()) == "openssl");
  sinks::sha256_force_portable(false);
}
