#include "reactor/show_command.h"

#include <cstdio>
#include <deque>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cells/config.h"
#include "reactor/run_command.h"
#include "reactor/spool.h"
#include "sinks/verify.h"

namespace cellos::reactor {
namespace {

using nlohmann::ordered_json;

// The last `n` lines of a log file (the file may be large: only its end is read).
std::string tail_of(const std::string& path, size_t n) {
  FILE* f = std::fopen(path.c_str(), "re");
  if (!f) return {};
  constexpr long kWindow = 64 * 1024;
  std::fseek(f, 0, SEEK_END);
  const long size = std::ftell(f);
  std::fseek(f, size > kWindow ? size - kWindow : 0, SEEK_SET);
  std::string text(static_cast<size_t>(size > kWindow ? kWindow : size), '\0');
  text.resize(std::fread(text.data(), 1, text.size(), f));
  std::fclose(f);
  std::deque<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    lines.push_back(line);
    if (lines.size() > n) lines.pop_front();
  }
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

const char* or_dash(const ordered_json& j, const char* key, std::string& keep) {
  if (!j.contains(key) || j[key].is_null()) return "-";
  keep = j[key].is_string() ? j[key].get<std::string>() : j[key].dump();
  return keep.c_str();
}

}  // namespace

// The status `run` exits with for the same outcome (CellOutcome::exit_status), from the
// completed event: the command's code, 128+N, 124 timeout, 125 setup, 126/127 exec.
int exit_status_of(const ordered_json& completed) {
  const std::string reason = completed.value("reason", "");
  const auto& code = completed.contains("exitCode") ? completed["exitCode"] : ordered_json();
  const auto& sig = completed.contains("signal") ? completed["signal"] : ordered_json();
  if (reason == "setup_failed") {
    const std::string err = completed.value("error", "");
    if (err.starts_with("spec.run.argv[0]:"))
      return err.find("No such file or directory") != std::string::npos ? 127 : 126;
    return 125;
  }
  if (reason == "timeout") return 124;
  if (code.is_number_integer()) return code.get<int>();
  if (sig.is_number_integer()) return 128 + sig.get<int>();
  return 125;
}

int show_command(const ShowArgs& args) {
  auto loaded = load_config_or_say(args.config_path);
  if (!loaded) return 125;
  const cells::Config& config = *loaded;
  const std::string log = config.events_path();
  auto text = sinks::cat_log(log);
  if (!text) {
    std::fprintf(stderr, "cellos-reactor: show: %s\n", text.error().message().c_str());
    return 125;
  }
  // The cell's latest run: everything from its last started event (or its last rejection, when
  // that came later: a spec refused before it ran).
  std::vector<ordered_json> run;
  const std::string needle = "\"" + args.cell_id + "\"";
  std::istringstream in(*text);
  for (std::string line; std::getline(in, line);) {
    if (line.find(needle) == std::string::npos) continue;
    auto e = ordered_json::parse(line, nullptr, false);
    if (e.is_discarded() || !e.contains("data") || !e["data"].is_object()) continue;
    if (e["data"].value("cellId", "") != args.cell_id) continue;
    const std::string type = e.value("type", "");
    if (type.ends_with(".lifecycle.v1.started") || type.ends_with(".rejected")) run.clear();
    run.push_back(std::move(e));
  }
  if (run.empty()) {
    std::fprintf(stderr, "cellos-reactor: show: no cell %s in %s\n", args.cell_id.c_str(),
                 log.c_str());
    return 1;
  }
  ordered_json started, completed, destroyed, rejected;
  for (const auto& e : run) {
    const std::string type = e.value("type", "");
    if (type.ends_with(".lifecycle.v1.started")) started = e;
    else if (type.ends_with(".command.v1.completed")) completed = e;
    else if (type.ends_with(".lifecycle.v1.destroyed")) destroyed = e;
    else if (type.ends_with(".rejected")) rejected = e;
  }
  const StateDirs dirs(config.host.state_dir);
  const std::string logdir = dirs.logs + "/" + args.cell_id;
  ordered_json out;
  out["id"] = args.cell_id;
  if (!rejected.is_null()) {
    out["state"] = "rejected";
    out["reason"] = rejected["data"].value("reason", "");
    out["time"] = rejected.value("time", "");
    out["exitStatus"] = 125;
  } else {
    const ordered_json& s = started["data"];
    out["state"] = destroyed.is_null() ? (completed.is_null() ? "running" : "finishing")
                   : destroyed["data"].value("outcome", "failed");
    out["runId"] = s.value("runId", "");
    out["hostId"] = s.value("hostId", "");
    out["startedAt"] = started.value("time", "");
    if (!completed.is_null()) {
      const ordered_json& c = completed["data"];
      out["finishedAt"] = completed.value("time", "");
      out["reason"] = c.value("reason", "");
      out["exitCode"] = c.contains("exitCode") ? c["exitCode"] : ordered_json();
      out["signal"] = c.contains("signal") ? c["signal"] : ordered_json();
      out["exitStatus"] = exit_status_of(c);
      out["durationMs"] = c.value("durationMs", 0);
      if (c.contains("error")) out["error"] = c["error"];
      if (c.contains("resources")) out["resources"] = c["resources"];
      if (c.contains("gracefulStop")) out["gracefulStop"] = c["gracefulStop"];
    }
    if (!destroyed.is_null())
      out["terminalState"] = destroyed["data"].value("terminalState", "");
    out["stdout"] = logdir + "/stdout";
    out["stderr"] = logdir + "/stderr";
  }
  out["eventLog"] = log;
  if (args.json) {
    std::printf("%s\n", out.dump(2, ' ', false, ordered_json::error_handler_t::replace).c_str());
    return 0;
  }
  std::string k1, k2, k3;
  std::printf("cell %s: %s\n", args.cell_id.c_str(), out["state"].get<std::string>().c_str());
  if (out["state"] == "rejected") {
    std::printf("  rejected at %s: %s\n", out["time"].get<std::string>().c_str(),
                out["reason"].get<std::string>().c_str());
    return 0;
  }
  std::printf("  run %s on host %s, started %s\n", or_dash(out, "runId", k1),
              or_dash(out, "hostId", k2), or_dash(out, "startedAt", k3));
  if (out.contains("reason")) {
    std::printf("  finished %s after %s ms: reason %s", or_dash(out, "finishedAt", k1),
                or_dash(out, "durationMs", k2), or_dash(out, "reason", k3));
    std::printf(", exit code %s", or_dash(out, "exitCode", k1));
    if (!out["signal"].is_null()) std::printf(", signal %s", or_dash(out, "signal", k2));
    std::printf(" (exit status %d, as `run` reports it)\n", out["exitStatus"].get<int>());
    if (out.contains("error")) std::printf("  error: %s\n", out["error"].get<std::string>().c_str());
    if (out.contains("gracefulStop")) {
      const auto& g = out["gracefulStop"];
      std::printf("  stopped (%s): SIGTERM, %llus grace, %s\n", g.value("cause", "").c_str(),
                  static_cast<unsigned long long>(g.value("graceSeconds", 0ULL)),
                  g.value("exitedInTime", false) ? "exited in time" : "killed at its end");
    }
    if (out.contains("resources")) {
      const auto& r = out["resources"];
      std::printf("  resources: peak memory %s bytes, CPU %s us, peak pids %s, OOM kills %s\n",
                  or_dash(r, "memoryPeakBytes", k1), or_dash(r, "cpuUsageUsec", k2),
                  or_dash(r, "pidsPeak", k3), r.value("oomKills", ordered_json(0)).dump().c_str());
    }
  }
  for (const char* stream : {"stdout", "stderr"}) {
    const std::string path = out[stream].get<std::string>();
    std::printf("  %s: %s\n", stream, path.c_str());
    std::string t = tail_of(path, args.tail_lines);
    std::istringstream lines(t);
    for (std::string l; std::getline(lines, l);) std::printf("    | %s\n", l.c_str());
  }
  return 0;
}

}  // namespace cellos::reactor
