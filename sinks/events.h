// The events a cell produces, as typed values. Built in one place (here); the event log
// (event_log.h) turns them into Cap'n Proto records and CloudEvents lines, so the code that
// decides what happened never sees the encoding, the batching or the signing.
//
// Type strings keep CellOS's names so CellOS consumers can read the stream. No event carries a
// secret value or an environment value: only names, ids, counts and outcomes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace cellos::sinks {

struct StartedData {
  std::string cell_id, run_id, host_id;
};

struct DeclaredEgress {
  std::string host;
  uint16_t port = 0;
  std::optional<std::string> protocol;
};

struct NetworkPolicyData {
  std::string cell_id;
  std::string isolation_mode = "clone_newnet";
  std::vector<DeclaredEgress> declared_egress;
};

enum class CompletedReason { kExited, kSignaled, kTimeout, kOom, kSetupFailed };
const char* reason_name(CompletedReason r);

struct CompletedData {
  std::string cell_id;
  std::optional<int> exit_code;
  std::optional<int> signal;
  uint64_t duration_ms = 0;
  CompletedReason reason = CompletedReason::kExited;
  std::string error;  // for setup_failed: the one-line cause (no secret values, by construction)
};

struct DestroyedData {
  std::string cell_id;
  bool succeeded = false;
  bool forced = false;  // terminalState Forced: the reactor killed the cell
};

struct RejectedData {
  std::optional<std::string> cell_id;
  std::string reason;
};

using EventData =
    std::variant<StartedData, NetworkPolicyData, CompletedData, DestroyedData, RejectedData>;

struct Event {
  EventData data;
  std::string subject;   // the cell id ("" when unknown, e.g. a spec rejected before its id)
  int64_t time_us = 0;   // CLOCK_REALTIME, microseconds
};

const char* event_type(const EventData& d);

// Stamps the time and subject.
Event make_event(EventData data);

class EventSink {
 public:
  virtual ~EventSink() = default;
  virtual void emit(const Event& e) = 0;
  // Closes the open batch now (a sink that batches). The reactor calls it when it is about to
  // stop, then runs completions until drained().
  virtual void flush() {}
  // True when nothing is buffered or in flight: the reactor may exit without losing an event.
  virtual bool drained() const { return true; }
  // Events that reached the sink's file (a metric; batches count when their write completed).
  virtual uint64_t events_written() const { return 0; }
};

}  // namespace cellos::sinks
