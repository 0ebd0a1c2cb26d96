// Inputs: host files and directories bound read-only into a cell (spec.inputs, an extension of
// CellOS's spec). A CI job needs its checkout; the fleet grants directories that hold checkouts
// to cell-id globs ([policy.input_grants]), and a spec names the one it needs below such a
// directory and where the cell sees it.
//
// Only the declared path is bound, never the granted directory: two jobs whose checkouts sit
// side by side under one granted directory each see their own. For that to hold, nothing else
// may show the granted directory: fleet.toml is refused when a granted directory lies inside
// (or holds) a path of the cell's view (policy.host_paths, argv0_allow_prefixes) or one of the
// reactor's own files (state dir, event log, secrets dir, signing key).
//
// The host path is checked at admission (it exists, and no component of it is a symlink, so a
// link inside a checkout cannot point the bind at another job's files or the host's), and
// opened again by the cell's setup with openat2(RESOLVE_NO_SYMLINKS), so a link swapped in
// between the two fails the cell instead of escaping. The bind is read-only, nosuid and nodev,
// recursive (submounts included).
#pragma once

#include <string>
#include <string_view>

#include "base/result.h"
#include "cells/config.h"
#include "cells/spec.h"

namespace cellos::cells {

// Why `prefix` may not be a key of [policy.input_grants] in `config`; empty when it may.
std::string input_prefix_refusal(const Config& config, std::string_view prefix);

// Policy and the host for each spec.inputs entry: granted to the cell's id, present, free of
// symlinks, and a target the setup can make (not inside a read-only host path of the view,
// unless under the workspace). Errors name the field: `spec.inputs[0].hostPath: ...`.
base::Result<void> check_inputs(const Spec& spec, const Config& config);

}  // namespace cellos::cells
