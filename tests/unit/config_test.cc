// fleet.toml: defaults, every key landing in Config, and one-line errors naming file and key.
#include "cells/config.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "cells/spec.h"

namespace cellos::cells {
namespace {

using Catch::Contains;
using Catch::StartsWith;

std::string error_of(const std::string& toml) {
  try {
    parse_config(toml, "fleet.toml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "<accepted>";
}

struct Rejection {
  std::string toml;
  std::string expected;  // a substring of the message: "<source>: <key.path>: <reason>"
};

void check_rejections(const std::vector<Rejection>& cases) {
  for (const auto& c : cases) {
    INFO("fleet.toml:\n" << c.toml);
    std::string msg = error_of(c.toml);
    CHECK_THAT(msg, Contains(c.expected));
    CHECK_THAT(msg, StartsWith("fleet.toml:"));
    CHECK(msg.find('\n') == std::string::npos);
  }
}

TEST_CASE("default_config holds the documented defaults and a portable host id", "[config]") {
  Config c = default_config();
  CHECK(is_portable_segment(c.host.id));
  CHECK(c.host.state_dir == "/var/lib/cellos-reactor");
  CHECK(c.policy.argv0_allow_prefixes ==
        std::vector<std::string>{"/usr/bin", "/bin", "/usr/local/bin"});
  CHECK(c.policy.default_ttl_seconds == 3600);
  CHECK(c.policy.max_ttl_seconds == 86400);
  CHECK(c.policy.uid_first == 200000);
  CHECK(c.policy.uid_last == 265535);
  CHECK(c.policy.host_paths == std::vector<std::string>{"/usr", "/bin", "/sbin", "/lib", "/lib32",
                                                        "/lib64", "/libx32", "/etc", "/opt"});
  CHECK(c.policy.default_limits.memory_max_bytes == 2ull << 30);
  CHECK(c.policy.default_limits.pids_max == 1024);
  CHECK(c.secrets.dir.empty());
  CHECK(c.events.jsonl.empty());
  CHECK(c.events_path() == "/var/lib/cellos-reactor/events.jsonl");
  CHECK(c.source == "<built-in defaults>");
}

TEST_CASE("default_config takes host.id from the hostname when it is portable", "[config]") {
  char name[256] = {};
  REQUIRE(gethostname(name, sizeof name - 1) == 0);
  CHECK(default_config().host.id == (is_portable_segment(name) ? std::string(name) : "host"));
}

TEST_CASE("an empty fleet.toml keeps every default and records its source", "[config]") {
  Config c = parse_config("", "/etc/fleet.toml");
  Config d = default_config();
  CHECK(c.source == "/etc/fleet.toml");
  CHECK(c.host.id == d.host.id);
  CHECK(c.host.state_dir == d.host.state_dir);
  CHECK(c.policy.argv0_allow_prefixes == d.policy.argv0_allow_prefixes);
  CHECK(c.policy.default_ttl_seconds == d.policy.default_ttl_seconds);
  CHECK(c.policy.max_ttl_seconds == d.policy.max_ttl_seconds);
  CHECK(c.policy.default_limits.pids_max == d.policy.default_limits.pids_max);
}

TEST_CASE("every fleet.toml key lands in Config", "[config]") {
  Config c = parse_config(R"(
[host]
id = "fleet-7"
state_dir = "/srv/cellos"

[policy]
argv0_allow_prefixes = ["/usr/bin", "/opt/ci/bin"]
default_ttl_seconds = 600
max_ttl_seconds = 7200
uid_range = "300000-300099"
host_paths = ["/usr", "/etc"]

[policy.default_limits]
memory_max_bytes = 536870912
pids_max = 256

[secrets]
dir = "/etc/cellos/secrets"

[events]
jsonl = "/var/log/cellos/events.jsonl"
)",
                          "fleet.toml");
  CHECK(c.source == "fleet.toml");
  CHECK(c.host.id == "fleet-7");
  CHECK(c.host.state_dir == "/srv/cellos");
  CHECK(c.policy.argv0_allow_prefixes == std::vector<std::string>{"/usr/bin", "/opt/ci/bin"});
  CHECK(c.policy.default_ttl_seconds == 600);
  CHECK(c.policy.max_ttl_seconds == 7200);
  CHECK(c.policy.uid_first == 300000);
  CHECK(c.policy.uid_last == 300099);
  CHECK(c.policy.host_paths == std::vector<std::string>{"/usr", "/etc"});
  CHECK(c.policy.default_limits.memory_max_bytes == 536870912);
  CHECK(c.policy.default_limits.pids_max == 256);
  CHECK(c.secrets.dir == "/etc/cellos/secrets");
  CHECK(c.events.jsonl == "/var/log/cellos/events.jsonl");
  CHECK(c.events_path() == "/var/log/cellos/events.jsonl");
}

TEST_CASE("daemon, log, network and event-log keys land in Config", "[config]") {
  Config d = parse_config("", "fleet.toml");
  CHECK(d.host.max_concurrent_cells == 64);
  CHECK(d.host.cgroup_leaf_stock == 64);
  CHECK(d.host.shutdown_grace_seconds == 30);
  CHECK(d.logs.max_bytes_per_stream == 16u << 20);
  CHECK(d.network.uplink == "none");
  CHECK(d.events.format == "jsonl");
  CHECK(d.events.batch_max_events == 512);
  CHECK(d.events.batch_max_delay_ms == 10);
  CHECK_FALSE(d.policy.forbid_egress);
  CHECK(d.policy.allowed_egress_hosts.empty());

  Config c = parse_config(R"(
[host]
max_concurrent_cells = 8
shutdown_grace_seconds = 0
cgroup_leaf_stock = 0
[logs]
max_bytes_per_stream = 4096
[network]
uplink = "nat"
subnet = "10.77.0.0/16"
[policy]
allowed_egress_hosts = ["*.example.com", "10.0.0.0/8"]
forbid_egress = true
[events]
format = "capnp"
batch_max_events = 64
batch_max_delay_ms = 0
signing_key = "/etc/cellos/host.key"
per_event_signing = true
max_buffered_bytes = 1048576
)",
                          "fleet.toml");
  CHECK(c.host.max_concurrent_cells == 8);
  CHECK(c.host.shutdown_grace_seconds == 0);
  CHECK(c.host.cgroup_leaf_stock == 0);
  CHECK(c.logs.max_bytes_per_stream == 4096);
  CHECK(c.network.uplink == "nat");
  CHECK(c.network.subnet == "10.77.0.0/16");
  CHECK(c.policy.allowed_egress_hosts == std::vector<std::string>{"*.example.com", "10.0.0.0/8"});
  CHECK(c.policy.forbid_egress);
  CHECK(c.events.format == "capnp");
  CHECK(c.events.batch_max_events == 64);
  CHECK(c.events.batch_max_delay_ms == 0);
  CHECK(c.events.signing_key == "/etc/cellos/host.key");
  CHECK(c.events.per_event_signing);
  CHECK(c.events.max_buffered_bytes == 1048576);

  check_rejections({
      {"[host]\nmax_concurrent_cells = 0\n", "fleet.toml: host.max_concurrent_cells: must be"},
      {"[host]\ncgroup_leaf_stock = 4097\n", "fleet.toml: host.cgroup_leaf_stock: must be"},
      {"[host]\ncgroup_leaf_stock = -1\n", "fleet.toml: host.cgroup_leaf_stock: must be"},
      {"[network]\nuplink = \"bridge\"\n", "fleet.toml: network.uplink: must be one of"},
      {"[network]\nsubnet = \"10.0.0.0\"\n", "fleet.toml: network.subnet: must be an IPv4 CIDR"},
      {"[policy]\nallowed_egress_hosts = [\"a.*.com\"]\n",
       "fleet.toml: policy.allowed_egress_hosts[0]: must be"},
      {"[policy]\nforbid_egress = 1\n", "fleet.toml: policy.forbid_egress: must be true or false"},
      {"[events]\nformat = \"xml\"\n", "fleet.toml: events.format: must be one of"},
      {"[events]\nper_event_signing = true\n",
       "fleet.toml: events.per_event_signing: needs events.signing_key"},
      {"[logs]\nmax_bytes = 1\n", "fleet.toml: logs.max_bytes: unknown key"},
  });
}

TEST_CASE("flow and enforcement keys land in Config", "[config][flows]") {
  Config d = default_config();
  CHECK(d.network.enforcement == "nft");
  CHECK(d.network.nft_enforces());
  CHECK_FALSE(d.network.bpf_enforces());
  CHECK(d.flows.probes);
  CHECK(d.flows.report_interval_ms == 5000);
  CHECK(d.flows.drain_interval_ms == 1000);
  CHECK(d.flows.top_destinations == 5);

  Config c = parse_config(R"(
[network]
enforcement = "both"
[flows]
probes = false
report_interval_ms = 250
drain_interval_ms = 50
top_destinations = 0
max_flows = 1024
)",
                          "fleet.toml");
  CHECK(c.network.nft_enforces());
  CHECK(c.network.bpf_enforces());
  CHECK_FALSE(c.flows.probes);
  CHECK(c.flows.report_interval_ms == 250);
  CHECK(c.flows.drain_interval_ms == 50);
  CHECK(c.flows.top_destinations == 0);
  CHECK(c.flows.max_flows == 1024);
  CHECK(d.flows.max_flows == 65536);
  CHECK(parse_config("[network]\nenforcement = \"bpf\"\n", "f").network.bpf_enforces());
  CHECK_FALSE(parse_config("[network]\nenforcement = \"bpf\"\n", "f").network.nft_enforces());

