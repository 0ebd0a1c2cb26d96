#include "sinks/log_record.h"

#include <array>
#include <cstring>

#include "sinks/cloudevent_json.h"
#include "sinks/signing.h"

namespace cellos::sinks {
namespace {

using schema::LogRecord;

void set_text(auto&& setter, std::string_view s) {
  setter(capnp::Text::Reader(s.data(), s.size()));
}

schema::CompletedReason to_schema(CompletedReason r) {
  switch (r) {
    case CompletedReason::kExited: return schema::CompletedReason::EXITED;
    case CompletedReason::kSignaled: return schema::CompletedReason::SIGNALED;
    case CompletedReason::kTimeout: return schema::CompletedReason::TIMEOUT;
    case CompletedReason::kOom: return schema::CompletedReason::OOM;
    case CompletedReason::kSetupFailed: return schema::CompletedReason::SETUP_FAILED;
    case CompletedReason::kShutdown: return schema::CompletedReason::SHUTDOWN;
  }
  return schema::CompletedReason::EXITED;
}

const char* reason_text(schema::CompletedReason r) {
  switch (r) {
    case schema::CompletedReason::EXITED: return "exited";
    case schema::CompletedReason::SIGNALED: return "signaled";
    case schema::CompletedReason::TIMEOUT: return "timeout";
    case schema::CompletedReason::OOM: return "oom";
    case schema::CompletedReason::SETUP_FAILED: return "setup_failed";
    case schema::CompletedReason::SHUTDOWN: return "shutdown";
  }
  return "exited";
}

struct Build {
  mutable LogRecord::Data::Builder d;
  void operator()(const StartedData& e) const {
    auto b = d.initStarted();
    set_text([&](auto t) { b.setCellId(t); }, e.cell_id);
    set_text([&](auto t) { b.setRunId(t); }, e.run_id);
    set_text([&](auto t) { b.setHostId(t); }, e.host_id);
    if (!e.correlation_id.empty())
      set_text([&](auto t) { b.setCorrelationId(t); }, e.correlation_id);
    if (!e.argv0_path.empty()) set_text([&](auto t) { b.setArgv0Path(t); }, e.argv0_path);
    if (!e.backend.empty()) set_text([&](auto t) { b.setBackend(t); }, e.backend);
  }
  void operator()(const NetworkPolicyData& e) const {
    auto b = d.initNetworkPolicy();
    set_text([&](auto t) { b.setCellId(t); }, e.cell_id);
    set_text([&](auto t) { b.setIsolationMode(t); }, e.isolation_mode);
    auto list = b.initDeclaredEgress(static_cast<unsigned>(e.declared_egress.size()));
    for (unsigned i = 0; i < e.declared_egress.size(); ++i) {
      const auto& g = e.declared_egress[i];
      auto x = list[i];
      set_text([&](auto t) { x.setHost(t); }, g.host);
      x.setPort(g.port);
      if (g.protocol) set_text([&](auto t) { x.setProtocol(t); }, *g.protocol);
      if (!g.resolved_addresses.empty()) {
        auto addrs = x.initResolvedAddresses(static_cast<unsigned>(g.resolved_addresses.size()));
        for (unsigned k = 0; k < g.resolved_addresses.size(); ++k)
          addrs.set(k, capnp::Text::Reader(g.resolved_addresses[k].data(),
                                           g.resolved_addresses[k].size()));
      }
    }
  }
  void operator()(const NetworkEnforcementData& e) const {
    auto b = d.initNetworkEnforcement();
    set_text([&](auto t) { b.setCellId(t); }, e.cell_id);
    set_text([&](auto t) { b.setIsolationMode(t); }, e.isolation_mode);
    b.setDeclaredEgressRuleCount(e.declared_egress_rule_count);
    b.setNftRulesApplied(e.nft_rules_applied);
    b.setSupplementaryEgressFilterActive(e.supplementary_egress_filter_active);
    if (e.command_exit_code) {
      b.setHasCommandExitCode(true);
      b.setCommandExitCode(*e.command_exit_code);
    }
    b.setNftRuleCount(e.nft_rule_count);
    if (e.cell_address) set_text([&](auto t) { b.setCellAddress(t); }, *e.cell_address);
    auto list = b.initRuleCounters(static_cast<unsigned>(e.rule_counters.size()));
    for (unsigned i = 0; i < e.rule_counters.size(); ++i) {
      auto x = list[i];
      set_text([&](auto t) { x.setRule(t); }, e.rule_counters[i].rule);
      x.setPackets(e.rule_counters[i].packets);
      x.setBytes(e.rule_counters[i].bytes);
    }
  }
  void operator()(const CompletedData& e) const {
    auto b = d.initCompleted();
    set_text([&](auto t) { b.setCellId(t); }, e.cell_id);
    if (e.exit_code) {
      b.setHasExitCode(true);
      b.setExitCode(*e.exit_code);
    }
    if (e.signal) {
      b.setHasSignal(true);
      b.setSignal(*e.signal);
    }
    b.setDurationMs(e.duration_ms);
    b.setReason(to_schema(e.reason));
    if (!e.error.empty()) set_text([&](auto t) { b.setError(t); }, e.error);
    b.setStdoutTruncated(e.stdout_truncated);
    b.setStderrTruncated(e.stderr_truncated);
    if (e.resources) {
      const ResourcesData& r = *e.resources;
      auto x = b.initResources();
      if (r.memory_peak_bytes) x.setHasMemoryPeak(true), x.setMemoryPeakBytes(*r.memory_peak_bytes);
      if (r.cpu_usage_usec) x.setHasCpuUsage(true), x.setCpuUsageUsec(*r.cpu_usage_usec);
      if (r.pids_peak) x.setHasPidsPeak(true), x.setPidsPeak(*r.pids_peak);
      x.setOomKills(r.oom_kills);
    }
    if (e.graceful_stop) {
      auto x = b.initGracefulStop();
      set_text([&](auto t) { x.setCause(t); }, e.graceful_stop->cause);
      x.setGraceSeconds(e.graceful_stop->grace_seconds);
      x.setExitedInTime(e.graceful_stop->exited_in_time);
    }
    if (!e.backend.empty()) set_text([&](auto t) { b.setBackend(t); }, e.backend);
  }
  void operator()(const DestroyedData& e) const {
    auto b = d.initDestroyed();
    set_text([&](auto t) { b.setCellId(t); }, e.cell_id);
    b.setSucceeded(e.succeeded);
    b.setForced(e.forced);
    if (!e.reason.empty()) set_text([&](auto t) { b.setReason(t); }, e.reason);
    if (!e.backend.empty()) set_text([&](auto t) { b.setBackend(t); }, e.backend);
    if (e.flows) {
      const FlowSummaryData& f = *e.flows;
      auto x = b.initFlows();
      x.setProbes(f.probes);
      x.setFlows(f.flows);
      x.setTxPackets(f.tx_packets);
      x.setTxBytes(f.tx_bytes);
      x.setRxPackets(f.rx_packets);
      x.setRxBytes(f.rx_bytes);
      x.setDeniedFlows(f.denied_flows);
      x.setDeniedPackets(f.denied_packets);
      x.setLostRecords(f.lost_records);
      x.setNflogGaps(f.nflog_gaps);
      x.setEvictedFlows(f.evicted_flows);
      auto list = x.initTopDestinations(static_cast<unsigned>(f.top_destinations.size()));
      for (unsigned i = 0; i < f.top_destinations.size(); ++i) {
        const auto& t = f.top_destinations[i];
        auto y = list[i];
        set_text([&](auto v) { y.setAddr(v); }, t.addr);
        y.setPort(t.port);
        set_text([&](auto v) { y.setProtocol(v); }, t.protocol);
        y.setFlows(t.flows);
        y.setPackets(t.packets);
        y.setBytes(t.bytes);
      }
    }
    if (e.dns) {
      auto x = b.initDns();
      x.setQueries(e.dns->queries);
      x.setPermitted(e.dns->permitted);
      x.setRefused(e.dns->refused);
      x.setFailed(e.dns->failed);
      x.setDropped(e.dns->dropped);
      x.setRebindRejected(e.dns->rebind_rejected);
      x.setAddressesGranted(e.dns->addresses_granted);
      x.setAddressesEvicted(e.dns->addresses_evicted);
    }
  }
  void operator()(const FlowDecisionData& e) const {
    auto b = d.initFlowDecision();
    set_text([&](auto t) { b.setCellId(t); }, e.cell_id);
    set_text([&](auto t) { b.setDirection(t); }, e.direction);
    b.setAllowed(e.allowed);
    set_text([&](auto t) { b.setReasonCode(t); }, e.reason_code);
    set_text([&](auto t) { b.setProtocol(t); }, e.protocol);
    set_text([&](auto t) { b.setSrcAddr(t); }, e.src_addr);
    b.setSrcPort(e.src_port);
    set_text([&](auto t) { b.setDstAddr(t); }, e.dst_addr);
    b.setDstPort(e.dst_port);
    b.setPackets(e.packets);
    b.setBytes(e.bytes);
    b.setTxPackets(e.tx_packets);
    b.setTxBytes(e.tx_bytes);
    b.setRxPackets(e.rx_packets);
    b.setRxBytes(e.rx_bytes);
    b.setFirstSeenUs(e.first_seen_us);
    b.setLastSeenUs(e.last_seen_us);
    set_text([&](auto t) { b.setPhase(t); }, e.phase);
  }
  void operator()(const ExportData& e) const {
    auto b = d.initArtifactExport();
    set_text([&](auto t) { b.setCellId(t); }, e.cell_id);
    set_text([&](auto t) { b.setName(t); }, e.name);
    set_text([&](auto t) { b.setPath(t); }, e.path);
    b.setRequired(e.required);
    b.setSucceeded(e.succeeded);
    b.setSizeBytes(e.size_bytes);
    b.setFiles(e.files);
    if (!e.sha256.empty()) set_text([&](auto t) { b.setSha256(t); }, e.sha256);
    if (!e.error.empty()) set_text([&](auto t) { b.setError(t); }, e.error);
    auto list = b.initReceipts(static_cast<unsigned>(e.receipts.size()));
    for (unsigned k = 0; k < e.receipts.size(); ++k) {
      const auto& r = e.receipts[k];
      set_text([&](auto t) { list[k].setTargetKind(t); }, r.target_kind);
      set_text([&](auto t) { list[k].setDestination(t); }, r.destination);
      list[k].setSucceeded(r.succeeded);
      if (!r.error.empty()) set_text([&](auto t) { list[k].setError(t); }, r.error);
    }
  }
  void operator()(const DnsQueryData& e) const {
    auto b = d.initDnsQuery();
    set_text([&](auto t) { b.setCellId(t); }, e.cell_id);
    set_text([&](auto t) { b.setKind(t); }, e.kind);
    set_text([&](auto t) { b.setQueryName(t); }, e.query_name);
    set_text([&](auto t) { b.setQueryType(t); }, e.query_type);
    set_text([&](auto t) { b.setTransport(t); }, e.transport);
    set_text([&](auto t) { b.setDecision(t); }, e.decision);
    set_text([&](auto t) { b.setReasonCode(t); }, e.reason_code);
    set_text([&](auto t) { b.setResponseCode(t); }, e.response_code);
    auto list = b.initAnswers(static_cast<unsigned>(e.answers.size()));
    for (unsigned i = 0; i < e.answers.size(); ++i)
      set_text([&](auto t) { list.set(i, t); }, e.answers[i]);
    if (e.upstream_latency_us) {
      b.setHasUpstreamLatency(true);
      b.setUpstreamLatencyUs(*e.upstream_latency_us);
    }
    set_text([&](auto t) { b.setUpstream(t); }, e.upstream);
    b.setCount(e.count);
  }
  void operator()(const FlowProbesData& e) const {
    auto b = d.initFlowProbes();
    set_text([&](auto t) { b.setHostId(t); }, e.host_id);
    b.setActive(e.active);
    set_text([&](auto t) { b.setEnforcement(t); }, e.enforcement);
    if (!e.reason.empty()) set_text([&](auto t) { b.setReason(t); }, e.reason);
  }
  void operator()(const SecretAccessData& e) const {
    auto b = d.initSecretAccess();
    set_text([&](auto t) { b.setCellId(t); }, e.cell_id);
    set_text([&](auto t) { b.setRunId(t); }, e.run_id);
    set_text([&](auto t) { b.setSecretName(t); }, e.secret_name);
    b.setAllowed(e.allowed);
    set_text([&](auto t) { b.setReasonCode(t); }, e.reason_code);
    set_text([&](auto t) { b.setDelivery(t); }, e.delivery);
    b.setPeerPid(e.peer_pid);
    b.setPeerUid(e.peer_uid);
  }
  void operator()(const SecretsRevokedData& e) const {
    auto b = d.initSecretsRevoked();
    set_text([&](auto t) { b.setCellId(t); }, e.cell_id);
    set_text([&](auto t) { b.setRunId(t); }, e.run_id);
    set_text([&](auto t) { b.setDelivery(t); }, e.delivery);
    auto names = b.initSecretNames(static_cast<unsigned>(e.secret_names.size()));
    for (unsigned i = 0; i < e.secret_names.size(); ++i)
      names.set(i, capnp::Text::Reader(e.secret_names[i].data(), e.secret_names[i].size()));
    b.setServed(e.served);
    b.setRefused(e.refused);
    set_text([&](auto t) { b.setReason(t); }, e.reason);
  }
  void operator()(const IdentityIssuedData& e) const {
    auto b = d.initIdentityIssued();
    set_text([&](auto t) { b.setCellId(t); }, e.cell_id);
    set_text([&](auto t) { b.setRunId(t); }, e.run_id);
    set_text([&](auto t) { b.setIssuer(t); }, e.issuer);
    set_text([&](auto t) { b.setSubject(t); }, e.subject);
    set_text([&](auto t) { b.setAudience(t); }, e.audience);
    set_text([&](auto t) { b.setKeyId(t); }, e.key_id);
    set_text([&](auto t) { b.setJti(t); }, e.jti);
    set_text([&](auto t) { b.setDelivery(t); }, e.delivery);
    b.setIssuedAt(e.issued_at);
    b.setExpiresAt(e.expires_at);
  }
  void operator()(const RejectedData& e) const {
    auto b = d.initRejected();
    if (e.cell_id) set_text([&](auto t) { b.setCellId(t); }, *e.cell_id);
    set_text([&](auto t) { b.setReason(t); }, e.reason);
  }
};

std::string_view sv(capnp::Text::Reader t) { return {t.cStr(), t.size()}; }
std::string_view sv(capnp::Data::Reader d) {
  return {reinterpret_cast<const char*>(d.begin()), d.size()};
}

void append_uint(std::string& out, uint64_t v) {
  char buf[24];
  char* p = buf + sizeof buf;
  do {
    *--p = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v);
  out.append(p, static_cast<size_t>(buf + sizeof buf - p));
}

void append_int(std::string& out, int64_t v) {
  if (v < 0) {
    out += '-';
    append_uint(out, static_cast<uint64_t>(-(v + 1)) + 1);
  } else {
    append_uint(out, static_cast<uint64_t>(v));
  }
}

// RFC 3339 with microseconds. gmtime_r per event showed in profiles; the date and time up to
// the second change once a second, so they are cached.
void append_time(std::string& out, int64_t time_us) {
  thread_local int64_t cached_sec = INT64_MIN;
  thread_local std::string cached;  // "2026-11-23T11:12:13."
  int64_t sec = time_us >= 0 ? time_us / 1000000 : (time_us - 999999) / 1000000;
  if (sec != cached_sec) {
    std::string full = rfc3339_utc(sec * 1000000);
    cached = full.substr(0, full.size() - 7);
    cached_sec = sec;
  }
  out += cached;
  int64_t us = time_us - sec * 1000000;
  char buf[7];
  for (int i = 5; i >= 0; --i) {
    buf[i] = static_cast<char>('0' + us % 10);
    us /= 10;
  }
  buf[6] = 'Z';
  out.append(buf, 7);
}

// Appends `,"name":` (or `"name":` for the first field) in one append: per-character appends
// were a tenth of the per-event cost in the benchmark.
struct Field {
  std::string& out;
  bool first = true;
  void key(std::string_view k) {
    char buf[64];
    size_t n = 0;
    if (!first) buf[n++] = ',';
    first = false;
    buf[n++] = '"';
    std::memcpy(buf + n, k.data(), k.size());
    n += k.size();
    buf[n++] = '"';
    buf[n++] = ':';
    out.append(buf, n);
  }
  void str(std::string_view k, std::string_view v) {
    key(k);
    append_json_string(out, v);
  }
  void text_or_null(std::string_view k, bool has, capnp::Text::Reader v) {
    key(k);
    if (has)
      append_json_string(out, sv(v));
    else
      out += "null";
  }
  void u(std::string_view k, uint64_t v) {
    key(k);
    append_uint(out, v);
  }
  void i(std::string_view k, int64_t v) {
    key(k);
    append_int(out, v);
  }
  void b(std::string_view k, bool v) {
    key(k);
    out += v ? "true" : "false";
  }
  void hex(std::string_view k, capnp::Data::Reader d) {
    key(k);
    out += '"';
    out += to_hex(d.begin(), d.size());
    out += '"';
  }
};

void render_flow_summary(schema::FlowSummary::Reader s, Field& f) {
  std::string& out = f.out;
  f.key("flows");
  out += '{';
  Field g{out};
  g.b("probes", s.getProbes());
  g.u("flows", s.getFlows());
  g.u("txPackets", s.getTxPackets());
  g.u("txBytes", s.getTxBytes());
  g.u("rxPackets", s.getRxPackets());
  g.u("rxBytes", s.getRxBytes());
  g.u("deniedFlows", s.getDeniedFlows());
  g.u("deniedPackets", s.getDeniedPackets());
  g.u("lostRecords", s.getLostRecords());
  g.u("nflogGaps", s.getNflogGaps());
  g.u("evictedFlows", s.getEvictedFlows());
  g.key("topDestinations");
  out += '[';
  auto list = s.getTopDestinations();
  for (unsigned k = 0; k < list.size(); ++k) {
    if (k) out += ',';
    out += '{';
    Field h{out};
    h.str("addr", sv(list[k].getAddr()));
    h.u("port", list[k].getPort());
    h.str("protocol", sv(list[k].getProtocol()));
    h.u("flows", list[k].getFlows());
    h.u("packets", list[k].getPackets());
    h.u("bytes", list[k].getBytes());
    out += '}';
  }
  out += ']';
  out += '}';
}

void render_data(LogRecord::Data::Reader d, std::string& out) {
  out += '{';
  Field f{out};
  switch (d.which()) {
    case LogRecord::Data::STARTED: {
      auto s = d.getStarted();
      f.str("cellId", sv(s.getCellId()));
      f.str("runId", sv(s.getRunId()));
      f.str("hostId", sv(s.getHostId()));
      if (s.hasCorrelationId() && s.getCorrelationId().size())
        f.str("correlationId", sv(s.getCorrelationId()));
      if (s.hasArgv0Path() && s.getArgv0Path().size()) f.str("argv0Path", sv(s.getArgv0Path()));
      if (s.hasBackend() && s.getBackend().size() > 0) f.str("backend", sv(s.getBackend()));
      break;
    }
    case LogRecord::Data::NETWORK_POLICY: {
      auto s = d.getNetworkPolicy();
      auto list = s.getDeclaredEgress();
      f.str("cellId", sv(s.getCellId()));
      f.str("isolationMode", sv(s.getIsolationMode()));
      f.u("declaredEgressCount", list.size());
      f.key("declaredEgress");
      out += '[';
      for (unsigned k = 0; k < list.size(); ++k) {
        if (k) out += ',';
        out += '{';
        Field g{out};
        g.str("host", sv(list[k].getHost()));
        g.u("port", list[k].getPort());
        g.text_or_null("protocol", list[k].hasProtocol(), list[k].getProtocol());
        if (list[k].hasResolvedAddresses() && list[k].getResolvedAddresses().size() > 0) {
          g.key("resolvedAddresses");
          out += '[';
          auto addrs = list[k].getResolvedAddresses();
          for (unsigned a = 0; a < addrs.size(); ++a) {
            if (a) out += ',';
            append_json_string(out, sv(addrs[a]));
          }
          out += ']';
        }
        out += '}';
      }
      out += ']';
      break;
    }
    case LogRecord::Data::COMPLETED: {
      auto s = d.getCompleted();
      f.str("cellId", sv(s.getCellId()));
      f.key("exitCode");
      if (s.getHasExitCode()) append_int(out, s.getExitCode()); else out += "null";
      f.key("signal");
      if (s.getHasSignal()) append_int(out, s.getSignal()); else out += "null";
      f.u("durationMs", s.getDurationMs());
      f.str("reason", reason_text(s.getReason()));
      if (s.hasError() && s.getError().size() > 0) f.str("error", sv(s.getError()));
      if (s.getStdoutTruncated()) f.b("stdoutTruncated", true);
      if (s.getStderrTruncated()) f.b("stderrTruncated", true);
      if (s.hasResources()) {
        auto r = s.getResources();
        f.key("resources");
        out += '{';
        Field g{out};
        g.key("memoryPeakBytes");
        if (r.getHasMemoryPeak()) append_uint(out, r.getMemoryPeakBytes()); else out += "null";
        g.key("cpuUsageUsec");
        if (r.getHasCpuUsage()) append_uint(out, r.getCpuUsageUsec()); else out += "null";
        g.key("pidsPeak");
        if (r.getHasPidsPeak()) append_uint(out, r.getPidsPeak()); else out += "null";
        g.u("oomKills", r.getOomKills());
        out += '}';
      }
      if (s.hasGracefulStop()) {
        auto r = s.getGracefulStop();
        f.key("gracefulStop");
        out += '{';
        Field g{out};
        g.str("cause", sv(r.getCause()));
        g.u("graceSeconds", r.getGraceSeconds());
        g.b("exitedInTime", r.getExitedInTime());
        out += '}';
      }
      if (s.hasBackend() && s.getBackend().size() > 0) f.str("backend", sv(s.getBackend()));
      break;
    }
    case LogRecord::Data::DESTROYED: {
      auto s = d.getDestroyed();
      f.str("cellId", sv(s.getCellId()));
      f.str("outcome", s.getSucceeded() ? "succeeded" : "failed");
      f.str("terminalState", s.getForced() ? "Forced" : "Clean");
      if (s.hasReason() && s.getReason().size() > 0) f.str("reason", sv(s.getReason()));
      if (s.hasBackend() && s.getBackend().size() > 0) f.str("backend", sv(s.getBackend()));
      if (s.hasFlows()) render_flow_summary(s.getFlows(), f);
      if (s.hasDns()) {
        auto x = s.getDns();
        f.key("dns");
        out += '{';
        Field g{out};
        g.u("queries", x.getQueries());
        g.u("permitted", x.getPermitted());
        g.u("refused", x.getRefused());
        g.u("failed", x.getFailed());
        g.u("dropped", x.getDropped());
        g.u("rebindRejected", x.getRebindRejected());
        g.u("addressesGranted", x.getAddressesGranted());
        g.u("addressesEvicted", x.getAddressesEvicted());
        out += '}';
      }
      break;
    }
    case LogRecord::Data::DNS_QUERY: {
      auto s = d.getDnsQuery();
      f.str("cellId", sv(s.getCellId()));
      f.str("queryName", sv(s.getQueryName()));
      f.str("queryType", sv(s.getQueryType()));
      f.str("transport", sv(s.getTransport()));
      f.str("decision", sv(s.getDecision()));
      f.str("reasonCode", sv(s.getReasonCode()));
      f.str("responseCode", sv(s.getResponseCode()));
      f.key("answers");
      out += '[';
      {
        auto list = s.getAnswers();
        for (unsigned i = 0; i < list.size(); ++i) {
          if (i) out += ',';
          append_json_string(out, sv(list[i]));
        }
      }
      out += ']';
      f.key("upstreamLatencyUs");
      if (s.getHasUpstreamLatency()) append_int(out, s.getUpstreamLatencyUs()); else out += "null";
      f.str("upstream", sv(s.getUpstream()));
      f.u("count", s.getCount());
      break;
    }
    case LogRecord::Data::FLOW_DECISION: {
      auto s = d.getFlowDecision();
      f.str("cellId", sv(s.getCellId()));
      f.str("direction", sv(s.getDirection()));
      f.str("decision", s.getAllowed() ? "allow" : "deny");
      f.str("reasonCode", sv(s.getReasonCode()));
      f.str("protocol", sv(s.getProtocol()));
      f.str("srcAddr", sv(s.getSrcAddr()));
      f.u("srcPort", s.getSrcPort());
      f.str("dstAddr", sv(s.getDstAddr()));
      f.u("dstPort", s.getDstPort());
      f.u("packets", s.getPackets());
      f.u("bytes", s.getBytes());
      f.u("txPackets", s.getTxPackets());
      f.u("txBytes", s.getTxBytes());
      f.u("rxPackets", s.getRxPackets());
      f.u("rxBytes", s.getRxBytes());
      f.str("firstSeen", [&] { std::string t; append_time(t, s.getFirstSeenUs()); return t; }());
      f.str("lastSeen", [&] { std::string t; append_time(t, s.getLastSeenUs()); return t; }());
      f.str("phase", sv(s.getPhase()));
      break;
    }
    case LogRecord::Data::ARTIFACT_EXPORT: {
      auto s = d.getArtifactExport();
      f.str("cellId", sv(s.getCellId()));
      f.str("name", sv(s.getName()));
      f.str("path", sv(s.getPath()));
      f.b("required", s.getRequired());
      f.b("succeeded", s.getSucceeded());
      f.u("sizeBytes", s.getSizeBytes());
      f.u("files", s.getFiles());
      if (s.hasSha256() && s.getSha256().size() > 0) f.str("sha256", sv(s.getSha256()));
      if (s.hasError() && s.getError().size() > 0) f.str("error", sv(s.getError()));
      f.key("receipts");
      std::string& out = f.out;
      out += '[';
      auto list = s.getReceipts();
      for (unsigned k = 0; k < list.size(); ++k) {
        if (k) out += ',';
        out += '{';
        Field h{out};
        h.str("targetKind", sv(list[k].getTargetKind()));
        h.str("destination", sv(list[k].getDestination()));
        h.b("succeeded", list[k].getSucceeded());
        if (list[k].hasError() && list[k].getError().size() > 0) h.str("error", sv(list[k].getError()));
        out += '}';
      }
      out += ']';
      break;
    }
    case LogRecord::Data::FLOW_PROBES: {
      auto s = d.getFlowProbes();
      f.str("hostId", sv(s.getHostId()));
      f.b("active", s.getActive());
      f.str("enforcement", sv(s.getEnforcement()));
      if (s.hasReason() && s.getReason().size() > 0) f.str("reason", sv(s.getReason()));
      break;
    }
    case LogRecord::Data::NETWORK_ENFORCEMENT: {
      auto s = d.getNetworkEnforcement();
      f.str("cellId", sv(s.getCellId()));
      f.str("isolationMode", sv(s.getIsolationMode()));
      f.u("declaredEgressRuleCount", s.getDeclaredEgressRuleCount());
      f.b("nftRulesApplied", s.getNftRulesApplied());
      f.b("supplementaryEgressFilterActive", s.getSupplementaryEgressFilterActive());
      f.key("commandExitCode");
      if (s.getHasCommandExitCode()) append_int(out, s.getCommandExitCode()); else out += "null";
      f.u("nftRuleCount", s.getNftRuleCount());
      f.text_or_null("cellAddress", s.hasCellAddress(), s.getCellAddress());
      f.key("ruleCounters");
      out += '[';
      auto list = s.getRuleCounters();
      for (unsigned k = 0; k < list.size(); ++k) {
        if (k) out += ',';
        out += '{';
        Field g{out};
        g.str("rule", sv(list[k].getRule()));
        g.u("packets", list[k].getPackets());
        g.u("bytes", list[k].getBytes());
        out += '}';
      }
      out += ']';
      break;
    }
    case LogRecord::Data::SECRET_ACCESS: {
      auto s = d.getSecretAccess();
      f.str("cellId", sv(s.getCellId()));
      f.str("runId", sv(s.getRunId()));
      f.str("secretName", sv(s.getSecretName()));
      f.str("decision", s.getAllowed() ? "allow" : "deny");
      f.str("reasonCode", sv(s.getReasonCode()));
      f.str("delivery", sv(s.getDelivery()));
      f.i("peerPid", s.getPeerPid());
      f.u("peerUid", s.getPeerUid());
      break;
    }
    case LogRecord::Data::SECRETS_REVOKED: {
      auto s = d.getSecretsRevoked();
      f.str("cellId", sv(s.getCellId()));
      f.str("runId", sv(s.getRunId()));
      f.str("delivery", sv(s.getDelivery()));
      f.key("secretNames");
      out += '[';
      auto names = s.getSecretNames();
      for (unsigned k = 0; k < names.size(); ++k) {
        if (k) out += ',';
        append_json_string(out, sv(names[k]));
      }
      out += ']';
      f.u("served", s.getServed());
      f.u("refused", s.getRefused());
      f.str("reason", sv(s.getReason()));
      break;
    }
    case LogRecord::Data::IDENTITY_ISSUED: {
      auto s = d.getIdentityIssued();
      f.str("cellId", sv(s.getCellId()));
      f.str("runId", sv(s.getRunId()));
      f.str("issuer", sv(s.getIssuer()));
      f.str("subject", sv(s.getSubject()));
      f.str("audience", sv(s.getAudience()));
      f.str("keyId", sv(s.getKeyId()));
      f.str("jti", sv(s.getJti()));
      f.str("delivery", sv(s.getDelivery()));
      f.i("issuedAt", s.getIssuedAt());
      f.i("expiresAt", s.getExpiresAt());
      break;
    }
    case LogRecord::Data::REJECTED: {
      auto s = d.getRejected();
      f.text_or_null("cellId", s.hasCellId(), s.getCellId());
      f.str("reason", sv(s.getReason()));
      break;
    }
    case LogRecord::Data::BATCH_SEALED: {
      auto s = d.getBatchSealed();
      f.u("firstSeq", s.getFirstSeq());
      f.u("lastSeq", s.getLastSeq());
      f.u("eventCount", s.getEventCount());
      f.hex("merkleRoot", s.getMerkleRoot());
      f.hex("prevDigest", s.getPrevDigest());
      f.b("recovered", s.getRecovered());
      f.u("truncatedBytes", s.getTruncatedBytes());
      f.str("alg", s.getKeyId().size() ? "ed25519" : "none");
      f.str("keyId", sv(s.getKeyId()));
      // Last, so the signed bytes (this line with an empty signature) are found by one search.
      f.str("signature", base64(sv(s.getSignature())));
      break;
    }
    case LogRecord::Data::GAP: {
      auto s = d.getGap();
      f.u("droppedEvents", s.getDroppedEvents());
      f.u("droppedBytes", s.getDroppedBytes());
      f.str("firstTime", [&] { std::string t; append_time(t, s.getFirstTimeUs()); return t; }());
      f.str("lastTime", [&] { std::string t; append_time(t, s.getLastTimeUs()); return t; }());
      f.str("reason", sv(s.getReason()));
      break;
    }
  }
  out += '}';
}

}  // namespace

void build_data(const EventData& data, LogRecord::Builder r) { std::visit(Build{r.initData()}, data); }

void set_header(const RecordHeader& h, LogRecord::Builder r) {
  r.setSeq(h.seq);
  r.setTimeUs(h.time_us);
  set_text([&](auto t) { r.setId(t); }, h.id);
  set_text([&](auto t) { r.setSource(t); }, h.source);
  if (!h.subject.empty()) set_text([&](auto t) { r.setSubject(t); }, h.subject);
  if (!h.correlation.empty()) set_text([&](auto t) { r.setCorrelationId(t); }, h.correlation);
}

const char* record_type(LogRecord::Reader r) {
  switch (r.getData().which()) {
    case LogRecord::Data::STARTED: return "dev.cellos.events.cell.lifecycle.v1.started";
    case LogRecord::Data::NETWORK_POLICY:
      return "dev.cellos.events.cell.observability.v1.network_policy";
    case LogRecord::Data::COMPLETED: return "dev.cellos.events.cell.command.v1.completed";
    case LogRecord::Data::DESTROYED: return "dev.cellos.events.cell.lifecycle.v1.destroyed";
    case LogRecord::Data::REJECTED: return "dev.cellos.events.cell.lifecycle.v1.rejected";
    case LogRecord::Data::BATCH_SEALED: return kBatchSealedType;
    case LogRecord::Data::GAP: return kGapType;
    case LogRecord::Data::NETWORK_ENFORCEMENT:
      return "dev.cellos.events.cell.observability.v1.network_enforcement";
    case LogRecord::Data::FLOW_DECISION:
      return "dev.cellos.events.cell.observability.v1.network_flow_decision";
    case LogRecord::Data::FLOW_PROBES: return "dev.cellos.events.host.observability.v1.flow_probes";
    case LogRecord::Data::SECRET_ACCESS: return "dev.cellos.events.cell.secrets.v1.access_decision";
    case LogRecord::Data::SECRETS_REVOKED: return "dev.cellos.events.cell.secrets.v1.revoked";
    case LogRecord::Data::IDENTITY_ISSUED: return "dev.cellos.events.cell.identity.v1.materialized";
    case LogRecord::Data::ARTIFACT_EXPORT: return "dev.cellos.events.cell.export.v1.completed";
    case LogRecord::Data::DNS_QUERY: return dns_event_type(sv(r.getData().getDnsQuery().getKind()));
  }
  return "unknown";
}

void render_line(LogRecord::Reader r, std::string& out, bool with_dsse) {
  // One growth check for the whole line instead of one per append in the common case.
  if (out.capacity() - out.size() < 1024) out.reserve(out.size() * 2 + 1024);
  Field f{out};
  out += '{';
  f.str("specversion", "1.0");
  f.str("id", sv(r.getId()));
  f.str("source", sv(r.getSource()));
  f.str("type", record_type(r));
  if (r.hasSubject() && r.getSubject().size()) f.str("subject", sv(r.getSubject()));
  f.key("time");
  out += '"';
  append_time(out, r.getTimeUs());
  out += '"';
  f.str("datacontenttype", "application/json");
  // A CloudEvents extension attribute (lowercase alphanumerics, as the spec requires of names).
  if (r.hasCorrelationId() && r.getCorrelationId().size())
    f.str("correlationid", sv(r.getCorrelationId()));
  if (r.getSeq() != 0) f.u("cellosseq", r.getSeq());  // 0: a record outside a log
  if (with_dsse && r.hasDsse()) f.str("dssematerial", sv(r.getDsse()));
  f.key("data");
  render_data(r.getData(), out);
  out += '}';
}

namespace {
// Bytes a JSON string takes as they are: printable ASCII but the quote and the backslash.
constexpr std::array<bool, 256> kPlain = [] {
  std::array<bool, 256> t{};
  for (int c = 0x20; c < 0x80; ++c) t[static_cast<size_t>(c)] = c != '"' && c != '\\';
  return t;
}();
}  // namespace

void append_json_string(std::string& out, std::string_view s) {
  static const char* kHex = "0123456789abcdef";
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  {
    // Fast path: the usual all-plain string goes out as it is.
    const unsigned char* q = p;
    while (q < end && kPlain[*q]) ++q;
    if (q == end) {
      out += '"';
      out.append(s);
      out += '"';
      return;
    }
  }
  out += '"';
  while (p < end) {
    // A run of plain printable ASCII is copied in one append.
    const unsigned char* run = p;
    while (p < end && kPlain[*p]) ++p;
    if (p != run) out.append(reinterpret_cast<const char*>(run), static_cast<size_t>(p - run));
    if (p >= end) break;
    unsigned char c = *p;
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
      ++p;
    } else if (c < 0x20) {
      switch (c) {
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 15];
      }
      ++p;
    } else {
      // A UTF-8 sequence: copied if well formed (no overlongs, no surrogates), else U+FFFD.
      size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
      bool ok = n && c <= 0xf4 && static_cast<size_t>(end - p) >= n;
      for (size_t k = 1; ok && k < n; ++k) ok = (p[k] & 0xc0) == 0x80;
      if (ok && n == 3) {
        if (c == 0xe0 && p[1] < 0xa0) ok = false;
        if (c == 0xed && p[1] >= 0xa0) ok = false;
      }
      if (ok && n == 4) {
        if (c == 0xf0 && p[1] < 0x90) ok = false;
        if (c == 0xf4 && p[1] >= 0x90) ok = false;
      }
      if (ok) {
        out.append(reinterpret_cast<const char*>(p), n);
        p += n;
      } else {
        out += "\xef\xbf\xbd";
        ++p;
      }
    }
  }
  out += '"';
}

std::string dsse_pae(std::string_view type, std::string_view body) {
  std::string s = "DSSEv1 ";
  s += std::to_string(type.size());
  s += ' ';
  s += type;
  s += ' ';
  s += std::to_string(body.size());
  s += ' ';
  s += body;
  return s;
}

capnp::MallocMessageBuilder& RecordArena::start() {
  // capnp wants a zeroed first segment; ~MallocMessageBuilder zeroes the part the last record
  // used when the segment is the caller's, so destroying the previous message is enough.
  msg_.reset();
  msg_.emplace(kj::arrayPtr(reinterpret_cast<capnp::word*>(words_.get()), kWords));
  return *msg_;
}

}  // namespace cellos::sinks
