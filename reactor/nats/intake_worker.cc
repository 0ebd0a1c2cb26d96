#include "reactor/nats/intake_worker.h"

#include <chrono>
#include <nlohmann/json.hpp>

namespace cellos::reactor::nats {
namespace {

constexpr int64_t kLongPollMs = 5000;  // an empty queue: the server holds the pull this long
constexpr int kMaxBatch = 256;
constexpr uint64_t kMaxSweep = 10000;  // stream sequences one sweep looks at

std::string data_of(natsMsg* m) {
  return std::string(natsMsg_GetData(m), static_cast<size_t>(natsMsg_GetDataLength(m)));
}

}  // namespace

IntakeWorker::~IntakeWorker() {
  // The process exits without joining: libnats' threads and ours die with it.
  if (fetcher_.joinable()) fetcher_.detach();
  if (settler_.joinable()) settler_.detach();
  if (leaser_.joinable()) leaser_.detach();
}

void IntakeWorker::start() {
  ConnectOptions co;
  co.url = o_.url;
  co.name = "cellos-reactor " + o_.host_id + " intake";
  co.on_state = [this](bool up, const std::string& why) {
    ch_.send(Frame{Kind::kState, 0, up ? 1u : 0u, {}, {}, "intake: " + why, {}});
  };
  auto c = connect(std::move(co));
  if (!c) {
    ch_.note("nats intake: " + c.error().message());
    std::_Exit(1);
  }
  conn_ = std::move(*c);
  fetcher_ = std::thread([this] { fetch_loop(); });
  settler_ = std::thread([this] { settle_loop(); });
  leaser_ = std::thread([this] { lease_loop(); });
}

void IntakeWorker::add_credit(uint64_t n) {
  std::lock_guard lock(mu_);
  credit_ += n;
  cv_.notify_all();
}

void IntakeWorker::signal(const std::string& token, const char* body) {
  natsConnection_PublishString(conn_.nc.get(), token.c_str(), body);
}

void IntakeWorker::lease(Frame f) {
  signal(f.token, "+WPI");
  if (f.claim.empty()) return;
  std::lock_guard lock(mu_);
  lease_q_[f.claim] = std::move(f);
  cv_.notify_all();
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
  claims_ = std::make_unique<Claims>(kv_.get(), ClaimsOptions{o_.host_id, o_.queue.ack_wait_ms, o_.queue.max_deliver});
  sub_ = std::move(*sub);
  ready_ = true;
  cv_.notify_all();
  return true;
}

void IntakeWorker::nak_later(natsMsg* m, int64_t delay_ms) {
  // Naks count as deliveries, so the consumer has no MaxDeliver (js.cc): a spec waiting on
  // another host's claim is never dropped.
  const std::string body = "-NAK {\"delay\": " + std::to_string(delay_ms * 1000000) + "}";
  natsConnection_PublishString(conn_.nc.get(), natsMsg_GetReply(m), body.c_str());
}

bool IntakeWorker::claim(natsMsg* m, uint64_t stream_seq, uint64_t delivered, std::string* key) {
  auto j = nlohmann::json::parse(data_of(m), nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("spec") || !j["spec"].is_object() ||
      !j["spec"].contains("id") || !j["spec"]["id"].is_string())
    return true;  // no id to claim by: the daemon rejects it, with the parser's reason
  const std::string id = j["spec"]["id"].get<std::string>();
  *key = claim_key(id, stream_seq);
  const auto d = claims_->claim(*key, id, stream_seq);
  switch (d.what) {
    case Claims::Decision::kRun:
      if (!d.why.empty() && d.why.find("this host") == std::string::npos)
        ch_.note("nats intake: spec " + id + " (stream seq " + std::to_string(stream_seq) + "): " + d.why);
      return true;
    case Claims::Decision::kCompleted:
      // A lost ack (the server forgot it in a crash) or a late redelivery: acked again.
      natsConnection_PublishString(conn_.nc.get(), natsMsg_GetReply(m), "+ACK");
      ch_.send(Frame{Kind::kDuplicate, stream_seq, delivered, {}, id, d.why, {}});
      return false;
    case Claims::Decision::kBusy:
      // Back to the queue for a while: the owner completes it, or its claim goes stale and a
      // host that sees it again takes it over.
      nak_later(m, o_.queue.ack_wait_ms);
      return false;
    case Claims::Decision::kGiveUp:
      ch_.note("nats intake: spec " + id + " (stream seq " + std::to_string(stream_seq) +
               ") given up: " + d.why + " ([intake.nats] max_deliver); terminated");
      natsConnection_PublishString(conn_.nc.get(), natsMsg_GetReply(m), "+TERM");
      return false;
    case Claims::Decision::kUnknown:
      // Running it might run it twice: given back, it comes again.
      ch_.note("nats intake: claim for spec " + id + " failed (" + d.why + "): spec handed back");
      nak_later(m, 1000);
      return false;
  }
  return false;
}

void IntakeWorker::sweep() {
  jsConsumerInfo* ci = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  if (js_GetConsumerInfo(&ci, conn_.js.get(), o_.queue.stream.c_str(), o_.queue.durable.c_str(), nullptr,
                         &jerr) != NATS_OK)
    return;
  const uint64_t pending = ci->NumPending + static_cast<uint64_t>(std::max<int64_t>(ci->NumAckPending, 0));
  const uint64_t delivered = ci->Delivered.Stream;
  jsConsumerInfo_Destroy(ci);
  jsStreamInfo* si = nullptr;
  if (js_GetStreamInfo(&si, conn_.js.get(), o_.queue.stream.c_str(), nullptr, &jerr) != NATS_OK) return;
  const uint64_t first = si->State.FirstSeq, msgs = si->State.Msgs;
  jsStreamInfo_Destroy(si);
  // Every message is either still to deliver or awaiting its ack: nothing is stranded.
  if (msgs <= pending) return;
  // A bounded walk per idle poll (interior sequences may be long deleted).
  const uint64_t last = std::min(delivered, first + kMaxSweep);
  for (uint64_t seq = first; seq <= last; ++seq) {
    natsMsg* raw = nullptr;
    if (js_GetMsg(&raw, conn_.js.get(), o_.queue.stream.c_str(), seq, nullptr, &jerr) != NATS_OK) continue;
    Msg m(raw);
    auto j = nlohmann::json::parse(data_of(raw), nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("spec") || !j["spec"].is_object() ||
        !j["spec"].contains("id") || !j["spec"]["id"].is_string())
      continue;
    const std::string id = j["spec"]["id"].get<std::string>();
    // Completed: removing it is safe whatever the consumer thinks (a redelivery would be acked).
    if (!claims_->completed(claim_key(id, seq))) continue;
    if (js_DeleteMsg(conn_.js.get(), o_.queue.stream.c_str(), seq, nullptr, &jerr) == NATS_OK)
      ch_.note("nats intake: spec " + id + " (stream seq " + std::to_string(seq) +
               ") stayed in the queue though its consumer counts it acked (an ack the server "
               "forgot in a crash); it is recorded completed: removed");
  }
}

bool IntakeWorker::consumer_missing() {
  jsConsumerInfo* ci = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_GetConsumerInfo(&ci, conn_.js.get(), o_.queue.stream.c_str(), o_.queue.durable.c_str(),
                                    nullptr, &jerr);
  if (ci) jsConsumerInfo_Destroy(ci);
  return s == NATS_NOT_FOUND;
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
    if (s != NATS_OK) {
      natsMsgList_Destroy(&list);
      // The long poll expired, the server is away, or the consumer is gone (deleted, or a
      // server that lost it): made again, it delivers every spec not acked afresh, as first
      // deliveries, which the claims answer.
      if (s == NATS_TIMEOUT) sweep();
      if (consumer_missing()) {
        auto sub = pull_subscribe(conn_.js.get(), o_.queue);
        if (sub) {
          ch_.note("nats intake: consumer " + o_.queue.durable + " was gone: made again");
          sub_ = std::move(*sub);
          continue;
        }
      }
      if (s != NATS_TIMEOUT) std::this_thread::sleep_for(std::chrono::milliseconds(250));
      continue;
    }
    for (int i = 0; i < list.Count; ++i) {
      natsMsg* m = list.Msgs[i];
      jsMsgMetaData* meta = nullptr;
      if (natsMsg_GetMetaData(&meta, m) != NATS_OK || !natsMsg_GetReply(m)) continue;
      const uint64_t seq = meta->Sequence.Stream, delivered = meta->NumDelivered;
      jsMsgMetaData_Destroy(meta);
      std::string key;
      // Held until the daemon has the kSpec: a completion of this claim that ran after our read
      // of the record reports kSettled only after it, so the daemon still finds the spec
      // settling and settles the delivery instead of running the spec again.
      std::lock_guard order(claim_mu_);
      if (!claim(m, seq, delivered, &key)) continue;  // its credit stays unused
      Frame f{Kind::kSpec, seq, delivered, natsMsg_GetReply(m), {}, {}, key};
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
    if (f.kind == Kind::kNak) {
      // Released first, so the host the nak sends it to need not wait out the takeover window.
      if (!f.claim.empty()) claims_->release(f.claim);
      signal(f.token, "-NAK");
      ch_.send(Frame{Kind::kSettled, 0, 0, f.token, {}, {}, {}});
      continue;
    }
    if (f.kind == Kind::kCompleted || (f.kind == Kind::kTerm && !f.key.empty())) {
      // The record first, then the ack: a host dying between them leaves a redelivery the
      // bucket already answers, never a spec acked but unrecorded. A compare-and-set from our
      // claim: a host fenced off meanwhile records and acks nothing.
      Claims::Lease l;
      std::string holder;
      auto complete = [&] {
        std::lock_guard order(claim_mu_);  // see fetch_loop
        return claims_->complete(f.key, f.text, &holder);
      };
      while ((l = complete()) == Claims::Lease::kUnknown) {
        std::this_thread::sleep_for(backoff);
        backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
      }
      if (l == Claims::Lease::kLost && f.kind == Kind::kTerm) {
        // Another host took the claim over meanwhile: its record stands; the term below still
        // ends the delivery this host was given.
      } else if (l == Claims::Lease::kLost) {
        ch_.send(Frame{Kind::kClaimLost, f.seq, 0, f.token, {}, "host " + holder + " took it over before this host recorded its completion", f.key});
        ch_.send(Frame{Kind::kSettled, 0, 0, f.token, {}, {}, {}});
        continue;
      }
    }
    if (f.kind == Kind::kCompleted) ch_.send(Frame{Kind::kRecorded, f.seq, 0, f.token, {}, {}, {}});
    // A completion replayed from the daemon's journal has no delivery to ack through: the
    // spec's next delivery finds it completed and is acked then.
    if (f.token.rfind("$JS.", 0) != 0) {
      ch_.send(Frame{Kind::kSettled, 0, 0, f.token, {}, {}, {}});
      continue;
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
    ch_.send(Frame{Kind::kSettled, 0, 0, f.token, {}, {}, {}});
  }
}

void IntakeWorker::lease_loop() {
  for (;;) {
    Frame f;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return ready_ && !lease_q_.empty(); });
      f = std::move(lease_q_.begin()->second);
      lease_q_.erase(lease_q_.begin());
    }
    std::string holder;
    // kUnknown (no answer): the next heartbeat tries again; the takeover window is nine of them.
    if (claims_->renew(f.claim, &holder) == Claims::Lease::kLost)
      ch_.send(Frame{Kind::kClaimLost, f.seq, 0, f.token, {}, "host " + holder + " took its claim over", f.claim});
  }
}

}  // namespace cellos::reactor::nats
