// The settling journal's cell events (<state_dir>/nats-settling.jsonl, nats_bridge.h): a NATS
// cell's completion is journaled together with its completed and destroyed events, held by the
// CompletionGate until the completion record is in the bucket. A daemon killed before those
// events reached its log writes them from the journal when it starts again, so the run that
// finished keeps its one completed event and its completion record, and is never run again.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/result.h"
#include "cells/config.h"
#include "sinks/events.h"

namespace cellos::reactor {

// The completed and destroyed events among `held`, as a JSON object for the journal
// ({"completed": {...}, "destroyed": {...}}); null when there is no completed event.
nlohmann::json journal_events(const std::vector<sinks::Event>& held);
// The events again, stamped with their original times (resources, flows and DNS summaries
// included as far as the journal holds them).
std::vector<sinks::Event> events_from_journal(const nlohmann::json& j);
// The subject and time of the journaled completed event ("" when none).
std::string journal_subject(const nlohmann::json& j);
int64_t journal_time_us(const nlohmann::json& j);

// The completed events in the host's event log, as "subject time" keys (time in the log's
// RFC 3339 form). Reads the whole log: only at start, and only when the journal holds a
// completion.
base::Result<std::vector<std::string>> completed_events_in_log(const cells::Config& config);
std::string completed_key(const std::string& subject, int64_t time_us);

}  // namespace cellos::reactor
