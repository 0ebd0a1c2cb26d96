// EventLog: the signed, batched event log (JSONL CloudEvents lines or a packed Cap'n Proto
// stream), written through the reactor's ring.
//
// emit() builds the event as a Cap'n Proto record in a reused arena and renders its CloudEvents
// line into the open batch, all in user space. A batch closes at batch_max_events or
// batch_max_delay (a ring timeout), whichever is first: then its lines are hashed as RFC 6962
// leaves (together: sha256_many), a batch_sealed manifest (Merkle root, previous manifest
// digest, Ed25519 signature) is appended and the whole batch goes to the file in one ring write. Writes are issued one at a
// time, so the file holds whole batches in order.
//
// A failing file (ENOSPC, EIO, removed underneath) never blocks emit(): sealed batches wait in
// memory up to max_buffered_bytes, the error is reported once, a retry timer rewrites them, and
// events that did not fit are counted into a gap record written once there is room again.
#pragma once

#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/completion.h"
#include "base/io.h"
#include "sinks/events.h"
#include "sinks/log_record.h"
#include "sinks/signing.h"

namespace cellos::sinks {

enum class LogFormat { kJsonl, kCapnp };

struct EventLogOptions {
  std::string path;      // "-": standard output (no recovery, nothing to read back)
  std::string host_id;   // source = /cellos-reactor/<host_id>
  LogFormat format = LogFormat::kJsonl;
  uint64_t batch_max_events = 512;
  std::chrono::milliseconds batch_max_delay{10};
  std::string signing_key_path;  // empty: manifests carry no signature
  bool per_event_signing = false;
  uint64_t max_buffered_bytes = 64ull << 20;
  // How often a failed write is retried. Also bounds shutdown: after flush(), a sink that still
  // fails after close_retries attempts is given up (reported), so the reactor can exit.
  std::chrono::milliseconds retry_interval{200};
  unsigned close_retries = 10;
};

class EventLog final : public EventSink {
 public:
  // Opens (creating) the log, recovers the sequence number and hash chain from its tail, and
  // seals over an unsealed final batch (and a torn final line) left by a crash.
  static base::Result<std::unique_ptr<EventLog>> open(const EventLogOptions& options,
                                                      base::IoPort& io);
  // noexcept: the kj members' destructors are noexcept(false), which clang refuses for an
  // override of the noexcept ~EventSink.
  ~EventLog() noexcept override;

  void emit(const Event& e) override;
  void flush() override;
  void seal_now() override;
  bool drained() const override;
  uint64_t events_written() const override { return events_written_; }
  uint64_t emitted_seq() const override { return next_seq_ - 1; }
  uint64_t written_seq() const override { return written_seq_; }
  void add_on_written(std::function<void(uint64_t)> fn) override {
    on_written_.push_back(std::move(fn));
  }

  // Test and metrics hooks.
  uint64_t next_seq() const { return next_seq_; }
  uint64_t buffered_bytes() const { return buffered_; }
  uint64_t dropped_events() const { return gap_events_total_; }
  bool failing() const { return failing_; }

 private:
  struct Chunk {
    // bytes[0, len) are the records; a reused buffer keeps its whole size past them, so the
    // next batch rendered into it never zero-fills room it already had.
    std::string bytes;
    size_t len = 0;
    uint64_t events = 0;  // event records in it (manifests and gaps not counted)
    uint64_t last_seq = 0;  // of its last manifest
  };

  EventLog(EventLogOptions o, base::IoPort& io);
  base::Result<void> recover();
  base::Result<void> recover_jsonl();
  base::Result<void> recover_capnp();
  // Appends one record (already built in arena_) to the open batch; returns its line bytes.
  void append_record(schema::LogRecord::Builder r, bool is_event);
  schema::LogRecord::Builder start_record(int64_t time_us, std::string_view subject,
                                         std::string_view correlation = {});
  void seal(bool recovered, uint64_t truncated_bytes);
  void emit_gap_if_room();
  void kick();
  void arm_batch_timer();
  void on_write(int res);
  void on_batch_timer(int res);
  void on_retry(int res);
  void report(const std::string& what, int err);
  base::Result<void> write_sync(const std::string& bytes);
  int64_t now_mono_us() const;

  EventLogOptions opts_;
  base::IoPort& io_;
  base::Fd fd_;
  bool is_stdout_ = false;
  std::optional<SigningKey> key_;
  std::string source_;
  std::string id_prefix_;
  RecordArena arena_;

  // The open batch: batch_[0, batch_len_). The bytes past batch_len_ are room the next line
  // is rendered into (render_line_at), so batch_.size() is at least batch_len_.
  std::string batch_;
  size_t batch_len_ = 0;
  std::vector<Digest> leaves_;
  // JSONL lines of the open batch whose leaf hash is computed at seal(), all together
  // (sha256_many: 16 at a time where the CPU has AVX-512): leaves_[index] is the hash of
  // 0x00 || batch_[sep + 1, sep + 1 + len), where batch_[sep] is the previous line's '\n'.
  struct DeferredLeaf {
    size_t index, sep, len;
  };
  std::vector<DeferredLeaf> deferred_;
  std::vector<std::string_view> leaf_views_;
  std::vector<Digest> leaf_digests_;
  void hash_deferred_leaves();
  uint64_t batch_first_seq_ = 0;
  uint64_t batch_events_ = 0;
  int64_t batch_opened_us_ = 0;
  std::string line_, scratch_;
  // Buffers finished writes gave back, for the next batches (at most kSpares of them).
  std::vector<std::string> spares_;
  static constexpr size_t kSpares = 4;
  // The header start_record() set on the record being built (its id is in scratch_; its
  // subject and correlation id live as long as the emit() that passed them).
  RecordHeader header_;
  size_t last_line_size_ = 0;

  uint64_t next_seq_ = 1;
  Digest prev_digest_{};

  // Sealed batches waiting for the file, and the one being written.
  std::deque<Chunk> pending_;
  Chunk inflight_;
  size_t inflight_done_ = 0;
  uint64_t buffered_ = 0;  // open batch + pending + in flight
  base::MemberOp<&EventLog::on_write> write_op_{this};
  base::MemberOp<&EventLog::on_batch_timer> timer_op_{this};
  base::MemberOp<&EventLog::on_retry> retry_op_{this};
  bool failing_ = false;
  bool hold_writes_ = false;  // recovery writes its manifest itself
  bool closing_ = false;
  unsigned close_failures_ = 0;

  uint64_t events_written_ = 0;
  uint64_t written_seq_ = 0;
  std::vector<std::function<void(uint64_t)>> on_written_;
  // Events dropped since the last gap record (the buffer was full).
  uint64_t gap_events_ = 0, gap_bytes_ = 0, gap_events_total_ = 0;
  int64_t gap_first_us_ = 0, gap_last_us_ = 0;
  std::string gap_reason_;
};

LogFormat parse_log_format(const std::string& s);

}  // namespace cellos::sinks
