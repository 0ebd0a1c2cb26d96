// The mount view from inside a cell: the allowed host paths read-only, nothing else of the host,
// a fresh workspace and /tmp, a minimal /dev, and nothing written ever reaching the host.
#include <catch2/catch.hpp>
#include <filesystem>

#include "tests/support/test_support.h"

using namespace cellos::test;

TEST_CASE("a write outside the workspace fails and leaves the host unchanged", "[fs]") {
  Fleet fleet;
  const std::string target = fleet.dir() + "/host-file";
  write_text(target, "host original\n");
  // The file's directory is not in the view (only its bin/, an allowed argv[0] prefix, is):
  // the cell neither reads the host file nor writes there.
  auto spec = make_spec(unique_id("rofs"), {fleet.probe(), "write", target});
  auto r = fleet.run(spec.dump());
  CHECK(r.status == 1);
  CHECK_THAT(r.out, Catch::Contains("Read-only file system"));
  CHECK(read_text(target) == "host original\n");
  auto cat = fleet.run(make_spec(unique_id("rofs"), {"/bin/cat", target}).dump());
  CHECK(cat.status == 1);
  CHECK(cat.out.empty());
  CHECK_THAT(cat.err, Catch::Contains("No such file or directory"));
  // An allowed host path is there, read-only.
  auto bin = fleet.run(make_spec(unique_id("rofs"), {fleet.probe(), "write", fleet.dir() + "/bin/x"}).dump());
  CHECK(bin.status == 1);
  CHECK_THAT(bin.out, Catch::Contains("Read-only file system"));
  CHECK_FALSE(path_exists(fleet.dir() + "/bin/x"));

  auto etc = fleet.run(make_spec(unique_id("rofs"), {fleet.probe(), "write", "/etc/cellos-x"}).dump());
  CHECK(etc.status == 1);
  CHECK_FALSE(path_exists("/etc/cellos-x"));
}

TEST_CASE("the workspace is a fresh tmpfs: writable, the cwd, empty on every run", "[fs]") {
  Fleet fleet;
  const std::string ws = fleet.dir() + "/ws";
  std::filesystem::create_directories(ws);
  write_text(ws + "/host-secret.txt", "host data\n");
  auto spec = make_spec(unique_id("ws"), {"/bin/sh", "-c", "pwd; ls -A; echo cell > mine; ls -A"});
  spec["spec"]["run"]["workingDirectory"] = ws;
  auto first = fleet.run(spec.dump());
  REQUIRE(first.status == 0);
  // The host file under the workspace path is hidden from the cell...
  CHECK(first.out == ws + "\nmine\n");
  // ...and intact on the host, which never sees the cell's file.
  CHECK(read_text(ws + "/host-secret.txt") == "host data\n");
  CHECK_FALSE(path_exists(ws + "/mine"));

  spec["spec"]["id"] = unique_id("ws");
  auto second = fleet.run(spec.dump());
  CHECK(second.out == ws + "\nmine\n");  // the first run's file is gone
}

TEST_CASE("a workspace path missing on the host is created in the cell only", "[fs]") {
  Fleet fleet;
  for (const std::string& ws :
       {std::string("/cellos-missing-") + std::to_string(::getpid()) + "/a/b",
        fleet.dir() + "/missing/deeper", std::string("/tmp/cellos-in-cell/x"),
        // Inside a read-only host path of the view: a tmpfs over /opt with its entries grafted.
        std::string("/opt/cellos-missing-") + std::to_string(::getpid()) + "/w"}) {
    auto spec = make_spec(unique_id("mkws"),
                          {"/bin/sh", "-c", "pwd && touch f && ls && test -x /bin/sh && ls /usr >/dev/null"});
    spec["spec"]["run"]["workingDirectory"] = ws;
    auto r = fleet.run(spec.dump());
    INFO(ws << ": " << r.err);
    CHECK(r.status == 0);
    CHECK(r.out == ws + "\nf\n");
    // The host around it is still what the cell sees.
    CHECK_FALSE(path_exists(ws));
  }
  CHECK_FALSE(path_exists(std::string("/cellos-missing-") + std::to_string(::getpid())));
  CHECK_FALSE(path_exists(std::string("/opt/cellos-missing-") + std::to_string(::getpid())));
  CHECK_FALSE(path_exists(fleet.dir() + "/missing"));
}

TEST_CASE("/tmp is the cell's own and writable, and two cells never share it", "[fs]") {
  Fleet fleet;
  // A name no one else uses: the host's own /tmp may hold anything.
  const std::string file = "/tmp/" + unique_id("cellos-tmp-probe");
  auto a = fleet.run(make_spec(unique_id("tmp"), {"/bin/sh", "-c", "ls -A /tmp; echo a > " + file}).dump());
  auto b = fleet.run(make_spec(unique_id("tmp"), {"/bin/sh", "-c", "ls -A /tmp"}).dump());
  CHECK(a.status == 0);
  CHECK(a.out.empty());
  CHECK(b.out.empty());
  CHECK_FALSE(path_exists(file));
}

TEST_CASE("/dev holds only null, zero, full, random and urandom, usable by the cell", "[fs]") {
  Fleet fleet;
  auto r = fleet.run(make_spec(unique_id("dev"),
                               {"/bin/sh", "-c",
                                "ls /dev | tr '\\n' ' '; echo x > /dev/null && echo null-ok; "
                                "head -c 8 /dev/urandom | wc -c; echo y > /dev/stdout; "
                                "touch /dev/new 2>/dev/null || echo dev-readonly"})
                         .dump());
  CHECK(r.status == 0);
  CHECK(r.out ==
        "fd full null random stderr stdin stdout urandom zero null-ok\n8\ny\ndev-readonly\n");
}
