// The events a cell produces, as typed values. Built in one place (here); the event log
// (event_log.h) turns them into Cap'n Proto records and CloudEvents lines, so the code that
// decides what happened never sees the encoding, the batching or the signing.
//
// Type strings keep CellOS's names so CellOS consumers can read the stream. No event carries a
// secret value or an environment value: only names, ids, counts and outcomes.
#pragma once

#include <cstdint>
#include <optional>
#include <functional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace cellos::sinks {

struct StartedData {
  std::string cell_id, run_id, host_id;
  std::string correlation_id = {};  // spec.correlation.correlationId; "" when none
  // The program the cell runs: argv[0] as declared, or a bare name resolved through the
  // cell's PATH ("" when not known, e.g. an event built in code).
  std::string argv0_path = {};
  std::string backend = {};  // what runs the cell: "native" | "gvisor"
  // How it was admitted: "pool" (a prepared cell of the warm pool was bound to the spec:
  // cells/warm_pool.h) | "cold" (cloned for it); "" when not said (an event built in code).
  std::string admission = {};
};

struct DeclaredEgress {
  std::string host;
  uint16_t port = 0;
  std::optional<std::string> protocol;
  std::vector<std::string> resolved_addresses = {};  // a hostname's addresses, from admission
};

struct NetworkPolicyData {
  std::string cell_id;
  std::string isolation_mode = "clone_newnet";
  std::vector<DeclaredEgress> declared_egress;
};

// One nft rule's counter, read back after the command exited. `rule` is "egress[i]" for the
// i-th declared rule (summed over its addresses and protocols), or one of the fixed rules:
// "loopback", "established", "nflog" (denied, logged), "drop" (denied).
struct RuleCounterData {
  std::string rule;
  uint64_t packets = 0, bytes = 0;
};

struct NetworkEnforcementData {
  std::string cell_id;
  std::string isolation_mode = "clone_newnet";
  uint64_t declared_egress_rule_count = 0;
  bool nft_rules_applied = false;
  bool supplementary_egress_filter_active = false;
  std::optional<int> command_exit_code;
  uint64_t nft_rule_count = 0;              // rules in the cell's output chain
  std::optional<std::string> cell_address;  // with an uplink
  std::vector<RuleCounterData> rule_counters;
};

// kOom: the kernel's OOM killer took a process of the cell (any process, not only the
// command) and the cell failed; kShutdown: the reactor was stopping (daemon SIGTERM, `run`
// interrupted) and stopped the cell.
enum class CompletedReason { kExited, kSignaled, kTimeout, kOom, kSetupFailed, kShutdown };
const char* reason_name(CompletedReason r);

// What a cell's processes used, from its cgroup at its end (unset: the host does not count it).
struct ResourcesData {
  std::optional<uint64_t> memory_peak_bytes, cpu_usage_usec, pids_peak;
  uint64_t oom_kills = 0;
};
// A cell asked to stop by SIGTERM before it was killed: why, how long it had, whether it left
// within that time (otherwise its cgroup was killed).
struct GracefulStopData {
  std::string cause;  // "timeout" | "shutdown"
  uint64_t grace_seconds = 0;
  bool exited_in_time = false;
};
struct CompletedData {
  std::string cell_id;
  std::optional<int> exit_code;
  std::optional<int> signal;
  uint64_t duration_ms = 0;
  CompletedReason reason = CompletedReason::kExited;
  std::string error;  // for setup_failed: the one-line cause (no secret values, by construction)
  // The stream went past [logs] max_bytes_per_stream and the rest of it was discarded.
  bool stdout_truncated = false;
  bool stderr_truncated = false;
  std::optional<ResourcesData> resources = {};
  std::optional<GracefulStopData> graceful_stop = {};
  std::string backend = {};  // "" when no backend was chosen
};

// One report on one network flow of a cell (dev.cellos.events.cell.observability.v1.
// network_flow_decision). A flow is reported when it is denied, at most every
// [flows] report_interval_ms while it lives, and when it ends; packets and bytes count what
// happened since the flow's previous report, so the sum over a flow's reports is its total and
// nothing is counted twice. Allowed flows come from the cgroup_skb probes; denies from nflog
// (nft enforcement) or from the BPF programs (bpf enforcement), named by the same reasonCode.
struct FlowDecisionData {
  std::string cell_id;
  std::string direction = "egress";  // "egress": the cell opened it; "ingress": it arrived
  bool allowed = true;
  // The rule or policy that decided: "egress[i]" (the i-th declared egress rule), "loopback",
  // "egress_default_deny" (matched no declared rule), "unmatched" (allowed with no rule).
  std::string reason_code;
  std::string protocol;  // "tcp" | "udp" | the IP protocol number
  std::string src_addr, dst_addr;
  // A denied flow is one per destination, whatever the source port (BPF refuses connect()
  // before a port is bound, nft sees the bound one), so its srcPort is 0 in every mode.
  uint16_t src_port = 0, dst_port = 0;
  uint64_t packets = 0, bytes = 0;      // since the previous report: tx + rx
  uint64_t tx_packets = 0, tx_bytes = 0, rx_packets = 0, rx_bytes = 0;
  int64_t first_seen_us = 0, last_seen_us = 0;  // CLOCK_REALTIME, the flow's whole life
  std::string phase;  // "denied" | "live" | "end" (FIN/RST, or the cell ended)
};