  check_rejections({
      {"[network]\nenforcement = \"iptables\"\n", "fleet.toml: network.enforcement: must be one of"},
      {"[flows]\nprobes = \"yes\"\n", "fleet.toml: flows.probes: must be true or false"},
      {"[flows]\nreport_interval_ms = 1\n", "fleet.toml: flows.report_interval_ms: must be an integer in 10.."},
      {"[flows]\ndrain_interval_ms = 0\n", "fleet.toml: flows.drain_interval_ms: must be an integer in 10.."},
      {"[flows]\nsample = 1\n", "fleet.toml: flows.sample: unknown key"},
  });
}

TEST_CASE("[flows] bpf_pin_dir: a pin directory by default, \"\" for none, else absolute",
          "[config]") {
  CHECK(default_config().flows.bpf_pin_dir == "/sys/fs/bpf/cellos-reactor");
  CHECK(parse_config("[flows]\nbpf_pin_dir = \"\"\n", "f").flows.bpf_pin_dir.empty());
  CHECK(parse_config("[flows]\nbpf_pin_dir = \"/run/bpf/x\"\n", "f").flows.bpf_pin_dir ==
        "/run/bpf/x");
  check_rejections({
      {"[flows]\nbpf_pin_dir = \"pins\"\n",
       "fleet.toml: flows.bpf_pin_dir: must be a normalized absolute path"},
      {"[flows]\nbpf_pin_dir = 1\n", "fleet.toml: flows.bpf_pin_dir: must be a string"},
  });
}

TEST_CASE("boundary values and special forms are accepted", "[config]") {
  Config c = parse_config(R"(
[policy]
argv0_allow_prefixes = ["/"]
uid_range = "4294967294-4294967294"
host_paths = []
default_ttl_seconds = 1
max_ttl_seconds = 1
default_limits = { memory_max_bytes = 1048576, pids_max = 1 }
[events]
jsonl = "-"
)",
                          "fleet.toml");
  CHECK(c.policy.argv0_allow_prefixes == std::vector<std::string>{"/"});
  CHECK(c.policy.uid_first == 4294967294u);
  CHECK(c.policy.uid_last == 4294967294u);
  CHECK(c.policy.host_paths.empty());
  CHECK(c.policy.default_limits.memory_max_bytes == 1048576);
  CHECK(c.policy.default_limits.pids_max == 1);
  CHECK(c.events.jsonl == "-");
}

