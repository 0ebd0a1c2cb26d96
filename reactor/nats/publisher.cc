#include "reactor/nats/publisher.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string_view>

namespace cellos::reactor::nats {
namespace {

// The renderer writes these attributes before `data` (sinks/log_record.cc), and a quote inside
// a string value is escaped, so the first match is the attribute itself.
uint64_t seq_of(std::string_view line) {
  constexpr std::string_view kKey = ",\"cellosseq\":";
  size_t at = line.find(kKey);
  if (at == std::string_view::npos) return 0;
  return std::strtoull(line.data() + at + kKey.size(), nullptr, 10);
}

bool is_manifest(std::string_view line) {
  return line.find(",\"type\":\"dev.cellos.events.log.v1.batch_sealed\"") != std::string_view::npos;
}

}  // namespace

Publisher::~Publisher() {
  if (thread_.joinable()) thread_.detach();
}

void Publisher::start() {
  subject_ = events_subject(o_.prefix, o_.host_id);
  ConnectOptions co;
  co.url = o_.url;
  co.name = "cellos-reactor " + o_.host_id + " events";
  co.on_state = [this](bool up, const std::string& why) {
    ch_.send(Frame{Kind::kState, 0, up ? 1u : 0u, {}, {}, "events: " + why, {}});
    if (up) nudge(0);
  };
  auto c = connect(std::move(co));
  if (!c) {
    ch_.note("nats events: " + c.error().message());
    std::_Exit(1);
  }
  conn_ = std::move(*c);
  thread_ = std::thread([this] { loop(); });
}

void Publisher::nudge(uint64_t written_seq) {
  (void)written_seq;  // the file says how far it goes; the frame only wakes us
  std::lock_guard lock(mu_);
  ++nudged_;
  cv_.notify_all();
}

base::Result<uint64_t> Publisher::last_published() {
  natsMsg* m = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_GetLastMsg(&m, conn_.js.get(), o_.prefix.c_str(), subject_.c_str(), nullptr, &jerr);
  if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr) return uint64_t{0};
  if (s != NATS_OK) return nats_error("js_GetLastMsg", subject_, s, jerr);
  Msg own(m);
  const char* v = nullptr;
  if (natsMsgHeader_Get(m, "Cellos-Last-Seq", &v) != NATS_OK || !v)
    return base::value_error(subject_, "last message has no Cellos-Last-Seq header");
  return std::strtoull(v, nullptr, 10);
}

void Publisher::reopen() {
  fd_.reset();
  offset_ = 0;
  partial_.clear();
  batch_.clear();
  auto fd = base::open_at(AT_FDCWD, o_.log_path, O_RDONLY);
  if (fd) fd_ = std::move(*fd);
}

void Publisher::loop() {
  // Until the server answers: the stream, and where this host's batches stopped.
  for (;;) {
    auto r = ensure_events_stream(conn_.js.get(), o_.prefix, o_.duplicate_window_s);
    auto last = r ? last_published() : base::Result<uint64_t>(std::move(r).error());
    if (last) {
      published_ = *last;
      break;
    }
    ch_.note("nats events: " + last.error().message() + "; retrying");
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  ch_.send(Frame{Kind::kPublished, published_, 0, {}, {}, "resuming after seq " + std::to_string(published_), {}});
  reopen();
  uint64_t seen = 0;
  for (;;) {
    bool ok = pump();
    std::unique_lock lock(mu_);
    // A failed publish is retried after a short wait; otherwise wait for the next write.
    cv_.wait_for(lock, ok ? std::chrono::seconds(1) : std::chrono::milliseconds(250),
                 [&] { return ok && nudged_ != seen; });
    seen = nudged_;
  }
}

bool Publisher::pump() {
  if (pending_publish_) {
    // After a failure the publish may have been stored with its ack lost: ask the stream
    // first, so a retry past the duplicate window still never duplicates.
    if (failing_) {
      auto last = last_published();
      if (last && *last >= pending_last_) {
        published_ = *last;
        pending_publish_ = false;
        batch_.clear();
      }
    }
    if (pending_publish_ && !publish(batch_first_, pending_last_)) return false;
  }
  if (!fd_) reopen();
  if (!fd_) return true;  // no log yet
  struct stat st {};
  if (::fstat(fd_.get(), &st) == 0 && (st.st_nlink == 0 || static_cast<uint64_t>(st.st_size) < offset_)) {
    // Replaced or cut underneath: read the path again from its start; sequence numbers
    // already in the stream are skipped.
    reopen();
    if (!fd_) return true;
  }
  char buf[64 << 10];
  for (;;) {
    if (!drain_lines()) return false;
    ssize_t n = ::pread(fd_.get(), buf, sizeof buf, static_cast<off_t>(offset_));
    if (n <= 0) return true;
    offset_ += static_cast<uint64_t>(n);
    partial_.append(buf, static_cast<size_t>(n));
  }
}

bool Publisher::drain_lines() {
  size_t start = 0;
  for (size_t nl; (nl = partial_.find('\n', start)) != std::string::npos; start = nl + 1) {
    std::string_view line(partial_.data() + start, nl - start);
    const uint64_t seq = seq_of(line);
    if (seq == 0 || seq <= published_) continue;  // in the stream already (resume)
    if (batch_.empty()) batch_first_ = seq;
    batch_.append(line);
    batch_ += '\n';
    if (!is_manifest(line)) continue;
    pending_publish_ = true;
    pending_last_ = seq;
    if (!publish(batch_first_, seq)) {
      partial_.erase(0, nl + 1);
      return false;
    }
  }
  partial_.erase(0, start);
  return true;
}

bool Publisher::publish(uint64_t first, uint64_t last) {
  natsMsg* m = nullptr;
  natsMsg_Create(&m, subject_.c_str(), nullptr, batch_.data(), static_cast<int>(batch_.size()));
  Msg own(m);
  const std::string id = batch_msg_id(o_.host_id, last);
  natsMsgHeader_Set(m, "Nats-Msg-Id", id.c_str());
  natsMsgHeader_Set(m, "Cellos-First-Seq", std::to_string(first).c_str());
  natsMsgHeader_Set(m, "Cellos-Last-Seq", std::to_string(last).c_str());
  natsMsgHeader_Set(m, "Cellos-Host", o_.host_id.c_str());
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = 5000;
  jsPubAck* pa = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_PublishMsg(&pa, conn_.js.get(), m, &po, &jerr);
  if (pa) jsPubAck_Destroy(pa);
  if (s != NATS_OK) {
    if (!failing_)
      ch_.note("nats events: publishing batch " + std::to_string(first) + ".." + std::to_string(last) +
               " failed: " + nats_error("js_PublishMsg", subject_, s, jerr).message() +
               "; the local log keeps every event, retrying");
    failing_ = true;
    return false;
  }
  if (failing_) ch_.note("nats events: publishing again from seq " + std::to_string(first));
  failing_ = false;
  published_ = last;
  pending_publish_ = false;
  batch_.clear();
  ch_.send(Frame{Kind::kPublished, last, 0, {}, {}, {}, {}});
  return true;
}

}  // namespace cellos::reactor::nats
