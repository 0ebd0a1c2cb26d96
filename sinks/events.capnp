# Every record of the event log, defined once. The reactor builds these (one arena message per
# record, its first segment reused), renders them as CloudEvents JSON lines for the JSONL sink,
# or writes them as a packed stream for `[events] format = "capnp"`. `events cat` and `verify`
# render the packed stream to the very same lines, so Merkle roots and signatures cover one
# byte sequence whatever the format.
@0xab86b027550323cc;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("cellos::sinks::schema");

struct DeclaredEgress {
  host @0 :Text;
  port @1 :UInt16;
  protocol @2 :Text;          # unset: JSON null
  resolvedAddresses @3 :List(Text);  # a hostname's addresses, from admission; empty: omitted
}

struct Started {
  cellId @0 :Text;
  runId @1 :Text;
  hostId @2 :Text;
  correlationId @3 :Text;     # spec.correlation.correlationId; unset or empty: omitted
  argv0Path @4 :Text;         # the program run (a bare argv[0] resolved); unset or empty: omitted
  backend @5 :Text;           # "native" | "gvisor": what runs the cell (cells/backend.h)
  admission @6 :Text;         # "pool" | "cold": a prepared cell or a fresh clone (cells/warm_pool.h)
}

struct NetworkPolicy {
  cellId @0 :Text;
  isolationMode @1 :Text;
  declaredEgress @2 :List(DeclaredEgress);
}

enum CompletedReason { exited @0; signaled @1; timeout @2; oom @3; setupFailed @4; shutdown @5; }

# What the cell's processes used over its life, from its cgroup. has*: the host counts it.
struct Resources {
  hasMemoryPeak @0 :Bool;
  memoryPeakBytes @1 :UInt64;
  hasCpuUsage @2 :Bool;
  cpuUsageUsec @3 :UInt64;
  hasPidsPeak @4 :Bool;
  pidsPeak @5 :UInt64;
  oomKills @6 :UInt64;
}

# The cell was asked to stop (SIGTERM to its processes) before it was killed.
struct GracefulStop {
  cause @0 :Text;           # "timeout" | "shutdown"
  graceSeconds @1 :UInt64;
  exitedInTime @2 :Bool;    # false: SIGKILL at the end of the grace
}

struct Completed {
  cellId @0 :Text;
  hasExitCode @1 :Bool;
  exitCode @2 :Int32;
  hasSignal @3 :Bool;
  signal @4 :Int32;
  durationMs @5 :UInt64;
  reason @6 :CompletedReason;
  error @7 :Text;             # unset or empty: omitted
  stdoutTruncated @8 :Bool;   # the log stream was cut at [logs] max_bytes_per_stream
  stderrTruncated @9 :Bool;
  resources @10 :Resources;    # unset: omitted (the cell never ran)
  gracefulStop @11 :GracefulStop;  # unset: omitted (nobody asked it to stop)
  backend @12 :Text;          # unset or empty: omitted (a cell refused before one was chosen)
}

struct FlowDestination {
  addr @0 :Text;
  port @1 :UInt16;
  protocol @2 :Text;
  flows @3 :UInt64;
  packets @4 :UInt64;
  bytes @5 :UInt64;
}

struct FlowSummary {
  probes @0 :Bool;
  flows @1 :UInt64;
  txPackets @2 :UInt64;
  txBytes @3 :UInt64;
  rxPackets @4 :UInt64;
  rxBytes @5 :UInt64;
  deniedFlows @6 :UInt64;
  deniedPackets @7 :UInt64;
  lostRecords @8 :UInt64;
  nflogGaps @9 :UInt64;
  evictedFlows @10 :UInt64;
  topDestinations @11 :List(FlowDestination);
}

struct Destroyed {
  cellId @0 :Text;
  succeeded @1 :Bool;
  forced @2 :Bool;
  reason @3 :Text;            # "lost": found running after a crash; unset or empty: omitted
  flows @4 :FlowSummary;      # unset: omitted (a cell without a network namespace of its own)
  backend @5 :Text;           # unset or empty: omitted (a lost cell found by recovery)
  dns @6 :DnsSummary;         # unset: omitted (a cell without a dnsAuthority)
}

