// The command line under hostile input: oversized and deeply nested specs on stdin, ungranted
// secrets, limits over the fleet's ceilings, wrongly typed event logs, and a FIFO where a key
// should be. Each is refused with one short line and the documented exit status; nothing runs,
// hangs or aborts.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <string>

#include "tests/support/test_support.h"

namespace cellos::test {
namespace {

using Catch::Contains;
using Catch::StartsWith;

constexpr size_t kShortLine = 600;

// The reactor stops reading stdin at the cap and exits: the rest of our write gets EPIPE, which
// must not kill the test process with SIGPIPE.
class IgnoreSigpipe {
 public:
  IgnoreSigpipe() { old_ = ::signal(SIGPIPE, SIG_IGN); }
  ~IgnoreSigpipe() { ::signal(SIGPIPE, old_); }

 private:
  sighandler_t old_;
};

// stderr is one line (plus its newline) of bounded length.
void check_one_short_line(const std::string& err) {
  CHECK(err.size() < kShortLine);
  CHECK(err.find('\n') == err.size() - 1);
}

TEST_CASE("run - refuses a spec over 1 MiB on stdin without reading the rest", "[hostile]") {
  IgnoreSigpipe quiet;
  Fleet fleet;
  // 16 MiB: before, stdin was read whole (100 MB took 415 MB of memory).
  std::string big = make_spec(unique_id("big"), {"/bin/true"}).dump();
  big.insert(1, "\"pad\":\"" + std::string(16 << 20, 'x') + "\",");
  auto r = fleet.run(big);
  CHECK(r.status == 125);
  CHECK_THAT(r.err, StartsWith("cellos-reactor: spec: read(stdin): larger than 1048576 bytes"));
  check_one_short_line(r.err);
  CHECK(r.event("lifecycle.v1.started").is_null());
}

TEST_CASE("run - refuses a deeply nested spec with a short message", "[hostile]") {
  Fleet fleet;
  // Just under the 1 MiB cap, so it is the depth that is refused.
  std::string deep = "{\"apiVersion\":" + std::string(500000, '[') + std::string(500000, ']') + "}";
  auto r = fleet.run(deep);
  CHECK(r.status == 125);
  CHECK_THAT(r.err, Contains("nested deeper than 64 levels"));
  check_one_short_line(r.err);
}

TEST_CASE("submit - refuses a spec over 1 MiB and queues nothing", "[hostile]") {
  IgnoreSigpipe quiet;
  Fleet fleet;
  std::string big = make_spec(unique_id("big"), {"/bin/true"}).dump();
  big.insert(1, "\"pad\":\"" + std::string(8 << 20, 'x') + "\",");
  auto p = run_process({CELLOS_REACTOR_BIN, "submit", "-", "--config", fleet.config_path()}, big);
  CHECK(p.status == 125);
  CHECK_THAT(p.err, Contains("larger than 1048576 bytes"));
  const std::string spool = fleet.state_dir() + "/spool";
  CHECK((!std::filesystem::exists(spool) || std::filesystem::is_empty(spool)));
}

TEST_CASE("run refuses a secret the fleet did not grant to the cell, and runs nothing",
          "[hostile][secrets]") {
  Fleet plain;
  const std::string secrets = plain.dir() + "/secrets";
  std::filesystem::create_directories(secrets);
  write_text(secrets + "/NPM_TOKEN", "s3cr3t\n");
  Fleet fleet("[secrets]\ndir = \"" + secrets + "\"\n[secrets.grants]\nNPM_TOKEN = [\"release-*\"]\n");
  auto spec = make_spec(unique_id("build"), {fleet.probe(), "write", "/var/tmp/never"});
  spec["spec"]["authority"] = {{"secretRefs", {"NPM_TOKEN"}}};
  auto r = fleet.run(spec.dump());
  CHECK(r.status == 125);
  CHECK_THAT(r.err, StartsWith("cellos-reactor: spec.authority.secretRefs[0]: secret NPM_TOKEN "
                               "is not granted to cell build-"));
  CHECK(r.event("lifecycle.v1.started").is_null());
  CHECK(r.err.find("s3cr3t") == std::string::npos);
}

TEST_CASE("a [secrets] dir that does not exist stops the command at config load", "[hostile][secrets]") {
  Fleet fleet("[secrets]\ndir = \"/nonexistent/cellos-secrets\"\n");
  auto r = fleet.run(make_spec(unique_id("nodir"), {"/bin/true"}).dump());
  CHECK(r.status == 125);
  CHECK_THAT(r.err, Contains("secrets.dir: \"/nonexistent/cellos-secrets\": No such file or directory"));
  check_one_short_line(r.err);
}

TEST_CASE("run refuses limits over policy.max_limits naming the field", "[hostile][limits]") {
  Fleet fleet("[policy.max_limits]\npids_max = 2048\n");
  auto spec = make_spec(unique_id("pids"), {"/bin/true"});
  spec["spec"]["run"]["limits"] = {{"pidsMax", 4194303}};
  auto r = fleet.run(spec.dump());
  CHECK(r.status == 125);
  CHECK_THAT(r.err, StartsWith("cellos-reactor: spec.run.limits.pidsMax: 4194303 exceeds the "
                               "policy cap of 2048"));
  spec["spec"]["run"]["limits"] = {{"pidsMax", 18446744073709551615ull}};
  r = fleet.run(spec.dump());
  CHECK(r.status == 125);
  CHECK_THAT(r.err, Contains("spec.run.limits.pidsMax: must be an integer in 1..4194303"));
}

TEST_CASE("verify exits 1 naming the line on wrongly typed fields, never aborts", "[hostile][verify]") {
  TempDir t;
  const std::string log = t.path() + "/log.jsonl";
  for (const std::string& line :
       {std::string(R"({"specversion":1})"),
        std::string(R"({"specversion":"1.0","id":"a","source":"s","type":5,"time":"t","cellosseq":1})"),
        std::string(R"({"specversion":"1.0","id":"a","source":"s","type":"dev.cellos.events.log.v1.gap","time":"t","cellosseq":1,"data":[1]})"),
        "{\"a\":" + std::string(1 << 20, '[')}) {
    write_text(log, line + "\n");
    auto p = run_process({CELLOS_REACTOR_BIN, "verify", log});
    CHECK(p.status == 1);  // was 134 (SIGABRT) on an uncaught type_error
    CHECK_THAT(p.err, Contains("line 1: "));
    check_one_short_line(p.err);
    p = run_process({CELLOS_REACTOR_BIN, "events", "cat", log});
    CHECK(p.status == 0);  // a JSONL log is printed as it is
  }
}

TEST_CASE("a FIFO as events.signing_key stops start-up at once instead of hanging",
          "[hostile][signing]") {
  TempDir t;
  const std::string fifo = t.path() + "/host.key";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  Fleet fleet("", "signing_key = \"" + fifo + "\"\n");
  // Before, open(2) blocked forever (deaf to SIGTERM); run_process would kill it after 20 s.
  auto r = fleet.run(make_spec(unique_id("fifo"), {"/bin/true"}).dump(), {}, 20);
  CHECK(r.status == 125);
  CHECK_THAT(r.err, Contains("not a regular file"));
}

}  // namespace
}  // namespace cellos::test
