// `cellos-reactor run SPEC.json|- [--config FLEET.toml] [--events FILE|-]`
#pragma once

#include <optional>
#include <string>

#include "base/result.h"
#include "cells/config.h"

namespace cellos::reactor {

struct RunArgs {
  std::string spec_path;                   // "-" reads standard input
  std::optional<std::string> config_path;  // absent: built-in defaults
  std::optional<std::string> events_path;  // overrides [events] jsonl; "-" is standard output
  // Hand the cell to the daemon serving the host when there is one (run_via_daemon.h).
  bool via_daemon = false;
};

// A random (version 4) UUID naming one run of a cell in its events.
std::string new_run_id();

// A spec from a file, or from standard input for "-".
base::Result<std::string> read_spec_text(const std::string& path);

// One line on stderr ("cellos-reactor: ..."); returns 125, the setup-failure exit status.
int say_setup_failed(const std::string& line);

// fleet.toml for a subcommand; on error, says so on stderr in one line and returns nothing.
std::optional<cells::Config> load_config_or_say(const std::string& path);

// Runs one cell in the foreground; returns the process exit status (see docs/run.md, "Exit
// codes").
int run_command(const RunArgs& args);

}  // namespace cellos::reactor
