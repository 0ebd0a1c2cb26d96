// Sealing a nested reactor's event log (a "sub-log") into the log of the reactor that ran the
// nested cell, and following those seals back when verifying.
//
// A nested cell runs its own cellos-reactor, which signs its own log with a key the host made
// for that cell, in a host directory below the parent's log directory. At the nested cell's
// end (its processes are gone, so nothing writes the sub-log any more) the parent reads the
// file once, verifies it with the public key it made (verify_bytes: the same code `verify`
// runs), and records one dev.cellos.events.cell.nested.v1.sealed event in its own signed,
// chained log: the path relative to its log's directory, the key, the file's size and SHA-256,
// the sub-log's head (the SHA-256 of its last manifest line, which chains every line before
// it), its counts, and the outcome. A sub-log that is missing, unreadable, too large, or does
// not verify is sealed as failed with the reason: the nested reactor is run by the untrusted
// command, so a broken or forged sub-log is evidence too, never dropped.
//
// The file is opened below the log directory with openat2(RESOLVE_BENEATH |
// RESOLVE_NO_SYMLINKS): the nested command owned that directory, and a symlink, a `..`, a FIFO
// or a hard link to another file must not make the host read something else.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "sinks/events.h"
#include "sinks/signing.h"
#include "sinks/verify.h"

namespace cellos::sinks {

inline constexpr const char* kNestedSealedType = "dev.cellos.events.cell.nested.v1.sealed";
// A sub-log larger than this is sealed as failed (size recorded, not read): the seal reads the
// whole file once, and verify does again.
inline constexpr uint64_t kMaxSublogBytes = 1ull << 30;
// How deep `verify` follows seals (the parent's log is depth 0).
inline constexpr unsigned kMaxNestingDepth = 8;

struct SublogSealOptions {
  // The parent's own event log: the recorded path is relative to its directory, and the
  // sub-log must lie below that directory (the nested backend's <state_dir>/nested/<cell id>/
  // with the default [events] jsonl = <state_dir>/events.jsonl).
  std::string log_path;
  std::string sublog_path;  // the nested reactor's log, as the host sees it
  std::string public_key;   // the raw 32 bytes of the key the host generated for the nested reactor
  std::string cell_id;
  std::string nesting_path;  // "<host id>/<cell id>"
  uint64_t max_bytes = kMaxSublogBytes;
};

// Reads, hashes and verifies the sub-log. Blocking (it reads the whole file once), so the
// reactor never calls it: SublogSealJob (sublog_seal_job.h) runs it in `cellos-reactor
// seal-sublog`. Never fails: every problem is a NestedSealedData with verified == false and
// error set.
NestedSealedData seal_sublog(const SublogSealOptions& options);

// A path a seal may record: relative, components neither empty nor "." nor "..", no NUL, at
// most 4096 bytes. "" when fine, else why not.
std::string check_sealed_path(std::string_view path);

// The seal's fields as one JSON object (the event's data; `seal-sublog` prints it) and back.
std::string sealed_to_json(const NestedSealedData& d);
base::Result<NestedSealedData> sealed_from_json(std::string_view text);

// ---- verify: following the seals ----

struct TrailOptions {
  VerifyOptions top;          // the log given to `verify` (depth 0) and its key, if any
  bool follow_nested = true;  // false: --no-nested
  unsigned max_depth = kMaxNestingDepth;
  // The top log's writer is running (it holds the lock): a pending tail is not a problem, and
  // seals in its sealed part are still followed.
  bool top_live = false;
};

struct TrailLog {
  unsigned depth = 0;
  std::string nesting;    // the recorded nesting paths joined by " > "
  std::string path;       // as the auditor finds it: relative to the top log's directory
  uint64_t sealed_line = 0;  // the line of the seal in the log above
  std::string summary;    // verify's summary of the sub-log
};

struct TrailReport {
  VerifyReport top;
  bool ok = false;            // the top log and every sub-log at every depth
  std::string problem;        // the first problem below the top log ("" when ok or the top failed)
  std::vector<TrailLog> logs;  // sub-logs verified, in the order followed
  uint64_t seals_not_followed = 0;  // with follow_nested == false
  unsigned deepest = 0;
};

// Error only when the top log or key cannot be read (as verify_log).
base::Result<TrailReport> verify_trail(const TrailOptions& options);

}  // namespace cellos::sinks
