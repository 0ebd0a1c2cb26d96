// The native backend: Linux namespaces on the host kernel (launcher.h). The cell's root process
// is its init (cell_init.h), cloned straight into the cell's cgroup and namespaces.
#pragma once

#include "cells/backend.h"

namespace cellos::cells {

// Fails when the cell init cannot be loaded (it is embedded in the binary, so only when memfd or
// sealing is refused).
base::Result<std::unique_ptr<Backend>> make_native_backend(const Config& config);

}  // namespace cellos::cells
