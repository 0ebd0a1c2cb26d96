// fleet.toml -> Config. Strict like the spec parser: an unknown table or key, a wrong type or a
// value out of range throws ConfigError `<source>: <key.path>: <reason>`, because a mistyped
// policy key that was silently ignored would leave the fleet running with the default policy.
#include "cells/config.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <string>
#include <string_view>

#include "base/fd.h"
#include "cells/root_view.h"
#include "cells/inputs.h"
#include "base/text.h"
#include "cells/spec.h"
#include "netns/nft.h"

// The error paths below rely on toml::parse throwing; a build with TOML_EXCEPTIONS=0 would
// return a parse_result instead and never report syntax errors.
static_assert(TOML_EXCEPTIONS, "cells/config.cc needs toml++ built with exceptions");

namespace cellos::cells {
namespace {

constexpr int64_t kNoMax = std::numeric_limits<int64_t>::max();

// Text for a one-line message: control characters (a quoted TOML key may hold a newline) are
// shown as \xNN, and long text is cut.
std::string printable(std::string_view s, size_t max = 64) { return base::clip(s, max); }

bool is_bare_key(std::string_view k) {
  return !k.empty() && std::all_of(k.begin(), k.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
  });
}

// `policy` + `default_limits` -> `policy.default_limits`; a key TOML needed quotes for keeps them.
std::string child(const std::string& path, std::string_view key) {
  std::string k = is_bare_key(key) ? std::string(key) : "\"" + printable(key) + "\"";
  return path.empty() ? k : path + "." + k;
}

// Spec paths' rule; "/" itself only where the caller allows it (an allow-prefix of everything).
bool is_normalized_absolute(std::string_view p, bool allow_root) {
  return p == "/" ? allow_root : cells::is_normalized_absolute(p);
}

std::string default_host_id() {
  char name[HOST_NAME_MAX + 1] = {};
  // gethostname may truncate without a terminator; the zeroed last byte keeps one.
  if (::gethostname(name, sizeof name - 1) != 0) return "host";
  return is_portable_segment(name) ? std::string(name) : "host";
}

// Walks one parsed document, throwing with `source` in every message.
class ConfigParser {
 public:
  explicit ConfigParser(const std::string& source) : source_(source) {}

  void parse(const toml::table& root, Config& cfg) const {
    check_keys(root, "", {"host", "policy", "secrets", "events", "logs", "network", "flows", "intake",
                          "identity", "export", "cells", "pool"});
    if (const toml::table* t = table(root, "export", "export")) parse_export(*t, cfg.exports);
    if (const toml::table* t = table(root, "host", "host")) parse_host(*t, cfg.host);
    if (const toml::table* t = table(root, "policy", "policy")) parse_policy(*t, cfg.policy);
    if (const toml::table* t = table(root, "secrets", "secrets"))
      parse_secrets(*t, cfg.secrets, cfg.policy);
    if (const toml::table* t = table(root, "identity", "identity")) parse_identity(*t, cfg.identity);
    if (const toml::table* t = table(root, "events", "events")) parse_events(*t, cfg.events);
    if (const toml::table* t = table(root, "logs", "logs")) parse_logs(*t, cfg.logs);
    if (const toml::table* t = table(root, "network", "network")) parse_network(*t, cfg.network);
    if (const toml::table* t = table(root, "flows", "flows")) parse_flows(*t, cfg.flows);
    if (const toml::table* t = table(root, "intake", "intake")) parse_intake(*t, cfg.intake);
    for (const auto& [prefix, globs] : cfg.policy.input_grants)
      if (std::string why = input_prefix_refusal(cfg, prefix); !why.empty())
        fail("policy.input_grants[\"" + printable(prefix) + "\"]", why);
    // Other cells' artifacts land there: no cell may see it.
    if (!cfg.exports.dir.empty())
      for (const auto& v : root_view_paths(cfg.policy))
        if (path_within(cfg.exports.dir, v) || path_within(v, cfg.exports.dir))
          fail("export.dir", "overlaps " + v + ", which every cell sees (policy.host_paths / "
                             "argv0_allow_prefixes)");
    if (const toml::table* t = table(root, "cells", "cells")) parse_cells(*t, cfg.cells);
    if (const toml::table* t = table(root, "pool", "pool")) parse_pool(*t, cfg.pool);
    // The host default is always allowed; listing others lets a spec choose them.
    auto& allowed = cfg.policy.allowed_backends;
    const toml::node* listed = root["policy"]["allowed_backends"].node();
    if (!listed) allowed.clear();
    if (std::find(allowed.begin(), allowed.end(), cfg.cells.backend) == allowed.end())
      allowed.insert(allowed.begin(), cfg.cells.backend);
    if (auto r = check_nested_policy(cfg); !r) {
      const std::string m = r.error().message();  // "key: reason"
      const size_t colon = m.find(": ");
      fail(m.substr(0, colon), colon == std::string::npos ? m : m.substr(colon + 2));
    }
    if (cfg.events.per_event_signing && cfg.events.signing_key.empty())
      fail("events.per_event_signing", "needs events.signing_key");
    if (cfg.events.nats.enabled) {
      // The publisher reads sealed batches back from the local JSONL file (the source of
      // truth), and the host id becomes one subject token.
      if (cfg.events.format != "jsonl" || cfg.events.jsonl == "-")
        fail("events.nats", "needs events.format = \"jsonl\" written to a file (not \"-\")");
      if (cfg.host.id.find('.') != std::string::npos)
        fail("events.nats", "host.id \"" + printable(cfg.host.id) +
                                "\" has a '.', which a NATS subject token cannot hold");
    }
  }

