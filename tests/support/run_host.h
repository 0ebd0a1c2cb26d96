// A reactor Host in the test's own process, placed as `run` places one, on a Fleet's config:
// for tests that drive Cells directly (their outcomes, the ring's operations, the leaf stock).
#pragma once

#include "base/fd.h"
#include "cells/config.h"
#include "reactor/cgroup_parent.h"
#include "reactor/host.h"
#include <catch2/catch.hpp>

#include "tests/support/test_support.h"

namespace cellos::test {

// The options of such a Host: `config` (which must outlive the Host), the fleet's event log,
// `run`'s cgroup placement; the state dir is made here.
inline reactor::HostOptions run_host_options(const Fleet& fleet, const cells::Config& config) {
  REQUIRE(base::make_dirs(config.host.state_dir).ok());
  reactor::HostOptions ho;
  ho.config = &config;
  ho.events_path = fleet.events_path();
  ho.cgroups = reactor::cgroup_placement_for_run(config);
  return ho;
}

}  // namespace cellos::test
