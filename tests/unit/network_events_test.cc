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

TEST_CASE("events: network_flow_decision carries the design's fields and the tx/rx split",
          "[events][net][flows]") {
  FlowDecisionData d;
  d.cell_id = "build-42";
  d.allowed = false;
  d.reason_code = "egress_default_deny";
  d.protocol = "udp";
  d.src_addr = "10.213.0.2";
  d.dst_addr = "172.30.1.1";
  d.dst_port = 53;
  d.packets = d.tx_packets = 3;
  d.bytes = d.tx_bytes = 180;
  d.first_seen_us = 1'700'000'000'000'000;
  d.last_seen_us = 1'700'000'000'500'000;
  d.phase = "denied";
  Json j = encode(d);
  CHECK(j["type"] == "dev.cellos.events.cell.observability.v1.network_flow_decision");
  CHECK(j["subject"] == "build-42");
  const Json& data = j["data"];
  CHECK(data["direction"] == "egress");
  CHECK(data["decision"] == "deny");
  CHECK(data["reasonCode"] == "egress_default_deny");
  CHECK(data["protocol"] == "udp");
  CHECK(data["srcAddr"] == "10.213.0.2");
  CHECK(data["srcPort"] == 0);
  CHECK(data["dstAddr"] == "172.30.1.1");
  CHECK(data["dstPort"] == 53);
  CHECK(data["packets"] == 3);
  CHECK(data["bytes"] == 180);
  CHECK(data["txPackets"] == 3);
  CHECK(data["rxBytes"] == 0);
  CHECK(data["firstSeen"] == "2023-11-14T22:13:20.000000Z");
  CHECK(data["lastSeen"] == "2023-11-14T22:13:20.500000Z");
  CHECK(data["phase"] == "denied");
}

TEST_CASE("events: destroyed carries the flow summary only for cells with a network",
          "[events][net][flows]") {
  DestroyedData plain{"c", true, false};
  CHECK(!encode(plain)["data"].contains("flows"));
  DestroyedData d{"c", true, false};
  FlowSummaryData s;
  s.probes = true;
  s.flows = 2;
  s.tx_bytes = 100;
  s.denied_flows = 1;
  s.denied_packets = 4;
  s.nflog_gaps = 1;
  s.top_destinations = {{"172.30.1.1", "tcp", 443, 2, 10, 100}};
  d.flows = s;
  Json f = encode(d)["data"]["flows"];
  CHECK(f["probes"] == true);
  CHECK(f["flows"] == 2);
  CHECK(f["txBytes"] == 100);
  CHECK(f["deniedFlows"] == 1);
  CHECK(f["deniedPackets"] == 4);
  CHECK(f["nflogGaps"] == 1);
  CHECK(f["lostRecords"] == 0);
  CHECK(f["evictedFlows"] == 0);
  CHECK(f["topDestinations"] == Json::parse(R"([{"addr":"172.30.1.1","port":443,
      "protocol":"tcp","flows":2,"packets":10,"bytes":100}])"));
}

TEST_CASE("events: flow_probes says whether probes run and why not", "[events][net][flows]") {
  Json j = encode(FlowProbesData{"h", false, "nft", "BPF: no BTF"});
  CHECK(j["type"] == "dev.cellos.events.host.observability.v1.flow_probes");
  CHECK(!j.contains("subject"));
  CHECK(j["data"]["active"] == false);
  CHECK(j["data"]["enforcement"] == "nft");
  CHECK(j["data"]["reason"] == "BPF: no BTF");
}