 private:
  [[noreturn]] void fail(const std::string& path, const std::string& reason) const {
    throw ConfigError(source_ + ": " + path + ": " + reason);
  }

  // Unknown members are named as tables or keys, the way the user wrote them.
  void check_keys(const toml::table& t, const std::string& path,
                  std::initializer_list<std::string_view> known) const {
    for (auto&& [key, node] : t) {
      if (std::find(known.begin(), known.end(), key.str()) != known.end()) continue;
      fail(child(path, key.str()), node.is_table() ? "unknown table" : "unknown key");
    }
  }

  // The sub-table `name` of `t`, or nullptr when absent.
  const toml::table* table(const toml::table& t, std::string_view name,
                           const std::string& path) const {
    const toml::node* n = t.get(name);
    if (!n) return nullptr;
    if (!n->is_table()) fail(path, "must be a table");
    return n->as_table();
  }

  std::string string_value(const toml::node& n, const std::string& path) const {
    const auto* s = n.as_string();
    if (!s) fail(path, "must be a string");
    return s->get();
  }

  std::string absolute_path(const toml::node& n, const std::string& path, bool allow_root) const {
    std::string s = string_value(n, path);
    if (!is_normalized_absolute(s, allow_root))
      fail(path,
           "must be a normalized absolute path (no empty, \".\" or \"..\" components, "
           "no trailing '/')");
    return s;
  }

  // TOML integers only: 1.0 or "1" is refused, since such a value was probably meant otherwise.
  int64_t integer(const toml::node& n, const std::string& path, int64_t min, int64_t max) const {
    std::string range =
        max == kNoMax ? "must be an integer >= " + std::to_string(min)
                      : "must be an integer in " + std::to_string(min) + ".." + std::to_string(max);
    const auto* i = n.as_integer();
    if (!i) fail(path, range);
    int64_t v = i->get();
    if (v < min || v > max) fail(path, range);
    return v;
  }

  bool boolean(const toml::node& n, const std::string& path) const {
    const auto* b = n.as_boolean();
    if (!b) fail(path, "must be true or false");
    return b->get();
  }

  std::string one_of(const toml::node& n, const std::string& path,
                     std::initializer_list<std::string_view> allowed) const {
    std::string s = string_value(n, path);
    if (std::find(allowed.begin(), allowed.end(), s) != allowed.end()) return s;
    std::string list;
    for (auto a : allowed) list += (list.empty() ? "\"" : ", \"") + std::string(a) + "\"";
    fail(path, "must be one of " + list);
  }

  void parse_host(const toml::table& t, HostConfig& host) const {
    check_keys(t, "host", {"id", "state_dir", "max_concurrent_cells", "shutdown_grace_seconds",
                           "cgroup_parent", "cgroup_leaf_stock"});
    if (const toml::node* n = t.get("cgroup_leaf_stock"))
      host.cgroup_leaf_stock = integer(*n, "host.cgroup_leaf_stock", 0, 4096);
    if (const toml::node* n = t.get("cgroup_parent"))
      host.cgroup_parent = absolute_path(*n, "host.cgroup_parent", /*allow_root=*/true);
    if (const toml::node* n = t.get("max_concurrent_cells"))
      host.max_concurrent_cells = integer(*n, "host.max_concurrent_cells", 1, 1 << 20);
    if (const toml::node* n = t.get("shutdown_grace_seconds"))
      host.shutdown_grace_seconds = integer(*n, "host.shutdown_grace_seconds", 0, 86400);
    if (const toml::node* n = t.get("id")) {
      std::string id = string_value(*n, "host.id");
      // The host id names directories and appears in every event's data.
      if (!is_portable_segment(id))
        fail("host.id",
             "must be 1..128 characters of [A-Za-z0-9._-], not starting with '.' or '-'");
      host.id = id;
    }
    if (const toml::node* n = t.get("state_dir"))
      host.state_dir = absolute_path(*n, "host.state_dir", /*allow_root=*/false);
  }

  void parse_prefixes(const toml::node& n, std::vector<std::string>& out) const {
    const std::string path = "policy.argv0_allow_prefixes";
    const toml::array* a = n.as_array();
    if (!a) fail(path, "must be an array of strings");
    // An empty list would make every spec fail admission; that is a mistake, not a policy.
    if (a->empty()) fail(path, "must not be empty");
    std::vector<std::string> prefixes;
    for (size_t i = 0; i < a->size(); ++i)
      prefixes.push_back(
          absolute_path(*a->get(i), path + "[" + std::to_string(i) + "]", /*allow_root=*/true));
    out = std::move(prefixes);
  }

  // The spec's own ranges (what the kernel takes, what cannot overflow), so a default or a cap
  // from fleet.toml is never a value a spec could not have written.
  void parse_default_limits(const toml::table& t, DefaultLimits& limits) const {
    const std::string path = "policy.default_limits";
    check_keys(t, path, {"memory_max_bytes", "pids_max"});
    if (const toml::node* n = t.get("memory_max_bytes"))
      limits.memory_max_bytes = integer(*n, child(path, "memory_max_bytes"), kMinMemoryBytes,
                                        static_cast<int64_t>(kMaxMemoryBytes));
    if (const toml::node* n = t.get("pids_max"))
      limits.pids_max = integer(*n, child(path, "pids_max"), 1, kMaxPids);
  }

