// [policy.nested]: whether specs may ask for the nested backend (spec.run.backend "nested": a
// cell that runs a cellos-reactor of its own, docs/nested.md), how deep, how many at once, and
// the uids their user namespaces map.
//
// A nested cell's reactor gets a generated fleet.toml (nested_config.h) whose [policy.nested]
// carries max_depth one less than its parent's, so the depth left shrinks at every level and a
// reactor with none left refuses "nested" at admission. max_cells bounds the nested cells live
// at once on one reactor (their uid blocks come from uid_range, one block of uid_block_size
// each); the kernel holds the same count (docs/nested.md, "What the kernel enforces").
#pragma once

#include <cstdint>
#include <string>

#include "base/result.h"

namespace cellos::cells {

struct Config;
struct Spec;

struct NestedPolicy {
  // Levels of nesting below this reactor: 0 refuses "nested"; 1: its nested cells may run
  // reactors with native cells only; 2: those may nest once more, ...
  uint32_t max_depth = 0;
  uint32_t max_cells = 4;             // nested cells live at once on this reactor
  uint32_t uid_block_size = 65536;    // uids each nested cell's user namespace maps
  uint32_t uid_first = 1000000;       // [policy.nested] uid_range: where the blocks come from
  uint32_t uid_last = 1000000 + 16 * 65536 - 1;
  // The binary bound at /cellos/bin/cellos-reactor: empty, the running one (/proc/self/exe).
  // Not a fleet.toml key: a program embedding the reactor (a benchmark) names cellos-reactor.
  std::string reactor_binary = {};
};

// The kernel's hard limit of nested user namespaces is 32; a nested cell is one level.
inline constexpr uint32_t kMaxNestedDepth = 8;
// Blocks hold a reactor's own uid_range for its cells plus root: at least this many uids.
inline constexpr uint32_t kMinUidBlock = 1024;

// The blocks [policy.nested] uid_range holds.
inline uint32_t nested_block_count(const NestedPolicy& p) {
  return static_cast<uint32_t>((uint64_t{p.uid_last} - p.uid_first + 1) / p.uid_block_size);
}

// Checks of a loaded config (called by parse_config): "nested" in allowed_backends needs
// max_depth > 0; the block range must hold max_cells blocks and must not overlap
// policy.uid_range. A one-line error naming the key, or ok.
base::Result<void> check_nested_policy(const Config& config);

// Admission of a spec asking for spec.run.backend "nested": policy allows it (allowed_backends
// and depth left) and it asks for nothing the nested backend cannot serve yet. Ok for any other
// backend.
base::Result<void> check_nested_spec(const Spec& spec, const Config& config);

}  // namespace cellos::cells
