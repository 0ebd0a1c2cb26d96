// The event log's line renderer on its fast paths: JSON strings checked 8 bytes at a time must
// escape exactly as the byte-at-a-time definition, and a line written into the batch's room
// (render_line_at, header given by the writer) must be the bytes render_line gives.
#include <catch2/catch.hpp>
#include <random>
#include <string>
#include <vector>

#include "sinks/log_record.h"

namespace cellos::sinks {
namespace {

// The definition, one byte at a time: printable ASCII as it is (but '"' and '\\'), the short
// escapes, \u00XX for other control characters, well-formed UTF-8 copied, anything else U+FFFD.
std::string reference_json_string(std::string_view s) {
  static const char* kHex = "0123456789abcdef";
  std::string out = "\"";
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    const unsigned char c = *p;
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
      ++p;
    } else if (c == '\n') {
      out += "\\n", ++p;
    } else if (c == '\r') {
      out += "\\r", ++p;
    } else if (c == '\t') {
      out += "\\t", ++p;
    } else if (c < 0x20) {
      out += "\\u00";
      out += kHex[c >> 4];
      out += kHex[c & 15];
      ++p;
    } else if (c < 0x80) {
      out += static_cast<char>(c), ++p;
    } else {
      size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
      bool ok = n && c <= 0xf4 && static_cast<size_t>(end - p) >= n;
      for (size_t k = 1; ok && k < n; ++k) ok = (p[k] & 0xc0) == 0x80;
      if (ok && n == 3 && ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] >= 0xa0))) ok = false;
      if (ok && n == 4 && ((c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] >= 0x90))) ok = false;
      if (ok) {
        out.append(reinterpret_cast<const char*>(p), n);
        p += n;
      } else {
        out += "\xef\xbf\xbd";
        ++p;
      }
    }
  }
  return out + "\"";
}

TEST_CASE("event log: JSON strings escape exactly as the byte-at-a-time definition",
          "[events][log]") {
  // Mostly plain text (the 8-byte fast path) with each kind of byte that must stop it, at every
  // offset and length around the 8-byte steps.
  const std::vector<std::string> specials = {"\"", "\\", "\n", "\t", "\x01", "\x1f", " ", "~",
                                             "\x7f", "\x80", "\xff", "\xc3\xa9", "\xe2\x82\xac",
                                             "\xf0\x9f\x98\x80", "\xed\xa0\x80", "\xc0", std::string(1, '\0')};
  std::mt19937 rng(19);
  for (int round = 0; round < 20000; ++round) {
    const size_t len = rng() % 40;
    std::string s;
    while (s.size() < len) {
      if (rng() % 6 == 0)
        s += specials[rng() % specials.size()];
      else
        s += static_cast<char>('a' + rng() % 26);
    }
    std::string out = "prefix";
    append_json_string(out, s);
    INFO("round " << round << ": " << s);
    REQUIRE(out == "prefix" + reference_json_string(s));
  }
}

TEST_CASE("event log: a line rendered into the batch's room is render_line's line",
          "[events][log]") {
  std::vector<EventData> data;
  data.push_back(StartedData{"c-1", "run-\"q\"", "host", "corr", "/bin/true", "native"});
  NetworkPolicyData np;
  np.cell_id = "c-1";
  np.declared_egress = {{"example.org", 443, std::string("tcp"), {"10.0.0.1"}}, {"h", 1, {}}};
  data.push_back(np);
  CompletedData done;
  done.cell_id = "c-\x01";
  done.exit_code = 3;
  data.push_back(done);
  data.push_back(DestroyedData{"c-1", true, false});
  data.push_back(RejectedData{{}, "bad \xff spec"});
  for (size_t i = 0; i < data.size(); ++i) {
    for (const bool with_subject : {false, true}) {
      RecordArena arena;
      auto r = arena.start().initRoot<schema::LogRecord>();
      const std::string id = "id-" + std::to_string(i);  // outlives the record's header view
      const RecordHeader hv{i + 1, 1700000000123456 + static_cast<int64_t>(i), id,
                            "/cellos-reactor/host", with_subject ? "c-1" : "",
                            with_subject ? "corr-\"x\"" : ""};
      set_header(hv, r);
      build_data(data[i], r);
      std::string expect;
      render_line(r.asReader(), expect);
      // A buffer holding an earlier line and junk past it, as the batch does.
      std::string buf = "earlier line\n" + std::string(i * 100, '#');
      const size_t len = render_line_at(hv, r.asReader(), buf, 13);
      INFO(expect);
      REQUIRE(len - 13 == expect.size());
      CHECK(buf.substr(0, 13) == "earlier line\n");
      CHECK(buf.substr(13, len - 13) == expect);
      // The reader-only form gives the same bytes.
      std::string buf2(7, '#');
      const size_t len2 = render_line_at(r.asReader(), buf2, 0);
      CHECK(buf2.substr(0, len2) == expect);
    }
  }
}

}  // namespace
}  // namespace cellos::sinks
