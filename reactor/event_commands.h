// The event-log subcommands: keygen, verify, `events cat`. Registered on the CLI here so
// main.cc stays a dispatcher; each sets *exit_code when it ran.
#pragma once

#include <CLI/CLI.hpp>
#include <optional>

namespace cellos::reactor {

void add_event_commands(CLI::App& app, std::optional<int>& exit_code);

}  // namespace cellos::reactor
