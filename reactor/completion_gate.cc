#include "reactor/completion_gate.h"

namespace cellos::reactor {

void CompletionGate::emit(const sinks::Event& e) {
  // Every event of the daemon passes here; only NATS cells ending right now are gated, so the
  // common case (none) costs no hash of the subject.
  if (!gated_.empty() && !e.subject.empty()) {
    auto it = gated_.find(e.subject);
    if (it != gated_.end()) {
      if (!it->second.holding && std::holds_alternative<sinks::CompletedData>(e.data))
        it->second.holding = true;
      if (it->second.holding) {
        it->second.events.push_back(e);
        return;
      }
    }
  }
  log_.emit(e);
}

const std::vector<sinks::Event>& CompletionGate::held(const std::string& cell_id) const {
  static const std::vector<sinks::Event> kNone;
  auto it = gated_.find(cell_id);
  return it == gated_.end() ? kNone : it->second.events;
}

bool CompletionGate::release(const std::string& cell_id) {
  auto it = gated_.find(cell_id);
  if (it == gated_.end()) return false;
  std::vector<sinks::Event> events = std::move(it->second.events);
  it->second.events.clear();
  it->second.holding = false;
  if (--it->second.runs <= 0) gated_.erase(it);
  for (const auto& e : events) log_.emit(e);
  // Their batch is closed and written now, not after the batch delay: the record is in the
  // bucket already, and until these events are on disk the run's completed event exists only
  // in the settling journal (a host that dies now and never starts again loses it).
  if (!events.empty()) log_.flush();
  if (on_release_) on_release_(cell_id, log_.emitted_seq());
  return !events.empty();
}

void CompletionGate::release_all() {
  while (!gated_.empty()) release(gated_.begin()->first);
}

}  // namespace cellos::reactor
