// cellos-reactor: the command line. Each subcommand lives in its own file; this one only
// parses flags (CLI11) and dispatches.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <string_view>
#include <unistd.h>

#include "reactor/event_commands.h"
#include "reactor/run_command.h"

int main(int argc, char** argv) {

  CLI::App app{"cellos-reactor: runs untrusted CI commands as isolated cells"};
  app.require_subcommand(0, 1);
  std::string serve_config;
  app.add_option("--config", serve_config, "fleet.toml for the fleet daemon");

  cellos::reactor::RunArgs run;
  std::string run_config, run_events;
  auto* run_cmd = app.add_subcommand("run", "run one cell in the foreground");
  run_cmd->add_option("spec", run.spec_path, "ExecutionCell JSON file, or - for stdin")
      ->required();
  run_cmd->add_option("--config", run_config, "fleet.toml (default: built-in defaults)");
  run_cmd->add_option("--events", run_events, "event log path, or - for stdout");

  std::optional<int> event_rc;
  cellos::reactor::add_event_commands(app, event_rc);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // Usage errors are setup errors: the same 125 a rejected spec gets.
    int rc = app.exit(e);
    return rc == 0 ? 0 : 125;
  }
  if (*run_cmd) {
    if (!run_config.empty()) run.config_path = run_config;
    if (!run_events.empty()) run.events_path = run_events;
    return cellos::reactor::run_command(run);
  }
  if (event_rc) return *event_rc;
  std::fprintf(stderr,
               "cellos-reactor: the fleet daemon (serving --config) is not part of this build "
               "yet; use `cellos-reactor run SPEC.json`\n");
  return 125;
}
