#include "reactor/waiting_queue.h"

namespace cellos::reactor {

void WaitingQueue::remember(const WaitingSpec& w) {
  ids_.insert(w.spec.id);
  names_.insert(w.entry.name);
}

void WaitingQueue::forget(const WaitingSpec& w) {
  ids_.erase(w.spec.id);
  names_.erase(w.entry.name);
}

void WaitingQueue::push_back(WaitingSpec w) {
  remember(w);
  q_.push_back(std::move(w));
}

void WaitingQueue::push_front(WaitingSpec w) {
  remember(w);
  q_.push_front(std::move(w));
}

std::optional<WaitingSpec> WaitingQueue::pop_front() {
  if (q_.empty()) return std::nullopt;
  WaitingSpec w = std::move(q_.front());
  q_.pop_front();
  forget(w);
  return w;
}

}  // namespace cellos::reactor
