// The event log in-process on a real ring: records and lines, batching by count and by delay,
// one write per batch, manifests and their chain across restarts, recovery of a crashed
// batch, per-event DSSE, the capnp format, keys, and RFC 6962 roots.
#include "base/counting_port.h"
#include "sinks/event_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <set>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "sinks/log_io.h"
#include "sinks/signing.h"
#include "sinks/verify.h"
#include "tests/support/event_log_support.h"
#include "tests/support/test_support.h"

namespace cellos::sinks {
namespace {

using Catch::Contains;
using Json = nlohmann::json;
using test::LogHarness;
using test::TempDir;

std::vector<std::string> lines_of(const std::string& path) {
  auto text = read_whole(path);
  REQUIRE(text.ok());
  return split_jsonl(*text).lines;
}

std::vector<Json> manifests(const std::string& path) {
  std::vector<Json> out;
  for (const auto& l : lines_of(path)) {
    Json j = Json::parse(l);
    if (j["type"] == kBatchSealedType) out.push_back(j);
  }
  return out;
}

EventLogOptions options_in(const TempDir& dir) {
  EventLogOptions o;
  o.path = dir.path() + "/events.jsonl";
  o.host_id = "host-1";
  return o;
}

VerifyReport verify(const std::string& path, const std::string& pub = "") {
  VerifyOptions v;
  v.path = path;
  if (!pub.empty()) v.public_key_path = pub;
  auto r = verify_log(v);
  REQUIRE(r.ok());
  INFO(r->summary());
  return *r;
}

using base::CountingPort;

TEST_CASE("event log: every line is a CloudEvent with a dense cellosseq from 1", "[eventlog]") {
  TempDir dir;
  LogHarness h(options_in(dir));
  h.emit_samples(3);
  h.drain();
  auto lines = lines_of(dir.path() + "/events.jsonl");
  REQUIRE(lines.size() == 16);  // 15 events + 1 manifest
  for (size_t i = 0; i < lines.size(); ++i) {
    INFO(lines[i]);
    Json j = Json::parse(lines[i]);
    CHECK(j["specversion"] == "1.0");
    CHECK(j["source"] == "/cellos-reactor/host-1");
    CHECK(j["cellosseq"] == i + 1);
  }
  Json started = Json::parse(lines[0]);
  CHECK(started["type"] == "dev.cellos.events.cell.lifecycle.v1.started");
  CHECK(started["subject"] == "cell-0");
  CHECK(started["data"] == Json{{"cellId", "cell-0"}, {"runId", "run-0"}, {"hostId", "host-1"}});
  Json policy = Json::parse(lines[1]);
  CHECK(policy["data"]["declaredEgressCount"] == 2);
  CHECK(policy["data"]["declaredEgress"][1]["protocol"].is_null());
  Json completed = Json::parse(lines[2]);
  CHECK(completed["data"]["reason"] == "setup_failed");
  CHECK(completed["data"]["signal"].is_null());
  CHECK_THAT(completed["data"]["error"].get<std::string>(), Contains("\xef\xbf\xbd"));
  CHECK(Json::parse(lines[4])["data"]["cellId"].is_null());
  CHECK(h.log().events_written() == 15);
  CHECK(verify(dir.path() + "/events.jsonl").ok);
}

TEST_CASE("event log: a batch closes at batch_max_events, with one write per batch",
          "[eventlog]") {
  TempDir dir;
  auto o = options_in(dir);
  o.batch_max_events = 10;
  o.batch_max_delay = std::chrono::milliseconds(60000);
  auto ring = reactor::Ring::create({});
  REQUIRE(ring.ok());
  CountingPort port(**ring);
  auto log = EventLog::open(o, port);
  REQUIRE(log.ok());
  for (int i = 0; i < 10; ++i)  // 50 events: 5 full batches
    for (auto& d : test::sample_events(i)) (*log)->emit(make_event(std::move(d)));
  while ((*log)->events_written() < 50) REQUIRE((*ring)->run_once().ok());
  (*log)->flush();
  while (!(*log)->drained()) REQUIRE((*ring)->run_once().ok());
  auto m = manifests(o.path);
  REQUIRE(m.size() == 5);
  for (size_t i = 0; i < m.size(); ++i) {
    CHECK(m[i]["data"]["eventCount"] == 10);
    CHECK(m[i]["data"]["firstSeq"] == i * 11 + 1);
    CHECK(m[i]["data"]["lastSeq"] == i * 11 + 10);
  }
  // Backlogged batches may share a write; never more than one write per batch.
  CHECK(port.writes >= 1);
  CHECK(port.writes <= 5);
}

TEST_CASE("event log: a batch closes after batch_max_delay without a flush", "[eventlog]") {
  TempDir dir;
  auto o = options_in(dir);
  o.batch_max_delay = std::chrono::milliseconds(30);
  LogHarness h(o);
  const auto t0 = std::chrono::steady_clock::now();
  h.log().emit(make_event(StartedData{"c", "r", "h"}));
  CHECK(h.log().events_written() == 0);
  REQUIRE(h.run_until([&] { return h.log().events_written() == 1; }));
  const auto waited = std::chrono::steady_clock::now() - t0;
  CHECK(waited >= std::chrono::milliseconds(25));
  CHECK(waited < std::chrono::milliseconds(2000));
  CHECK(manifests(o.path).size() == 1);
}

TEST_CASE("event log: the chain and sequence continue across a restart, and verify", "[eventlog]") {
  TempDir dir;
  REQUIRE(write_key_pair(dir.path() + "/keys").ok());
  auto o = options_in(dir);
  o.signing_key_path = dir.path() + "/keys/host.key";
  LogHarness h(o);
  h.emit_samples(2);
  h.drain();
  REQUIRE(h.reopen());
  CHECK(h.log().next_seq() == 12);
  h.emit_samples(1);
  h.drain();
  auto m = manifests(o.path);
  REQUIRE(m.size() == 2);
  CHECK(m[0]["data"]["prevDigest"] == std::string(64, '0'));
  CHECK(m[1]["data"]["prevDigest"] == to_hex(sha256(lines_of(o.path)[10])));
  CHECK(m[1]["data"]["firstSeq"] == 12);
  auto r = verify(o.path, dir.path() + "/keys/host.pub");
  CHECK(r.ok);
  CHECK(r.events == 15);
  CHECK(r.batches == 2);
  CHECK(r.signatures_checked);
}

TEST_CASE("event log: a crash mid-batch leaves a tail the next start seals over", "[eventlog]") {
  TempDir dir;
  REQUIRE(write_key_pair(dir.path() + "/keys").ok());
  auto o = options_in(dir);
  o.signing_key_path = dir.path() + "/keys/host.key";
  o.batch_max_events = 5;
  {
    LogHarness h(o);
    h.emit_samples(2);  // two batches of 5
    h.drain();
  }
  // The crash: the last manifest never made it, and the line before it was cut mid-write.
  auto lines = lines_of(o.path);
  REQUIRE(lines.size() == 12);
  std::string text;
  for (size_t i = 0; i < 10; ++i) text += lines[i] + "\n";
  text += lines[10].substr(0, 40);
  test::write_text(o.path, text);
  CHECK_THAT(verify(o.path).problem, Contains("truncated tail"));

  LogHarness h(o);  // the restart
  CHECK(h.log().buffered_bytes() == 0);  // the recovery manifest is already on disk
  CHECK(h.log().drained());
  h.emit_samples(1);
  h.drain();
  CHECK(h.log().buffered_bytes() == 0);
  CHECK(h.log().dropped_events() == 0);
  CHECK(h.log().events_written() == 5);
  auto m = manifests(o.path);
  REQUIRE(m.size() == 3);
  CHECK(m[1]["data"]["recovered"] == true);
  CHECK(m[1]["data"]["truncatedBytes"] == 40);
  CHECK(m[1]["data"]["firstSeq"] == 7);
  CHECK(m[1]["data"]["lastSeq"] == 10);
  auto r = verify(o.path, dir.path() + "/keys/host.pub");
  CHECK(r.ok);
  CHECK(r.recovered_batches == 1);
  CHECK(r.events == 14);
}

TEST_CASE("event log: a torn line right after a manifest is cut and recorded by an empty seal",
          "[eventlog]") {
  TempDir dir;
  auto o = options_in(dir);
  o.batch_max_events = 5;
  {
    LogHarness h(o);
    h.emit_samples(1);
    h.drain();
  }
  auto lines = lines_of(o.path);
  REQUIRE(lines.size() == 6);
  test::write_text(o.path, test::read_text(o.path) + lines[0].substr(0, 30));
  {
    LogHarness h(o);
    h.emit_samples(1);
    h.drain();
  }
  auto m = manifests(o.path);
  REQUIRE(m.size() == 3);
  CHECK(m[1]["data"]["eventCount"] == 0);
  CHECK(m[1]["data"]["truncatedBytes"] == 30);
  CHECK(m[1]["data"]["recovered"] == true);
  auto r = verify(o.path);
  CHECK(r.ok);
  CHECK(r.events == 10);
}

TEST_CASE("event log: per-event DSSE signatures verify, and pinpoint a modified event",
          "[eventlog]") {
  TempDir dir;
  REQUIRE(write_key_pair(dir.path() + "/keys").ok());
  auto o = options_in(dir);
  o.signing_key_path = dir.path() + "/keys/host.key";
  o.per_event_signing = true;
  {
    LogHarness h(o);
    h.emit_samples(2);
    h.drain();
  }
  auto lines = lines_of(o.path);
  Json j = Json::parse(lines[0]);
  REQUIRE(j.contains("dssematerial"));
  std::string env;
  REQUIRE(unbase64(j["dssematerial"].get<std::string>(), env));
  Json e = Json::parse(env);
  CHECK(e["payloadType"] == kDssePayloadType);
  CHECK(e["signatures"][0]["sig"].get<std::string>().size() == 88);
  auto r = verify(o.path, dir.path() + "/keys/host.pub");
  CHECK(r.ok);
  CHECK(r.dsse_checked == 10);

  auto pos = lines[3].find("\"Forced\"");
  REQUIRE(pos != std::string::npos);
  lines[3].replace(pos, 8, "\"Clean\" ");
  std::string text;
  for (auto& l : lines) text += l + "\n";
  test::write_text(o.path, text);
  auto bad = verify(o.path, dir.path() + "/keys/host.pub");
  CHECK_FALSE(bad.ok);
  CHECK(bad.problem_line == 4);
  CHECK_THAT(bad.problem, Contains("DSSE"));
}

TEST_CASE("event log: the capnp format renders through events cat to the same lines",
          "[eventlog]") {
  TempDir dir;
  REQUIRE(write_key_pair(dir.path() + "/keys").ok());
  auto o = options_in(dir);
  o.path = dir.path() + "/events.capnp";
  o.format = LogFormat::kCapnp;
  o.signing_key_path = dir.path() + "/keys/host.key";
  o.batch_max_events = 4;
  {
    LogHarness h(o);
    h.emit_samples(2);
    h.drain();
    REQUIRE(h.reopen());  // recovery reads the packed stream
    h.emit_samples(1);
    h.drain();
  }
  auto bytes = read_whole(o.path);
  REQUIRE(bytes.ok());
  REQUIRE(!bytes->empty());
  CHECK((*bytes)[0] != '{');
  auto text = cat_log(o.path);
  REQUIRE(text.ok());
  auto lines = split_jsonl(*text).lines;
  REQUIRE(lines.size() == 15 + 5);  // 15 events, batches of 4: 4+4+2 | 4+1
  for (size_t i = 0; i < lines.size(); ++i) CHECK(Json::parse(lines[i])["cellosseq"] == i + 1);
  auto r = verify(o.path, dir.path() + "/keys/host.pub");
  CHECK(r.ok);
  CHECK(r.format == "capnp");
  CHECK(r.events == 15);

  // A flipped byte in the packed stream is found too.
  std::string b = *bytes;
  b[b.size() / 2] = static_cast<char>(b[b.size() / 2] ^ 0x20);
  test::write_text(o.path, b);
  CHECK_FALSE(verify(o.path, dir.path() + "/keys/host.pub").ok);
}

TEST_CASE("event log: a log file removed underneath is recreated and writing goes on",
          "[eventlog]") {
  TempDir dir;
  auto o = options_in(dir);
  LogHarness h(o);
  h.emit_samples(1);
  h.drain();
  REQUIRE(::unlink(o.path.c_str()) == 0);
  h.emit_samples(1);
  h.drain();
  auto lines = lines_of(o.path);
  REQUIRE(lines.size() == 6);
  CHECK(Json::parse(lines[0])["cellosseq"] == 7);
  CHECK(h.log().events_written() == 10);
}

TEST_CASE("keys: keygen writes a 0600 PKCS#8 key and a public key with the same id", "[eventlog]") {
  TempDir dir;
  auto id = write_key_pair(dir.path() + "/k");
  REQUIRE(id.ok());
  struct stat st {};
  REQUIRE(::stat((dir.path() + "/k/host.key").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK_THAT(test::read_text(dir.path() + "/k/host.key"), Contains("BEGIN PRIVATE KEY"));
  auto priv = SigningKey::load_private(dir.path() + "/k/host.key");
  auto pub = SigningKey::load_public(dir.path() + "/k/host.pub");
  REQUIRE(priv.ok());
  REQUIRE(pub.ok());
  CHECK(priv->key_id() == *id);
  CHECK(pub->key_id() == *id);
  const std::string sig = priv->sign("hello");
  CHECK(pub->verify("hello", sig));
  CHECK_FALSE(pub->verify("hellp", sig));
  CHECK_FALSE(write_key_pair(dir.path() + "/k").ok());  // never overwrites a key
}

TEST_CASE("merkle: RFC 6962 leaf and node hashes", "[eventlog]") {
  CHECK(to_hex(merkle_root({})) ==
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(to_hex(merkle_leaf("")) ==
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d");
  // Three leaves: root = H(1 || H(1 || a || b) || c), the split at the largest power of two.
  const Digest a = merkle_leaf("a"), b = merkle_leaf("b"), c = merkle_leaf("c");
  std::string ab = "\x01";
  ab.append(reinterpret_cast<const char*>(a.data()), 32);
  ab.append(reinterpret_cast<const char*>(b.data()), 32);
  const Digest hab = sha256(ab);
  std::string abc = "\x01";
  abc.append(reinterpret_cast<const char*>(hab.data()), 32);
  abc.append(reinterpret_cast<const char*>(c.data()), 32);
  CHECK(merkle_root({a, b, c}) == sha256(abc));
}

TEST_CASE("event log: opening in a nonexistent directory fails naming the path", "[eventlog]") {
  TempDir dir;
  auto o = options_in(dir);
  o.path = dir.path() + "/no/such/dir/events.jsonl";
  auto ring = reactor::Ring::create({});
  REQUIRE(ring.ok());
  auto log = EventLog::open(o, **ring);
  REQUIRE_FALSE(log.ok());
  CHECK(log.error().err == ENOENT);
  CHECK_THAT(log.error().message(), Contains(o.path));
  CHECK_THAT(log.error().message(), Contains("event log"));
}

TEST_CASE("event log: event ids are unique across a restart", "[eventlog]") {
  TempDir dir;
  LogHarness h(options_in(dir));
  h.emit_samples(1);
  REQUIRE(h.reopen());
  h.emit_samples(1);
  h.drain();
  std::set<std::string> ids;
  auto lines = lines_of(dir.path() + "/events.jsonl");
  for (const auto& l : lines) ids.insert(Json::parse(l)["id"].get<std::string>());
  CHECK(ids.size() == lines.size());
}

TEST_CASE("event log: a pre-sequence log is refused rather than appended to", "[eventlog]") {
  TempDir dir;
  auto o = options_in(dir);
  test::write_text(o.path, "{\"specversion\":\"1.0\",\"id\":\"x\",\"type\":\"t\"}\n");
  auto ring = reactor::Ring::create({});
  REQUIRE(ring.ok());
  auto log = EventLog::open(o, **ring);
  REQUIRE_FALSE(log.ok());
  CHECK_THAT(log.error().message(), Contains("cellosseq"));
}

}  // namespace
}  // namespace cellos::sinks

namespace cellos::sinks {
namespace {

TEST_CASE("record arena: each record starts on a zeroed segment", "[eventlog]") {
  RecordArena a;
  for (int i = 0; i < 3; ++i) {
    auto r = a.start().initRoot<schema::LogRecord>();
    r.setId("a-long-enough-id-to-use-several-words");
    r.setSeq(12345);
    build_data(StartedData{"c", "r", "h"}, r);
  }
  auto r = a.start().initRoot<schema::LogRecord>();
  CHECK(r.getSeq() == 0);
  CHECK_FALSE(r.hasId());
  CHECK(r.getData().which() == schema::LogRecord::Data::STARTED);  // the union's default
  CHECK_FALSE(r.getData().getStarted().hasCellId());
}

}  // namespace
}  // namespace cellos::sinks
