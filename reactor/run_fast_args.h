// The command line of `run SPEC --via-daemon [--config FLEET]` read without CLI11.
//
// `run --via-daemon` is a one-shot CI step's whole start-up: building CLI11's description of
// every subcommand (and tearing it down at exit) was a visible part of the client's CPU before
// its request reached the daemon. main() first tries this matcher, which accepts only that
// form (flags in any order, `--config X` or `--config=X`, the spec a path or "-"); anything
// else, --help included, returns nothing and goes through CLI11 as before, so no command line
// means something different on the two paths.
#pragma once

#include <optional>

#include "reactor/run_command.h"

namespace cellos::reactor {

// argv[1] == "run", exactly one spec, --via-daemon given, at most one --config, nothing else.
std::optional<RunArgs> match_run_via_daemon(int argc, const char* const* argv);

}  // namespace cellos::reactor