TEST_CASE("unknown tables and keys are refused at every level", "[config]") {
  check_rejections({
      {"[telemetry]\n", "fleet.toml: telemetry: unknown table"},
      {"colour = 1\n", "fleet.toml: colour: unknown key"},
      {"[host]\ncolour = \"red\"\n", "fleet.toml: host.colour: unknown key"},
      {"[policy]\nmax_ttl = 5\n", "fleet.toml: policy.max_ttl: unknown key"},
      {"[policy.extra]\n", "fleet.toml: policy.extra: unknown table"},
      {"[policy.default_limits]\ncpu_max = 1\n",
       "fleet.toml: policy.default_limits.cpu_max: unknown key"},
      {"[secrets]\npath = \"/x\"\n", "fleet.toml: secrets.path: unknown key"},
      {"[events]\nkafka = \"x\"\n", "fleet.toml: events.kafka: unknown key"},
      {"[events]\nnats = \"x\"\n", "fleet.toml: events.nats: must be a table"},
      {"[host.sub]\n", "fleet.toml: host.sub: unknown table"},
      // A quoted key keeps its quotes, and its newline stays escaped on the one line.
      {"[host]\n\"a\\nb\" = 1\n", "fleet.toml: host.\"a\\x0ab\": unknown key"},
  });
}

TEST_CASE("known tables must be tables", "[config]") {
  check_rejections({
      {"host = 1\n", "fleet.toml: host: must be a table"},
      {"policy = \"strict\"\n", "fleet.toml: policy: must be a table"},
      {"secrets = []\n", "fleet.toml: secrets: must be a table"},
      {"events = 1\n", "fleet.toml: events: must be a table"},
      {"[policy]\ndefault_limits = 3\n", "fleet.toml: policy.default_limits: must be a table"},
  });
}

