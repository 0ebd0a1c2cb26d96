// The tamper matrix: one signed log of three batches, changed in each way an attacker or a
// broken disk could change it; verify must name the first problem and its line.
#include "sinks/verify.h"

#include <catch2/catch.hpp>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "sinks/event_log.h"
#include "sinks/log_io.h"
#include "sinks/signing.h"
#include "tests/support/event_log_support.h"
#include "tests/support/test_support.h"

namespace cellos::sinks {
namespace {

using Catch::Contains;
using Json = nlohmann::json;
using test::TempDir;

// Lines 1-5 events, 6 manifest, 7-11 events, 12 manifest, 13-17 events, 18 manifest.
struct SignedLog {
  TempDir dir;
  std::string path, pub, other_pub;
  std::vector<std::string> lines;

  explicit SignedLog(bool sign = true, const std::string& key_dir = "keys") {
    path = dir.path() + "/events.jsonl";
    REQUIRE(write_key_pair(dir.path() + "/keys").ok());
    REQUIRE(write_key_pair(dir.path() + "/other").ok());
    pub = dir.path() + "/keys/host.pub";
    other_pub = dir.path() + "/other/host.pub";
    EventLogOptions o;
    o.path = path;
    o.host_id = "host-1";
    o.batch_max_events = 5;
    if (sign) o.signing_key_path = dir.path() + "/" + key_dir + "/host.key";
    {
      test::LogHarness h(o);
      h.emit_samples(3);
      h.drain();
    }
    auto text = read_whole(path);
    REQUIRE(text.ok());
    lines = split_jsonl(*text).lines;
    REQUIRE(lines.size() == 18);
  }

  void write(const std::vector<std::string>& ls, bool final_newline = true) {
    std::string t;
    for (size_t i = 0; i < ls.size(); ++i) t += ls[i] + (i + 1 < ls.size() || final_newline ? "\n" : "");
    test::write_text(path, t);
  }

