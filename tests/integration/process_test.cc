// Who the command is inside its cell: its pid namespace, descriptors, credentials, seccomp
// filter and environment.
#include <catch2/catch.hpp>
#include <filesystem>
#include <sstream>

#include "tests/support/test_support.h"

using namespace cellos::test;

namespace {

std::string status_field(const std::string& status, const std::string& field) {
  std::istringstream in(status);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field + ":", 0) == 0) {
      auto start = line.find_first_not_of(" \t", field.size() + 1);
      return start == std::string::npos ? "" : line.substr(start);
    }
  return "<missing " + field + ">";
}

}  // namespace

TEST_CASE("/proc shows only the cell's own processes", "[proc]") {
  Fleet fleet;
  auto r = fleet.run(
      make_spec(unique_id("proc"),
                {"/bin/sh", "-c", "ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' '"})
          .dump());
  REQUIRE(r.status == 0);
  // 1 is the cell's init, 2 the shell, then ls, grep, sort and tr; no host process is visible.
  std::istringstream in(r.out);
  int pid = 0, count = 0, max = 0;
  while (in >> pid) ++count, max = std::max(max, pid);
  CHECK(r.out.rfind("1 2 ", 0) == 0);
  CHECK(count <= 6);
  CHECK(max < 10);
}

TEST_CASE("the command has only descriptors 0, 1 and 2 open", "[proc]") {
  Fleet fleet;
  auto r = fleet.run(make_spec(unique_id("fds"), {fleet.probe(), "fds"}).dump());
  REQUIRE(r.status == 0);
  CHECK(r.out == "0\n1\n2\n");
}

TEST_CASE("stdin is /dev/null", "[proc]") {
  Fleet fleet;
  auto r = fleet.run(make_spec(unique_id("stdin"), {"/bin/sh", "-c", "cat; readlink /proc/self/fd/0"}).dump());
  CHECK(r.status == 0);
  CHECK(r.out == "/dev/null\n");
}

TEST_CASE("the command runs unprivileged: no capabilities, no_new_privs, seccomp on", "[proc]") {
  Fleet fleet;
  auto r = fleet.run(make_spec(unique_id("creds"), {"/bin/cat", "/proc/self/status"}).dump());
  REQUIRE(r.status == 0);
  // A uid of its own from the default policy.uid_range, and the gid of the same number.
  const std::string uid = status_field(r.out, "Uid");
  const std::string id = uid.substr(0, uid.find('\t'));
  CHECK(uid == id + "\t" + id + "\t" + id + "\t" + id);
  CHECK(status_field(r.out, "Gid") == uid);
  CHECK(std::stoul(id) >= 200000);
  CHECK(std::stoul(id) <= 265535);
  CHECK(status_field(r.out, "Groups").empty());
  for (const char* cap : {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"})
    CHECK(status_field(r.out, cap) == "0000000000000000");
  CHECK(status_field(r.out, "NoNewPrivs") == "1");
  CHECK(status_field(r.out, "Seccomp") == "2");
}

TEST_CASE("the uid and gid come from the policy's uid_range", "[proc]") {
  // A range of one uid: every cell of this fleet runs as 4242.
  Fleet fleet("[policy]\nargv0_allow_prefixes = [\"/usr/bin\", \"/bin\"]\n"
              "uid_range = \"4242-4242\"\n");
  auto r = fleet.run(make_spec(unique_id("uid"), {"/usr/bin/id", "-u", "-r"}).dump());
  auto g = fleet.run(make_spec(unique_id("uid"), {"/usr/bin/id", "-g", "-r"}).dump());
  CHECK(r.out == "4242\n");
  CHECK(g.out == "4242\n");
}

TEST_CASE("mount, unshare and ptrace are refused inside a cell", "[proc]") {
  Fleet fleet;
  auto m = fleet.run(make_spec(unique_id("mount"), {fleet.probe(), "mount"}).dump());
  CHECK(m.status == 1);
  CHECK_THAT(m.out, Catch::Contains("Operation not permitted"));
  auto u = fleet.run(make_spec(unique_id("unshare"), {"/usr/bin/unshare", "-r", "/bin/true"}).dump());
  CHECK(u.status != 0);
}

TEST_CASE("the environment is exactly PATH, run.env and the declared secrets", "[env]") {
  Fleet fleet;
  const std::string secrets = fleet.dir() + "/secrets";
  std::filesystem::create_directories(secrets);
  write_text(secrets + "/NPM_TOKEN", "s3cr3t-value-xyz\n");
  write_text(secrets + "/UNDECLARED", "must-not-appear\n");
  Fleet with_secrets("[secrets]\ndir = \"" + secrets + "\"\n[secrets.grants]\nNPM_TOKEN = [\"env-*\"]\n");
  // Written out by hand: the declared order of run.env is what the command must see.
  const std::string spec = R"({"apiVersion":"cellos.io/v1","kind":"ExecutionCell","spec":{
      "id":")" + unique_id("env") + R"(","authority":{"secretRefs":["NPM_TOKEN"]},
      "run":{"argv":["/usr/bin/env"],"env":{"CI":"true","EMPTY":"","B":"2"}}}})";
  auto r = with_secrets.run(spec);
  REQUIRE(r.status == 0);
  CHECK(r.out == "PATH=/usr/local/bin:/usr/bin:/bin\nCI=true\nEMPTY=\nB=2\nNPM_TOKEN=s3cr3t-value-xyz\n");
  // The value reached the command and nothing else: not an event, not a log line.
  for (const auto& e : r.events) CHECK(e.dump().find("s3cr3t-value-xyz") == std::string::npos);
  CHECK(r.err.find("s3cr3t") == std::string::npos);
}

TEST_CASE("a missing secret rejects the spec naming the secretRef, runs nothing", "[env]") {
  Fleet fleet;
  const std::string secrets = fleet.dir() + "/secrets";
  std::filesystem::create_directories(secrets);
  Fleet with_secrets("[secrets]\ndir = \"" + secrets + "\"\n[secrets.grants]\nABSENT_TOKEN = [\"*\"]\n");
  auto spec = make_spec(unique_id("nosecret"), {with_secrets.probe(), "write", "/var/tmp/never"});
  spec["spec"]["authority"] = {{"secretRefs", {"ABSENT_TOKEN"}}};
  auto r = with_secrets.run(spec.dump());
  CHECK(r.status == 125);
  CHECK_THAT(r.err, Catch::StartsWith("cellos-reactor: spec.authority.secretRefs[0]"));
  CHECK_THAT(r.err, Catch::Contains("ABSENT_TOKEN"));
  CHECK(r.event("lifecycle.v1.started").is_null());
}

TEST_CASE("the cell's hostname is its id", "[proc]") {
  Fleet fleet;
  const std::string id = unique_id("host");
  auto r = fleet.run(make_spec(id, {"/bin/cat", "/proc/sys/kernel/hostname"}).dump());
  CHECK(r.out == id + "\n");
}