  void parse_max_limits(const toml::table& t, MaxLimits& max) const {
    const std::string path = "policy.max_limits";
    check_keys(t, path, {"memory_max_bytes", "pids_max", "cpus", "cpu_period_micros",
                         "graceful_shutdown_seconds"});
    if (const toml::node* n = t.get("memory_max_bytes"))
      max.memory_max_bytes = integer(*n, child(path, "memory_max_bytes"), kMinMemoryBytes,
                                     static_cast<int64_t>(kMaxMemoryBytes));
    if (const toml::node* n = t.get("pids_max"))
      max.pids_max = integer(*n, child(path, "pids_max"), 1, kMaxPids);
    if (const toml::node* n = t.get("cpus")) max.cpus = integer(*n, child(path, "cpus"), 1, 65536);
    if (const toml::node* n = t.get("cpu_period_micros"))
      max.cpu_period_micros = integer(*n, child(path, "cpu_period_micros"), kMinCpuMicros,
                                      kMaxCpuPeriodMicros);
    if (const toml::node* n = t.get("graceful_shutdown_seconds"))
      max.graceful_shutdown_seconds =
          integer(*n, child(path, "graceful_shutdown_seconds"), 0, kMaxGracefulSeconds);
  }

  // "example.com", "*.example.com", "10.0.0.1" or "10.0.0.0/8": a leading "*." is the only
  // wildcard, so an entry can never widen into "every host".
  void parse_egress_hosts(const toml::node& n, std::vector<std::string>& out,
                          const std::string& path = "policy.allowed_egress_hosts") const {
    const toml::array* a = n.as_array();
    if (!a) fail(path, "must be an array of strings");
    for (size_t i = 0; i < a->size(); ++i) {
      std::string at = path + "[" + std::to_string(i) + "]";
      std::string h = string_value(*a->get(i), at);
      std::string_view rest = h;
      if (rest.starts_with("*.")) rest.remove_prefix(2);
      bool ok = !rest.empty() && rest.size() <= 253 &&
                std::all_of(rest.begin(), rest.end(), [](char c) {
                  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                         (c >= '0' && c <= '9') || c == '.' || c == '-' || c == ':' || c == '/';
                });
      if (!ok || rest.find('*') != std::string_view::npos)
        fail(at, "must be a hostname, IP or CIDR, with at most one leading \"*.\"");
      out.push_back(h);
    }
  }

  // "example.com" or "*.example.com": names only (a DNS allow-list holds no addresses).
  void parse_dns_names(const toml::node& n, std::vector<std::string>& out,
                       const std::string& path = "policy.allowed_dns_names") const {
    parse_egress_hosts(n, out, path);
    for (size_t i = 0; i < out.size(); ++i)
      if (out[i].find_first_of(":/") != std::string::npos || netns::parse_target(out[i]).ok())
        fail(path + "[" + std::to_string(i) + "]", "must be a host name or \"*.\" and a host name");
  }

  // "10.0.0.53" or "10.0.0.0/24": the addresses declared resolvers may have.
  void parse_dns_resolvers(const toml::node& n, std::vector<std::string>& out) const {
    const std::string path = "policy.allowed_dns_resolvers";
    const toml::array* a = n.as_array();
    if (!a) fail(path, "must be an array of strings");
    for (size_t i = 0; i < a->size(); ++i) {
      std::string at = path + "[" + std::to_string(i) + "]";
      std::string s = string_value(*a->get(i), at);
      if (!netns::parse_target(s)) fail(at, "must be an IP address or CIDR");
      out.push_back(s);
    }
  }

  // [policy.nested] (cells/nested_policy.h).
  void parse_nested(const toml::table& t, NestedPolicy& n) const {
    check_keys(t, "policy.nested", {"max_depth", "max_cells", "uid_block_size", "uid_range"});
    if (const toml::node* v = t.get("max_depth"))
      n.max_depth = static_cast<uint32_t>(integer(*v, "policy.nested.max_depth", 0, kMaxNestedDepth));
    if (const toml::node* v = t.get("max_cells"))
      n.max_cells = static_cast<uint32_t>(integer(*v, "policy.nested.max_cells", 1, 1024));
    if (const toml::node* v = t.get("uid_block_size"))
      n.uid_block_size = static_cast<uint32_t>(
          integer(*v, "policy.nested.uid_block_size", kMinUidBlock, 1 << 24));
    if (const toml::node* v = t.get("uid_range")) {
      const std::string s = string_value(*v, "policy.nested.uid_range");
      unsigned long first = 0, last = 0;
      char tail = 0;
      if (std::sscanf(s.c_str(), "%lu-%lu%c", &first, &last, &tail) != 2 || first < 1 ||
          last > 4294967294UL || first > last || s.find_first_of(" +") != std::string::npos ||
          (first <= 65534 && 65534 <= last))
        fail("policy.nested.uid_range",
             "must be \"FIRST-LAST\" with 1 <= FIRST <= LAST <= 4294967294, not holding 65534 "
             "(nobody)");
      n.uid_first = static_cast<uint32_t>(first);
      n.uid_last = static_cast<uint32_t>(last);
    }
  }

