// The cell's environment: exactly the fixed PATH, run.env and the declared secrets.
//
// Secret values are read from [secrets] dir (one file per key) at admission and go only into
// the environment block handed to execve. Errors name the key and the file, never the value.
#pragma once

#include <string>
#include <vector>

#include "base/fd.h"
#include "cells/config.h"
#include "cells/spec.h"

namespace cellos::cells {

inline constexpr const char* kDefaultPath = "PATH=/usr/local/bin:/usr/bin:/bin";

// "KEY=value" strings in this order: PATH (unless run.env sets its own), run.env as declared,
// then each secretRef. Fails naming the secretRef when its file is missing or unreadable.
base::Result<std::vector<std::string>> build_environment(const Spec& spec,
                                                         const SecretsConfig& secrets);

}  // namespace cellos::cells
