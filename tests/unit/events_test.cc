// Typed events and their CloudEvents 1.0 JSON lines: the envelope, the CellOS type names, the
// camelCase data of each type, timestamps, ids, and the JSONL file sink.
#include "sinks/cloudevent_json.h"

#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "sinks/events.h"
#include "tests/support/test_support.h"

namespace cellos::sinks {
namespace {

using Catch::Contains;
using Json = nlohmann::json;

const CloudEventEnvelope kEnv{"/cellos-reactor/host-1", "evt-0001"};

// Encodes, checks the envelope every event shares, and returns the parsed line.
Json encode_and_check(const EventData& data, const std::string& type) {
  const std::string line = encode_cloudevent(make_event(data), kEnv);
  INFO(line);
  CHECK(line.find('\n') == std::string::npos);
  Json j = Json::parse(line);  // throws (and fails the test) if the line is not JSON
  CHECK(j.at("specversion") == "1.0");
  CHECK(j.at("id") == kEnv.id);
  CHECK(j.at("source") == kEnv.source);
  CHECK(j.at("type") == type);
  CHECK(j.at("datacontenttype") == "application/json");
  const std::string time = j.at("time");
  CHECK(std::regex_match(time, std::regex(R"(^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$)")));
  REQUIRE(j.at("data").is_object());
  return j;
}


TEST_CASE("events: started carries cellId, runId and hostId, subject = cell id", "[events]") {
  Json j = encode_and_check(StartedData{"build-42", "run-7", "host-1"},
                            "dev.cellos.events.cell.lifecycle.v1.started");
  CHECK(j.at("subject") == "build-42");
  CHECK(j.at("data") == Json{{"cellId", "build-42"}, {"runId", "run-7"}, {"hostId", "host-1"}});
}

TEST_CASE("events: network_policy lists the declared egress, protocol null when absent",
          "[events]") {
  NetworkPolicyData d;
  d.cell_id = "build-42";
  d.declared_egress = {{"10.0.0.1", 443, "tcp"}, {"registry.npmjs.org", 53, std::nullopt}};
  Json j = encode_and_check(d, "dev.cellos.events.cell.observability.v1.network_policy");
  CHECK(j.at("subject") == "build-42");
  const Json& data = j.at("data");
  CHECK(data.at("cellId") == "build-42");
  CHECK(data.at("isolationMode") == "clone_newnet");
  CHECK(data.at("declaredEgressCount") == 2);
  REQUIRE(data.at("declaredEgress").size() == 2);
  CHECK(data["declaredEgress"][0] == Json{{"host", "10.0.0.1"}, {"port", 443}, {"protocol", "tcp"}});
  const Json& second = data["declaredEgress"][1];
  CHECK(second.at("host") == "registry.npmjs.org");
  CHECK(second.at("port") == 53);
  REQUIRE(second.contains("protocol"));
  CHECK(second.at("protocol").is_null());
}

TEST_CASE("events: network_policy with no egress has an empty list and a count of 0",
          "[events]") {
  NetworkPolicyData d;
  d.cell_id = "quiet";
  Json j = encode_and_check(d, "dev.cellos.events.cell.observability.v1.network_policy");
  CHECK(j["data"].at("declaredEgressCount") == 0);
  CHECK(j["data"].at("declaredEgress") == Json::array());
}

TEST_CASE("events: completed after an exit has exitCode, a null signal and reason exited",
          "[events]") {
  CompletedData d{"build-42", 3, std::nullopt, 1234, CompletedReason::kExited, ""};
  Json j = encode_and_check(d, "dev.cellos.events.cell.command.v1.completed");
  CHECK(j.at("subject") == "build-42");
  const Json& data = j.at("data");
  CHECK(data.at("cellId") == "build-42");
  CHECK(data.at("exitCode") == 3);
  REQUIRE(data.contains("signal"));
  CHECK(data.at("signal").is_null());
  CHECK(data.at("durationMs") == 1234);
  CHECK(data.at("reason") == "exited");
  CHECK_FALSE(data.contains("error"));
}

TEST_CASE("events: completed after a signal has a null exitCode, the signal and reason signaled",
          "[events]") {
  CompletedData d{"build-42", std::nullopt, 9, 5, CompletedReason::kSignaled, ""};
  Json j = encode_and_check(d, "dev.cellos.events.cell.command.v1.completed");
  const Json& data = j.at("data");
  REQUIRE(data.contains("exitCode"));
  CHECK(data.at("exitCode").is_null());
  CHECK(data.at("signal") == 9);
  CHECK(data.at("reason") == "signaled");
}

TEST_CASE("events: completed names each reason: timeout, oom, setup_failed (with its error)",
          "[events]") {
  const std::pair<CompletedReason, const char*> reasons[] = {
      {CompletedReason::kExited, "exited"},   {CompletedReason::kSignaled, "signaled"},
      {CompletedReason::kTimeout, "timeout"}, {CompletedReason::kOom, "oom"},
      {CompletedReason::kSetupFailed, "setup_failed"}};
  for (const auto& [reason, name] : reasons) {
    INFO(name);
    CHECK(std::string(reason_name(reason)) == name);
    CompletedData d{"c", std::nullopt, 9, 0, reason, ""};
    Json j = encode_and_check(d, "dev.cellos.events.cell.command.v1.completed");
    CHECK(j["data"].at("reason") == name);
  }
  CompletedData failed{"c", std::nullopt, std::nullopt, 0, CompletedReason::kSetupFailed,
                       "mkdir(cgroup \"cellos/h1/c\"): Permission denied"};
  Json j = encode_and_check(failed, "dev.cellos.events.cell.command.v1.completed");
  CHECK(j["data"].at("error") == failed.error);
  CHECK(j["data"].at("exitCode").is_null());
  CHECK(j["data"].at("signal").is_null());
}

TEST_CASE("events: destroyed maps outcome succeeded/failed and terminalState Clean/Forced",
          "[events]") {
  Json ok = encode_and_check(DestroyedData{"build-42", true, false, {}},
                             "dev.cellos.events.cell.lifecycle.v1.destroyed");
  CHECK(ok.at("subject") == "build-42");
  CHECK(ok.at("data") ==
        Json{{"cellId", "build-42"}, {"outcome", "succeeded"}, {"terminalState", "Clean"}});
  Json forced = encode_and_check(DestroyedData{"build-42", false, true, {}},
                                 "dev.cellos.events.cell.lifecycle.v1.destroyed");
  CHECK(forced["data"].at("outcome") == "failed");
  CHECK(forced["data"].at("terminalState") == "Forced");
  CHECK_FALSE(forced["data"].contains("reason"));
  Json lost = encode_and_check(DestroyedData{"build-42", false, true, "lost"},
                               "dev.cellos.events.cell.lifecycle.v1.destroyed");
  CHECK(lost["data"].at("reason") == "lost");
}

TEST_CASE("events: completed says which streams were cut at the log cap", "[events]") {
  CompletedData d{"c", 0, std::nullopt, 5, CompletedReason::kExited, "", true, false};
  Json j = encode_and_check(d, "dev.cellos.events.cell.command.v1.completed");
  CHECK(j["data"].at("stdoutTruncated") == true);
  CHECK_FALSE(j["data"].contains("stderrTruncated"));
}

TEST_CASE("events: rejected without a cell id has no subject and a null cellId", "[events]") {
  Json j = encode_and_check(RejectedData{std::nullopt, "spec.id: must be a path segment"},
                            "dev.cellos.events.cell.lifecycle.v1.rejected");
  CHECK_FALSE(j.contains("subject"));
  REQUIRE(j["data"].contains("cellId"));
  CHECK(j["data"].at("cellId").is_null());
  CHECK(j["data"].at("reason") == "spec.id: must be a path segment");
}

TEST_CASE("events: rejected with a cell id has it as subject and cellId", "[events]") {
  Json j = encode_and_check(RejectedData{"build-42", "spec.run.argv: must not be empty"},
                            "dev.cellos.events.cell.lifecycle.v1.rejected");
  CHECK(j.at("subject") == "build-42");
  CHECK(j["data"].at("cellId") == "build-42");
}

TEST_CASE("events: make_event stamps the current time and the cell id as subject", "[events]") {
  const auto before = std::chrono::system_clock::now();
  Event e = make_event(StartedData{"c9", "r", "h"});
  const auto after = std::chrono::system_clock::now();
  CHECK(e.subject == "c9");
  const auto us = [](auto t) {
    return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  };
  CHECK(e.time_us >= us(before) - 1);
  CHECK(e.time_us <= us(after) + 1);
}

TEST_CASE("events: rfc3339_utc formats UTC with microseconds", "[events]") {
  CHECK(rfc3339_utc(0) == "1970-01-01T00:00:00.000000Z");
  CHECK(rfc3339_utc(1) == "1970-01-01T00:00:00.000001Z");
  CHECK(rfc3339_utc(1700000000123456) == "2023-11-14T22:13:20.123456Z");
  CHECK(rfc3339_utc(951782400999999) == "2000-02-29T00:00:00.999999Z");  // leap day
}

TEST_CASE("events: EventIdGenerator gives 10000 distinct ids, distinct across generators",
          "[events]") {
  EventIdGenerator a, b;
  std::set<std::string> ids;
  for (int i = 0; i < 10000; ++i) ids.insert(a.next());
  CHECK(ids.size() == 10000);
  for (int i = 0; i < 100; ++i) ids.insert(b.next());
  CHECK(ids.size() == 10100);  // another process (or sink) does not repeat this one's ids
}

TEST_CASE("events: invalid UTF-8 in a string does not throw and still yields valid JSON",
          "[events]") {
  const std::string bad = "exec \"/bin/\xff\xfe\xc3\" failed";
  CompletedData d{"c", std::nullopt, std::nullopt, 0, CompletedReason::kSetupFailed, bad};
  std::string line;
  REQUIRE_NOTHROW(line = encode_cloudevent(make_event(d), kEnv));
  Json j;
  REQUIRE_NOTHROW(j = Json::parse(line));
  const std::string err = j["data"].at("error");
  CHECK_THAT(err, Contains("exec \"/bin/"));
  CHECK_THAT(err, Contains(" failed"));
  CHECK_THAT(err, Contains("\xEF\xBF\xBD"));  // U+FFFD REPLACEMENT CHARACTER

  // The same in the envelope (a hostile id becomes the subject) and in a rejection reason.
  REQUIRE_NOTHROW(line = encode_cloudevent(
                      make_event(RejectedData{"id\xc0", "reason \x80"}), kEnv));
  REQUIRE_NOTHROW(j = Json::parse(line));
  CHECK(j.at("type") == "dev.cellos.events.cell.lifecycle.v1.rejected");
}

}  // namespace
}  // namespace cellos::sinks
