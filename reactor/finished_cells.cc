#include "reactor/finished_cells.h"

#include <time.h>

#include "sinks/cloudevent_json.h"

namespace cellos::reactor {

using nlohmann::ordered_json;

void FinishedCells::add(const cells::Cell& c, uint64_t emitted, uint64_t written_seq) {
  constexpr int kRefused = 125;  // `run`'s status for a spec that never ran
  const cells::CellOutcome& o = c.outcome();
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  ordered_json j = {
      {"id", c.id()},
      {"runId", c.run_id()},
      {"finishedAt", sinks::rfc3339_utc(static_cast<int64_t>(now.tv_sec) * 1000000 + now.tv_nsec / 1000)},
      {"reason", o.refused ? "refused" : sinks::reason_name(o.reason)},
      {"exitCode", o.exit_code ? ordered_json(*o.exit_code) : ordered_json()},
      {"signal", o.signal ? ordered_json(*o.signal) : ordered_json()},
      {"exitStatus", o.refused ? kRefused : o.exit_status()},
      {"durationMs", o.duration_ms}};
  if (!o.error.empty()) j["error"] = o.error;
  if (status_ && status_->watched(c.id())) {
    ordered_json line = j;
    line.erase("finishedAt");
    line["event"] = "finished";
    line["forced"] = o.forced;  // `run --via-daemon` reports 128+N for a cell it had killed
    tells_.push_back({emitted, c.id(), c.run_id(),
                      line.dump(-1, ' ', false, ordered_json::error_handler_t::replace)});
    written(written_seq);
  }
  recent_.push_back(std::move(j));
  if (recent_.size() > kRecent) recent_.pop_front();
}

void FinishedCells::written(uint64_t written_seq) {
  // In order of their seqs, except cells held back (kHeld) which others may pass.
  for (auto it = tells_.begin(); it != tells_.end();) {
    if (it->seq > written_seq) {
      if (it->seq == kHeld) { ++it; continue; }
      break;
    }
    if (status_) status_->tell(it->id, StatusServer::Step::kFinished, it->run_id, std::move(it->line));
    it = tells_.erase(it);
  }
}

void FinishedCells::emitted(const std::string& id, uint64_t emitted_seq, uint64_t written_seq) {
  for (Tell& t : tells_)
    if (t.seq == kHeld && t.id == id) t.seq = emitted_seq;
  std::stable_sort(tells_.begin(), tells_.end(),
                   [](const Tell& a, const Tell& b) { return a.seq < b.seq; });
  written(written_seq);
}

ordered_json FinishedCells::recent() const {
  ordered_json list = ordered_json::array();
  for (auto it = recent_.rbegin(); it != recent_.rend(); ++it) list.push_back(*it);
  return list;
}

}  // namespace cellos::reactor
