// The event log's records: typed events become Cap'n Proto LogRecords (sinks/events.capnp),
// and a LogRecord renders to exactly one CloudEvents JSON line. The rendering is a pure
// function of the record, so the writer, `events cat` and `verify` produce the same bytes from
// either format, and hashes and signatures over lines hold for both.
#pragma once

#include <capnp/message.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "sinks/events.capnp.h"
#include "sinks/events.h"

namespace cellos::sinks {

inline constexpr const char* kBatchSealedType = "dev.cellos.events.log.v1.batch_sealed";
inline constexpr const char* kGapType = "dev.cellos.events.log.v1.gap";
// DSSE payloadType of a per-event signature: the payload is the event's own line without its
// dssematerial attribute, so the envelope omits it (the consumer has it).
inline constexpr const char* kDssePayloadType = "application/cloudevents+json";

struct RecordHeader {
  uint64_t seq = 0;
  int64_t time_us = 0;
  std::string_view id, source, subject;
  std::string_view correlation = {};  // "" when none
};

// Fills `r` from a typed event (data only; the caller sets the header).
void build_data(const EventData& data, schema::LogRecord::Builder r);
void set_header(const RecordHeader& h, schema::LogRecord::Builder r);

// Appends the record's CloudEvents JSON line (no newline). `with_dsse` false renders the line
// a per-event signature covers.
void render_line(schema::LogRecord::Reader r, std::string& out, bool with_dsse = true);
// The same line written at buf[len], where buf's bytes from len on are scratch room (the event
// log keeps its batch buffer sized past its contents, so a line is written in place without
// std::string's per-append checks); buf is resized when the room runs out. Returns the length
// after the line. The bytes are exactly render_line's.
size_t render_line_at(schema::LogRecord::Reader r, std::string& buf, size_t len,
                      bool with_dsse = true);
// The same, given the header set_header() wrote into `r` (the writer has it at hand, and
// reading it back through capnp's checked accessors showed in profiles). Same bytes.
size_t render_line_at(const RecordHeader& h, schema::LogRecord::Reader r, std::string& buf,
                      size_t len);

const char* record_type(schema::LogRecord::Reader r);

// Appends a JSON string literal for `s`: escapes quotes, backslashes and control characters,
// and replaces bytes that are not UTF-8 with U+FFFD (a hostile argv can carry any bytes).
void append_json_string(std::string& out, std::string_view s);

// DSSE pre-authentication encoding: "DSSEv1 <len(type)> <type> <len(body)> <body>".
std::string dsse_pae(std::string_view type, std::string_view body);

// A message whose first segment is a buffer owned by the caller and reused record after
// record: no heap allocation per record once the buffer is warm. capnp requires the first
// segment zeroed, so reset() clears the words the last record used.
class RecordArena {
 public:
  RecordArena() : words_(new uint64_t[kWords]()) {}
  // Drops the previous record and starts an empty message on the reused segment.
  capnp::MallocMessageBuilder& start();
  capnp::MallocMessageBuilder& message() { return *msg_; }

 private:
  static constexpr size_t kWords = 1024;  // 8 KiB: an event record is a few hundred bytes
  std::unique_ptr<uint64_t[]> words_;
  std::optional<capnp::MallocMessageBuilder> msg_;
};

}  // namespace cellos::sinks