  // [policy.ceiling] (cells/ceiling.h): written by a parent for the reactor it runs in a cell.
  void parse_ceiling(const toml::table& t, PolicyConfig& policy) const {
    check_keys(t, "policy.ceiling",
               {"parent", "egress", "memory_max_bytes", "pids_max", "secrets",
                "deadline_unix_seconds"});
    AuthorityCeiling c;
    if (const toml::node* n = t.get("parent")) c.parent = string_value(*n, "policy.ceiling.parent");
    auto strings = [&](const char* key, std::vector<std::string>& out) {
      const std::string path = std::string("policy.ceiling.") + key;
      const toml::node* n = t.get(key);
      if (!n) return;
      const toml::array* a = n->as_array();
      if (!a) fail(path, "must be an array of strings");
      for (size_t i = 0; i < a->size(); ++i)
        out.push_back(string_value(*a->get(i), path + "[" + std::to_string(i) + "]"));
    };
    std::vector<std::string> egress;
    strings("egress", egress);
    for (const auto& e : egress) {
      auto parsed = parse_ceiling_egress(e);
      if (!parsed) fail("policy.ceiling.egress", parsed.error().message());
      c.egress.push_back(std::move(*parsed));
    }
    strings("secrets", c.secrets);
    if (const toml::node* n = t.get("memory_max_bytes"))
      c.memory_max_bytes = integer(*n, "policy.ceiling.memory_max_bytes", kMinMemoryBytes, kMaxMemoryBytes);
    if (const toml::node* n = t.get("pids_max"))
      c.pids_max = integer(*n, "policy.ceiling.pids_max", 1, kMaxPids);
    if (const toml::node* n = t.get("deadline_unix_seconds"))
      c.deadline_unix_seconds = integer(*n, "policy.ceiling.deadline_unix_seconds", 1, kNoMax);
    policy.ceiling = std::move(c);
  }

  void parse_policy(const toml::table& t, PolicyConfig& policy) const {
    check_keys(t, "policy",
               {"argv0_allow_prefixes", "default_ttl_seconds", "max_ttl_seconds", "run_as_uid",
                "run_as_gid", "default_limits", "max_limits", "allowed_egress_hosts",
                "forbid_egress", "host_paths", "uid_range", "require_runtime_secret_delivery",
                "input_grants", "allowed_backends", "allowed_dns_names",
                "allowed_dns_resolvers", "internal_dns_names", "ceiling", "nested"});
    if (const toml::table* c = table(t, "ceiling", "policy.ceiling")) parse_ceiling(*c, policy);
    if (const toml::table* n = table(t, "nested", "policy.nested")) parse_nested(*n, policy.nested);
    if (const toml::node* n = t.get("require_runtime_secret_delivery"))
      policy.require_runtime_secret_delivery =
          boolean(*n, "policy.require_runtime_secret_delivery");
    if (const toml::table* g = table(t, "input_grants", "policy.input_grants"))
      parse_input_grants(*g, policy.input_grants);
    if (const toml::node* n = t.get("allowed_backends")) {
      const toml::array* a = n->as_array();
      if (!a) fail("policy.allowed_backends", "must be an array of backend names");
      policy.allowed_backends.clear();
      for (size_t i = 0; i < a->size(); ++i) {
        std::string b = one_of(*a->get(i), "policy.allowed_backends[" + std::to_string(i) + "]",
                               {"native", "gvisor", "nested"});
        if (std::find(policy.allowed_backends.begin(), policy.allowed_backends.end(), b) ==
            policy.allowed_backends.end())
          policy.allowed_backends.push_back(std::move(b));
      }
    }
    if (const toml::node* n = t.get("internal_dns_names"))
      parse_dns_names(*n, policy.internal_dns_names, "policy.internal_dns_names");
    if (const toml::node* n = t.get("allowed_dns_names"))
      parse_dns_names(*n, policy.allowed_dns_names);
    if (const toml::node* n = t.get("allowed_dns_resolvers"))
      parse_dns_resolvers(*n, policy.allowed_dns_resolvers);
    if (const toml::node* n = t.get("allowed_egress_hosts"))
      parse_egress_hosts(*n, policy.allowed_egress_hosts);
    if (const toml::node* n = t.get("forbid_egress"))
      policy.forbid_egress = boolean(*n, "policy.forbid_egress");
    if (const toml::node* n = t.get("argv0_allow_prefixes"))
      parse_prefixes(*n, policy.argv0_allow_prefixes);
    // At most ten years: the deadline is computed in milliseconds, and ttl * 1000 must not wrap
    // (a wrapped deadline killed the cell at once).
    if (const toml::node* n = t.get("default_ttl_seconds"))
      policy.default_ttl_seconds = integer(*n, "policy.default_ttl_seconds", 1, kMaxTtlSeconds);
    if (const toml::node* n = t.get("max_ttl_seconds"))
      policy.max_ttl_seconds = integer(*n, "policy.max_ttl_seconds", 1, kMaxTtlSeconds);
    parse_isolation(t, policy);
    if (const toml::table* d = table(t, "default_limits", "policy.default_limits"))
      parse_default_limits(*d, policy.default_limits);
    if (const toml::table* m = table(t, "max_limits", "policy.max_limits"))
      parse_max_limits(*m, policy.max_limits);
    const DefaultLimits& d = policy.default_limits;
    const MaxLimits& m = policy.max_limits;
    if (d.memory_max_bytes > m.memory_max_bytes)
      fail("policy.default_limits.memory_max_bytes",
           std::to_string(d.memory_max_bytes) + " exceeds policy.max_limits.memory_max_bytes " +
               std::to_string(m.memory_max_bytes));
    if (d.pids_max > m.pids_max)
      fail("policy.default_limits.pids_max", std::to_string(d.pids_max) +
                                                 " exceeds policy.max_limits.pids_max " +
                                                 std::to_string(m.pids_max));
    // Checked after both are known, whichever of them the file set.
    if (policy.default_ttl_seconds > policy.max_ttl_seconds)
      fail("policy.default_ttl_seconds", std::to_string(policy.default_ttl_seconds) +
                                             " exceeds policy.max_ttl_seconds " +
                                             std::to_string(policy.max_ttl_seconds));
  }

