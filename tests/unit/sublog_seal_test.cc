// One evidence trail: nested reactors' signed logs sealed into their parent's log (the real
// writer, real keys, real files), then followed by verify_trail at every depth; every change
// to a sealed sub-log, and every hostile seal, named in one line.
#include "sinks/sublog_seal.h"

#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
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
using test::TempDir;
namespace fs = std::filesystem;

// A signed log at `path` (key pair in `key_dir`): three rounds of sample events, then `extra`
// (seals), in batches of 5. Returns the raw public key.
std::string write_log(const std::string& path, const std::string& key_dir, const std::string& host,
                      const std::vector<EventData>& extra = {},
                      LogFormat format = LogFormat::kJsonl) {
  fs::create_directories(fs::path(path).parent_path());
  fs::create_directories(key_dir);
  if (!test::path_exists(key_dir + "/host.key")) REQUIRE(write_key_pair(key_dir).ok());
  EventLogOptions o;
  o.path = path;
  o.host_id = host;
  o.batch_max_events = 5;
  o.format = format;
  o.signing_key_path = key_dir + "/host.key";
  {
    test::LogHarness h(o);
    h.emit_samples(3);
    for (const auto& d : extra) h.log().emit(make_event(d));
    h.drain();
  }
  auto k = SigningKey::load_public(key_dir + "/host.pub");
  REQUIRE(k.ok());
  return k->raw_public_key();
}

NestedSealedData seal(const std::string& log_path, const std::string& sub, const std::string& key,
                      const std::string& cell, const std::string& nesting) {
  SublogSealOptions o;
  o.log_path = log_path;
  o.sublog_path = sub;
  o.public_key = key;
  o.cell_id = cell;
  o.nesting_path = nesting;
  return seal_sublog(o);
}

// root/events.jsonl (host-a) seals root/nested/c1/events.jsonl (its reactor: inner-1), which
// seals root/nested/c1/state/nested/c2/events.jsonl (inner-2). Keys outside the logs' trees
// except the nested ones (the nested backend writes those into the nested directory).
struct Trail {
  TempDir dir;
  std::string root, top, d1, d2, k1, k2;
  NestedSealedData s1, s2;

  explicit Trail(bool three_levels = true) {
    root = dir.path();
    top = root + "/events.jsonl";
    d1 = root + "/nested/c1/events.jsonl";
    d2 = root + "/nested/c1/state/nested/c2/events.jsonl";
    std::vector<EventData> seals1;
    if (three_levels) {
      k2 = write_log(d2, root + "/nested/c1/state/nested/c2/keys", "inner-2");
      s2 = seal(d1, d2, k2, "c2", "inner-1/c2");
      REQUIRE(s2.verified);
      seals1.push_back(s2);
    }
    k1 = write_log(d1, root + "/nested/c1/keys", "inner-1", seals1);
    s1 = seal(top, d1, k1, "c1", "host-a/c1");
    REQUIRE(s1.error == "");
    REQUIRE(s1.verified);
    write_log(top, root + "/keys", "host-a", {s1});
  }

  TrailReport check(unsigned max_depth = kMaxNestingDepth, bool follow = true) {
    TrailOptions o;
    o.top.path = top;
    o.top.public_key_path = root + "/keys/host.pub";
    o.max_depth = max_depth;
    o.follow_nested = follow;
    auto r = verify_trail(o);
    REQUIRE(r.ok());
    REQUIRE(r->top.ok);
    return *r;
  }
};

std::vector<std::string> lines_of_file(const std::string& path) {
  auto t = read_whole(path);
  REQUIRE(t.ok());
  return split_jsonl(*t).lines;
}

void write_lines(const std::string& path, const std::vector<std::string>& ls) {
  std::string t;
  for (const auto& l : ls) t += l + "\n";
  test::write_text(path, t);
}

