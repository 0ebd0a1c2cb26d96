#include "reactor/nats_journal.h"

#include "sinks/cloudevent_json.h"
#include "sinks/log_io.h"

namespace cellos::reactor {

using nlohmann::json;

namespace {

json opt(const std::optional<int>& v) { return v ? json(*v) : json(); }
json opt(const std::optional<uint64_t>& v) { return v ? json(*v) : json(); }

sinks::CompletedReason reason_of(const std::string& name) {
  using R = sinks::CompletedReason;
  for (R r : {R::kExited, R::kSignaled, R::kTimeout, R::kOom, R::kSetupFailed, R::kShutdown})
    if (name == sinks::reason_name(r)) return r;
  return R::kExited;
}

template <typename T>
std::optional<T> get_opt(const json& j, const char* k) {
  auto it = j.find(k);
  if (it == j.end() || it->is_null()) return std::nullopt;
  return it->get<T>();
}

}  // namespace

json journal_events(const std::vector<sinks::Event>& held) {
  json out = json::object();
  for (const auto& e : held) {
    if (const auto* c = std::get_if<sinks::CompletedData>(&e.data)) {
      json j = {{"cellId", c->cell_id},       {"timeUs", e.time_us},
                {"correlationId", e.correlation_id},
                {"exitCode", opt(c->exit_code)}, {"signal", opt(c->signal)},
                {"durationMs", c->duration_ms}, {"reason", sinks::reason_name(c->reason)},
                {"error", c->error},           {"stdoutTruncated", c->stdout_truncated},
                {"stderrTruncated", c->stderr_truncated}, {"backend", c->backend}};
      if (c->resources)
        j["resources"] = {{"memoryPeakBytes", opt(c->resources->memory_peak_bytes)},
                          {"cpuUsageUsec", opt(c->resources->cpu_usage_usec)},
                          {"pidsPeak", opt(c->resources->pids_peak)},
                          {"oomKills", c->resources->oom_kills}};
      if (c->graceful_stop)
        j["gracefulStop"] = {{"cause", c->graceful_stop->cause},
                             {"graceSeconds", c->graceful_stop->grace_seconds},
                             {"exitedInTime", c->graceful_stop->exited_in_time}};
      out["completed"] = std::move(j);
    } else if (const auto* d = std::get_if<sinks::DestroyedData>(&e.data)) {
      out["destroyed"] = {{"cellId", d->cell_id},   {"timeUs", e.time_us},
                          {"correlationId", e.correlation_id},
                          {"succeeded", d->succeeded}, {"forced", d->forced},
                          {"reason", d->reason},    {"backend", d->backend}};
    }
  }
  return out.contains("completed") ? out : json();
}

std::vector<sinks::Event> events_from_journal(const json& j) {
  std::vector<sinks::Event> out;
  if (!j.is_object()) return out;
  try {
    if (auto it = j.find("completed"); it != j.end() && it->is_object()) {
      const json& c = *it;
      sinks::CompletedData d{c.value("cellId", ""),
                             get_opt<int>(c, "exitCode"),
                             get_opt<int>(c, "signal"),
                             c.value("durationMs", uint64_t{0}),
                             reason_of(c.value("reason", "")),
                             c.value("error", ""),
                             c.value("stdoutTruncated", false),
                             c.value("stderrTruncated", false),
                             std::nullopt,
                             std::nullopt,
                             c.value("backend", "")};
      if (auto r = c.find("resources"); r != c.end() && r->is_object())
        d.resources = sinks::ResourcesData{get_opt<uint64_t>(*r, "memoryPeakBytes"),
                                           get_opt<uint64_t>(*r, "cpuUsageUsec"),
                                           get_opt<uint64_t>(*r, "pidsPeak"),
                                           r->value("oomKills", uint64_t{0})};
      if (auto g = c.find("gracefulStop"); g != c.end() && g->is_object())
        d.graceful_stop = sinks::GracefulStopData{g->value("cause", ""),
                                                  g->value("graceSeconds", uint64_t{0}),
                                                  g->value("exitedInTime", false)};
      sinks::Event e = sinks::make_event(std::move(d));
      e.time_us = c.value("timeUs", e.time_us);
      e.correlation_id = c.value("correlationId", "");
      out.push_back(std::move(e));
    }
    if (auto it = j.find("destroyed"); it != j.end() && it->is_object()) {
      const json& c = *it;
      sinks::Event e = sinks::make_event(sinks::DestroyedData{
          c.value("cellId", ""), c.value("succeeded", false), c.value("forced", false),
          c.value("reason", ""), std::nullopt, c.value("backend", ""), std::nullopt});
      e.time_us = c.value("timeUs", e.time_us);
      e.correlation_id = c.value("correlationId", "");
      out.push_back(std::move(e));
    }
  } catch (const json::exception&) {
    // A line a crash tore is skipped by the journal's reader; a value of the wrong type here
    // leaves what was rebuilt so far.
  }
  return out;
}

std::string journal_subject(const json& j) {
  if (!j.is_object() || !j.contains("completed") || !j["completed"].is_object()) return "";
  return j["completed"].value("cellId", "");
}

int64_t journal_time_us(const json& j) {
  if (!j.is_object() || !j.contains("completed") || !j["completed"].is_object()) return 0;
  return j["completed"].value("timeUs", int64_t{0});
}

std::string completed_key(const std::string& subject, int64_t time_us) {
  return subject + " " + sinks::rfc3339_utc(time_us);
}

base::Result<std::vector<std::string>> completed_events_in_log(const cells::Config& config) {
  std::vector<std::string> out;
  auto bytes = sinks::read_whole(config.events_path());
  if (!bytes) {
    if (bytes.error().err == ENOENT) return out;
    return std::move(bytes).error();
  }
  sinks::LogLines l =
      config.events.format == "capnp" ? sinks::decode_capnp(*bytes) : sinks::split_jsonl(*bytes);
  for (const std::string& line : l.lines) {
    if (line.find("command.v1.completed") == std::string::npos) continue;
    auto j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) continue;
    if (!j.value("type", "").ends_with("command.v1.completed")) continue;
    out.push_back(j.value("subject", "") + " " + j.value("time", ""));
  }
  return out;
}

}  // namespace cellos::reactor
