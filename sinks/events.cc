#include "sinks/events.h"

#include <time.h>

#include "base/text.h"

namespace cellos::sinks {

const char* reason_name(CompletedReason r) {
  switch (r) {
    case CompletedReason::kExited: return "exited";
    case CompletedReason::kSignaled: return "signaled";
    case CompletedReason::kTimeout: return "timeout";
    case CompletedReason::kOom: return "oom";
    case CompletedReason::kSetupFailed: return "setup_failed";
    case CompletedReason::kShutdown: return "shutdown";
  }
  return "exited";
}

const char* dns_event_type(std::string_view kind) {
  if (kind == "dns_query_permitted") return "dev.cellos.events.cell.observability.v1.dns_query_permitted";
  if (kind == "dns_query_refused") return "dev.cellos.events.cell.observability.v1.dns_query_refused";
  if (kind == "dns_authority_rebind_rejected")
    return "dev.cellos.events.cell.observability.v1.dns_authority_rebind_rejected";
  return "dev.cellos.events.cell.observability.v1.dns_query";
}

namespace {
struct TypeOf {
  const char* operator()(const StartedData&) const {
    return "dev.cellos.events.cell.lifecycle.v1.started";
  }
  const char* operator()(const NetworkPolicyData&) const {
    return "dev.cellos.events.cell.observability.v1.network_policy";
  }
  const char* operator()(const NetworkEnforcementData&) const {
    return "dev.cellos.events.cell.observability.v1.network_enforcement";
  }
  const char* operator()(const CompletedData&) const {
    return "dev.cellos.events.cell.command.v1.completed";
  }
  const char* operator()(const DestroyedData&) const {
    return "dev.cellos.events.cell.lifecycle.v1.destroyed";
  }
  const char* operator()(const RejectedData&) const {
    return "dev.cellos.events.cell.lifecycle.v1.rejected";
  }
  const char* operator()(const FlowDecisionData&) const {
    return "dev.cellos.events.cell.observability.v1.network_flow_decision";
  }
  const char* operator()(const NestedSealedData&) const {
    return "dev.cellos.events.cell.nested.v1.sealed";
  }
  const char* operator()(const ExportData&) const {
    return "dev.cellos.events.cell.export.v1.completed";
  }
  const char* operator()(const FlowProbesData&) const {
    return "dev.cellos.events.host.observability.v1.flow_probes";
  }
  const char* operator()(const SecretAccessData&) const {
    return "dev.cellos.events.cell.secrets.v1.access_decision";
  }
  const char* operator()(const SecretsRevokedData&) const {
    return "dev.cellos.events.cell.secrets.v1.revoked";
  }
  const char* operator()(const IdentityIssuedData&) const {
    return "dev.cellos.events.cell.identity.v1.materialized";
  }
  const char* operator()(const DnsQueryData& d) const { return dns_event_type(d.kind); }
};

struct SubjectOf {
  std::string operator()(const RejectedData& d) const { return d.cell_id.value_or(""); }
  std::string operator()(const FlowProbesData&) const { return ""; }
  template <typename T>
  std::string operator()(const T& d) const {
    return d.cell_id;
  }
};
}  // namespace

const char* event_type(const EventData& d) { return std::visit(TypeOf{}, d); }

Event make_event(EventData data) {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  // A rejection's reason may quote a hostile spec: the event keeps one bounded line of it,
  // whatever the caller passed.
  if (auto* r = std::get_if<RejectedData>(&data)) r->reason = base::bounded_line(r->reason);
  Event e;
  e.subject = std::visit(SubjectOf{}, data);
  e.data = std::move(data);
  e.time_us = static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
  return e;
}

}  // namespace cellos::sinks