TEST_CASE("nested trail: a 2-level and a 3-level trail verify at every depth", "[sublog]") {
  SECTION("two levels") {
    Trail t(false);
    auto r = t.check();
    INFO(r.problem);
    REQUIRE(r.ok);
    REQUIRE(r.logs.size() == 1);
    CHECK(r.deepest == 1);
    CHECK(r.logs[0].path == "nested/c1/events.jsonl");
    CHECK(r.logs[0].nesting == "host-a/c1");
    CHECK_THAT(r.logs[0].summary, Contains("intact: 15 events") && Contains("signatures verified"));
  }
  SECTION("three levels") {
    Trail t;
    CHECK(t.s1.path == "nested/c1/events.jsonl");
    CHECK(t.s2.path == "state/nested/c2/events.jsonl");
    CHECK(t.s1.event_count == 16);  // 15 samples and the seal of c2
    CHECK(t.s1.size_bytes == fs::file_size(t.d1));
    CHECK(t.s1.sha256 == std::string(reinterpret_cast<const char*>(sha256(*read_whole(t.d1)).data()), 32));
    CHECK(t.s1.head_digest.size() == 32);
    CHECK(t.s1.last_seq == 20);  // 16 records and 4 manifests
    auto r = t.check();
    INFO(r.problem);
    REQUIRE(r.ok);
    REQUIRE(r.logs.size() == 2);
    CHECK(r.deepest == 2);
    CHECK(r.logs[1].depth == 2);
    CHECK(r.logs[1].path == "nested/c1/state/nested/c2/events.jsonl");
    CHECK(r.logs[1].nesting == "host-a/c1 > inner-1/c2");
  }
  SECTION("--no-nested counts the seals it did not follow") {
    Trail t;
    auto r = t.check(kMaxNestingDepth, false);
    CHECK(r.ok);
    CHECK(r.logs.empty());
    CHECK(r.seals_not_followed == 1);
  }
}

TEST_CASE("nested trail: the seal is one CloudEvent of the parent's signed log", "[sublog]") {
  Trail t(false);
  const auto ls = lines_of_file(t.top);
  std::string seal_line;
  for (const auto& l : ls)
    if (l.find(kNestedSealedType) != std::string::npos) seal_line = l;
  REQUIRE(!seal_line.empty());
  auto j = nlohmann::json::parse(seal_line);
  CHECK(j["subject"] == "c1");
  CHECK(j["type"] == "dev.cellos.events.cell.nested.v1.sealed");
  CHECK(j["data"]["path"] == "nested/c1/events.jsonl");
  CHECK(j["data"]["verified"] == true);
  CHECK(j["data"]["nestingPath"] == "host-a/c1");
  CHECK(j["data"]["publicKey"] == base64(t.k1));
  // The data the JSON helpers read back is what was sealed.
  auto back = sealed_from_json(j["data"].dump());
  REQUIRE(back.ok());
  CHECK(back->sha256 == t.s1.sha256);
  CHECK(back->head_digest == t.s1.head_digest);
  CHECK(sealed_to_json(*back) == sealed_to_json(t.s1));
}

TEST_CASE("nested trail: a capnp parent log is followed as its JSONL twin", "[sublog]") {
  TempDir dir;
  const std::string top = dir.path() + "/events.capnp", d1 = dir.path() + "/nested/c1/events.jsonl";
  const std::string k1 = write_log(d1, dir.path() + "/nested/c1/keys", "inner-1");
  write_log(top, dir.path() + "/keys", "host-a", {seal(top, d1, k1, "c1", "host-a/c1")},
            LogFormat::kCapnp);
  TrailOptions o;
  o.top.path = top;
  o.top.public_key_path = dir.path() + "/keys/host.pub";
  auto r = verify_trail(o);
  REQUIRE(r.ok());
  INFO(r->problem);
  CHECK(r->ok);
  CHECK(r->logs.size() == 1);
}

TEST_CASE("nested trail: every change to a sealed sub-log is caught, by depth", "[sublog]") {
  Trail t;
  auto ls = lines_of_file(t.d1);
  std::string problem;
  SECTION("a byte changed") {
    ls[1][ls[1].find("cell-0")] = 'C';
    write_lines(t.d1, ls);
    problem = "SHA-256";
  }
  SECTION("truncated (its last batch cut)") {
    ls.resize(ls.size() - 1);
    write_lines(t.d1, ls);
    problem = "truncated after it was sealed";
  }
  SECTION("appended to") {
    ls.push_back(ls.back());
    write_lines(t.d1, ls);
    problem = "appended to after it was sealed";
  }
  SECTION("swapped for another valid log of another key") {
    write_log(t.root + "/other/events.jsonl", t.root + "/other/keys", "inner-1");
    fs::rename(t.root + "/other/events.jsonl", t.d1);
    problem = "after it was sealed";  // its size or SHA-256
  }
  SECTION("removed") {
    fs::remove(t.d1);
    problem = "missing";
  }
  SECTION("replaced by a symlink to a copy") {
    fs::copy_file(t.d1, t.root + "/copy.jsonl");
    fs::remove(t.d1);
    fs::create_symlink(t.root + "/copy.jsonl", t.d1);
    problem = "a symlink on the way";
  }
  SECTION("a hard link in its place") {
    fs::create_hard_link(t.d1, t.root + "/second-name");
    problem = "hard links";
  }
  SECTION("its directory swapped for a symlink") {
    fs::rename(t.root + "/nested/c1", t.root + "/moved");
    fs::create_symlink(t.root + "/moved", t.root + "/nested/c1");
    problem = "a symlink on the way";
  }
  SECTION("the depth-2 log changed") {
    auto l2 = lines_of_file(t.d2);
    l2[0][l2[0].find("cell-0")] = 'C';
    write_lines(t.d2, l2);
    problem = "SHA-256";
  }
  auto r = t.check();
  INFO(r.problem);
  CHECK_FALSE(r.ok);
  CHECK_THAT(r.problem, Contains(problem));
  const bool deep = problem == "SHA-256" && r.problem.find("inner-1/c2") != std::string::npos;
  CHECK_THAT(r.problem, Contains(deep ? "depth 2" : "depth 1"));
  CHECK(r.problem.find('\n') == std::string::npos);
}

