// `cellos-reactor --config FLEET.toml`: the fleet daemon. One thread, one ring: spool intake
// (inotify through the ring), admission in arrival order up to [host] max_concurrent_cells,
// per-cell log files with a size cap, a status socket, metrics.prom, graceful SIGTERM, and
// on start the recovery of whatever a predecessor that died left behind.
#pragma once

#include <string>

namespace cellos::reactor {

struct ServeArgs {
  std::string config_path;
};

// Runs until stopped; returns the process exit status (0 after a clean stop).
int serve_command(const ServeArgs& args);

// `cellos-reactor submit SPEC.json|- --config FLEET.toml`: validates the spec against the
// fleet's policy (a rejected spec is refused here, with nothing written) and renames it into
// the spool.
//
// With nats_url (`submit --nats URL SPEC.json`): the same validation (policy from --config, or
// the built-in defaults), then the spec is published to [intake.nats] subject (from --config,
// else the default) by the NATS companion, exec'd in its one-shot publish mode. Without --nats,
// a config with [intake.nats] enabled publishes to its url the same way, unless `spool` asks
// for its spool.
struct SubmitArgs {
  std::string spec_path;
  std::string config_path;
  std::string nats_url;
  bool spool = false;
  bool wait = false;  // submit_wait.h: stream the cell's output, exit with its status
};
int submit_command(const SubmitArgs& args);

}  // namespace cellos::reactor
