// [policy.nested] and the nested backend's admission (cells/nested_policy.h), and the fleet.toml
// generated for a nested cell's reactor (cells/nested_config.h).
#include <catch2/catch.hpp>

#include "cells/admission.h"
#include "cells/config.h"
#include "cells/nested_config.h"
#include "cells/nested_policy.h"
#include "cells/seccomp.h"
#include "cells/spec.h"

using namespace cellos;

namespace {

std::string error_of(const std::string& toml) {
  try {
    cells::parse_config(toml, "fleet.toml");
  } catch (const cells::ConfigError& e) {
    return e.what();
  }
  return "";
}

constexpr const char* kAllowed =
    "[policy]\nallowed_backends = [\"native\", \"nested\"]\n"
    "[policy.nested]\nmax_depth = 2\nmax_cells = 3\nuid_block_size = 65536\n"
    "uid_range = \"1000000-1196607\"\n";

std::string refusal(const cells::Config& c, const std::string& run_fields,
                    const std::string& spec_fields = "") {
  const std::string text =
      R"({"apiVersion":"cellos.io/v1","kind":"ExecutionCell","spec":{"id":"n1")" + spec_fields +
      R"(,"run":{"argv":["/bin/true"],"backend":"nested")" + run_fields + "}}}";
  auto a = cells::admit(text, {.config = &c, .id_taken = nullptr});
  return a.admitted() ? "" : a.refusal.message();
}

}  // namespace

TEST_CASE("nested policy: [policy.nested] parses, with one line naming the key for each mistake", "[nested]") {
  auto c = cells::parse_config(kAllowed, "fleet.toml");
  CHECK(c.policy.nested.max_depth == 2);
  CHECK(c.policy.nested.max_cells == 3);
  CHECK(c.policy.nested.uid_block_size == 65536);
  CHECK(c.policy.nested.uid_first == 1000000);
  CHECK(c.policy.nested.uid_last == 1196607);
  CHECK(cells::nested_block_count(c.policy.nested) == 3);
  CHECK(cells::parse_config("", "fleet.toml").policy.nested.max_depth == 0);

  CHECK(error_of("[policy]\nallowed_backends = [\"nested\"]\n") ==
        "fleet.toml: policy.allowed_backends: \"nested\" needs policy.nested.max_depth >= 1 (it is "
        "0: no nesting left on this reactor)");
  CHECK(error_of("[policy.nested]\nmax_depth = 9\n") ==
        "fleet.toml: policy.nested.max_depth: must be an integer in 0..8");
  CHECK(error_of("[policy.nested]\nmax_cells = 0\n").starts_with("fleet.toml: policy.nested.max_cells: must be"));
  CHECK(error_of("[policy.nested]\nuid_block_size = 10\n").starts_with("fleet.toml: policy.nested.uid_block_size: must be"));
  CHECK(error_of("[policy.nested]\nuid_range = \"5-1\"\n").starts_with("fleet.toml: policy.nested.uid_range: must be"));
  CHECK(error_of("[policy.nested]\nmax_deep = 1\n") == "fleet.toml: policy.nested.max_deep: unknown key");
  CHECK(error_of("[policy]\nallowed_backends = [\"nested\"]\n[policy.nested]\nmax_depth = 1\n"
                 "max_cells = 4\nuid_block_size = 65536\nuid_range = \"1000000-1131071\"\n") ==
        "fleet.toml: policy.nested.uid_range: 1000000-1131071 holds 2 blocks of "
        "policy.nested.uid_block_size 65536, fewer than max_cells 4");
  CHECK(error_of("[policy]\nallowed_backends = [\"nested\"]\nuid_range = \"200000-265535\"\n"
                 "[policy.nested]\nmax_depth = 1\nmax_cells = 1\nuid_range = \"230000-300000\"\n") ==
        "fleet.toml: policy.nested.uid_range: overlaps policy.uid_range: a nested cell's uids "
        "must be its own");
}