TEST_CASE("nested trail: the seal records a broken or forged sub-log as failed, never drops it",
          "[sublog]") {
  TempDir dir;
  const std::string top = dir.path() + "/events.jsonl";
  const std::string d1 = dir.path() + "/nested/c1/events.jsonl";
  std::string key = write_log(d1, dir.path() + "/nested/c1/keys", "inner-1");
  std::string want;
  std::string expect_path = "nested/c1/events.jsonl";
  SECTION("signed by another key than the one the host made") {
    REQUIRE(write_key_pair(dir.path() + "/made").ok());
    key = SigningKey::load_public(dir.path() + "/made/host.pub")->raw_public_key();
    want = "does not verify";
  }
  SECTION("a line changed by the nested command") {
    auto ls = lines_of_file(d1);
    ls[2][ls[2].find("cell-0")] = 'C';
    write_lines(d1, ls);
    want = "Merkle root mismatch";
  }
  SECTION("missing: no nested reactor wrote a log") {
    fs::remove(d1);
    want = "missing";
  }
  SECTION("a symlink to a host file") {
    fs::remove(d1);
    fs::create_symlink("/etc/passwd", d1);
    want = "a symlink on the way";
  }
  SECTION("a FIFO (the open must not hang)") {
    fs::remove(d1);
    REQUIRE(::mkfifo(d1.c_str(), 0600) == 0);
    want = "not a regular file";
  }
  SECTION("a hard link to another file") {
    fs::create_hard_link(d1, dir.path() + "/elsewhere");
    want = "hard links";
  }
  SECTION("empty") {
    test::write_text(d1, "");
    want = "is empty";
  }
  SECTION("not below the log's directory") {
    SublogSealOptions o;
    o.log_path = dir.path() + "/sub/events.jsonl";
    o.sublog_path = d1;
    o.public_key = key;
    auto s = seal_sublog(o);
    CHECK_FALSE(s.verified);
    CHECK(s.path.empty());
    CHECK_THAT(s.error, Contains("is not below the log's directory"));
    return;
  }
  SECTION("over the size a seal reads") {
    SublogSealOptions o;
    o.log_path = top;
    o.sublog_path = d1;
    o.public_key = key;
    o.max_bytes = 100;
    auto s = seal_sublog(o);
    CHECK_FALSE(s.verified);
    CHECK(s.size_bytes == fs::file_size(d1));
    CHECK_THAT(s.error, Contains("over the 100"));
    return;
  }
  SECTION("a public key that is not one") {
    key = "short";
    want = "public key";
  }
  auto s = seal(top, d1, key, "c1", "host-a/c1");
  INFO(s.error);
  CHECK_FALSE(s.verified);
  CHECK_THAT(s.error, Contains(want));
  CHECK(s.path == expect_path);
  // Sealed into the parent's log, verify names it at its depth and fails.
  write_log(top, dir.path() + "/keys", "host-a", {s});
  TrailOptions o;
  o.top.path = top;
  auto r = verify_trail(o);
  REQUIRE(r.ok());
  CHECK(r->top.ok);
  CHECK_FALSE(r->ok);
  CHECK_THAT(r->problem, Contains("depth 1") && Contains("sealed as FAILED") && Contains(want));
}

