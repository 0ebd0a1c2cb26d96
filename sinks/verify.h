// verify and `events cat`: reading a log back as an auditor does.
//
// verify walks every line (a packed Cap'n Proto log is rendered to the same lines first):
// sequence numbers dense from 1, each batch's RFC 6962 root, the manifest hash chain from the
// all-zero genesis digest, and, given a public key, each manifest's Ed25519 signature and key
// id and each per-event DSSE signature. The first problem stops it, named with its line.
// Without a public key, integrity (chain and roots) is still checked and the report says that
// authenticity was not.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "base/result.h"
#include "sinks/signing.h"

namespace cellos::sinks {

struct VerifyOptions {
  std::string path;
  std::optional<std::string> public_key_path;
};

struct VerifyReport {
  bool ok = false;
  uint64_t problem_line = 0;  // 1-based line (record) of the first problem
  std::string problem;
  uint64_t events = 0, batches = 0, recovered_batches = 0, gaps = 0, dropped_events = 0;
  uint64_t dsse_checked = 0;
  std::string first_time, last_time;
  std::string key_id;          // of the manifests (empty: unsigned log)
  bool signatures_checked = false;
  std::string format;          // "jsonl" | "capnp"
  // The only problem is at the end: a batch not sealed yet (unsealed_records after the last
  // manifest) or a record cut short (torn_bytes), which is what a log still being written looks
  // like. `verify` then asks whether a live writer holds the log (live_summary).
  bool tail_pending = false;
  uint64_t unsealed_records = 0, torn_bytes = 0;

  // "intact: 12 events in 3 batches, 2026-...Z .. 2026-...Z, signed by key ab12.. (checked)"
  // or "line 7: ...".
  std::string summary() const;
  // For a tail_pending report of a log a live writer holds: the sealed part's summary, and
  // what at the end was left unchecked.
  std::string live_summary() const;
};

// Error only when the file or key cannot be read; a bad log is a report with ok == false.
base::Result<VerifyReport> verify_log(const VerifyOptions& options);

// The same on a log already in memory (tests, fuzzing): never throws, whatever the bytes.
VerifyReport verify_bytes(std::string bytes, const std::optional<SigningKey>& key);

// `events cat`: every record of a log of either format as CloudEvents JSON lines.
base::Result<std::string> cat_log(const std::string& path);
base::Result<std::string> cat_bytes(std::string bytes);

}  // namespace cellos::sinks
