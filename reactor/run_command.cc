#include "reactor/run_command.h"

#include <fcntl.h>
#include <sys/random.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "cells/cell_lock.h"
#include "cells/cgroup.h"
#include "cells/config.h"
#include "cells/secrets.h"
#include "cells/cell_init.h"
#include "reactor/event_log_config.h"
#include "reactor/supervisor.h"

namespace cellos::reactor {
namespace {

constexpr int kSetupFailed = 125;

int complain(const std::string& line) {
  std::fprintf(stderr, "cellos-reactor: %s\n", line.c_str());
  return kSetupFailed;
}

base::Result<std::string> read_spec(const std::string& path) {
  if (path == "-") {
    std::string text;
    char buf[8192];
    ssize_t n;
    while ((n = ::read(STDIN_FILENO, buf, sizeof buf)) > 0) text.append(buf, static_cast<size_t>(n));
    if (n < 0) return base::sys_error("read", "spec from stdin");
    return text;
  }
  auto text = base::read_file_at(AT_FDCWD, path, 4 << 20);
  if (!text) return std::move(text).error().context("spec");
  return text;
}

// A random (version 4) UUID naming this run of the cell in its events.
std::string new_run_id() {
  unsigned char b[16] = {};
  if (getrandom(b, sizeof b, 0) != sizeof b) {
    for (auto& c : b) c = static_cast<unsigned char>(std::rand());
  }
  b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x40);
  b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);
  char out[37];
  std::snprintf(out, sizeof out,
                "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
                b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
                b[14], b[15]);
  return out;
}

}  // namespace

int run_command(const RunArgs& args) {
  cells::Config config;
  try {
    config = args.config_path ? cells::load_config(*args.config_path) : cells::default_config();
  } catch (const cells::ConfigError& e) {
    return complain(e.what());
  }
  if (auto r = base::make_dirs(config.host.state_dir); !r)
    return complain("host.state_dir: " + r.error().message());

  // The spec is read before the supervisor exists: creating it blocks SIGINT/SIGTERM for its
  // signalfd, and a `run -` waiting on a terminal must still stop on ^C.
  auto text = read_spec(args.spec_path);

  auto roots = cells::detect_cgroup_roots();
  if (!roots) return complain(roots.error().message());
  auto tree = cells::CgroupTree::prepare(std::move(*roots), "cellos/" + config.host.id);
  if (!tree) return complain(tree.error().message());
  // The cell init (with the seccomp filter compiled in) is loaded once, before any cell.
  if (const auto& init = cells::cell_init_binary(); !init.ok()) return complain(init.error().message());

  // The supervisor first: the event log writes through its ring.
  std::optional<cells::CellOutcome> outcome;
  SupervisorOptions so;
  so.config = &config;
  so.cgroups = &*tree;
  so.on_cell_done = [&](const cells::Cell& c) { outcome = c.outcome(); };
  auto sup = Supervisor::create(std::move(so));
  if (!sup) return complain(sup.error().message());
  auto sink = open_event_log(config, (*sup)->io(), args.events_path);
  if (!sink) return complain(sink.error().message());
  (*sup)->set_events(sink->get());

  // A rejection is an event too: written, sealed and drained (run_until_idle with no cell only
  // drains the log) before the exit status reports it.
  auto reject = [&](const std::string& reason, const std::optional<std::string>& id) {
    (*sink)->emit(sinks::make_event(sinks::RejectedData{id, reason}));
    if (auto r = (*sup)->run_until_idle(); !r) complain(r.error().message());
    return complain(reason);
  };
  if (!text) return reject(text.error().message(), std::nullopt);
  auto spec = cells::parse_spec(*text);
  if (!spec) return reject(spec.error().message(), std::nullopt);
  if (auto r = cells::check_policy(*spec, config.policy); !r)
    return reject(r.error().message(), spec->id);
  auto env = cells::build_environment(*spec, config.secrets);
  if (!env) return reject(env.error().message(), spec->id);

  cells::CellOptions co;
  co.spec = std::move(*spec);
  co.env = std::move(*env);
  co.run_id = new_run_id();
  (*sup)->add(std::move(co));
  if (auto r = (*sup)->run_until_idle(); !r) return complain(r.error().message());

  if (!outcome) return complain("cell ended without an outcome");
  int status = outcome->exit_status();
  if (status >= 125 && status <= 127) complain(outcome->error);
  // Stopped by an operator signal: report that signal, as a shell would for the run itself.
  if ((*sup)->stop_signal() != 0 && outcome->forced) return 128 + (*sup)->stop_signal();
  return status;
}

}  // namespace cellos::reactor
