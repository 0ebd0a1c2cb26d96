#include "reactor/submit_wait.h"

#include <cstdio>
#include <nlohmann/json.hpp>

#include "reactor/cell_follower.h"
#include "reactor/status.h"

namespace cellos::reactor {

int submit_and_wait(const SubmitWaitOptions& o) {
  auto conn = connect_status(o.dirs->state, "wait " + o.cell_id);
  if (!conn)
    return say_refused("--wait: " + conn.error().message() +
                       " (nothing was queued: start the daemon, or submit without --wait)");
  CellFollower follower(std::move(*conn));
  if (!follower.ok()) return say_refused(follower.error());
  bool watching = false, started = false;

  for (;;) {
    nlohmann::json j;
    switch (follower.next(j)) {
      case CellFollower::Next::kLine:
        break;
      case CellFollower::Next::kClosed:
        return say_refused("--wait: the daemon closed the connection before cell " + o.cell_id +
                           " finished (it died?); `cellos-reactor show " + o.cell_id +
                           "` tells what the log holds");
      case CellFollower::Next::kExtra:
      case CellFollower::Next::kError:
        return say_refused("--wait: " + follower.error());
    }
    const std::string event = j.value("event", "");
    if (event.empty()) return say_refused("--wait: the daemon refused: " + j.value("error", ""));
    if (event == "watching" && !watching) {
      watching = true;
      // Only now: the daemon listens, so the cell's start cannot be missed.
      auto path = submit_to_spool(*o.dirs, o.cell_id, o.spec_text);
      if (!path) return say_refused(path.error().message());
      std::fprintf(stderr,
                   "cellos-reactor: submitted %s (%s); waiting for it (Ctrl-C stops waiting, "
                   "the cell keeps running)\n",
                   o.cell_id.c_str(), path->c_str());
    } else if (event == "started" && !started) {
      started = true;
      follower.follow(j);
    } else if (event == "rejected") {
      return say_refused("rejected " + o.cell_id + ": " + j.value("reason", ""));
    } else if (event == "stopped" && !watching) {
      return say_refused("--wait: the daemon serving " + o.dirs->state +
                         " is stopping; nothing was queued");
    } else if (event == "stopped") {
      return say_refused("--wait: the daemon stopped before cell " + o.cell_id +
                         " started; its spec stays in the spool for the daemon's next start");
    } else if (event == "finished") {
      follower.pump();
      const int status = j.value("exitStatus", 125);
      if (j.contains("error") && j["error"].is_string())
        std::fprintf(stderr, "cellos-reactor: cell %s: %s\n", o.cell_id.c_str(),
                     j["error"].get<std::string>().c_str());
      else if (status != 0)
        std::fprintf(stderr, "cellos-reactor: cell %s: %s (exit status %d)\n",
                     o.cell_id.c_str(), j.value("reason", "").c_str(), status);
      return status;
    }
  }
}

}  // namespace cellos::reactor
