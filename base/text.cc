#include "base/text.h"

namespace cellos::base {
namespace {

// The length of `s` cut to at most `max` bytes without splitting a UTF-8 sequence: a cut that
// left a lone lead byte would make the message invalid UTF-8 (JSON writers replace or refuse it).
size_t utf8_cut(std::string_view s, size_t max) {
  if (s.size() <= max) return s.size();
  size_t n = max;
  // Step back over continuation bytes (10xxxxxx) to the start of the sequence they belong to.
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xc0) == 0x80) --n;
  return n;
}

}  // namespace

std::string clip(std::string_view s, size_t max) {
  const size_t keep = utf8_cut(s, max);
  std::string out;
  out.reserve(keep + 8);
  for (unsigned char c : s.substr(0, keep)) {
    if (c >= 0x20 && c != 0x7f) {
      out += static_cast<char>(c);
    } else {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    }
  }
  if (keep < s.size()) out += "...";
  return out;
}

std::string bounded_line(std::string_view s, size_t max) {
  const size_t keep = utf8_cut(s, max);
  std::string out(s.substr(0, keep));
  for (char& c : out)
    if (c == '\n' || c == '\r') c = ' ';
  if (keep < s.size()) out += "...";
  return out;
}

}  // namespace cellos::base