  // [policy] host_paths and uid_range, and the retired run_as_uid / run_as_gid.
  void parse_isolation(const toml::table& t, PolicyConfig& policy) const {
    for (const char* old : {"run_as_uid", "run_as_gid"})
      if (t.get(old))
        fail(std::string("policy.") + old,
             "replaced by policy.uid_range (each running cell gets a uid of its own)");
    if (const toml::node* n = t.get("host_paths")) {
      const auto* arr = n->as_array();
      if (!arr) fail("policy.host_paths", "must be an array of absolute paths");
      policy.host_paths.clear();
      for (size_t i = 0; i < arr->size(); ++i) {
        const std::string at = "policy.host_paths[" + std::to_string(i) + "]";
        std::string p = absolute_path(*arr->get(i), at, /*allow_root=*/true);
        if (std::string why = host_path_refusal(p); !why.empty()) fail(at, why);
        policy.host_paths.push_back(std::move(p));
      }
    }
    if (const toml::node* n = t.get("uid_range")) {
      // Not 0 (root), not 65534 (nobody, which host files may belong to), not (uid_t)-1.
      const std::string s = string_value(*n, "policy.uid_range");
      unsigned long first = 0, last = 0;
      char tail = 0;
      if (std::sscanf(s.c_str(), "%lu-%lu%c", &first, &last, &tail) != 2 || first < 1 ||
          last > 4294967294UL || first > last || s.find_first_of(" +") != std::string::npos ||
          (first <= 65534 && 65534 <= last))
        fail("policy.uid_range",
             "must be \"FIRST-LAST\" with 1 <= FIRST <= LAST <= 4294967294, not holding 65534 "
             "(nobody)");
      policy.uid_first = static_cast<uint32_t>(first);
      policy.uid_last = static_cast<uint32_t>(last);
    }
  }

  void parse_identity(const toml::table& t, IdentityConfig& identity) const {
    check_keys(t, "identity", {"issuer", "signing_key"});
    if (const toml::node* n = t.get("issuer")) {
      identity.issuer = string_value(*n, "identity.issuer");
      // It lands in every token's iss and in relying parties' configuration: one printable line.
      if (identity.issuer.empty() || identity.issuer.size() > 512 ||
          std::any_of(identity.issuer.begin(), identity.issuer.end(),
                      [](unsigned char c) { return c < 0x20 || c == 0x7f || c == '"' || c == '\\'; }))
        fail("identity.issuer", "must be 1..512 printable characters, without '\"' or '\\'");
    }
    if (const toml::node* n = t.get("signing_key"))
      identity.signing_key = absolute_path(*n, "identity.signing_key", /*allow_root=*/false);
  }

  // A grant's value: an array of cell-id globs, the characters of a cell id plus `*` and `?`.
  std::vector<std::string> cell_id_globs(const toml::node& node, const std::string& path) const {
    const toml::array* a = node.as_array();
    if (!a) fail(path, "must be an array of cell-id globs");
    std::vector<std::string> globs;
    for (size_t i = 0; i < a->size(); ++i) {
      const std::string at = path + "[" + std::to_string(i) + "]";
      std::string g = string_value(*a->get(i), at);
      bool ok = !g.empty() && g.size() <= 128 && std::all_of(g.begin(), g.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '.' || c == '_' || c == '-' || c == '*' || c == '?';
      });
      if (!ok) fail(at, "must be a cell-id glob: 1..128 characters of [A-Za-z0-9._-*?]");
      globs.push_back(std::move(g));
    }
    return globs;
  }

  // "/srv/ci/checkouts" = ["build-*"]: the cells (id globs) whose inputs may lie below the
  // directory. Where it may be is checked once the whole file is read (input_prefix_refusal).
  void parse_input_grants(const toml::table& t,
                          std::map<std::string, std::vector<std::string>>& out) const {
    for (auto&& [key, node] : t) {
      const std::string path = "policy.input_grants[\"" + printable(key.str()) + "\"]";
      if (!is_normalized_absolute(key.str(), false))
        fail(path, "must be a normalized absolute directory (no \".\" or \"..\", no trailing '/')");
      out[std::string(key.str())] = cell_id_globs(node, path);
    }
  }

  void parse_secrets(const toml::table& t, SecretsConfig& secrets, PolicyConfig& policy) const {
    check_keys(t, "secrets", {"dir", "grants"});
    if (const toml::node* n = t.get("dir"))
      secrets.dir = absolute_path(*n, "secrets.dir", /*allow_root=*/false);
    if (const toml::table* g = table(t, "grants", "secrets.grants"))
      parse_grants(*g, policy.secret_grants);
  }

