// fleet.toml, parsed once at startup into an immutable Config.
//
// Configuration errors are the one place exceptions are used: they happen before any cell runs
// and end the process with a one-line message naming the file and the key.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "cells/ceiling.h"
#include "cells/nested_policy.h"

namespace cellos::cells {

struct DefaultLimits {
  uint64_t memory_max_bytes = 2ull << 30;  // 2 GiB
  uint64_t pids_max = 1024;
};

// The most a spec may ask for: a spec's limits only ever lower what the host allows, never lift
// it. default_limits must lie within these too.
struct MaxLimits {
  uint64_t memory_max_bytes = 8ull << 30;  // 8 GiB
  uint64_t pids_max = 4096;
  uint64_t cpus = 64;                          // cpuMax quota / period, in whole CPUs
  uint64_t cpu_period_micros = 1000000;        // the longest CFS period a spec may set
  uint64_t graceful_shutdown_seconds = 300;    // spec.run.limits.gracefulShutdownSeconds
};

struct PolicyConfig {
  std::vector<std::string> argv0_allow_prefixes{"/usr/bin", "/bin", "/usr/local/bin"};
  uint64_t default_ttl_seconds = 3600;
  uint64_t max_ttl_seconds = 86400;
  // [policy] host_paths: the host paths each cell sees, read-only (cells/root_view.h).
  // [policy] uid_range "FIRST-LAST": each running cell gets a uid of its own from it, and a
  // gid of the same number (cells/uid_pool.h).
  std::vector<std::string> host_paths{"/usr",  "/bin",   "/sbin", "/lib", "/lib32",
                                      "/lib64", "/libx32", "/etc", "/opt"};
  uint32_t uid_first = 200000;
  uint32_t uid_last = 265535;
  DefaultLimits default_limits;
  MaxLimits max_limits;
  // [secrets.grants]: secret name -> the cell-id globs that may name it in secretRefs. Secure by
  // default: a secret with no grant reaches no cell. Kept with the policy because admission
  // (check_policy) is where a spec is refused for it.
  std::map<std::string, std::vector<std::string>> secret_grants;
  // [policy.input_grants]: host directory -> the cell-id globs whose spec.inputs may bind paths
  // below it (cells/inputs.h). None by default: no cell sees a host path beyond the view.
  std::map<std::string, std::vector<std::string>> input_grants;
  // Egress admission: empty means any host a spec declares; otherwise each rule's host must
  // equal an entry or match one leading "*." entry. forbid_egress rejects every egress rule.
  std::vector<std::string> allowed_egress_hosts;
  bool forbid_egress = false;
  // CellOS's require_runtime_secret_delivery: a spec declaring secretRefs or spec.identity must
  // use secretDelivery runtimeBroker or runtimeLeasedBroker (secrets never in the environment).
  bool require_runtime_secret_delivery = false;
  // [policy] allowed_backends: the backends a spec may choose with spec.run.backend. Empty in
  // the file means [cells] backend alone; after loading it always holds that default.
  std::vector<std::string> allowed_backends;
  // DNS authority admission (cells/dns_authority.h): empty means any. allowed_dns_names holds
  // names or "*.suffix" entries that each hostnameAllowlist entry must fall inside;
  // allowed_dns_resolvers addresses or CIDRs each declared resolver must be in.
  std::vector<std::string> allowed_dns_names;
  std::vector<std::string> allowed_dns_resolvers;
  // Names ("x.corp" or "*.corp") that may resolve to private, loopback or link-local addresses
  // through a cell's DNS proxy; any other answer holding one is refused (rebind protection).
  std::vector<std::string> internal_dns_names;
  // [policy.ceiling] (cells/ceiling.h): the authority of the cell this reactor runs inside, which
  // no admitted spec may exceed. Unset: no parent (a host reactor).
  std::optional<AuthorityCeiling> ceiling = {};
  // [policy.nested] (cells/nested_policy.h): specs asking for the nested backend.
  NestedPolicy nested = {};
};

struct HostConfig {
  std::string id;  // default: the machine's hostname, if it is a portable segment, else "host"
  std::string state_dir = "/var/lib/cellos-reactor";
  uint64_t max_concurrent_cells = 64;   // the daemon runs at most this many cells at once
  uint64_t shutdown_grace_seconds = 30;  // SIGTERM: how long running cells may finish
  // Where the cells' cgroups go, as a cgroup path ("/" = the roots): cells land in
  // <cgroup_parent>/cellos/<id>/. Empty: the daemon's own cgroup when a service manager gave it
  // one (systemd's Delegate=yes), else the roots; `run` always the roots.
  std::string cgroup_parent;
  // The daemon keeps up to this many empty v1 memory cgroups of ended cells and gives them to
  // the next cells renamed (cells/leaf_stock.h); 0: a memory cgroup made and removed per cell.
  uint64_t cgroup_leaf_stock = 64;
};

struct LogsConfig {
  uint64_t max_bytes_per_stream = 16ull << 20;  // per cell stdout / stderr file
};

struct NetworkConfig {
  std::string uplink = "none";            // "none" | "nat"
  std::string subnet = "10.213.0.0/16";   // cell addresses for uplink = "nat"
  // For tests only: every cell ruleset gets one rule the kernel refuses, so its batch fails
  // and the cell must not run (setup_failed, 125).
  bool test_fault_ruleset = false;
  // Who enforces a cell's egress allow-list: "nft" (the cell's nftables ruleset), "bpf" (the
  // flow probes' connect4/6 and cgroup_skb programs, a per-cell allow-list keyed by cgroup id)
  // or "both" (layered: BPF refuses at connect(), nft drops what reaches it). "none" installs
  // no allow-list at all: a baseline for the flow benchmark, never for untrusted code (the
  // reactor warns at start).
  std::string enforcement = "nft";
  // DNS servers for hostnames in egress rules ("ip", "ip:port", "[v6]:port"); empty: the
  // host's /etc/resolv.conf. Looked up on the ring, with this timeout per try (two tries).
  std::vector<std::string> resolvers;
  uint64_t resolve_timeout_ms = 2500;
  // DNS authority (cells/cell_dns.h): an answer's TTL, clamped to [min, max], plus the grace,
  // is how long its addresses stay open to new connections; at most this many addresses per
  // name per cell (the oldest go first).
  uint64_t dns_min_ttl_seconds = 30;
  uint64_t dns_max_ttl_seconds = 3600;
  uint64_t dns_grace_seconds = 60;
  uint64_t dns_max_addresses_per_name = 64;
  bool nft_enforces() const { return enforcement == "nft" || enforcement == "both"; }
  bool bpf_enforces() const { return enforcement == "bpf" || enforcement == "both"; }
};

// Per-flow observability: eBPF probes on every cell's cgroup, nflog deny listeners, and the
// flow accumulator that turns both into network_flow_decision events.
struct FlowsConfig {
  bool probes = true;                  // off: no cgroup_skb accounting (bpf enforcement still holds)
  uint64_t report_interval_ms = 5000;  // a live flow is reported at most this often
  uint64_t drain_interval_ms = 1000;   // how often the kernel's flow map is read (LRU eviction is silent)
  uint64_t top_destinations = 5;       // destinations listed in the destroyed event's summary
  // Entries of the kernel's LRU flow map, all cells together. A map the kernel cannot create
  // (too large) means probes off, reported at start, like any other load failure.
  uint64_t max_flows = 65536;
  // Where the loaded BPF object is pinned, so later reactors reuse it instead of loading it
  // again (ebpf/probe_pins.h); "" loads a private object every time.
  std::string bpf_pin_dir = "/sys/fs/bpf/cellos-reactor";
};

struct SecretsConfig {
  std::string dir;  // empty: no secrets configured; a spec naming secretRefs is then rejected
  // (the grants of [secrets.grants] live in PolicyConfig::secret_grants)
};

// [identity]: workload identity tokens (cells/identity.h). Without signing_key a spec that
// declares spec.identity is refused at admission.
struct IdentityConfig {
  std::string issuer;       // the tokens' iss; empty: "cellos-reactor:<host.id>"
  std::string signing_key;  // PKCS#8 PEM Ed25519 key (`keygen --name identity`); empty: none
};

// [intake.nats]: specs from a JetStream work-queue stream, shared by a fleet of hosts. The
// daemon creates the stream (WorkQueue retention, file storage), the durable pull consumer
// (explicit ack, ack_wait_seconds, max_deliver) and the completion KV bucket when absent.
struct IntakeNatsConfig {
  bool enabled = false;
  std::string url = "nats://127.0.0.1:4222";
  std::string stream = "CELLOS_SPECS";
  std::string subject = "cellos.specs";
  std::string durable = "cellos-reactor";
  uint64_t ack_wait_seconds = 30;   // heartbeats go out every third of it while a cell runs
  uint64_t max_deliver = 5;         // hosts that may claim one spec before it is terminated
  std::string completions_bucket = "cellos-completions";
};

// [events.nats]: each sealed batch with its manifest as one message on <prefix>.<host.id> of
// stream <prefix> (created when absent: file storage, a duplicate window for Nats-Msg-Id).
struct EventsNatsConfig {
  bool enabled = false;
  std::string url = "nats://127.0.0.1:4222";
  std::string prefix = "CELLOS_EVENTS";
  uint64_t duplicate_window_seconds = 120;
};

struct EventsConfig {
  std::string jsonl;  // empty: <state_dir>/events.jsonl
  std::string format = "jsonl";            // "jsonl" | "capnp"
  uint64_t batch_max_events = 512;
  uint64_t batch_max_delay_ms = 10;
  std::string signing_key;                 // PKCS#8 PEM Ed25519 key; empty: unsigned
  bool per_event_signing = false;          // DSSE per event (needs signing_key)
  uint64_t max_buffered_bytes = 64ull << 20;
  EventsNatsConfig nats;
};

// [cells]: how cells run (cells/backend.h). backend is the host's default, "native" (Linux
// namespaces) or "gvisor" (runsc; cells/gvisor_backend.h); the runsc keys only matter when
// gvisor is the default or in policy.allowed_backends.
struct CellsConfig {
  std::string backend = "native";
  std::string runsc = "/usr/bin/runsc";
  std::string gvisor_platform = "ptrace";  // "ptrace" | "kvm" | "systrap"
};

struct IntakeConfig {
  IntakeNatsConfig nats;
};

// [pool]: the daemon's warm pool (cells/warm_pool.h): cells prepared ahead of demand (process,
// namespaces, cgroup leaf joined) that admission binds to a spec. `run` without a daemon has
// none. The pool holds max(size, cells admitted in the last second), at most max_size. Off by
// default: a pooled cell's leaf keeps its neutral name (cgroup2 cannot rename), so a host that
// finds cells' cgroups by id (<parent>/cellos/<host>/<cell id>) opts in knowingly.
struct PoolConfig {
  bool enabled = false;
  uint64_t size = 2;
  uint64_t max_size = 8;
};

// [export]: where spec.export artifacts go (cells/cell_export.h). No target, no export: a spec
// declaring artifacts is then rejected at admission.
struct ExportConfig {
  std::string dir;       // local target: <dir>/<cell id>/<run id>/<artifact name>
  std::string http_url;  // HTTP(S) target: PUT <http_url>/<cell id>/<run id>/<artifact name>
  uint64_t max_artifact_bytes = 1ull << 30;  // per artifact (a directory: all its files)
  uint64_t max_cell_bytes = 4ull << 30;      // all artifacts of one cell
  uint64_t timeout_seconds = 600;            // the helper is killed past it
  // The helper binary; empty: cellos-reactor-export beside the reactor's own binary.
  std::string helper;
};

struct Config {
  HostConfig host;
  PolicyConfig policy;
  SecretsConfig secrets;
  IdentityConfig identity;
  EventsConfig events;
  LogsConfig logs;
  NetworkConfig network;
  FlowsConfig flows;
  IntakeConfig intake;
  ExportConfig exports;  // [export]
  CellsConfig cells;
  PoolConfig pool;  // [pool]
  std::string source = "<built-in defaults>";  // the file it came from, for messages

  std::string events_path() const {
    return events.jsonl.empty() ? host.state_dir + "/events.jsonl" : events.jsonl;
  }
};

// Thrown with a one-line message: `fleet.toml: policy.max_ttl_seconds: must be an integer >= 1`.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The documented built-in defaults (host.id from the hostname).
Config default_config();

// Reads and validates a fleet.toml; keys not given keep their defaults. Unknown tables and
// keys, wrong types and bad values throw ConfigError naming the file and the key.
Config load_config(const std::string& path);

// Same, from text (tests); `source` names it in messages.
Config parse_config(const std::string& toml_text, const std::string& source);

}  // namespace cellos::cells
