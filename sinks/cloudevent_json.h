// CloudEvents 1.0 structured-mode JSON, one event per line.
#pragma once

#include <cstdint>
#include <string>

#include "sinks/events.h"

namespace cellos::sinks {

struct CloudEventEnvelope {
  std::string source;  // "/cellos-reactor/<hostId>"
  std::string id;      // unique per event
};

// One line, no trailing newline: specversion, id, source, type, subject, time (RFC 3339 UTC
// with microseconds), datacontenttype, data (camelCase fields). Rendered through the event
// log's Cap'n Proto record, so it is the log's line without the log's cellosseq.
std::string encode_cloudevent(const Event& e, const CloudEventEnvelope& env);

// "2026-11-23T11:12:13.123456Z"
std::string rfc3339_utc(int64_t time_us);

// Event ids unique across processes and hosts without a syscall per event: a random 64-bit
// prefix drawn once per process, then a counter.
class EventIdGenerator {
 public:
  EventIdGenerator();
  std::string next();

 private:
  std::string prefix_;
  uint64_t counter_ = 0;
};

}  // namespace cellos::sinks
