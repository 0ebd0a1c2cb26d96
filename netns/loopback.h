// Loopback inside a fresh network namespace.
//
// A new netns has only `lo`, and it is down. Called in the cell's child between clone and exec,
// so it uses only syscalls on stack memory and reports failure as an errno, not a Result.
#pragma once

namespace cellos::netns {

// Brings `lo` up in the calling process's network namespace. Returns 0 or an errno.
int bring_up_loopback() noexcept;

}  // namespace cellos::netns