struct FlowDestinationData {
  std::string addr, protocol;
  uint16_t port = 0;
  uint64_t flows = 0, packets = 0, bytes = 0;
};

// A cell's flows over its life, in its destroyed event.
struct FlowSummaryData {
  bool probes = false;  // cgroup_skb accounting was on (off: only denies are known)
  uint64_t flows = 0, tx_packets = 0, tx_bytes = 0, rx_packets = 0, rx_bytes = 0;
  uint64_t denied_flows = 0, denied_packets = 0;
  // Loss, never hidden: flow records the kernel ring buffer could not take, nflog messages
  // missing from the sequence, and flows the LRU map evicted between two drains.
  uint64_t lost_records = 0, nflog_gaps = 0, evicted_flows = 0;
  std::vector<FlowDestinationData> top_destinations;  // by bytes, largest first
};

// Once per reactor start: whether per-flow probes run, and why not.
struct FlowProbesData {
  std::string host_id;
  bool active = false;
  std::string enforcement;  // [network] enforcement as it runs
  std::string reason;       // why the probes are off ("" when active)
};

// One DNS query of a cell to its proxy (netns/dns_proxy.h), or `count` identical ones: the
// first of a kind (name, type, decision, reason) is reported at once, repeats within the next
// [dns] aggregate window are counted into one more report at the window's end.
// kind picks the type: "dns_query_permitted", "dns_query_refused", "dns_query" (dropped:
// malformed or oversized), "dns_authority_rebind_rejected".
struct DnsQueryData {
  std::string cell_id;
  std::string kind;
  std::string query_name, query_type;  // "" when dropped unparsed
  std::string transport;               // "udp" | "tcp"
  std::string decision;                // "permitted" | "refused" | "dropped"
  std::string reason_code;
  std::string response_code;           // "NOERROR", "NXDOMAIN", "REFUSED", "SERVFAIL"; "" dropped
  std::vector<std::string> answers;    // addresses and CNAME targets handed to the cell
  std::optional<int64_t> upstream_latency_us;
  std::string upstream;
  uint64_t count = 1;
};

// A cell's DNS over its life, in its destroyed event.
struct DnsSummaryData {
  uint64_t queries = 0, permitted = 0, refused = 0, failed = 0, dropped = 0;
  uint64_t rebind_rejected = 0;
  // Addresses opened to the cell's egress rules by answers, and taken back early because a
  // name went over [network] dns_max_addresses_per_name.
  uint64_t addresses_granted = 0, addresses_evicted = 0;
};

struct DestroyedData {
  std::string cell_id;
  bool succeeded = false;
  bool forced = false;  // terminalState Forced: the reactor killed the cell
  // Why it failed when there is no completed event to say so: "lost" for a cell found
  // running by a reactor that restarted after its predecessor died.
  std::string reason = {};
  std::optional<FlowSummaryData> flows = {};  // cells with a network namespace of their own
  std::string backend = {};  // "" when unknown (a lost cell)
  std::optional<DnsSummaryData> dns = {};     // cells with a dnsAuthority
};

// One artifact of spec.export after the command exited (CellOS's ExportReceipt): what was read
// from the workspace, and per fleet export target where it went or why it did not.
struct ExportTargetReceiptData {
  std::string target_kind;  // "LocalPath" | "HTTP"
  std::string destination;  // the directory or URL it went to
  bool succeeded = false;
  std::string error = {};
};
struct ExportData {
  std::string cell_id, name, path;
  bool required = false;
  bool succeeded = false;  // read, and delivered to every target
  uint64_t size_bytes = 0, files = 0;
  std::string sha256 = {};  // a file's; a directory's: of its manifest (docs/events.md)
  std::string error = {};   // why it could not be read (missing, symlink, over a cap, timeout)
  std::vector<ExportTargetReceiptData> receipts = {};
};

