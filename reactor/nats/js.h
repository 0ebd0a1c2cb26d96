// The companion's handles on NATS: one owner per libnats object (connection, JetStream
// context, subscription, KV store, message), and the streams, consumer and bucket the fleet
// needs, created when absent. Only cellos-reactor-nats links this: the reactor never does.
#pragma once

#include <nats/nats.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "base/result.h"

namespace cellos::reactor::nats {

struct ConnDeleter {
  void operator()(natsConnection* c) const { natsConnection_Destroy(c); }
};
struct JsDeleter {
  void operator()(jsCtx* j) const { jsCtx_Destroy(j); }
};
struct SubDeleter {
  void operator()(natsSubscription* s) const { natsSubscription_Destroy(s); }
};
struct KvDeleter {
  void operator()(kvStore* k) const { kvStore_Destroy(k); }
};
struct MsgDeleter {
  void operator()(natsMsg* m) const { natsMsg_Destroy(m); }
};
using Conn = std::unique_ptr<natsConnection, ConnDeleter>;
using Js = std::unique_ptr<jsCtx, JsDeleter>;
using Sub = std::unique_ptr<natsSubscription, SubDeleter>;
using Kv = std::unique_ptr<kvStore, KvDeleter>;
using Msg = std::unique_ptr<natsMsg, MsgDeleter>;

// An error naming the libnats call, its object, the status and the JetStream error code.
base::Error nats_error(std::string call, std::string object, natsStatus s, jsErrCode jerr = static_cast<jsErrCode>(0));

struct ConnectOptions {
  std::string url;
  std::string name;  // shown by the server (`nats server report connections`)
  // Keep retrying in the background instead of failing (the daemon's companion); a one-shot
  // command wants the error instead.
  bool retry_forever = true;
  // Called from libnats' threads with true (connected again) or false (lost).
  std::function<void(bool up, const std::string& why)> on_state;
};

// A connection with its callbacks; `ctx` keeps the callbacks' closure alive as long as the
// connection.
struct Connection {
  std::unique_ptr<ConnectOptions> ctx;
  Conn nc;
  Js js;
};
base::Result<Connection> connect(ConnectOptions o);

struct WorkQueueOptions {
  std::string stream, subject, durable;
  int64_t ack_wait_ms = 30000;
  int64_t max_deliver = 5;  // not the consumer's MaxDeliver (unlimited): hosts that may claim a spec
};
// The intake stream (WorkQueue retention, file storage, 2 min duplicate window), created when
// absent. A stream that exists is used as it is.
base::Result<void> ensure_work_queue(jsCtx* js, const WorkQueueOptions& o);
// The durable pull consumer on it (explicit ack), created when absent, and a subscription.
base::Result<Sub> pull_subscribe(jsCtx* js, const WorkQueueOptions& o);

// The events stream `prefix` over subjects `prefix.>` (limits retention, file storage,
// duplicate window for Nats-Msg-Id), created when absent.
base::Result<void> ensure_events_stream(jsCtx* js, const std::string& prefix,
                                        int64_t duplicate_window_s);

// The completion bucket (history 1, file storage), created when absent.
base::Result<Kv> completion_bucket(jsCtx* js, const std::string& bucket);

}  // namespace cellos::reactor::nats
