#include "reactor/nats_intake.h"

#include <unistd.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "reactor/metrics.h"
#include "reactor/nats_journal.h"

namespace cellos::reactor {

base::Result<void> NatsIntake::start() {
  NatsBridgeOptions no;
  no.config = o_.config;
  no.ring = o_.ring;
  no.events = o_.events;
  no.on_spec = [this](nats::Frame f) { on_spec(std::move(f)); };
  no.on_claim_lost = [this](uint64_t seq) {
    release(seq);  // the cell ran: its events are written, its completion is not this host's
    o_.sink->fence(*this, seq);
  };
  // Written the moment the record is made: until they are on disk, the run's completed event
  // is only in the settling journal (a host that dies then and never comes back loses it).
  no.on_recorded = [this](uint64_t seq) { release(seq); };
  auto b = NatsBridge::create(std::move(no));
  if (!b) return std::move(b).error().context("nats");
  bridge_ = std::move(*b);
  return base::ok();
}

void NatsIntake::offer_room(uint64_t free) {
  if (bridge_) bridge_->offer_room(free);
}

void NatsIntake::on_spec(nats::Frame f) {
  IntakeEntry e{this, "nats:" + std::to_string(f.seq), std::move(f.text), std::move(f.token), f.seq};
  const std::string where = this->where(e);
  // Completed or rejected here, and the settlement is still on its way to the server (the
  // companion hung or restarting, a late heartbeat): settled with it, never run or rejected twice.
  if (bridge_->settling(e.seq, e.token)) {
    std::fprintf(stderr, "cellos-reactor: nats: %s redelivered (delivery %llu) before this "
                 "host's ack or term for it reached the server: settled the same way, not run "
                 "again\n", where.c_str(), static_cast<unsigned long long>(f.count));
    return;
  }
  if (o_.sink->stopping()) return bridge_->give_back(e.token);
  if (!f.key.empty()) {  // the companion refused to carry it: "too-large:<bytes>"
    const std::string reason = where + ": " + f.key.substr(f.key.find(':') + 1) +
                               " bytes: over the 1 MiB a spec may have";
    o_.sink->rejected(e, std::nullopt, reason);
    return refuse(e, std::nullopt, reason, false);
  }
  // The same message again (redelivered while it waits or runs here: a late heartbeat, or a
  // companion restart): keep the one cell, and settle it through the newest delivery.
  if (IntakeEntry* held = o_.sink->held(*this, e.seq)) {
    if (held->token != e.token) bridge_->release(held->token);
    bridge_->hold(e.token);
    held->token = e.token;
    std::fprintf(stderr, "cellos-reactor: nats: %s redelivered (delivery %llu) while it is held "
                 "here: kept, not run twice\n", where.c_str(),
                 static_cast<unsigned long long>(f.count));
    return;
  }
  // Heartbeats from now until it is settled or given back.
  bridge_->hold(e.token);
  o_.sink->offer(std::move(e));
}

base::Result<void> NatsIntake::activate(IntakeEntry& e, const std::string& cell_id) {
  // A NATS spec has no spool file: its text becomes active/<id>.json, so a daemon that dies
  // knows which cells it lost (the server redelivers their specs elsewhere after AckWait).
  if (o_.gate) {
    o_.gate->gate(cell_id);
    gated_[e.seq] = cell_id;
  }
  return base::replace_file(active_path(cell_id), e.text, 0640);
}

void NatsIntake::release(uint64_t seq) {
  auto it = gated_.find(seq);
  if (it == gated_.end()) return;
  if (o_.gate) o_.gate->release(it->second);
  gated_.erase(it);
}

bool NatsIntake::deactivate(IntakeEntry&, const std::string& cell_id) {
  return ::unlink(active_path(cell_id).c_str()) == 0;
}

void NatsIntake::refuse(const IntakeEntry& e, const std::optional<std::string>& cell_id,
                        const std::string& reason, bool active) {
  if (active && cell_id) ::unlink(active_path(*cell_id).c_str());
  release(e.seq);
  bridge_->term(e.token, e.seq, reason);
}

void NatsIntake::finished(const IntakeEntry& e, const cells::Cell& c, uint64_t on_disk) {
  if (e.fenced) {  // the bridge already forgot it: the owner records and acks it
    release(e.seq);
    ::unlink(active_path(c.id()).c_str());
    return;
  }
  const cells::CellOutcome& o = c.outcome();
  // Recorded, then acked. With the gate, at once: the cell's completed and destroyed events
  // reach the log only once the record is made (release), and are journaled with it here,
  // before active/<id>.json goes (a daemon killed before this reports the cell lost and runs
  // the spec again; after it, its next start records the completion from the journal).
  // Without it, once the destroyed event (emitted just now) is on disk.
  nlohmann::json rec = {{"specId", c.id()},
                        {"streamSeq", e.seq},
                        {"hostId", o_.config->host.id},
                        {"reason", sinks::reason_name(o.reason)},
                        {"failure", failure_reason(o).value_or("")}};
  if (o.exit_code) rec["exitCode"] = *o.exit_code;
  if (o.signal) rec["signal"] = *o.signal;
  if (!o.error.empty()) rec["error"] = o.error;
  rec["exitStatus"] = o.exit_status();
  rec["runId"] = c.run_id();
  bool gated = o_.gate && gated_.count(e.seq) && o_.gate->gated(c.id());
  nlohmann::json events = gated ? journal_events(o_.gate->held(c.id())) : nlohmann::json();
  if (gated && events.is_null()) {  // nothing held (no completed event): nothing to wait for
    release(e.seq);
    gated = false;
  }
  bridge_->completed(e.token, e.seq, c.id(), rec.dump(), gated ? 0 : on_disk, events);
  ::unlink(active_path(c.id()).c_str());
}

void NatsIntake::stop() {
  if (bridge_) bridge_->stop_intake();
}

bool NatsIntake::give_back(const IntakeEntry& e) {
  // Specs from the work queue that have not started go back to it at once, for any host.
  bridge_->give_back(e.token);
  return true;
}

bool NatsIntake::settled() const { return !bridge_ || bridge_->settled(); }

void NatsIntake::abandon_settling() {
  std::fprintf(stderr, "cellos-reactor: nats: stopping with completions not yet acked\n");
  // Their cells' events go to the log now (the cells ran); the journal keeps the completions,
  // which the next start records.
  while (!gated_.empty()) release(gated_.begin()->first);
}

bool NatsIntake::caught_up() const { return !bridge_ || bridge_->caught_up(); }

void NatsIntake::close() {
  while (!gated_.empty()) release(gated_.begin()->first);
  if (bridge_) bridge_->stop();
}

}  // namespace cellos::reactor
