// A cell without a veth gets /sys as a clone of one sysfs its daemon's spawner made once in an
// empty network namespace (cells/sys_template.h); a cell with a veth mounts its own, which
// lists that veth. Neither shows the host's network devices.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <string>

#include "tests/support/daemon_support.h"
#include "tests/support/test_support.h"

using namespace cellos::test;

namespace {

const char* kShowSys =
    "stat -c %d /sys; ls /sys/class/net | tr '\\n' ' '; echo; cat /sys/class/net/lo/flags; "
    "ls /sys/fs/cgroup >/dev/null && echo cgroup-ok";

std::string out_of(const Fleet& fleet, const std::string& id) {
  return read_text(fleet.state_dir() + "/logs/" + id + "/stdout");
}

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

}  // namespace

TEST_CASE("cells without a veth share one template sysfs listing lo only, and a networked cell mounts its own",
          "[iso][sys]") {
  // A /24 of its own per test process, apart from the other network tests' subnets.
  Fleet fleet("[network]\nuplink = \"nat\"\nsubnet = \"10.209." + std::to_string(::getpid() % 250) +
              ".0/24\"\n");
  DaemonProcess daemon(fleet);
  const std::string a = unique_id("sysa"), b = unique_id("sysb"), n = unique_id("sysnet");
  // The spawner makes the template once its first cell is on its way (a `run` never does).
  spool(fleet, make_spec(unique_id("sysfirst"), {"/bin/true"}));
  REQUIRE(eventually([&] { return events_of(fleet, "lifecycle.v1.destroyed").size() >= 1; }));
  spool(fleet, make_spec(a, {"/bin/sh", "-c", kShowSys}));
  spool(fleet, make_spec(b, {"/bin/sh", "-c", kShowSys}));
  auto net = make_spec(n, {"/bin/sh", "-c", kShowSys});
  // Any rule gives the cell its veth; the cell sends nothing.
  net["spec"]["authority"] = {{"egressRules", {{{"host", "127.0.0.1"}, {"port", 443}, {"protocol", "tcp"}}}}};
  spool(fleet, net);
  REQUIRE(eventually([&] { return events_of(fleet, "lifecycle.v1.destroyed").size() >= 4; }));
  for (const auto& c : events_of(fleet, "command.v1.completed")) CHECK(c["data"]["exitCode"] == 0);
  const std::string oa = out_of(fleet, a), ob = out_of(fleet, b), on = out_of(fleet, n);
  INFO("a: " << oa << "b: " << ob << "net: " << on << daemon.err());
  struct stat host{};
  REQUIRE(::stat("/sys", &host) == 0);
  const std::string host_dev = std::to_string(host.st_dev);
  // One superblock for both plain cells (the template), another for the networked cell, and
  // neither is the host's.
  CHECK(first_line(oa) == first_line(ob));
  CHECK(first_line(oa) != first_line(on));
  CHECK(first_line(oa) != host_dev);
  CHECK(first_line(on) != host_dev);
  // The template's lo is up (IFF_UP|IFF_LOOPBACK|IFF_RUNNING... at least UP and LOOPBACK), like
  // a cell's own; the cgroup mounts sit on it as on a sysfs of the cell's own.
  CHECK(oa.find("\nlo \n0x9\ncgroup-ok\n") != std::string::npos);
  CHECK(on.find("cgroup-ok\n") != std::string::npos);
  // The networked cell sees lo and its veth end.
  const std::string names = on.substr(on.find('\n') + 1, on.find('\n', on.find('\n') + 1) - on.find('\n') - 1);
  CHECK(names.find("lo ") != std::string::npos);
  CHECK(names.size() > std::string("lo ").size());
  daemon.signal(SIGTERM);
  CHECK(daemon.wait() == 0);
}
