// Choosing a backend: [cells] backend, [policy] allowed_backends, spec.run.backend at admission,
// and the OCI bundle a gVisor cell runs from.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <string>

#include "cells/config.h"
#include "cells/oci_bundle.h"
#include "cells/spec.h"

namespace cellos::cells {
namespace {

std::string error_of(const std::string& toml) {
  try {
    parse_config(toml, "fleet.toml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "<accepted>";
}

Spec spec_with_backend(const std::string& backend) {
  auto s = parse_spec(R"({"apiVersion":"cellos.io/v1","kind":"ExecutionCell","spec":{"id":"b",
      "run":{"argv":["/bin/true"],"backend":")" + backend + R"("}}})");
  REQUIRE(s.ok());
  return *s;
}

TEST_CASE("backends: native is the default and the only one allowed", "[backend]") {
  Config c = default_config();
  CHECK(c.cells.backend == "native");
  CHECK(c.cells.runsc == "/usr/bin/runsc");
  CHECK(c.cells.gvisor_platform == "ptrace");
  CHECK(c.policy.allowed_backends == std::vector<std::string>{"native"});
  Config e = parse_config("", "fleet.toml");
  CHECK(e.policy.allowed_backends == std::vector<std::string>{"native"});
}

TEST_CASE("backends: [cells] and allowed_backends land in Config, and the default is always allowed",
          "[backend]") {
  Config c = parse_config("[cells]\nbackend = \"gvisor\"\nrunsc = \"/opt/runsc\"\n"
                          "gvisor_platform = \"kvm\"\n",
                          "fleet.toml");
  CHECK(c.cells.backend == "gvisor");
  CHECK(c.cells.runsc == "/opt/runsc");
  CHECK(c.cells.gvisor_platform == "kvm");
  CHECK(c.policy.allowed_backends == std::vector<std::string>{"gvisor"});
  Config both = parse_config("[policy]\nallowed_backends = [\"gvisor\"]\n", "fleet.toml");
  CHECK(both.policy.allowed_backends == std::vector<std::string>{"native", "gvisor"});
  Config only = parse_config("[cells]\nbackend = \"gvisor\"\n[policy]\nallowed_backends = [\"gvisor\"]\n",
                             "fleet.toml");
  CHECK(only.policy.allowed_backends == std::vector<std::string>{"gvisor"});
}

TEST_CASE("backends: bad [cells] and allowed_backends values are refused naming the key",
          "[backend]") {
  CHECK(error_of("[cells]\nbackend = \"firecracker\"\n") ==
        "fleet.toml: cells.backend: must be one of \"native\", \"gvisor\"");
  CHECK(error_of("[cells]\ngvisor_platform = \"hvf\"\n") ==
        "fleet.toml: cells.gvisor_platform: must be one of \"ptrace\", \"kvm\", \"systrap\"");
  CHECK(error_of("[cells]\nrunsc = \"runsc\"\n").starts_with("fleet.toml: cells.runsc: must be a normalized absolute path"));
  CHECK(error_of("[cells]\nbakend = \"gvisor\"\n") == "fleet.toml: cells.bakend: unknown key");
  CHECK(error_of("[policy]\nallowed_backends = \"gvisor\"\n") ==
        "fleet.toml: policy.allowed_backends: must be an array of backend names");
  CHECK(error_of("[policy]\nallowed_backends = [\"qemu\"]\n") ==
        "fleet.toml: policy.allowed_backends[0]: must be one of \"native\", \"gvisor\", \"nested\"");
}

TEST_CASE("backends: spec.run.backend is admitted only when the policy allows it", "[backend]") {
  CHECK_FALSE(spec_with_backend("native").run.backend->empty());
  auto bad = parse_spec(R"({"apiVersion":"cellos.io/v1","kind":"ExecutionCell","spec":{"id":"b",
      "run":{"argv":["/bin/true"],"backend":"firecracker"}}})");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message() == "spec.run.backend: must be \"native\", \"gvisor\" or \"nested\"");
  auto typed = parse_spec(R"({"apiVersion":"cellos.io/v1","kind":"ExecutionCell","spec":{"id":"b",
      "run":{"argv":["/bin/true"],"backend":1}}})");
  REQUIRE_FALSE(typed.ok());
  CHECK(typed.error().message() == "spec.run.backend: must be a string");

  Config native = default_config();
  auto refused = check_policy(spec_with_backend("gvisor"), native.policy);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message() ==
        "spec.run.backend: \"gvisor\" is not in policy.allowed_backends (native)");
  CHECK(check_policy(spec_with_backend("native"), native.policy).ok());
  Config both = parse_config("[policy]\nallowed_backends = [\"native\", \"gvisor\"]\n", "f");
  CHECK(check_policy(spec_with_backend("gvisor"), both.policy).ok());
}