TEST_CASE("host keys are checked", "[config]") {
  const std::string id = "fleet.toml: host.id: must be 1..128 characters";
  const std::string dir = "fleet.toml: host.state_dir: must be a normalized absolute path";
  check_rejections({
      {"[host]\nid = 5\n", "fleet.toml: host.id: must be a string"},
      {"[host.id]\n", "fleet.toml: host.id: must be a string"},
      {"[host]\nid = \"\"\n", id},
      {"[host]\nid = \".x\"\n", id},
      {"[host]\nid = \"-x\"\n", id},
      {"[host]\nid = \"a/b\"\n", id},
      {"[host]\nstate_dir = 3\n", "fleet.toml: host.state_dir: must be a string"},
      {"[host]\nstate_dir = \"var/lib\"\n", dir},
      {"[host]\nstate_dir = \"/var/lib/\"\n", dir},
      {"[host]\nstate_dir = \"/var/../lib\"\n", dir},
      {"[host]\nstate_dir = \"/\"\n", dir},
  });
}

TEST_CASE("policy keys are checked", "[config]") {
  const std::string prefixes = "fleet.toml: policy.argv0_allow_prefixes";
  const std::string uid_range = "must be \"FIRST-LAST\" with 1 <= FIRST <= LAST <= 4294967294";
  check_rejections({
      {"[policy]\nargv0_allow_prefixes = \"/usr/bin\"\n",
       prefixes + ": must be an array of strings"},
      {"[policy]\nargv0_allow_prefixes = []\n", prefixes + ": must not be empty"},
      {"[policy]\nargv0_allow_prefixes = [\"/usr/bin\", 3]\n", prefixes + "[1]: must be a string"},
      {"[policy]\nargv0_allow_prefixes = [\"usr/bin\"]\n",
       prefixes + "[0]: must be a normalized absolute path"},
      {"[policy]\nargv0_allow_prefixes = [\"/usr/../bin\"]\n",
       prefixes + "[0]: must be a normalized absolute path"},
      {"[policy]\nargv0_allow_prefixes = [\"/usr/bin/\"]\n",
       prefixes + "[0]: must be a normalized absolute path"},
      {"[policy]\ndefault_ttl_seconds = 0\n",
       "fleet.toml: policy.default_ttl_seconds: must be an integer in 1..315360000"},
      {"[policy]\ndefault_ttl_seconds = 1.5\n",
       "fleet.toml: policy.default_ttl_seconds: must be an integer in 1..315360000"},
      {"[policy]\ndefault_ttl_seconds = \"60\"\n",
       "fleet.toml: policy.default_ttl_seconds: must be an integer in 1..315360000"},
      {"[policy]\nmax_ttl_seconds = 0\n",
       "fleet.toml: policy.max_ttl_seconds: must be an integer in 1..315360000"},
      {"[policy]\nmax_ttl_seconds = -1\n",
       "fleet.toml: policy.max_ttl_seconds: must be an integer in 1..315360000"},
      {"[policy]\nmax_ttl_seconds = true\n",
       "fleet.toml: policy.max_ttl_seconds: must be an integer in 1..315360000"},
      {"[policy]\nmax_ttl_seconds = 3600.0\n",
       "fleet.toml: policy.max_ttl_seconds: must be an integer in 1..315360000"},
      {"[policy]\nrun_as_uid = 1000\n",
       "fleet.toml: policy.run_as_uid: replaced by policy.uid_range (each running cell gets a uid "
       "of its own)"},
      {"[policy]\nuid_range = \"0-10\"\n", "fleet.toml: policy.uid_range: " + uid_range},
      {"[policy]\nuid_range = \"10-9\"\n", "fleet.toml: policy.uid_range: " + uid_range},
      {"[policy]\nuid_range = \"1-4294967295\"\n", "fleet.toml: policy.uid_range: " + uid_range},
      {"[policy]\nuid_range = \"60000-70000\"\n", "fleet.toml: policy.uid_range: " + uid_range},
      {"[policy]\nuid_range = \"1000\"\n", "fleet.toml: policy.uid_range: " + uid_range},
      {"[policy]\nuid_range = \"1000-2000x\"\n", "fleet.toml: policy.uid_range: " + uid_range},
      {"[policy]\nuid_range = 1000\n", "fleet.toml: policy.uid_range: must be a string"},
      {"[policy]\nhost_paths = [\"/\"]\n",
       "fleet.toml: policy.host_paths[0]: must not be \"/\" (that is the whole host again)"},
      {"[policy]\nhost_paths = [\"/usr\", \"/tmp/x\"]\n",
       "fleet.toml: policy.host_paths[1]: must not be under /tmp, which each cell gets of its own"},
      {"[policy]\nhost_paths = [\"/proc\"]\n",
       "fleet.toml: policy.host_paths[0]: must not be under /proc, which each cell gets of its own"},
      {"[policy]\nhost_paths = [\"usr\"]\n",
       "fleet.toml: policy.host_paths[0]: must be a normalized absolute path"},
      {"[policy]\nhost_paths = \"/usr\"\n",
       "fleet.toml: policy.host_paths: must be an array of absolute paths"},

      {"[policy]\ndefault_ttl_seconds = 7200\nmax_ttl_seconds = 3600\n",
       "fleet.toml: policy.default_ttl_seconds: 7200 exceeds policy.max_ttl_seconds 3600"},
      // The default default (3600) counts too when only the cap is lowered.
      {"[policy]\nmax_ttl_seconds = 60\n",
       "fleet.toml: policy.default_ttl_seconds: 3600 exceeds policy.max_ttl_seconds 60"},
  });
}