struct DnsSummary {
  queries @0 :UInt64;
  permitted @1 :UInt64;
  refused @2 :UInt64;
  failed @3 :UInt64;
  dropped @4 :UInt64;
  rebindRejected @5 :UInt64;
  addressesGranted @6 :UInt64;
  addressesEvicted @7 :UInt64;
}

# dns_query, dns_query_permitted, dns_query_refused, dns_authority_rebind_rejected (by `kind`).
struct DnsQuery {
  cellId @0 :Text;
  kind @1 :Text;
  queryName @2 :Text;
  queryType @3 :Text;
  transport @4 :Text;
  decision @5 :Text;
  reasonCode @6 :Text;
  responseCode @7 :Text;
  answers @8 :List(Text);
  hasUpstreamLatency @9 :Bool;
  upstreamLatencyUs @10 :Int64;
  upstream @11 :Text;
  count @12 :UInt64;
}

struct FlowDecision {
  cellId @0 :Text;
  direction @1 :Text;
  allowed @2 :Bool;
  reasonCode @3 :Text;
  protocol @4 :Text;
  srcAddr @5 :Text;
  srcPort @6 :UInt16;
  dstAddr @7 :Text;
  dstPort @8 :UInt16;
  packets @9 :UInt64;
  bytes @10 :UInt64;
  txPackets @11 :UInt64;
  txBytes @12 :UInt64;
  rxPackets @13 :UInt64;
  rxBytes @14 :UInt64;
  firstSeenUs @15 :Int64;
  lastSeenUs @16 :Int64;
  phase @17 :Text;
}

struct FlowProbes {
  hostId @0 :Text;
  active @1 :Bool;
  enforcement @2 :Text;
  reason @3 :Text;
}

struct RuleCounter {
  rule @0 :Text;              # "egress[i]", "loopback", "established", "nflog", "drop"
  packets @1 :UInt64;
  bytes @2 :UInt64;
}

struct NetworkEnforcement {
  cellId @0 :Text;
  isolationMode @1 :Text;
  declaredEgressRuleCount @2 :UInt64;
  nftRulesApplied @3 :Bool;
  supplementaryEgressFilterActive @4 :Bool;
  hasCommandExitCode @5 :Bool;
  commandExitCode @6 :Int32;
  nftRuleCount @7 :UInt64;
  cellAddress @8 :Text;       # unset: JSON null
  ruleCounters @9 :List(RuleCounter);
}

# One spec.export artifact (CellOS's ExportReceipt), per target where it went.
struct ExportTargetReceipt {
  targetKind @0 :Text;        # "LocalPath" | "HTTP"
  destination @1 :Text;
  succeeded @2 :Bool;
  error @3 :Text;             # unset or empty: omitted
}

struct ArtifactExport {
  cellId @0 :Text;
  name @1 :Text;
  path @2 :Text;
  required @3 :Bool;
  succeeded @4 :Bool;
  sizeBytes @5 :UInt64;
  files @6 :UInt64;
  sha256 @7 :Text;            # unset or empty: omitted (not read)
  error @8 :Text;             # unset or empty: omitted
  receipts @9 :List(ExportTargetReceipt);
}

struct Rejected {
  cellId @0 :Text;            # unset: JSON null
  reason @1 :Text;
}

# dev.cellos.events.log.v1.batch_sealed: closes the batch of records since the previous
# manifest. The signature covers `signedPayload` (see sinks/log_format.h).
struct BatchSealed {
  firstSeq @0 :UInt64;        # first and last cellosseq of the batch's records
  lastSeq @1 :UInt64;
  eventCount @2 :UInt64;
  merkleRoot @3 :Data;        # RFC 6962 root over the batch's lines
  prevDigest @4 :Data;        # SHA-256 of the previous manifest's line; zeros for the first
  keyId @5 :Text;             # empty: unsigned log
  signature @6 :Data;         # Ed25519; empty when unsigned
  recovered @7 :Bool;         # sealed by a later start: the writer crashed before sealing
  truncatedBytes @8 :UInt64;  # bytes of a torn final line removed before sealing over
}

