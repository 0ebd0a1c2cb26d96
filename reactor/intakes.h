// The intakes a fleet.toml asks for: always the spool; the NATS work queue (which also
// publishes [events.nats]) when either NATS table is enabled.
#pragma once

#include <memory>
#include <vector>

#include "cells/config.h"
#include "reactor/completion_gate.h"
#include "reactor/host.h"
#include "reactor/intake.h"
#include "reactor/spool.h"

namespace cellos::reactor {

struct IntakesOptions {
  const cells::Config* config = nullptr;
  Host* host = nullptr;
  StateDirs dirs{""};
  IntakeSink* sink = nullptr;
  CompletionGate* gate = nullptr;  // the NATS intake's (nats_intake.h)
};

std::vector<std::unique_ptr<Intake>> make_intakes(const IntakesOptions& o);

}  // namespace cellos::reactor
