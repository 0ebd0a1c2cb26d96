// cellos-reactor: the command line. Each subcommand lives in its own file; this one only
// parses flags (CLI11) and dispatches.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <string_view>
#include <unistd.h>

#include "reactor/daemon.h"
#include "reactor/event_commands.h"
#include "reactor/identity_commands.h"
#include "reactor/show_command.h"
#include "reactor/status.h"
#include "reactor/run_command.h"
#include "reactor/run_fast_args.h"

int main(int argc, char** argv) {
  // `run SPEC --via-daemon`: a one-shot client whose start-up is on its cell's latency; the
  // plain form is read without building the whole command line (run_fast_args.h).
  if (auto fast = cellos::reactor::match_run_via_daemon(argc, argv))
    return cellos::reactor::run_command(*fast);

  CLI::App app{"cellos-reactor: runs untrusted CI commands as isolated cells"};
  app.require_subcommand(0, 1);
  // CELLOS_VERSION is CMake's project(VERSION), so the binary and the build agree.
  app.set_version_flag("--version", "cellos-reactor " CELLOS_VERSION);
  std::string serve_config;
  app.add_option("--config", serve_config, "fleet.toml for the fleet daemon");

  cellos::reactor::RunArgs run;
  std::string run_config, run_events;
  auto* run_cmd = app.add_subcommand("run", "run one cell in the foreground");
  run_cmd->add_option("spec", run.spec_path, "ExecutionCell JSON file, or - for stdin")
      ->required();
  run_cmd->add_option("--config", run_config, "fleet.toml (default: built-in defaults)");
  run_cmd->add_option("--events", run_events, "event log path, or - for stdout");
  run_cmd->add_flag("--via-daemon", run.via_daemon,
                    "hand the cell to the daemon serving the host, if one does (else run it here)");

  cellos::reactor::SubmitArgs submit;
  auto* submit_cmd = app.add_subcommand("submit", "queue a spec on the fleet daemon's spool");
  submit_cmd->add_option("spec", submit.spec_path, "ExecutionCell JSON file, or - for stdin")
      ->required();
  submit_cmd->add_option("--config", submit.config_path,
                         "fleet.toml of the daemon (with --nats: its policy and [intake.nats])");
  submit_cmd->add_option("--nats", submit.nats_url,
                         "publish to the fleet's JetStream work queue at this URL instead");
  submit_cmd->add_flag("--wait", submit.wait,
                       "wait for the cell: stream its stdout and stderr, exit with its exit "
                       "status (Ctrl-C stops waiting; the cell keeps running)");
  submit_cmd->add_flag("--spool", submit.spool,
                       "write the daemon's spool even when its fleet.toml enables [intake.nats]");

  cellos::reactor::StatusArgs status;
  auto* status_cmd = app.add_subcommand("status", "what the fleet daemon is running");
  status_cmd->add_option("--config", status.config_path, "fleet.toml of the daemon")->required();
  status_cmd->add_flag("--json", status.json, "the raw JSON snapshot, for scripts");

  cellos::reactor::ShowArgs show;
  auto* show_cmd = app.add_subcommand(
      "show", "what happened to a cell: outcome, reason, times, resources, its logs' last lines");
  show_cmd->add_option("id", show.cell_id, "the cell's spec.id")->required();
  show_cmd->add_option("--config", show.config_path, "fleet.toml of the daemon")->required();
  show_cmd->add_flag("--json", show.json, "as one JSON object, for scripts");
  show_cmd->add_option("--lines", show.tail_lines, "log lines to show per stream (default 10)");

  std::optional<int> event_rc;
  cellos::reactor::add_event_commands(app, event_rc);
  cellos::reactor::add_identity_commands(app, event_rc);

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
  if (*submit_cmd) {
    if (submit.config_path.empty() && submit.nats_url.empty()) {
      std::fprintf(stderr, "cellos-reactor: submit: --config is required (or --nats URL)\n");
      return 125;
    }
    return cellos::reactor::submit_command(submit);
  }
  if (*status_cmd) return cellos::reactor::status_command(status);
  if (*show_cmd) return cellos::reactor::show_command(show);
  if (event_rc) return *event_rc;
  if (serve_config.empty()) {
    std::fprintf(stderr, "cellos-reactor: the fleet daemon needs --config FLEET.toml "
                         "(see --help for the subcommands)\n");
    return 125;
  }
  return cellos::reactor::serve_command({serve_config});
}
