// When a cell's exit wait is armed (cells/cell.cc, Cell::watch_exit): at its status pipe's EOF,
// which comes with the init's exit, not at launch. Every waitid in flight sits on the reactor's
// one child-exit wait queue, which each exit of any of its children walks with the task-list
// lock held: a wait per running cell made that walk grow with the live cells.
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>

#include "base/completion.h"
#include "base/counting_port.h"
#include "cells/cell.h"
#include "cells/config.h"
#include "reactor/host.h"
#include "tests/support/daemon_support.h"
#include "tests/support/run_host.h"
#include "tests/support/test_support.h"

using namespace cellos;
using namespace cellos::test;

TEST_CASE("a running cell has no exit wait in flight: it is armed at its status pipe's EOF, and "
          "the cell is reaped with its command's status",
          "[exit][daemon]") {
  Fleet fleet;
  cells::Config config = cells::load_config(fleet.config_path());
  auto host = reactor::Host::create(run_host_options(fleet, config));
  REQUIRE(host.ok());
  base::CountingPort port((*host)->ring());
  cells::CellHost ch = (*host)->cell_host();
  ch.io = &port;

  const std::string marker = "3479" + std::to_string(::getpid() % 1000);
  cells::CellOptions co;
  co.spec.id = unique_id("exitwatch");
  co.spec.run.argv = {"/bin/sh", "-c", "s=" + marker + "; sleep $s; exit 7"};
  co.spec.ttl_seconds = 120;
  co.env = {"PATH=/usr/bin:/bin"};
  co.run_id = co.spec.id;
  bool finished = false;
  co.on_finished = [&] { finished = true; };
  auto cell = std::make_unique<cells::Cell>(ch, std::move(co));
  cell->start();

  // Looks for the command every 10 ms; once it runs, notes the exit waits armed so far and
  // ends it (the shell then exits 7).
  long waits_while_running = -1;
  base::Timer look(&(*host)->ring());
  std::function<void(int)> check = [&](int) {
    const auto pids = processes_with("sleep " + marker);
    if (pids.empty()) return look.start(std::chrono::milliseconds(10), check);
    waits_while_running = static_cast<long>(port.exit_waits);
    for (int pid : pids) ::kill(pid, SIGTERM);
  };
  look.start(std::chrono::milliseconds(10), check);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!finished && std::chrono::steady_clock::now() < deadline) REQUIRE((*host)->ring().run_once().ok());
  REQUIRE(finished);
  const pid_t init = cell->pid();
  CHECK(waits_while_running == 0);
  CHECK(port.exit_waits == 1);
  CHECK(cell->outcome().exit_status() == 7);
  // Reaped: no zombie of the init is left to the reactor.
  CHECK_FALSE(path_exists("/proc/" + std::to_string(init)));
  cell.reset();
  if (look.armed()) {
    look.cancel();
    REQUIRE((*host)->ring().run_once().ok());  // its -ECANCELED, before the timer goes
  }
  REQUIRE((*host)->drain_events().ok());
  (*host)->cgroups().remove_empty_parents();
}
