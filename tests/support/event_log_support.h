// Driving a sinks::EventLog in-process on a real reactor Ring, for the event-log tests.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "reactor/ring.h"
#include "sinks/event_log.h"

namespace cellos::test {

// One of every cell event type, including awkward strings (quotes, control bytes, invalid
// UTF-8), numbered by `i` so lines differ.
std::vector<sinks::EventData> sample_events(int i);

class LogHarness {
 public:
  explicit LogHarness(sinks::EventLogOptions options);
  ~LogHarness();
  // Re-opens the log on the same ring (a restart); returns false with the error in last_error.
  bool reopen();
  void emit_samples(int rounds);
  // flush() and run completions until drained().
  void drain();
  // Run completions until `pred` holds or `limit` passed.
  bool run_until(const std::function<bool()>& pred,
                 std::chrono::nanoseconds limit = std::chrono::seconds(5));
  sinks::EventLog& log() { return *log_; }
  reactor::Ring& ring() { return *ring_; }
  std::string last_error;

 private:
  sinks::EventLogOptions options_;
  std::unique_ptr<reactor::Ring> ring_;
  std::unique_ptr<sinks::EventLog> log_;
};

}  // namespace cellos::test