TEST_CASE("nested policy: admission refuses nested where policy forbids it, and what the backend cannot serve yet", "[nested]") {
  const auto native_only = cells::parse_config("", "fleet.toml");
  CHECK(refusal(native_only, "") ==
        "spec.run.backend: \"nested\" is not in policy.allowed_backends (native)");
  const auto allowed = cells::parse_config(kAllowed, "fleet.toml");
  CHECK(refusal(allowed, "") == "");
  // Egress goes through the link behind the parent's ruleset; DNS authority does not yet.
  CHECK(refusal(allowed, "", R"(,"authority":{"egressRules":[{"host":"10.1.2.3","port":443}]})") == "");
  CHECK(refusal(allowed, "", R"(,"authority":{"egressRules":[{"host":"10.1.2.3","port":443}],"dnsAuthority":{"hostnameAllowlist":["a.example.test"],"resolvers":[{"resolverId":"r","endpoint":"10.1.2.4","protocol":"do53-udp"}]}})")
            .starts_with("spec.authority.dnsAuthority: not supported by the nested backend yet"));
  CHECK(refusal(allowed, R"(,"secretDelivery":"runtimeBroker")") ==
        "spec.run.secretDelivery: not supported by the nested backend yet");
  // Not a nested spec: none of this applies.
  const std::string native_spec =
      R"({"apiVersion":"cellos.io/v1","kind":"ExecutionCell","spec":{"id":"n2","run":{"argv":["/bin/true"]}}})";
  CHECK(cells::admit(native_spec, {.config = &allowed, .id_taken = nullptr}).admitted());
}

TEST_CASE("nested policy: the generated fleet.toml narrows at each level and parses", "[nested]") {
  cells::NestedConfigInput in;
  in.cell_id = "ci-7";
  in.parent_host = "h1";
  in.block_size = 1048576;
  in.parent_policy.max_depth = 2;
  in.parent_policy.max_cells = 2;
  in.memory_max_bytes = 268435456;
  in.pids_max = 200;
  in.now_unix_seconds = 1800000000;
  in.deadline_unix_seconds = 1800000100;
  in.secrets = {"DB_PASSWORD"};
  const std::string text = cells::nested_fleet_toml(in);
  INFO(text);
  auto c = cells::parse_config(text, "nested.toml");
  CHECK(c.host.id == "ci-7");
  CHECK(c.host.state_dir == "/cellos/state");
  CHECK(c.events.signing_key == "/cellos/state/nested.key");
  CHECK(c.policy.uid_first == 1000);
  CHECK(c.policy.uid_last == 65533);
  CHECK(c.policy.nested.max_depth == 1);
  CHECK(c.policy.nested.uid_first == 65536);
  CHECK(c.policy.nested.uid_last < 1048576);
  CHECK(c.policy.allowed_backends == std::vector<std::string>{"native", "nested"});
  REQUIRE(c.policy.ceiling.has_value());
  CHECK(c.policy.ceiling->memory_max_bytes == 268435456u);
  CHECK(c.policy.ceiling->pids_max == 200u);
  CHECK(c.policy.ceiling->deadline_unix_seconds == 1800000100u);
  CHECK(c.policy.ceiling->secrets == std::vector<std::string>{"DB_PASSWORD"});
  CHECK(c.policy.ceiling->egress.empty());
  CHECK(c.policy.ceiling->parent == "cell ci-7");
  // Its secrets, handed on: granted to its cells, read from its state dir.
  CHECK(c.secrets.dir == "/cellos/state/secrets");
  CHECK(c.policy.secret_grants.at("DB_PASSWORD") == std::vector<std::string>{"*"});
  CHECK(c.policy.secret_grants.size() == 1);
  CHECK(c.policy.default_ttl_seconds <= 100);
  CHECK(c.policy.default_limits.memory_max_bytes <= 268435456u);
  CHECK(cells::plan_nested(in).max_user_namespaces == 2);

  // The last level: no nesting below, and the kernel's bound is 0.
  in.parent_policy.max_depth = 1;
  auto last = cells::parse_config(cells::nested_fleet_toml(in), "nested.toml");
  CHECK(last.policy.nested.max_depth == 0);
  CHECK(last.policy.allowed_backends == std::vector<std::string>{"native"});
  CHECK(cells::plan_nested(in).max_user_namespaces == 0);
  // A block too small for blocks of its own: no nesting below either.
  in.parent_policy.max_depth = 3;
  in.block_size = 65536;
  CHECK(cells::plan_nested(in).inner.max_depth == 0);
}

TEST_CASE("nested policy: the embedded nested seccomp filter is the one libseccomp compiles", "[nested]") {
  auto built = cells::build_nested_seccomp_program();
  REQUIRE(built.ok());
  const auto& embedded = cells::nested_seccomp_program();
  REQUIRE(embedded.ok());
  REQUIRE(built->size() == embedded->size());
  CHECK(std::memcmp(built->prog()->filter, embedded->prog()->filter,
                    built->size() * sizeof(sock_filter)) == 0);
}
