#include "reactor/nats_bridge.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>

#include "reactor/nats_journal.h"

namespace cellos::reactor {

base::Result<std::unique_ptr<NatsBridge>> NatsBridge::create(NatsBridgeOptions o) {
  std::unique_ptr<NatsBridge> b(new NatsBridge(std::move(o)));
  b->hb_.bind(*b->o_.ring);
  const cells::Config& c = b->cfg_;
  CompanionOptions co;
  co.binary = b->o_.companion_binary.empty() ? Companion::beside_self() : b->o_.companion_binary;
  co.args = {"--host-id", c.host.id};
  if (c.intake.nats.enabled) {
    const auto& n = c.intake.nats;
    for (const auto& a : {std::string("--intake-url"), n.url, std::string("--intake-stream"), n.stream,
                          std::string("--intake-subject"), n.subject, std::string("--intake-durable"),
                          n.durable, std::string("--completions-bucket"), n.completions_bucket,
                          std::string("--ack-wait-ms"), std::to_string(n.ack_wait_seconds * 1000),
                          std::string("--max-deliver"), std::to_string(n.max_deliver)})
      co.args.push_back(a);
  }
  if (c.events.nats.enabled) {
    const auto& n = c.events.nats;
    for (const auto& a : {std::string("--events-url"), n.url, std::string("--events-prefix"), n.prefix,
                          std::string("--events-log"), c.events_path(),
                          std::string("--duplicate-window-s"), std::to_string(n.duplicate_window_seconds)})
      co.args.push_back(a);
  }
  NatsBridge* self = b.get();
  co.on_frame = [self](nats::Frame f) { self->on_frame(std::move(f)); };
  co.on_up = [self] { self->on_up(); };
  co.on_down = [self] { self->on_down(); };
  self->written_ = self->o_.events ? self->o_.events->written_seq() : 0;
  if (self->o_.events) self->o_.events->add_on_written([self](uint64_t s) { self->on_written(s); });
  if (c.intake.nats.enabled) self->replay_journal();
  auto comp = Companion::start(*self->o_.ring, std::move(co));
  if (!comp) return std::move(comp).error();
  b->companion_ = std::move(*comp);
  b->on_up();  // the spawn's own on_up came before companion_ was set
  return b;
}

void NatsBridge::on_up() {
  credit_ = 0;
  if (!companion_) return;  // create() calls it again once the companion is ours
  // A new companion knows nothing: what was unsettled goes again (a KV put and an ack are
  // idempotent), and the room the daemon has is offered afresh.
  for (const auto& [token, f] : unsettled_) companion_->send(f);
  if (room_) offer_room(room_);
}

void NatsBridge::on_down() { credit_ = 0; }

void NatsBridge::offer_room(uint64_t free) {
  room_ = free;
  if (!intake() || stopping_ || !companion_ || !companion_->up() || free <= credit_) return;
  companion_->send(nats::Frame{nats::Kind::kFetch, 0, free - credit_, {}, {}, {}, {}});
  credit_ = free;
}

void NatsBridge::give_back(const std::string& token) {
  // The claim is released with it, so another host runs it without waiting out the takeover.
  const Claim c = claims_.count(token) ? claims_[token] : Claim{};
  release(token);
  // A settlement: a daemon that stops waits for it like for a completion.
  settle(nats::Frame{nats::Kind::kNak, c.seq, 0, token, {}, {}, c.key});
}

void NatsBridge::term(const std::string& token, uint64_t stream_seq, const std::string& reason) {
  // A spec this host claimed gets a completion record saying it was rejected, so the claim is
  // not left "claimed" for ever and a `submit --nats --wait` client learns why.
  const Claim c = claims_.count(token) ? claims_[token] : Claim{};
  release(token);
  std::string record;
  if (!c.key.empty())
    record = nlohmann::json{{"streamSeq", stream_seq},
                            {"reason", "rejected"},
                            {"failure", "rejected"},
                            {"error", reason},
                            {"exitStatus", 125}}
                 .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  settle(nats::Frame{nats::Kind::kTerm, stream_seq, 0, token, c.key, std::move(record), {}});
}

void NatsBridge::completed(const std::string& token, uint64_t stream_seq, const std::string& spec_id,
                           std::string record, uint64_t on_disk, const nlohmann::json& events) {
  // seq: the spec's stream sequence, so a late redelivery can find its completion (settling).
  nats::Frame f{nats::Kind::kCompleted, stream_seq, 0, token, nats::claim_key(spec_id, stream_seq),
                std::move(record), {}};
  // Heartbeats go on until it is settled: the server must not redeliver it meanwhile.
  if (on_disk <= written_)
    settle(std::move(f), events);
  else
    waiting_disk_.emplace(on_disk, std::move(f));
}

bool NatsBridge::settling(uint64_t stream_seq, const std::string& token) {
  // seq is the spec's stream sequence in both (0 never is one).
  auto same = [&](const nats::Frame& f) {
    return f.seq == stream_seq && (f.kind == nats::Kind::kCompleted || f.kind == nats::Kind::kTerm);
  };
  for (auto& [on_disk, f] : waiting_disk_)
    if (same(f)) {
      nats::Frame again = f;
      again.token = token;
      waiting_disk_.emplace(on_disk, std::move(again));
      hold(token);  // heartbeats until it is settled, like the first delivery
      return true;
    }
  for (auto& [t, f] : unsettled_)
    if (same(f)) {
      nats::Frame again = f;
      again.token = token;
      hold(token);
      settle(std::move(again));
      return true;
    }
  return false;
}

namespace {
// Not a delivery's ack subject: the companion records the completion and acks nothing.
constexpr std::string_view kReplayToken = "journal:";
}  // namespace

void NatsBridge::replay_journal() {
  const std::string path = cfg_.host.state_dir + "/nats-settling.jsonl";
  if (auto text = base::read_file_at(AT_FDCWD, path, 64 << 20); text.ok()) {
    size_t n = 0;
    std::map<uint64_t, nlohmann::json> events;  // by stream seq: the cell's held events
    for (size_t at = 0, eol; (eol = text->find('\n', at)) != std::string::npos; at = eol + 1) {
      auto j = nlohmann::json::parse(text->substr(at, eol - at), nullptr, false);
      if (j.is_discarded() || !j.is_object()) continue;  // a line torn by a crash
      const uint64_t seq = j.value("seq", uint64_t{0});
      const std::string token = std::string(kReplayToken) + std::to_string(seq);
      if (!unsettled_.count(token)) ++n;
      unsettled_[token] = nats::Frame{nats::Kind::kCompleted, seq, 0, token, j.value("key", ""),
                                      j.value("record", ""), {}};
      if (auto e = j.find("events"); e != j.end() && e->is_object() && !events.count(seq))
        events[seq] = *e;
    }
    if (n)
      std::fprintf(stderr, "cellos-reactor: nats: %zu completions the previous daemon had not "
                   "recorded are recorded now\n", n);
    if (!events.empty()) write_journaled_events(events);
  }
  auto fd = base::open_at(AT_FDCWD, path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (!fd)
    std::fprintf(stderr, "cellos-reactor: nats: settling journal: %s\n", fd.error().message().c_str());
  else
    journal_ = std::move(*fd);
  trim_journal();  // empty unless something is left to settle (kept until it is)
}

void NatsBridge::write_journaled_events(const std::map<uint64_t, nlohmann::json>& events) {
  // The previous daemon was killed after the cell finished and before its held events were
  // on disk (or just after): those whose completed event the log lacks are written now, with
  // their own times, so the run has its one completed event (it is recorded, never run again).
  auto in_log = completed_events_in_log(cfg_);
  if (!in_log) {
    std::fprintf(stderr, "cellos-reactor: nats: settling journal: reading the event log: %s; "
                 "journaled cell events not written again\n", in_log.error().message().c_str());
    return;
  }
  const std::set<std::string> have(in_log->begin(), in_log->end());
  for (const auto& [seq, j] : events) {
    const std::string subject = journal_subject(j);
    if (subject.empty() || have.count(completed_key(subject, journal_time_us(j)))) continue;
    for (const auto& e : events_from_journal(j))
      if (o_.events) o_.events->emit(e);
    std::fprintf(stderr, "cellos-reactor: nats: cell %s (stream seq %llu) finished before the "
                 "previous daemon died and its events were not in the log: written from the "
                 "settling journal\n", subject.c_str(), static_cast<unsigned long long>(seq));
  }
}

void NatsBridge::journal(const nats::Frame& f, const nlohmann::json& events) {
  if (!journal_ || f.kind != nats::Kind::kCompleted) return;
  nlohmann::json j{{"seq", f.seq}, {"key", f.key}, {"record", f.text}};
  if (events.is_object()) j["events"] = events;
  const std::string line =
      j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  // One write, O_APPEND: a crash leaves at most a torn last line, which replay skips.
  if (::write(journal_.get(), line.data(), line.size()) != static_cast<ssize_t>(line.size()))
    std::fprintf(stderr, "cellos-reactor: nats: settling journal: write failed\n");
}

void NatsBridge::trim_journal() {
  if (!journal_) return;
  for (const auto& [token, f] : unsettled_)
    if (f.kind == nats::Kind::kCompleted) return;
  (void)::ftruncate(journal_.get(), 0);
}

void NatsBridge::settle(nats::Frame f, const nlohmann::json& events) {
  journal(f, events);
  if (companion_) companion_->send(f);
  unsettled_[f.token] = std::move(f);
}

void NatsBridge::on_written(uint64_t seq) {
  written_ = seq;
  while (!waiting_disk_.empty() && waiting_disk_.begin()->first <= seq) {
    nats::Frame f = std::move(waiting_disk_.begin()->second);
    waiting_disk_.erase(waiting_disk_.begin());
    settle(std::move(f));
  }
  if (cfg_.events.nats.enabled && companion_)
    companion_->send(nats::Frame{nats::Kind::kLogWritten, seq, 0, {}, {}, {}, {}});
}

void NatsBridge::on_frame(nats::Frame f) {
  switch (f.kind) {
    case nats::Kind::kSpec:
      if (credit_) --credit_;
      if (!f.claim.empty()) claims_[f.token] = Claim{f.seq, f.claim};
      if (o_.on_spec) o_.on_spec(std::move(f));
      break;
    case nats::Kind::kRecorded:
      if (o_.on_recorded) o_.on_recorded(f.seq);
      break;
    case nats::Kind::kSettled:
      if (auto u = unsettled_.find(f.token);
          u != unsettled_.end() && u->second.kind == nats::Kind::kCompleted && o_.on_recorded)
        o_.on_recorded(u->second.seq);  // (a companion without kRecorded)
      release(f.token);
      unsettled_.erase(f.token);
      trim_journal();
      break;
    case nats::Kind::kClaimLost:
      claim_lost(f);
      break;
    case nats::Kind::kDuplicate:
      std::fprintf(stderr, "cellos-reactor: nats: spec %s (stream seq %llu, delivery %llu) %s: "
                   "acked without running it again\n", f.key.c_str(),
                   static_cast<unsigned long long>(f.seq), static_cast<unsigned long long>(f.count),
                   f.text.c_str());
      break;
    case nats::Kind::kPublished:
      published_ = f.seq;
      if (!f.text.empty())
        std::fprintf(stderr, "cellos-reactor: nats: events: %s\n", f.text.c_str());
      break;
    case nats::Kind::kState:
    case nats::Kind::kNote:
      std::fprintf(stderr, "cellos-reactor: nats: %s\n", f.text.c_str());
      break;
    default:
      std::fprintf(stderr, "cellos-reactor: nats: unexpected frame kind %d\n", static_cast<int>(f.kind));
  }
}

void NatsBridge::claim_lost(const nats::Frame& f) {
  // Every trace of the spec goes: its deliveries' heartbeats, a settlement not yet done.
  std::erase_if(held_, [&](const auto& h) { return h.second.seq == f.seq; });
  std::erase_if(claims_, [&](const auto& c) { return c.second.seq == f.seq; });
  auto done = [&](const nats::Frame& u) { return u.seq == f.seq && u.kind == nats::Kind::kCompleted; };
  std::erase_if(unsettled_, [&](const auto& u) { return done(u.second); });
  std::erase_if(waiting_disk_, [&](const auto& w) { return done(w.second); });
  trim_journal();
  std::fprintf(stderr, "cellos-reactor: nats: fenced: stream seq %llu (%s): %s; this host kills "
               "its cell and never completes it\n", static_cast<unsigned long long>(f.seq),
               f.claim.c_str(), f.text.c_str());
  if (o_.on_claim_lost) o_.on_claim_lost(f.seq);
}

void NatsBridge::arm_heartbeat() {
  if (hb_.armed() || held_.empty()) return;
  // A third of AckWait: two heartbeats may be late before the server redelivers.
  hb_.start(std::chrono::milliseconds(cfg_.intake.nats.ack_wait_seconds * 1000 / 3), [this](int res) {
    if (res == -ECANCELED) return;
    heartbeat();
  });
}

void NatsBridge::heartbeat() {
  if (companion_)
    for (const auto& [t, c] : held_)
      companion_->send(nats::Frame{nats::Kind::kInProgress, c.seq, 0, t, {}, {}, c.key});
  arm_heartbeat();
}

void NatsBridge::stop() {
  stopping_ = true;
  hb_.cancel();
  held_.clear();
  if (companion_) companion_->stop();
}

}  // namespace cellos::reactor
