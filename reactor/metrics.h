// Daemon metrics in the Prometheus text format, published as <state_dir>/metrics.prom and
// replaced atomically (the node_exporter textfile-collector convention).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "cells/cell.h"

namespace cellos::reactor {

struct Metrics {
  uint64_t started = 0;
  uint64_t rejected = 0;
  std::map<std::string, uint64_t> finished;  // by completed reason: exited, signaled, timeout, ...
  uint64_t succeeded = 0;                     // exited 0
  std::map<std::string, uint64_t> failed;     // by reason: exit_nonzero, timeout, lost, ...
  uint64_t oom_kills = 0;                     // processes the OOM killer took, in every cell
  double cpu_seconds = 0;                     // CPU time of finished cells
  uint64_t running = 0;
  uint64_t waiting = 0;
  uint64_t events_written = 0;

  // Spawn latency (admission to launched): cumulative buckets, seconds.
  static constexpr std::array<double, 10> kBuckets{0.001, 0.002, 0.005, 0.01, 0.02,
                                                   0.05,  0.1,   0.25,  0.5,  1.0};
  std::array<uint64_t, kBuckets.size()> spawn_buckets{};
  uint64_t spawn_count = 0;
  double spawn_sum_seconds = 0;
  void observe_spawn(std::chrono::nanoseconds d);

  uint64_t finished_total() const;
  // A finished cell: its reason, success or failure, and what it used.
  void observe_finished(const cells::CellOutcome& o);
  uint64_t failed_total() const;
  std::string render(const std::string& host_id) const;
};

// What the metrics, the status call and a completion record call a finished cell's failure:
// "exit_nonzero" for a command that exited non-zero, otherwise the completed event's reason;
// nullopt for a success.
std::optional<std::string> failure_reason(const cells::CellOutcome& o);

}  // namespace cellos::reactor
