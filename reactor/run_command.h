// `cellos-reactor run SPEC.json|- [--config FLEET.toml] [--events FILE|-]`
#pragma once

#include <optional>
#include <string>

namespace cellos::reactor {

struct RunArgs {
  std::string spec_path;                   // "-" reads standard input
  std::optional<std::string> config_path;  // absent: built-in defaults
  std::optional<std::string> events_path;  // overrides [events] jsonl; "-" is standard output
};

// Runs one cell in the foreground; returns the process exit status (see README, "Exit codes").
int run_command(const RunArgs& args);

}  // namespace cellos::reactor
