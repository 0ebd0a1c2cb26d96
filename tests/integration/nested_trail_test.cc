// One evidence trail with real reactors: `cellos-reactor run` writes signed logs of real cells
// (the sub-logs a nested reactor would write), the seal runs in its helper process
// (`cellos-reactor seal-sublog`, started by SublogSealJob on a real ring), the parents' logs are
// written by the real event log, and `cellos-reactor verify` follows the seals at every depth.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <string>
#include <vector>

#include "sinks/event_log.h"
#include "sinks/log_io.h"
#include "sinks/signing.h"
#include "sinks/sublog_seal.h"
#include "sinks/sublog_seal_job.h"
#include "tests/support/event_log_support.h"
#include "tests/support/test_support.h"

namespace cellos::test {
namespace {

using Catch::Contains;
namespace fs = std::filesystem;

std::string raw_key(const std::string& pub) {
  auto k = sinks::SigningKey::load_public(pub);
  REQUIRE(k.ok());
  return k->raw_public_key();
}

// A real reactor's signed log: one cell run by `cellos-reactor run`, its log moved to `dest`.
// Returns the raw public key.
std::string reactor_log(const std::string& dest, const std::string& key_dir) {
  REQUIRE(sinks::write_key_pair(key_dir).ok());
  Fleet f("", "signing_key = \"" + key_dir + "/host.key\"\n");
  auto r = f.run(make_spec(unique_id("inner"), {"/bin/true"}).dump());
  INFO(r.err);
  REQUIRE(r.status == 0);
  fs::create_directories(fs::path(dest).parent_path());
  fs::copy_file(f.events_path(), dest);
  return raw_key(key_dir + "/host.pub");
}

// Seals `sub` into the log at `log` through the helper process, on the log's own ring, then
// writes the seal and closes the log. The seal is returned.
sinks::NestedSealedData seal_into(const std::string& log, const std::string& key_dir,
                                  const std::string& sub, const std::string& key,
                                  const std::string& cell, const std::string& nesting,
                                  std::string helper = CELLOS_REACTOR_BIN,
                                  std::chrono::milliseconds timeout = std::chrono::minutes(1)) {
  if (!path_exists(key_dir + "/host.key")) REQUIRE(sinks::write_key_pair(key_dir).ok());
  sinks::EventLogOptions o;
  o.path = log;
  o.host_id = "parent";
  o.signing_key_path = key_dir + "/host.key";
  LogHarness h(o);
  h.emit_samples(1);
  sinks::SublogSealJobOptions j;
  j.io = &h.ring();
  j.seal.log_path = log;
  j.seal.sublog_path = sub;
  j.seal.public_key = key;
  j.seal.cell_id = cell;
  j.seal.nesting_path = nesting;
  j.helper = helper;
  j.timeout = timeout;
  std::optional<sinks::NestedSealedData> got;
  j.on_done = [&](sinks::NestedSealedData d) {
    h.log().emit(sinks::make_event(d));
    got = std::move(d);
  };
  auto job = sinks::SublogSealJob::start(std::move(j));
  REQUIRE(job.ok());
  REQUIRE(h.run_until([&] { return got.has_value(); }, std::chrono::seconds(90)));
  h.drain();
  return *got;
}

ProcessResult verify(const std::string& log, const std::string& pub, std::vector<std::string> extra = {}) {
  std::vector<std::string> argv{CELLOS_REACTOR_BIN, "verify", log, "--public-key", pub};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return run_process(argv);
}

TEST_CASE("nested trail: real reactors' logs sealed two and three deep verify with verify",
          "[nested-trail]") {
  TempDir dir;
  const std::string root = dir.path();
  const std::string top = root + "/events.jsonl";
  const std::string d1 = root + "/nested/c1/events.jsonl";
  const std::string d2 = root + "/nested/c1/state/nested/c2/events.jsonl";
  // Depth 2: a real reactor's log. Depth 1: a log sealing it (as the nested reactor would).
  const std::string k2 = reactor_log(d2, root + "/keys2");
  auto s2 = seal_into(d1, root + "/nested/c1/keys", d2, k2, "c2", "inner-1/c2");
  INFO(s2.error);
  REQUIRE(s2.verified);
  CHECK(s2.path == "state/nested/c2/events.jsonl");
  CHECK(s2.event_count >= 4);  // flow_probes, started, ..., destroyed
  auto s1 = seal_into(top, root + "/keys0", d1, raw_key(root + "/nested/c1/keys/host.pub"), "c1",
                      "host-a/c1");
  INFO(s1.error);
  REQUIRE(s1.verified);

  auto v = verify(top, root + "/keys0/host.pub");
  INFO(v.out << v.err);
  REQUIRE(v.status == 0);
  CHECK_THAT(v.out, Contains("depth 1 (host-a/c1), sealed at line") &&
                        Contains("nested/c1/events.jsonl: intact:"));
  CHECK_THAT(v.out, Contains("depth 2 (host-a/c1 > inner-1/c2)") &&
                        Contains("nested/c1/state/nested/c2/events.jsonl: intact:"));
  CHECK_THAT(v.out, Contains("nested trail intact: 2 sub-log(s) at depths 1..2"));

  SECTION("--no-nested skips them and says so") {
    auto n = verify(top, root + "/keys0/host.pub", {"--no-nested"});
    CHECK(n.status == 0);
    CHECK_THAT(n.out, Contains("1 sealed sub-log(s) of nested cells not followed (--no-nested)"));
  }
  SECTION("the whole tree copied elsewhere verifies there: the paths are relative") {
    TempDir elsewhere;
    fs::copy(root, elsewhere.path() + "/audit", fs::copy_options::recursive);
    auto c = verify(elsewhere.path() + "/audit/events.jsonl", root + "/keys0/host.pub");
    INFO(c.out << c.err);
    CHECK(c.status == 0);
    CHECK_THAT(c.out, Contains("nested trail intact: 2 sub-log(s) at depths 1..2"));
  }
  SECTION("a byte of the real reactor's log changed: one line naming depth 2, exit 1") {
    std::string t = read_text(d2);
    t[t.find("\"cellId\":\"") + 10] ^= 1;
    write_text(d2, t);
    auto b = verify(top, root + "/keys0/host.pub");
    CHECK(b.status == 1);
    CHECK_THAT(b.err, Contains("the log is intact, but not its nested trail: depth 2") &&
                          Contains("changed after it was sealed"));
    CHECK(std::count(b.err.begin(), b.err.end(), '\n') == 1);
  }
  SECTION("the sub-log removed") {
    fs::remove(d1);
    auto b = verify(top, root + "/keys0/host.pub");
    CHECK(b.status == 1);
    CHECK_THAT(b.err, Contains("depth 1") && Contains("missing"));
  }
  SECTION("the parent's own log changed: the parent's own problem, as before") {
    std::string t = read_text(top);
    t[t.find("\"cellId\":\"") + 10] ^= 1;
    write_text(top, t);
    auto b = verify(top, root + "/keys0/host.pub");
    CHECK(b.status == 1);
    CHECK_THAT(b.err, Contains("Merkle root mismatch"));
  }
}

TEST_CASE("nested trail: a sub-log signed with another key is sealed as failed, and verify says so",
          "[nested-trail]") {
  TempDir dir;
  const std::string top = dir.path() + "/events.jsonl", d1 = dir.path() + "/nested/c1/events.jsonl";
  reactor_log(d1, dir.path() + "/keys1");
  REQUIRE(sinks::write_key_pair(dir.path() + "/made").ok());
  // The host made this key for the nested reactor; the log is signed by another.
  auto s = seal_into(top, dir.path() + "/keys0", d1, raw_key(dir.path() + "/made/host.pub"), "c1",
                     "host-a/c1");
  CHECK_FALSE(s.verified);
  CHECK_THAT(s.error, Contains("does not verify") && Contains("not the given key"));
  auto v = verify(top, dir.path() + "/keys0/host.pub");
  CHECK(v.status == 1);
  CHECK_THAT(v.out, Contains("intact"));  // the parent's own log
  CHECK_THAT(v.err, Contains("depth 1 (host-a/c1)") && Contains("sealed as FAILED"));
}

TEST_CASE("nested trail: a seal helper that fails or hangs still gives a seal, as failed",
          "[nested-trail]") {
  TempDir dir;
  const std::string top = dir.path() + "/events.jsonl", d1 = dir.path() + "/nested/c1/events.jsonl";
  const std::string key = reactor_log(d1, dir.path() + "/keys1");
  SECTION("exits non-zero") {
    auto s = seal_into(top, dir.path() + "/keys0", d1, key, "c1", "host-a/c1", "/bin/false");
    CHECK_FALSE(s.verified);
    CHECK_THAT(s.error, Contains("exited with status 1"));
    CHECK(s.path == "nested/c1/events.jsonl");
  }
  SECTION("hangs past its deadline: killed") {
    const std::string script = dir.path() + "/hang.sh";
    write_text(script, "#!/bin/sh\nexec sleep 1000\n");
    ::chmod(script.c_str(), 0755);
    auto s = seal_into(top, dir.path() + "/keys0", d1, key, "c1", "host-a/c1", script,
                       std::chrono::milliseconds(200));
    CHECK_FALSE(s.verified);
    CHECK_THAT(s.error, Contains("timed out"));
  }
}

}  // namespace
}  // namespace cellos::test
