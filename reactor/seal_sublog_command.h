// `cellos-reactor seal-sublog`: the helper process that seals one nested cell's sub-log
// (sinks/sublog_seal_job.h starts it from the reactor). It reads, hashes and verifies the file
// and prints the seal as one JSON line; it writes nothing anywhere else, so running it by hand
// only shows what a seal of that file would record.
#pragma once

#include <CLI/CLI.hpp>
#include <optional>

namespace cellos::reactor {

void add_seal_sublog_command(CLI::App& app, std::optional<int>& exit_code);

}  // namespace cellos::reactor
