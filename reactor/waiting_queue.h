// The daemon's waiting queue: admitted specs in arrival order until a slot frees, with the ids
// and entry names they hold (an id waits or runs once; an entry is offered again after a
// rescan or a redelivery and must not queue twice).
#pragma once

#include <deque>
#include <optional>
#include <string>
#include <unordered_set>

#include "cells/spec.h"
#include "reactor/intake.h"

namespace cellos::reactor {

struct WaitingSpec {
  IntakeEntry entry;
  cells::Spec spec;
};

class WaitingQueue {
 public:
  bool has_id(const std::string& id) const { return ids_.count(id) != 0; }
  bool has_name(const std::string& name) const { return names_.count(name) != 0; }
  size_t size() const { return q_.size(); }
  bool empty() const { return q_.empty(); }

  // Arrival order. The caller checked the id and name are free.
  void push_back(WaitingSpec w);
  // Requeue: back at the head, first to go when the host recovers.
  void push_front(WaitingSpec w);
  std::optional<WaitingSpec> pop_front();
  // The first waiting spec `pred` holds for, or null.
  template <typename Pred>
  WaitingSpec* find_if(Pred pred) {
    for (WaitingSpec& w : q_)
      if (pred(w)) return &w;
    return nullptr;
  }
  // Removes every waiting spec `pred` holds for (in order), handing each to `removed` first.
  template <typename Pred, typename Fn>
  void remove_if(Pred pred, Fn removed) {
    for (auto it = q_.begin(); it != q_.end();) {
      if (!pred(*it)) {
        ++it;
        continue;
      }
      removed(*it);
      forget(*it);
      it = q_.erase(it);
    }
  }

 private:
  void remember(const WaitingSpec& w);
  void forget(const WaitingSpec& w);
  std::deque<WaitingSpec> q_;
  std::unordered_set<std::string> ids_, names_;
};

}  // namespace cellos::reactor
