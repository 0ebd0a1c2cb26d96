#include "reactor/run_via_daemon.h"

#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>

#include "base/fd.h"
#include "reactor/cell_follower.h"
#include "reactor/spool.h"
#include "reactor/status.h"

namespace cellos::reactor {
namespace {

constexpr int kSetupFailed = 125;

int say(const std::string& line) { return say_refused(line); }

// SIGINT/SIGTERM as a descriptor for the poll loop, restored (and unblocked) on return.
struct Signals {
  sigset_t set{}, old{};
  base::Fd fd;
  Signals() {
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    ::sigprocmask(SIG_BLOCK, &set, &old);
    fd = base::Fd(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
  }
  ~Signals() { ::sigprocmask(SIG_SETMASK, &old, nullptr); }
  int take() {
    signalfd_siginfo si{};
    if (::read(fd.get(), &si, sizeof si) != static_cast<ssize_t>(sizeof si)) return 0;
    return static_cast<int>(si.ssi_signo);
  }
};

// `stop ID` / `kill ID` on a connection of its own; the answer is one line.
void control(const std::string& state_dir, const std::string& verb, const std::string& id) {
  auto c = connect_status(state_dir, verb + " " + id);
  if (!c) {
    say(verb + " " + id + ": " + c.error().message());
    return;
  }
  char buf[512];
  ssize_t n = ::read(c->get(), buf, sizeof buf - 1);
  if (n <= 0) return;
  auto j = nlohmann::json::parse(std::string(buf, static_cast<size_t>(n)), nullptr, false);
  if (j.is_object() && j.contains("error")) say(verb + " " + id + ": " + j.value("error", ""));
}

}  // namespace

std::optional<int> run_via_daemon(const cells::Config& config, const std::string& cell_id,
                                  const std::string& spec_text) {
  const StateDirs dirs(config.host.state_dir);
  Signals sig;  // before the spec is staged: a ^C from now on is ours to handle
  // Staged under a hidden name no intake reads, before the daemon is asked: the daemon moves it
  // into the spool itself once our wait is registered (`hand`), so the client sleeps from
  // its request to its cell's start. Removed on every way out (the daemon renamed it: gone).
  // No spool dir yet means no daemon ever served this state dir.
  if (::access(dirs.spool.c_str(), F_OK) != 0 && errno == ENOENT) return std::nullopt;
  auto staged = stage_in_spool(dirs, cell_id, spec_text);
  if (!staged) return say(staged.error().message());
  struct Unstage {
    const std::string& path;
    ~Unstage() { ::unlink(path.c_str()); }
  } unstage{staged->staged};
  const std::string staged_name = staged->staged.substr(dirs.spool.size() + 1);
  // Withdraws the spec if the daemon has not taken it yet: true when nothing will run.
  auto withdraw = [&] {
    return ::unlink(staged->staged.c_str()) == 0 || ::unlink(staged->entry.c_str()) == 0;
  };

  auto conn = connect_status(dirs.state, "hand " + cell_id + " " + staged_name);
  if (!conn) {
    const int e = conn.error().err;
    if (e == ENOENT || e == ECONNREFUSED) return std::nullopt;  // no daemon: run it here
    return say("--via-daemon: " + conn.error().message());
  }
  auto follower = std::make_unique<CellFollower>(std::move(*conn));
  if (!follower->ok()) return say(follower->error());
  // `hand`: the daemon queued the spec with our wait. Without it (an older daemon, or one that
  // could not rename), `wait` and our own rename once it watches.
  bool handed = true, watching = true, started = false;
  int signo = 0, signals = 0;

  for (;;) {
    nlohmann::json j;
    switch (follower->next(j, sig.fd.get())) {
      case CellFollower::Next::kLine:
        break;
      case CellFollower::Next::kExtra:
        if (int s = sig.take()) {
          signo = s;
          ++signals;
          if (!started && withdraw()) {
            say(std::string("stopped by ") + strsignal(s) + " before the daemon started cell " +
                cell_id + ": nothing ran");
            return 128 + s;
          }
          // Started, or being started (the daemon took the spec): stopped as `run` stops its own.
          if (started) control(dirs.state, signals > 1 ? "kill" : "stop", cell_id);
        }
        continue;
      case CellFollower::Next::kClosed:
        return say("--via-daemon: the daemon closed the connection before cell " + cell_id +
                   " finished (it died?); `cellos-reactor show " + cell_id +
                   "` tells what the log holds");
      case CellFollower::Next::kError:
        return say("--via-daemon: " + follower->error());
    }
    const std::string event = j.value("event", "");
    if (event.empty() && handed && !started) {
      // `hand` refused (nothing was renamed): the older exchange on a connection of its own.
      handed = false;
      watching = false;
      auto again = connect_status(dirs.state, "wait " + cell_id);
      if (!again) return say("--via-daemon: " + again.error().message());
      follower = std::make_unique<CellFollower>(std::move(*again));
      continue;
    }
    if (event.empty()) return say("--via-daemon: the daemon refused: " + j.value("error", ""));
    if (event == "watching" && !watching) {
      watching = true;
      // Only now: the daemon listens, so the cell's start cannot be missed.
      if (::rename(staged->staged.c_str(), staged->entry.c_str()) != 0)
        return say("--via-daemon: rename \"" + staged->staged + "\" to \"" + staged->entry +
                   "\": " + std::strerror(errno));
    } else if (event == "started" && !started) {
      started = true;
      follower->follow(j);
      // A signal came while the daemon was taking the spec: the cell stops now.
      if (signals) control(dirs.state, signals > 1 ? "kill" : "stop", cell_id);
    } else if (event == "rejected") {
      return say(j.value("reason", "rejected"));
    } else if (event == "stopped") {
      if (!started && ::unlink(staged->staged.c_str()) == 0)
        return say("--via-daemon: the daemon serving " + dirs.state +
                   " is stopping; nothing was queued");
      if (!started && withdraw())
        return say("--via-daemon: the daemon stopped before cell " + cell_id +
                   " started; nothing ran");
      return say("--via-daemon: the daemon stopped before cell " + cell_id + " started");
    } else if (event == "finished") {
      follower->pump();
      const int status = j.value("exitStatus", kSetupFailed);
      // As `run`: the cause of a 125-127 in one line; a cell it had killed after a signal
      // reports that signal.
      if (status >= 125 && status <= 127 && j.contains("error") && j["error"].is_string())
        say(j["error"].get<std::string>());
      if (signo != 0 && j.value("forced", false)) return 128 + signo;
      return status;
    }
  }
}

}  // namespace cellos::reactor
