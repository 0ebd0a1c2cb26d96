// The NATS JetStream work queue as an intake (intake.h), over NatsBridge (nats_bridge.h): specs
// fetched as far as the daemon's free slots go, heartbeated while they wait or run, acked with
// their completion record once the destroyed event is on disk, termed when refused, given
// back (nak) at SIGTERM when they have not started. Also carries [events.nats]: the daemon
// waits for the companion to publish the log's last batches before it exits.
#pragma once

#include <chrono>
#include <map>
#include <set>
#include <vector>
#include <memory>

#include "cells/config.h"
#include "reactor/completion_gate.h"
#include "reactor/intake.h"
#include "reactor/nats_bridge.h"
#include "reactor/spool.h"

namespace cellos::reactor {

struct NatsIntakeOptions {
  const cells::Config* config = nullptr;
  Ring* ring = nullptr;
  sinks::EventSink* events = nullptr;
  StateDirs dirs{""};
  IntakeSink* sink = nullptr;
  // The daemon's cells emit through it: their completed and destroyed events wait for the
  // completion record (completion_gate.h). Null: events go to the log at once and the
  // completion is sent once they are on disk.
  CompletionGate* gate = nullptr;
};

class NatsIntake final : public Intake {
 public:
  explicit NatsIntake(NatsIntakeOptions o) : o_(std::move(o)) {}
  std::string where(const IntakeEntry& e) const override {
    return "nats spec (stream seq " + std::to_string(e.seq) + ")";
  }
  base::Result<void> start() override;
  void offer_room(uint64_t free) override;
  base::Result<void> activate(IntakeEntry& e, const std::string& cell_id) override;
  bool deactivate(IntakeEntry& e, const std::string& cell_id) override;
  void refuse(const IntakeEntry& e, const std::optional<std::string>& cell_id,
              const std::string& reason, bool active) override;
  void finished(const IntakeEntry& e, const cells::Cell& cell, uint64_t on_disk) override;
  void stop() override;
  bool give_back(const IntakeEntry& e) override;
  bool settled() const override;
  void abandon_settling() override;
  bool caught_up() const override;
  void close() override;

 private:
  void on_spec(nats::Frame f);
  // The completion of stream message `seq` is recorded (or will never be by this host):
  // its cell's held events go to the log.
  void release(uint64_t seq);
  std::string active_path(const std::string& id) const {
    return o_.dirs.active + "/" + id + ".json";
  }

  NatsIntakeOptions o_;
  std::unique_ptr<NatsBridge> bridge_;
  std::map<uint64_t, std::string> gated_;  // stream seq -> cell id, for the gate

};

}  // namespace cellos::reactor