# dev.cellos.events.log.v1.gap: events lost because the sink could not write and the buffer
# reached max_buffered_bytes. They never got sequence numbers, so the sequence stays dense.
struct Gap {
  droppedEvents @0 :UInt64;
  droppedBytes @1 :UInt64;
  firstTimeUs @2 :Int64;
  lastTimeUs @3 :Int64;
  reason @4 :Text;
}

# dev.cellos.events.cell.secrets.v1.access_decision: one request on a cell's secret broker.
struct SecretAccess {
  cellId @0 :Text;
  runId @1 :Text;
  secretName @2 :Text;        # as asked; empty when the request named nothing readable
  allowed @3 :Bool;
  reasonCode @4 :Text;
  delivery @5 :Text;
  peerPid @6 :Int64;          # SO_PEERCRED, in the host's pid namespace
  peerUid @7 :UInt32;
}

# dev.cellos.events.cell.secrets.v1.revoked: the broker closed, its socket gone.
struct SecretsRevoked {
  cellId @0 :Text;
  runId @1 :Text;
  delivery @2 :Text;
  secretNames @3 :List(Text);
  served @4 :UInt64;
  refused @5 :UInt64;
  reason @6 :Text;
}

# dev.cellos.events.cell.identity.v1.materialized: a workload identity token was minted.
struct IdentityIssued {
  cellId @0 :Text;
  runId @1 :Text;
  issuer @2 :Text;
  subject @3 :Text;
  audience @4 :Text;
  keyId @5 :Text;
  jti @6 :Text;
  delivery @7 :Text;
  issuedAt @8 :Int64;         # seconds since the epoch, as in the token
  expiresAt @9 :Int64;
}

# dev.cellos.events.cell.nested.v1.sealed: a nested cell's sub-log, verified and pinned by the
# reactor that ran the cell, at the cell's end (sinks/sublog_seal.h).
struct NestedSealed {
  cellId @0 :Text;
  nestingPath @1 :Text;       # "<host id>/<cell id>", "<host id>/<cell id>/<nested host>/<cell>"
  path @2 :Text;              # relative to the directory of the log holding this record
  publicKey @3 :Data;         # the nested reactor's raw Ed25519 public key
  keyId @4 :Text;
  headDigest @5 :Data;        # SHA-256 of the sub-log's last manifest line; empty: none
  lastSeq @6 :UInt64;
  eventCount @7 :UInt64;
  batches @8 :UInt64;
  sizeBytes @9 :UInt64;
  sha256 @10 :Data;           # of the whole file; empty when it could not be read
  verified @11 :Bool;
  error @12 :Text;            # why it failed verification (or could not be read)
  format @13 :Text;           # "jsonl" | "capnp"
  unsealedRecords @14 :UInt64;  # records after its last manifest (its reactor was killed)
  tornBytes @15 :UInt64;      # bytes of a record cut short at its end
}

struct LogRecord {
  seq @0 :UInt64;
  timeUs @1 :Int64;
  id @2 :Text;
  source @3 :Text;
  subject @4 :Text;
  dsse @5 :Text;              # dssematerial (base64 DSSE envelope); unset when not signed
  data :union {
    started @6 :Started;
    networkPolicy @7 :NetworkPolicy;
    completed @8 :Completed;
    destroyed @9 :Destroyed;
    rejected @10 :Rejected;
    batchSealed @11 :BatchSealed;
    gap @12 :Gap;
    networkEnforcement @13 :NetworkEnforcement;
    flowDecision @14 :FlowDecision;
    flowProbes @15 :FlowProbes;
    secretAccess @16 :SecretAccess;
    secretsRevoked @17 :SecretsRevoked;
    identityIssued @18 :IdentityIssued;
    artifactExport @19 :ArtifactExport;
    dnsQuery @21 :DnsQuery;
    nestedSealed @22 :NestedSealed;
  }
  correlationId @20 :Text;    # the CloudEvents extension `correlationid`; unset: omitted
}
