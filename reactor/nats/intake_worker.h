// The companion's half of [intake.nats]: pulls specs from the work-queue consumer only as far
// as the daemon's credit goes (long-polling when the queue is empty), skips redelivered specs
// the completion bucket records as done, and settles specs: KV put then ack for a completed
// cell, term for a rejected one. Runs on its own threads; talks to the reactor only through
// the Channel.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

#include "reactor/nats/channel.h"
#include "reactor/nats/js.h"

namespace cellos::reactor::nats {

struct IntakeWorkerOptions {
  std::string url, host_id, bucket;
  WorkQueueOptions queue;
};

class IntakeWorker {
 public:
  IntakeWorker(IntakeWorkerOptions o, Channel& ch) : o_(std::move(o)), ch_(ch) {}
  ~IntakeWorker();
  void start();
  void add_credit(uint64_t n);
  // "+WPI" (in progress) or "-NAK": fire and forget, buffered by libnats while disconnected.
  void signal(const std::string& token, const char* body);
  // kCompleted or kTerm, settled in order on the settle thread, then reported kSettled.
  void settle(Frame f);

 private:
  void fetch_loop();
  void settle_loop();
  bool setup();
  // A redelivered spec the bucket records as completed (same stream sequence): true when it
  // was acked here and must not run.
  bool already_completed(natsMsg* m, uint64_t stream_seq, uint64_t delivered);

  IntakeWorkerOptions o_;
  Channel& ch_;
  Connection conn_;
  Sub sub_;
  Kv kv_;
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t credit_ = 0;
  bool ready_ = false;
  std::deque<Frame> settle_q_;
  std::thread fetcher_, settler_;
};

}  // namespace cellos::reactor::nats
