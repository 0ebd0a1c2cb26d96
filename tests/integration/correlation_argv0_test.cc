// spec.correlation on every event of a real cell (validated by the CloudEvents SDK), and a bare
// argv[0] run through the cell's PATH.
#include <unistd.h>

#include <catch2/catch.hpp>

#include "tests/support/test_support.h"

namespace cellos::test {
namespace {

using Catch::Contains;

constexpr const char* kNode = "/usr/bin/node";
constexpr const char* kSdk = "/opt/cellos-test/node/node_modules/cloudevents";

TEST_CASE("every event of a cell carries its correlation id", "[correlation]") {
  Fleet fleet;
  const std::string id = unique_id("corr");
  auto spec = make_spec(id, {"/bin/sh", "-c", "exit 3"});
  spec["spec"]["correlation"] = {{"correlationId", "github:octo/repo/run/42/attempt/1"}};
  // A declared egress rule gives the cell its network events too (nothing is sent).
  spec["spec"]["authority"] = {{"egressRules", {{{"host", "127.0.0.9"}, {"port", 9}}}}};
  auto r = fleet.run(spec.dump());
  CHECK(r.status == 3);
  size_t n = 0;
  std::vector<std::string> types;
  for (const auto& e : r.events) {
    if (e.value("subject", "") != id) continue;
    ++n;
    types.push_back(e["type"]);
    INFO(e.dump());
    CHECK(e["correlationid"] == "github:octo/repo/run/42/attempt/1");
  }
  INFO(n);
  CHECK(n >= 5);  // started, network_policy, network_enforcement, completed, destroyed
  CHECK(r.event("lifecycle.v1.started")["correlationId"] == "github:octo/repo/run/42/attempt/1");

  // A cell without one carries none.
  const std::string other = unique_id("nocorr");
  REQUIRE(fleet.run(make_spec(other, {"/bin/true"}).dump()).status == 0);
  for (const auto& e : fleet.events())
    if (e.value("subject", "") == other) CHECK_FALSE(e.contains("correlationid"));

  if (::access(kNode, X_OK) != 0 || ::access(kSdk, R_OK) != 0)
    CELLOS_SKIP("node or the CloudEvents JS SDK is not installed (scripts/install-deps.sh)");
  const std::string script = std::string(CELLOS_SOURCE_DIR) + "/tests/support/cloudevents_validate.js";
  auto p = run_process({kNode, script, fleet.events_path(), kSdk});
  INFO(p.out + p.err);
  CHECK(p.status == 0);
}

TEST_CASE("a bad correlation id is rejected naming the field, running nothing", "[correlation]") {
  Fleet fleet;
  const std::string trace = fleet.dir() + "/ran";
  for (const char* bad : {"", "has space", "quote\"d"}) {
    auto spec = make_spec(unique_id("badcorr"), {"/bin/sh", "-c", "touch " + trace});
    spec["spec"]["correlation"] = {{"correlationId", bad}};
    auto r = fleet.run(spec.dump());
    CHECK(r.status == 125);
    CHECK_THAT(r.err, Contains("spec.correlation.correlationId: must be 1..256 characters"));
  }
  CHECK_FALSE(path_exists(trace));
  // A spec refused by policy: its fields were never accepted, so its rejection carries none.
  auto spec = make_spec(unique_id("refused"), {"/opt/not-allowed"});
  spec["spec"]["correlation"] = {{"correlationId", "ci-run-9"}};
  auto r = fleet.run(spec.dump());
  CHECK(r.status == 125);
  for (const auto& e : r.events) CHECK_FALSE(e.contains("correlationid"));
}

TEST_CASE("a bare argv[0] runs the program the cell's PATH names", "[argv0]") {
  Fleet fleet;
  // CellOS's own minimal example.
  auto r = fleet.run(R"({"apiVersion":"cellos.io/v1","kind":"ExecutionCell",
    "spec":{"id":")" + unique_id("bare") + R"(","authority":{"secretRefs":[]},
    "lifetime":{"ttlSeconds":60},"run":{"secretDelivery":"env","argv":["true"]}}})");
  CHECK(r.status == 0);
  const std::string path = r.event("lifecycle.v1.started")["argv0Path"];
  CHECK((path == "/usr/bin/true" || path == "/bin/true"));

  // The command sees argv[0] as declared; the program came from the spec's own PATH.
  const std::string second = unique_id("bare");
  auto spec = make_spec(second, {"sh", "-c", "echo \"$0\""});
  spec["spec"]["run"]["env"] = {{"PATH", "/bin:/usr/bin"}};
  r = fleet.run(spec.dump());
  CHECK(r.status == 0);
  CHECK(r.out == "sh\n");
  bool seen = false;
  for (const auto& e : r.events)
    if (e.value("subject", "") == second && e["type"] == "dev.cellos.events.cell.lifecycle.v1.started") {
      CHECK(e["data"]["argv0Path"] == "/bin/sh");
      seen = true;
    }
  CHECK(seen);

  // A program outside every allowed prefix is refused at admission, naming what PATH found.
  spec = make_spec(unique_id("bare"), {"cell_probe"});
  Fleet strict("[policy]\nargv0_allow_prefixes = [\"/usr/bin\"]\nhost_paths = [\"/usr\", \"/bin\", \"/lib\", \"/lib64\", \"/etc\", \"" +
               fleet.dir() + "\"]\n");
  spec["spec"]["run"]["env"] = {{"PATH", fleet.dir() + "/bin:/usr/bin"}};
  r = strict.run(spec.dump());
  CHECK(r.status == 125);
  CHECK_THAT(r.err, Contains("spec.run.argv[0]: cell_probe (found in the cell's PATH as " +
                             fleet.dir() + "/bin/cell_probe) is not under an allowed prefix"));
}

TEST_CASE("a bare argv[0] found nowhere gives 127 naming it", "[argv0]") {
  Fleet fleet;
  auto spec = make_spec(unique_id("nowhere"), {"cellos-no-such-program"});
  auto r = fleet.run(spec.dump());
  CHECK(r.status == 127);
  CHECK_THAT(r.err, Contains("spec.run.argv[0]: cellos-no-such-program: No such file or directory"));
  CHECK(r.event("command.v1.completed")["reason"] == "setup_failed");
  CHECK(r.event("lifecycle.v1.destroyed")["outcome"] == "failed");

  // The workspace (a relative PATH entry) is never searched, nor is /tmp.
  spec = make_spec(unique_id("nowhere"), {"true"});
  spec["spec"]["run"]["env"] = {{"PATH", ".:/tmp"}};
  r = fleet.run(spec.dump());
  CHECK(r.status == 127);
  CHECK_THAT(r.err, Contains("spec.run.argv[0]: true: No such file or directory (not found in "
                             "the cell's PATH .:/tmp)"));
}

TEST_CASE("a relative argv[0] with a slash is refused, suggesting env", "[argv0]") {
  Fleet fleet;
  for (const char* rel : {"./build.sh", "bin/tool"}) {
    auto r = fleet.run(make_spec(unique_id("rel"), {rel}).dump());
    CHECK(r.status == 125);
    CHECK_THAT(r.err, Contains("spec.run.argv[0]:"));
    CHECK_THAT(r.err, Contains("is a relative path"));
    CHECK_THAT(r.err, Contains("/usr/bin/env"));
  }
}

}  // namespace
}  // namespace cellos::test
