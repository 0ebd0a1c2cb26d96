#include "reactor/run_command.h"

#include <fcntl.h>
#include <sys/random.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <ctime>
#include <iostream>
#include <random>

#include "cells/cell_lock.h"
#include "cells/cgroup.h"
#include "cells/config.h"
#include "cells/egress.h"
#include "cells/secrets.h"
#include "cells/spec.h"
#include "cells/cell_init.h"
#include "netns/uplink.h"
#include "reactor/event_log_config.h"
#include "reactor/supervisor.h"

namespace cellos::reactor {
namespace {

constexpr int kSetupFailed = 125;

int complain(const std::string& line) {
  std::fprintf(stderr, "cellos-reactor: %s\n", line.c_str());
  return kSetupFailed;
}

}  // namespace

std::optional<cells::Config> load_config_or_say(const std::string& path) {
  try {
    return cells::load_config(path);
  } catch (const cells::ConfigError& e) {
    complain(e.what());
    return std::nullopt;
  }
}

base::Result<std::string> read_spec_text(const std::string& path) {
  // One cap for every intake, stdin included: reading stops at it, so a 100 MB spec on a pipe
  // costs 1 MiB of memory and is refused, never queued.
  auto text = path == "-" ? base::read_fd(STDIN_FILENO, "stdin", cells::kMaxSpecBytes)
                          : base::read_file_at(AT_FDCWD, path, cells::kMaxSpecBytes);
  if (!text) return std::move(text).error().context("spec");
  return text;
}

std::string new_run_id() {
  // Run ids must be unique, not secret: a generator seeded once from getrandom serves every
  // cell of the process without a syscall each.
  static std::mt19937_64 gen = [] {
    uint64_t seed[2] = {};
    if (getrandom(seed, sizeof seed, 0) != sizeof seed)
      seed[0] = static_cast<uint64_t>(::getpid()) ^ static_cast<uint64_t>(::time(nullptr));
    std::seed_seq seq{seed[0], seed[0] >> 32, seed[1], seed[1] >> 32};
    return std::mt19937_64(seq);
  }();
  unsigned char b[16] = {};
  uint64_t hi = gen(), lo = gen();
  std::memcpy(b, &hi, 8);
  std::memcpy(b + 8, &lo, 8);
  b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x40);
  b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);
  char out[37];
  std::snprintf(out, sizeof out,
                "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
                b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
                b[14], b[15]);
  return out;
}

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
  auto text = read_spec_text(args.spec_path);
  auto spec = text ? cells::parse_spec(*text) : base::Result<cells::Spec>(text.error());

  auto roots = cells::detect_cgroup_roots();
  if (!roots) return complain(roots.error().message());
  auto tree = cells::CgroupTree::prepare(std::move(*roots), "cellos/" + config.host.id);
  if (!tree) return complain(tree.error().message());
  // The cell init (with the seccomp filter compiled in) is loaded once, before any cell.
  if (const auto& init = cells::cell_init_binary(); !init.ok()) return complain(init.error().message());

  // The uplink lives as long as this run: created (after removing a crashed run's leftovers)
  // before the cell, removed when run_command returns. Only an admissible cell with egress
  // rules uses it, so only such a run pays for the bridge.
  std::unique_ptr<netns::HostUplink> uplink;
  if (config.network.uplink == "nat" && spec && !spec->egress_rules.empty() &&
      cells::check_policy(*spec, config.policy).ok()) {
    auto u = netns::HostUplink::create(
        {config.host.id, config.host.state_dir, config.network.subnet});
    if (!u) return complain("network.uplink: " + u.error().message());
    uplink = std::move(*u);
  }

  // The supervisor first: the event log writes through its ring.
  std::optional<cells::CellOutcome> outcome;
  SupervisorOptions so;
  so.config = &config;
  so.cgroups = &*tree;
  so.uplink = uplink.get();
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
  if (!spec) return reject(spec.error().message(), std::nullopt);
  if (auto r = cells::check_policy(*spec, config.policy); !r)
    return reject(r.error().message(), spec->id);
  // Admission resolves hostnames once, through the host's resolver; the addresses go into the
  // ruleset and the network_policy event.
  if (auto r = cells::resolve_egress(*spec); !r) return reject(r.error().message(), spec->id);
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
