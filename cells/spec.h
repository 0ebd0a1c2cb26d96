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

#include "base/result.h"

namespace cellos::cells {

struct PolicyConfig;

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
};

struct RunSpec {
  std::vector<std::string> argv;
  std::string working_directory = "/work";
  std::string secret_delivery = "env";
  std::optional<uint64_t> timeout_ms;
  std::vector<std::pair<std::string, std::string>> env;  // in the order declared
  Limits limits;
};

struct Spec {
  std::string id;
  std::vector<std::string> secret_refs;
  std::vector<EgressRule> egress_rules;
  std::optional<uint64_t> ttl_seconds;
  RunSpec run;
};

// Structure, types and value ranges. Errors name the field: `spec.run.argv: must not be empty`.
base::Result<Spec> parse_spec(std::string_view json);

// What the fleet policy adds: argv[0] under an allowed prefix (compared by path component, no
// `..`), TTL at most the policy cap, egress rules allowed by policy.forbid_egress and
// policy.allowed_egress_hosts (the offending rule named).
base::Result<void> check_policy(const Spec& spec, const PolicyConfig& policy);

// True when `id` is one portable path segment: [A-Za-z0-9._-], 1..128 chars, not starting with
// '.' or '-'. Used for spec.id and host.id, which both become directory names.
bool is_portable_segment(std::string_view id);

// "/a/b" yes; "/", "a/b", "/a//b", "/a/./b", "/a/../b", "/a/" no. Paths from specs and
// fleet.toml are compared as text without resolving anything, so `..` must not be able to step
// out of an allowed prefix.
bool is_normalized_absolute(std::string_view path);

// True for a valid environment variable name: [A-Za-z_][A-Za-z0-9_]*.
bool is_env_name(std::string_view name);

}  // namespace cellos::cells
