// CompletionGate: the fleet daemon's event sink in front of its log, for cells whose spec came
// from the NATS work queue. From a gated cell's command.v1.completed event on, the cell's events
// are held in memory until its completion is recorded in the completion bucket (or the daemon
// gives up on recording it), then written to the log in their order.
//
// Why: another host runs a spec again once its claim goes stale, so a completed event on disk
// whose completion record is not in the bucket is a run the fleet does not know about. With the
// gate, a completed event reaches the disk only after the bucket says "completed"; a daemon
// killed in between left the completion in its settling journal (nats_bridge.h), which its next
// start reconciles against the log (docs/nats-faults.md, "The remaining windows").
#pragma once

#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "sinks/events.h"

namespace cellos::reactor {

class CompletionGate final : public sinks::EventSink {
 public:
  explicit CompletionGate(sinks::EventSink& log) : log_(log) {}

  void emit(const sinks::Event& e) override;
  void flush() override { log_.flush(); }
  void seal_now() override { log_.seal_now(); }
  // Held events are not the log's: the daemon releases them (release_all) before it drains.
  bool drained() const override { return log_.drained(); }
  uint64_t events_written() const override { return log_.events_written(); }
  uint64_t emitted_seq() const override { return log_.emitted_seq(); }
  uint64_t written_seq() const override { return log_.written_seq(); }
  void add_on_written(std::function<void(uint64_t)> fn) override {
    log_.add_on_written(std::move(fn));
  }

  // Hold `cell_id`'s events from its completed event on. Counted: the same id may start again
  // (another stream message) while the first run's completion is still being recorded.
  void gate(const std::string& cell_id) { ++gated_[cell_id].runs; }
  bool gated(const std::string& cell_id) const { return gated_.count(cell_id) != 0; }
  // The events held for `cell_id` (empty when none or not gated).
  const std::vector<sinks::Event>& held(const std::string& cell_id) const;
  // Writes what was held for `cell_id` to the log and stops gating it (one run of it).
  // Returns true when events were held.
  bool release(const std::string& cell_id);
  void release_all();
  // Called after a release wrote a cell's held events, with the log's emitted_seq() then.
  void on_release(std::function<void(const std::string& cell_id, uint64_t emitted)> fn) {
    on_release_ = std::move(fn);
  }

 private:
  struct Held {
    int runs = 0;
    bool holding = false;  // its completed event came: everything of it waits from now on
    std::vector<sinks::Event> events;
  };
  sinks::EventSink& log_;
  std::unordered_map<std::string, Held> gated_;
  std::function<void(const std::string&, uint64_t)> on_release_;
};

}  // namespace cellos::reactor
