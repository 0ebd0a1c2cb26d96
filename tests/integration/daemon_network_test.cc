// The fleet daemon with [network] uplink = "nat": it owns the uplink for its life, cells it
// runs reach exactly their declared destinations, and it leaves no bridge behind.
#include <net/if.h>
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "netns/uplink.h"
#include "tests/support/daemon_support.h"
#include "tests/support/test_hosts.h"
#include "tests/support/test_support.h"

using namespace cellos::test;
using nlohmann::json;

TEST_CASE("the daemon's cells reach their declared test host through its uplink, and nothing "
          "else",
          "[daemon][net]") {
  std::string why;
  if (!can_build_test_hosts(&why)) CELLOS_SKIP(why);
  TestHost host(30);
  const int open_port = host.tcp(), closed_port = host.tcp();
  host.start();
  // Its own /24, apart from the egress tests' subnets (10.213.x.0/24).
  const std::string subnet = "10.214." + std::to_string(::getpid() % 250) + ".0/24";
  Fleet fleet("[network]\nuplink = \"nat\"\nsubnet = \"" + subnet + "\"\n");
  const std::string bridge = cellos::netns::HostUplink::bridge_name(fleet.host_id());
  {
    DaemonProcess daemon(fleet);
    CHECK(if_nametoindex(bridge.c_str()) != 0);  // made at start
    const std::string id = unique_id("dnet");
    json spec = make_spec(id, {"/bin/sh", "-c",
                               fleet.probe() + " tcp-connect " + host.ip() + " " +
                                   std::to_string(open_port) + "; " + fleet.probe() +
                                   " tcp-connect " + host.ip() + " " +
                                   std::to_string(closed_port)});
    spec["spec"]["authority"]["egressRules"] = {
        {{"host", host.ip()}, {"port", open_port}, {"protocol", "tcp"}}};
    spool(fleet, spec);
    REQUIRE(eventually([&] { return !events_of(fleet, "lifecycle.v1.destroyed").empty(); }));
    const std::string out = read_text(fleet.state_dir() + "/logs/" + id + "/stdout");
    INFO(out);
    CHECK(out.find("ok hello") != std::string::npos);
    CHECK(out.find("timeout") != std::string::npos);
    auto enforcement = events_of(fleet, "network_enforcement");
    REQUIRE(enforcement.size() == 1);
    CHECK(enforcement[0]["data"]["nftRulesApplied"] == true);
    daemon.signal(SIGTERM);
    CHECK(daemon.wait() == 0);
  }
  CHECK(if_nametoindex(bridge.c_str()) == 0);  // removed at exit
}
