// verify and `events cat` on logs nobody honest wrote: wrongly typed fields, huge or deeply nested
// lines. Each is a report naming the line, never an exception, an abort or gigabytes of memory.
// And the reactor's keys must be regular files: a FIFO is refused, not waited on.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <string>
#include <vector>

#include "base/input_limits.h"
#include "sinks/log_record.h"
#include "sinks/signing.h"
#include "sinks/verify.h"
#include "tests/support/test_support.h"

namespace cellos::sinks {
namespace {

using Catch::Contains;

struct Dir {
  test::TempDir t;
  const std::string path = t.path();
};

void write(const std::string& path, const std::string& text) {
  FILE* f = std::fopen(path.c_str(), "w");
  REQUIRE(f);
  std::fwrite(text.data(), 1, text.size(), f);
  std::fclose(f);
}

const std::string kZeros(64, '0');

std::string event(uint64_t seq, const std::string& type, const std::string& rest = "") {
  return R"({"specversion":"1.0","id":"e)" + std::to_string(seq) +
         R"(","source":"s","type":")" + type + R"(","time":"2026-12-06T00:00:00Z","cellosseq":)" +
         std::to_string(seq) + rest + "}";
}

// An empty batch's manifest at seq 1: passes every check up to the field under test.
std::string empty_manifest(const std::string& extra) {
  return event(1, kBatchSealedType,
               R"(,"data":{"firstSeq":0,"lastSeq":0,"eventCount":0,"merkleRoot":")" +
                   to_hex(merkle_root({})) + R"(","prevDigest":")" + kZeros + "\"" + extra + "}");
}

VerifyReport verify_text(const Dir& d, const std::string& text, bool with_key = false) {
  write(d.path + "/log.jsonl", text);
  VerifyOptions o;
  o.path = d.path + "/log.jsonl";
  if (with_key) {
    auto key = SigningKey::generate();
    REQUIRE(key.ok());
    write(d.path + "/host.pub", key->public_pem());
    o.public_key_path = d.path + "/host.pub";
  }
  auto r = verify_log(o);
  REQUIRE(r.ok());
  return *r;
}

TEST_CASE("verify reports wrongly typed fields by line instead of aborting", "[verify][limits]") {
  Dir d;
  struct Case {
    const char* what;
    std::string text;
    bool key;
    const char* problem;
  };
  const std::string dsse_env = base64(R"({"payloadType":"x","signatures":[1]})");
  std::vector<Case> cases = {
      {"specversion a number", R"({"specversion":1})" "\n", false, "not a CloudEvent"},
      {"type a number",
       R"({"specversion":"1.0","id":"a","source":"s","type":5,"time":"t","cellosseq":1})" "\n",
       false, "not a CloudEvent"},
      {"time an object",
       R"({"specversion":"1.0","id":"a","source":"s","type":"t","time":{},"cellosseq":1})" "\n",
       false, "not a CloudEvent"},
      {"gap data an array", event(1, kGapType, R"(,"data":[1])") + "\n", false, "gap record"},
      {"gap droppedEvents a string", event(1, kGapType, R"(,"data":{"droppedEvents":"9"})") + "\n",
       false, "droppedEvents"},
      {"manifest keyId a number", empty_manifest(R"(,"keyId":5)") + "\n", false, "keyId"},
      {"manifest data a string", event(1, kBatchSealedType, R"(,"data":"x")") + "\n", false,
       "batch_sealed without data"},
      {"dssematerial a number", event(1, "t", R"(,"dssematerial":7)") + "\n", true,
       "dssematerial is not a string"},
      {"DSSE signatures of numbers", event(1, "t", ",\"dssematerial\":\"" + dsse_env + "\"") + "\n",
       true, "DSSE envelope"},
      {"a repeated key", R"({"specversion":"1.0","specversion":"1.0"})" "\n", false,
       "duplicate field"},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    VerifyReport r = verify_text(d, c.text, c.key);
    CHECK_FALSE(r.ok);
    CHECK(r.problem_line == 1);
    CHECK_THAT(r.problem, Contains(c.problem));
  }
}

TEST_CASE("verify refuses a deeply nested line without building it", "[verify][limits]") {
  Dir d;
  // 8 MB of '[': the old reader built every level (a 100 MB line took 4 GB).
  std::string deep = "{\"a\":" + std::string(8 << 20, '[') + "\n";
  VerifyReport r = verify_text(d, deep);
  CHECK_FALSE(r.ok);
  CHECK(r.problem_line == 1);
  CHECK_THAT(r.problem, Contains("nested deeper than 64 levels"));
  CHECK(r.summary().size() < 600);
}

TEST_CASE("verify refuses a line over 16 MiB naming its length", "[verify][limits]") {
  Dir d;
  std::string huge = "{\"a\":\"" + std::string(base::kMaxLogLineBytes, 'x') + "\"}\n";
  VerifyReport r = verify_text(d, huge);
  CHECK_FALSE(r.ok);
  CHECK_THAT(r.problem, Contains("over the 16 MiB a record may have"));
}

TEST_CASE("a FIFO at a key path is refused at once, not waited on", "[signing][limits]") {
  Dir d;
  const std::string fifo = d.path + "/host.key";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  // Before: open(2) blocked until a writer came, deaf to SIGTERM.
  auto k = SigningKey::load_private(fifo);
  REQUIRE_FALSE(k.ok());
  CHECK_THAT(k.error().message(), Contains("not a regular file"));
  auto p = SigningKey::load_public(fifo);
  REQUIRE_FALSE(p.ok());
  CHECK_THAT(p.error().message(), Contains("not a regular file"));
  // A symlink to a real key is refused too: the key is the file named, not where a link points.
  auto key = SigningKey::generate();
  REQUIRE(key.ok());
  write(d.path + "/real.pub", key->public_pem());
  REQUIRE(::symlink((d.path + "/real.pub").c_str(), (d.path + "/link.pub").c_str()) == 0);
  CHECK_FALSE(SigningKey::load_public(d.path + "/link.pub").ok());
}

}  // namespace
}  // namespace cellos::sinks
