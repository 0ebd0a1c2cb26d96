// Bounded, strict JSON parsing for untrusted documents (specs, event-log lines).
//
// One pass, linear in the input: the text is refused when it is larger than `max_bytes`, when
// objects and arrays nest deeper than `max_depth`, or (by default) when an object repeats a key.
// Each of those is found while the SAX events arrive, so a hostile megabyte costs milliseconds:
// duplicate keys go through one hash set per open object, and members are appended to the
// document without nlohmann's own key lookup (linear in ordered_json, quadratic over an object).
// No exception leaves parse_json.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "base/input_limits.h"
#include "base/result.h"

namespace cellos::base {

// ordered_json: members stay in document order (run.env is applied in the order declared, and
// unknown fields are reported in the order written).
using Json = nlohmann::ordered_json;

struct JsonLimits {
  std::string what = "document";  // names the document in errors: "spec", "line"
  size_t max_bytes = kMaxSpecBytes;
  size_t max_depth = kMaxJsonDepth;
  bool reject_duplicate_keys = true;
  // Values (scalars, objects, arrays) the document may hold in all; 0: no cap. Building each
  // costs ~100 ns, so a cap bounds the time a small-valued megabyte can take.
  size_t max_values = 0;
};

// Errors are value errors whose `call` is the JSON path of the offending member (`spec.run.env.A:
// duplicate field`), or `what` for the document as a whole (`spec: invalid JSON: ...`). Messages
// quote no document text beyond a clipped key: a value may be a secret.
Result<Json> parse_json(std::string_view text, const JsonLimits& limits);

// "1 MiB", "16 MiB", "64 KiB", or bytes: for messages naming a limit.
std::string size_text(size_t bytes);

}  // namespace cellos::base
