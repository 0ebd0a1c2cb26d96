// Reading the event log back: lines of a JSONL log, records of a packed Cap'n Proto log
// rendered to the same lines, and the tail a restarting writer needs (last sequence number,
// last manifest digest, the unsealed final batch, a torn final record).
#pragma once

#include <capnp/message.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "sinks/signing.h"

namespace cellos::sinks {

enum class LogFormat;

struct LogLines {
  std::vector<std::string> lines;  // whole records, as CloudEvents JSON lines without '\n'
  uint64_t valid_size = 0;         // bytes of the file holding whole records
  uint64_t torn_bytes = 0;         // bytes after them: a record cut short
};

// Splits a JSONL text; a final line without '\n' is torn.
LogLines split_jsonl(std::string_view text);
// Decodes a packed Cap'n Proto stream; a record that does not decode at the end is torn.
LogLines decode_capnp(std::string_view bytes);

// The `"cellosseq":N` attribute of one of our lines, found without a JSON parse (quotes inside
// string values are escaped, so the first unescaped occurrence is the attribute).
bool line_seq(std::string_view line, uint64_t& seq);
bool is_manifest_line(std::string_view line);

struct RecoveredTail {
  uint64_t valid_size = 0, torn_bytes = 0;
  uint64_t last_seq = 0;              // 0: empty log
  Digest last_manifest_digest{};      // zeros: no manifest yet
  std::vector<std::string> unsealed_lines;
  uint64_t unsealed_first_seq = 0;
};

// JSONL: reads backwards from the end until a manifest line (or the start), so a restart costs
// one batch of reading, not the whole log. Capnp: decodes the whole stream (packed records
// cannot be found from the end).
base::Result<RecoveredTail> read_jsonl_tail(int fd);
base::Result<RecoveredTail> read_capnp_tail(int fd);

// Appends the message as a packed Cap'n Proto record.
void append_packed(capnp::MessageBuilder& msg, std::string& out);

// Reads a whole file.
base::Result<std::string> read_whole(const std::string& path);

}  // namespace cellos::sinks
