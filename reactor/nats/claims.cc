#include "reactor/nats/claims.h"

#include <nlohmann/json.hpp>

namespace cellos::reactor::nats {
namespace {

// Compare-and-set races are with this host's own threads (a renewal beside a completion) or
// with another host's takeover: a few rounds of read-then-set settle either.
constexpr int kCasRounds = 4;

std::string status_text(natsStatus s) {
  std::string t = natsStatus_GetText(s);
  if (const char* last = nats_GetLastError(nullptr); last && *last) t += std::string(": ") + last;
  return t;
}

}  // namespace

std::string Claims::record(const std::string& spec_id, uint64_t seq, const std::string& state) const {
  return nlohmann::json{{"specId", spec_id}, {"streamSeq", seq}, {"hostId", o_.host_id}, {"state", state}}.dump();
}

int Claims::get(const std::string& key, Entry* e, std::string* err) {
  kvEntry* raw = nullptr;
  natsStatus s = kvStore_Get(&raw, kv_, key.c_str());
  if (s == NATS_NOT_FOUND) return 0;
  if (s != NATS_OK) {
    if (err) *err = "kvStore_Get(" + key + "): " + status_text(s);
    return -1;
  }
  e->rev = kvEntry_Revision(raw);
  e->raw.assign(static_cast<const char*>(kvEntry_Value(raw)), static_cast<size_t>(kvEntry_ValueLen(raw)));
  kvEntry_Destroy(raw);
  auto j = nlohmann::json::parse(e->raw, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    e->host = e->state = "?";
    return 1;
  }
  e->host = j.value("hostId", std::string("?"));
  // Records written before claims existed are completion records without a state.
  e->state = j.value("state", std::string("completed"));
  return 1;
}

Claims::Decision Claims::claim(const std::string& key, const std::string& spec_id, uint64_t seq) {
  const std::string mine = record(spec_id, seq, "claimed");
  for (int round = 0; round < kCasRounds; ++round) {
    uint64_t rev = 0;
    natsStatus s = kvStore_CreateString(&rev, kv_, key.c_str(), mine.c_str());
    if (s == NATS_OK) {
      seen_.erase(key);
      return {Decision::kRun, ""};
    }
    // Whatever failed (it exists, or no answer), the record itself says what to do.
    Entry e;
    std::string err = "kvStore_Create(" + key + "): " + status_text(s);
    int found = get(key, &e, &err);
    if (found < 0) return {Decision::kUnknown, err};
    if (found == 0) continue;  // deleted meanwhile, or the create's answer was lost: again
    if (e.state == "completed") {
      seen_.erase(key);
      return {Decision::kCompleted, "completed on host " + e.host + " already"};
    }
    if (e.host == o_.host_id && e.state == "claimed") return {Decision::kRun, "claimed by this host already"};
    const auto now = std::chrono::steady_clock::now();
    bool take = e.state == "released" || e.host == o_.host_id;
    if (!take) {
      auto [it, fresh] = seen_.try_emplace(key, Seen{e.rev, now});
      if (!fresh && it->second.rev != e.rev) it->second = Seen{e.rev, now};
      take = now - it->second.since >= std::chrono::milliseconds(kTakeoverAckWaits * o_.ack_wait_ms);
      if (!take) return {Decision::kBusy, "claimed by host " + e.host};
    }
    nlohmann::json taken = nlohmann::json::parse(mine);
    auto was = nlohmann::json::parse(e.raw, nullptr, false);
    const int64_t claims = was.is_object() ? was.value("claims", int64_t{1}) : 1;
    if (e.state != "released") {
      taken["takenOverFrom"] = e.host;
      taken["claims"] = claims + 1;
      if (claims >= o_.max_claims)
        return {Decision::kGiveUp, std::to_string(claims) + " hosts claimed it and none completed it"};
    } else {
      taken["claims"] = claims;  // given back unrun: not a failed run
    }
    s = kvStore_UpdateString(&rev, kv_, key.c_str(), taken.dump().c_str(), e.rev);
    if (s == NATS_OK) {
      seen_.erase(key);
      return {Decision::kRun, e.state == "released" ? "released by host " + e.host
                                                     : "taken over from host " + e.host +
                                                           " (its claim was not renewed)"};
    }
    // Someone else moved first (or the answer was lost): read it again.
  }
  return {Decision::kUnknown, "claim of " + key + " kept changing"};
}

Claims::Lease Claims::renew(const std::string& key, std::string* holder) {
  for (int round = 0; round < kCasRounds; ++round) {
    Entry e;
    int found = get(key, &e, nullptr);
    if (found < 0) return Lease::kUnknown;
    if (found == 0) return Lease::kUnknown;  // removed by hand: nobody else claimed it either
    if (e.host != o_.host_id) {
      if (holder) *holder = e.host;
      return Lease::kLost;
    }
    if (e.state != "claimed") return Lease::kHeld;  // completed or released by us: nothing to renew
    uint64_t rev = 0;
    // The same bytes again: what the takeover watches is the revision, which moves.
    if (kvStore_UpdateString(&rev, kv_, key.c_str(), e.raw.c_str(), e.rev) == NATS_OK) return Lease::kHeld;
  }
  return Lease::kUnknown;
}

Claims::Lease Claims::complete(const std::string& key, const std::string& rec, std::string* holder) {
  nlohmann::json j = nlohmann::json::parse(rec, nullptr, false);
  if (j.is_discarded() || !j.is_object()) j = nlohmann::json::object();
  j["state"] = "completed";
  j["hostId"] = o_.host_id;
  const std::string body = j.dump();
  for (int round = 0; round < kCasRounds; ++round) {
    Entry e;
    int found = get(key, &e, nullptr);
    if (found < 0) return Lease::kUnknown;
    uint64_t rev = 0;
    if (found == 0) {
      // No claim to complete (the bucket was emptied by hand): a create still fences a
      // concurrent claimer.
      if (kvStore_CreateString(&rev, kv_, key.c_str(), body.c_str()) == NATS_OK) return Lease::kHeld;
      continue;
    }
    if (e.host != o_.host_id) {
      if (holder) *holder = e.host;
      return Lease::kLost;
    }
    if (e.state == "completed") return Lease::kHeld;
    // Who held it before this host stays on the record (an operator's trail of a takeover).
    auto was = nlohmann::json::parse(e.raw, nullptr, false);
    if (!was.is_discarded() && was.is_object() && was.contains("takenOverFrom")) {
      j["takenOverFrom"] = was["takenOverFrom"];
      const std::string with = j.dump();
      if (kvStore_UpdateString(&rev, kv_, key.c_str(), with.c_str(), e.rev) == NATS_OK) return Lease::kHeld;
      continue;
    }
    if (kvStore_UpdateString(&rev, kv_, key.c_str(), body.c_str(), e.rev) == NATS_OK) return Lease::kHeld;
  }
  return Lease::kUnknown;
}

bool Claims::completed(const std::string& key) {
  Entry e;
  return get(key, &e, nullptr) == 1 && e.state == "completed";
}

void Claims::release(const std::string& key) {
  for (int round = 0; round < kCasRounds; ++round) {
    Entry e;
    if (get(key, &e, nullptr) <= 0 || e.host != o_.host_id || e.state != "claimed") return;
    auto j = nlohmann::json::parse(e.raw, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return;
    j["state"] = "released";
    uint64_t rev = 0;
    if (kvStore_UpdateString(&rev, kv_, key.c_str(), j.dump().c_str(), e.rev) == NATS_OK) return;
  }
}

}  // namespace cellos::reactor::nats
