// Typed events into Cap'n Proto LogRecords (the writer's half of log_record.h; rendering a
// record back to its CloudEvents line is log_record.cc).
#include "sinks/log_record.h"

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
    if (!e.admission.empty()) set_text([&](auto t) { b.setAdmission(t); }, e.admission);
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
  void operator()(const NestedSealedData& e) const {
    auto b = d.initNestedSealed();
    auto bytes = [](const std::string& s) {
      return capnp::Data::Reader(reinterpret_cast<const kj::byte*>(s.data()), s.size());
    };
    set_text([&](auto t) { b.setCellId(t); }, e.cell_id);
    set_text([&](auto t) { b.setNestingPath(t); }, e.nesting_path);
    set_text([&](auto t) { b.setPath(t); }, e.path);
    b.setPublicKey(bytes(e.public_key));
    set_text([&](auto t) { b.setKeyId(t); }, e.key_id);
    b.setHeadDigest(bytes(e.head_digest));
    b.setLastSeq(e.last_seq);
    b.setEventCount(e.event_count);
    b.setBatches(e.batches);
    b.setSizeBytes(e.size_bytes);
    b.setSha256(bytes(e.sha256));
    b.setVerified(e.verified);
    if (!e.error.empty()) set_text([&](auto t) { b.setError(t); }, e.error);
    set_text([&](auto t) { b.setFormat(t); }, e.format);
    b.setUnsealedRecords(e.unsealed_records);
    b.setTornBytes(e.torn_bytes);
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

}  // namespace cellos::sinks
