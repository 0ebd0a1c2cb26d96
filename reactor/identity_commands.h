// `cellos-reactor jwks --config F`: the public key set relying parties check this host's
// workload identity tokens against (cells/identity.h). Registered on the CLI here so main.cc
// stays a dispatcher; sets *exit_code when it ran.
#pragma once

#include <CLI/CLI.hpp>
#include <optional>

namespace cellos::reactor {

void add_identity_commands(CLI::App& app, std::optional<int>& exit_code);

}  // namespace cellos::reactor
