#include "sinks/event_log.h"

#include <sys/file.h>

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "base/file_lock.h"
#include "sinks/log_io.h"
#include "sinks/sha256_many.h"

namespace cellos::sinks {
namespace {

using schema::LogRecord;

int64_t realtime_us() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

std::string random_prefix() {
  uint64_t r = 0;
  if (getrandom(&r, sizeof r, 0) != sizeof r) r = static_cast<uint64_t>(realtime_us()) ^ ::getpid();
  char buf[24];
  std::snprintf(buf, sizeof buf, "%016llx-", static_cast<unsigned long long>(r));
  return buf;
}

capnp::Data::Reader data_of(const Digest& d) { return capnp::Data::Reader(d.data(), d.size()); }

}  // namespace

LogFormat parse_log_format(const std::string& s) {
  return s == "capnp" ? LogFormat::kCapnp : LogFormat::kJsonl;
}

EventLog::EventLog(EventLogOptions o, base::IoPort& io) : opts_(std::move(o)), io_(io) {
  if (opts_.batch_max_events == 0) opts_.batch_max_events = 1;
}

EventLog::~EventLog() noexcept = default;

base::Result<std::unique_ptr<EventLog>> EventLog::open(const EventLogOptions& options,
                                                       base::IoPort& io) {
  std::unique_ptr<EventLog> log(new EventLog(options, io));
  log->source_ = "/cellos-reactor/" + options.host_id;
  log->id_prefix_ = random_prefix();
  if (!options.signing_key_path.empty()) {
    auto key = SigningKey::load_private(options.signing_key_path);
    if (!key) return std::move(key).error().context("[events] signing_key");
    log->key_.emplace(std::move(*key));
  } else if (options.per_event_signing) {
    return base::value_error("[events] per_event_signing", "needs [events] signing_key");
  }
  if (options.path == "-") {
    int d = ::fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
    if (d < 0) return base::sys_error("dup", "stdout");
    log->fd_ = base::Fd(d);
    log->is_stdout_ = true;  // nothing to read back: a fresh chain
    return log;
  }
  // O_APPEND: every ring write lands at the end even if another writer appended meanwhile;
  // O_RDWR: recovery reads the tail.
  auto fd = base::open_at(AT_FDCWD, options.path, O_RDWR | O_CREAT | O_APPEND, 0640);
  if (!fd) return std::move(fd).error().context("event log");
  log->fd_ = std::move(*fd);
  // One writer per log: two writers would each number and chain their own lines, and the
  // interleaved file would read as tampering. The lock dies with its holder, though not at
  // once: a killed writer's in-flight ring writes hold the file a little longer, which
  // flock_exclusive waits out (base/file_lock.h).
  struct stat st{};
  if (::fstat(log->fd_.get(), &st) == 0 && S_ISREG(st.st_mode)) {
    base::FlockOptions lo;
    lo.what = "event log \"" + options.path + "\"";
    CELLOS_TRY(base::flock_exclusive(log->fd_.get(), lo));
  }
  if (auto r = log->recover(); !r) return std::move(r).error().context("event log \"" + options.path + "\"");
  return log;
}

base::Result<void> EventLog::recover() {
  auto tail = opts_.format == LogFormat::kCapnp ? read_capnp_tail(fd_.get())
                                                : read_jsonl_tail(fd_.get());
  if (!tail) return std::move(tail).error();
  if (tail->torn_bytes) {
    // A crash mid-write left part of a record: cut it, and say so in the recovery manifest.
    if (::ftruncate(fd_.get(), static_cast<off_t>(tail->valid_size)) != 0)
      return base::sys_error("ftruncate", "torn tail");
  }
  next_seq_ = tail->last_seq + 1;
  written_seq_ = tail->last_seq;
  prev_digest_ = tail->last_manifest_digest;
  if (tail->unsealed_lines.empty() && !tail->torn_bytes) return base::ok();
  for (const auto& l : tail->unsealed_lines) leaves_.push_back(merkle_leaf(l));
  batch_first_seq_ = tail->unsealed_first_seq;
  // Sealed here, but written synchronously below rather than through the ring: the file is
  // whole again before open() returns, so before the reactor runs.
  hold_writes_ = true;
  seal(true, tail->torn_bytes);
  hold_writes_ = false;
  std::string bytes;
  for (auto& c : pending_) bytes.append(c.bytes, 0, c.len);
  pending_.clear();
  buffered_ = 0;
  CELLOS_TRY(write_sync(bytes));
  written_seq_ = next_seq_ - 1;
  return base::ok();
}

base::Result<void> EventLog::write_sync(const std::string& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd_.get(), bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return base::sys_error("write", "recovery manifest");
    done += static_cast<size_t>(n);
  }
  return base::ok();
}