TEST_CASE("nested trail: a killed nested reactor's unsealed tail is sealed and counted", "[sublog]") {
  TempDir dir;
  const std::string top = dir.path() + "/events.jsonl", d1 = dir.path() + "/nested/c1/events.jsonl";
  const std::string key = write_log(d1, dir.path() + "/nested/c1/keys", "inner-1");
  auto ls = lines_of_file(d1);
  ls.pop_back();  // its last manifest never written
  std::string text;
  for (const auto& l : ls) text += l + "\n";
  const std::string torn = "{\"specversion\":\"1.0\",\"id\":";  // and a record cut short
  test::write_text(d1, text + torn);
  auto s = seal(top, d1, key, "c1", "host-a/c1");
  INFO(s.error);
  REQUIRE(s.verified);
  CHECK(s.unsealed_records == 5);
  CHECK(s.torn_bytes == torn.size());
  write_log(top, dir.path() + "/keys", "host-a", {s});
  TrailOptions o;
  o.top.path = top;
  auto r = verify_trail(o);
  REQUIRE(r.ok());
  INFO(r->problem);
  REQUIRE(r->ok);
  CHECK_THAT(r->logs[0].summary, Contains("5 records after its last manifest") &&
                                     Contains("pinned by the seal's SHA-256 only"));
}

TEST_CASE("nested trail: hostile seals in a signed parent log are refused by name", "[sublog]") {
  TempDir dir;
  const std::string top = dir.path() + "/events.jsonl", d1 = dir.path() + "/nested/c1/events.jsonl";
  const std::string key = write_log(d1, dir.path() + "/nested/c1/keys", "inner-1");
  NestedSealedData s = seal(top, d1, key, "c1", "host-a/c1");
  REQUIRE(s.verified);
  std::string want;
  SECTION("..") {
    s.path = "nested/../../etc/passwd";
    want = "\"..\" component";
  }
  SECTION("absolute") {
    s.path = d1;
    want = "absolute";
  }
  SECTION("empty") {
    s.path = "";
    want = "empty";
  }
  SECTION("a dot component") {
    s.path = "nested/./c1/events.jsonl";
    want = "\".\" component";
  }
  SECTION("a symlink escaping the log's directory") {
    TempDir outside;
    fs::copy_file(d1, outside.path() + "/events.jsonl");
    fs::create_symlink(outside.path(), dir.path() + "/escape");
    s.path = "escape/events.jsonl";
    want = "a symlink on the way";
  }
  SECTION("a key that is not Ed25519") {
    s.public_key = std::string(31, 'k');
    want = "not an Ed25519 public key";
  }
  SECTION("a keyId that is not the key's") {
    s.key_id = "0011223344556677";
    want = "is not the recorded key's id";
  }
  SECTION("a digest that is not the file's") {
    s.sha256[0] ^= 1;
    want = "changed after it was sealed";
  }
  SECTION("a head that is not the file's") {
    s.head_digest[0] ^= 1;
    want = "its head";
  }
  SECTION("the same sub-log sealed twice") {
    write_log(top, dir.path() + "/keys", "host-a", {s, s});
    want = "the same file as an earlier seal";
  }
  if (!test::path_exists(top)) write_log(top, dir.path() + "/keys", "host-a", {s});
  TrailOptions o;
  o.top.path = top;
  o.top.public_key_path = dir.path() + "/keys/host.pub";
  auto r = verify_trail(o);
  REQUIRE(r.ok());
  CHECK(r->top.ok);
  CHECK_FALSE(r->ok);
  CHECK_THAT(r->problem, Contains(want) && Contains("depth 1"));
}

TEST_CASE("nested trail: a live parent log is followed in its sealed part only", "[sublog]") {
  Trail t(false);
  auto ls = lines_of_file(t.top);
  TrailOptions o;
  o.top.path = t.top;
  o.top.public_key_path = t.root + "/keys/host.pub";
  o.top_live = true;  // as when its writer holds the lock
  SECTION("a record being written after the seal's batch: the seal is followed") {
    test::write_text(t.top, read_whole(t.top).value() + "{\"specversion\":");
    auto r = verify_trail(o);
    REQUIRE(r.ok());
    CHECK(r->top.tail_pending);
    CHECK(r->ok);
    CHECK(r->logs.size() == 1);
    o.top_live = false;  // the same file with no writer: a truncated tail, nothing followed
    r = verify_trail(o);
    REQUIRE(r.ok());
    CHECK_FALSE(r->ok);
    CHECK(r->logs.empty());
  }
  SECTION("the seal in a batch not sealed yet: not followed") {
    REQUIRE(ls.back().find("batch_sealed") != std::string::npos);
    ls.pop_back();
    REQUIRE(ls.back().find(kNestedSealedType) != std::string::npos);
    write_lines(t.top, ls);
    auto r = verify_trail(o);
    REQUIRE(r.ok());
    CHECK(r->top.tail_pending);
    CHECK(r->ok);
    CHECK(r->logs.empty());
  }
}

