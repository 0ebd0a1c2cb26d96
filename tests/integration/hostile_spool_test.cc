// The daemon fed hostile spool entries while a cell runs: each is refused (the megabyte of
// nesting or keys that used to block the single-threaded daemon for seconds, an oversized file),
// each rejection is one short line in rejected/ and in its event, the running cell is not
// disturbed, and an oversized entry leaves no copy behind.
#include <signal.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <string>

#include "tests/support/daemon_support.h"
#include "tests/support/test_support.h"

using namespace cellos::test;
namespace fs = std::filesystem;

namespace {

constexpr size_t kShortLine = 600;

std::string spec_head(const std::string& id) {
  return R"({"apiVersion":"cellos.io/v1","kind":"ExecutionCell","spec":{"id":")" + id +
         R"(","run":{"argv":["/bin/true"])";
}

TEST_CASE("hostile spool entries are refused with short reasons while a cell runs",
          "[daemon][hostile]") {
  Fleet fleet;
  DaemonProcess daemon(fleet);
  const std::string id = unique_id("steady");
  spool(fleet, make_spec(id, {"/bin/sh", "-c", "sleep 1; echo still-here"}));
  REQUIRE(eventually([&] { return !events_of(fleet, "lifecycle.v1.started").empty(); }));

  // 800 KB of nesting: blocked the daemon 14.5 s before.
  spool_raw(fleet, "deep.json",
            spec_head(unique_id("deep")) + ",\"env\":" + std::string(400000, '[') +
                std::string(400000, ']') + "}}}");
  // 120k keys in one object, short enough to fit the cap.
  std::string keys;
  for (int i = 0; i < 120000; ++i) keys += (i ? ",\"k" : "\"k") + std::to_string(i) + "\":1";
  spool_raw(fleet, "keys.json", "{" + keys.substr(0, 1000000) + "}");
  // Over the cap: refused unread, and not copied into rejected/.
  spool_raw(fleet, "big.json", spec_head(unique_id("big")) + ",\"env\":{\"A\":\"" +
                                   std::string(2 << 20, 'x') + "\"}}}}");
  // A duplicate whose key is half a megabyte: the reason quotes a clipped key.
  const std::string long_key(500000, 'k');
  spool_raw(fleet, "dup.json", "{\"" + long_key + "\":1,\"" + long_key + "\":2}");

  REQUIRE(eventually([&] { return events_of(fleet, "lifecycle.v1.rejected").size() >= 4; }));
  const std::string rej = fleet.state_dir() + "/rejected/";
  for (const char* name : {"deep.json", "keys.json", "big.json", "dup.json"}) {
    INFO(name);
    const std::string error = read_text(rej + std::string(name) + ".error");
    CHECK(error.size() < kShortLine);
    CHECK(error.find('\n') == error.size() - 1);
  }
  CHECK_THAT(read_text(rej + "deep.json.error"), Catch::Contains("nested deeper than 64 levels"));
  CHECK_THAT(read_text(rej + "big.json.error"), Catch::Contains("over the 1 MiB a spec may have"));
  CHECK_FALSE(path_exists(rej + "big.json"));
  CHECK(path_exists(rej + "deep.json"));
  for (const auto& e : events_of(fleet, "lifecycle.v1.rejected"))
    CHECK(e["data"]["reason"].get<std::string>().size() < kShortLine);

  REQUIRE(eventually([&] { return !events_of(fleet, "lifecycle.v1.destroyed").empty(); }));
  CHECK(read_text(fleet.state_dir() + "/logs/" + id + "/stdout") == "still-here\n");
  daemon.signal(SIGTERM);
  CHECK(daemon.wait() == 0);
}

}  // namespace
