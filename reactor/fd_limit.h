// The daemon's descriptor limit, raised at start: thousands of cells need far more than the
// usual soft limit.
#pragma once

namespace cellos::reactor {

void raise_fd_limit();

}  // namespace cellos::reactor
