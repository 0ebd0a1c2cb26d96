#include "tests/support/event_log_support.h"

#include <chrono>
#include <stdexcept>

namespace cellos::test {

std::vector<sinks::EventData> sample_events(int i) {
  const std::string id = "cell-" + std::to_string(i);
  sinks::NetworkPolicyData np;
  np.cell_id = id;
  np.declared_egress = {{"10.0.0.1", 443, std::string("tcp")}, {"example.org", 53, std::nullopt}};
  sinks::CompletedData done;
  done.cell_id = id;
  done.exit_code = 3;
  done.duration_ms = 12;
  done.reason = sinks::CompletedReason::kSetupFailed;
  done.error = std::string("execve(\"/bin/\xff\xfe q\\\"\"):\t\x01 no such file");
  return {sinks::StartedData{id, "run-" + std::to_string(i), "host-1"}, np, done,
          sinks::DestroyedData{id, false, true}, sinks::RejectedData{std::nullopt, "bad spec"}};
}

LogHarness::LogHarness(sinks::EventLogOptions options) : options_(std::move(options)) {
  auto r = reactor::Ring::create(reactor::RingOptions{});
  if (!r) throw std::runtime_error(r.error().message());
  ring_ = std::move(*r);
  if (!reopen()) throw std::runtime_error(last_error);
}

LogHarness::~LogHarness() {
  // Nothing may complete into a freed log: drain what is in flight first.
  if (log_) {
    log_->flush();
    for (int i = 0; i < 1000 && !log_->drained(); ++i)
      if (!ring_->run_once().ok()) break;
  }
  log_.reset();
  ring_.reset();
}

bool LogHarness::reopen() {
  if (log_) {
    drain();
    log_.reset();
  }
  auto l = sinks::EventLog::open(options_, *ring_);
  if (!l) {
    last_error = l.error().message();
    return false;
  }
  log_ = std::move(*l);
  return true;
}

void LogHarness::emit_samples(int rounds) {
  for (int i = 0; i < rounds; ++i)
    for (auto& d : sample_events(i)) log_->emit(sinks::make_event(std::move(d)));
}

void LogHarness::drain() {
  log_->flush();
  while (!log_->drained())
    if (!ring_->run_once().ok()) throw std::runtime_error("ring failed");
}

bool LogHarness::run_until(const std::function<bool()>& pred, std::chrono::nanoseconds limit) {
  // A ring timeout as the guard: run_once always has something to wait for.
  struct Guard final : base::Completion {
    bool done = false;
    void complete(int) override { done = true; }
  } guard;
  ring_->timeout(limit, guard);
  while (!pred() && !guard.done)
    if (!ring_->run_once().ok()) return false;
  if (!guard.done) ring_->cancel(guard);
  while (!guard.done)
    if (!ring_->run_once().ok()) return false;
  return pred();
}

}  // namespace cellos::test
