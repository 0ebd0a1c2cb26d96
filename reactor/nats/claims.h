// Claims: exactly-once over a work queue whose server may forget deliveries and acks.
//
// nats-server 2.9 stores a consumer's state asynchronously (about every 100 ms): after a
// crash it delivers again, as *first* deliveries, specs it had already handed out, and it can
// forget acks it had confirmed. A stream message's own bytes, a KV record among them, are
// written before the server confirms them. So the decision "who runs stream message N" lives
// in the completion bucket, one record per message (claim_key), and every change to it is a
// server-confirmed create or compare-and-set on its revision:
//
//   absent ──create──► claimed{host} ──CAS (same host, each heartbeat)──► claimed{host}
//      claimed{host} ──CAS (the owner, after its cell's events are on disk)──► completed
//      claimed{host} ──CAS (the owner gives it back unrun)──► released
//      claimed{other} unchanged for kTakeoverAckWaits × AckWait, seen by this host ──CAS──►
//        claimed{this host}                                           (takeover)
//
// A host whose renewal or completion finds the record held by another host has been fenced:
// its cell is killed and it never completes the spec. One daemon serves one host id, so a
// claim by this host that the daemon does not hold is the run of a daemon that died: the new
// daemon reported that cell lost at start, and runs the spec again under the same claim.
//
// Thread-safe: kvStore calls may run on any thread; the takeover observations are the fetch
// thread's alone.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>

#include "reactor/nats/js.h"

namespace cellos::reactor::nats {

// A claim whose revision another host sees unchanged this many AckWaits is taken over. The
// owner renews every third of AckWait: this is nine missed renewals.
inline constexpr int64_t kTakeoverAckWaits = 3;

struct ClaimsOptions {
  std::string host_id;
  int64_t ack_wait_ms = 30000;
  // Hosts that may claim one spec ([intake.nats] max_deliver): a spec whose claims keep going
  // stale (it takes its hosts down with it) is given up, not passed on for ever.
  int64_t max_claims = 5;
};

class Claims {
 public:
  Claims(kvStore* kv, ClaimsOptions o) : kv_(kv), o_(std::move(o)) {}

  struct Decision {
    enum What {
      kRun,        // this host holds the claim now (made, taken over, or already ours)
      kCompleted,  // a completion record: ack it, never run it
      kBusy,       // another host holds it: hand it back with a delay
      kUnknown,    // the bucket did not answer: hand it back, never run it
      kGiveUp,     // max_claims hosts claimed it and none completed it: terminate it
    } what = kUnknown;
    std::string why;  // for the daemon's log: who holds it, what failed
  };
  // On every delivery, first or not (fetch thread only).
  Decision claim(const std::string& key, const std::string& spec_id, uint64_t stream_seq);

  enum class Lease { kHeld, kLost, kUnknown };
  // The owner's heartbeat: a compare-and-set that changes the revision. kLost (with `holder`)
  // when another host holds the record now.
  Lease renew(const std::string& key, std::string* holder);
  // claimed(ours) -> completed with `record` (the daemon's JSON; "state" is set here). kHeld
  // once it is recorded (or already was), kLost when another host holds it.
  Lease complete(const std::string& key, const std::string& record, std::string* holder);
  // Whether the record says completed (false when absent or unreadable).
  bool completed(const std::string& key);
  // claimed(ours) -> released, so another host need not wait out the takeover window.
  void release(const std::string& key);

 private:
  struct Entry {
    uint64_t rev = 0;
    std::string host, state;
    std::string raw;
  };
  // 1: found, 0: no record, -1: the bucket did not answer.
  int get(const std::string& key, Entry* e, std::string* err);
  std::string record(const std::string& spec_id, uint64_t seq, const std::string& state) const;

  kvStore* kv_;
  ClaimsOptions o_;
  struct Seen {
    uint64_t rev = 0;
    std::chrono::steady_clock::time_point since;
  };
  std::map<std::string, Seen> seen_;  // other hosts' claims as this host saw them
};

}  // namespace cellos::reactor::nats
