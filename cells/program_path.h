// A bare argv[0] ("true", "make"): the program it names, looked up through the cell's PATH the
// way execvp would, but in the cell's view and never in its workspace.
//
// CellOS's own examples run `"argv":["true"]`. The lookup happens at admission, on the host,
// over the directories of the cell's PATH (spec.run.env PATH, else the default of
// cells/secrets.h) that the cell's view holds read-only (root_view.h: policy.host_paths and the
// argv0 prefixes, minus the reactor's masked files). A directory the view does not hold, or
// holds only as the cell's own tmpfs (/tmp, the workspace), is skipped: a checkout that ships
// a `make` must not be run in place of the host's. The first regular file with an execute bit
// wins; the command then sees argv[0] as declared and execs the resolved path.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "cells/config.h"
#include "cells/spec.h"

namespace cellos::cells {

// True when argv[0] names a program without a '/': it goes through the PATH lookup.
bool is_bare_program(std::string_view argv0);

// The PATH the cell's command gets: its own spec.run.env PATH, else the default.
std::string cell_path(const Spec& spec);

// The resolved program for a bare argv[0], or nullopt when no directory of the cell's PATH in
// its view holds it (the cell then fails as a missing absolute argv[0] does: 127).
std::optional<std::string> resolve_program(const Spec& spec, const Config& config);

}  // namespace cellos::cells
