#include "sinks/cloudevent_json.h"

#include <sys/random.h>
#include <time.h>

#include <cstdio>
#include <nlohmann/json.hpp>

namespace cellos::sinks {
namespace {

using nlohmann::ordered_json;

template <typename T>
ordered_json opt(const std::optional<T>& v) {
  return v ? ordered_json(*v) : ordered_json(nullptr);
}

struct DataOf {
  ordered_json operator()(const StartedData& d) const {
    return {{"cellId", d.cell_id}, {"runId", d.run_id}, {"hostId", d.host_id}};
  }
  ordered_json operator()(const NetworkPolicyData& d) const {
    ordered_json egress = ordered_json::array();
    for (const auto& e : d.declared_egress) {
      ordered_json item = {{"host", e.host}, {"port", e.port}, {"protocol", opt(e.protocol)}};
      if (!e.resolved_addresses.empty()) item["resolvedAddresses"] = e.resolved_addresses;
      egress.push_back(std::move(item));
    }
    return {{"cellId", d.cell_id},
            {"isolationMode", d.isolation_mode},
            {"declaredEgressCount", d.declared_egress.size()},
            {"declaredEgress", std::move(egress)}};
  }
  ordered_json operator()(const NetworkEnforcementData& d) const {
    ordered_json counters = ordered_json::array();
    for (const auto& c : d.rule_counters)
      counters.push_back({{"rule", c.rule}, {"packets", c.packets}, {"bytes", c.bytes}});
    return {{"cellId", d.cell_id},
            {"isolationMode", d.isolation_mode},
            {"declaredEgressRuleCount", d.declared_egress_rule_count},
            {"nftRulesApplied", d.nft_rules_applied},
            {"supplementaryEgressFilterActive", d.supplementary_egress_filter_active},
            {"commandExitCode", opt(d.command_exit_code)},
            {"nftRuleCount", d.nft_rule_count},
            {"cellAddress", opt(d.cell_address)},
            {"ruleCounters", std::move(counters)}};
  }
  ordered_json operator()(const CompletedData& d) const {
    ordered_json j = {{"cellId", d.cell_id},
                      {"exitCode", opt(d.exit_code)},
                      {"signal", opt(d.signal)},
                      {"durationMs", d.duration_ms},
                      {"reason", reason_name(d.reason)}};
    if (!d.error.empty()) j["error"] = d.error;
    if (d.stdout_truncated) j["stdoutTruncated"] = true;
    if (d.stderr_truncated) j["stderrTruncated"] = true;
    return j;
  }
  ordered_json operator()(const DestroyedData& d) const {
    ordered_json j = {{"cellId", d.cell_id},
                      {"outcome", d.succeeded ? "succeeded" : "failed"},
                      {"terminalState", d.forced ? "Forced" : "Clean"}};
    if (!d.reason.empty()) j["reason"] = d.reason;
    return j;
  }
  ordered_json operator()(const RejectedData& d) const {
    return {{"cellId", opt(d.cell_id)}, {"reason", d.reason}};
  }
};

}  // namespace

std::string rfc3339_utc(int64_t time_us) {
  time_t secs = static_cast<time_t>(time_us / 1000000);
  tm t{};
  gmtime_r(&secs, &t);
  char buf[64];  // ample for any int fields, which keeps -Wformat-truncation quiet
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", t.tm_year + 1900,
                t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec,
                static_cast<int>(time_us % 1000000));
  return buf;
}

std::string encode_cloudevent(const Event& e, const CloudEventEnvelope& env) {
  ordered_json j = {{"specversion", "1.0"},
                    {"id", env.id},
                    {"source", env.source},
                    {"type", event_type(e.data)}};
  if (!e.subject.empty()) j["subject"] = e.subject;
  j["time"] = rfc3339_utc(e.time_us);
  j["datacontenttype"] = "application/json";
  j["data"] = std::visit(DataOf{}, e.data);
  // Replace invalid UTF-8 (a hostile argv or path could carry it) rather than throw.
  return j.dump(-1, ' ', false, ordered_json::error_handler_t::replace);
}

EventIdGenerator::EventIdGenerator() {
  uint64_t r = 0;
  if (getrandom(&r, sizeof r, 0) != sizeof r) {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    r = static_cast<uint64_t>(ts.tv_nsec) ^ (static_cast<uint64_t>(getpid()) << 32);
  }
  char buf[24];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(r));
  prefix_ = buf;
}

std::string EventIdGenerator::next() { return prefix_ + "-" + std::to_string(++counter_); }

}  // namespace cellos::sinks
