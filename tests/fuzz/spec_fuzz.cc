// libFuzzer target: any bytes as an ExecutionCell spec. parse_spec must return (accept or one
// bounded, one-line error) and never crash, hang or throw; an accepted spec goes through the
// default policy too.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "base/text.h"
#include "cells/config.h"
#include "cells/spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto spec = cellos::cells::parse_spec(text);
  if (!spec) {
    const std::string msg = spec.error().message();
    // The promise every intake relies on: a rejection is one short line.
    if (msg.find('\n') != std::string::npos || msg.size() > 4 * cellos::base::kMaxMessageBytes)
      __builtin_trap();
    return 0;
  }
  cellos::cells::PolicyConfig policy;
  policy.secret_grants["NPM_TOKEN"] = {"build-*"};
  (void)cellos::cells::check_policy(*spec, policy);
  return 0;
}
