// Caps on untrusted input, shared by every place it enters, so the file, stdin, spool and NATS
// paths cannot drift apart (a cap on one intake is worthless if another skips it).
#pragma once

#include <cstddef>

namespace cellos::base {

// The largest spec any intake accepts (`run FILE`, `run -`, `submit`, the spool, NATS): far
// above any real spec (a few KiB), small enough that refusing a hostile one costs milliseconds
// and that rejected/ keeps only bounded copies.
inline constexpr size_t kMaxSpecBytes = 1 << 20;

// Objects and arrays nested deeper than this are refused in specs and log lines; a spec needs
// 5 levels, a CloudEvent 3.
inline constexpr size_t kMaxJsonDepth = 64;

// The longest event-log line `verify` and `events cat` read; a writer's line is at most a few
// KiB (a spec's argv is capped by kMaxSpecBytes), so anything longer was not written by us.
inline constexpr size_t kMaxLogLineBytes = 16 << 20;

}  // namespace cellos::base
