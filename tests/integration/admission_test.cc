// Admission: a spec that is malformed, breaks policy, or names a running id runs nothing.
#include <catch2/catch.hpp>
#include <algorithm>
#include <functional>
#include <thread>

#include "tests/support/test_support.h"

using namespace cellos::test;

namespace {

// Every rejection: 125, one line on stderr naming the field, a rejected event, nothing run.
void expect_rejected(const Fleet& fleet, const std::string& spec, const std::string& field) {
  auto r = fleet.run(spec);
  INFO(spec << "\nstderr: " << r.err);
  CHECK(r.status == 125);
  CHECK_THAT(r.err, Catch::StartsWith("cellos-reactor: " + field));
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  CHECK(r.event("lifecycle.v1.started").is_null());
  CHECK(r.event("lifecycle.v1.rejected").is_object());
  CHECK(r.out.empty());
}

}  // namespace

TEST_CASE("each malformed spec gives 125 and names its field, running nothing", "[admission]") {
  Fleet fleet;
  // The command would leave a trace if it ran.
  const std::string trace = fleet.dir() + "/ran";
  auto base = [&] { return make_spec(unique_id("bad"), {"/bin/sh", "-c", "touch " + trace}); };
  struct Case {
    std::function<void(nlohmann::json&)> mutate;
    std::string field;
  };
  std::vector<Case> cases = {
      {[](auto& s) { s["apiVersion"] = "cellos.io/v2"; }, "apiVersion"},
      {[](auto& s) { s["kind"] = "Pod"; }, "kind"},
      {[](auto& s) { s["spec"]["colour"] = "red"; }, "spec.colour"},
      {[](auto& s) { s["spec"]["id"] = "../escape"; }, "spec.id"},
      {[](auto& s) { s["spec"]["id"] = 42; }, "spec.id"},
      {[](auto& s) { s["spec"]["run"]["argv"] = nlohmann::json::array(); }, "spec.run.argv"},
      {[](auto& s) { s["spec"]["run"]["argv"] = {"./sh", "-c", "true"}; }, "spec.run.argv[0]"},
      {[](auto& s) { s["spec"]["run"]["argv"] = {"/opt/tool"}; }, "spec.run.argv[0]"},
      {[](auto& s) { s["spec"]["run"]["argv"] = {"/usr/bin/../../tmp/x"}; }, "spec.run.argv[0]"},
      {[](auto& s) { s["spec"]["run"]["limts"] = nlohmann::json::object(); }, "spec.run.limts"},
      {[](auto& s) { s["spec"]["run"]["limits"] = {{"pidsMax", "10"}}; }, "spec.run.limits.pidsMax"},
      {[](auto& s) { s["spec"]["run"]["limits"] = {{"memoryMaxBytes", -1}}; },
       "spec.run.limits.memoryMaxBytes"},
      {[](auto& s) { s["spec"]["run"]["timeoutMs"] = 1.5; }, "spec.run.timeoutMs"},
      {[](auto& s) { s["spec"]["run"]["secretDelivery"] = "vault"; },
       "spec.run.secretDelivery"},
      {[](auto& s) { s["spec"]["run"]["workingDirectory"] = "relative"; },
       "spec.run.workingDirectory"},
      {[](auto& s) { s["spec"]["lifetime"] = {{"ttlSeconds", 100000}}; },
       "spec.lifetime.ttlSeconds"},
      {[](auto& s) { s["spec"]["authority"] = {{"egressRules", {{{"host", "a b"}, {"port", 1}}}}}; },
       "spec.authority.egressRules[0].host"},
      {[](auto& s) { s["spec"]["authority"] = {{"secretRefs", {"BAD-NAME"}}}; },
       "spec.authority.secretRefs[0]"},
  };
  for (auto& c : cases) {
    auto spec = base();
    c.mutate(spec);
    expect_rejected(fleet, spec.dump(), c.field);
  }
  expect_rejected(fleet, "{not json", "spec");
  CHECK_FALSE(path_exists(trace));
}

TEST_CASE("a TTL above the policy cap is refused", "[admission]") {
  Fleet fleet(
      "[policy]\nargv0_allow_prefixes = [\"/bin\"]\ndefault_ttl_seconds = 30\nmax_ttl_seconds = 60\n");
  auto spec = make_spec(unique_id("cap"), {"/bin/true"});
  spec["spec"]["lifetime"] = {{"ttlSeconds", 61}};
  expect_rejected(fleet, spec.dump(), "spec.lifetime.ttlSeconds");
}

TEST_CASE("the argv[0] policy refuses a disallowed program and runs nothing", "[admission]") {
  Fleet fleet("[policy]\nargv0_allow_prefixes = [\"/usr/bin\"]\n");
  const std::string trace = fleet.dir() + "/ran";
  auto spec = make_spec(unique_id("argv0"), {"/bin/sh", "-c", "touch " + trace});
  auto r = fleet.run(spec.dump());
  CHECK(r.status == 125);
  CHECK(r.err == "cellos-reactor: spec.run.argv[0]: /bin/sh is not under an allowed prefix "
                 "(/usr/bin)\n");
  CHECK_FALSE(path_exists(trace));
}

TEST_CASE("a second run of a running id is refused, by another reactor process too", "[admission]") {
  Fleet fleet;
  const std::string id = unique_id("dup");
  auto spec = make_spec(id, {"/bin/sleep", "3"});
  RunResult first;
  std::thread t([&] { first = fleet.run(spec.dump()); });
  // Wait until the first cell is running (its started event is in the log).
  for (int i = 0; i < 200; ++i) {
    bool started = false;
    for (auto& e : fleet.events())
      started = started || (e["type"] == "dev.cellos.events.cell.lifecycle.v1.started" &&
                             e["subject"] == id);
    if (started) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  auto second = fleet.run(spec.dump());
  t.join();
  CHECK(second.status == 125);
  CHECK_THAT(second.err, Catch::Contains("spec.id"));
  CHECK_THAT(second.err, Catch::Contains("already running"));
  CHECK(first.status == 0);
  // Once the first has finished, the id is free again.
  auto third = fleet.run(make_spec(id, {"/bin/true"}).dump());
  CHECK(third.status == 0);
}

TEST_CASE("a malformed fleet.toml is refused naming the file and key", "[admission]") {
  TempDir dir;
  const std::string cfg = dir.path() + "/fleet.toml";
  write_text(cfg, "[host]\nid = \"x\"\ncolour = \"red\"\n");
  auto r = run_process({CELLOS_REACTOR_BIN, "run", "-", "--config", cfg},
                       make_spec("x", {"/bin/true"}).dump());
  CHECK(r.status == 125);
  CHECK(r.err == "cellos-reactor: " + cfg + ": host.colour: unknown key\n");
}
