// Two cells of one reactor on one uplink bridge cannot reach each other, even when one
// declares the other's address: isolated bridge ports, and the host forwards nothing new into
// the bridge. Either layer alone passes this test (checked by disabling the other); with
// neither, the dialer connects. Runs a Supervisor in this process, as the fleet daemon does.
#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "cells/cgroup.h"
#include "cells/config.h"
#include "netns/uplink.h"
#include "reactor/host.h"
#include "reactor/supervisor.h"
#include "reactor/event_log_config.h"
#include "tests/support/test_hosts.h"
#include "tests/support/test_support.h"

using namespace cellos;
using namespace cellos::test;

TEST_CASE("cells on one bridge never reach each other", "[net][egress]") {
  std::string why;
  if (!can_build_test_hosts(&why)) CELLOS_SKIP(why);
  const int k = ::getpid() % 250;
  Fleet fleet("[network]\nuplink = \"nat\"\nsubnet = \"10.212." + std::to_string(k) + ".0/24\"\n");
  cells::Config config = cells::load_config(fleet.config_path());
  REQUIRE(base::make_dirs(config.host.state_dir).ok());
  reactor::HostOptions ho;
  ho.config = &config;
  ho.events_path = fleet.events_path();
  ho.uplink = true;
  ho.cgroups = reactor::cgroup_placement_for_run(config);
  auto host = reactor::Host::create(std::move(ho));
  REQUIRE(host.ok());
  std::map<std::string, int> status;
  auto sup = std::make_unique<reactor::Supervisor>(
      **host, reactor::SupervisorOptions{[&](const cells::Cell& c) {
        status[c.id()] = c.outcome().exit_status();
      }});

  const std::string b_ip = "10.212." + std::to_string(k) + ".2";  // the first lease
  const std::string port = "7777";
  auto add = [&](const std::string& id, std::vector<std::string> argv, const std::string& out) {
    cells::CellOptions co;
    co.spec.id = id;
    co.spec.run.argv = std::move(argv);
    co.spec.egress_rules = {{b_ip, 7777, std::nullopt, {}}};
    co.env = {"PATH=/usr/bin:/bin"};
    co.run_id = id;
    co.stdout_fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    sup->add(std::move(co));
  };
  const std::string b_out = fleet.dir() + "/b.out", a_out = fleet.dir() + "/a.out";
  add(unique_id("listener"), {fleet.probe(), "listen-once", port, "4"}, b_out);
  add(unique_id("dialer"),
      {"/bin/sh", "-c", "sleep 0.3; " + fleet.probe() + " tcp-connect " + b_ip + " " + port +
                            "; " + fleet.probe() + " udp-send " + b_ip + " " + port + "; true"},
      a_out);
  REQUIRE(sup->run_until_idle().ok());
  sup.reset();
  for (auto& [id, st] : status) CHECK(st == 0);
  INFO(read_text(a_out) << read_text(b_out));
  CHECK(read_text(b_out) == "listening\nnothing\n");
  CHECK_THAT(read_text(a_out), Catch::Contains("tcp " + b_ip + ":" + port + " timeout"));
  CHECK_THAT(read_text(a_out), Catch::Contains("udp " + b_ip + ":" + port + " timeout"));
  (*host)->cgroups().remove_empty_parents();
}
