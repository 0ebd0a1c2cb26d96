// The network events' JSON: network_enforcement with CellOS's field names plus rule counters,
// and resolvedAddresses on network_policy for hostnames only.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "sinks/cloudevent_json.h"
#include "sinks/events.h"

using namespace cellos::sinks;
using Json = nlohmann::json;

namespace {
Json encode(EventData d) {
  return Json::parse(encode_cloudevent(make_event(std::move(d)), {"/cellos-reactor/h", "id-1"}));
}
}  // namespace

TEST_CASE("events: network_enforcement carries CellOS's fields and per-rule counters",
          "[events][net]") {
  NetworkEnforcementData d;
  d.cell_id = "build-42";
  d.declared_egress_rule_count = 2;
  d.nft_rules_applied = true;
  d.supplementary_egress_filter_active = true;
  d.command_exit_code = 3;
  d.nft_rule_count = 6;
  d.cell_address = "10.213.0.2";
  d.rule_counters = {{"egress[0]", 1, 60}, {"drop", 4, 240}};
  Json j = encode(d);
  CHECK(j["type"] == "dev.cellos.events.cell.observability.v1.network_enforcement");
  CHECK(j["subject"] == "build-42");
  const Json& data = j["data"];
  CHECK(data["cellId"] == "build-42");
  CHECK(data["isolationMode"] == "clone_newnet");
  CHECK(data["declaredEgressRuleCount"] == 2);
  CHECK(data["nftRulesApplied"] == true);
  CHECK(data["supplementaryEgressFilterActive"] == true);
  CHECK(data["commandExitCode"] == 3);
  CHECK(data["nftRuleCount"] == 6);
  CHECK(data["cellAddress"] == "10.213.0.2");
  CHECK(data["ruleCounters"] ==
        Json::parse(R"([{"rule":"egress[0]","packets":1,"bytes":60},
                        {"rule":"drop","packets":4,"bytes":240}])"));
}

TEST_CASE("events: a ruleset that never applied reports false and null exit code", "[events][net]") {
  NetworkEnforcementData d;
  d.cell_id = "c";
  d.declared_egress_rule_count = 1;
  Json data = encode(d)["data"];
  CHECK(data["nftRulesApplied"] == false);
  CHECK(data["supplementaryEgressFilterActive"] == false);
  CHECK(data["commandExitCode"].is_null());
  CHECK(data["cellAddress"].is_null());
  CHECK(data["ruleCounters"].empty());
}

TEST_CASE("events: resolvedAddresses appears only for declared hostnames", "[events][net]") {
  NetworkPolicyData d;
  d.cell_id = "c";
  d.declared_egress = {{"10.0.0.1", 443, "tcp"},
                       {"localhost", 80, std::nullopt, {"127.0.0.1", "::1"}}};
  Json egress = encode(d)["data"]["declaredEgress"];
  CHECK_FALSE(egress[0].contains("resolvedAddresses"));
  CHECK(egress[1]["resolvedAddresses"] == Json::array({"127.0.0.1", "::1"}));
}
