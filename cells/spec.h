// The ExecutionCell spec (CellOS `cellos.io/v1`), parsed and validated into typed values.
//
// Parsing is strict: an unknown field, a wrong type or an out-of-range value is an error that
// names the field by its JSON path (`spec.run.limits.pidsMax: must be an integer >= 1`), because
// a typo that silently dropped a limit would run a cell with more authority than declared.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/input_limits.h"
#include "base/result.h"
#include "cells/dns_authority.h"

namespace cellos::cells {

struct PolicyConfig;

using base::kMaxSpecBytes;

// The ranges every spec and fleet.toml value is held to: what the kernel accepts, and what keeps
// the arithmetic on them (ttl * 1000, pids + 1, quota * 1000 in the kernel) from overflowing.
inline constexpr uint64_t kMaxTtlSeconds = 10ull * 365 * 24 * 3600;  // ten years
inline constexpr uint64_t kMaxTimeoutMs = kMaxTtlSeconds * 1000;
// pids.max takes at most PID_MAX_LIMIT (4194304); the cgroup gets one more than the spec's
// pidsMax, for the cell's own init.
inline constexpr uint64_t kMaxPids = 4194304 - 1;
// A graceful stop longer than a day is a unit mistake (milliseconds for seconds).
inline constexpr uint64_t kMaxGracefulSeconds = 24 * 3600;
inline constexpr uint64_t kMinMemoryBytes = 1 << 20;  // below this a cell cannot exec a shell
inline constexpr uint64_t kMaxMemoryBytes = 1ull << 50;  // 1 PiB: no host has more
// CFS bandwidth: the kernel refuses a quota or period under 1 ms, a period over 1 s, and a quota
// over its max_cfs_runtime ((2^44 - 1) ns).
inline constexpr uint64_t kMinCpuMicros = 1000;
inline constexpr uint64_t kMaxCpuPeriodMicros = 1000000;
inline constexpr uint64_t kMaxCpuQuotaMicros = ((1ull << 44) - 1) / 1000;

// How many of each list a spec may hold: far above real specs, low enough that one spec cannot
// make admission do a hundred thousand secret reads, DNS lookups or environment checks.
inline constexpr size_t kMaxSecretRefs = 256;
inline constexpr size_t kMaxEgressRules = 256;
inline constexpr size_t kMaxEnvVars = 4096;
inline constexpr size_t kMaxArgv = 4096;
// JSON values in one spec: room for every list at its cap and the fixed fields, and a bound on
// the time a megabyte of tiny values takes to build (~100 ns each).
inline constexpr size_t kMaxSpecValues = 16384;

struct EgressRule {
  std::string host;                     // IP, CIDR or hostname, as declared
  uint16_t port = 0;                    // 1..65535
  std::optional<std::string> protocol;  // "tcp" | "udp"; absent = both
  std::vector<std::string> resolved;    // a hostname's addresses, filled at admission
};

struct CpuMax {
  uint64_t quota_micros = 0;
  uint64_t period_micros = 100000;  // CellOS default when the spec gives none
};

struct Limits {
  std::optional<uint64_t> memory_max_bytes;
  std::optional<uint64_t> pids_max;
  std::optional<CpuMax> cpu_max;
  // At TTL, run timeout, daemon shutdown or `run` stopped: SIGTERM to every process of the
  // cell, then this long to exit before the cgroup is killed. Unset: no warning (TTL and
  // timeout kill at once; a shutdown gives the host's grace).
  std::optional<uint64_t> graceful_shutdown_seconds = {};
};

// How declared secrets (and the identity token) reach the command: "env" in its environment;
// "runtimeBroker" / "runtimeLeasedBroker" only by asking the cell's broker socket
// (cells/secret_broker.h), the leased mode serving each name once.
inline constexpr const char* kSecretDeliveryEnv = "env";
inline constexpr const char* kSecretDeliveryBroker = "runtimeBroker";
inline constexpr const char* kSecretDeliveryLeased = "runtimeLeasedBroker";

// The variables the reactor sets itself: the broker socket's path in the cell (runtime
// delivery) and the identity token (env delivery; the broker's name for it otherwise). A spec
// may not declare them in secretRefs or run.env.
inline constexpr const char* kBrokerEnvName = "CELLOS_SECRET_BROKER";
inline constexpr const char* kIdentityTokenName = "CELLOS_IDENTITY_TOKEN";
bool is_reserved_env_name(std::string_view name);

// spec.identity: a workload identity token minted for the cell (cells/identity.h).
struct IdentitySpec {
  std::string audience;  // the token's aud
};
inline constexpr size_t kMaxAudienceBytes = 256;

struct RunSpec {
  std::vector<std::string> argv;
  // The file exec'd: argv[0] when it is a path; for a bare argv[0] ("true"), the program the
  // cell's PATH names, filled at admission (program_path.h), empty when the lookup found none.
  std::string program = {};
  std::string working_directory = "/work";
  std::string secret_delivery = "env";
  std::optional<uint64_t> timeout_ms;
  std::vector<std::pair<std::string, std::string>> env;  // in the order declared
  Limits limits;
  // A cellos-reactor extension: "native" or "gvisor" (cells/backend.h); unset: the host's
  // [cells] backend. Admission refuses one outside policy.allowed_backends.
  std::optional<std::string> backend;
};

// spec.inputs[] (an extension of CellOS's spec): a host file or directory bound read-only into
// the cell at `path`, when [policy.input_grants] grants a prefix holding it to the cell's id.
struct Input {
  std::string host_path;  // hostPath: normalized absolute, no symlink on the way (inputs.h)
  std::string path;       // where the cell sees it: normalized absolute
};
inline constexpr size_t kMaxInputs = 16;

// spec.export.artifacts[]: a file or directory of the workspace copied to the fleet's export
// targets after the command exits (cell_export.h). `required` is an extension: its failure
// fails the cell.
struct ExportArtifact {
  std::string name;  // a portable path segment, unique in the spec
  std::string path;  // normalized absolute, strictly below spec.run.workingDirectory or /tmp
  bool required = false;
};
inline constexpr size_t kMaxExportArtifacts = 64;

struct Spec {
  std::string id;
  // spec.correlation.correlationId: the caller's own id for this run (a CI run id), carried on
  // every event of the cell as the CloudEvents extension attribute `correlationid`.
  std::optional<std::string> correlation_id = {};
  std::vector<Input> inputs = {};
  std::vector<ExportArtifact> export_artifacts = {};
  std::vector<std::string> secret_refs;
  std::vector<EgressRule> egress_rules;
  std::optional<DnsAuthority> dns_authority;  // spec.authority.dnsAuthority
  std::optional<uint64_t> ttl_seconds;
  RunSpec run;
  std::optional<IdentitySpec> identity = {};
  bool runtime_delivery() const { return run.secret_delivery != kSecretDeliveryEnv; }
};

// Structure, types and value ranges. Errors name the field: `spec.run.argv: must not be empty`.
base::Result<Spec> parse_spec(std::string_view json);

// What the fleet policy adds: argv[0] under an allowed prefix (compared by path component, no
// `..`), TTL at most the policy cap, limits within policy.max_limits, each secretRef granted to
// this cell id by policy.secret_grants, egress rules allowed by policy.forbid_egress and
// policy.allowed_egress_hosts (the offending field named).
base::Result<void> check_policy(const Spec& spec, const PolicyConfig& policy);

// True when `id` is one portable path segment: [A-Za-z0-9._-], 1..128 chars, not starting with
// '.' or '-'. Used for spec.id and host.id, which both become directory names.
bool is_portable_segment(std::string_view id);

// "/a/b" yes; "/", "a/b", "/a//b", "/a/./b", "/a/../b", "/a/" no. Paths from specs and
// fleet.toml are compared as text without resolving anything, so `..` must not be able to step
// out of an allowed prefix.
bool is_normalized_absolute(std::string_view path);

// spec.correlation.correlationId: 1..kMaxCorrelationIdBytes of [A-Za-z0-9._:/@+=#-], the
// characters CI run ids and URNs use, and nothing that needs escaping in a log line or a header.
inline constexpr size_t kMaxCorrelationIdBytes = 256;
bool is_correlation_id(std::string_view id);

// True for a valid environment variable name: [A-Za-z_][A-Za-z0-9_]*.
bool is_env_name(std::string_view name);

// A cell-id glob of [secrets.grants]: `*` matches any run of characters, `?` one; every other
// character itself. Linear in practice (one backtrack point), ids are at most 128 characters.
bool glob_matches(std::string_view glob, std::string_view text);

}  // namespace cellos::cells