  VerifyReport check(const std::string& key) {
    VerifyOptions v;
    v.path = path;
    if (!key.empty()) v.public_key_path = key;
    auto r = verify_log(v);
    REQUIRE(r.ok());
    return *r;
  }
};

// Replaces the first occurrence of `from` in line `n` (1-based).
void edit(std::vector<std::string>& ls, size_t n, const std::string& from, const std::string& to) {
  auto p = ls[n - 1].find(from);
  REQUIRE(p != std::string::npos);
  ls[n - 1].replace(p, from.size(), to);
}

// Flips one character of the value after `key` in line n.
void flip_after(std::vector<std::string>& ls, size_t n, const std::string& key, size_t skip = 2) {
  auto p = ls[n - 1].find(key);
  REQUIRE(p != std::string::npos);
  char& c = ls[n - 1][p + key.size() + skip];
  c = c == 'a' ? 'b' : c == '0' ? '1' : c == 'A' ? 'B' : 'a';
}

struct Case {
  const char* name;
  std::function<void(std::vector<std::string>&)> change;
  const char* problem;
  size_t line;
};

TEST_CASE("verify: an intact signed log verifies, with its summary", "[verify]") {
  SignedLog log;
  auto r = log.check(log.pub);
  INFO(r.summary());
  CHECK(r.ok);
  CHECK(r.events == 15);
  CHECK(r.batches == 3);
  CHECK(r.signatures_checked);
  CHECK_THAT(r.summary(), Contains("intact: 15 events in 3 batches"));
  CHECK_THAT(r.summary(), Contains("signatures verified"));
  CHECK_THAT(r.summary(), Contains("first 20"));
}

TEST_CASE("verify: the tamper matrix, each change found at its line", "[verify]") {
  const std::vector<Case> cases = {
      {"a byte of an event's data", [](auto& l) { flip_after(l, 8, "\"isolationMode\":\"", 1); },
       "Merkle root mismatch", 12},
      {"a byte of an event's time", [](auto& l) { edit(l, 2, "\"time\":\"20", "\"time\":\"21"); },
       "Merkle root mismatch", 6},
      {"a byte of an event's id", [](auto& l) { flip_after(l, 14, "\"id\":\"", 0); },
       "Merkle root mismatch", 18},
      {"a byte of an event's subject", [](auto& l) { edit(l, 7, "\"subject\":\"cell-1", "\"subject\":\"cell-2"); },
       "Merkle root mismatch", 12},
      {"a byte of a manifest's Merkle root", [](auto& l) { flip_after(l, 6, "\"merkleRoot\":\"", 0); },
       "Merkle root mismatch", 6},
      {"a byte of a manifest's previous digest",
       [](auto& l) { flip_after(l, 12, "\"prevDigest\":\"", 0); }, "broken hash chain", 12},
      {"a byte of a manifest's signature", [](auto& l) { flip_after(l, 18, "\"signature\":\"", 3); },
       "bad batch signature", 18},
      {"a byte of a manifest's time", [](auto& l) { edit(l, 12, "\"time\":\"20", "\"time\":\"21"); },
       "bad batch signature", 12},
      {"a manifest's range", [](auto& l) { edit(l, 6, "\"lastSeq\":5", "\"lastSeq\":4"); },
       "batch_sealed covers", 6},
      {"a sequence number", [](auto& l) { edit(l, 3, "\"cellosseq\":3", "\"cellosseq\":4"); },
       "deleted", 3},
      {"a newline", [](auto& l) { l[2] += l[3]; l.erase(l.begin() + 3); }, "not a JSON object", 3},
      {"a structural byte", [](auto& l) { edit(l, 9, "{", "["); }, "not a JSON object", 9},
      {"a deleted line", [](auto& l) { l.erase(l.begin() + 8); }, "deleted", 9},
      {"a deleted first line", [](auto& l) { l.erase(l.begin()); }, "first records are missing", 1},
      {"a duplicated line", [](auto& l) { l.insert(l.begin() + 8, l[8]); }, "duplicated or reordered", 10},
      {"two swapped lines", [](auto& l) { std::swap(l[7], l[8]); }, "cellosseq jumps", 8},
      {"an inserted line", [](auto& l) { l.insert(l.begin() + 4, l[0]); }, "duplicated or reordered", 5},
      {"a deleted batch", [](auto& l) { l.erase(l.begin() + 6, l.begin() + 12); }, "cellosseq jumps", 7},
      {"a deleted final manifest", [](auto& l) { l.pop_back(); }, "unsealed final batch", 13},
  };
  for (const auto& c : cases) {
    SECTION(c.name) {
      SignedLog log;
      auto lines = log.lines;
      c.change(lines);
      log.write(lines);
      auto r = log.check(log.pub);
      INFO(r.summary());
      CHECK_FALSE(r.ok);
      CHECK_THAT(r.problem, Contains(c.problem));
      CHECK(r.problem_line == c.line);
    }
  }
}

TEST_CASE("verify: a truncated tail is found", "[verify]") {
  SignedLog log;
  auto lines = log.lines;
  lines.back().resize(lines.back().size() / 2);
  log.write(lines, false);
  auto r = log.check(log.pub);
  CHECK_FALSE(r.ok);
  CHECK_THAT(r.problem, Contains("truncated tail"));
  CHECK(r.problem_line == 18);
}

TEST_CASE("verify: a key that is not the given one is named", "[verify]") {
  SignedLog log;
  auto r = log.check(log.other_pub);
  CHECK_FALSE(r.ok);
  CHECK_THAT(r.problem, Contains("not the given key"));
  CHECK(r.problem_line == 6);
}

TEST_CASE("verify: a log re-signed with another key under the right key id fails", "[verify]") {
  // The forger holds `other` and rewrites every manifest's keyId to the trusted key's id.
  SignedLog log(true, "other");
  auto trusted = SigningKey::load_public(log.pub);
  auto forger = SigningKey::load_public(log.other_pub);
  REQUIRE(trusted.ok());
  REQUIRE(forger.ok());
  auto lines = log.lines;
  for (size_t n : {6, 12, 18}) edit(lines, n, forger->key_id(), trusted->key_id());
  log.write(lines);
  auto r = log.check(log.pub);
  CHECK_FALSE(r.ok);
  CHECK_THAT(r.problem, Contains("bad batch signature"));
  CHECK(r.problem_line == 6);
}

TEST_CASE("verify: an unsigned log checks chain and roots, and says what it cannot check",
          "[verify]") {
  SignedLog log(false);
  auto r = log.check("");
  CHECK(r.ok);
  CHECK_THAT(r.summary(), Contains("UNSIGNED"));
  // With a key given, an unsigned batch is an error: stripping signatures is tampering.
  auto k = log.check(log.pub);
  CHECK_FALSE(k.ok);
  CHECK_THAT(k.problem, Contains("unsigned"));
  auto lines = log.lines;
  flip_after(lines, 8, "\"isolationMode\":\"", 1);
  log.write(lines);
  CHECK_FALSE(log.check("").ok);
}

TEST_CASE("verify: a signed log without --public-key checks integrity and says signatures were not",
          "[verify]") {
  SignedLog log;
  auto r = log.check("");
  CHECK(r.ok);
  CHECK_THAT(r.summary(), Contains("NOT checked"));
}

}  // namespace
}  // namespace cellos::sinks
