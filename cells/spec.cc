// Parsing and validation of the ExecutionCell spec. Every failure is one Error whose `call` is
// the JSON path of the offending field, so Error::message() reads `spec.run.argv: must not be
// empty`. No exception leaves this file: nlohmann's are caught and become Errors.
#include "cells/spec.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "base/json.h"
#include "base/text.h"
#include "cells/config.h"
#include "cells/spec_text.h"
#include "netns/nft.h"

namespace cellos::cells {

namespace spec_text {

// Text quoted for a one-line message: JSON escaping keeps control characters (a newline in a
// field name would split the line) and invalid UTF-8 out, and long input is cut.
std::string json_quoted(std::string_view s) {
  constexpr size_t kMax = 64;
  bool cut = s.size() > kMax;
  using Json = base::Json;
  std::string q = Json(std::string(s.substr(0, kMax)))
                      .dump(-1, ' ', /*ensure_ascii=*/true, Json::error_handler_t::replace);
  return cut ? q + "..." : q;
}

// True when `path` is `dir` or lies below it, by whole components ("/usr/binx" is not below
// "/usr/bin"). `dir` "/" contains everything.
bool is_within(std::string_view path, std::string_view dir) {
  while (dir.size() > 1 && dir.back() == '/') dir.remove_suffix(1);
  if (dir == "/") return true;
  return path.starts_with(dir) && (path.size() == dir.size() || path[dir.size()] == '/');
}

// Strictly below: an allowed prefix is a directory, never itself a program.
bool is_below(std::string_view path, std::string_view dir) {
  while (dir.size() > 1 && dir.back() == '/') dir.remove_suffix(1);
  return path != dir && is_within(path, dir);
}

// Messages may quote argv[0]: a control character in it must not break the one-line rule, and
// a megabyte of it must not become a megabyte of message.
std::string printable(std::string_view s) {
  bool plain =
      std::all_of(s.begin(), s.end(), [](unsigned char c) { return c >= 0x20 && c != 0x7f; });
  return plain ? base::clip(s) : json_quoted(s);
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ", ") + printable(s);
  return out;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  if (!out.empty() && out.back() == '.') out.pop_back();
  return out;
}

}  // namespace spec_text