TEST_CASE("nested trail: depth is bounded", "[sublog]") {
  // Nine levels, each log one directory below the one sealing it: the deepest first.
  TempDir dir;
  std::vector<std::string> paths;
  std::string d = dir.path();
  for (int i = 0; i <= 9; ++i) {
    paths.push_back(d + "/events.jsonl");
    d += "/n";
  }
  std::vector<EventData> seals;
  for (int i = 9; i >= 0; --i) {
    const std::string key = write_log(paths[i], paths[i] + ".keys", "level-" + std::to_string(i), seals);
    seals.clear();
    if (i > 0) {
      auto s = seal(paths[i - 1], paths[i], key, "c" + std::to_string(i), "level-" + std::to_string(i - 1));
      REQUIRE(s.verified);
      seals.push_back(s);
    }
  }
  TrailOptions o;
  o.top.path = paths[0];
  auto r = verify_trail(o);
  REQUIRE(r.ok());
  CHECK_FALSE(r->ok);
  CHECK(r->logs.size() == 8);
  CHECK(r->deepest == 8);
  CHECK_THAT(r->problem, Contains("depth 9") && Contains("nested deeper than 8 levels"));
  o.max_depth = 9;
  r = verify_trail(o);
  REQUIRE(r.ok());
  INFO(r->problem);
  CHECK(r->ok);
  CHECK(r->deepest == 9);
}

TEST_CASE("nested trail: a seal's data of the wrong shape is named, never thrown", "[sublog]") {
  NestedSealedData d;
  d.cell_id = "c1";
  d.path = "nested/c1/events.jsonl";
  d.public_key = std::string(32, 'k');
  d.sha256 = std::string(32, 's');
  auto good = nlohmann::json::parse(sealed_to_json(d));
  REQUIRE(sealed_from_json(good.dump()).ok());
  auto bad = [&](const char* field, nlohmann::json value) {
    auto j = good;
    if (value.is_discarded()) j.erase(field); else j[field] = value;
    auto r = sealed_from_json(j.dump());
    REQUIRE_FALSE(r.ok());
    return r.error().message();
  };
  CHECK_THAT(bad("sizeBytes", -1), Contains("sizeBytes missing or not an unsigned integer"));
  CHECK_THAT(bad("sizeBytes", "12"), Contains("sizeBytes"));
  CHECK_THAT(bad("path", 7), Contains("path missing or not a string"));
  CHECK_THAT(bad("verified", "yes"), Contains("verified missing or not a boolean"));
  CHECK_THAT(bad("sha256", "xyz"), Contains("sha256 is not a hex SHA-256"));
  CHECK_THAT(bad("headDigest", std::string(62, 'a')), Contains("headDigest is not a hex SHA-256"));
  CHECK_THAT(bad("publicKey", "%%%"), Contains("publicKey is not base64"));
  CHECK_THAT(bad("error", nlohmann::json::array()), Contains("error missing or not a string"));
  CHECK_THAT(bad("tornBytes", nlohmann::json::value_t::discarded), Contains("tornBytes"));
  CHECK_FALSE(sealed_from_json("[1,2]").ok());
  CHECK_FALSE(sealed_from_json("{").ok());
}

TEST_CASE("nested trail: check_sealed_path", "[sublog]") {
  CHECK(check_sealed_path("nested/c1/events.jsonl") == "");
  CHECK(check_sealed_path("events.jsonl") == "");
  CHECK_THAT(check_sealed_path("/abs"), Contains("absolute"));
  CHECK_THAT(check_sealed_path("a/../b"), Contains(".."));
  CHECK_THAT(check_sealed_path(".."), Contains(".."));
  CHECK_THAT(check_sealed_path("a//b"), Contains("empty component"));
  CHECK_THAT(check_sealed_path("a/"), Contains("empty component"));
  CHECK_THAT(check_sealed_path(std::string("a\0b", 3)), Contains("NUL"));
  CHECK_THAT(check_sealed_path(std::string(5000, 'a')), Contains("4096"));
}

}  // namespace
}  // namespace cellos::sinks
