// What spec parsing (spec.cc) and the policy checks (spec_policy.cc) share to put names and
// paths into one-line messages and to compare paths by whole components.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace cellos::cells::spec_text {

// JSON-quoted, ASCII-only and cut at 64 bytes: safe to put any input into a one-line message.
std::string json_quoted(std::string_view s);
// `s` as is when it is printable, else json_quoted.
std::string printable(std::string_view s);
// printable() of each, comma-separated.
std::string join(const std::vector<std::string>& items);
// ASCII lower case without a trailing dot: how host names compare.
std::string lower(std::string_view s);
// `path` is `dir` or lies below it, by whole components; is_below: strictly below.
bool is_within(std::string_view path, std::string_view dir);
bool is_below(std::string_view path, std::string_view dir);

}  // namespace cellos::cells::spec_text