namespace {

using namespace spec_text;

using base::Result;
using base::value_error;
// ordered_json keeps object members in document order, which is the order run.env is declared
// in and the order unknown fields are reported in.
using Json = base::Json;

constexpr uint64_t kNoMax = std::numeric_limits<uint64_t>::max();

// ASCII only: <cctype> follows the locale, and names that become paths and env keys must not.
bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
bool is_alnum(unsigned char c) {
  return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// ---------------------------------------------------------------------------------------------
// Rendering names into messages


bool is_plain_key(std::string_view key) {
  if (key.empty() || key.size() > 128) return false;
  return std::all_of(key.begin(), key.end(),
                     [](unsigned char c) { return is_alnum(c) || c == '_' || c == '-'; });
}

// `spec.run` + `env` -> `spec.run.env`; a key that is not a plain word is shown quoted as
// `spec.run.env["A B"]` so the path stays unambiguous and on one line.
std::string child(const std::string& path, std::string_view key) {
  std::string prefix = path.empty() ? "" : path + ".";
  if (is_plain_key(key)) return prefix + std::string(key);
  return path + "[" + json_quoted(key) + "]";
}

std::string element(const std::string& path, size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

Result<Json> parse_json(std::string_view text) {
  base::JsonLimits limits;
  limits.what = "spec";
  limits.max_values = kMaxSpecValues;
  return base::parse_json(text, limits);
}

// ---------------------------------------------------------------------------------------------
// Typed field readers. Each names the field by `path` and writes `out` only on success.

const Json* find(const Json& obj, std::string_view key) {
  auto it = obj.find(key);
  return it == obj.end() ? nullptr : &*it;
}

// Rejects members outside `known`. CellOS fields we have not implemented get their own message:
// someone migrating a CellOS spec should learn the field is real but unsupported, not mistyped.
Result<void> check_fields(const Json& obj, const std::string& path,
                          std::initializer_list<std::string_view> known,
                          std::initializer_list<std::string_view> cellos_only = {}) {
  for (const auto& [key, value] : obj.items()) {
    auto is = [&key = key](std::string_view k) { return k == key; };
    if (std::any_of(known.begin(), known.end(), is)) continue;
    if (std::any_of(cellos_only.begin(), cellos_only.end(), is))
      return value_error(child(path, key), "CellOS field not supported by cellos-reactor");
    return value_error(child(path, key), "unknown field");
  }
  return base::ok();
}

Result<void> require_object(const Json& v, const std::string& path) {
  if (!v.is_object()) return value_error(path, "must be an object");
  return base::ok();
}

Result<void> read_string(const Json& v, const std::string& path, std::string& out) {
  if (!v.is_string()) return value_error(path, "must be a string");
  out = v.get<std::string>();
  return base::ok();
}

// Only JSON integers count: 1.0, "1" and true are refused, because a limit written as a float
// or a string is a sign the author meant something else.
Result<void> read_uint(const Json& v, const std::string& path, uint64_t min, uint64_t max,
                       uint64_t& out) {
  std::string range =
      max == kNoMax ? "must be an integer >= " + std::to_string(min)
                    : "must be an integer in " + std::to_string(min) + ".." + std::to_string(max);
  if (!v.is_number_integer()) return value_error(path, range);
  if (v.is_number_unsigned()) {
    uint64_t n = v.get<uint64_t>();
    if (n < min || n > max) return value_error(path, range);
    out = n;
    return base::ok();
  }
  int64_t n = v.get<int64_t>();  // a negative integer, below every minimum we use
  if (n < 0 || static_cast<uint64_t>(n) < min || static_cast<uint64_t>(n) > max)
    return value_error(path, range);
  out = static_cast<uint64_t>(n);
  return base::ok();
}

Result<void> read_uint(const Json& v, const std::string& path, uint64_t min, uint64_t max,
                       std::optional<uint64_t>& out) {
  uint64_t n = 0;
  CELLOS_TRY(read_uint(v, path, min, max, n));
  out = n;
  return base::ok();
}

Result<void> too_many(const std::string& path, size_t max, const char* what) {
  return value_error(path, "more than " + std::to_string(max) + " " + what);
}

Result<void> read_string_array(const Json& v, const std::string& path, size_t max,
                               std::vector<std::string>& out) {
  if (!v.is_array()) return value_error(path, "must be an array of strings");
  if (v.size() > max) return too_many(path, max, "entries");
  std::vector<std::string> items;
  for (size_t i = 0; i < v.size(); ++i) {
    std::string s;
    CELLOS_TRY(read_string(v[i], element(path, i), s));
    items.push_back(std::move(s));
  }
  out = std::move(items);
  return base::ok();
}

// ---------------------------------------------------------------------------------------------
// Value rules



bool is_ip_address(const std::string& s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

bool is_cidr(const std::string& s) {
  auto slash = s.rfind('/');
  if (slash == std::string::npos) return false;
  std::string addr = s.substr(0, slash), bits = s.substr(slash + 1);
  if (bits.empty() || bits.size() > 3 ||
      !std::all_of(bits.begin(), bits.end(), [](unsigned char c) { return is_digit(c); }))
    return false;
  int prefix = std::stoi(bits);
  unsigned char buf[16];
  if (inet_pton(AF_INET, addr.c_str(), buf) == 1) return prefix <= 32;
  if (inet_pton(AF_INET6, addr.c_str(), buf) == 1) return prefix <= 128;
  return false;
}

bool is_hostname_label(std::string_view l) {
  if (l.empty() || l.size() > 63 || l.front() == '-' || l.back() == '-') return false;
  return std::all_of(l.begin(), l.end(), [](unsigned char c) { return is_alnum(c) || c == '-'; });
}

// RFC 1123 host names. A name whose last label is all digits is refused too: no top-level
// domain is numeric, so "10.0.0.256" is a mistyped address, not a name to resolve.
bool is_hostname(std::string_view h) {
  if (h.ends_with('.')) h.remove_suffix(1);
  if (h.empty() || h.size() > 253) return false;
  std::string_view last;
  size_t start = 0;
  while (start <= h.size()) {
    size_t end = std::min(h.find('.', start), h.size());
    last = h.substr(start, end - start);
    if (!is_hostname_label(last)) return false;
    start = end + 1;
  }
  return !std::all_of(last.begin(), last.end(), [](unsigned char c) { return is_digit(c); });
}

Result<void> check_egress_host(const std::string& host, const std::string& path) {
  if (host.empty()) return value_error(path, "must not be empty");
  if (host.starts_with("*.")) {
    // Only under a dnsAuthority (checked in parse_authority): its proxy's answers say which
    // addresses a name below the suffix has; without it there is nothing to resolve.
    std::string_view suffix = std::string_view(host).substr(2);
    if (is_hostname(suffix) && suffix.find('.') != std::string_view::npos) return base::ok();
    return value_error(path, "a wildcard host must be \"*.\" and a name of two labels or more");
  }
  if (is_ip_address(host) || is_cidr(host) || is_hostname(host)) return base::ok();
  return value_error(path, "must be an IP address, a CIDR or a host name");
}

// ---------------------------------------------------------------------------------------------
// Sections

Result<void> parse_header(const Json& root) {
  CELLOS_TRY(check_fields(root, "", {"apiVersion", "kind", "spec"}));
  const Json* api = find(root, "apiVersion");
  if (!api) return value_error("apiVersion", "is required");
  std::string s;
  CELLOS_TRY(read_string(*api, "apiVersion", s));
  if (s != "cellos.io/v1")
    return value_error("apiVersion", "must be \"cellos.io/v1\", not " + json_quoted(s));
  const Json* kind = find(root, "kind");
  if (!kind) return value_error("kind", "is required");
  CELLOS_TRY(read_string(*kind, "kind", s));
  if (s != "ExecutionCell")
    return value_error("kind", "must be \"ExecutionCell\", not " + json_quoted(s));
  return base::ok();
}

Result<void> parse_secret_refs(const Json& v, const std::string& path, Spec& spec) {
  CELLOS_TRY(read_string_array(v, path, kMaxSecretRefs, spec.secret_refs));
  std::unordered_set<std::string_view> seen;  // linear, whatever the cap becomes
  for (size_t i = 0; i < spec.secret_refs.size(); ++i) {
    const std::string& name = spec.secret_refs[i];
    if (!is_env_name(name))
      return value_error(element(path, i),
                         "must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*)");
    if (!seen.insert(name).second)
      return value_error(element(path, i), "duplicate " + base::clip(name));
    if (is_reserved_env_name(name))
      return value_error(element(path, i), name + " is set by cellos-reactor itself");
  }
  return base::ok();
}

Result<void> parse_egress_rule(const Json& v, const std::string& path, EgressRule& rule) {
  CELLOS_TRY(require_object(v, path));
  CELLOS_TRY(check_fields(v, path, {"host", "port", "protocol"}));
  const Json* host = find(v, "host");
  if (!host) return value_error(child(path, "host"), "is required");
  CELLOS_TRY(read_string(*host, child(path, "host"), rule.host));
  CELLOS_TRY(check_egress_host(rule.host, child(path, "host")));
  const Json* port = find(v, "port");
  if (!port) return value_error(child(path, "port"), "is required");
  uint64_t n = 0;
  CELLOS_TRY(read_uint(*port, child(path, "port"), 1, 65535, n));
  rule.port = static_cast<uint16_t>(n);
  if (const Json* proto = find(v, "protocol")) {
    std::string p;
    CELLOS_TRY(read_string(*proto, child(path, "protocol"), p));
    if (p != "tcp" && p != "udp")
      return value_error(child(path, "protocol"), "must be \"tcp\" or \"udp\"");
    rule.protocol = p;
  }
  return base::ok();
}

Result<void> parse_authority(const Json& v, Spec& spec) {
  const std::string path = "spec.authority";
  CELLOS_TRY(require_object(v, path));
  CELLOS_TRY(check_fields(v, path, {"secretRefs", "egressRules", "dnsAuthority"}));
  if (const Json* refs = find(v, "secretRefs"))
    CELLOS_TRY(parse_secret_refs(*refs, child(path, "secretRefs"), spec));
  if (const Json* rules = find(v, "egressRules")) {
    const std::string rpath = child(path, "egressRules");
    if (!rules->is_array()) return value_error(rpath, "must be an array of objects");
    if (rules->size() > kMaxEgressRules) return too_many(rpath, kMaxEgressRules, "rules");
    for (size_t i = 0; i < rules->size(); ++i) {
      EgressRule rule;
      CELLOS_TRY(parse_egress_rule((*rules)[i], element(rpath, i), rule));
      spec.egress_rules.push_back(std::move(rule));
    }
  }
  if (!find(v, "dnsAuthority"))
    for (size_t i = 0; i < spec.egress_rules.size(); ++i)
      if (spec.egress_rules[i].host.starts_with("*."))
        return value_error(child(element(child(path, "egressRules"), i), "host"),
                           "wildcard hosts need spec.authority.dnsAuthority (name one host)");
  if (const Json* dns = find(v, "dnsAuthority")) {
    auto parsed = parse_dns_authority(*dns, child(path, "dnsAuthority"));
    if (!parsed) return std::move(parsed).error();
    spec.dns_authority = std::move(*parsed);
    // A named egress host the cell may not resolve could never be reached: say so now.
    for (size_t i = 0; i < spec.egress_rules.size(); ++i) {
      const std::string& host = spec.egress_rules[i].host;
      if (is_ip_address(host) || is_cidr(host)) continue;
      if (!dns_name_allowed(spec.dns_authority->hostname_allowlist, host))
        return value_error(child(element(child(path, "egressRules"), i), "host"),
                           json_quoted(host) +
                               " is not covered by spec.authority.dnsAuthority.hostnameAllowlist");
    }
  }
  return base::ok();
}

Result<void> parse_lifetime(const Json& v, Spec& spec) {
  CELLOS_TRY(require_object(v, "spec.lifetime"));
  CELLOS_TRY(check_fields(v, "spec.lifetime", {"ttlSeconds"}));
  if (const Json* ttl = find(v, "ttlSeconds"))
    CELLOS_TRY(read_uint(*ttl, "spec.lifetime.ttlSeconds", 1, kMaxTtlSeconds, spec.ttl_seconds));
  return base::ok();
}

Result<void> parse_argv(const Json& v, RunSpec& run) {
  const std::string path = "spec.run.argv";
  CELLOS_TRY(read_string_array(v, path, kMaxArgv, run.argv));
  if (run.argv.empty()) return value_error(path, "must not be empty");
  for (size_t i = 0; i < run.argv.size(); ++i)
    if (run.argv[i].find('\0') != std::string::npos)
      return value_error(element(path, i), "must not contain NUL");
  // A bare name ("true") is looked up in the cell's PATH at admission (program_path.h). A
  // relative path with a '/' would name a file in the workspace, the job's own files: refused.
  const std::string& a0 = run.argv[0];
  if (a0.empty()) return value_error(element(path, 0), "must not be empty");
  if (a0 == "." || a0 == "..")
    return value_error(element(path, 0), "must be an absolute path or a program name");
  if (a0.find('/') == std::string::npos) return base::ok();
  if (!a0.starts_with('/'))
    return value_error(element(path, 0),
                       json_quoted(a0) + " is a relative path: use an absolute path, a bare " +
                           "program name looked up in PATH, or [\"/usr/bin/env\", NAME, ...]");
  if (!is_normalized_absolute(run.argv[0]))
    return value_error(element(path, 0),
                       "must be a normalized absolute path (no empty, \".\" or \"..\" "
                       "components, no trailing '/')");
  return base::ok();
}

Result<void> parse_working_directory(const Json& v, RunSpec& run) {
  const std::string path = "spec.run.workingDirectory";
  CELLOS_TRY(read_string(v, path, run.working_directory));
  const std::string& wd = run.working_directory;
  if (!wd.starts_with('/')) return value_error(path, "must be an absolute path");
  if (wd == "/") return value_error(path, "must not be \"/\"");
  if (!is_normalized_absolute(wd))
    return value_error(path,
                       "must be a normalized absolute path (no empty, \".\" or \"..\" "
                       "components, no trailing '/')");
  // A fresh workspace is mounted over the working directory; over a kernel filesystem it
  // would hide what the cell's own setup needs.
  for (std::string_view kernel_fs : {"/proc", "/sys", "/dev"})
    if (is_within(wd, kernel_fs))
      return value_error(path, "must not be in " + std::string(kernel_fs));
  return base::ok();
}

Result<void> parse_secret_delivery(const Json& v, RunSpec& run) {
  const std::string path = "spec.run.secretDelivery";
  std::string s;
  CELLOS_TRY(read_string(v, path, s));
  if (s != kSecretDeliveryEnv && s != kSecretDeliveryBroker && s != kSecretDeliveryLeased)
    return value_error(path, "must be \"env\", \"runtimeBroker\" or \"runtimeLeasedBroker\"");
  run.secret_delivery = s;
  return base::ok();
}

// spec.identity {audience}: the audience lands in a signed token and in events, so one short
// printable line.
Result<void> parse_identity(const Json& v, Spec& spec) {
  const std::string path = "spec.identity";
  CELLOS_TRY(require_object(v, path));
  CELLOS_TRY(check_fields(v, path, {"audience"}));
  const Json* aud = find(v, "audience");
  if (!aud) return value_error(child(path, "audience"), "is required");
  IdentitySpec id;
  CELLOS_TRY(read_string(*aud, child(path, "audience"), id.audience));
  if (id.audience.empty() || id.audience.size() > kMaxAudienceBytes ||
      std::any_of(id.audience.begin(), id.audience.end(),
                  [](unsigned char c) { return c < 0x20 || c == 0x7f; }))
    return value_error(child(path, "audience"),
                       "must be 1.." + std::to_string(kMaxAudienceBytes) +
                           " printable characters");
  spec.identity = std::move(id);
  return base::ok();
}

// Values here may be credentials pasted inline: messages name the key, never the value.
Result<void> parse_env(const Json& v, const Spec& spec, RunSpec& run) {
  const std::string path = "spec.run.env";
  CELLOS_TRY(require_object(v, path));
  if (v.size() > kMaxEnvVars) return too_many(path, kMaxEnvVars, "variables");
  const std::unordered_set<std::string_view> secrets(spec.secret_refs.begin(),
                                                     spec.secret_refs.end());
  for (const auto& [key, value] : v.items()) {
    const std::string kpath = child(path, key);
    if (!is_env_name(key))
      return value_error(kpath, "must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*)");
    if (!value.is_string()) return value_error(kpath, "must be a string");
    if (is_reserved_env_name(key)) return value_error(kpath, "is set by cellos-reactor itself");
    const std::string& s = value.get_ref<const std::string&>();
    if (s.find('\0') != std::string::npos) return value_error(kpath, "must not contain NUL");
    // Two sources for one variable would leave it to ordering which one the cell sees.
    if (secrets.count(key))
      return value_error(kpath, "also named in spec.authority.secretRefs");
    run.env.emplace_back(key, s);
  }
  return base::ok();
}

Result<void> parse_cpu_max(const Json& v, Limits& limits) {
  const std::string path = "spec.run.limits.cpuMax";
  CELLOS_TRY(require_object(v, path));
  CELLOS_TRY(check_fields(v, path, {"quotaMicros", "periodMicros"}));
  CpuMax cpu;
  const Json* quota = find(v, "quotaMicros");
  if (!quota) return value_error(child(path, "quotaMicros"), "is required");
  // The kernel's own ranges: a value it would refuse fails here, naming the field, instead of
  // failing the cell's setup.
  CELLOS_TRY(read_uint(*quota, child(path, "quotaMicros"), kMinCpuMicros, kMaxCpuQuotaMicros,
                       cpu.quota_micros));
  if (const Json* period = find(v, "periodMicros"))
    CELLOS_TRY(read_uint(*period, child(path, "periodMicros"), kMinCpuMicros, kMaxCpuPeriodMicros,
                         cpu.period_micros));
  limits.cpu_max = cpu;
  return base::ok();
}

Result<void> parse_limits(const Json& v, Limits& limits) {
  const std::string path = "spec.run.limits";
  CELLOS_TRY(require_object(v, path));
  CELLOS_TRY(
      check_fields(v, path, {"memoryMaxBytes", "pidsMax", "cpuMax", "gracefulShutdownSeconds"}));
  // Below 1 MiB a cell cannot even exec a shell; such a value is a unit mistake (KiB for bytes).
  if (const Json* mem = find(v, "memoryMaxBytes"))
    CELLOS_TRY(read_uint(*mem, child(path, "memoryMaxBytes"), kMinMemoryBytes, kMaxMemoryBytes,
                         limits.memory_max_bytes));
  if (const Json* pids = find(v, "pidsMax"))
    CELLOS_TRY(read_uint(*pids, child(path, "pidsMax"), 1, kMaxPids, limits.pids_max));
  if (const Json* cpu = find(v, "cpuMax")) CELLOS_TRY(parse_cpu_max(*cpu, limits));
  if (const Json* g = find(v, "gracefulShutdownSeconds"))
    CELLOS_TRY(read_uint(*g, child(path, "gracefulShutdownSeconds"), 0, kMaxGracefulSeconds,
                         limits.graceful_shutdown_seconds));
  return base::ok();
}

Result<void> parse_run(const Json& v, Spec& spec) {
  const std::string path = "spec.run";
  CELLOS_TRY(require_object(v, path));
  CELLOS_TRY(check_fields(
      v, path,
      {"argv", "workingDirectory", "secretDelivery", "timeoutMs", "env", "limits", "backend"}));
  RunSpec& run = spec.run;
  const Json* argv = find(v, "argv");
  if (!argv) return value_error(child(path, "argv"), "is required");
  CELLOS_TRY(parse_argv(*argv, run));
  if (const Json* wd = find(v, "workingDirectory")) CELLOS_TRY(parse_working_directory(*wd, run));
  if (const Json* sd = find(v, "secretDelivery")) CELLOS_TRY(parse_secret_delivery(*sd, run));
  if (const Json* t = find(v, "timeoutMs"))
    CELLOS_TRY(read_uint(*t, child(path, "timeoutMs"), 1, kMaxTimeoutMs, run.timeout_ms));
  if (const Json* env = find(v, "env")) CELLOS_TRY(parse_env(*env, spec, run));
  if (const Json* limits = find(v, "limits")) CELLOS_TRY(parse_limits(*limits, run.limits));
  if (const Json* b = find(v, "backend")) {
    std::string name;
    CELLOS_TRY(read_string(*b, child(path, "backend"), name));
    if (name != "native" && name != "gvisor" && name != "nested")
      return value_error(child(path, "backend"), "must be \"native\", \"gvisor\" or \"nested\"");
    run.backend = std::move(name);
  }
  return base::ok();
}

Result<void> parse_inputs(const Json& v, Spec& spec) {
  const std::string path = "spec.inputs";
  if (!v.is_array()) return value_error(path, "must be an array of {hostPath, path}");
  if (v.size() > kMaxInputs) return too_many(path, kMaxInputs, "entries");
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string at = element(path, i);
    CELLOS_TRY(require_object(v[i], at));
    CELLOS_TRY(check_fields(v[i], at, {"hostPath", "path"}));
    Input in;
    for (auto [key, out] : {std::pair<const char*, std::string*>{"hostPath", &in.host_path},
                            {"path", &in.path}}) {
      const Json* f = find(v[i], key);
      if (!f) return value_error(child(at, key), "is required");
      CELLOS_TRY(read_string(*f, child(at, key), *out));
      // Compared as text against policy prefixes and the view: `..` must not step out.
      if (!is_normalized_absolute(*out))
        return value_error(child(at, key),
                           "must be a normalized absolute path (no empty, \".\" or \"..\" "
                           "components, no trailing '/'), not " + json_quoted(*out));
    }
    for (std::string_view kernel_fs : {"/proc", "/sys", "/dev"})
      if (is_within(in.path, kernel_fs))
        return value_error(child(at, "path"), "must not be in " + std::string(kernel_fs));
    for (size_t j = 0; j < spec.inputs.size(); ++j)
      if (is_within(in.path, spec.inputs[j].path) || is_within(spec.inputs[j].path, in.path))
        return value_error(child(at, "path"), json_quoted(in.path) + " overlaps spec.inputs[" +
                                                  std::to_string(j) + "].path");
    spec.inputs.push_back(std::move(in));
  }
  return base::ok();
}

// After parse_run: artifact paths are checked against the working directory.
Result<void> parse_export(const Json& v, Spec& spec) {
  const std::string path = "spec.export";
  CELLOS_TRY(require_object(v, path));
  // Targets are the fleet's ([export] in fleet.toml): a spec naming its own destination would
  // be an exfiltration channel around its egress rules.
  CELLOS_TRY(check_fields(v, path, {"artifacts"}, {"targets"}));
  const Json* arts = find(v, "artifacts");
  if (!arts) return value_error(child(path, "artifacts"), "is required");
  const std::string apath = child(path, "artifacts");
  if (!arts->is_array()) return value_error(apath, "must be an array of {name, path}");
  if (arts->size() > kMaxExportArtifacts) return too_many(apath, kMaxExportArtifacts, "entries");
  const std::string& wd = spec.run.working_directory;
  for (size_t i = 0; i < arts->size(); ++i) {
    const std::string at = element(apath, i);
    const Json& a = (*arts)[i];
    CELLOS_TRY(require_object(a, at));
    CELLOS_TRY(check_fields(a, at, {"name", "path", "required"}));
    ExportArtifact art;
    const Json* name = find(a, "name");
    if (!name) return value_error(child(at, "name"), "is required");
    CELLOS_TRY(read_string(*name, child(at, "name"), art.name));
    if (!is_portable_segment(art.name))
      return value_error(child(at, "name"), "must be 1..128 characters of [A-Za-z0-9._-], not "
                                            "starting with '.' or '-', not " + json_quoted(art.name));
    for (const auto& other : spec.export_artifacts)
      if (other.name == art.name) return value_error(child(at, "name"), json_quoted(art.name) + " is named twice");
    const Json* p = find(a, "path");
    if (!p) return value_error(child(at, "path"), "is required");
    CELLOS_TRY(read_string(*p, child(at, "path"), art.path));
    if (!is_normalized_absolute(art.path))
      return value_error(child(at, "path"), "must be a normalized absolute path (no empty, \".\" "
                                            "or \"..\" components, no trailing '/'), not " +
                                                json_quoted(art.path));
    // The cell's two tmpfs the reactor keeps past its end (cell_export.h).
    if (!is_below(art.path, wd) && !is_below(art.path, "/tmp"))
      return value_error(child(at, "path"), json_quoted(art.path) +
                                                " is not inside the workspace (" + wd + ") or /tmp");
    if (const Json* r = find(a, "required")) {
      if (!r->is_boolean()) return value_error(child(at, "required"), "must be true or false");
      art.required = r->get<bool>();
    }
    spec.export_artifacts.push_back(std::move(art));
  }
  return base::ok();
}

Result<void> parse_correlation(const Json& v, Spec& spec) {
  const std::string path = "spec.correlation";
  CELLOS_TRY(require_object(v, path));
  CELLOS_TRY(check_fields(v, path, {"correlationId"}));
  const Json* id = find(v, "correlationId");
  if (!id) return value_error(child(path, "correlationId"), "is required");
  std::string s;
  CELLOS_TRY(read_string(*id, child(path, "correlationId"), s));
  if (!is_correlation_id(s))
    return value_error(child(path, "correlationId"),
                       "must be 1.." + std::to_string(kMaxCorrelationIdBytes) +
                           " characters of [A-Za-z0-9._:/@+=#-], not " + json_quoted(s));
  spec.correlation_id = std::move(s);
  return base::ok();
}

Result<void> parse_spec_body(const Json& v, Spec& spec) {
  CELLOS_TRY(require_object(v, "spec"));
  CELLOS_TRY(check_fields(v, "spec",
                          {"id", "authority", "lifetime", "run", "identity", "correlation", "inputs",
                           "export"},
                          {"policy"}));
  const Json* id = find(v, "id");
  if (!id) return value_error("spec.id", "is required");
  CELLOS_TRY(read_string(*id, "spec.id", spec.id));
  // The id names directories (cgroup leaf, workspace): it must be exactly one path segment.
  if (!is_portable_segment(spec.id))
    return value_error("spec.id",
                       "must be 1..128 characters of [A-Za-z0-9._-], not starting with '.' or '-'");
  // Authority before run: run.env is checked against the secret names.
  if (const Json* auth = find(v, "authority")) CELLOS_TRY(parse_authority(*auth, spec));
  if (const Json* life = find(v, "lifetime")) CELLOS_TRY(parse_lifetime(*life, spec));
  if (const Json* identity = find(v, "identity")) CELLOS_TRY(parse_identity(*identity, spec));
  if (const Json* corr = find(v, "correlation")) CELLOS_TRY(parse_correlation(*corr, spec));
  if (const Json* in = find(v, "inputs")) CELLOS_TRY(parse_inputs(*in, spec));
  const Json* run = find(v, "run");
  if (!run) return value_error("spec.run", "is required");
  CELLOS_TRY(parse_run(*run, spec));
  if (const Json* ex = find(v, "export")) CELLOS_TRY(parse_export(*ex, spec));
  return base::ok();
}

Result<Spec> parse_document(std::string_view json) {
  auto doc = parse_json(json);
  if (!doc) return std::move(doc).error();
  const Json& root = doc.value();
  if (!root.is_object()) return value_error("spec", "the document must be a JSON object");
  CELLOS_TRY(parse_header(root));
  const Json* body = find(root, "spec");
  if (!body) return value_error("spec", "is required");
  Spec spec;
  CELLOS_TRY(parse_spec_body(*body, spec));
  return spec;
}

}  // namespace

Result<Spec> parse_spec(std::string_view json) {
  // Nothing below is expected to throw once the text is parsed, but a type_error or bad_alloc
  // must still become this cell's error rather than unwind through the reactor.
  try {
    return parse_document(json);
  } catch (const std::exception& e) {
    return value_error("spec", std::string("internal error while validating: ") + e.what());
  }
}

bool is_reserved_env_name(std::string_view name) {
  return name == kBrokerEnvName || name == kIdentityTokenName;
}

bool is_portable_segment(std::string_view id) {
  if (id.empty() || id.size() > 128 || id[0] == '.' || id[0] == '-') return false;
  return std::all_of(id.begin(), id.end(), [](unsigned char c) {
    return is_alnum(c) || c == '.' || c == '_' || c == '-';
  });
}

bool glob_matches(std::string_view glob, std::string_view text) {
  // The classic two-pointer match: on a mismatch, retry from the last `*` one character later.
  size_t g = 0, t = 0, star = std::string_view::npos, resume = 0;
  while (t < text.size()) {
    if (g < glob.size() && (glob[g] == '?' || glob[g] == text[t])) {
      ++g, ++t;
    } else if (g < glob.size() && glob[g] == '*') {
      star = g++;
      resume = t;
    } else if (star != std::string_view::npos) {
      g = star + 1;
      t = ++resume;
    } else {
      return false;
    }
  }
  while (g < glob.size() && glob[g] == '*') ++g;
  return g == glob.size();
}

bool is_correlation_id(std::string_view id) {
  if (id.empty() || id.size() > kMaxCorrelationIdBytes) return false;
  return std::all_of(id.begin(), id.end(), [](unsigned char c) {
    return is_alnum(c) || std::string_view("._:/@+=#-").find(static_cast<char>(c)) !=
                              std::string_view::npos;
  });
}

bool is_env_name(std::string_view name) {
  if (name.empty() || is_digit(static_cast<unsigned char>(name[0]))) return false;
  return std::all_of(name.begin(), name.end(),
                     [](unsigned char c) { return is_alnum(c) || c == '_'; });
}

bool is_normalized_absolute(std::string_view p) {
  if (p.size() < 2 || p[0] != '/' || p.back() == '/') return false;
  if (p.find('\0') != std::string_view::npos) return false;
  size_t start = 1;
  while (start <= p.size()) {
    size_t end = std::min(p.find('/', start), p.size());
    std::string_view part = p.substr(start, end - start);
    if (part.empty() || part == "." || part == "..") return false;
    start = end + 1;
  }
  return true;
}

}  // namespace cellos::cells