int64_t EventLog::now_mono_us() const {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

LogRecord::Builder EventLog::start_record(int64_t time_us, std::string_view subject,
                                          std::string_view correlation) {
  auto root = arena_.start().initRoot<LogRecord>();
  const uint64_t seq = next_seq_++;
  // id = <random per-process prefix>-<seq>: unique across restarts and hosts, no syscall.
  char digits[24];
  char* p = digits + sizeof digits;
  uint64_t v = seq;
  do {
    *--p = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v);
  scratch_.assign(id_prefix_);
  scratch_.append(p, static_cast<size_t>(digits + sizeof digits - p));
  header_ = RecordHeader{seq, time_us, scratch_, source_, subject, correlation};
  set_header(header_, root);
  return root;
}

void EventLog::append_record(LogRecord::Builder r, bool is_event) {
  if (opts_.per_event_signing && key_ && r.getData().which() != LogRecord::Data::BATCH_SEALED) {
    const size_t n = render_line_at(r.asReader(), line_, 0, false);
    const std::string sig = key_->sign(dsse_pae(kDssePayloadType, std::string_view(line_.data(), n)));
    std::string env = "{\"payloadType\":\"";
    env += kDssePayloadType;
    env += "\",\"payload\":\"\",\"signatures\":[{\"keyid\":\"";
    env += key_->key_id();
    env += "\",\"sig\":\"";
    env += base64(sig);
    env += "\"}]}";
    const std::string b64 = base64(env);
    r.setDsse(capnp::Text::Reader(b64.data(), b64.size()));
  }
  const bool manifest = r.getData().which() == LogRecord::Data::BATCH_SEALED;
  const size_t before = batch_len_;
  std::string_view line;
  if (opts_.format == LogFormat::kJsonl) {
    // Rendered straight into the batch (into its slack, past batch_len_) and hashed there: no
    // per-event copy.
    batch_len_ = render_line_at(header_, r.asReader(), batch_, batch_len_);
    line = std::string_view(batch_.data() + before, batch_len_ - before);
  } else {
    line = std::string_view(line_.data(), render_line_at(r.asReader(), line_, 0));
  }
  last_line_size_ = line.size();
  if (!manifest) {
    if (leaves_.empty()) {
      batch_first_seq_ = r.getSeq();
      batch_opened_us_ = now_mono_us();
    }
    if (opts_.format == LogFormat::kJsonl && before > 0) {
      // Hashed at seal(), with the batch's other lines (hash_deferred_leaves).
      deferred_.push_back(DeferredLeaf{leaves_.size(), before - 1, line.size()});
      leaves_.emplace_back();
    } else {
      leaves_.push_back(merkle_leaf(line));
    }
  } else {
    prev_digest_ = sha256(line);
  }
  if (opts_.format == LogFormat::kJsonl) {
    if (batch_len_ == batch_.size())
      batch_ += '\n';
    else
      batch_[batch_len_] = '\n';
    ++batch_len_;
  } else {
    batch_.resize(batch_len_);
    append_packed(arena_.message(), batch_);
    batch_len_ = batch_.size();
  }
  buffered_ += batch_len_ - before;
  if (is_event) ++batch_events_;
}

void EventLog::emit(const Event& e) {
  if (closing_) {  // emitting again after a flush: a new shutdown needs a new flush
    closing_ = false;
    close_failures_ = 0;
  }
  emit_gap_if_room();
  if (buffered_ >= opts_.max_buffered_bytes) {
    // No room: count it for the gap record instead of growing without bound.
    if (!gap_events_) {
      gap_first_us_ = e.time_us;
      gap_reason_ = failing_ ? "sink failing: buffer full" : "buffer full";
    }
    ++gap_events_;
    ++gap_events_total_;
    gap_bytes_ += last_line_size_ + 1;  // the last line's size: a close estimate
    gap_last_us_ = e.time_us;
    return;
  }
  auto r = start_record(e.time_us, e.subject, e.correlation_id);
  build_data(e.data, r);
  append_record(r, true);
  if (leaves_.size() >= opts_.batch_max_events)
    seal(false, 0);
  else if (leaves_.size() == 1)
    arm_batch_timer();
}

void EventLog::emit_gap_if_room() {
  // Hysteresis: only once half the buffer is free, so a stuck sink yields one gap record per
  // episode rather than one per freed batch.
  if (!gap_events_ || buffered_ > opts_.max_buffered_bytes / 2) return;
  auto r = start_record(realtime_us(), "");
  auto g = r.getData().initGap();
  g.setDroppedEvents(gap_events_);
  g.setDroppedBytes(gap_bytes_);
  g.setFirstTimeUs(gap_first_us_);
  g.setLastTimeUs(gap_last_us_);
  g.setReason(capnp::Text::Reader(gap_reason_.data(), gap_reason_.size()));
  std::fprintf(stderr, "cellos-reactor: event log \"%s\": %llu events dropped (buffer full), gap recorded\n",
               opts_.path.c_str(), static_cast<unsigned long long>(gap_events_));
  gap_events_ = gap_bytes_ = 0;
  append_record(r, false);
  if (leaves_.size() >= opts_.batch_max_events)
    seal(false, 0);
  else if (leaves_.size() == 1)
    arm_batch_timer();
}

void EventLog::hash_deferred_leaves() {
  if (deferred_.empty()) return;
  // RFC 6962's leaf hash is over 0x00 || line: the byte before each line is the previous
  // line's '\n' (never part of a hashed line), so it stands in for the prefix while the lines
  // are hashed, and the lines are hashed where they are, without a copy.
  const size_t n = deferred_.size();
  leaf_views_.resize(n);
  leaf_digests_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    batch_[deferred_[i].sep] = '\0';
    leaf_views_[i] = std::string_view(batch_.data() + deferred_[i].sep, deferred_[i].len + 1);
  }
  sha256_many(leaf_views_.data(), n, leaf_digests_.data());
  for (size_t i = 0; i < n; ++i) {
    leaves_[deferred_[i].index] = leaf_digests_[i];
    batch_[deferred_[i].sep] = '\n';
  }
  deferred_.clear();
}

