// cellos-reactor-nats: the fleet daemon's NATS companion, and the one-shot NATS commands the
// `cellos-reactor submit --nats` and `events fetch --nats` commands exec.
//
//   serve --fd N --parent-pid P --host-id H [intake flags] [events flags]
//       spawned by the daemon (never by hand): frames on fd N (reactor/nats/frames.h)
//   publish --url U --stream S --subject X          the spec on stdin, already validated
//   fetch-events --url U --stream S --subject X     every batch on X, in order, to stdout
//
// Dynamically linked, unlike cellos-reactor: libnats exists here only as a shared library.
#include <sys/prctl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>
#include <string>

#include "reactor/nats/channel.h"
#include "reactor/nats/frames.h"
#include "reactor/nats/intake_worker.h"
#include "reactor/nats/js.h"
#include "reactor/nats/publisher.h"

namespace nats = cellos::reactor::nats;

namespace {

int fail(const std::string& line) {
  std::fprintf(stderr, "cellos-reactor: %s\n", line.c_str());
  return 1;
}

struct ServeFlags {
  int fd = 3;
  int parent = 0;
  std::string host_id;
  std::string intake_url, stream, subject, durable, bucket;
  int64_t ack_wait_ms = 30000, max_deliver = 5;
  std::string events_url, prefix, log_path;
  int64_t dup_window_s = 120;
};

int serve(const ServeFlags& f) {
  // Dies with the daemon. The parent check closes the race with a daemon that died before
  // the prctl: then we are already someone else's child.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != f.parent) return 0;
  nats::Channel ch(f.fd);
  std::unique_ptr<nats::IntakeWorker> intake;
  std::unique_ptr<nats::Publisher> publisher;
  if (!f.intake_url.empty()) {
    nats::IntakeWorkerOptions o;
    o.url = f.intake_url;
    o.host_id = f.host_id;
    o.bucket = f.bucket;
    o.queue = {f.stream, f.subject, f.durable, f.ack_wait_ms, f.max_deliver};
    intake = std::make_unique<nats::IntakeWorker>(std::move(o), ch);
    intake->start();
  }
  if (!f.events_url.empty()) {
    publisher = std::make_unique<nats::Publisher>(
        nats::PublisherOptions{f.events_url, f.prefix, f.host_id, f.log_path, f.dup_window_s}, ch);
    publisher->start();
  }
  while (auto fr = ch.receive()) {
    switch (fr->kind) {
      case nats::Kind::kFetch:
        if (intake) intake->add_credit(fr->count);
        break;
      case nats::Kind::kInProgress:
        if (intake) intake->lease(std::move(*fr));
        break;
      case nats::Kind::kNak:
      case nats::Kind::kTerm:
      case nats::Kind::kCompleted:
        if (intake) intake->settle(std::move(*fr));
        break;
      case nats::Kind::kLogWritten:
        if (publisher) publisher->nudge(fr->seq);
        break;
      default:
        ch.note("companion: unexpected frame kind " + std::to_string(static_cast<int>(fr->kind)));
    }
  }
  // The daemon closed its end: it is stopping. What it still wanted settled it waited for.
  std::_Exit(0);
}

std::string read_stdin() {
  std::string out;
  char buf[64 << 10];
  for (ssize_t n; (n = ::read(STDIN_FILENO, buf, sizeof buf)) > 0;) out.append(buf, static_cast<size_t>(n));
  return out;
}

// `submit --nats --wait`: the spec's claim record (claims.h), watched until it says completed:
// which host took it, then its outcome. The cell's output stays on the host that ran it.
// Its failures exit 125, as `submit --wait` does: 1 is a command's own exit status.
int wait_failed(const std::string& line) {
  fail(line);
  return 125;
}

int wait_completion(kvStore* kv, const std::string& key, const std::string& id) {
  kvWatcher* raw = nullptr;
  if (natsStatus s = kvStore_Watch(&raw, kv, key.c_str(), nullptr); s != NATS_OK)
    return wait_failed("submit --wait: " + nats::nats_error("kvStore_Watch", key, s).message());
  std::unique_ptr<kvWatcher, decltype(&kvWatcher_Destroy)> w(raw, kvWatcher_Destroy);
  std::string announced;
  for (;;) {
    kvEntry* e = nullptr;
    natsStatus s = kvWatcher_Next(&e, w.get(), 5000);
    if (s == NATS_TIMEOUT) continue;
    if (s != NATS_OK)
      return wait_failed("submit --wait: " + nats::nats_error("kvWatcher_Next", key, s).message() +
                  " (the spec is queued; its record is " + key + ")");
    if (!e) continue;  // the end of the initial values
    nlohmann::json rec = nlohmann::json::parse(
        std::string(static_cast<const char*>(kvEntry_Value(e)), static_cast<size_t>(kvEntry_ValueLen(e))),
        nullptr, false);
    kvEntry_Destroy(e);
    if (rec.is_discarded() || !rec.is_object()) continue;
    const std::string state = rec.value("state", ""), host = rec.value("hostId", rec.value("host", ""));
    if (state == "claimed" && host != announced) {
      announced = host;
      std::fprintf(stderr, "cellos-reactor: %s runs on host %s\n", id.c_str(), host.c_str());
    }
    if (state != "completed") continue;
    if (rec.value("reason", "") == "rejected") {
      std::fprintf(stderr, "cellos-reactor: rejected %s on host %s: %s\n", id.c_str(), host.c_str(),
                   rec.value("error", "").c_str());
      return 125;
    }
    const int status = rec.value("exitStatus", 125);
    std::fprintf(stderr,
                 "cellos-reactor: %s finished on host %s: reason %s, exit status %d%s%s; its logs "
                 "are on that host (`cellos-reactor show %s` there)\n",
                 id.c_str(), host.c_str(), rec.value("reason", "").c_str(), status,
                 rec.contains("error") ? ": " : "", rec.value("error", "").c_str(), id.c_str());
    return status;
  }
}

int publish(const std::string& url, const std::string& stream, const std::string& subject,
            const std::string& wait_bucket) {
  const std::string spec = read_stdin();
  auto c = nats::connect({url, "cellos-reactor submit", false, nullptr});
  if (!c) return fail("submit --nats: " + c.error().message());
  nats::WorkQueueOptions q{stream, subject, "", 0, 0};
  if (auto r = nats::ensure_work_queue(c->js.get(), q); !r) return fail("submit --nats: " + r.error().message());
  jsPubAck* pa = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_Publish(&pa, c->js.get(), subject.c_str(), spec.data(), static_cast<int>(spec.size()),
                            nullptr, &jerr);
  if (s != NATS_OK) return fail("submit --nats: " + nats::nats_error("js_Publish", subject, s, jerr).message());
  const uint64_t seq = pa->Sequence;
  if (wait_bucket.empty()) {
    std::printf("%s stream %s seq %llu\n", subject.c_str(), pa->Stream,
                static_cast<unsigned long long>(seq));
    jsPubAck_Destroy(pa);
    return 0;
  }
  std::fprintf(stderr, "cellos-reactor: submitted to %s stream %s seq %llu; waiting for it (Ctrl-C "
               "stops waiting, the spec stays queued)\n",
               subject.c_str(), pa->Stream, static_cast<unsigned long long>(seq));
  jsPubAck_Destroy(pa);
  // The spec was validated by `submit`: its id is there.
  const auto j = nlohmann::json::parse(spec, nullptr, false);
  const std::string id = j.is_object() && j.contains("spec") && j["spec"].is_object()
                             ? j["spec"].value("id", "")
                             : "";
  auto kv = nats::completion_bucket(c->js.get(), wait_bucket);
  if (!kv) return wait_failed("submit --wait: " + kv.error().message());
  return wait_completion(kv->get(), nats::claim_key(id, seq), id);
}

// Every message on `subject`, oldest first, through an ordered consumer: the batches' bytes
// concatenated are a JSONL log `cellos-reactor verify` checks.
int fetch_events(const std::string& url, const std::string& stream, const std::string& subject) {
  auto c = nats::connect({url, "cellos-reactor events fetch", false, nullptr});
  if (!c) return fail("events fetch: " + c.error().message());
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = stream.c_str();
  so.Ordered = true;
  so.Config.DeliverPolicy = js_DeliverAll;
  natsSubscription* raw = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_SubscribeSync(&raw, c->js.get(), subject.c_str(), nullptr, &so, &jerr);
  if (s != NATS_OK) return fail("events fetch: " + nats::nats_error("js_SubscribeSync", subject, s, jerr).message());
  nats::Sub sub(raw);
  uint64_t n = 0;
  for (;;) {
    natsMsg* m = nullptr;
    s = natsSubscription_NextMsg(&m, sub.get(), 2000);
    if (s == NATS_TIMEOUT) break;  // nothing on the subject (or it went quiet)
    if (s != NATS_OK) return fail("events fetch: " + nats::nats_error("natsSubscription_NextMsg", subject, s).message());
    nats::Msg own(m);
    ++n;
    std::fwrite(natsMsg_GetData(m), 1, static_cast<size_t>(natsMsg_GetDataLength(m)), stdout);
    jsMsgMetaData* meta = nullptr;
    bool last = natsMsg_GetMetaData(&meta, m) == NATS_OK && meta->NumPending == 0;
    if (meta) jsMsgMetaData_Destroy(meta);
    if (last) break;
  }
  std::fflush(stdout);
  std::fprintf(stderr, "cellos-reactor: events fetch: %llu batches from %s\n",
               static_cast<unsigned long long>(n), subject.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"cellos-reactor-nats: the fleet daemon's NATS JetStream companion"};
  app.require_subcommand(1);
  ServeFlags f;
  auto* serve_cmd = app.add_subcommand("serve", "run as the daemon's companion (spawned by it)");
  serve_cmd->add_option("--fd", f.fd)->required();
  serve_cmd->add_option("--parent-pid", f.parent)->required();
  serve_cmd->add_option("--host-id", f.host_id)->required();
  serve_cmd->add_option("--intake-url", f.intake_url);
  serve_cmd->add_option("--intake-stream", f.stream);
  serve_cmd->add_option("--intake-subject", f.subject);
  serve_cmd->add_option("--intake-durable", f.durable);
  serve_cmd->add_option("--completions-bucket", f.bucket);
  serve_cmd->add_option("--ack-wait-ms", f.ack_wait_ms);
  serve_cmd->add_option("--max-deliver", f.max_deliver);
  serve_cmd->add_option("--events-url", f.events_url);
  serve_cmd->add_option("--events-prefix", f.prefix);
  serve_cmd->add_option("--events-log", f.log_path);
  serve_cmd->add_option("--duplicate-window-s", f.dup_window_s);
  std::string url, stream, subject;
  auto* pub_cmd = app.add_subcommand("publish", "publish the spec on stdin to the work queue");
  pub_cmd->add_option("--url", url)->required();
  pub_cmd->add_option("--stream", stream)->required();
  pub_cmd->add_option("--subject", subject)->required();
  std::string wait_bucket;
  pub_cmd->add_option("--wait-bucket", wait_bucket,
                      "then wait for the spec's completion record in this bucket");
  auto* fetch_cmd = app.add_subcommand("fetch-events", "print every batch on a subject");
  fetch_cmd->add_option("--url", url)->required();
  fetch_cmd->add_option("--stream", stream)->required();
  fetch_cmd->add_option("--subject", subject)->required();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 125;
  }
  if (*serve_cmd) return serve(f);
  if (*pub_cmd) return publish(url, stream, subject, wait_bucket);
  return fetch_events(url, stream, subject);
}