  // NPM_TOKEN = ["build-*", "release-42"]: the cells (id globs) that may name the secret.
  void parse_grants(const toml::table& t, std::map<std::string, std::vector<std::string>>& out) const {
    for (auto&& [key, node] : t) {
      const std::string path = child("secrets.grants", key.str());
      if (!is_env_name(key.str()))
        fail(path, "must be a secret name ([A-Za-z_][A-Za-z0-9_]*)");
      out[std::string(key.str())] = cell_id_globs(node, path);
    }
  }

  void parse_events(const toml::table& t, EventsConfig& events) const {
    check_keys(t, "events", {"jsonl", "format", "batch_max_events", "batch_max_delay_ms",
                             "signing_key", "per_event_signing", "max_buffered_bytes", "nats"});
    if (const toml::table* n = table(t, "nats", "events.nats")) parse_events_nats(*n, events.nats);
    if (const toml::node* n = t.get("format"))
      events.format = one_of(*n, "events.format", {"jsonl", "capnp"});
    if (const toml::node* n = t.get("batch_max_events"))
      events.batch_max_events = integer(*n, "events.batch_max_events", 1, 1 << 20);
    if (const toml::node* n = t.get("batch_max_delay_ms"))
      events.batch_max_delay_ms = integer(*n, "events.batch_max_delay_ms", 0, 60000);
    if (const toml::node* n = t.get("signing_key"))
      events.signing_key = absolute_path(*n, "events.signing_key", /*allow_root=*/false);
    if (const toml::node* n = t.get("per_event_signing"))
      events.per_event_signing = boolean(*n, "events.per_event_signing");
    if (const toml::node* n = t.get("max_buffered_bytes"))
      events.max_buffered_bytes = integer(*n, "events.max_buffered_bytes", 64 << 10, kNoMax);
    if (const toml::node* n = t.get("jsonl")) {
      std::string s = string_value(*n, "events.jsonl");
      if (s != "-" && !is_normalized_absolute(s, /*allow_root=*/false))
        fail("events.jsonl", "must be a normalized absolute path or \"-\" (stdout)");
      events.jsonl = s;
    }
  }

  std::string nats_url(const toml::node& n, const std::string& path) const {
    std::string s = string_value(n, path);
    if (!(s.starts_with("nats://") || s.starts_with("tls://")) || s.size() <= 7 ||
        s.find_first_of(" \t\r\n") != std::string::npos)
      fail(path, "must be a nats://host:port URL (several separated by ',')");
    return s;
  }

  // JetStream stream, consumer and bucket names: no whitespace, '.', '*', '>' or path chars.
  std::string js_name(const toml::node& n, const std::string& path) const {
    std::string s = string_value(n, path);
    bool ok = !s.empty() && s.size() <= 64 && std::all_of(s.begin(), s.end(), [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '_' || c == '-';
    });
    if (!ok) fail(path, "must be 1..64 characters of [A-Za-z0-9_-]");
    return s;
  }

  // A subject to publish on: dot-separated tokens, no wildcards.
  std::string subject(const toml::node& n, const std::string& path) const {
    std::string s = string_value(n, path);
    bool ok = !s.empty() && s.size() <= 255 && s.front() != '.' && s.back() != '.' &&
              s.find("..") == std::string::npos &&
              std::all_of(s.begin(), s.end(), [](char c) {
                return c > 0x20 && c != 0x7f && c != '*' && c != '>';
              });
    if (!ok) fail(path, "must be a NATS subject without wildcards, like \"cellos.specs\"");
    return s;
  }

  void parse_intake(const toml::table& t, IntakeConfig& intake) const {
    check_keys(t, "intake", {"nats"});
    const toml::table* nt = table(t, "nats", "intake.nats");
    if (!nt) return;
    IntakeNatsConfig& c = intake.nats;
    check_keys(*nt, "intake.nats", {"url", "stream", "subject", "durable", "ack_wait_seconds",
                                    "max_deliver", "completions_bucket"});
    c.enabled = true;
    if (const toml::node* n = nt->get("url")) c.url = nats_url(*n, "intake.nats.url");
    if (const toml::node* n = nt->get("stream")) c.stream = js_name(*n, "intake.nats.stream");
    if (const toml::node* n = nt->get("subject")) c.subject = subject(*n, "intake.nats.subject");
    if (const toml::node* n = nt->get("durable")) c.durable = js_name(*n, "intake.nats.durable");
    if (const toml::node* n = nt->get("ack_wait_seconds"))
      c.ack_wait_seconds = integer(*n, "intake.nats.ack_wait_seconds", 3, 3600);
    if (const toml::node* n = nt->get("max_deliver"))
      c.max_deliver = integer(*n, "intake.nats.max_deliver", 1, 1000);
    if (const toml::node* n = nt->get("completions_bucket"))
      c.completions_bucket = js_name(*n, "intake.nats.completions_bucket");
  }

  void parse_events_nats(const toml::table& t, EventsNatsConfig& c) const {
    check_keys(t, "events.nats", {"url", "prefix", "duplicate_window_seconds"});
    c.enabled = true;
    if (const toml::node* n = t.get("url")) c.url = nats_url(*n, "events.nats.url");
    if (const toml::node* n = t.get("prefix")) c.prefix = js_name(*n, "events.nats.prefix");
    if (const toml::node* n = t.get("duplicate_window_seconds"))
      c.duplicate_window_seconds = integer(*n, "events.nats.duplicate_window_seconds", 1, 86400);
  }