void EventLog::seal(bool recovered, uint64_t truncated_bytes) {
  if (leaves_.empty() && !recovered) return;
  hash_deferred_leaves();
  const Digest root = merkle_root(leaves_);
  const uint64_t count = leaves_.size();
  const uint64_t first = count ? batch_first_seq_ : 0;
  const uint64_t last = count ? batch_first_seq_ + count - 1 : 0;
  auto r = start_record(realtime_us(), "");
  auto b = r.getData().initBatchSealed();
  b.setFirstSeq(first);
  b.setLastSeq(last);
  b.setEventCount(count);
  b.setMerkleRoot(data_of(root));
  b.setPrevDigest(data_of(prev_digest_));
  b.setRecovered(recovered);
  b.setTruncatedBytes(truncated_bytes);
  if (key_) {
    b.setKeyId(capnp::Text::Reader(key_->key_id().data(), key_->key_id().size()));
    // The signature covers the manifest's own line with an empty signature value: every field
    // (seq, time, id, source, range, root, chain, key id, recovery) in one canonical byte string.
    const size_t n = render_line_at(r.asReader(), line_, 0);
    const std::string sig = key_->sign(std::string_view(line_.data(), n));
    b.setSignature(capnp::Data::Reader(reinterpret_cast<const kj::byte*>(sig.data()), sig.size()));
  }
  append_record(r, false);
  const size_t size = batch_len_;
  pending_.push_back(Chunk{std::move(batch_), size, batch_events_, next_seq_ - 1});
  // The next batch reuses a buffer a finished write gave back: batches of ~200 KiB are past
  // malloc's mmap threshold, and a fresh one each time cost page faults on every batch. Its
  // old bytes stay as the slack lines are rendered into (resizing only zero-fills growth, and
  // a reused buffer kept its size: perf showed the zero-fill of one spare, refilled per batch).
  batch_.clear();
  if (!spares_.empty()) {
    batch_ = std::move(spares_.back());
    spares_.pop_back();
  }
  batch_len_ = 0;
  if (batch_.size() < size + size / 4) batch_.resize(size + size / 4);
  leaves_.clear();
  batch_events_ = 0;
  kick();
}

void EventLog::arm_batch_timer() {
  if (timer_op_.busy() || closing_) return;
  io_.timeout(opts_.batch_max_delay, timer_op_.arm());
}

void EventLog::on_batch_timer(int) {
  if (leaves_.empty()) return;
  const int64_t due = batch_opened_us_ + opts_.batch_max_delay.count() * 1000;
  const int64_t now = now_mono_us();
  // The timer may have been armed for an earlier batch: re-arm for what is left of this one.
  // CLOCK_MONOTONIC_COARSE ticks in ms, hence the slack.
  if (now + 2000 < due && !closing_) {
    io_.timeout(std::chrono::microseconds(due - now), timer_op_.arm());
    return;
  }
  seal(false, 0);
}

