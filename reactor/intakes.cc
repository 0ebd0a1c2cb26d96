#include "reactor/intakes.h"

#include "reactor/nats_intake.h"
#include "reactor/spool_intake.h"

namespace cellos::reactor {

std::vector<std::unique_ptr<Intake>> make_intakes(const IntakesOptions& o) {
  std::vector<std::unique_ptr<Intake>> out;
  // NATS first: at start it is created (its companion spawned) before the spool is scanned,
  // as the daemon always did.
  if (o.config->intake.nats.enabled || o.config->events.nats.enabled)
    out.push_back(std::make_unique<NatsIntake>(NatsIntakeOptions{
        o.config, &o.host->ring(), &o.host->events(), o.dirs, o.sink, o.gate}));
  out.push_back(std::make_unique<SpoolIntake>(o.host->ring(), o.dirs, *o.sink));
  return out;
}

}  // namespace cellos::reactor
