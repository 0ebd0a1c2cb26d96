// fleet.toml [export] and [policy.input_grants]: values accepted, and the places a granted
// directory or the export directory may not be (everything a cell sees, the reactor's files).
#include <catch2/catch.hpp>
#include <string>

#include "cells/cell.h"
#include "cells/config.h"

namespace cellos::cells {
namespace {

using Catch::Contains;

std::string error_of(const std::string& toml) {
  try {
    parse_config(toml, "fleet.toml");
    return "<accepted>";
  } catch (const ConfigError& e) {
    return e.what();
  }
}

TEST_CASE("[export] keys are read and checked", "[config][export]") {
  Config c = parse_config(R"([export]
dir = "/srv/exports"
http_url = "https://artifacts.example/ci"
max_artifact_bytes = 100
max_cell_bytes = 200
timeout_seconds = 30
)", "fleet.toml");
  CHECK(c.exports.dir == "/srv/exports");
  CHECK(c.exports.http_url == "https://artifacts.example/ci");
  CHECK(c.exports.max_artifact_bytes == 100);
  CHECK(c.exports.max_cell_bytes == 200);
  CHECK(c.exports.timeout_seconds == 30);
  Config d = parse_config("", "fleet.toml");
  CHECK(d.exports.dir.empty());
  CHECK(d.exports.http_url.empty());

  CHECK_THAT(error_of("[export]\nhttp_url = \"ftp://x/y\"\n"), Contains("fleet.toml: export.http_url: must be an http"));
  CHECK_THAT(error_of("[export]\nhttp_url = \"http://x/y?a=b\"\n"), Contains("export.http_url"));
  CHECK_THAT(error_of("[export]\nhttp_url = \"http:///path\"\n"), Contains("export.http_url"));
  CHECK_THAT(error_of("[export]\ndir = \"rel\"\n"), Contains("export.dir"));
  CHECK_THAT(error_of("[export]\ntimeout_seconds = 0\n"), Contains("export.timeout_seconds"));
  CHECK_THAT(error_of("[export]\ncolour = 1\n"), Contains("export.colour: unknown key"));
  // Other cells' artifacts land there: never in a path every cell sees.
  CHECK_THAT(error_of("[export]\ndir = \"/opt/exports\"\n"), Contains("export.dir: overlaps /opt"));
}

TEST_CASE("[policy.input_grants] is read and kept out of every cell's view", "[config][inputs]") {
  Config c = parse_config("[policy.input_grants]\n\"/srv/ci/checkouts\" = [\"build-*\", \"x?\"]\n",
                          "fleet.toml");
  REQUIRE(c.policy.input_grants.count("/srv/ci/checkouts") == 1);
  CHECK(c.policy.input_grants.at("/srv/ci/checkouts") == std::vector<std::string>{"build-*", "x?"});
  CHECK(c.policy.input_grants.size() == 1);

  const std::string key = "policy.input_grants[\"";
  CHECK_THAT(error_of("[policy.input_grants]\n\"/usr/src\" = [\"*\"]\n"), Contains(key + "/usr/src\"]: overlaps /usr"));
  CHECK_THAT(error_of("[policy.input_grants]\n\"/srv\" = [\"*\"]\n[policy]\nhost_paths = [\"/srv/tools\"]\n"),
             Contains("overlaps /srv/tools"));
  CHECK_THAT(error_of("[policy.input_grants]\n\"/var/lib\" = [\"*\"]\n"),
             Contains("overlaps the reactor's own /var/lib/cellos-reactor"));
  CHECK_THAT(error_of("[policy.input_grants]\n\"/tmp/x\" = [\"*\"]\n"), Contains("must not be under /tmp"));
  CHECK_THAT(error_of("[policy.input_grants]\n\"/srv/../etc\" = [\"*\"]\n"), Contains("normalized absolute"));
  CHECK_THAT(error_of("[policy.input_grants]\n\"/srv/x\" = [\"a b\"]\n"), Contains(key + "/srv/x\"][0]: must be a cell-id glob"));
  CHECK_THAT(error_of("[policy.input_grants]\n\"/srv/x\" = \"build-*\"\n"), Contains("must be an array"));
}

}  // namespace
}  // namespace cellos::cells

#include "reactor/metrics.h"

namespace cellos::cells {
namespace {

TEST_CASE("a required artifact that failed is the cell's failure reason", "[export][metrics]") {
  CellOutcome o;
  o.reason = sinks::CompletedReason::kExited;
  o.exit_code = 0;
  CHECK_FALSE(reactor::failure_reason(o).has_value());
  o.export_failed = true;
  CHECK(reactor::failure_reason(o) == std::optional<std::string>("export_failed"));
  CHECK(o.exit_status() == 125);
  o.exit_code = 3;  // the command's own failure comes first
  CHECK(reactor::failure_reason(o) == std::optional<std::string>("exit_nonzero"));
  CHECK(o.exit_status() == 3);
}

}  // namespace
}  // namespace cellos::cells
