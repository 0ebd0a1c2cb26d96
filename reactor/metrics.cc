#include "reactor/metrics.h"

#include <cstdio>

namespace cellos::reactor {
namespace {

void family(std::string& out, const char* name, const char* type, const char* help) {
  out += "# HELP ";
  out += name;
  out += " ";
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += " ";
  out += type;
  out += "\n";
}

void sample(std::string& out, const std::string& name, const std::string& labels, double v) {
  char num[64];
  std::snprintf(num, sizeof num, "%.17g", v);
  out += name;
  if (!labels.empty()) out += "{" + labels + "}";
  out += " ";
  out += num;
  out += "\n";
}

}  // namespace

void Metrics::observe_spawn(std::chrono::nanoseconds d) {
  double s = std::chrono::duration<double>(d).count();
  ++spawn_count;
  spawn_sum_seconds += s;
  for (size_t i = 0; i < kBuckets.size(); ++i)
    if (s <= kBuckets[i]) ++spawn_buckets[i];
}

uint64_t Metrics::finished_total() const {
  uint64_t n = 0;
  for (const auto& [r, v] : finished) n += v;
  return n;
}

void Metrics::observe_finished(const cells::CellOutcome& o) {
  ++finished[sinks::reason_name(o.reason)];
  if (auto f = failure_reason(o)) ++failed[*f];
  else ++succeeded;
  if (o.resources) {
    oom_kills += o.resources->oom_kills;
    if (o.resources->cpu_usage_usec) cpu_seconds += *o.resources->cpu_usage_usec / 1e6;
  }
}

uint64_t Metrics::failed_total() const {
  uint64_t n = 0;
  for (const auto& [r, v] : failed) n += v;
  return n;
}

std::string Metrics::render(const std::string& host_id) const {
  const std::string host = "host=\"" + host_id + "\"";  // host ids are [A-Za-z0-9._-]
  std::string o;
  family(o, "cellos_cells_started_total", "counter", "Cells launched.");
  sample(o, "cellos_cells_started_total", host, static_cast<double>(started));
  family(o, "cellos_cells_rejected_total", "counter",
         "Specs rejected at intake or admission (malformed, policy, duplicate id).");
  sample(o, "cellos_cells_rejected_total", host, static_cast<double>(rejected));
  family(o, "cellos_cells_finished_total", "counter",
         "Cells that ended, succeeded or not, by the completed event's reason (exited, "
         "signaled, timeout, oom, setup_failed, shutdown); exited counts every exit code.");
  for (const auto& [r, v] : finished)
    sample(o, "cellos_cells_finished_total", host + ",reason=\"" + r + "\"",
           static_cast<double>(v));
  family(o, "cellos_cells_succeeded_total", "counter", "Cells whose command exited 0.");
  sample(o, "cellos_cells_succeeded_total", host, static_cast<double>(succeeded));
  family(o, "cellos_cells_failed_total", "counter",
         "Cells that did not succeed, by reason (exit_nonzero, signaled, timeout, oom, "
         "setup_failed, shutdown, lost).");
  for (const auto& [r, v] : failed)
    sample(o, "cellos_cells_failed_total", host + ",reason=\"" + r + "\"",
           static_cast<double>(v));
  family(o, "cellos_cells_running", "gauge", "Cells running now.");
  sample(o, "cellos_cells_running", host, static_cast<double>(running));
  family(o, "cellos_cells_waiting", "gauge", "Admitted specs waiting for a slot.");
  sample(o, "cellos_cells_waiting", host, static_cast<double>(waiting));
  family(o, "cellos_spawn_latency_seconds", "histogram",
         "From admission to the cell's init running (clone3 and in-cell setup).");
  for (size_t i = 0; i < kBuckets.size(); ++i) {
    char le[32];
    std::snprintf(le, sizeof le, "%g", kBuckets[i]);
    sample(o, "cellos_spawn_latency_seconds_bucket", host + ",le=\"" + le + "\"",
           static_cast<double>(spawn_buckets[i]));
  }
  sample(o, "cellos_spawn_latency_seconds_bucket", host + ",le=\"+Inf\"",
         static_cast<double>(spawn_count));
  sample(o, "cellos_spawn_latency_seconds_sum", host, spawn_sum_seconds);
  sample(o, "cellos_spawn_latency_seconds_count", host, static_cast<double>(spawn_count));
  family(o, "cellos_cell_oom_kills_total", "counter",
         "Processes the kernel's OOM killer took inside cells (any process, not only commands).");
  sample(o, "cellos_cell_oom_kills_total", host, static_cast<double>(oom_kills));
  family(o, "cellos_cell_cpu_seconds_total", "counter",
         "CPU time (user and system) used by the processes of cells that finished.");
  sample(o, "cellos_cell_cpu_seconds_total", host, cpu_seconds);
  family(o, "cellos_events_written_total", "counter", "Events written to the event log.");
  sample(o, "cellos_events_written_total", host, static_cast<double>(events_written));
  return o;
}

std::optional<std::string> failure_reason(const cells::CellOutcome& o) {
  if (o.reason == sinks::CompletedReason::kExited) {
    // The command succeeded but an artifact marked required did not get out.
    if (o.exit_code == 0 && o.export_failed) return std::string("export_failed");
    return o.exit_code == 0 ? std::nullopt : std::optional<std::string>("exit_nonzero");
  }
  return std::string(sinks::reason_name(o.reason));
}

}  // namespace cellos::reactor
