// main()'s fast path for `run SPEC --via-daemon [--config FLEET]` (reactor/run_fast_args.h):
// it takes exactly that form and leaves every other command line to CLI11.
#include "reactor/run_fast_args.h"

#include <catch2/catch.hpp>
#include <vector>

namespace cellos::reactor {
namespace {

std::optional<RunArgs> match(std::vector<const char*> args) {
  args.insert(args.begin(), "cellos-reactor");
  return match_run_via_daemon(static_cast<int>(args.size()), args.data());
}

TEST_CASE("run fast path: the plain via-daemon forms are read", "[run][fast-args]") {
  auto a = match({"run", "spec.json", "--via-daemon", "--config", "fleet.toml"});
  REQUIRE(a);
  CHECK(a->spec_path == "spec.json");
  CHECK(a->via_daemon);
  REQUIRE(a->config_path);
  CHECK(*a->config_path == "fleet.toml");
  CHECK_FALSE(a->events_path);

  auto b = match({"run", "--config=/etc/f.toml", "--via-daemon", "-"});
  REQUIRE(b);
  CHECK(b->spec_path == "-");
  CHECK(*b->config_path == "/etc/f.toml");

  auto c = match({"run", "--via-daemon", "s.json"});
  REQUIRE(c);
  CHECK_FALSE(c->config_path);
}

TEST_CASE("run fast path: anything else is left to CLI11", "[run][fast-args]") {
  CHECK_FALSE(match({"run", "spec.json"}));                                   // no --via-daemon
  CHECK_FALSE(match({"run", "spec.json", "--via-daemon", "--events", "-"}));  // --events
  CHECK_FALSE(match({"run", "spec.json", "--via-daemon", "--help"}));
  CHECK_FALSE(match({"run", "a.json", "b.json", "--via-daemon"}));            // two specs
  CHECK_FALSE(match({"run", "spec.json", "--via-daemon", "--via-daemon"}));
  CHECK_FALSE(match({"run", "spec.json", "--via-daemon", "--config"}));       // no value
  CHECK_FALSE(match({"run", "spec.json", "--via-daemon", "--config", "-x"}));
  CHECK_FALSE(match({"run", "spec.json", "--via-daemon", "--config="}));
  CHECK_FALSE(match({"run", "s", "--via-daemon", "--config", "a", "--config", "b"}));
  CHECK_FALSE(match({"run", "--", "spec.json", "--via-daemon"}));
  CHECK_FALSE(match({"submit", "spec.json", "--via-daemon"}));
  CHECK_FALSE(match({"--config", "f.toml", "run", "spec.json", "--via-daemon"}));
  CHECK_FALSE(match({"run", "", "--via-daemon"}));
}

}  // namespace
}  // namespace cellos::reactor
