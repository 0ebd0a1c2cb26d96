// The event log a Config asks for: [events] keys -> sinks::EventLogOptions -> sinks::EventLog.
// One place, shared by `run` and the fleet daemon.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "base/io.h"
#include "base/result.h"
#include "cells/config.h"
#include "sinks/events.h"

namespace cellos::reactor {

// path_override: `--events FILE|-` (replaces [events] jsonl).
base::Result<std::unique_ptr<sinks::EventSink>> open_event_log(
    const cells::Config& config, base::IoPort& io, std::optional<std::string> path_override);

}  // namespace cellos::reactor
