#include "reactor/timer_queue.h"

namespace cellos::reactor {

void TimerQueue::add(Clock::time_point deadline, base::Completion& c) {
  const Key key{deadline, seq_++};
  by_deadline_.emplace(key, &c);
  index_[&c] = key;
}

bool TimerQueue::remove(base::Completion& c) {
  auto it = index_.find(&c);
  if (it == index_.end()) return false;
  by_deadline_.erase(it->second);
  index_.erase(it);
  return true;
}

std::optional<TimerQueue::Clock::time_point> TimerQueue::earliest() const {
  if (by_deadline_.empty()) return std::nullopt;
  return by_deadline_.begin()->first.first;
}

base::Completion* TimerQueue::pop_due(Clock::time_point now, uint64_t before_seq) {
  for (auto it = by_deadline_.begin(); it != by_deadline_.end() && it->first.first <= now; ++it) {
    if (it->first.second >= before_seq) continue;  // added during this turn: the next one
    base::Completion* c = it->second;
    index_.erase(c);
    by_deadline_.erase(it);
    return c;
  }
  return nullptr;
}

void TimerQueue::clear() {
  by_deadline_.clear();
  index_.clear();
}

}  // namespace cellos::reactor
