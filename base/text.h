// Quoting untrusted text into one-line messages.
//
// Anything a spec, a log line or a file supplies can be megabytes long and hold newlines or
// terminal escapes. Every error that quotes such text goes through clip(), so a message stays a
// few hundred bytes on one line whatever the input, and a rejection written to a file or an
// event cannot be used to make the daemon write megabytes.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace cellos::base {

// The most bytes of offending input any one message quotes.
inline constexpr size_t kMaxQuotedBytes = 160;
// The most bytes of a whole message written to a file or an event (a reason in rejected/).
inline constexpr size_t kMaxMessageBytes = 512;

// `s` for a message: bytes below 0x20 and 0x7f shown as \xNN, cut after `max` input bytes
// (never inside a UTF-8 sequence) with "..." appended when anything was left out.
std::string clip(std::string_view s, size_t max = kMaxQuotedBytes);

// A whole message made safe to store: line breaks become spaces and it is cut to `max` bytes
// with "..." when longer, so one rejection is one bounded line.
std::string bounded_line(std::string_view s, size_t max = kMaxMessageBytes);

}  // namespace cellos::base
