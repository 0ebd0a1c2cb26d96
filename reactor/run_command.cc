#include "reactor/run_command.h"

#include <fcntl.h>
#include <sys/random.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <ctime>
#include <iostream>
#include <random>

#include "cells/admission.h"
#include "cells/config.h"
#include "cells/egress.h"
#include "cells/secrets.h"
#include "cells/spec.h"
#include "reactor/cgroup_parent.h"
#include "reactor/host.h"
#include "reactor/run_via_daemon.h"
#include "reactor/supervisor.h"

namespace cellos::reactor {
namespace {

int complain(const std::string& line) { return say_setup_failed(line); }

}  // namespace

int say_setup_failed(const std::string& line) {
  std::fprintf(stderr, "cellos-reactor: %s\n", line.c_str());
  return 125;
}

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
  if (!text) {
    base::Error e = std::move(text).error();
    if (e.err == EFBIG) e.detail += " (over the 1 MiB a spec may have)";
    return std::move(e).context("spec");
  }
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

  // The spec is read and admitted before the host exists: creating it blocks SIGINT/SIGTERM
  // for its signalfd, and a `run -` waiting on a terminal must still stop on ^C.
  auto text = read_spec_text(args.spec_path);
  cells::Admission admission;
  if (!text) admission.refusal = text.error();
  else admission = cells::admit(*text, cells::AdmissionOptions{&config, {}});
  // --via-daemon: an admitted spec goes to the daemon serving the host, if one does.
  if (args.via_daemon && args.events_path)
    return complain("--events: not with --via-daemon (the daemon writes the cell's events to "
                    "its own log)");
  // A refused spec never reaches the daemon: one line and 125, as `submit` refuses it.
  if (args.via_daemon && !admission.admitted()) return complain(admission.refusal.message());
  if (args.via_daemon) {
    if (auto status = run_via_daemon(config, admission.spec->id, *text)) return *status;
    std::fprintf(stderr, "cellos-reactor: --via-daemon: no daemon serves %s: running the cell "
                 "here\n", config.host.state_dir.c_str());
  }

  HostOptions ho;
  ho.config = &config;
  ho.events_path = args.events_path;
  ho.uplink = admission.admitted() && !admission.spec->egress_rules.empty();
  ho.cgroups = cgroup_placement_for_run(config);
  auto host = Host::create(ho);
  if (!host && host.error().err == EWOULDBLOCK && host.error().call == "flock" &&
      !args.events_path) {
    // The fleet's log has its writer (the daemon, or another run): this run writes a log of its
    // own beside it rather than interleave two numberings in one file.
    const std::string dir = config.host.state_dir + "/runs";
    ho.events_path = dir + "/" + new_run_id() + ".events.jsonl";
    std::fprintf(stderr, "cellos-reactor: %s has another writer: this run's events go to %s\n",
                 config.events_path().c_str(), ho.events_path->c_str());
    if (auto r = base::make_dirs(dir); !r) return complain("host.state_dir: " + r.error().message());
    host = Host::create(ho);
  }
  if (!host) return complain(host.error().message());

  // A rejection is an event too: written, sealed and drained before the exit status reports it.
  auto reject = [&](const std::string& reason, const std::optional<std::string>& id) {
    (*host)->events().emit(sinks::make_event(sinks::RejectedData{id, reason}));
    if (auto r = (*host)->drain_events(); !r) complain(r.error().message());
    return complain(reason);
  };
  if (!admission.admitted()) return reject(admission.refusal.message(), admission.cell_id);

  std::optional<cells::CellOutcome> outcome;
  Supervisor sup(**host, {.on_cell_done = [&](const cells::Cell& c) { outcome = c.outcome(); }});
  // SIGINT/SIGTERM: the cell gets SIGTERM and its gracefulShutdownSeconds to exit (none
  // declared: it is killed at once); a second signal kills it now. It still ends with its
  // completed and destroyed events, and the exit status reports the signal.
  int signals = 0;
  (*host)->on_signal([&](int) {
    if (++signals > 1) return sup.kill_all(cells::KillCause::kReactorStop);
    sup.stop_all(cells::KillCause::kReactorStop,
                 [](const cells::Cell& c) { return c.shutdown_grace(std::chrono::seconds(0)); });
  });
  // Hostnames in egress rules: looked up on the ring, like the daemon does. A signal meanwhile
  // ends the run before anything starts (the lookup is dropped with the resolver).
  if (cells::needs_resolution(*admission.spec)) {
    std::optional<base::Result<void>> resolved;
    cells::resolve_egress(*admission.spec, (*host)->resolver(),
                          [&](base::Result<void> r) { resolved = std::move(r); });
    if (auto r = sup.run_until([&] { return resolved || (*host)->stop_signal() != 0; }); !r)
      return complain(r.error().message());
    if (!resolved) {
      complain(std::string("stopped by ") + strsignal((*host)->stop_signal()) +
               " while resolving the spec's egress hosts: nothing ran");
      return 128 + (*host)->stop_signal();
    }
    if (!*resolved) return reject(resolved->error().message(), admission.cell_id);
  }
  auto env = cells::build_environment(*admission.spec, config.secrets);
  if (!env) return reject(env.error().message(), admission.cell_id);
  auto brokered = cells::read_brokered_secrets(*admission.spec, config.secrets);
  if (!brokered) return reject(brokered.error().message(), admission.cell_id);

  cells::CellOptions co;
  co.spec = std::move(*admission.spec);
  co.env = std::move(*env);
  co.brokered_secrets = std::move(*brokered);
  co.run_id = new_run_id();
  sup.add(std::move(co));
  if (auto r = sup.run_until_idle(); !r) return complain(r.error().message());

  if (!outcome) return complain("cell ended without an outcome");
  int status = outcome->exit_status();
  if (status >= 125 && status <= 127 && !outcome->error.empty()) complain(outcome->error);
  // Stopped by an operator signal: report that signal, as a shell would for the run itself.
  if ((*host)->stop_signal() != 0 && outcome->forced) return 128 + (*host)->stop_signal();
  return status;
}

}  // namespace cellos::reactor