  void parse_export(const toml::table& t, ExportConfig& e) const {
    check_keys(t, "export", {"dir", "http_url", "max_artifact_bytes", "max_cell_bytes",
                             "timeout_seconds", "helper"});
    if (const toml::node* n = t.get("dir")) e.dir = absolute_path(*n, "export.dir", false);
    if (const toml::node* n = t.get("helper")) e.helper = absolute_path(*n, "export.helper", false);
    if (const toml::node* n = t.get("http_url")) {
      e.http_url = string_value(*n, "export.http_url");
      const bool scheme = e.http_url.starts_with("http://") || e.http_url.starts_with("https://");
      const bool plain = std::all_of(e.http_url.begin(), e.http_url.end(), [](char c) {
        return c > 0x20 && c < 0x7f && c != '"' && c != '\\' && c != '?' && c != '#';
      });
      if (!scheme || !plain || e.http_url.size() > 2048 ||
          e.http_url.find('/', e.http_url.find("//") + 2) == e.http_url.find("//") + 2)
        fail("export.http_url",
             "must be an http:// or https:// URL with a host, no spaces, query or fragment");
    }
    if (const toml::node* n = t.get("max_artifact_bytes"))
      e.max_artifact_bytes = integer(*n, "export.max_artifact_bytes", 1, kNoMax);
    if (const toml::node* n = t.get("max_cell_bytes"))
      e.max_cell_bytes = integer(*n, "export.max_cell_bytes", 1, kNoMax);
    if (const toml::node* n = t.get("timeout_seconds"))
      e.timeout_seconds = integer(*n, "export.timeout_seconds", 1, 86400);
  }

  void parse_cells(const toml::table& t, CellsConfig& cells) const {
    check_keys(t, "cells", {"backend", "runsc", "gvisor_platform"});
    if (const toml::node* n = t.get("backend"))
      cells.backend = one_of(*n, "cells.backend", {"native", "gvisor"});
    if (const toml::node* n = t.get("runsc"))
      cells.runsc = absolute_path(*n, "cells.runsc", /*allow_root=*/false);
    if (const toml::node* n = t.get("gvisor_platform"))
      cells.gvisor_platform = one_of(*n, "cells.gvisor_platform", {"ptrace", "kvm", "systrap"});
  }

  void parse_pool(const toml::table& t, PoolConfig& pool) const {
    check_keys(t, "pool", {"enabled", "size", "max_size"});
    if (const toml::node* n = t.get("enabled")) pool.enabled = boolean(*n, "pool.enabled");
    if (const toml::node* n = t.get("max_size"))
      pool.max_size = static_cast<uint64_t>(integer(*n, "pool.max_size", 0, 1024));
    if (const toml::node* n = t.get("size"))
      pool.size = static_cast<uint64_t>(integer(*n, "pool.size", 0, 1024));
    else pool.size = std::min(pool.size, pool.max_size);  // the default, under a smaller max
    if (pool.size > pool.max_size) fail("pool.size", "must be <= pool.max_size");
  }

  void parse_logs(const toml::table& t, LogsConfig& logs) const {
    check_keys(t, "logs", {"max_bytes_per_stream"});
    if (const toml::node* n = t.get("max_bytes_per_stream"))
      logs.max_bytes_per_stream = integer(*n, "logs.max_bytes_per_stream", 1, kNoMax);
  }