// A nested cell's sub-log sealed into this log at the cell's end (sinks/sublog_seal.h): what
// the sub-log's bytes were (size, SHA-256, last manifest digest) and whether they verified
// against the key the host generated for the nested reactor.
struct NestedSealedData {
  std::string cell_id, nesting_path;
  std::string path;        // relative to the directory of the log recording it; never absolute or ..
  std::string public_key;  // raw 32 bytes
  std::string key_id;
  std::string head_digest;  // raw 32 bytes; "" when the sub-log has no manifest
  uint64_t last_seq = 0, event_count = 0, batches = 0, size_bytes = 0;
  std::string sha256;      // raw 32 bytes; "" when the file could not be read
  bool verified = false;
  std::string error = {};
  std::string format = {};
  // A nested reactor killed (the parent's TTL or kill) leaves its last batch unsealed, or a
  // record cut short: the seal pins those bytes too, and says how many.
  uint64_t unsealed_records = 0, torn_bytes = 0;
};

struct RejectedData {
  std::optional<std::string> cell_id;
  std::string reason;
};

// One request on a cell's secret broker (runtime delivery): the name asked for, whether it was
// served and why (reasonCode "granted", "not_declared", "lease_consumed", "peer_not_in_cell",
// "malformed_request"), and who asked. Never the value.
struct SecretAccessData {
  std::string cell_id, run_id;
  std::string secret_name;
  bool allowed = false;
  std::string reason_code;
  std::string delivery;  // "runtimeBroker" | "runtimeLeasedBroker"
  int64_t peer_pid = 0;  // host pid namespace; 0 when unknown
  uint32_t peer_uid = 0;
};

// The broker of a cell closed when its command exited: socket unlinked, every lease revoked.
struct SecretsRevokedData {
  std::string cell_id, run_id, delivery;
  std::vector<std::string> secret_names;  // what it held (the identity token included)
  uint64_t served = 0, refused = 0;
  std::string reason;  // "command_exited" | "cell_ended" (never launched, or setup failed)
};

// A workload identity token minted for a cell (its claims, never the token).
struct IdentityIssuedData {
  std::string cell_id, run_id, issuer, subject, audience, key_id, jti, delivery;
  int64_t issued_at = 0, expires_at = 0;  // seconds since the epoch
};

using EventData =
    std::variant<StartedData, NetworkPolicyData, CompletedData, DestroyedData, RejectedData,
                 NetworkEnforcementData, FlowDecisionData, FlowProbesData, SecretAccessData,
                 SecretsRevokedData, IdentityIssuedData, ExportData, DnsQueryData,
                 NestedSealedData>;

struct Event {
  EventData data;
  std::string subject;   // the cell id ("" when unknown, e.g. a spec rejected before its id)
  // The spec's spec.correlation.correlationId ("" when none): the CloudEvents extension
  // attribute `correlationid` of every event of the cell.
  std::string correlation_id = {};
  int64_t time_us = 0;   // CLOCK_REALTIME, microseconds
};

const char* event_type(const EventData& d);
// The full type of a DnsQueryData kind ("dns_query_refused" -> "dev.cellos.events.cell.
// observability.v1.dns_query_refused"); an unknown kind is "...dns_query".
const char* dns_event_type(std::string_view kind);

// Stamps the time and subject.
Event make_event(EventData data);

class EventSink {
 public:
  virtual ~EventSink() = default;
  virtual void emit(const Event& e) = 0;
  // Closes the open batch now (a sink that batches). The reactor calls it when it is about to
  // stop, then runs completions until drained().
  virtual void flush() {}
  // Closes the open batch now without ending anything (a sink that batches): someone waits for
  // an event already emitted to be on disk (`submit --wait`, `run --via-daemon`), and the
  // batch timer would add up to [events] batch_max_delay_ms to every such wait.
  virtual void seal_now() {}
  // True when nothing is buffered or in flight: the reactor may exit without losing an event.
  virtual bool drained() const { return true; }
  // Events that reached the sink's file (a metric; batches count when their write completed).
  virtual uint64_t events_written() const { return 0; }
  // The sequence (cellosseq) of the last record emitted, and of the last one on disk; 0 for a
  // sink without sequence numbers. The fleet daemon acks a NATS spec only once its cell's
  // destroyed event is on disk.
  virtual uint64_t emitted_seq() const { return 0; }
  virtual uint64_t written_seq() const { return 0; }
  // Each listener added is called on the reactor thread after each write reached the file,
  // with written_seq().
  virtual void add_on_written(std::function<void(uint64_t)> fn) { (void)fn; }
};

}  // namespace cellos::sinks