TEST_CASE("backends: the OCI bundle says the cell's view, identity and limits", "[backend]") {
  OciBundleOptions o;
  o.argv = {"/bin/sh", "-c", "true"};
  o.env = {"PATH=/usr/bin:/bin", "CI=true"};
  o.workdir = "/work";
  o.hostname = "cell-1";
  o.uid = 4242;
  o.gid = 4243;
  o.host_paths = {"/usr", "/etc", "/cellos-no-such-dir"};
  o.masked_paths = {"/etc/hostname"};
  o.nproc = 9;
  auto text = oci_config_json(o);
  REQUIRE(text.ok());
  auto j = nlohmann::json::parse(*text);
  CHECK(j["root"]["readonly"] == true);
  CHECK(j["hostname"] == "cell-1");
  CHECK(j["process"]["args"] == nlohmann::json(o.argv));
  CHECK(j["process"]["env"] == nlohmann::json(o.env));
  CHECK(j["process"]["user"]["uid"] == 4242);
  CHECK(j["process"]["user"]["gid"] == 4243);
  CHECK(j["process"]["noNewPrivileges"] == true);
  for (const char* set : {"bounding", "effective", "inheritable", "permitted", "ambient"})
    CHECK(j["process"]["capabilities"][set].empty());
  CHECK(j["process"]["rlimits"][0]["type"] == "RLIMIT_NPROC");
  CHECK(j["process"]["rlimits"][0]["hard"] == 9);
  CHECK_FALSE(j["linux"].contains("cgroupsPath"));
  CHECK(j["linux"]["namespaces"].size() == 4);  // pid, ipc, uts, mount: no network without one
  o.netns_path = "/proc/1/fd/7";
  auto with_net = nlohmann::json::parse(*oci_config_json(o));
  CHECK(with_net["linux"]["namespaces"].back() ==
        nlohmann::json({{"type", "network"}, {"path", "/proc/1/fd/7"}}));
  std::vector<std::string> dests;
  for (const auto& m : j["mounts"]) dests.push_back(m["destination"]);
  // tmpfs first (a host path may lie below /tmp), the absent host path skipped, the mask last.
  CHECK(dests == std::vector<std::string>{"/proc", "/sys", "/tmp", "/work", "/usr", "/etc",
                                          "/etc/hostname"});
  for (const auto& m : j["mounts"]) {
    if (m["destination"] == "/usr") CHECK(m["options"] == nlohmann::json({"rbind", "ro", "nosuid", "nodev"}));
    if (m["destination"] == "/etc/hostname") CHECK(m["source"] == "/dev/null");
    if (m["destination"] == "/work")
      CHECK(m["options"] == nlohmann::json({"nosuid", "nodev", "mode=0755", "uid=4242", "gid=4243"}));
  }

  o.workdir = "/usr/src/build";
  auto inside = oci_config_json(o);
  REQUIRE_FALSE(inside.ok());
  CHECK(inside.error().message() ==
        "spec.run.workingDirectory: \"/usr/src/build\" lies inside the host path /usr: a gVisor "
        "cell's workspace must be outside the host view");
}

}  // namespace
}  // namespace cellos::cells