void EventLog::kick() {
  if (write_op_.busy() || retry_op_.busy() || hold_writes_) return;
  if (inflight_.len == 0) {
    if (pending_.empty()) return;
    inflight_ = std::move(pending_.front());
    pending_.pop_front();
    // A backlog of small batches (the sink was slow or failing) goes out in larger writes;
    // batches of 64 KiB and more go as they are (merging would only copy them again).
    while (!pending_.empty() && inflight_.len + pending_.front().len < (64u << 10)) {
      inflight_.bytes.resize(inflight_.len);
      inflight_.bytes.append(pending_.front().bytes, 0, pending_.front().len);
      inflight_.len = inflight_.bytes.size();
      inflight_.events += pending_.front().events;
      inflight_.last_seq = pending_.front().last_seq;
      pending_.pop_front();
    }
    inflight_done_ = 0;
  }
  io_.write(fd_.get(),
            std::as_bytes(std::span(inflight_.bytes.data() + inflight_done_,
                                    inflight_.len - inflight_done_)),
            write_op_.arm());
}

void EventLog::report(const std::string& what, int err) {
  if (failing_) return;  // once per episode
  failing_ = true;
  std::fprintf(stderr,
               "cellos-reactor: event log \"%s\": %s: %s; supervision continues, buffering up to "
               "%llu bytes and retrying\n",
               opts_.path.c_str(), what.c_str(), std::strerror(err),
               static_cast<unsigned long long>(opts_.max_buffered_bytes));
}

void EventLog::on_write(int res) {
  if (res == 0) res = -EIO;  // no progress on a regular file: treat as an error, retry
  if (res < 0) {
    report("write", -res);
    if (closing_ && ++close_failures_ > opts_.close_retries) {
      uint64_t lost = inflight_.events + batch_events_;
      for (const auto& c : pending_) lost += c.events;
      std::fprintf(stderr, "cellos-reactor: event log \"%s\": giving up at shutdown, %llu events not written\n",
                   opts_.path.c_str(), static_cast<unsigned long long>(lost));
      pending_.clear();
      inflight_ = Chunk{};
      batch_len_ = 0;
      leaves_.clear();
      deferred_.clear();
      batch_events_ = 0;
      buffered_ = 0;
      return;
    }
    io_.timeout(opts_.retry_interval, retry_op_.arm());
    return;
  }
  inflight_done_ += static_cast<size_t>(res);
  if (inflight_done_ < inflight_.len) {
    kick();  // a short write: the rest, at once (a full disk reports ENOSPC on the next one)
    return;
  }
  if (!is_stdout_) {
    // The file removed underneath: writes succeed into an unlinked inode and vanish. Detect
    // it here (one fstat per batch), recreate the path and write this batch again there.
    struct stat st {};
    if (::fstat(fd_.get(), &st) == 0 && st.st_nlink == 0) {
      auto fd = base::open_at(AT_FDCWD, opts_.path, O_RDWR | O_CREAT | O_APPEND, 0640);
      if (fd) {
        fd_ = std::move(*fd);
        std::fprintf(stderr,
                     "cellos-reactor: event log \"%s\": removed underneath; recreated, the new file "
                     "continues the chain from the last batch written\n",
                     opts_.path.c_str());
        inflight_done_ = 0;
        kick();
        return;
      }
      report("reopen after removal", fd.error().err ? fd.error().err : EIO);
      io_.timeout(opts_.retry_interval, retry_op_.arm());
      return;
    }
  }
  if (failing_) {
    failing_ = false;
    std::fprintf(stderr, "cellos-reactor: event log \"%s\": writing again\n", opts_.path.c_str());
  }
  events_written_ += inflight_.events;
  written_seq_ = inflight_.last_seq;
  buffered_ -= inflight_.len;
  if (spares_.size() < kSpares) spares_.push_back(std::move(inflight_.bytes));
  inflight_ = Chunk{};
  kick();
  for (const auto& fn : on_written_) fn(written_seq_);
}

void EventLog::on_retry(int) {
  if (closing_) emit_gap_if_room();
  kick();
}

void EventLog::flush() {
  closing_ = true;
  emit_gap_if_room();
  seal(false, 0);
  if (timer_op_.busy()) io_.cancel(timer_op_);
  kick();
}

void EventLog::seal_now() {
  // The batch timer stays armed: on_batch_timer finds the batch empty, or re-arms for a newer
  // one's deadline.
  if (!leaves_.empty()) seal(false, 0);
}

bool EventLog::drained() const {
  return !write_op_.busy() && !timer_op_.busy() && !retry_op_.busy() && pending_.empty() &&
         inflight_.len == 0 && leaves_.empty();
}

}  // namespace cellos::sinks
