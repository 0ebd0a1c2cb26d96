// libFuzzer target: any bytes as fleet.toml. parse_config either returns a Config or throws a
// one-line ConfigError; any other exception, or a crash, is a bug.
#include <cstddef>
#include <cstdint>
#include <string>

#include "cells/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // fleet.toml is read with the same 1 MiB cap.
  if (size > (1 << 20)) return 0;
  std::string text(reinterpret_cast<const char*>(data), size);
  try {
    (void)cellos::cells::parse_config(text, "fuzz.toml");
  } catch (const cellos::cells::ConfigError& e) {
    if (std::string(e.what()).find('\n') != std::string::npos) __builtin_trap();
  }
  return 0;
}
