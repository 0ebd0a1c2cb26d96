#include "cells/warm_pool.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "cells/rootless.h"

namespace cellos::cells {

WarmPool::WarmPool(WarmPoolOptions o) : o_(std::move(o)), timer_(o_.io) {}

WarmPool::~WarmPool() { shutdown(); }

std::string WarmPool::refusal(const Spec& spec, const CgroupLimits& limits,
                              const Backend& backend) const {
  if (stopped_ || !o_.config.enabled || o_.config.max_size == 0) return "no pool";
  if (backend.name() != "native") return "backend " + std::string(backend.name());
  if (!spec.export_artifacts.empty()) return "spec.export";
  if (limits.cpu_max && !o_.tree->roots().cpu_v2) return "cpuMax on a v1 cpu controller";
  // A prepared cell's root view is built before its spec, without the host's root: what a
  // spec has opened from there (its inputs, the dnsAuthority's resolv.conf, the runtime
  // secret broker's directory) needs a cell set up from the host.
  if (!spec.inputs.empty()) return "spec.inputs";
  if (spec.dns_authority) return "dnsAuthority";
  if (spec.runtime_delivery()) return "runtime secret delivery";
  if (running_rootless()) return "rootless";
  return {};
}

std::unique_ptr<PreparedCell> WarmPool::take(const Spec& spec, const CgroupLimits& limits,
                                             const Backend& backend) {
  if (!refusal(spec, limits, backend).empty()) {
    ++stats_.cold;
    return nullptr;
  }
  const auto now = std::chrono::steady_clock::now();
  demand_.push_back(now);
  std::unique_ptr<PreparedCell> got;
  // Oldest first: it has had the longest to get ready. Dead ones are dropped on the way.
  for (auto it = cells_.begin(); it != cells_.end();) {
    auto state = (*it)->poll();
    if (state == PreparedCell::State::kGone) {
      ++stats_.discarded;
      it = cells_.erase(it);  // reaps it and removes its leaf
      continue;
    }
    if (state == PreparedCell::State::kReady) {
      got = std::move(*it);
      cells_.erase(it);
      break;
    }
    ++it;
  }
  if (got) ++stats_.hits;
  else ++stats_.misses;
  if (!timer_.armed()) arm(kIdle);
  return got;
}

void WarmPool::start() {
  if (started_ || stopped_ || !o_.config.enabled || o_.config.max_size == 0) return;
  started_ = true;
  arm(std::chrono::nanoseconds(0));
}

size_t WarmPool::target() const {
  const auto since = std::chrono::steady_clock::now() - std::chrono::seconds(1);
  const size_t recent = static_cast<size_t>(
      std::count_if(demand_.begin(), demand_.end(), [&](auto t) { return t >= since; }));
  return std::min<size_t>(o_.config.max_size, std::max<size_t>(o_.config.size, recent));
}

void WarmPool::arm(std::chrono::nanoseconds after) {
  if (stopped_ || timer_.armed()) return;
  timer_.start(after, [this](int res) {
    if (res == -ECANCELED || stopped_) return;
    tick();
  });
}

void WarmPool::prune() {
  const auto since = std::chrono::steady_clock::now() - std::chrono::seconds(1);
  while (!demand_.empty() && demand_.front() < since) demand_.pop_front();
}

void WarmPool::tick() {
  prune();
  // Idle time only: an admission within kIdle pushes the refill back.
  if (!demand_.empty()) {
    const auto quiet = std::chrono::steady_clock::now() - demand_.back();
    if (quiet < kIdle) return arm(kIdle - quiet);
  }
  if (cells_.size() >= target()) return;  // full: no timer until the next take
  auto p = PreparedCell::start(*o_.tree, kPreparedLeafPrefix + std::to_string(::getpid()) + "-" +
                                             std::to_string(++seq_),
                               o_.want_pidfd, o_.host_paths);
  if (!p) {
    // Not fatal: admissions take the cold path. Said once per failure burst, retried later.
    std::fprintf(stderr, "cellos-reactor: warm pool: %s\n", p.error().message().c_str());
    ++stats_.discarded;
    return arm(std::chrono::milliseconds(500));
  }
  ++stats_.prepared;
  cells_.push_back(std::move(*p));
  if (cells_.size() < target()) arm(std::chrono::nanoseconds(0));
}

void WarmPool::shutdown() {
  stopped_ = true;
  timer_.cancel();
  cells_.clear();  // each is killed, reaped and its leaf removed
}

WarmPoolStats WarmPool::stats() const {
  WarmPoolStats s = stats_;
  for (const auto& c : cells_) {
    auto state = c->poll();
    if (state == PreparedCell::State::kReady) ++s.ready;
    else if (state == PreparedCell::State::kStarting) ++s.starting;
  }
  return s;
}

}  // namespace cellos::cells
