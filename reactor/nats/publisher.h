// The companion's half of [events.nats]: publishes each sealed batch of the local JSONL log
// (its event lines and its batch_sealed manifest) as one JetStream message on
// <prefix>.<host id>, with Nats-Msg-Id <host id>-<manifest seq> so a retried publish is
// dropped by the server's duplicate window.
//
// The local log is the source of truth and the publisher reads it back from the file: it
// holds at most one batch in memory, never slows or blocks local logging, and resumes after
// any outage (the server's, the companion's, the daemon's) from what the stream holds: the
// Cellos-Last-Seq header of the last message on the host's subject. The daemon's
// kLogWritten frames only wake it early; a 1 s poll covers a missed one.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "base/fd.h"
#include "reactor/nats/channel.h"
#include "reactor/nats/js.h"

namespace cellos::reactor::nats {

struct PublisherOptions {
  std::string url, prefix, host_id, log_path;
  int64_t duplicate_window_s = 120;
};

class Publisher {
 public:
  Publisher(PublisherOptions o, Channel& ch) : o_(std::move(o)), ch_(ch) {}
  ~Publisher();
  void start();
  void nudge(uint64_t written_seq);

 private:
  void loop();
  base::Result<uint64_t> last_published();
  // Reads what the log gained since the last call and publishes every batch it completes.
  // False when a publish failed (the batch is kept and retried).
  bool pump();
  // Publishes the batches the complete lines read so far finish; keeps a torn last line.
  bool drain_lines();
  bool publish(uint64_t first, uint64_t last);
  void reopen();

  PublisherOptions o_;
  Channel& ch_;
  Connection conn_;
  std::string subject_;
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t nudged_ = 0;
  std::thread thread_;

  // Reader state (publisher thread only).
  base::Fd fd_;
  uint64_t offset_ = 0;
  std::string partial_;         // a line not yet complete in the file
  std::string batch_;           // lines of the batch being gathered
  uint64_t batch_first_ = 0;
  uint64_t published_ = 0;      // the stream holds our batches through this seq
  bool pending_publish_ = false;
  uint64_t pending_last_ = 0;
  bool failing_ = false;
};

}  // namespace cellos::reactor::nats
