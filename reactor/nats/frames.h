// The frames between the fleet daemon and its NATS companion (cellos-reactor-nats).
//
// Why a companion process at all: libnats starts threads of its own, and the reactor is one
// thread that owns all its state, so libnats stays behind an explicit thread boundary: a queue
// plus a descriptor read through the ring. Here that boundary is a process boundary, because cellos-reactor links
// fully -static (see reactor/CMakeLists.txt) and Debian ships libnats only as a shared library:
// libnats lives in build/cellos-reactor-nats, a dynamically linked executable the daemon spawns,
// and the queue is a SOCK_SEQPACKET socketpair the reactor reads and writes through its ring.
// One datagram is one frame, so no framing layer is needed and a frame is never torn.
//
// A frame is: kind (u8), seq (u64), count (u64), then token, key, text and claim, each a u32
// length and its bytes. Integers are in host byte order: both ends are on one host, one build.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "base/input_limits.h"
#include "base/result.h"

namespace cellos::reactor::nats {

enum class Kind : uint8_t {
  // reactor -> companion
  kFetch = 1,        // count: more specs the reactor has free slots for (credit)
  kInProgress = 2,   // token, seq, claim: the spec's cell still runs (or waits): push AckWait
                     // back and renew the claim (-> kClaimLost when another host took it over)
  kNak = 3,          // token, seq, claim: a spec given back unrun (the daemon stops): release
                     // the claim, then redeliver it now; -> kSettled
  kTerm = 4,         // token, key = claim key (or ""), text = record: an invalid spec: its claim
                     // becomes a "rejected" completion record, then it is never redelivered
  kCompleted = 5,    // token, key = claim key, text = record: the claim becomes the completion
                     // record (compare-and-set), then ack; -> kSettled (or kClaimLost)
  kLogWritten = 6,   // seq: the local event log is on disk through this cellosseq
  // companion -> reactor
  kSpec = 32,        // token, seq = stream sequence, count = delivery count, text = spec bytes,
                     // claim = its claim key, held by this host ("" for a spec with no id)
  kSettled = 33,     // token: a kCompleted, kTerm or kNak is done (resend it otherwise)
  kDuplicate = 34,   // seq = stream sequence, key = spec id, text: already completed, acked unrun
  kPublished = 35,   // seq: the stream holds this host's batches through this cellosseq
  kState = 36,       // count = 1 connected, 0 not; text = which connection and why
  kNote = 37,        // text: one line for the daemon's stderr (errors included)
  kClaimLost = 38,   // seq, token, claim, text: another host took this spec's claim over:
                     // the daemon kills its cell and never completes it
  kRecorded = 39,    // seq, token: a kCompleted's record is in the bucket (its ack follows);
                     // the daemon writes the cell's held events to its log now
};

struct Frame {
  Kind kind = Kind::kNote;
  uint64_t seq = 0;
  uint64_t count = 0;
  // The spec message's ack subject ($JS.ACK.<stream>.<consumer>...): acks, heartbeats and
  // terms are publications to it, so any connection can send them, and a restarted companion
  // can still settle a spec an earlier one fetched.
  std::string token;
  std::string key;
  std::string text;
  // The spec's record in the completion bucket that this host holds (see claims.h).
  std::string claim;
};

// The largest frame: a spec (at most kMaxSpecBytes, the one cap of every intake) and its
// token. Both sockets' buffers are raised to hold a few of these (a SEQPACKET datagram must fit
// the send buffer whole).
using base::kMaxSpecBytes;
inline constexpr size_t kMaxFrameBytes = kMaxSpecBytes + (64 << 10);

std::string encode(const Frame& f);
base::Result<Frame> decode(std::span<const std::byte> bytes);

// The completion record's KV key for a spec id. Spec ids are [A-Za-z0-9._-]; KV keys allow
// [-/_=.A-Za-z0-9] but treat '.' as a token separator (no empty tokens, no leading or trailing
// dot), so '.' is written as "=2E" and the key is always valid.
std::string completion_key(std::string_view spec_id);
// The claim (and later completion) record of one stream message: "<completion key>.<seq>".
// Keyed by the message, not the id alone: the same id submitted again later is another message
// and runs again, while a redelivery of the first finds the first's record.
std::string claim_key(std::string_view spec_id, uint64_t stream_seq);

// Nats-Msg-Id of the batch sealed by manifest `last_seq` on host `host_id`: the server's
// duplicate window drops a batch published twice (a retry after a lost publish ack).
std::string batch_msg_id(std::string_view host_id, uint64_t last_seq);

// Subject and stream names for [events.nats]: the stream is `prefix`, each host publishes on
// `prefix.<host_id>`.
std::string events_subject(std::string_view prefix, std::string_view host_id);

}  // namespace cellos::reactor::nats
