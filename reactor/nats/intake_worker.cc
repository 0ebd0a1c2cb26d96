#include "reactor/nats/intake_worker.h"

#include <chrono>
#include <nlohmann/json.hpp>

namespace cellos::reactor::nats {
namespace {

constexpr int64_t kLongPollMs = 5000;  // an empty queue: the server holds the pull this long
constexpr int kMaxBatch = 256;

std::string data_of(natsMsg* m) {
  return std::string(natsMsg_GetData(m), static_cast<size_t>(natsMsg_GetDataLength(m)));
}

}  // namespace

IntakeWorker::~IntakeWorker() {
  // The process exits without joining: libnats' threads and ours die with it.
  if (fetcher_.joinable()) fetcher_.detach();
  if (settler_.joinable()) settler_.detach();
}

void IntakeWorker::start() {
  ConnectOptions co;
  co.url = o_.url;
  co.name = "cellos-reactor " + o_.host_id + " intake";
  co.on_state = [this](bool up, const std::string& why) {
    ch_.send(Frame{Kind::kState, 0, up ? 1u : 0u, {}, {}, "intake: " + why});
  };
  auto c = connect(std::move(co));
  if (!c) {
    ch_.note("nats intake: " + c.error().message());
    std::_Exit(1);
  }
  conn_ = std::move(*c);
  fetcher_ = std::thread([this] { fetch_loop(); });
  settler_ = std::thread([this] { settle_loop(); });
}

void IntakeWorker::add_credit(uint64_t n) {
  std::lock_guard lock(mu_);
  credit_ += n;
  cv_.notify_all();
}

void IntakeWorker::signal(const std::string& token, const char* body) {
  natsConnection_PublishString(conn_.nc.get(), token.c_str(), body);
}

void IntakeWorker::settle(Frame f) {
  std::lock_guard lock(mu_);
  settle_q_.push_back(std::move(f));
  cv_.notify_all();
}

// Until the server answers: the stream, the consumer and the bucket, created when absent.
bool IntakeWorker::setup() {
  if (auto r = ensure_work_queue(conn_.js.get(), o_.queue); !r) {
    ch_.note("nats intake: " + r.error().message() + "; retrying");
    return false;
  }
  auto kv = completion_bucket(conn_.js.get(), o_.bucket);
  if (!kv) {
    ch_.note("nats intake: " + kv.error().message() + "; retrying");
    return false;
  }
  auto sub = pull_subscribe(conn_.js.get(), o_.queue);
  if (!sub) {
    ch_.note("nats intake: " + sub.error().message() + "; retrying");
    return false;
  }
  std::lock_guard lock(mu_);
  kv_ = std::move(*kv);
  sub_ = std::move(*sub);
  ready_ = true;
  cv_.notify_all();
  return true;
}

bool IntakeWorker::already_completed(natsMsg* m, uint64_t stream_seq, uint64_t delivered) {
  // A first delivery cannot have run anywhere: only redeliveries cost a KV lookup.
  if (delivered <= 1) return false;
  auto j = nlohmann::json::parse(data_of(m), nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("spec") || !j["spec"].is_object() ||
      !j["spec"].contains("id") || !j["spec"]["id"].is_string())
    return false;  // the daemon rejects it, with the parser's reason
  const std::string id = j["spec"]["id"].get<std::string>();
  kvEntry* e = nullptr;
  natsStatus s = kvStore_Get(&e, kv_.get(), completion_key(id).c_str());
  if (s == NATS_NOT_FOUND) return false;
  if (s != NATS_OK) {
    // Unknown: running it might run it twice. Give it back; it comes again after AckWait.
    ch_.note("nats intake: completion lookup for " + id + " failed (" + natsStatus_GetText(s) +
             "): spec handed back");
    natsConnection_PublishString(conn_.nc.get(), natsMsg_GetReply(m), "-NAK");
    return true;
  }
  std::string rec(kvEntry_ValueString(e));
  kvEntry_Destroy(e);
  auto r = nlohmann::json::parse(rec, nullptr, false);
  // The same id submitted again later is a new message (another stream sequence): it runs.
  if (r.is_discarded() || r.value("streamSeq", uint64_t{0}) != stream_seq) return false;
  natsConnection_PublishString(conn_.nc.get(), natsMsg_GetReply(m), "+ACK");
  ch_.send(Frame{Kind::kDuplicate, stream_seq, delivered, {}, id,
                 "completed on host " + r.value("hostId", std::string("?")) + " already"});
  return true;
}

void IntakeWorker::fetch_loop() {
  while (!setup()) std::this_thread::sleep_for(std::chrono::seconds(1));
  for (;;) {
    uint64_t want = 0;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return credit_ > 0; });
      want = std::min<uint64_t>(credit_, kMaxBatch);
    }
    natsMsgList list{};
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = natsSubscription_Fetch(&list, sub_.get(), static_cast<int>(want), kLongPollMs, &jerr);
    if (s == NATS_TIMEOUT) continue;  // the long poll expired: poll again
    if (s != NATS_OK) {
      natsMsgList_Destroy(&list);
      std::this_thread::sleep_for(std::chrono::milliseconds(250));  // disconnected: wait
      continue;
    }
    for (int i = 0; i < list.Count; ++i) {
      natsMsg* m = list.Msgs[i];
      jsMsgMetaData* meta = nullptr;
      if (natsMsg_GetMetaData(&meta, m) != NATS_OK || !natsMsg_GetReply(m)) continue;
      const uint64_t seq = meta->Sequence.Stream, delivered = meta->NumDelivered;
      jsMsgMetaData_Destroy(meta);
      if (already_completed(m, seq, delivered)) continue;  // its credit stays unused
      Frame f{Kind::kSpec, seq, delivered, natsMsg_GetReply(m), {}, {}};
      if (static_cast<size_t>(natsMsg_GetDataLength(m)) > kMaxSpecBytes)
        f.key = "too-large:" + std::to_string(natsMsg_GetDataLength(m));
      else
        f.text = data_of(m);
      {
        std::lock_guard lock(mu_);
        if (credit_) --credit_;
      }
      ch_.send(f);
    }
    natsMsgList_Destroy(&list);
  }
}

void IntakeWorker::settle_loop() {
  for (;;) {
    Frame f;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return ready_ && !settle_q_.empty(); });
      f = std::move(settle_q_.front());
      settle_q_.pop_front();
    }
    auto backoff = std::chrono::milliseconds(100);
    if (f.kind == Kind::kCompleted) {
      // The record first, then the ack: a host dying between them leaves a redelivery the
      // bucket already answers, never a spec acked but unrecorded.
      for (;;) {
        uint64_t rev = 0;
        natsStatus s = kvStore_PutString(&rev, kv_.get(), f.key.c_str(), f.text.c_str());
        if (s == NATS_OK) break;
        std::this_thread::sleep_for(backoff);
        backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
      }
    }
    const char* body = f.kind == Kind::kCompleted ? "+ACK" : "+TERM";
    // A request, so the server confirms it (an AckSync); a few tries, then the record in the
    // bucket answers a redelivery anyway.
    for (int i = 0; i < 5; ++i) {
      natsMsg* reply = nullptr;
      natsStatus s = natsConnection_RequestString(&reply, conn_.nc.get(), f.token.c_str(), body, 2000);
      if (reply) natsMsg_Destroy(reply);
      if (s == NATS_OK) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    ch_.send(Frame{Kind::kSettled, 0, 0, f.token, {}, {}});
  }
}

}  // namespace cellos::reactor::nats
