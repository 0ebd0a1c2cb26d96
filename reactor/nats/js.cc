#include "reactor/nats/js.h"

namespace cellos::reactor::nats {
namespace {

void on_disconnected(natsConnection*, void* closure) {
  auto* o = static_cast<ConnectOptions*>(closure);
  if (o->on_state) o->on_state(false, "disconnected from " + o->url);
}
void on_reconnected(natsConnection*, void* closure) {
  auto* o = static_cast<ConnectOptions*>(closure);
  if (o->on_state) o->on_state(true, "connected to " + o->url);
}

constexpr int64_t kNanos = 1000000;  // per millisecond

}  // namespace

base::Error nats_error(std::string call, std::string object, natsStatus s, jsErrCode jerr) {
  std::string d = natsStatus_GetText(s);
  if (jerr) d += " (JetStream error " + std::to_string(jerr) + ")";
  return base::Error{0, std::move(call), std::move(object), d, {}};
}

base::Result<Connection> connect(ConnectOptions o) {
  Connection c;
  c.ctx = std::make_unique<ConnectOptions>(std::move(o));
  natsOptions* opts = nullptr;
  if (natsOptions_Create(&opts) != NATS_OK) return nats_error("natsOptions_Create", "", NATS_NO_MEMORY);
  std::unique_ptr<natsOptions, void (*)(natsOptions*)> own(opts, natsOptions_Destroy);
  ConnectOptions* ctx = c.ctx.get();
  natsStatus s = natsOptions_SetURL(opts, ctx->url.c_str());
  if (s != NATS_OK) return nats_error("natsOptions_SetURL", "\"" + ctx->url + "\"", s);
  natsOptions_SetName(opts, ctx->name.c_str());
  natsOptions_SetTimeout(opts, 2000);
  if (ctx->retry_forever) {
    // Reconnect for ever, quickly: a server restart must not leave a host idle for long, and
    // the reconnect buffer holds acks and heartbeats published while it is down.
    natsOptions_SetMaxReconnect(opts, -1);
    natsOptions_SetReconnectWait(opts, 250);
    natsOptions_SetReconnectJitter(opts, 100, 1000);
    natsOptions_SetReconnectBufSize(opts, 8 << 20);
    natsOptions_SetPingInterval(opts, 2000);
    natsOptions_SetMaxPingsOut(opts, 2);
    natsOptions_SetRetryOnFailedConnect(opts, true, on_reconnected, ctx);
    natsOptions_SetDisconnectedCB(opts, on_disconnected, ctx);
    natsOptions_SetReconnectedCB(opts, on_reconnected, ctx);
  } else {
    natsOptions_SetMaxReconnect(opts, 0);
  }
  natsConnection* nc = nullptr;
  s = natsConnection_Connect(&nc, opts);
  // NATS_NOT_YET_CONNECTED: retry_forever keeps trying in the background.
  if (s != NATS_OK && !(ctx->retry_forever && s == NATS_NOT_YET_CONNECTED))
    return nats_error("natsConnection_Connect", ctx->url, s);
  c.nc.reset(nc);
  if (s == NATS_OK && ctx->on_state) ctx->on_state(true, "connected to " + ctx->url);
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = 5000;
  jsCtx* js = nullptr;
  s = natsConnection_JetStream(&js, nc, &jo);
  if (s != NATS_OK) return nats_error("natsConnection_JetStream", ctx->url, s);
  c.js.reset(js);
  return c;
}

base::Result<void> ensure_work_queue(jsCtx* js, const WorkQueueOptions& o) {
  jsStreamInfo* si = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_GetStreamInfo(&si, js, o.stream.c_str(), nullptr, &jerr);
  if (s == NATS_OK) {
    jsStreamInfo_Destroy(si);
    return base::ok();
  }
  if (s != NATS_NOT_FOUND) return nats_error("js_GetStreamInfo", "stream " + o.stream, s, jerr);
  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  const char* subjects[] = {o.subject.c_str()};
  cfg.Name = o.stream.c_str();
  cfg.Subjects = subjects;
  cfg.SubjectsLen = 1;
  // WorkQueue: a spec is removed once acked, and only one consumer may take it.
  cfg.Retention = js_WorkQueuePolicy;
  cfg.Storage = js_FileStorage;
  cfg.Duplicates = 120 * 1000 * kNanos;
  s = js_AddStream(&si, js, &cfg, nullptr, &jerr);
  if (s != NATS_OK && jerr != JSStreamNameExistErr)
    return nats_error("js_AddStream", "stream " + o.stream, s, jerr);
  if (si) jsStreamInfo_Destroy(si);
  return base::ok();
}

base::Result<Sub> pull_subscribe(jsCtx* js, const WorkQueueOptions& o) {
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = o.stream.c_str();
  so.Config.Durable = o.durable.c_str();
  so.Config.AckPolicy = js_AckExplicit;
  so.Config.AckWait = o.ack_wait_ms * kNanos;
  // Unlimited: a nak counts as a delivery, and a spec handed back while another host holds its
  // claim (claims.h) must never be dropped. The claims bound how often a spec runs
  // (max_deliver hosts).
  so.Config.MaxDeliver = -1;
  so.Config.MaxAckPending = 100000;
  so.Config.MaxWaiting = 512;
  natsSubscription* sub = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_PullSubscribe(&sub, js, o.subject.c_str(), o.durable.c_str(), nullptr, &so, &jerr);
  if (s != NATS_OK)
    return nats_error("js_PullSubscribe", "consumer " + o.stream + "/" + o.durable, s, jerr);
  return Sub(sub);
}

base::Result<void> ensure_events_stream(jsCtx* js, const std::string& prefix,
                                        int64_t duplicate_window_s) {
  jsStreamInfo* si = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_GetStreamInfo(&si, js, prefix.c_str(), nullptr, &jerr);
  if (s == NATS_OK) {
    jsStreamInfo_Destroy(si);
    return base::ok();
  }
  if (s != NATS_NOT_FOUND) return nats_error("js_GetStreamInfo", "stream " + prefix, s, jerr);
  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  const std::string all = prefix + ".>";
  const char* subjects[] = {all.c_str()};
  cfg.Name = prefix.c_str();
  cfg.Subjects = subjects;
  cfg.SubjectsLen = 1;
  cfg.Retention = js_LimitsPolicy;
  cfg.Storage = js_FileStorage;
  cfg.Duplicates = duplicate_window_s * 1000 * kNanos;
  s = js_AddStream(&si, js, &cfg, nullptr, &jerr);
  if (s != NATS_OK && jerr != JSStreamNameExistErr)
    return nats_error("js_AddStream", "stream " + prefix, s, jerr);
  if (si) jsStreamInfo_Destroy(si);
  return base::ok();
}

base::Result<Kv> completion_bucket(jsCtx* js, const std::string& bucket) {
  kvStore* kv = nullptr;
  natsStatus s = js_KeyValue(&kv, js, bucket.c_str());
  if (s == NATS_OK) return Kv(kv);
  if (s != NATS_NOT_FOUND) return nats_error("js_KeyValue", "bucket " + bucket, s);
  kvConfig cfg;
  kvConfig_Init(&cfg);
  cfg.Bucket = bucket.c_str();
  cfg.History = 1;
  cfg.StorageType = js_FileStorage;
  s = js_CreateKeyValue(&kv, js, &cfg);
  if (s != NATS_OK) return nats_error("js_CreateKeyValue", "bucket " + bucket, s);
  return Kv(kv);
}

}  // namespace cellos::reactor::nats
