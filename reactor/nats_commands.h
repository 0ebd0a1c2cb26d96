// The NATS commands of the static cellos-reactor binary. They exec the companion
// (cellos-reactor-nats, beside the binary) in a one-shot mode, since libnats cannot be linked
// into a static binary (see reactor/nats/frames.h); the user only types cellos-reactor.
#pragma once

#include <CLI/CLI.hpp>
#include <optional>
#include <string>

#include "cells/config.h"

namespace cellos::reactor {

// `submit --nats URL`: the spec text (already validated) goes to the companion's stdin through
// a memfd, and the companion publishes it to the work queue (creating the stream if absent).
// Returns only on failure. With `wait`, the companion then watches the spec's claim record in
// the completion bucket and exits with the cell's exit status (`submit --nats --wait`).
int exec_nats_publish(const std::string& url, const cells::IntakeNatsConfig& intake,
                      const std::string& spec_text, bool wait = false);

// `events fetch --nats URL [--stream S] --subject X`: every batch published on X, oldest first,
// on stdout: a JSONL log `cellos-reactor verify` checks.
void add_events_fetch_command(CLI::App& events, std::optional<int>& exit_code);

}  // namespace cellos::reactor
