// The companion's half of [intake.nats]: pulls specs from the work-queue consumer only as far
// as the daemon's credit goes (long-polling when the queue is empty), claims each delivery in
// the completion bucket before the daemon sees it (claims.h: a spec completed is acked, one
// another host holds is handed back with a delay), renews the claims of specs the daemon holds
// at each heartbeat, and settles specs: claim to completion record then ack for a completed
// cell, term for a rejected one. Runs on its own threads; talks to the reactor only through
// the Channel.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

#include <map>
#include <memory>

#include "reactor/nats/channel.h"
#include "reactor/nats/claims.h"
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
  // kInProgress: +WPI now, and the claim renewed on the lease thread.
  void lease(Frame f);
  // kCompleted, kTerm or kNak (claim released, then -NAK), settled in order on the settle
  // thread, then reported kSettled.
  void settle(Frame f);

 private:
  void fetch_loop();
  void settle_loop();
  void lease_loop();
  bool setup();
  // Claims the delivery for this host (every delivery, first or not). False when it was acked
  // (completed already) or handed back (another host holds it, or the bucket is unreachable)
  // and must not run; `claim` is set to its key otherwise ("" for a spec without an id, which
  // the daemon rejects).
  bool claim(natsMsg* m, uint64_t stream_seq, uint64_t delivered, std::string* claim);
  void nak_later(natsMsg* m, int64_t delay_ms);
  bool consumer_missing();
  // A server that crashed can keep a message it had confirmed acked while its consumer counts
  // it acked: the consumer never delivers it again. When the stream holds more messages than
  // the consumer has left to deliver or awaits acks for, those recorded completed are deleted.
  // Runs when a long poll comes back empty.
  void sweep();

  IntakeWorkerOptions o_;
  Channel& ch_;
  Connection conn_;
  Sub sub_;
  Kv kv_;
  std::unique_ptr<Claims> claims_;
  // Orders a delivery's claim and kSpec against a completion of the same claim (fetch_loop).
  std::mutex claim_mu_;
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t credit_ = 0;
  bool ready_ = false;
  std::deque<Frame> settle_q_;
  // Leases to renew, by claim key: heartbeats of one spec coalesce.
  std::map<std::string, Frame> lease_q_;
  std::thread fetcher_, settler_, leaser_;
};

}  // namespace cellos::reactor::nats
