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
    tells_.push_back({emitted, c.id(), c.run_id(),
                      line.dump(-1, ' ', false, ordered_json::error_handler_t::replace)});
    written(written_seq);
  }
  recent_.push_back(std::move(j));
  if (recent_.size() > kRecent) recent_.pop_front();
}

void FinishedCells::written(uint64_t written_seq) {
  while (!tells_.empty() && tells_.front().seq <= written_seq) {
    Tell& t = tells_.front();
    if (status_) status_->tell(t.id, StatusServer::Step::kFinished, t.run_id, std::move(t.line));
    tells_.pop_front();
  }
}

ordered_json FinishedCells::recent() const {
  ordered_json list = ordered_json::array();
  for (auto it = recent_.rbegin(); it != recent_.rend(); ++it) list.push_back(*it);
  return list;
}

}  // namespace cellos::reactor