TEST_CASE("policy.default_limits keys are checked", "[config]") {
  const std::string path = "fleet.toml: policy.default_limits";
  check_rejections({
      {"[policy.default_limits]\nmemory_max_bytes = 1048575\n",
       path + ".memory_max_bytes: must be an integer in 1048576..1125899906842624"},
      {"[policy.default_limits]\nmemory_max_bytes = \"2G\"\n",
       path + ".memory_max_bytes: must be an integer in 1048576..1125899906842624"},
      {"[policy.default_limits]\npids_max = 0\n", path + ".pids_max: must be an integer in 1..4194303"},
      {"[policy.default_limits]\npids_max = 2.0\n", path + ".pids_max: must be an integer in 1..4194303"},
  });
}

TEST_CASE("secrets and events keys are checked", "[config]") {
  check_rejections({
      {"[secrets]\ndir = 1\n", "fleet.toml: secrets.dir: must be a string"},
      {"[secrets]\ndir = \"secrets\"\n",
       "fleet.toml: secrets.dir: must be a normalized absolute path"},
      {"[secrets]\ndir = \"\"\n", "fleet.toml: secrets.dir: must be a normalized absolute path"},
      {"[events]\njsonl = 1\n", "fleet.toml: events.jsonl: must be a string"},
      {"[events]\njsonl = \"events.jsonl\"\n",
       "fleet.toml: events.jsonl: must be a normalized absolute path or \"-\""},
      {"[events]\njsonl = \"\"\n",
       "fleet.toml: events.jsonl: must be a normalized absolute path or \"-\""},
  });
}

TEST_CASE("TOML syntax errors name the source, line and column", "[config]") {
  check_rejections({
      {"[host\n", "fleet.toml:1:"},
      {"[host]\nid = \n", "fleet.toml:2:"},
      {"[host]\nid = \"a\"\nid = \"b\"\n", "fleet.toml:3:"},
      {"[policy]\nmax_ttl_seconds = 1\n[policy]\n", "fleet.toml:3:"},
  });
}

TEST_CASE("load_config reads a file and names it as the source", "[config]") {
  char path[] = "/tmp/cellos-config-test-XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  const std::string text =
      "[host]\nid = \"from-file\"\n[policy]\nmax_ttl_seconds = 60\n"
      "default_ttl_seconds = 30\n";
  REQUIRE(write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  close(fd);
  Config c = load_config(path);
  unlink(path);
  CHECK(c.source == path);
  CHECK(c.host.id == "from-file");
  CHECK(c.policy.max_ttl_seconds == 60);
  CHECK(c.policy.default_ttl_seconds == 30);
}

TEST_CASE("load_config on a file that does not exist says it cannot read it", "[config]") {
  const std::string path = "/nonexistent/cellos/fleet.toml";
  try {
    load_config(path);
    FAIL("load_config accepted a missing file");
  } catch (const ConfigError& e) {
    CHECK(std::string(e.what()) == path + ": cannot read: No such file or directory");
  }
}

TEST_CASE("load_config errors carry the file path", "[config]") {
  char path[] = "/tmp/cellos-config-test-XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  const std::string text = "[telemetry]\n";
  REQUIRE(write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
  close(fd);
  std::string msg;
  try {
    load_config(path);
  } catch (const ConfigError& e) {
    msg = e.what();
  }
  unlink(path);
  CHECK(msg == std::string(path) + ": telemetry: unknown table");
}

}  // namespace
}  // namespace cellos::cells
