// libFuzzer target: any bytes as an event log, JSONL or packed Cap'n Proto (the first byte picks,
// as `verify` does). verify_bytes (with a key, so DSSE and manifest signatures are reached) and
// cat_bytes must report, never crash or throw.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "sinks/signing.h"
#include "sinks/verify.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::optional<cellos::sinks::SigningKey> key = [] {
    auto k = cellos::sinks::SigningKey::generate();
    return k ? std::optional<cellos::sinks::SigningKey>(std::move(*k)) : std::nullopt;
  }();
  static const std::optional<cellos::sinks::SigningKey> none;
  std::string bytes(reinterpret_cast<const char*>(data), size);
  (void)cellos::sinks::verify_bytes(bytes, none);
  (void)cellos::sinks::verify_bytes(bytes, key);
  (void)cellos::sinks::cat_bytes(std::move(bytes));
  return 0;
}
