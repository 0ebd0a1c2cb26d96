#include "reactor/seal_sublog_command.h"

#include <cstdio>
#include <memory>
#include <string>

#include "sinks/signing.h"
#include "sinks/sublog_seal.h"

namespace cellos::reactor {

void add_seal_sublog_command(CLI::App& app, std::optional<int>& exit_code) {
  auto* cmd = app.add_subcommand(
      "seal-sublog", "print the seal of a nested cell's event log as one JSON line (the reactor's helper)");
  struct Args {
    sinks::SublogSealOptions o;
    std::string key_b64;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--log", a->o.log_path, "the event log the seal goes into (paths are relative to its directory)")
      ->required();
  cmd->add_option("--sublog", a->o.sublog_path, "the nested reactor's event log")->required();
  cmd->add_option("--public-key-base64", a->key_b64, "the nested reactor's raw Ed25519 public key, base64")
      ->required();
  cmd->add_option("--cell", a->o.cell_id, "the nested cell's id")->required();
  cmd->add_option("--nesting", a->o.nesting_path, "the nesting path: <host id>/<cell id>")->required();
  cmd->add_option("--max-bytes", a->o.max_bytes, "largest sub-log read");
  cmd->callback([&exit_code, a] {
    // A key that does not decode is sealed as failed like any other problem (seal_sublog
    // refuses a key that is not 32 bytes).
    if (!sinks::unbase64(a->key_b64, a->o.public_key)) a->o.public_key.clear();
    const std::string line = sinks::sealed_to_json(sinks::seal_sublog(a->o)) + "\n";
    exit_code = std::fwrite(line.data(), 1, line.size(), stdout) == line.size() && std::fflush(stdout) == 0 ? 0 : 1;
  });
}

}  // namespace cellos::reactor
