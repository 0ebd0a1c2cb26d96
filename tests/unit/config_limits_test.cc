// fleet.toml's ceilings: [policy.max_limits], [secrets.grants], ranges that keep the arithmetic
// on TTLs and limits from overflowing, and a [secrets] dir that must exist when the file loads.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <string>

#include "cells/config.h"
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

TEST_CASE("max_limits and secret grants have secure defaults", "[config][limits]") {
  Config c = default_config();
  CHECK(c.policy.max_limits.memory_max_bytes == 8ull << 30);
  CHECK(c.policy.max_limits.pids_max == 4096);
  CHECK(c.policy.secret_grants.empty());  // no grant, no secret
}

TEST_CASE("[policy.max_limits] and [secrets.grants] land in the policy", "[config][limits]") {
  Config c = parse_config(R"(
[policy.default_limits]
pids_max = 100

[policy.max_limits]
memory_max_bytes = 4294967296
pids_max = 200
cpus = 2
cpu_period_micros = 500000

[secrets]
dir = "/etc/cellos/secrets"

[secrets.grants]
NPM_TOKEN = ["build-*", "release-42"]
GH_TOKEN = []
)",
                          "fleet.toml");
  CHECK(c.policy.max_limits.memory_max_bytes == 4294967296);
  CHECK(c.policy.max_limits.pids_max == 200);
  CHECK(c.policy.max_limits.cpus == 2);
  CHECK(c.policy.max_limits.cpu_period_micros == 500000);
  CHECK(c.policy.secret_grants.at("NPM_TOKEN") == std::vector<std::string>{"build-*", "release-42"});
  CHECK(c.policy.secret_grants.at("GH_TOKEN").empty());
}

TEST_CASE("TTLs and limits in fleet.toml are held to ranges that cannot overflow",
          "[config][limits]") {
  // ttl * 1000 near 2^63 wrapped, and the cell was killed at once.
  CHECK_THAT(error_of("[policy]\nmax_ttl_seconds = 9223372036854775000\n"),
             Contains("fleet.toml: policy.max_ttl_seconds: must be an integer in 1..315360000"));
  CHECK_THAT(error_of("[policy]\ndefault_ttl_seconds = 315360001\n"),
             Contains("fleet.toml: policy.default_ttl_seconds: must be an integer in 1..315360000"));
  CHECK(error_of("[policy]\nmax_ttl_seconds = 315360000\n") == "<accepted>");
  CHECK_THAT(error_of("[policy.default_limits]\npids_max = 9223372036854775807\n"),
             Contains("policy.default_limits.pids_max: must be an integer in 1..4194303"));
  CHECK_THAT(error_of("[policy.max_limits]\nmemory_max_bytes = 9223372036854775807\n"),
             Contains("policy.max_limits.memory_max_bytes: must be an integer in 1048576.."));
  CHECK_THAT(error_of("[policy.max_limits]\ncpu_period_micros = 2000000\n"),
             Contains("policy.max_limits.cpu_period_micros: must be an integer in 1000..1000000"));
  CHECK_THAT(error_of("[policy.max_limits]\nsize = 1\n"),
             Contains("fleet.toml: policy.max_limits.size: unknown key"));
}

TEST_CASE("default_limits above max_limits are refused", "[config][limits]") {
  CHECK(error_of("[policy.max_limits]\npids_max = 100\n") ==
        "fleet.toml: policy.default_limits.pids_max: 1024 exceeds policy.max_limits.pids_max 100");
  CHECK_THAT(error_of("[policy.default_limits]\nmemory_max_bytes = 17179869184\n"),
             Contains("policy.default_limits.memory_max_bytes: 17179869184 exceeds "
                      "policy.max_limits.memory_max_bytes 8589934592"));
}

TEST_CASE("bad [secrets.grants] entries are refused naming the secret", "[config][secrets]") {
  CHECK(error_of("[secrets.grants]\nNPM_TOKEN = \"build-*\"\n") ==
        "fleet.toml: secrets.grants.NPM_TOKEN: must be an array of cell-id globs");
  CHECK_THAT(error_of("[secrets.grants]\nNPM_TOKEN = [\"a/b\"]\n"),
             StartsWith("fleet.toml: secrets.grants.NPM_TOKEN[0]: must be a cell-id glob"));
  CHECK_THAT(error_of("[secrets.grants]\n\"BAD-NAME\" = [\"x\"]\n"),
             StartsWith("fleet.toml: secrets.grants.BAD-NAME: must be a secret name"));
  CHECK_THAT(error_of("[secrets.grants]\nX = [1]\n"),
             StartsWith("fleet.toml: secrets.grants.X[0]: must be a string"));
}

std::string temp_dir() {
  char tmpl[] = "/var/tmp/cellos-cfg-XXXXXX";
  REQUIRE(::mkdtemp(tmpl) != nullptr);
  return tmpl;
}

std::string load_error(const std::string& path) {
  try {
    load_config(path);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "<accepted>";
}

void write(const std::string& path, const std::string& text) {
  FILE* f = std::fopen(path.c_str(), "w");
  REQUIRE(f);
  std::fputs(text.c_str(), f);
  std::fclose(f);
}

TEST_CASE("a [secrets] dir that does not exist is reported when the config loads",
          "[config][secrets]") {
  const std::string dir = temp_dir();
  const std::string toml = dir + "/fleet.toml";
  write(toml, "[secrets]\ndir = \"" + dir + "/absent\"\n");
  CHECK(load_error(toml) ==
        toml + ": secrets.dir: \"" + dir + "/absent\": No such file or directory");
  write(dir + "/file", "x");
  write(toml, "[secrets]\ndir = \"" + dir + "/file\"\n");
  CHECK(load_error(toml) == toml + ": secrets.dir: \"" + dir + "/file\": not a directory");
  write(toml, "[secrets]\ndir = \"" + dir + "\"\n");
  CHECK(load_error(toml) == "<accepted>");
  ::unlink(toml.c_str());
  ::unlink((dir + "/file").c_str());
  ::rmdir(dir.c_str());
}

TEST_CASE("fleet.toml must be a regular file: a FIFO is refused, not waited on",
          "[config][limits]") {
  const std::string dir = temp_dir();
  const std::string fifo = dir + "/fleet.toml";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  // Without O_NONBLOCK this open would wait for a writer forever.
  CHECK_THAT(load_error(fifo), Contains("not a regular file"));
  ::unlink(fifo.c_str());
  ::rmdir(dir.c_str());
}

}  // namespace
}  // namespace cellos::cells

namespace cellos::cells {
namespace {

TEST_CASE("fleet.toml is printable ASCII: other bytes are refused before toml++ sees them",
          "[config][limits]") {
  const std::string refused = ": only printable ASCII, tabs and line breaks are accepted";
  // Found by config_fuzz: toml++ 3.3.0 reached __builtin_unreachable on both.
  CHECK(error_of("[secrets\xd2\x94rants]\n\"A B\x7f = ") == "fleet.toml:1" + refused);
  const char kArray[] = "x = [[[[[+\0'''0'0\xce\x9e]]]]]]]]]'''0'0]]]]]]]]]]]]\n";
  CHECK(error_of(std::string(kArray, sizeof kArray - 1)) == "fleet.toml:1" + refused);
  CHECK(error_of("[host]\nid = \"h\"\n# caf\xc3\xa9\n") == "fleet.toml:3" + refused);
  CHECK(error_of("[host]\r\n\tid = \"h\"\r\n") == "<accepted>");
}

}  // namespace
}  // namespace cellos::cells
