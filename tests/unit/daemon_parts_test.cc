// The daemon's parts that need no daemon: the waiting queue, admission, where cells' cgroups
// go, and the backend registry.
#include <catch2/catch.hpp>

#include "cells/admission.h"
#include "cells/backend.h"
#include "reactor/cgroup_parent.h"
#include "reactor/waiting_queue.h"
#include "tests/support/test_support.h"

namespace cellos::reactor {
namespace {

using Catch::Matchers::Contains;

WaitingSpec waiting(const std::string& name, const std::string& id) {
  WaitingSpec w;
  w.entry.name = name;
  w.spec.id = id;
  return w;
}

TEST_CASE("waiting queue: specs leave in arrival order and a requeued one goes first",
          "[waiting]") {
  WaitingQueue q;
  q.push_back(waiting("a.json", "a"));
  q.push_back(waiting("b.json", "b"));
  q.push_back(waiting("c.json", "c"));
  auto first = q.pop_front();
  REQUIRE(first);
  CHECK(first->spec.id == "a");
  // The host was short of descriptors: a goes back to the head, before b and c.
  q.push_front(std::move(*first));
  std::vector<std::string> order;
  while (auto w = q.pop_front()) order.push_back(w->spec.id);
  CHECK(order == std::vector<std::string>{"a", "b", "c"});
  CHECK(q.empty());
}

TEST_CASE("waiting queue: ids and entry names are held while waiting and freed after",
          "[waiting]") {
  WaitingQueue q;
  q.push_back(waiting("x.json", "build-1"));
  CHECK(q.has_id("build-1"));
  CHECK(q.has_name("x.json"));
  CHECK_FALSE(q.has_id("build-2"));
  REQUIRE(q.find_if([](const WaitingSpec& w) { return w.entry.name == "x.json"; }));
  auto w = q.pop_front();
  REQUIRE(w);
  CHECK_FALSE(q.has_id("build-1"));
  CHECK_FALSE(q.has_name("x.json"));
}

TEST_CASE("waiting queue: remove_if hands over and forgets exactly the matching specs",
          "[waiting]") {
  WaitingQueue q;
  for (const char* id : {"s1", "n1", "s2", "n2"}) q.push_back(waiting(std::string(id) + ".json", id));
  std::vector<std::string> removed;
  q.remove_if([](const WaitingSpec& w) { return w.spec.id[0] == 'n'; },
              [&](const WaitingSpec& w) { removed.push_back(w.spec.id); });
  CHECK(removed == std::vector<std::string>{"n1", "n2"});
  CHECK(q.size() == 2);
  CHECK_FALSE(q.has_id("n1"));
  CHECK(q.has_id("s2"));
}

constexpr const char* kSpec =
    R"({"apiVersion":"cellos.io/v1","kind":"ExecutionCell","spec":{"id":"job-1",)"
    R"("run":{"argv":["/bin/true"]}}})";

TEST_CASE("admission: a valid spec is admitted with its id", "[admission]") {
  cells::Config config = cells::default_config();
  cells::Admission a = cells::admit(kSpec, {&config, {}});
  REQUIRE(a.admitted());
  CHECK(a.spec->id == "job-1");
  CHECK(a.cell_id == "job-1");
}

TEST_CASE("admission: each refusal names the field, and the id once it is known", "[admission]") {
  cells::Config config = cells::default_config();
  SECTION("malformed text: no id") {
    cells::Admission a = cells::admit("{not json", {&config, {}});
    CHECK_FALSE(a.admitted());
    CHECK_FALSE(a.cell_id);
  }
  SECTION("policy: argv[0] outside the allowed prefixes") {
    config.policy.argv0_allow_prefixes = {"/opt/ci"};
    cells::Admission a = cells::admit(kSpec, {&config, {}});
    CHECK_FALSE(a.admitted());
    CHECK(a.cell_id == "job-1");
    CHECK_THAT(a.refusal.message(), Contains("spec.run.argv"));
  }
  SECTION("an id taken here") {
    cells::Admission a = cells::admit(
        kSpec, {&config, [](const std::string&) { return std::string("is already running"); }});
    CHECK_FALSE(a.admitted());
    CHECK(a.refusal.message() == "spec.id: cell job-1 is already running");
  }
}

TEST_CASE("cgroup placement: the unified cgroup is read from /proc/self/cgroup", "[cgroup]") {
  CHECK(unified_cgroup_of("4:memory:/a\n0::/system.slice/cellos-reactor.service\n") ==
        "system.slice/cellos-reactor.service");
  CHECK(unified_cgroup_of("0::/\n") == "");
  CHECK(unified_cgroup_of("5:pids:/\n") == "");
}

TEST_CASE("cgroup placement: run uses the roots, or [host] cgroup_parent", "[cgroup]") {
  cells::Config config = cells::default_config();
  config.host.id = "h1";
  CHECK(cgroup_placement_for_run(config).parent == "cellos/h1");
  CHECK(cgroup_placement_for_run(config).delegated.empty());
  config.host.cgroup_parent = "/ci.slice";
  CHECK(cgroup_placement_for_run(config).parent == "ci.slice/cellos/h1");
}

TEST_CASE("cgroup placement: a daemon in the root cgroup uses the roots and moves nowhere",
          "[cgroup]") {
  test::TempDir t;
  cells::Config config = cells::default_config();
  config.host.id = "h1";
  auto p = cgroup_placement_for_daemon(config, t.path(), "0::/\n");
  REQUIRE(p.ok());
  CHECK(p->parent == "cellos/h1");
  CHECK(p->delegated.empty());
}

TEST_CASE("backends: native is registered and an unknown name is refused naming the known ones",
          "[backend]") {
  cells::Config config = cells::default_config();
  auto names = cells::backend_names();
  CHECK(std::find(names.begin(), names.end(), "native") != names.end());
  auto b = cells::make_backend("firecracker", config);
  REQUIRE_FALSE(b.ok());
  CHECK_THAT(b.error().message(), Contains("\"firecracker\" is not one of: native"));
  auto native = cells::make_backend("native", config);
  REQUIRE(native.ok());
  CHECK((*native)->name() == "native");
  CHECK((*native)->traits().status_records);
}

}  // namespace
}  // namespace cellos::reactor