  void parse_network(const toml::table& t, NetworkConfig& net) const {
    check_keys(t, "network", {"uplink", "subnet", "test_fault_ruleset", "enforcement", "resolvers",
                              "resolve_timeout_ms", "dns_min_ttl_seconds", "dns_max_ttl_seconds",
                              "dns_grace_seconds", "dns_max_addresses_per_name"});
    if (const toml::node* n = t.get("dns_min_ttl_seconds"))
      net.dns_min_ttl_seconds = integer(*n, "network.dns_min_ttl_seconds", 1, 86400);
    if (const toml::node* n = t.get("dns_max_ttl_seconds"))
      net.dns_max_ttl_seconds = integer(*n, "network.dns_max_ttl_seconds", 1, 86400);
    if (net.dns_max_ttl_seconds < net.dns_min_ttl_seconds)
      fail("network.dns_max_ttl_seconds", "must be >= network.dns_min_ttl_seconds");
    if (const toml::node* n = t.get("dns_grace_seconds"))
      net.dns_grace_seconds = integer(*n, "network.dns_grace_seconds", 0, 3600);
    if (const toml::node* n = t.get("dns_max_addresses_per_name"))
      net.dns_max_addresses_per_name = integer(*n, "network.dns_max_addresses_per_name", 1, 4096);
    if (const toml::node* n = t.get("resolve_timeout_ms"))
      net.resolve_timeout_ms = integer(*n, "network.resolve_timeout_ms", 100, 60000);
    if (const toml::node* n = t.get("resolvers")) {
      const toml::array* a = n->as_array();
      if (!a) fail("network.resolvers", "must be an array of \"ip\", \"ip:port\" or \"[v6]:port\"");
      for (const auto& e : *a) {
        const std::string s = string_value(e, "network.resolvers");
        // An address, never a name: the resolver must not need a resolver.
        std::string host = s, port;
        if (!s.empty() && s.front() == '[') {
          auto close = s.find(']');
          host = close == std::string::npos ? "" : s.substr(1, close - 1);
          port = close == std::string::npos ? "" : s.substr(close + 1);
          if (!port.empty() && port.front() != ':') host.clear();
          if (!port.empty()) port.erase(0, 1);
        } else if (auto colon = s.find(':'); colon != std::string::npos) {
          host = s.substr(0, colon);
          port = s.substr(colon + 1);
        }
        in6_addr a6{};
        in_addr a4{};
        const bool ip = inet_pton(AF_INET, host.c_str(), &a4) == 1 ||
                        (s.front() == '[' && inet_pton(AF_INET6, host.c_str(), &a6) == 1);
        const bool port_ok = port.empty() || (port.size() <= 5 &&
                             port.find_first_not_of("0123456789") == std::string::npos &&
                             std::stoul(port) >= 1 && std::stoul(port) <= 65535);
        if (!ip || !port_ok)
          fail("network.resolvers", "\"" + printable(s) +
                                        "\" is not \"ip\", \"ip:port\" or \"[v6]:port\"");
        net.resolvers.push_back(s);
      }
    }
    if (const toml::node* n = t.get("enforcement"))
      net.enforcement = one_of(*n, "network.enforcement", {"none", "nft", "bpf", "both"});
    if (const toml::node* n = t.get("test_fault_ruleset"))
      net.test_fault_ruleset = boolean(*n, "network.test_fault_ruleset");
    if (const toml::node* n = t.get("uplink"))
      net.uplink = one_of(*n, "network.uplink", {"none", "nat"});
    if (const toml::node* n = t.get("subnet")) {
      // Checked fully (an IPv4 /8../24 network address) where the uplink is built; here only
      // its shape, so the message names the key.
      std::string s = string_value(*n, "network.subnet");
      unsigned a, b, c, d, len;
      char tail;
      if (std::sscanf(s.c_str(), "%u.%u.%u.%u/%u%c", &a, &b, &c, &d, &len, &tail) != 5 ||
          a > 255 || b > 255 || c > 255 || d > 255 || len < 8 || len > 24)
        fail("network.subnet", "must be an IPv4 CIDR from /8 to /24, like \"10.213.0.0/16\"");
      net.subnet = s;
    }
  }

  void parse_flows(const toml::table& t, FlowsConfig& flows) const {
    check_keys(t, "flows", {"probes", "report_interval_ms", "drain_interval_ms", "top_destinations",
                           "max_flows", "bpf_pin_dir"});
    if (const toml::node* n = t.get("bpf_pin_dir")) {
      const std::string d = string_value(*n, "flows.bpf_pin_dir");
      flows.bpf_pin_dir = d.empty() ? d : absolute_path(*n, "flows.bpf_pin_dir", false);
    }
    if (const toml::node* n = t.get("max_flows"))
      flows.max_flows = integer(*n, "flows.max_flows", 64, 2147483647);
    if (const toml::node* n = t.get("probes")) flows.probes = boolean(*n, "flows.probes");
    if (const toml::node* n = t.get("report_interval_ms"))
      flows.report_interval_ms = integer(*n, "flows.report_interval_ms", 10, 3600000);
    if (const toml::node* n = t.get("drain_interval_ms"))
      flows.drain_interval_ms = integer(*n, "flows.drain_interval_ms", 10, 60000);
    if (const toml::node* n = t.get("top_destinations"))
      flows.top_destinations = integer(*n, "flows.top_destinations", 0, 100);
  }

  const std::string& source_;
};

// toml++ 3.3.0 (Debian 12) reaches __builtin_unreachable for some non-ASCII characters where it
// looks for whitespace (U+00A1..U+0499 after a key, and inside arrays after a NUL; found by
// tests/fuzz/config_fuzz): undefined behaviour on a one-line file. Every key and value of a
// fleet.toml is ASCII, so the text is held to printable ASCII, tab and line breaks before toml++
// sees it. Returns the 1-based line of the first other byte, or 0.
size_t first_unsafe_byte_line(std::string_view t) {
  size_t line = 1;
  for (unsigned char c : t) {
    if (c == '\n') {
      ++line;
    } else if ((c < 0x20 && c != '\t' && c != '\r') || c >= 0x7f) {
      return line;
    }
  }
  return 0;
}

}  // namespace

Config default_config() {
  Config cfg;
  cfg.host.id = default_host_id();
  cfg.policy.allowed_backends = {cfg.cells.backend};
  return cfg;
}

Config parse_config(const std::string& toml_text, const std::string& source) {
  if (size_t line = first_unsafe_byte_line(toml_text))
    throw ConfigError(source + ":" + std::to_string(line) +
                      ": only printable ASCII, tabs and line breaks are accepted");
  toml::table root;
  try {
    root = toml::parse(toml_text, std::string_view(source));
  } catch (const toml::parse_error& e) {
    const auto& where = e.source().begin;
    throw ConfigError(source + ":" + std::to_string(where.line) + ":" +
                      std::to_string(where.column) + ": " + printable(e.description(), 512));
  }
  Config cfg = default_config();
  cfg.source = source;
  ConfigParser(source).parse(root, cfg);
  return cfg;
}

}  // namespace cellos::cells
