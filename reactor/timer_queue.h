// TimerQueue: the reactor's timers, kept in the reactor's own memory, so that the ring holds
// one kernel timeout (for the earliest deadline) instead of one per timer.
//
// Why: every cell arms timers (its TTL, the SIGTERM grace, retries) and cancels most of them when
// it ends. A kernel timeout is cancelled with IORING_OP_ASYNC_CANCEL, which walks every list of
// cancellable requests of the ring, among them one pending IORING_OP_WAITID per live cell, and
// the timeout list, one entry per live cell's TTL: each cell's end cost O(live cells) on the
// reactor thread (`io_cancel_remove`, 2.2% of all CPU at 5,000 live cells in bench-daemon's
// admission profile). Here a cancel is a map erase.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <unordered_map>
#include <utility>

#include "base/io.h"

namespace cellos::reactor {

class TimerQueue {
 public:
  using Clock = std::chrono::steady_clock;

  // Queues `c` to be completed at `deadline`. `c` must not be queued already.
  void add(Clock::time_point deadline, base::Completion& c);
  // Takes `c` out of the queue: false when it was not queued.
  bool remove(base::Completion& c);
  // The earliest deadline queued, if any.
  std::optional<Clock::time_point> earliest() const;
  // The completion due first (deadline <= now) and queued before `before_seq`, taken out of
  // the queue; nullptr when there is none. Timers added while due ones are being completed get
  // a later sequence number, so a handler that arms a zero timer again is served on the next
  // turn of the loop, not in a loop of its own.
  base::Completion* pop_due(Clock::time_point now, uint64_t before_seq);
  uint64_t next_seq() const { return seq_; }
  size_t size() const { return index_.size(); }
  void clear();

 private:
  using Key = std::pair<Clock::time_point, uint64_t>;  // deadline, then the order of adding
  std::map<Key, base::Completion*> by_deadline_;
  std::unordered_map<base::Completion*, Key> index_;
  uint64_t seq_ = 0;
};

}  // namespace cellos::reactor
