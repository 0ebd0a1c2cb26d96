// The event sink both entry points (`run` and the daemon) write through, chosen from
// [events] in fleet.toml, or the path given on the command line.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "base/io.h"
#include "base/result.h"
#include "cells/config.h"
#include "sinks/events.h"

namespace cellos::reactor {

base::Result<std::unique_ptr<sinks::EventSink>> open_event_sink(
    const cells::Config& config, base::IoPort& io, const std::optional<std::string>& path);

}  // namespace cellos::reactor
