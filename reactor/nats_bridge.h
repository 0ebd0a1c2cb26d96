// NatsBridge: the fleet daemon's NATS state, on the reactor thread. It drives the companion
// (reactor/companion.h) and keeps what must survive the companion restarting:
//
// - credit: fetch(n) asks for at most n more specs; the daemon offers its free slots, so no
//   more specs are outstanding than it has room for. Credit dies with a companion.
// - held tokens: every spec delivered and not yet settled (waiting or running) gets an
//   in-progress heartbeat every third of AckWait, so AckWait can stay short, and the heartbeat
//   renews the spec's claim in the completion bucket (reactor/nats/claims.h). Tokens are the
//   messages' ack subjects, valid for any connection: a restarted companion keeps
//   heartbeating and settles them.
// - fencing: a renewal or completion that finds the claim taken over by another host reports
//   kClaimLost: the bridge forgets the spec (no heartbeat, no settlement) and tells the daemon
//   (on_claim_lost), which kills its cell.
// - settling: a finished cell's completion (KV record, then ack) is sent as soon as the cell
//   finished, while the daemon's CompletionGate (completion_gate.h) holds its completed and
//   destroyed events back from the log until the companion reports the record made
//   (on_recorded) or the claim lost; a rejected spec's term at once. Both are resent to a new
//   companion until it reports them settled.
// - the settling journal (<state_dir>/nats-settling.jsonl): a completion is appended, with the
//   cell's held events (nats_journal.h), before it goes to the companion and before those
//   events can reach the log. A daemon started again records every completion the journal
//   holds, and writes the events of those whose completed event is not in its log: a run that
//   finished is neither run again nor left without its completed event. Emptied whenever
//   nothing is left to settle.
// - the local log's progress (kLogWritten), which wakes the companion's publisher.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "base/completion.h"
#include "cells/config.h"
#include "reactor/companion.h"
#include "sinks/events.h"

namespace cellos::reactor {

struct NatsBridgeOptions {
  const cells::Config* config = nullptr;
  Ring* ring = nullptr;
  sinks::EventSink* events = nullptr;
  std::string companion_binary;  // default: beside /proc/self/exe
  // A spec delivered from the work queue (kSpec), for the daemon to admit or reject.
  std::function<void(nats::Frame)> on_spec;
  // Another host took over the claim of stream message `stream_seq`: kill its cell if it runs,
  // drop it if it waits. Its completion is never recorded or acked by this host.
  std::function<void(uint64_t stream_seq)> on_claim_lost;
  // The completion record of stream message `stream_seq` is in the bucket (its ack may follow).
  std::function<void(uint64_t stream_seq)> on_recorded;
};

class NatsBridge {
 public:
  static base::Result<std::unique_ptr<NatsBridge>> create(NatsBridgeOptions o);
  bool intake() const { return cfg_.intake.nats.enabled; }

  // The daemon has `free` slots not taken by running or waiting cells: ask for that many.
  void offer_room(uint64_t free);
  // Heartbeat `token` until it is settled or given back.
  void hold(const std::string& token) {
    auto c = claims_.find(token);
    held_[token] = c == claims_.end() ? Claim{} : c->second;
    arm_heartbeat();
  }
  // Stop heartbeating `token` (an older delivery of a spec that now has a newer one).
  void release(const std::string& token) {
    held_.erase(token);
    claims_.erase(token);
  }
  // A spec given back unrun (the daemon stops): the server redelivers it at once.
  void give_back(const std::string& token);
  // An invalid spec: terminated, never redelivered (the daemon wrote its rejected event).
  void term(const std::string& token, uint64_t stream_seq, const std::string& reason);
  // A finished cell: its KV record and ack, once the local log holds seq `on_disk` (0: at
  // once, its events being held by the CompletionGate). `events`: the cell's held completed
  // and destroyed events (nats_journal.h), journaled with the completion.
  void completed(const std::string& token, uint64_t stream_seq, const std::string& spec_id,
                 std::string record, uint64_t on_disk, const nlohmann::json& events = {});
  // A redelivery (`token`) of stream message `stream_seq` that this host already completed or
  // rejected, not yet settled: settled through this delivery as well, and true. False when no
  // such settlement is pending.
  bool settling(uint64_t stream_seq, const std::string& token);
  // Stops asking for specs (SIGTERM); settling and heartbeats go on.
  void stop_intake() { stopping_ = true; }
  // Nothing left to settle (the daemon may exit).
  bool settled() const { return unsettled_.empty() && waiting_disk_.empty(); }
  // Every batch on disk is in the stream (or events are not published).
  bool caught_up() const { return !cfg_.events.nats.enabled || published_ >= written_; }
  // At exit: closes the companion.
  void stop();
  bool idle() const { return (!companion_ || companion_->idle()) && !hb_.armed(); }

 private:
  explicit NatsBridge(NatsBridgeOptions o) : o_(std::move(o)), cfg_(*o_.config) {}
  void on_frame(nats::Frame f);
  void on_up();
  void on_down();
  void on_written(uint64_t seq);
  void arm_heartbeat();
  void heartbeat();
  void settle(nats::Frame f, const nlohmann::json& events = {});
  void recorded(const nats::Frame& f);
  void claim_lost(const nats::Frame& f);
  // The journal: what a predecessor left unsettled is settled again (no token: nothing to ack
  // through; the spec's next delivery finds it completed and is acked then).
  void replay_journal();
  void journal(const nats::Frame& f, const nlohmann::json& events);
  void write_journaled_events(const std::map<uint64_t, nlohmann::json>& events);
  void trim_journal();

  NatsBridgeOptions o_;
  const cells::Config& cfg_;
  std::unique_ptr<Companion> companion_;
  uint64_t credit_ = 0, room_ = 0;
  bool stopping_ = false;
  // A delivery's claim: its stream sequence and its record's key (kSpec), by token.
  struct Claim {
    uint64_t seq = 0;
    std::string key;
  };
  std::map<std::string, Claim> claims_, held_;
  // Completions waiting for their destroyed event to reach the disk, by that event's seq.
  std::multimap<uint64_t, nats::Frame> waiting_disk_;
  // Sent to the companion, not yet reported settled: resent to a new companion.
  std::map<std::string, nats::Frame> unsettled_;
  base::Fd journal_;
  base::Timer hb_;
  uint64_t written_ = 0, published_ = 0;
};

}  // namespace cellos::reactor
